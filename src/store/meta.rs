//! The `meta` key-value table: small facts about the account's sync state (delta link, drive id, gallery item
//! id, last sync time).

use super::{Result, StoreTx};
use rusqlite::{params, OptionalExtension};

/// Well-known keys.
pub mod keys {
    /// The `@odata.deltaLink` of the last completed delta round, stored as received.
    pub const DELTA_LINK: &str = "delta_link";
    pub const DRIVE_ID: &str = "drive_id";
    /// The OneDrive id of the gallery folder (also on the root row).
    pub const GALLERY_ITEM_ID: &str = "gallery_item_id";
    /// The `folder=` setting the gallery was looked up with (normalized; empty for the default lookup).
    pub const GALLERY_FOLDER: &str = "gallery_folder";
    /// The Camera Roll's OneDrive id and the inode of its folder row (a nested tree root: store/roots.rs).
    pub const CAMERA_ROLL_ITEM_ID: &str = "camera_roll_item_id";
    pub const CAMERA_ROLL_INO: &str = "camera_roll_ino";
    /// The `@odata.deltaLink` of the Camera Roll's tree.
    pub const CAMERA_ROLL_DELTA_LINK: &str = "camera_roll_delta_link";
    /// Folders an applied incremental round brought into the gallery's tree and that are not listed yet (JSON,
    /// written with the round's delta link, removed with the listing).
    pub const PENDING_LISTING: &str = "pending_listing";
    /// The same for the Camera Roll's tree.
    pub const CAMERA_ROLL_PENDING_LISTING: &str = "camera_roll_pending_listing";
    /// RFC 3339 time of the last completed delta round.
    pub const LAST_SYNC: &str = "last_sync";
}

impl StoreTx<'_> {
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2")?
            .execute(params![key, value])?;
        Ok(())
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.exec("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Every (key, value) whose key starts with `prefix`, by key.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")?;
        let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn set_overwrite_delete() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.delta_link().unwrap(), None);
        s.set_delta_link("https://x/delta?token=1").unwrap();
        s.set_delta_link("https://x/delta?token=2").unwrap();
        assert_eq!(s.delta_link().unwrap().as_deref(), Some("https://x/delta?token=2"));
        s.delete_meta(super::keys::DELTA_LINK).unwrap();
        assert_eq!(s.delta_link().unwrap(), None);
    }

    #[test]
    fn lists_by_prefix() {
        let s = Store::open_in_memory().unwrap();
        s.set_meta("sent:2", "b").unwrap();
        s.set_meta("sent:1", "a").unwrap();
        s.set_meta("sentinel", "x").unwrap();
        s.set_meta("other", "y").unwrap();
        let got = s.meta_with_prefix("sent:").unwrap();
        assert_eq!(got, vec![("sent:1".into(), "a".into()), ("sent:2".into(), "b".into())]);
    }
}
