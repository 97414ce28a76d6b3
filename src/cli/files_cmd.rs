//! `galleryfs pin|unpin|free PATH...` and `galleryfs status PATH... [--json]`: per-file commands that talk to the
//! running mount through its extended attributes (`user.galleryfs.pin`, `.free`, `.state`, `.id`,
//! `.cached_bytes`, `.taken`, `.photo`), so they need no other channel to the daemon. Pinning waits until the files are on this
//! device, with a progress bar in a terminal and silence in a pipe.

use crate::error::CliError;
use crate::fs::gallery::{XATTR_CACHED_BYTES, XATTR_FREE, XATTR_ID, XATTR_PHOTO, XATTR_PIN, XATTR_STATE, XATTR_TAKEN};
use std::ffi::CString;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long pinning waits without any progress before giving up (the files stay pinned).
const STALL_LIMIT: Duration = Duration::from_secs(120);

fn cpath(p: &Path) -> Result<CString, CliError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| CliError::usage(format!("{}: path contains NUL", p.display())))
}

/// Reads an extended attribute as a string.
pub fn get_xattr(path: &Path, name: &str) -> std::io::Result<String> {
    let p = cpath(path).map_err(|e| std::io::Error::other(e.message))?;
    let n = CString::new(name).expect("attribute name");
    let mut buf = vec![0u8; 256];
    loop {
        let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 16 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return Err(e);
    }
}

/// Sets an extended attribute.
pub fn set_xattr(path: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let p = cpath(path).map_err(|e| std::io::Error::other(e.message))?;
    let n = CString::new(name).expect("attribute name");
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn not_galleryfs(path: &Path, e: &std::io::Error) -> CliError {
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => {
            CliError::failure(format!("{} is not inside a galleryfs mount", path.display()))
        }
        _ => CliError::failure(format!("{}: {e}", path.display())),
    }
}

/// The paths of `pin`/`unpin`/`free`, checked against `--account` when given: the account must exist, be
/// mounted, and hold every path.
pub fn in_account(args: super::FilesArgs) -> Result<Vec<PathBuf>, CliError> {
    let Some(account) = &args.account else {
        return Ok(args.paths);
    };
    crate::config::validate_account_name(account).map_err(CliError::usage)?;
    let paths = crate::config::AccountPaths::new(account);
    super::status_cmd::require_account(&paths)?;
    let record = crate::mount::MountRecord::load_live(&paths).ok_or_else(|| {
        CliError::failure(format!(
            "account {account} is not mounted (galleryfs mount --account {account} MOUNTPOINT)"
        ))
    })?;
    let mountpoint = PathBuf::from(&record.mountpoint);
    for p in &args.paths {
        let full = std::fs::canonicalize(p).map_err(|e| CliError::failure(format!("{}: {e}", p.display())))?;
        if !full.starts_with(&mountpoint) {
            return Err(CliError::failure(format!(
                "{} is not in the mount of account {account} ({})",
                p.display(),
                mountpoint.display()
            )));
        }
    }
    Ok(args.paths)
}

/// One file of the request, with its size.
struct FileArg {
    path: PathBuf,
    size: u64,
}

/// Expands the arguments: files as they are, folders recursively (every file below them).
fn collect(paths: &[PathBuf], dirs_too: &mut Vec<PathBuf>) -> Result<Vec<FileArg>, CliError> {
    let (mut out, mut seen) = (Vec::new(), std::collections::HashSet::new());
    for p in paths {
        item_id(p)?;
        walk(p, &mut out, dirs_too, &mut seen)?;
    }
    Ok(out)
}

/// The OneDrive item id of `path`; `None` for a folder of the mount that is no OneDrive folder (the Timeline's);
/// an error outside a galleryfs mount.
fn item_id(p: &Path) -> Result<Option<String>, CliError> {
    match get_xattr(p, XATTR_ID) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) && p.is_dir() && crate::daemon::in_galleryfs_mount(p) => {
            Ok(None)
        }
        Err(e) => Err(not_galleryfs(p, &e)),
    }
}

