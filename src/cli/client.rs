//! Talking to the local daemon: the `--api` option every client command shares, and requests
//! over [`crate::api::client`] with their answers decoded.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Failure;
use crate::api::{self, ApiAddr};
use crate::config;

/// Options of commands that talk to a running daemon.
#[derive(Debug, Args)]
pub(super) struct ClientArgs {
    /// The daemon's API address: unix:///path or host:port.
    #[arg(long, env = "WEFT_API", default_value = config::DEFAULT_API, value_parser = parse_api)]
    pub api: ApiAddr,
    /// File holding the API's bearer token, sent when --api is a TCP address
    /// [default: /var/lib/weft/api.token].
    #[arg(long, env = "WEFT_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where the daemon keeps the API token unless told otherwise.
const DEFAULT_TOKEN_FILE: &str = "/var/lib/weft/api.token";

impl ClientArgs {
    /// The bearer token to send: none on a unix socket; on TCP the token file's. A default
    /// file that does not exist means no token (the listener may be open to edgevpn's routes);
    /// any other failure to read a token file is an error naming it.
    fn token(&self) -> Result<Option<String>, Failure> {
        if matches!(self.api, ApiAddr::Unix(_)) {
            return Ok(None);
        }
        match &self.api_token_file {
            Some(path) => Ok(Some(api::bearer::read(path)?)),
            None => match api::bearer::read(std::path::Path::new(DEFAULT_TOKEN_FILE)) {
                Ok(token) => Ok(Some(token)),
                Err(api::bearer::BearerError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            },
        }
    }
}

fn parse_api(text: &str) -> Result<ApiAddr, String> {
    text.parse()
}

/// `GET path` on the daemon's API, decoded.
pub(super) fn fetch<T: serde::de::DeserializeOwned>(
    client: &ClientArgs,
    path: &str,
) -> Result<T, Failure> {
    let body = call(client, hyper::Method::GET, path, Vec::new())?;
    serde_json::from_slice(&body)
        .with_context(|| format!("the answer to {path} is not what this weft expects"))
        .map_err(Failure::Runtime)
}

/// `method path` with `body` on the daemon's API; the answer's body.
pub(super) fn call(
    client: &ClientArgs,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    send(client, method, path, None, body)
}

/// `method path` with `body` as JSON on the daemon's API; the answer's body.
pub(super) fn call_json(
    client: &ClientArgs,
    method: hyper::Method,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Vec<u8>, Failure> {
    let body = serde_json::to_vec(body)?;
    send(client, method, path, Some("application/json"), body)
}

fn send(
    client: &ClientArgs,
    method: hyper::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let token = client.token()?;
    let answer = runtime.block_on(api::client::send(
        &client.api,
        token.as_deref(),
        method,
        path,
        content_type,
        body.into(),
    ))?;
    Ok(answer.to_vec())
}

/// What a path segment must escape: everything but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (bucket and key names may hold any character).
pub(super) fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_escape_all_but_unreserved_characters() {
        assert_eq!(segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(segment("a/b c%é"), "a%2Fb%20c%25%C3%A9");
    }
}
