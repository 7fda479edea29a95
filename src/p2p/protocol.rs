//! weft's libp2p protocol names and the request-response codec they share.
//!
//! The names are the same for every network (`/weft/auth/1`, ...): anything in them is visible
//! to whoever connects, before admission, in identify and protocol negotiation, so they carry
//! nothing that tells one fleet from another. Admission is what keeps networks apart: a node of
//! another network fails the proof. Messages are protobuf (`proto/weft/p2p.proto`),
//! framed as a u32 big-endian length and the bytes, with a size cap so that a peer cannot make
//! us buffer without bound; raft's long-lived streams use the same frames.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// Largest message weft's request-response protocols accept.
pub const MAX_MESSAGE: usize = 1 << 20;

/// weft's protocol names.
#[derive(Debug, Clone)]
pub struct Protocols {
    pub auth: StreamProtocol,
    pub control: StreamProtocol,
    pub raft: StreamProtocol,
    pub dataplane: StreamProtocol,
    /// Data-plane frames when no direct UDP path works (a plain stream, not request-response).
    pub frames: StreamProtocol,
    /// Raft's appends and votes, on one long-lived stream per raft peer (a plain stream, not
    /// request-response: [`crate::ledger::raft::stream`]).
    pub raft_stream: StreamProtocol,
    pub kad: StreamProtocol,
    /// The gossipsub topic (not a stream protocol, but scoped the same way).
    pub gossip_topic: String,
}

impl Default for Protocols {
    fn default() -> Self {
        Self::new()
    }
}

impl Protocols {
    pub fn new() -> Self {
        let name = |suffix: &str| {
            StreamProtocol::try_from_owned(format!("/weft/{suffix}"))
                .expect("a /-prefixed ASCII name is a valid protocol")
        };
        Protocols {
            auth: name("auth/1"),
            control: name("control/1"),
            raft: name("raft/1"),
            dataplane: name("dataplane/1"),
            frames: name("frames/1"),
            raft_stream: name("raft-stream/1"),
            kad: name("kad/1"),
            gossip_topic: "/weft/gossip/1".to_string(),
        }
    }
}

/// A length-prefixed protobuf codec for a request type and a response type.
pub struct ProstCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for ProstCodec<Req, Resp> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<Req, Resp> Clone for ProstCodec<Req, Resp> {
    fn clone(&self) -> Self {
        ProstCodec(PhantomData)
    }
}

/// Reads one frame: a u32 big-endian length, then that many bytes, at most [`MAX_MESSAGE`].
/// The buffer grows with what arrives, not with what the length claims.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the {MAX_MESSAGE}-byte limit"),
        ));
    }
    let mut buf = Vec::new();
    (&mut *io).take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// Writes one frame (its length and its bytes in one write, so that a small message leaves in
/// one packet) and flushes it.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l as usize <= MAX_MESSAGE)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {} bytes exceeds the {MAX_MESSAGE}-byte limit",
                    body.len()
                ),
            )
        })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    io.write_all(&frame).await?;
    io.flush().await
}

async fn read_message<T: AsyncRead + Unpin + Send, M: prost::Message + Default>(
    io: &mut T,
) -> io::Result<M> {
    let buf = read_frame(io).await?;
    M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_message<T: AsyncWrite + Unpin + Send, M: prost::Message>(
    io: &mut T,
    message: &M,
) -> io::Result<()> {
    write_frame(io, &message.encode_to_vec()).await?;
    io.close().await
}

impl<Req, Resp> request_response::Codec for ProstCodec<Req, Resp>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::p2p::v1::AuthChallenge;

    #[test]
    fn protocol_names_carry_nothing_of_the_network() {
        let protocols = Protocols::new();
        assert_eq!(protocols.auth.as_ref(), "/weft/auth/1");
        assert_eq!(protocols.gossip_topic, "/weft/gossip/1");
    }

    #[test]
    fn a_message_round_trips_and_an_oversized_length_is_refused() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            let msg = AuthChallenge { nonce: vec![7; 32] };
            write_message(&mut futures::io::Cursor::new(&mut buf), &msg)
                .await
                .unwrap();
            let back: AuthChallenge = read_message(&mut buf.as_slice()).await.unwrap();
            assert_eq!(back, msg);

            let huge = ((MAX_MESSAGE + 1) as u32).to_be_bytes();
            let err = read_message::<_, AuthChallenge>(&mut &huge[..])
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        });
    }
}
