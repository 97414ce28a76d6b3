//! The per-account token file (`AccountPaths::token_file`): JSON with the access token, its absolute expiry,
//! the refresh token and the granted scope. Written atomically with mode 0600; every read refuses a file whose
//! mode lets group or others in ([`AuthError::InsecureTokenFile`]). Token values never reach `Debug` or logs.

use super::AuthError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the token file holds.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTokens {
    pub access_token: String,
    /// Absolute expiry of `access_token`.
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Space-separated scopes granted (the token response's `scope`).
    #[serde(default)]
    pub scope: String,
}

impl StoredTokens {
    /// Seconds the access token is still valid for (negative once expired).
    pub fn seconds_left(&self) -> i64 {
        (self.expires_at - Utc::now()).num_seconds()
    }

    /// True while the access token has more than `margin` left.
    pub fn valid_for(&self, margin: std::time::Duration) -> bool {
        self.seconds_left() > margin.as_secs() as i64
    }
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("scope", &self.scope)
            .finish()
    }
}

/// The token file of one account.
#[derive(Clone, Debug)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_error(&self, reason: impl std::fmt::Display) -> AuthError {
        AuthError::TokenFile {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Reads the tokens; `Ok(None)` when there is no file. Refuses a file readable or writable by group or
    /// others (checked on the opened file, so a swap after the check cannot slip through).
    pub fn load(&self) -> Result<Option<StoredTokens>, AuthError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.file_error(e)),
        };
        let meta = file.metadata().map_err(|e| self.file_error(e))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(AuthError::InsecureTokenFile {
                path: self.path.display().to_string(),
                mode,
            });
        }
        if !meta.is_file() {
            return Err(self.file_error("not a regular file"));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| self.file_error(e))?;
        // serde_json's message names a line and column, never the content.
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.file_error(format!("unreadable ({e}); run galleryfs login again")))
    }

    /// Writes the tokens atomically with mode 0600 (directory 0700).
    pub fn save(&self, tokens: &StoredTokens) -> Result<(), AuthError> {
        let json = serde_json::to_vec_pretty(tokens).map_err(|e| self.file_error(e))?;
        crate::private_file::write_private_atomic(&self.path, &json).map_err(|e| self.file_error(e))
    }

    /// Deletes the file; `Ok(false)` when there was none.
    pub fn delete(&self) -> Result<bool, AuthError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.file_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredTokens {
        StoredTokens {
            access_token: "at-secret".into(),
            expires_at: Utc::now() + chrono::Duration::seconds(3599),
            refresh_token: Some("rt-secret".into()),
            scope: "Files.ReadWrite offline_access".into(),
        }
    }

    #[test]
    fn round_trip_and_debug_hides_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("accounts/a.tokens.json"));
        assert_eq!(store.load().unwrap(), None);
        let t = sample();
        store.save(&t).unwrap();
        assert_eq!(store.load().unwrap(), Some(t.clone()));
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(store.delete().unwrap());
        assert!(!store.delete().unwrap());
    }

    #[test]
    fn group_readable_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("t.json"));
        store.save(&sample()).unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
        match store.load() {
            Err(AuthError::InsecureTokenFile { mode, .. }) => assert_eq!(mode, 0o640),
            other => panic!("{other:?}"),
        }
    }
}
