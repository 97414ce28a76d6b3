//! Process plumbing of a mount: running in the background until the mount answers (the parent waits on a
//! readiness pipe, then exits 0, or prints the child's one-line reason and exits 1), `sd_notify` readiness for
//! systemd `Type=notify`, waiting for SIGTERM/SIGINT, mount-point checks (missing, busy, a stale mount left by a
//! crash) and logging to `<cache>/<account>/galleryfs.log`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Environment variable carrying the readiness pipe's write end to the background child.
pub const READY_FD_ENV: &str = "GALLERYFS_READY_FD";

/// What the child reports through the readiness pipe.
#[derive(Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Failed(String),
    /// The child exited (or closed the pipe) without reporting.
    Vanished,
}

/// Re-executes this binary in the background with `args` (which must make it run in the foreground) and waits
/// until it reports readiness. `on_progress` receives the item counts of a first enumeration as they come.
pub fn spawn_background(args: &[String], mut on_progress: impl FnMut(u64)) -> std::io::Result<Readiness> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let exe = std::env::current_exe()?;
    let write_fd = write_end.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env(READY_FD_ENV, write_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            // A session of its own: the terminal closing must not kill the mount. Keep the pipe across exec.
            libc::setsid();
            let flags = libc::fcntl(write_fd, libc::F_GETFD);
            libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(write_end);
    let mut line = String::new();
    let mut reader = BufReader::new(std::fs::File::from(read_end));
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            let _ = child.try_wait();
            return Ok(Readiness::Vanished);
        }
        match line.trim_end().strip_prefix("PROGRESS ").and_then(|n| n.parse().ok()) {
            Some(items) => on_progress(items),
            None => break,
        }
    }
    let line = line.trim_end();
    Ok(if line == "READY" {
        Readiness::Ready
    } else if let Some(msg) = line.strip_prefix("FAILED ") {
        let _ = child.wait();
        Readiness::Failed(msg.to_string())
    } else {
        Readiness::Failed(line.to_string())
    })
}

/// The foreground side: reports progress and readiness to whoever waits (the parent through the pipe, systemd via
/// `NOTIFY_SOCKET`). Safe to call when neither is present; clones share the pipe.
#[derive(Clone)]
pub struct ReadyReporter {
    pipe: std::sync::Arc<parking_lot::Mutex<Option<std::fs::File>>>,
}

impl ReadyReporter {
    /// Takes the pipe named by [`READY_FD_ENV`], if any (and removes the variable so children don't inherit it).
    pub fn from_env() -> Self {
        let pipe = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .and_then(|fd| {
                // The fd is ours: the parent passed it on purpose and nothing else owns it.
                if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                    return None;
                }
                Some(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
            });
        unsafe { std::env::remove_var(READY_FD_ENV) };
        Self {
            pipe: std::sync::Arc::new(parking_lot::Mutex::new(pipe)),
        }
    }

    /// Items listed so far by a first enumeration (shown by the waiting `mount` command in a terminal).
    pub fn progress(&self, items: u64) {
        if let Some(p) = self.pipe.lock().as_mut() {
            let _ = p.write_all(format!("PROGRESS {items}\n").as_bytes());
        }
        sd_notify(&format!("STATUS=listing the gallery: {items} items"));
    }

    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.lock().take() {
            let _ = p.write_all(b"READY\n");
        }
        sd_notify("READY=1");
    }

    pub fn failed(&mut self, message: &str) {
        if let Some(mut p) = self.pipe.lock().take() {
            let one_line = message.replace('\n', " ");
            let _ = p.write_all(format!("FAILED {one_line}\n").as_bytes());
        }
        sd_notify(&format!("STATUS=failed: {}", message.replace('\n', " ")));
    }
}

/// Sends `state` to systemd when `NOTIFY_SOCKET` is set (abstract sockets start with `@`).
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if bytes.first() == Some(&b'@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), PathBuf::from(path))
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Why a mount point cannot be used, as one line with the fix.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("mount point {} is not a directory", path.display())),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            // A FUSE daemon died and left its mount behind ("transport endpoint is not connected").
            detach_stale(path)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "mount point {} does not exist; create it with: mkdir -p {}",
                path.display(),
                path.display()
            ))
        }
        Err(e) => return Err(format!("mount point {}: {e}", path.display())),
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| format!("mount point {}: {e}", path.display()))?;
    if is_mounted(&canonical) && answers_enotconn(&canonical) {
        // The kernel may still answer `stat` from its attribute cache after the daemon died; `statfs` always
        // asks the daemon.
        detach_stale(&canonical)?;
    }
    if is_mounted(&canonical) {
        return Err(format!(
            "mount point {} is busy: something is already mounted there (unmount it first: galleryfs unmount {})",
            canonical.display(),
            canonical.display()
        ));
    }
    Ok(canonical)
}

/// Whether the filesystem mounted at `path` answers "transport endpoint is not connected" (its daemon is gone;
/// a connection aborted with requests in flight answers "software caused connection abort").
fn answers_enotconn(path: &Path) -> bool {
    matches!(
        nix::sys::statfs::statfs(path),
        Err(nix::errno::Errno::ENOTCONN | nix::errno::Errno::ECONNABORTED)
    )
}

