//! Stored bytes of the emulated drive's files: media content (in memory or generated from a seed) or uploads
//! spooled to a temporary directory, and the writer that receives uploads (memory first, a file past a
//! threshold) while computing their quickXorHash once.

use super::media::Content;
use super::quickxor::QuickXor;
use bytes::Bytes;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Uploads larger than this are spooled to disk.
pub const SPOOL_THRESHOLD: usize = 4 * 1024 * 1024;

/// The bytes of one content version. Cloning is cheap; a spooled file lives while any clone does.
#[derive(Clone, Debug)]
pub enum Blob {
    Media(Content),
    Spooled(Arc<SpoolFile>),
}

/// A file in the spool directory, removed when the last reference goes.
#[derive(Debug)]
pub struct SpoolFile {
    pub path: PathBuf,
    pub len: u64,
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Blob {
    pub fn bytes(b: impl Into<Bytes>) -> Self {
        Blob::Media(Content::Bytes(b.into()))
    }

    pub fn len(&self) -> u64 {
        match self {
            Blob::Media(c) => c.len(),
            Blob::Spooled(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `[start, end)`, clamped to the length.
    pub fn read_range(&self, start: u64, end: u64) -> std::io::Result<Bytes> {
        match self {
            Blob::Media(c) => Ok(c.read_range(start, end)),
            Blob::Spooled(f) => {
                let end = end.min(f.len);
                let start = start.min(end);
                let mut file = File::open(&f.path)?;
                file.seek(SeekFrom::Start(start))?;
                let mut buf = vec![0u8; (end - start) as usize];
                file.read_exact(&mut buf)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// The whole content as media [`Content`] (for thumbnail rendering); `None` when spooled and over `limit`.
    pub fn as_content(&self, limit: u64) -> Option<Content> {
        match self {
            Blob::Media(c) => Some(c.clone()),
            Blob::Spooled(f) if f.len <= limit => self.read_range(0, f.len).ok().map(Content::Bytes),
            Blob::Spooled(_) => None,
        }
    }

    /// quickXorHash of the whole content, read in chunks.
    pub fn compute_hash(&self) -> std::io::Result<String> {
        let mut h = QuickXor::default();
        let len = self.len();
        let mut at = 0;
        while at < len {
            let end = (at + 4 * 1024 * 1024).min(len);
            h.update(&self.read_range(at, end)?);
            at = end;
        }
        Ok(h.finish())
    }
}

/// Receives an upload in order: memory up to [`SPOOL_THRESHOLD`], then a file in `dir`.
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    mem: Vec<u8>,
    file: Option<(File, PathBuf)>,
    len: u64,
    hasher: QuickXor,
}

impl SpoolWriter {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            mem: Vec::new(),
            file: None,
            len: 0,
            hasher: QuickXor::default(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        if self.file.is_none() && self.mem.len() + data.len() > SPOOL_THRESHOLD {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(format!("spool-{}", uuid::Uuid::new_v4()));
            let mut f = File::create(&path)?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some((f, path));
        }
        match &mut self.file {
            Some((f, _)) => f.write_all(data),
            None => {
                self.mem.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// The received content and its quickXorHash.
    pub fn finish(mut self) -> std::io::Result<(Blob, String)> {
        let hash = self.hasher.finish();
        match self.file.take() {
            Some((mut f, path)) => {
                f.flush()?;
                Ok((Blob::Spooled(Arc::new(SpoolFile { path, len: self.len })), hash))
            }
            None => Ok((Blob::bytes(std::mem::take(&mut self.mem)), hash)),
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spools_past_threshold_and_hashes_once() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..SPOOL_THRESHOLD + 1000).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = SpoolWriter::new(dir.path());
        for chunk in data.chunks(333_333) {
            w.write(chunk).unwrap();
        }
        // finish() moves the file out; Drop of the writer must not delete it then.
        let (blob, hash) = w.finish().unwrap();
        assert!(matches!(blob, Blob::Spooled(_)));
        assert_eq!(hash, QuickXor::of(&data));
        assert_eq!(blob.compute_hash().unwrap(), hash);
        assert_eq!(&blob.read_range(10, 20).unwrap()[..], &data[10..20]);
        let path = match &blob {
            Blob::Spooled(f) => f.path.clone(),
            _ => unreachable!(),
        };
        assert!(path.exists());
        drop(blob);
        assert!(!path.exists(), "spool file removed with its last reference");
    }

    #[test]
    fn small_uploads_stay_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpoolWriter::new(dir.path());
        w.write(b"hello").unwrap();
        let (blob, hash) = w.finish().unwrap();
        assert!(matches!(blob, Blob::Media(_)));
        assert_eq!(hash, QuickXor::of(b"hello"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
