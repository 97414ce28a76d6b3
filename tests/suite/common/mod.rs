//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod e2e;

/// Whether every test must run: `GALLERYFS_REQUIRE_ALL=1` (set by `scripts/test`, which CI runs). Under it a test
/// that cannot run here (no FUSE, a missing tool, user or sample) fails instead of passing without checking.
pub fn require_all() -> bool {
    std::env::var_os("GALLERYFS_REQUIRE_ALL").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports that the calling test (or part of it) checks nothing here, and why: a `SKIPPED` line on stderr, or a
/// panic under `GALLERYFS_REQUIRE_ALL=1`. The caller returns (or leaves the part out) afterwards.
#[track_caller]
pub fn skip(why: impl std::fmt::Display) {
    if require_all() {
        panic!("GALLERYFS_REQUIRE_ALL=1, and this test cannot run here: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Returns from the calling test after [`skip`]ping it (a failure under `GALLERYFS_REQUIRE_ALL=1`).
#[macro_export]
macro_rules! skip_test {
    ($($why:tt)*) => {{
        $crate::common::skip(format!($($why)*));
        return;
    }};
}

/// The sample photos and videos shipped with the tests: `tests/data/photos` (see its README for their sources).
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/photos")
}

/// The bytes of the sample `name`, or `None` after [`skip`] when it is absent.
#[track_caller]
pub fn sample(name: &str) -> Option<Vec<u8>> {
    let path = samples_dir().join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            skip(format!("sample {} is absent ({err})", path.display()));
            None
        }
    }
}

/// The path of an installed program (in PATH or ~/.cargo/bin).
pub fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Why FUSE tests cannot run here, if they cannot (no /dev/fuse, or not root and no fusermount3).
pub fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let root = nix::unistd::geteuid().is_root();
    if !root && Command::new("fusermount3").arg("--version").output().is_err() {
        return Some("not root and fusermount3 is not installed".into());
    }
    None
}

/// Skips the calling test ([`skip`]: a failure under `GALLERYFS_REQUIRE_ALL=1`) when FUSE is unavailable.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Some(why) = $crate::common::fuse_unavailable() {
            $crate::skip_test!("FUSE tests need /dev/fuse and root or fusermount3: {why}");
        }
    };
}

/// Runs a shell command line, returning its output.
pub fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("run sh")
}

/// Runs a shell command line and panics with its stderr unless it succeeds; returns stdout.
pub fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstatus: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command line that must fail; returns stderr.
pub fn sh_err(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(!out.status.success(), "command unexpectedly succeeded: {cmd}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
