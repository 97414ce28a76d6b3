//! OneDrive Camera Backup as the phone apps do it: every new photo or video goes into the drive's Camera Roll
//! special folder (`special/cameraroll`, made on first write; peers.md §6). The Android app names a file after
//! its capture time, `20240315_142233.jpg`, directly in the folder; the iOS app files it under `YYYY/MM/` as
//! `20240315_142233123_iOS.heic`. Uploads get the `image`/`photo` (or `video`) facets with `takenDateTime`.

use super::blob::Blob;
use super::drive::{Conflict, ItemPatch, NewContent};
use super::errors::GraphResult;
use super::media::phone_photo::phone_photo;
use super::media::{Content, MediaKind};
use super::state::EmulatorState;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// Which phone app uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Android,
    Ios,
}

/// Folders below the Camera Roll and the file name Camera Backup gives a capture of `taken` with extension
/// `ext` (`jpg`, `heic`, `mp4`, …).
pub fn backup_path(platform: Platform, taken: DateTime<Utc>, ext: &str) -> (Vec<String>, String) {
    match platform {
        Platform::Android => (Vec::new(), format!("{}.{ext}", taken.format("%Y%m%d_%H%M%S"))),
        Platform::Ios => (
            vec![format!("{:04}", taken.year()), format!("{:02}", taken.month())],
            format!("{}_iOS.{ext}", taken.format("%Y%m%d_%H%M%S%3f")),
        ),
    }
}

/// A camera photo taken at `taken`: a real full-size phone JPEG with its EXIF date and camera
/// (see [`phone_photo`]), made from the source `variant` picks.
pub fn camera_photo(taken: DateTime<Utc>, variant: usize) -> Content {
    phone_photo(variant, taken.timestamp(), taken.timestamp() as u64 ^ variant as u64)
}

impl EmulatorState {
    /// Uploads one capture as Camera Backup does (see the module note); `content` defaults to a camera photo
    /// taken at `taken`. Returns the new item's id and its path from the drive root.
    pub fn camera_backup(
        &self,
        platform: Platform,
        taken: DateTime<Utc>,
        ext: &str,
        content: Option<Content>,
    ) -> GraphResult<(String, String)> {
        let now = Utc::now();
        let content = content.unwrap_or_else(|| camera_photo(taken, taken.timestamp() as usize));
        let (dirs, name) = backup_path(platform, taken, ext);
        let blob = Blob::Media(content);
        let hash = blob.compute_hash().ok();
        let mut new = NewContent::plain(blob, hash).with_facets(&name);
        let mime = new.mime.clone().unwrap_or_default();
        if matches!(new.media, MediaKind::Other) {
            // Facets the service derives from the file type when the bytes tell nothing (generated content).
            new.media = if mime.starts_with("video/") {
                MediaKind::Video {
                    width: 1920,
                    height: 1080,
                    duration_ms: 3000,
                }
            } else {
                MediaKind::Photo {
                    width: 4000,
                    height: 3000,
                    camera_make: String::new(),
                    camera_model: String::new(),
                }
            };
        }
        new.taken = Some(taken);
        let patch = ItemPatch {
            fs_created: Some(taken),
            fs_modified: Some(taken),
            ..Default::default()
        };
        let mut d = self.drive.lock();
        let roll = d.special("cameraroll", now)?;
        let parent = d.ensure_folders(roll, &dirs, now)?;
        let (no, _) = d.write_file(parent, &name, new, Conflict::Rename, &patch, now)?;
        Ok((d.id_of(no), format!("/{}", d.names_from_root(no).join("/"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_follow_the_apps() {
        let t = Utc.with_ymd_and_hms(2024, 3, 15, 14, 22, 33).unwrap() + chrono::Duration::milliseconds(123);
        assert_eq!(
            backup_path(Platform::Android, t, "jpg"),
            (vec![], "20240315_142233.jpg".to_string())
        );
        assert_eq!(
            backup_path(Platform::Ios, t, "heic"),
            (
                vec!["2024".to_string(), "03".to_string()],
                "20240315_142233123_iOS.heic".to_string()
            )
        );
    }
}
