//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Why FUSE tests cannot run here, if they cannot (no /dev/fuse, or not root and no fusermount3).
pub mod e2e;

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

/// Skips the calling test with a plain message when FUSE is unavailable.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if let Some(why) = common::fuse_unavailable() {
            eprintln!("SKIPPED: FUSE tests need /dev/fuse and root or fusermount3: {why}");
            return;
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
