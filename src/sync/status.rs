//! [`SyncStatus`]: what the sync engine knows about the connection to OneDrive (online, signed in, throttled,
//! gallery present, last and next sync, quota, thumbnail progress), shared between the engine, the thumbnail
//! fetcher and whoever reports it. [`StatusReport`] is the whole `galleryfs status --json` object (README.md): the
//! sync-owned fields plus the account, mount, outbox and cache facts the caller adds.

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `gallery` in `status --json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GalleryState {
    #[default]
    Ok,
    /// The gallery folder is gone from OneDrive (deleted or moved away); the local view is kept.
    Missing,
}

/// `camera_roll.state` in `status --json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraRollState {
    /// Found and followed.
    Ok,
    /// The drive has no Camera Roll (yet): nothing shown for it.
    #[default]
    Missing,
    /// `camera_roll=off`.
    Off,
}

/// `camera_roll` in `status --json`: where the Camera Roll shows in the mount (`/NAME`, or null while it shows
/// nowhere), its state and how many files it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraRollStatus {
    pub path: Option<String>,
    pub state: CameraRollState,
    pub items: u64,
}

/// `quota` in `status --json` (bytes; `state` as OneDrive reports it: normal, nearing, critical, exceeded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStatus {
    pub total: Option<i64>,
    pub used: Option<i64>,
    pub state: Option<String>,
}

/// `thumbnails` in `status --json`: items whose thumbnails (every seeded size) are ready, of the media items
/// OneDrive has thumbnails for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailProgress {
    pub ready: u64,
    pub total: u64,
}

/// The sync-owned fields of `status --json`, under their contract names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub gallery: GalleryState,
    pub online: bool,
    pub signed_in: bool,
    /// What the user must do, or null.
    pub message: Option<String>,
    pub quota: Option<QuotaStatus>,
    pub thumbnails: ThumbnailProgress,
    pub last_sync: Option<DateTime<Utc>>,
    pub next_sync: Option<DateTime<Utc>>,
    pub throttled_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub camera_roll: CameraRollStatus,
}

impl Default for StatusSnapshot {
    fn default() -> Self {
        StatusSnapshot {
            gallery: GalleryState::Ok,
            online: true,
            signed_in: true,
            message: None,
            quota: None,
            thumbnails: ThumbnailProgress::default(),
            last_sync: None,
            next_sync: None,
            throttled_until: None,
            camera_roll: CameraRollStatus::default(),
        }
    }
}

/// The shared, updatable status. When given a file, every update is also written there (JSON, atomically), so
/// `galleryfs status` in another process can read the daemon's view.
#[derive(Debug, Default)]
pub struct SyncStatus {
    current: RwLock<StatusSnapshot>,
    file: Option<PathBuf>,
}

impl SyncStatus {
    pub fn new() -> SyncStatus {
        SyncStatus::default()
    }

    /// A status that is also persisted to `file` after every update.
    pub fn persisted_to(file: impl Into<PathBuf>) -> SyncStatus {
        SyncStatus {
            current: RwLock::new(StatusSnapshot::default()),
            file: Some(file.into()),
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        self.current.read().clone()
    }

    /// Changes the status; writes the file when the status changed.
    pub fn update(&self, f: impl FnOnce(&mut StatusSnapshot)) {
        let changed = {
            let mut guard = self.current.write();
            let before = guard.clone();
            f(&mut guard);
            (*guard != before).then(|| guard.clone())
        };
        if let (Some(snapshot), Some(file)) = (changed, self.file.as_deref()) {
            if let Err(e) = save_json(file, &snapshot) {
                tracing::warn!(file = %file.display(), error = %e, "cannot write the status file");
            }
        }
    }

    /// Reads a status file written by [`SyncStatus::persisted_to`].
    pub fn load(file: &Path) -> std::io::Result<StatusSnapshot> {
        let bytes = std::fs::read(file)?;
        serde_json::from_slice(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

fn save_json(file: &Path, snapshot: &StatusSnapshot) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    crate::private_file::write_private_atomic(file, &json)
}

/// `outbox` in `status --json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStatus {
    pub pending: u64,
    pub uploads: u64,
    pub deletes: u64,
}

/// `cache` in `status --json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatus {
    pub used_bytes: u64,
    pub budget_bytes: u64,
}

/// The whole `status --json` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub account: String,
    pub mountpoint: Option<String>,
    pub folder: Option<String>,
    #[serde(flatten)]
    pub sync: StatusSnapshot,
    pub outbox: OutboxStatus,
    pub cache: CacheStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_contract_fields() {
        let sync = StatusSnapshot {
            gallery: GalleryState::Missing,
            message: Some("sign in again: galleryfs login --account a".into()),
            throttled_until: Some(DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z").unwrap().into()),
            ..StatusSnapshot::default()
        };
        let report = StatusReport {
            account: "a".into(),
            mountpoint: None,
            folder: Some("/Pictures/Samsung Gallery".into()),
            sync,
            outbox: OutboxStatus::default(),
            cache: CacheStatus::default(),
        };
        let v = serde_json::to_value(&report).unwrap();
        for key in [
            "account",
            "mountpoint",
            "folder",
            "gallery",
            "online",
            "signed_in",
            "message",
            "quota",
            "outbox",
            "cache",
            "thumbnails",
            "last_sync",
            "next_sync",
            "throttled_until",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["gallery"], "missing");
        assert_eq!(v["throttled_until"], "2026-01-02T03:04:05Z");
        assert_eq!(v["thumbnails"]["ready"], 0);
        assert_eq!(v["cache"]["budget_bytes"], 0);
        assert!(v["mountpoint"].is_null());
    }

    #[test]
    fn persisted_status_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.json");
        let status = SyncStatus::persisted_to(&file);
        status.update(|s| {
            s.online = false;
            s.thumbnails = ThumbnailProgress { ready: 3, total: 9 };
        });
        let loaded = SyncStatus::load(&file).unwrap();
        assert!(!loaded.online);
        assert_eq!(loaded.thumbnails.total, 9);
        assert_eq!(loaded, status.snapshot());
    }
}