/// Adds the files at and below `p` to `out`, each inode once (`seen`): a photo is in its album and in the Timeline.
fn walk(
    p: &Path,
    out: &mut Vec<FileArg>,
    dirs: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<u64>,
) -> Result<(), CliError> {
    let meta = std::fs::metadata(p).map_err(|e| CliError::failure(format!("{}: {e}", p.display())))?;
    if meta.is_dir() {
        // Only OneDrive folders carry a pin of their own (for files arriving later); a Timeline folder is its files.
        if get_xattr(p, XATTR_ID).is_ok() {
            dirs.push(p.to_path_buf());
        }
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .map_err(|e| CliError::failure(format!("{}: {e}", p.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out, dirs, seen)?;
        }
    } else if seen.insert(meta.ino()) {
        out.push(FileArg {
            path: p.to_path_buf(),
            size: meta.len(),
        });
    }
    Ok(())
}

fn cached_bytes(f: &FileArg) -> u64 {
    get_xattr(&f.path, XATTR_CACHED_BYTES)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(f.size)
}

pub fn pin(paths: Vec<PathBuf>) -> Result<(), CliError> {
    if paths.is_empty() {
        return Err(CliError::usage("usage: galleryfs pin PATH..."));
    }
    let mut dirs = Vec::new();
    let files = collect(&paths, &mut dirs)?;
    for d in &dirs {
        set_xattr(d, XATTR_PIN, "1").map_err(|e| not_galleryfs(d, &e))?;
    }
    for f in &files {
        set_xattr(&f.path, XATTR_PIN, "1").map_err(|e| not_galleryfs(&f.path, &e))?;
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("pinning {} files", files.len()));
        Some(bar)
    } else {
        None
    };
    let mut last = 0;
    let mut last_progress = Instant::now();
    loop {
        let done: u64 = files.iter().map(cached_bytes).sum();
        if let Some(b) = &bar {
            b.set_position(done);
        }
        if done >= total {
            if let Some(b) = &bar {
                b.finish_with_message(format!("pinned {} files", files.len()));
            }
            return Ok(());
        }
        if done > last {
            last = done;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_LIMIT {
            if let Some(b) = &bar {
                b.abandon();
            }
            return Err(CliError::failure(format!(
                "download stalled at {done} of {total} bytes (offline?); the files stay pinned and download when OneDrive is reachable"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn unpin(paths: Vec<PathBuf>) -> Result<(), CliError> {
    let mut dirs = Vec::new();
    let files = collect(&paths, &mut dirs)?;
    for p in dirs.iter().chain(files.iter().map(|f| &f.path)) {
        set_xattr(p, XATTR_PIN, "0").map_err(|e| not_galleryfs(p, &e))?;
    }
    Ok(())
}

pub fn free(paths: Vec<PathBuf>) -> Result<(), CliError> {
    let mut dirs = Vec::new();
    let files = collect(&paths, &mut dirs)?;
    for d in &dirs {
        set_xattr(d, XATTR_PIN, "0").map_err(|e| not_galleryfs(d, &e))?;
    }
    let mut freed = 0;
    let mut kept = Vec::new();
    for f in &files {
        let before = cached_bytes(f);
        match set_xattr(&f.path, XATTR_FREE, "1") {
            Ok(()) => freed += before,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => kept.push(f.path.display().to_string()),
            Err(e) => return Err(not_galleryfs(&f.path, &e)),
        }
    }
    eprintln!("freed {freed} bytes");
    if !kept.is_empty() {
        eprintln!(
            "kept {} file(s) not yet uploaded to OneDrive: {}",
            kept.len(),
            kept.join(", ")
        );
    }
    Ok(())
}

/// `status PATH...`: `{path, id, state, size, cached_bytes}` per path, and for photos and videos `taken` (the
/// capture date) and `photo` (OneDrive's photo facet: taken, camera, dimensions, location).
pub fn status_paths(paths: &[PathBuf], json: bool) -> Result<(), CliError> {
    let mut rows = Vec::new();
    for p in paths {
        let id = item_id(p)?;
        let meta = std::fs::metadata(p).map_err(|e| CliError::failure(format!("{}: {e}", p.display())))?;
        let (state, cached) = if meta.is_dir() {
            ("folder".to_string(), 0)
        } else {
            let state = get_xattr(p, XATTR_STATE).unwrap_or_else(|_| "cloud".into());
            let cached = get_xattr(p, XATTR_CACHED_BYTES)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64);
            (state, cached)
        };
        let mut row = serde_json::json!({
            "path": p.display().to_string(), "id": id, "state": state, "size": meta.len(), "cached_bytes": cached,
        });
        if let Ok(taken) = get_xattr(p, XATTR_TAKEN) {
            row["taken"] = taken.into();
            row["photo"] = get_xattr(p, XATTR_PHOTO)
                .ok()
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default();
        }
        rows.push(row);
    }
    for r in rows {
        if json {
            println!("{r}");
        } else {
            println!(
                "{}: {} ({} of {} on this device), id {}",
                r["path"].as_str().unwrap_or(""),
                r["state"].as_str().unwrap_or(""),
                super::status_cmd::human_bytes(r["cached_bytes"].as_u64().unwrap_or(0)),
                super::status_cmd::human_bytes(r["size"].as_u64().unwrap_or(0)),
                r["id"].as_str().unwrap_or("-")
            );
            if let Some(taken) = r["taken"].as_str() {
                let photo = &r["photo"];
                let camera = [&photo["camera_make"], &photo["camera_model"]]
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "  taken {taken}{}{}",
                    if camera.is_empty() {
                        String::new()
                    } else {
                        format!(", {camera}")
                    },
                    match (photo["width"].as_i64(), photo["height"].as_i64()) {
                        (Some(w), Some(h)) => format!(", {w}×{h}"),
                        _ => String::new(),
                    }
                );
            }
        }
    }
    Ok(())
}
