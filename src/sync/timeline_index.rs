//! [`TimelineIndex`]: where the Timeline (`Timeline/YYYY/YYYY-MM/` at the mount root) shows each photo and video
//! of the store, by capture date ([`capture_date`]), months in the local time zone; a name used twice in one month
//! gets ` (2)`, ` (3)`, ... in the order of the files' inodes. The filesystem's Timeline view
//! (`fs/gallery/timeline.rs`) lists it; the thumbnail fetcher names Timeline thumbnails by it.

use super::capture_date::capture_date;
use super::server_names::suffixed_name;
use crate::store::{name_key, MediaEntry};
use chrono::{Datelike, Local};
use std::collections::{BTreeMap, HashMap};

type Ino = u64;

/// The Timeline's name at the mount root.
pub const TIMELINE_DIR: &str = "Timeline";

/// One month's entries: display name → inode, by name key.
#[derive(Default)]
pub(crate) struct Month {
    pub(crate) entries: BTreeMap<String, (String, Ino)>,
}

/// Where every media file is in the Timeline.
#[derive(Default)]
pub struct TimelineIndex {
    pub(crate) months: BTreeMap<(i32, u32), Month>,
    /// The newest modification time of each month's files (the folders' mtime).
    pub(crate) mtimes: HashMap<(i32, u32), i64>,
    /// Each file's path from the mount root (`Timeline/YYYY/YYYY-MM/NAME`).
    paths: HashMap<Ino, String>,
}

impl TimelineIndex {
    pub fn build(mut entries: Vec<MediaEntry>) -> TimelineIndex {
        entries.sort_by_key(|e| e.ino);
        let mut index = TimelineIndex::default();
        for e in entries {
            let date = capture_date(&e.name, e.facet.as_ref(), e.mtime).with_timezone(&Local);
            let key = (date.year(), date.month());
            let month = index.months.entry(key).or_default();
            let mut name = e.name.clone();
            let mut n = 2;
            while month.entries.contains_key(&name_key(&name)) {
                name = suffixed_name(&e.name, n);
                n += 1;
            }
            index.paths.insert(
                e.ino,
                format!("{TIMELINE_DIR}/{:04}/{}/{name}", key.0, month_name(key.0, key.1)),
            );
            month.entries.insert(name_key(&name), (name, e.ino));
            let m = index.mtimes.entry(key).or_insert(e.mtime);
            *m = (*m).max(e.mtime);
        }
        index
    }

    /// The file's path from the mount root, when it is in the Timeline.
    pub fn path_of(&self, ino: Ino) -> Option<&str> {
        self.paths.get(&ino).map(String::as_str)
    }

    pub(crate) fn years(&self) -> Vec<i32> {
        let years: std::collections::BTreeSet<i32> = self.months.keys().map(|k| k.0).collect();
        years.into_iter().collect()
    }
}

/// A month folder's name (`YYYY-MM`).
pub(crate) fn month_name(year: i32, month: u32) -> String {
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MediaFacet;

    fn entry(ino: u64, name: &str, taken: Option<i64>) -> MediaEntry {
        MediaEntry {
            ino,
            name: name.into(),
            mtime: 1_600_000_000,
            facet: Some(MediaFacet {
                taken,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn months_and_clash_suffixes() {
        std::env::set_var("TZ", "UTC");
        // 2024-03-31 23:30 UTC and 2024-04-01 00:10 UTC; the same name twice in March.
        let index = TimelineIndex::build(vec![
            entry(9, "a.jpg", Some(1_711_927_800)),
            entry(3, "a.jpg", Some(1_711_900_000)),
            entry(4, "b.jpg", Some(1_711_930_200)),
            entry(5, "20230203_123826234_iOS.heic", None),
        ]);
        let mut march: Vec<_> = index.months[&(2024, 3)].entries.values().cloned().collect();
        march.sort_by_key(|(_, ino)| *ino);
        assert_eq!(march, [("a.jpg".to_string(), 3), ("a (2).jpg".to_string(), 9)]);
        let april: Vec<_> = index.months[&(2024, 4)].entries.values().cloned().collect();
        assert_eq!(april, [("b.jpg".to_string(), 4)]);
        assert!(index.months.contains_key(&(2023, 2)), "dated by its name");
        assert_eq!(index.years(), [2023, 2024]);
        assert_eq!(index.path_of(9), Some("Timeline/2024/2024-03/a (2).jpg"));
    }
}
