//! An end-to-end environment: the Graph emulator in-process, private config/cache/XDG directories, and the real
//! `galleryfs` binary run as a user would run it.
#![allow(dead_code)]

use galleryfs::emulator::{self, EmulatorConfig, EmulatorHandle};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub emu: Option<EmulatorHandle>,
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    /// Variables set for every `galleryfs` this environment runs (the daemon inherits them), e.g. `TZ`; the test
    /// process's own environment is never changed (the tests of the binary run in parallel threads).
    pub daemon_env: Vec<(String, String)>,
}

impl Env {
    pub fn start(seed_gallery: usize) -> Env {
        Env::start_with(EmulatorConfig {
            seed_gallery,
            auto_approve: true,
            ..Default::default()
        })
    }

    /// An environment whose emulator runs with `config`.
    pub fn start_with(config: EmulatorConfig) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt.block_on(emulator::start(config)).expect("emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("Gallery");
        std::fs::create_dir(&mnt).unwrap();
        let mnt = std::fs::canonicalize(mnt).unwrap();
        Env {
            rt,
            emu: Some(emu),
            dir,
            mnt,
            daemon_env: Vec::new(),
        }
    }

    pub fn emu(&self) -> &EmulatorHandle {
        self.emu.as_ref().expect("emulator running")
    }

    pub fn xdg_cache(&self) -> PathBuf {
        self.dir.path().join("xdg-cache")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Runs the galleryfs binary with this environment's directories.
    pub fn galleryfs(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_galleryfs"))
            .args(args)
            .env("GALLERYFS_CONFIG_DIR", self.dir.path().join("config"))
            .env("GALLERYFS_CACHE_DIR", self.cache_dir())
            .env("XDG_CACHE_HOME", self.xdg_cache())
            .env_remove("NOTIFY_SOCKET")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run galleryfs")
    }

    pub fn galleryfs_ok(&self, args: &[&str]) -> String {
        let out = self.galleryfs(args);
        assert!(
            out.status.success(),
            "galleryfs {args:?} failed ({}):\nstdout: {}\nstderr: {}\nlog: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `galleryfs login` against the emulator (device code, approved by the emulator at once).
    pub fn login(&self) {
        let emu = self.emu();
        self.galleryfs_ok(&[
            "login",
            "--graph-url",
            &emu.graph_url(),
            "--login-url",
            &emu.login_url(),
        ]);
    }

    pub fn mount(&self, options: &str) {
        let m = self.mnt.display().to_string();
        self.galleryfs_ok(&["mount", &m, "-o", options]);
    }

    pub fn unmount(&self) {
        let m = self.mnt.display().to_string();
        self.galleryfs_ok(&["unmount", &m]);
        // The daemon leaves once the session ends.
        wait_until(Duration::from_secs(10), || !is_mounted(&self.mnt));
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.galleryfs_ok(&["status", "--json"])).expect("status is JSON")
    }

    /// The gallery folder's path from the drive root in the emulator.
    pub fn gallery_root(&self) -> &'static str {
        "/Pictures/Samsung Gallery"
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(emu) = self.emu.take() {
            let _ = self.rt.block_on(emu.shutdown());
        }
    }
}

/// Whether `path` is a mount point in the calling thread's mount namespace (a test may enter its own).
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .map(|s| {
            s.lines()
                .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap_or("")))
        })
        .unwrap_or(false)
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}
