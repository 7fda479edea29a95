//! A small HTTP/1 client for the local API, over its unix socket or TCP, used by the CLI's
//! client commands (`weft status`, ...).

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use super::ApiAddr;

/// How long a client command waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the weft API at {addr} ({source}); is `weft up` running, and is --api right?"
    )]
    Connect {
        addr: ApiAddr,
        source: std::io::Error,
    },
    #[error("the weft API at {addr} did not answer within {} s", TIMEOUT.as_secs())]
    Timeout { addr: ApiAddr },
    #[error("HTTP exchange with the weft API at {addr} failed: {source}")]
    Http { addr: ApiAddr, source: hyper::Error },
    #[error("the weft API answered {status} to {path}: {body}")]
    Status {
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{path:?} is not a valid API path")]
    BadPath { path: String },
    #[error("the weft API's answer to {path} is not what this weft expects: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
}

/// `method path` with `body`, of media type `content_type` when given, and the bearer `token`
/// when given; the body of a 2xx answer.
pub async fn send(
    addr: &ApiAddr,
    token: Option<&str>,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Bytes, ClientError> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.header(hyper::header::CONTENT_TYPE, content_type);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|_| ClientError::BadPath {
            path: path.to_string(),
        })?;
    let exchange = async {
        let (status, body) =
            match addr {
                ApiAddr::Unix(socket) => {
                    let stream = UnixStream::connect(socket).await.map_err(|source| {
                        ClientError::Connect {
                            addr: addr.clone(),
                            source,
                        }
                    })?;
                    exchange(addr, stream, request).await?
                }
                ApiAddr::Tcp(socket) => {
                    let stream = TcpStream::connect(socket).await.map_err(|source| {
                        ClientError::Connect {
                            addr: addr.clone(),
                            source,
                        }
                    })?;
                    exchange(addr, stream, request).await?
                }
            };
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Status {
                path: path.to_string(),
                status,
                body: error_message(&body),
            })
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Timeout { addr: addr.clone() })?
}

/// The message of an error answer: its `error` field, or the body as text.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<super::ErrorBody>(body) {
        Ok(error) => error.error,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

async fn exchange<S>(
    addr: &ApiAddr,
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| ClientError::Http {
        addr: addr.clone(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
    .await
    .map_err(http);
    driver.abort();
    result
}
