//! The buffer a raft snapshot is read from and received into: an in-memory cursor that refuses
//! what only a hostile sender asks for. openraft seeks to each received chunk's offset as the
//! sender gives it, so a plain `Cursor<Vec<u8>>` grows to whatever offset a peer names (2^50
//! aborts the process). Here a seek past the bytes received so far, or growth past
//! [`MAX_SNAPSHOT`], is an I/O error: that snapshot install fails and the node goes on.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// The largest snapshot a node accepts: far above any ledger weft keeps, far below memory.
pub const MAX_SNAPSHOT: u64 = 256 << 20;

/// A snapshot's bytes, bounded.
#[derive(Debug, Default)]
pub struct SnapshotBuffer {
    cursor: Cursor<Vec<u8>>,
}

impl SnapshotBuffer {
    pub fn new(data: Vec<u8>) -> Self {
        SnapshotBuffer {
            cursor: Cursor::new(data),
        }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.cursor.into_inner()
    }

    fn len(&self) -> u64 {
        self.cursor.get_ref().len() as u64
    }
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

impl AsyncRead for SnapshotBuffer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let end = self.cursor.position().saturating_add(buf.len() as u64);
        if end > MAX_SNAPSHOT {
            return Poll::Ready(Err(refused(format!(
                "a snapshot larger than {MAX_SNAPSHOT} bytes is refused"
            ))));
        }
        Pin::new(&mut self.cursor).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotBuffer {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let len = self.len();
        let target = match position {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.cursor.position().checked_add_signed(d),
        };
        match target {
            Some(n) if n <= len => Pin::new(&mut self.cursor).start_seek(SeekFrom::Start(n)),
            _ => Err(refused(format!(
                "a snapshot chunk may not skip past the {len} bytes received ({position:?})"
            ))),
        }
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.cursor).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn chunks_in_order_and_resent_ones_are_taken() {
        let mut buffer = SnapshotBuffer::default();
        buffer.write_all(b"hello ").await.unwrap();
        buffer.write_all(b"world").await.unwrap();
        buffer.seek(SeekFrom::Start(6)).await.unwrap();
        buffer.write_all(b"WORLD").await.unwrap();
        buffer.seek(SeekFrom::Start(0)).await.unwrap();
        let mut text = String::new();
        buffer.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello WORLD");
        assert_eq!(buffer.into_inner(), b"hello WORLD");
    }

    #[tokio::test]
    async fn a_chunk_far_past_the_received_bytes_is_refused_without_allocating() {
        let mut buffer = SnapshotBuffer::new(b"abc".to_vec());
        let error = buffer.seek(SeekFrom::Start(1 << 50)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(buffer.seek(SeekFrom::End(1)).await.is_err());
        assert_eq!(buffer.seek(SeekFrom::End(0)).await.unwrap(), 3);
        assert_eq!(buffer.into_inner(), b"abc");
    }

    #[tokio::test]
    async fn growth_past_the_limit_is_refused() {
        let mut buffer = SnapshotBuffer::default();
        let big = vec![0u8; 1 << 20];
        for _ in 0..(MAX_SNAPSHOT >> 20) {
            buffer.write_all(&big).await.unwrap();
        }
        assert!(buffer.write_all(b"x").await.is_err());
    }
}
