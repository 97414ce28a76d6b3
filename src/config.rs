//! Where things live (contract: "Where things live") and the per-account settings `login` remembers.
//!
//! - configuration and tokens: `$GALLERYFS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/galleryfs`, else `~/.config/galleryfs`
//! - metadata store and caches: `$GALLERYFS_CACHE_DIR`, else `$XDG_CACHE_HOME/galleryfs`, else `~/.cache/galleryfs`
//!
//! Per account `NAME`: `<config>/accounts/NAME.json` (endpoints, client id, tenant, folder),
//! `<config>/accounts/NAME.tokens.json` (mode 0600), and `<cache>/NAME/` (store, content, thumbnails, log).

use crate::remote::Endpoints;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_ACCOUNT: &str = "default";

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> PathBuf {
    env_dir("HOME")
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The configuration directory.
pub fn config_dir() -> PathBuf {
    env_dir("GALLERYFS_CONFIG_DIR")
        .or_else(|| env_dir("XDG_CONFIG_HOME").map(|d| d.join("galleryfs")))
        .unwrap_or_else(|| home().join(".config").join("galleryfs"))
}

/// The cache directory (metadata store, content and thumbnail caches, logs).
pub fn cache_dir() -> PathBuf {
    env_dir("GALLERYFS_CACHE_DIR")
        .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("galleryfs")))
        .unwrap_or_else(|| home().join(".cache").join("galleryfs"))
}

/// Account names become file names: letters, digits, `-`, `_`, `.` (not leading), at most 64 bytes.
pub fn validate_account_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid account name {name:?}: use letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Paths of one account.
#[derive(Clone, Debug)]
pub struct AccountPaths {
    pub name: String,
    pub settings_file: PathBuf,
    pub token_file: PathBuf,
    pub cache_dir: PathBuf,
}

impl AccountPaths {
    pub fn new(name: &str) -> Self {
        Self::in_dirs(name, &config_dir(), &cache_dir())
    }

    pub fn in_dirs(name: &str, config: &Path, cache: &Path) -> Self {
        let accounts = config.join("accounts");
        Self {
            name: name.to_string(),
            settings_file: accounts.join(format!("{name}.json")),
            token_file: accounts.join(format!("{name}.tokens.json")),
            cache_dir: cache.join(name),
        }
    }

    pub fn log_file(&self) -> PathBuf {
        self.cache_dir.join("galleryfs.log")
    }
}

/// What `login` remembers about an account (no secrets: tokens live in their own 0600 file).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountSettings {
    #[serde(flatten)]
    pub endpoints: Endpoints,
    /// The gallery folder path from the drive root, when given explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

impl AccountSettings {
    pub fn load(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes atomically (temp file + rename), creating the directory with mode 0700.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("settings serialize");
        crate::private_file::write_private_atomic(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        assert!(validate_account_name("default").is_ok());
        assert!(validate_account_name("work-2").is_ok());
        assert!(validate_account_name("../x").is_err());
        assert!(validate_account_name("").is_err());
        assert!(validate_account_name(".hidden").is_err());
    }

    #[test]
    fn settings_round_trip_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = AccountPaths::in_dirs("a", dir.path(), dir.path());
        let s = AccountSettings {
            endpoints: Endpoints::default(),
            folder: Some("/Pictures/Samsung Gallery".into()),
        };
        s.save(&paths.settings_file).unwrap();
        assert_eq!(AccountSettings::load(&paths.settings_file).unwrap(), Some(s));
        let mode = std::fs::metadata(&paths.settings_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
