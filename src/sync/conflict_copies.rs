//! Conflict copies: when both sides changed a file, OneDrive's version keeps the name and the local version is
//! uploaded beside it as `NAME (conflict YYYY-MM-DD HOST).EXT` (contract, "Inside the mount"). This module names
//! them and decides whether OneDrive's version moved away from the baseline the local edit started from.

use super::server_names::NAME_MAX;
use crate::store::ItemRow;
use chrono::NaiveDate;

/// `name (conflict YYYY-MM-DD HOST).ext`, within [`NAME_MAX`] bytes (the stem is shortened, never the
/// extension or the marker). Characters OneDrive rejects are dropped from `host`.
pub fn conflict_name(name: &str, date: NaiveDate, host: &str) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let host: String = host
        .chars()
        .filter(|c| !matches!(c, '/' | '\\' | '*' | '<' | '>' | '?' | ':' | '|' | '"') && !c.is_control())
        .collect();
    let host = host.trim();
    let marker = if host.is_empty() {
        format!(" (conflict {})", date.format("%Y-%m-%d"))
    } else {
        format!(" (conflict {} {host})", date.format("%Y-%m-%d"))
    };
    let mut stem = stem.to_string();
    while stem.len() + marker.len() + ext.len() > NAME_MAX && !stem.is_empty() {
        stem.pop();
    }
    format!("{stem}{marker}{ext}")
}

/// This machine's name for conflict copies.
pub fn local_host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or_default().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "galleryfs".to_string())
}

/// What OneDrive says the file is now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteVersion {
    pub ctag: Option<String>,
    pub hash: Option<String>,
    pub size: u64,
}

/// Whether OneDrive's version differs from the baseline `row` last agreed on. The cTag decides when both are
/// known; a cTag change with the same quickXorHash and size is no conflict (metadata-only changes can move it);
/// without a cTag, the hash, then the size.
pub fn remote_moved_on(row: &ItemRow, remote: &RemoteVersion) -> bool {
    let same_content = match (&row.base_hash, &remote.hash) {
        (Some(a), Some(b)) => Some(a == b && row.base_size == Some(remote.size)),
        _ => None,
    };
    match (&row.base_ctag, &remote.ctag) {
        (Some(a), Some(b)) if a == b => false,
        (Some(_), Some(_)) => same_content != Some(true),
        _ => match same_content {
            Some(same) => !same,
            None => row.base_size.is_some_and(|s| s != remote.size),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ContentState, ItemKind};

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 14).unwrap()
    }

    #[test]
    fn names_keep_the_extension_and_fit() {
        assert_eq!(
            conflict_name("IMG_1.jpg", date(), "pixel"),
            "IMG_1 (conflict 2026-03-14 pixel).jpg"
        );
        assert_eq!(
            conflict_name("archive.tar.gz", date(), "h"),
            "archive.tar (conflict 2026-03-14 h).gz"
        );
        assert_eq!(conflict_name("README", date(), "h"), "README (conflict 2026-03-14 h)");
        assert_eq!(conflict_name(".hidden", date(), "h"), ".hidden (conflict 2026-03-14 h)");
        assert_eq!(
            conflict_name("a.jpg", date(), "bad:host"),
            "a (conflict 2026-03-14 badhost).jpg"
        );
        let long = format!("{}.jpg", "x".repeat(250));
        let named = conflict_name(&long, date(), "host");
        assert!(
            named.len() <= NAME_MAX && named.ends_with(" (conflict 2026-03-14 host).jpg"),
            "{named}"
        );
        assert!(!local_host_name().is_empty());
    }

    fn row(ctag: Option<&str>, hash: Option<&str>, size: u64) -> ItemRow {
        ItemRow {
            ino: 2,
            item_id: "X".into(),
            parent_ino: Some(1),
            name: "a.jpg".into(),
            name_key: "a.jpg".into(),
            kind: ItemKind::File,
            size: 1,
            etag: None,
            ctag: None,
            quick_xor_hash: None,
            mtime: 0,
            mime_type: None,
            is_media: true,
            pinned: false,
            content_state: ContentState::Dirty,
            local_only: false,
            base_ctag: ctag.map(Into::into),
            base_hash: hash.map(Into::into),
            base_size: Some(size),
            remote_removed: false,
            ctime: None,
            remote_mtime: None,
        }
    }

    fn remote(ctag: Option<&str>, hash: Option<&str>, size: u64) -> RemoteVersion {
        RemoteVersion {
            ctag: ctag.map(Into::into),
            hash: hash.map(Into::into),
            size,
        }
    }

    #[test]
    fn baseline_comparison() {
        let base = row(Some("c1"), Some("h1"), 10);
        assert!(!remote_moved_on(&base, &remote(Some("c1"), Some("h1"), 10)));
        assert!(remote_moved_on(&base, &remote(Some("c2"), Some("h2"), 10)));
        assert!(!remote_moved_on(&base, &remote(Some("c2"), Some("h1"), 10)));
        assert!(remote_moved_on(&base, &remote(Some("c2"), None, 10)));
        assert!(remote_moved_on(
            &row(None, Some("h1"), 10),
            &remote(None, Some("h2"), 10)
        ));
        assert!(remote_moved_on(&row(None, None, 10), &remote(None, None, 11)));
        assert!(!remote_moved_on(&row(None, None, 10), &remote(None, None, 10)));
    }
}
