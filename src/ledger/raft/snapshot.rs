//! The file a raft snapshot is read from and received into: an unnamed temporary file in the
//! raft directory (gone when closed), so a snapshot travels and arrives in chunks on disk, not
//! as one buffer in memory. It refuses what only a hostile sender asks for: openraft seeks to
//! each received chunk's offset as the sender gives it, and a plain cursor grew to whatever
//! offset a peer named (2^50 aborted the process). Here a seek past the bytes received so far,
//! or growth past [`MAX_SNAPSHOT`], is an I/O error: that snapshot install fails and the node
//! goes on.

use std::io::{self, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncSeek, AsyncSeekExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// The largest snapshot a node accepts: far above any ledger weft keeps, far below memory.
pub const MAX_SNAPSHOT: u64 = 256 << 20;

/// A snapshot's bytes in a temporary file, bounded.
#[derive(Debug)]
pub struct SnapshotFile {
    file: File,
    /// Where the next read or write starts.
    position: u64,
    /// The bytes the file holds.
    len: u64,
}

impl SnapshotFile {
    /// An empty snapshot file in `dir`.
    pub fn create(dir: &Path) -> io::Result<Self> {
        Ok(Self::over(tempfile::tempfile_in(dir)?, 0))
    }

    /// The snapshot of `len` bytes that `file` holds, read from its start.
    pub fn over(file: std::fs::File, len: u64) -> Self {
        SnapshotFile {
            file: File::from_std(file),
            position: 0,
            len,
        }
    }

    /// The file, with every write done, at its start.
    pub async fn into_std(mut self) -> io::Result<(std::fs::File, u64)> {
        self.file.flush().await?;
        self.file.seek(SeekFrom::Start(0)).await?;
        Ok((self.file.into_std().await, self.len))
    }
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.file).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            self.position += (buf.filled().len() - before) as u64;
        }
        read
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let end = self.position.saturating_add(buf.len() as u64);
        if end > MAX_SNAPSHOT {
            return Poll::Ready(Err(refused(format!(
                "a snapshot larger than {MAX_SNAPSHOT} bytes is refused"
            ))));
        }
        let written = Pin::new(&mut self.file).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.position += n as u64;
            self.len = self.len.max(self.position);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let len = self.len;
        let target = match position {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        match target {
            Some(n) if n <= len => {
                Pin::new(&mut self.file).start_seek(SeekFrom::Start(n))?;
                // Counted from here: the file's own answer, idle, is where its last seek went.
                self.position = n;
                Ok(())
            }
            _ => Err(refused(format!(
                "a snapshot chunk may not skip past the {len} bytes received ({position:?})"
            ))),
        }
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        // Completes whatever the file has under way (a write, a seek).
        std::task::ready!(Pin::new(&mut self.file).poll_complete(cx))?;
        Poll::Ready(Ok(self.position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn chunks_in_order_and_resent_ones_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut snapshot = SnapshotFile::create(dir.path()).unwrap();
        snapshot.write_all(b"hello ").await.unwrap();
        snapshot.write_all(b"world").await.unwrap();
        snapshot.seek(SeekFrom::Start(6)).await.unwrap();
        snapshot.write_all(b"WORLD").await.unwrap();
        snapshot.seek(SeekFrom::Start(0)).await.unwrap();
        let mut text = String::new();
        snapshot.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello WORLD");
        let (mut file, len) = snapshot.into_std().await.unwrap();
        assert_eq!(len, 11);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"hello WORLD");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the file has no name in the directory"
        );
    }

    #[tokio::test]
    async fn a_chunk_far_past_the_received_bytes_is_refused_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let mut snapshot = SnapshotFile::create(dir.path()).unwrap();
        snapshot.write_all(b"abc").await.unwrap();
        let error = snapshot.seek(SeekFrom::Start(1 << 50)).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(snapshot.seek(SeekFrom::End(1)).await.is_err());
        assert_eq!(snapshot.seek(SeekFrom::End(0)).await.unwrap(), 3);
        assert_eq!(snapshot.seek(SeekFrom::Current(-1)).await.unwrap(), 2);
        snapshot.write_all(b"CD").await.unwrap();
        assert_eq!(snapshot.seek(SeekFrom::Current(0)).await.unwrap(), 4);
        let (file, len) = snapshot.into_std().await.unwrap();
        assert_eq!((file.metadata().unwrap().len(), len), (4, 4));
    }

    #[tokio::test]
    async fn a_refused_seek_leaves_the_count_where_the_writes_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut snapshot = SnapshotFile::create(dir.path()).unwrap();
        let big = vec![0u8; 1 << 20];
        snapshot.write_all(&big).await.unwrap();
        assert!(snapshot.seek(SeekFrom::Start(1 << 40)).await.is_err());
        snapshot.write_all(&big).await.unwrap();
        assert_eq!(
            snapshot.seek(SeekFrom::Current(0)).await.unwrap(),
            2 << 20,
            "a refused seek does not reset what counts toward the limit"
        );
    }

    #[tokio::test]
    async fn growth_past_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut snapshot = SnapshotFile::create(dir.path()).unwrap();
        snapshot.seek(SeekFrom::Start(0)).await.unwrap();
        let big = vec![0u8; 1 << 20];
        for _ in 0..(MAX_SNAPSHOT >> 20) {
            snapshot.write_all(&big).await.unwrap();
        }
        assert!(snapshot.write_all(b"x").await.is_err());
    }
}