/// Lazily detaches the stale mount at `path` and says so in one line (the log when one is set up, and stderr:
/// `galleryfs mount` checks the mount point before any log exists).
fn detach_stale(path: &Path) -> Result<(), String> {
    let said = format!(
        "stale mount at {} left by a crashed daemon (transport endpoint is not connected): detached, mounting again",
        path.display()
    );
    tracing::warn!(mountpoint = %path.display(), "{said}");
    if nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok() {
        eprintln!("galleryfs: {said}");
        return Ok(());
    }
    let ok = Command::new("fusermount3")
        .arg("-uz")
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        eprintln!("galleryfs: {said}");
        Ok(())
    } else {
        Err(format!(
            "mount point {} holds a stale mount that could not be detached; run: fusermount3 -uz {}",
            path.display(),
            path.display()
        ))
    }
}

/// True when `path` (canonical) is a mount point listed in /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(want.as_ref()))
}

/// Whether `path` is inside a galleryfs mount: the innermost mount (by /proc/self/mountinfo) holding its canonical
/// path is of type `fuse.galleryfs`. Answers for paths that have no OneDrive item (the Timeline's folders).
pub fn in_galleryfs_mount(path: &Path) -> bool {
    let (Ok(full), Ok(info)) = (
        std::fs::canonicalize(path),
        std::fs::read_to_string("/proc/self/mountinfo"),
    ) else {
        return false;
    };
    let mut innermost: Option<(usize, bool)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(sep)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else {
            continue;
        };
        let point = unescape_mountinfo(point);
        if full.starts_with(&point) && innermost.is_none_or(|(len, _)| point.len() >= len) {
            innermost = Some((point.len(), fields.get(sep + 1) == Some(&"fuse.galleryfs")));
        }
    }
    innermost.is_some_and(|(_, ours)| ours)
}

/// Mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn umount2(path: &Path) -> nix::Result<()> {
    nix::mount::umount2(path, nix::mount::MntFlags::empty())
}

/// Checks the run-time needs of FUSE: `/dev/fuse`, and `fusermount3` for a non-root user.
pub fn check_fuse_available() -> Result<(), String> {
    fuse_requirements(
        Path::new("/dev/fuse"),
        nix::unistd::geteuid().is_root(),
        which("fusermount3").is_some(),
    )
}

/// The run-time needs of FUSE, decided from what is present: one line with the fix when something is missing.
pub fn fuse_requirements(dev_fuse: &Path, is_root: bool, has_fusermount3: bool) -> Result<(), String> {
    if !dev_fuse.exists() {
        return Err(format!(
            "{} is missing: load the fuse module (sudo modprobe fuse) or, in a container, pass --device /dev/fuse",
            dev_fuse.display()
        ));
    }
    if !is_root && !has_fusermount3 {
        return Err("fusermount3 is missing: install the fuse3 package (e.g. sudo apt install fuse3)".into());
    }
    Ok(())
}

/// Finds an executable on PATH (and in /sbin, /usr/sbin, /bin, /usr/bin for mount helpers without a PATH).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// How long an unmount refused as busy is retried: the daemon itself holds the mount's root open for the moment it
/// replays a round of remote changes for inotify watchers.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Unmounts `path`: `umount2` when permitted (root), else `fusermount3 -u`.
pub fn unmount(path: &Path) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut result = umount2(path);
    while result == Err(nix::errno::Errno::EBUSY) && started.elapsed() < BUSY_RETRY {
        std::thread::sleep(std::time::Duration::from_millis(100));
        result = umount2(path);
    }
    match result {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EINVAL) => return Err(format!("{} is not a mount point", path.display())),
        Err(nix::errno::Errno::EBUSY) => {
            return Err(format!(
                "{} is busy: close the files and shells using it (see: fuser -vm {})",
                path.display(),
                path.display()
            ))
        }
        Err(_) => {}
    }
    loop {
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(path)
            .output()
            .map_err(|e| format!("fusermount3: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !why.contains("busy") || started.elapsed() >= BUSY_RETRY {
            return Err(why);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/home/a\040b/Gallery"), "/home/a b/Gallery");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        // An escape at the very end (a mount point whose name ends with a space) is unescaped too.
        assert_eq!(unescape_mountinfo(r"/mnt/Gallery\040"), "/mnt/Gallery ");
        assert_eq!(unescape_mountinfo(r"/mnt/x\04"), r"/mnt/x\04");
        assert_eq!(unescape_mountinfo(r"\777\"), "?\\");
    }

    #[test]
    fn missing_mountpoint_message_has_the_fix() {
        let e = check_mountpoint(Path::new("/nonexistent/galleryfs-x")).unwrap_err();
        assert!(e.contains("mkdir -p /nonexistent/galleryfs-x"), "{e}");
    }

    #[test]
    fn fuse_requirement_messages_name_the_fix() {
        let e = fuse_requirements(Path::new("/nonexistent/fuse"), true, true).unwrap_err();
        assert!(
            e.contains("/nonexistent/fuse is missing") && e.contains("modprobe fuse"),
            "{e}"
        );
        let dev = tempfile::NamedTempFile::new().unwrap();
        let e = fuse_requirements(dev.path(), false, false).unwrap_err();
        assert!(
            e.contains("fusermount3 is missing") && e.contains("apt install fuse3"),
            "{e}"
        );
        assert!(
            fuse_requirements(dev.path(), true, false).is_ok(),
            "root mounts without fusermount3"
        );
        assert!(fuse_requirements(dev.path(), false, true).is_ok());
    }

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")));
        let d = tempfile::tempdir().unwrap();
        assert!(!is_mounted(d.path()));
    }
}
