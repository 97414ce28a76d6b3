//! [`PassthroughFs`]: an [`FsCore`] that mirrors a local directory. It is the "passthrough FUSE" reference the
//! benchmarks measure galleryfs against in the same run, and it lets the FUSE adapter be tested through a real
//! mount independently of OneDrive. Inodes are assigned on first sight and kept in memory.

use super::core::{FsCore, FsResult};
use super::error::FsError;
use super::types::*;
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::from_secs(1);

pub struct PassthroughFs {
    base: PathBuf,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, File>>,
    next_fh: AtomicU64,
}

#[derive(Default)]
struct Inodes {
    by_ino: HashMap<Ino, PathBuf>,
    by_path: HashMap<PathBuf, Ino>,
    next: Ino,
}

impl Inodes {
    fn ino_for(&mut self, rel: &Path) -> Ino {
        if let Some(i) = self.by_path.get(rel) {
            return *i;
        }
        self.next += 1;
        let ino = self.next;
        self.by_ino.insert(ino, rel.to_path_buf());
        self.by_path.insert(rel.to_path_buf(), ino);
        ino
    }

    fn rename(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, Ino)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        if let Some(old) = self.by_path.remove(to) {
            self.by_ino.remove(&old);
        }
        for (p, ino) in moved {
            self.by_path.remove(&p);
            let rest = p.strip_prefix(from).expect("prefix");
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            self.by_ino.insert(ino, new.clone());
            self.by_path.insert(new, ino);
        }
    }

    fn remove(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel) {
            self.by_ino.remove(&ino);
        }
    }
}

fn io_err(e: std::io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => FsError::NotFound,
        Some(libc::EEXIST) => FsError::Exists,
        Some(libc::ENOTDIR) => FsError::NotDir,
        Some(libc::EISDIR) => FsError::IsDir,
        Some(libc::ENOTEMPTY) => FsError::NotEmpty,
        Some(libc::ENAMETOOLONG) => FsError::NameTooLong,
        Some(libc::ENOSPC) => FsError::NoSpace {
            reason: "local disk full".into(),
        },
        _ => FsError::io(e.to_string()),
    }
}

fn attr_of(ino: Ino, m: &Metadata) -> Attr {
    Attr {
        ino,
        kind: if m.is_dir() {
            FileKind::Directory
        } else {
            FileKind::File
        },
        size: m.len(),
        mtime: whole_seconds(m.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
        ctime: whole_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64)),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
    }
}

fn entry_of(attr: Attr) -> Entry {
    Entry {
        attr,
        attr_ttl: TTL,
        entry_ttl: TTL,
        generation: 0,
    }
}

impl PassthroughFs {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        let mut inodes = Inodes {
            next: ROOT_INO,
            ..Default::default()
        };
        inodes.by_ino.insert(ROOT_INO, PathBuf::new());
        inodes.by_path.insert(PathBuf::new(), ROOT_INO);
        Self {
            base: base.into(),
            inodes: Mutex::new(inodes),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn rel(&self, ino: Ino) -> FsResult<PathBuf> {
        self.inodes.lock().by_ino.get(&ino).cloned().ok_or(FsError::NotFound)
    }

    fn child_rel(&self, parent: Ino, name: &OsStr) -> FsResult<PathBuf> {
        if name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(FsError::InvalidArgument("bad name".into()));
        }
        Ok(self.rel(parent)?.join(name))
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.base.join(rel)
    }

    fn entry_for(&self, rel: &Path) -> FsResult<Entry> {
        let m = std::fs::symlink_metadata(self.full(rel)).map_err(io_err)?;
        let ino = self.inodes.lock().ino_for(rel);
        Ok(entry_of(attr_of(ino, &m)))
    }

    fn add_handle(&self, f: File) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(fh, f);
        fh
    }

    fn with_file<T>(&self, fh: u64, f: impl FnOnce(&File) -> std::io::Result<T>) -> FsResult<T> {
        let files = self.files.lock();
        let file = files.get(&fh).ok_or(FsError::BadHandle)?;
        f(file).map_err(io_err)
    }
}

fn to_system_time(t: SetTime) -> SystemTime {
    match t {
        SetTime::Now => SystemTime::now(),
        SetTime::At(t) => t,
    }
}

#[async_trait]
impl FsCore for PassthroughFs {
    async fn lookup(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        let rel = self.child_rel(parent, name)?;
        self.entry_for(&rel)
    }

    async fn getattr(&self, ino: Ino) -> FsResult<(Attr, Duration)> {
        let rel = self.rel(ino)?;
        let m = std::fs::symlink_metadata(self.full(&rel)).map_err(io_err)?;
        Ok((attr_of(ino, &m), TTL))
    }

