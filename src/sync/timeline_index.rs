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

/// A name in the Timeline, by the folder that holds it: a year in `Timeline`, a month (`YYYY-MM`) in its year, a
/// file in its month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimelineName {
    Year(i32),
    Month(i32, u32),
    File(i32, u32, String),
}

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

    /// The names this index shows that `newer` no longer shows, or shows for another file: what a kernel that
    /// looked them up must forget. A year or month folder that is gone is one name (in its parent).
    pub fn stale_names(&self, newer: &TimelineIndex) -> Vec<TimelineName> {
        let mut out = Vec::new();
        for year in self.years() {
            if !newer.months.keys().any(|k| k.0 == year) {
                out.push(TimelineName::Year(year));
            }
        }
        for (&(year, month), m) in &self.months {
            let Some(now) = newer.months.get(&(year, month)) else {
                if newer.months.keys().any(|k| k.0 == year) {
                    out.push(TimelineName::Month(year, month));
                }
                continue;
            };
            for (key, (name, ino)) in &m.entries {
                if now.entries.get(key).is_none_or(|(_, i)| i != ino) {
                    out.push(TimelineName::File(year, month, name.clone()));
                }
            }
        }
        out
    }

    /// The months whose listing differs between this index and `newer` (entries came, went or changed).
    pub fn changed_months(&self, newer: &TimelineIndex) -> Vec<(i32, u32)> {
        let keys: std::collections::BTreeSet<&(i32, u32)> = self.months.keys().chain(newer.months.keys()).collect();
        keys.into_iter()
            .filter(|k| self.months.get(k).map(|m| &m.entries) != newer.months.get(k).map(|m| &m.entries))
            .copied()
            .collect()
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

    #[test]
    fn stale_names_after_a_change() {
        std::env::set_var("TZ", "UTC");
        let march = Some(1_711_900_000);
        let old = TimelineIndex::build(vec![
            entry(3, "a.jpg", march),
            entry(4, "b.jpg", march),
            entry(5, "c.jpg", march),
            entry(6, "20230203_123826234_iOS.heic", None),
        ]);
        // a.jpg deleted, b.jpg renamed, c.jpg unchanged, the only photo of 2023 gone, a new one in May 2024.
        let new = TimelineIndex::build(vec![
            entry(4, "b2.jpg", march),
            entry(5, "c.jpg", march),
            entry(7, "d.jpg", Some(1_715_000_000)),
        ]);
        assert_eq!(
            old.stale_names(&new),
            [
                TimelineName::Year(2023),
                TimelineName::File(2024, 3, "a.jpg".into()),
                TimelineName::File(2024, 3, "b.jpg".into()),
            ]
        );
        assert_eq!(old.changed_months(&new), [(2023, 2), (2024, 3), (2024, 5)]);
        assert!(new.stale_names(&new).is_empty());
    }
}
