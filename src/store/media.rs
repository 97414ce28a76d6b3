//! The `media` table: what OneDrive tells of a photo or video beyond its file facet (the `photo`, `image`/`video`
//! and `location` facets, and `fileSystemInfo.createdDateTime`), one row per media file, replaced whenever a
//! listing or delta round reports the item. The capture date the Timeline and `user.galleryfs.taken` use is
//! derived from it (see `crate::sync::capture_date`).

use super::{Result, StoreTx};
use rusqlite::{params, OptionalExtension};

/// The facets of one media file. Times are Unix seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaFacet {
    /// `photo.takenDateTime`.
    pub taken: Option<i64>,
    /// `fileSystemInfo.createdDateTime` (else the item's `createdDateTime`).
    pub created: Option<i64>,
    pub camera_make: Option<String>,
    pub camera_model: Option<String>,
    /// From the `image` facet, else the `video` facet.
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub altitude: Option<f64>,
}

/// A media file as the Timeline places it: inode, name and its facet (if any was reported).
#[derive(Clone, Debug)]
pub struct MediaEntry {
    pub ino: u64,
    pub name: String,
    pub mtime: i64,
    pub facet: Option<MediaFacet>,
}

const FACET_COLUMNS: &str = "taken, created, camera_make, camera_model, width, height, latitude, longitude, altitude";

fn facet_from(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<MediaFacet> {
    Ok(MediaFacet {
        taken: row.get(at)?,
        created: row.get(at + 1)?,
        camera_make: row.get(at + 2)?,
        camera_model: row.get(at + 3)?,
        width: row.get(at + 4)?,
        height: row.get(at + 5)?,
        latitude: row.get(at + 6)?,
        longitude: row.get(at + 7)?,
        altitude: row.get(at + 8)?,
    })
}

impl StoreTx<'_> {
    /// Records the facets of `ino`; returns whether they differ from what was recorded.
    pub fn set_media(&self, ino: u64, f: &MediaFacet) -> Result<bool> {
        if self.media(ino)?.as_ref() == Some(f) {
            return Ok(false);
        }
        self.conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO media (ino, {FACET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                ino as i64,
                f.taken,
                f.created,
                f.camera_make,
                f.camera_model,
                f.width,
                f.height,
                f.latitude,
                f.longitude,
                f.altitude
            ])?;
        Ok(true)
    }

    /// The recorded facets of `ino`.
    pub fn media(&self, ino: u64) -> Result<Option<MediaFacet>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {FACET_COLUMNS} FROM media WHERE ino = ?1"))?
            .query_row([ino as i64], |r| facet_from(r, 0))
            .optional()?)
    }

    /// Every media file of the store (photos and videos, wherever they are), with its facets.
    pub fn media_entries(&self) -> Result<Vec<MediaEntry>> {
        // Only files below folders reachable from the root: not those of a retired tree root (an earlier Camera
        // Roll kept for its journalled changes) nor of other detached folders.
        let mut stmt = self.conn.prepare_cached(&format!(
            "WITH RECURSIVE shown(ino) AS (SELECT ?1 UNION ALL SELECT d.ino FROM items d JOIN shown ON \
             d.parent_ino = shown.ino WHERE d.kind = 1) \
             SELECT i.ino, i.name, i.mtime, m.ino, {} FROM shown JOIN items i ON i.parent_ino = shown.ino \
             LEFT JOIN media m ON m.ino = i.ino \
             WHERE i.is_media = 1 AND i.kind = 0 AND i.remote_removed = 0",
            FACET_COLUMNS
                .split(", ")
                .map(|c| format!("m.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        let rows = stmt.query_map([super::ROOT_INO as i64], |r| {
            let has: Option<i64> = r.get(3)?;
            Ok(MediaEntry {
                ino: r.get::<_, i64>(0)? as u64,
                name: r.get(1)?,
                mtime: r.get(2)?,
                facet: match has {
                    Some(_) => Some(facet_from(r, 4)?),
                    None => None,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ContentState, ItemKind, NewItem, Store, ROOT_INO};

    /// A remote item of the store (`id-NAME`).
    fn item(parent_ino: u64, name: &str, kind: ItemKind, is_media: bool) -> NewItem {
        NewItem {
            item_id: format!("id-{name}"),
            parent_ino,
            name: name.into(),
            kind,
            size: u64::from(kind == ItemKind::File),
            etag: None,
            ctag: None,
            quick_xor_hash: None,
            mtime: 7,
            mime_type: None,
            is_media,
            content_state: ContentState::Cloud,
            local_only: false,
        }
    }

    #[test]
    fn facets_are_kept_replaced_and_listed_with_media_files() {
        let s = Store::open_in_memory().unwrap();
        let new = |name: &str, is_media: bool| item(ROOT_INO, name, ItemKind::File, is_media);
        let photo = s.insert(&new("a.jpg", true)).unwrap();
        s.insert(&new("notes.txt", false)).unwrap();
        let bare = s.insert(&new("b.jpg", true)).unwrap();
        let facet = MediaFacet {
            taken: Some(1_700_000_000),
            camera_make: Some("samsung".into()),
            latitude: Some(48.5),
            ..Default::default()
        };
        assert!(s.write(|t| t.set_media(photo, &facet)).unwrap());
        assert!(!s.write(|t| t.set_media(photo, &facet)).unwrap(), "unchanged");
        assert_eq!(s.read(|t| t.media(photo)).unwrap(), Some(facet.clone()));
        let mut entries = s.read(|t| t.media_entries()).unwrap();
        entries.sort_by_key(|e| e.ino);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].ino, entries[0].facet.clone()), (photo, Some(facet)));
        assert_eq!((entries[1].ino, entries[1].facet.clone()), (bare, None));
        s.remove(photo).unwrap();
        assert_eq!(s.read(|t| t.media(photo)).unwrap(), None, "removed with the item");
    }

    /// The photos of a retired tree root (an earlier Camera Roll kept for its journalled changes) are not the
    /// gallery's: the Timeline does not show them. Those of folders at any depth below the root are.
    #[test]
    fn media_entries_leave_out_retired_trees() {
        let s = Store::open_in_memory().unwrap();
        let folder = |parent: u64, name: &str| s.insert(&item(parent, name, ItemKind::Dir, false)).unwrap();
        let photo = |parent: u64, name: &str| s.insert(&item(parent, name, ItemKind::File, true)).unwrap();
        let album = folder(ROOT_INO, "Album");
        let deep = folder(folder(album, "2019"), "Trip");
        let kept = [photo(ROOT_INO, "a.jpg"), photo(album, "b.jpg"), photo(deep, "c.jpg")];
        let old_roll = folder(ROOT_INO, "Camera Roll");
        let below_old = folder(old_roll, "2024");
        photo(old_roll, "d.jpg");
        photo(below_old, "e.jpg");
        let inos = |s: &Store| {
            let mut v: Vec<u64> = s.read(|t| t.media_entries()).unwrap().iter().map(|e| e.ino).collect();
            v.sort();
            v
        };
        assert_eq!(inos(&s).len(), 5);
        s.write(|t| t.retire_subtree(old_roll)).unwrap();
        assert_eq!(inos(&s), kept.to_vec());
    }
}