    async fn setattr(&self, _caller: Caller, ino: Ino, set: SetAttr) -> FsResult<(Attr, Duration)> {
        let path = self.full(&self.rel(ino)?);
        if let Some(size) = set.size {
            let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(io_err)?;
            f.set_len(size).map_err(io_err)?;
        }
        if set.mtime.is_some() || set.atime.is_some() {
            let f = File::options()
                .write(true)
                .open(&path)
                .or_else(|_| File::open(&path))
                .map_err(io_err)?;
            let mut times = std::fs::FileTimes::new();
            if let Some(t) = set.mtime {
                times = times.set_modified(to_system_time(t));
            }
            if let Some(t) = set.atime {
                times = times.set_accessed(to_system_time(t));
            }
            f.set_times(times).map_err(io_err)?;
        }
        if let Some(mode) = set.mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(io_err)?;
        }
        self.getattr(ino).await
    }

    async fn readdir(&self, ino: Ino, _fh: u64, offset: u64, max: usize, plus: bool) -> FsResult<Vec<DirEntry>> {
        let rel = self.rel(ino)?;
        let mut names: Vec<OsString> = std::fs::read_dir(self.full(&rel))
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        let mut out = Vec::new();
        let all = [OsString::from("."), OsString::from("..")].into_iter().chain(names);
        for (i, name) in all.enumerate().skip(offset as usize).take(max) {
            let next = i as u64 + 1;
            if name == "." || name == ".." {
                out.push(DirEntry {
                    ino,
                    name,
                    kind: FileKind::Directory,
                    offset: next,
                    entry: None,
                });
                continue;
            }
            let child = rel.join(&name);
            let Ok(entry) = self.entry_for(&child) else { continue };
            out.push(DirEntry {
                ino: entry.attr.ino,
                name,
                kind: entry.attr.kind,
                offset: next,
                entry: plus.then_some(entry),
            });
        }
        Ok(out)
    }

    async fn open(&self, _caller: Caller, ino: Ino, mode: OpenMode) -> FsResult<Opened> {
        let path = self.full(&self.rel(ino)?);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(mode.write)
            .truncate(mode.truncate && mode.write)
            .open(path)
            .map_err(io_err)?;
        Ok(Opened {
            fh: self.add_handle(f),
            keep_cache: false,
            direct_io: false,
            fetched_on_read: false,
        })
    }

    async fn read(&self, _ino: Ino, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        self.with_file(fh, |f| {
            let mut buf = vec![0u8; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                let n = f.read_at(&mut buf[filled..], offset + filled as u64)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
    }

    async fn write(&self, _ino: Ino, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.with_file(fh, |f| f.write_all_at(data, offset).map(|_| data.len() as u32))
    }

    async fn fsync(&self, _ino: Ino, fh: u64, datasync: bool) -> FsResult<()> {
        self.with_file(fh, |f| if datasync { f.sync_data() } else { f.sync_all() })
    }

    async fn release(&self, _ino: Ino, fh: u64) -> FsResult<()> {
        self.files.lock().remove(&fh);
        Ok(())
    }

    async fn create(&self, _caller: Caller, parent: Ino, name: &OsStr, mode: OpenMode) -> FsResult<(Entry, Opened)> {
        let rel = self.child_rel(parent, name)?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(mode.truncate)
            .create_new(mode.exclusive)
            .mode(0o644)
            .open(self.full(&rel))
            .map_err(io_err)?;
        let entry = self.entry_for(&rel)?;
        Ok((
            entry,
            Opened {
                fh: self.add_handle(f),
                keep_cache: false,
                direct_io: false,
                fetched_on_read: false,
            },
        ))
    }

    async fn mkdir(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        let rel = self.child_rel(parent, name)?;
        std::fs::create_dir(self.full(&rel)).map_err(io_err)?;
        self.entry_for(&rel)
    }

    async fn unlink(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<()> {
        let rel = self.child_rel(parent, name)?;
        std::fs::remove_file(self.full(&rel)).map_err(io_err)?;
        self.inodes.lock().remove(&rel);
        Ok(())
    }

    async fn rmdir(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<()> {
        let rel = self.child_rel(parent, name)?;
        std::fs::remove_dir(self.full(&rel)).map_err(io_err)?;
        self.inodes.lock().remove(&rel);
        Ok(())
    }

    async fn rename(
        &self,
        _caller: Caller,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> FsResult<()> {
        let from = self.child_rel(parent, name)?;
        let to = self.child_rel(new_parent, new_name)?;
        if noreplace && std::fs::symlink_metadata(self.full(&to)).is_ok() {
            return Err(FsError::Exists);
        }
        std::fs::rename(self.full(&from), self.full(&to)).map_err(io_err)?;
        self.inodes.lock().rename(&from, &to);
        Ok(())
    }

    async fn statfs(&self) -> FsResult<Statfs> {
        let s = nix::sys::statvfs::statvfs(&self.base).map_err(|e| FsError::io(e.to_string()))?;
        Ok(Statfs {
            blocks: s.blocks(),
            bfree: s.blocks_free(),
            bavail: s.blocks_available(),
            files: s.files(),
            ffree: s.files_free(),
            bsize: s.block_size() as u32,
            namelen: 255,
            frsize: s.fragment_size() as u32,
        })
    }
}
