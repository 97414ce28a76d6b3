//! The staging area: the full content of every file changed locally and not yet uploaded lives in
//! `<staging dir>/<ino>`, written by the filesystem's write operations and read by the outbox replayer. A file
//! being copied up (the original fetched before a first partial write) is built in `<ino>.part` and renamed into
//! place, so `<ino>` is always whole. The directory is owner-only: it holds the user's unsent photos.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Uses (creating if needed, mode 0700) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Staging> {
        let dir = dir.into();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        Ok(Staging { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the staged content of `ino` lives.
    pub fn path(&self, ino: u64) -> PathBuf {
        self.dir.join(ino.to_string())
    }

    fn part_path(&self, ino: u64) -> PathBuf {
        self.dir.join(format!("{ino}.part"))
    }

    pub fn exists(&self, ino: u64) -> bool {
        self.path(ino).is_file()
    }

    /// Size of the staged content, `None` when nothing is staged.
    pub fn len(&self, ino: u64) -> io::Result<Option<u64>> {
        match std::fs::metadata(self.path(ino)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn options() -> OpenOptions {
        let mut o = OpenOptions::new();
        o.read(true).write(true).mode(0o600);
        o
    }

    /// Opens the staged content of `ino` for reading and writing.
    pub fn open_file(&self, ino: u64) -> io::Result<File> {
        Self::options().open(self.path(ino))
    }

    /// Starts `ino` over with empty content (creating or truncating).
    pub fn create_empty(&self, ino: u64) -> io::Result<File> {
        Self::options().create(true).truncate(true).open(self.path(ino))
    }

    /// A fresh `<ino>.part` to build a copy-up in; [`Staging::install_part`] moves it into place.
    pub fn create_part(&self, ino: u64) -> io::Result<File> {
        Self::options().create(true).truncate(true).open(self.part_path(ino))
    }

    pub fn install_part(&self, ino: u64) -> io::Result<()> {
        std::fs::rename(self.part_path(ino), self.path(ino))
    }

    /// Moves the staged content of `from` to `to` (replacing what `to` had).
    pub fn move_to(&self, from: u64, to: u64) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))
    }

    /// Forgets the staged content of `ino` (no error when there is none). Open handles keep reading it.
    pub fn remove(&self, ino: u64) {
        for p in [self.path(ino), self.part_path(ino)] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(ino, error = %e, "cannot remove a staged file");
                }
            }
        }
    }

    /// Starts writing `[offset, offset + len)` of a staged file to disk without waiting for it
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the sync at close has little left to wait for: a file copied
    /// in reaches the disk while it is written, not all at its close. A failure only loses that head start.
    pub fn write_behind(file: &File, offset: u64, len: usize) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor; no memory is passed.
        let rc = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "write-behind of a staged range not started");
        }
    }

    /// Flushes the staged content of `ino` and the directory entry to disk.
    pub fn sync(&self, ino: u64) -> io::Result<()> {
        match File::open(self.path(ino)) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Inodes with staged content (leftover `.part` files are removed).
    pub fn staged_inodes(&self) -> io::Result<Vec<u64>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".part") {
                if let Ok(ino) = stem.parse::<u64>() {
                    let _ = std::fs::remove_file(self.part_path(ino));
                }
            } else if let Ok(ino) = name.parse::<u64>() {
                out.push(ino);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, PermissionsExt};

    #[test]
    fn lifecycle() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Staging::open(tmp.path().join("staging")).unwrap();
        assert_eq!(std::fs::metadata(s.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(s.len(5).unwrap(), None);
        let f = s.create_empty(5).unwrap();
        f.write_all_at(b"hello", 3).unwrap();
        assert_eq!(s.len(5).unwrap(), Some(8));
        let p = s.create_part(6).unwrap();
        p.write_all_at(b"xy", 0).unwrap();
        assert!(!s.exists(6));
        s.install_part(6).unwrap();
        assert_eq!(std::fs::read(s.path(6)).unwrap(), b"xy");
        s.create_part(9).unwrap();
        assert_eq!(s.staged_inodes().unwrap(), vec![5, 6]);
        s.move_to(5, 6).unwrap();
        assert_eq!(std::fs::read(s.path(6)).unwrap(), b"\0\0\0hello");
        assert!(!s.exists(5));
        s.sync(6).unwrap();
        s.remove(6);
        s.remove(6);
        assert!(s.staged_inodes().unwrap().is_empty());
    }
}
