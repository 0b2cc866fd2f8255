//! A snapshot as openraft moves it: a file on disk that the leader reads and a follower writes one
//! chunk at a time, so a snapshot never has to fit in memory. It remembers its path, so that the
//! state machine can move a received file into place once the last chunk has arrived.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// Opens the snapshot at `path` to be read (and sent).
    pub async fn open(path: &Path) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: tokio::fs::File::open(path).await?,
            path: path.to_path_buf(),
        })
    }

    /// Creates an empty file at `path` (replacing any) for a snapshot being received.
    pub async fn create(path: &Path) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: tokio::fs::File::create(path).await?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for every write to reach the disk, then closes the file.
    pub async fn sync_and_close(self) -> io::Result<PathBuf> {
        self.file.sync_all().await?;
        Ok(self.path)
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    #[tokio::test]
    async fn chunks_written_at_their_offsets_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("receiving.db");
        let mut received = SnapshotFile::create(&path).await.unwrap();
        received.write_all(b"first ").await.unwrap();
        // A chunk sent again after a lost reply lands where it did the first time.
        received.seek(io::SeekFrom::Start(0)).await.unwrap();
        received.write_all(b"first second").await.unwrap();
        received.shutdown().await.unwrap();
        assert_eq!(received.path(), path);
        let closed = received.sync_and_close().await.unwrap();

        let mut sent = SnapshotFile::open(&closed).await.unwrap();
        assert_eq!(sent.seek(io::SeekFrom::End(0)).await.unwrap(), 12);
        sent.seek(io::SeekFrom::Start(6)).await.unwrap();
        let mut rest = String::new();
        sent.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "second");
    }
}
