//! `Timeline/YYYY/YYYY-MM/` at the mount root: every photo and video of the store (wherever it is: the gallery's
//! albums and any other tree the store holds) by capture date ([`crate::sync::capture_date`]), months in the local
//! time zone. An entry is the album's file itself (same inode; media files count two links while the Timeline is
//! on); a name used twice in one month gets ` (2)`, ` (3)`, ... in the order of the files' inodes.
//!
//! The folders are virtual inodes ([`VirtualNode::Timeline`] and below). The index ([`TimelineIndex`], shared with
//! the thumbnail fetcher) is built from one store query
//! when first needed after a change (any namespace operation of the mount or remote round marks it stale); after a
//! remote round it is rebuilt at once when the kernel may hold its names, and the names that no longer lead where
//! they did are invalidated in the kernel (a local change's stale names expire with the entry TTL).
//! `rm` of an entry removes the file (the album's delete: to the recycle bin), `mv` of an entry into an album moves
//! the file there; anything that would create or rename into the Timeline is `EPERM`.

use super::{store_err, GalleryFs};
use crate::fs::error::FsError;
use crate::fs::types::*;
use crate::fs::virtual_nodes::VirtualNode;
use crate::fs::FsResult;
use crate::store::name_key;
pub use crate::sync::timeline_index::TIMELINE_DIR;
use crate::sync::timeline_index::{month_name, TimelineIndex, TimelineName};
use crate::thumbnails::SHARED_REPO_DIR;
use parking_lot::Mutex;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The index and whether it is stale.
#[derive(Default)]
pub(crate) struct Timeline {
    index: Mutex<Option<Arc<TimelineIndex>>>,
    stale: AtomicBool,
}

impl Timeline {
    /// Something in the store changed: rebuild before the next use.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }
}

fn parse_year(name: &str) -> Option<i32> {
    (name.len() == 4 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

impl GalleryFs {
    pub(super) fn timeline_on(&self) -> bool {
        self.config.timeline
    }

    /// Whether `ino` is one of the Timeline's folders.
    pub(super) fn is_timeline_dir(&self, ino: Ino) -> bool {
        matches!(
            self.virtuals.node(ino),
            Some(VirtualNode::Timeline | VirtualNode::TimelineYear { .. } | VirtualNode::TimelineMonth { .. })
        )
    }

    pub(super) fn timeline_index(&self) -> FsResult<Arc<TimelineIndex>> {
        let mut slot = self.timeline.index.lock();
        if self.timeline.stale.swap(false, Ordering::AcqRel) || slot.is_none() {
            let entries = self.store.read(|t| t.media_entries()).map_err(store_err)?;
            *slot = Some(Arc::new(TimelineIndex::build(entries)));
        }
        Ok(slot.clone().expect("built above"))
    }

    /// A remote round changed the store: rebuilds the index now, when the kernel may hold names of the old one, and
    /// tells the kernel to forget the names that no longer lead where they did (a photo deleted, moved or re-dated
    /// on OneDrive) and the listings of the months that changed.
    pub(super) fn timeline_changed(&self) {
        self.timeline.mark_stale();
        let old = self.timeline.index.lock().clone();
        let Some(old) = old.filter(|_| self.timeline_on()) else {
            // Never built: the kernel has none of its names.
            return;
        };
        let new = match self.timeline_index() {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rebuild the Timeline; its names refresh within a second");
                return;
            }
        };
        let inv = self.invalidator.read().clone();
        for name in old.stale_names(&new) {
            let (parent, name) = match name {
                TimelineName::Year(year) => (VirtualNode::Timeline, format!("{year:04}")),
                TimelineName::Month(year, month) => (VirtualNode::TimelineYear { year }, month_name(year, month)),
                TimelineName::File(year, month, name) => (VirtualNode::TimelineMonth { year, month }, name),
            };
            inv.entry(self.virtuals.ino_of(parent), OsStr::new(&name));
        }
        for (year, month) in old.changed_months(&new) {
            inv.inode(self.virtuals.ino_of(VirtualNode::TimelineMonth { year, month }));
        }
    }

    /// The `Timeline` folder's entry at the root (when on and no gallery item has the name).
    pub(super) fn timeline_root_ino(&self) -> Ino {
        self.virtuals.ino_of(VirtualNode::Timeline)
    }

    pub(super) fn timeline_attr(&self, ino: Ino, node: VirtualNode) -> FsResult<Attr> {
        let index = self.timeline_index()?;
        let mtime = match node {
            VirtualNode::TimelineMonth { year, month } => *index.mtimes.get(&(year, month)).ok_or(FsError::NotFound)?,
            VirtualNode::TimelineYear { year } => index
                .mtimes
                .iter()
                .filter(|(k, _)| k.0 == year)
                .map(|(_, m)| *m)
                .max()
                .ok_or(FsError::NotFound)?,
            _ => index.mtimes.values().copied().max().unwrap_or(0),
        };
        let mut attr = self.virtual_attr(ino, node, 0, mtime);
        // Writable as the albums are: `rm` of an entry deletes the photo (with `default_permissions` too).
        attr.perm = self.config.dir_perm;
        Ok(attr)
    }

    pub(super) fn timeline_lookup(&self, parent: VirtualNode, name: &OsStr) -> FsResult<Entry> {
        let name = name.to_str().ok_or(FsError::NotFound)?;
        let index = self.timeline_index()?;
        let node = match parent {
            VirtualNode::Timeline => {
                let year = parse_year(name).ok_or(FsError::NotFound)?;
                if !index.months.keys().any(|k| k.0 == year) {
                    return Err(FsError::NotFound);
                }
                VirtualNode::TimelineYear { year }
            }
            VirtualNode::TimelineYear { year } => {
                let (y, m) = name.split_once('-').ok_or(FsError::NotFound)?;
                let month: u32 = m.parse().map_err(|_| FsError::NotFound)?;
                if parse_year(y) != Some(year) || m.len() != 2 || !index.months.contains_key(&(year, month)) {
                    return Err(FsError::NotFound);
                }
                VirtualNode::TimelineMonth { year, month }
            }
            VirtualNode::TimelineMonth { .. } if self.config.thumbnails && name == SHARED_REPO_DIR => {
                let dir = self.virtuals.ino_of(parent);
                let node = VirtualNode::Repo { dir };
                let ino = self.virtuals.ino_of(node);
                let mtime = self.thumb_dir_mtime(dir)?;
                return Ok(self.entry_of(self.virtual_attr(ino, node, 0, mtime)));
            }
            VirtualNode::TimelineMonth { year, month } => {
                let (_, ino) = index
                    .months
                    .get(&(year, month))
                    .and_then(|m| m.entries.get(&name_key(name)))
                    .ok_or(FsError::NotFound)?;
                let item = self.item(*ino)?;
                return Ok(self.entry_of(self.attr_of(&item)));
            }
            _ => return Err(FsError::NotDir),
        };
        let ino = self.virtuals.ino_of(node);
        Ok(self.entry_of(self.timeline_attr(ino, node)?))
    }

    pub(super) fn timeline_readdir(
        &self,
        ino: Ino,
        node: VirtualNode,
        offset: u64,
        max: usize,
        plus: bool,
    ) -> FsResult<Vec<DirEntry>> {
        let index = self.timeline_index()?;
        let parent = match node {
            VirtualNode::Timeline => crate::store::ROOT_INO,
            VirtualNode::TimelineYear { .. } => self.timeline_root_ino(),
            VirtualNode::TimelineMonth { year, .. } => self.virtuals.ino_of(VirtualNode::TimelineYear { year }),
            _ => return Err(FsError::NotDir),
        };
        let mut names: Vec<(Ino, OsString, FileKind)> = vec![
            (ino, ".".into(), FileKind::Directory),
            (parent, "..".into(), FileKind::Directory),
        ];
        match node {
            VirtualNode::Timeline => {
                for year in index.years() {
                    let n = VirtualNode::TimelineYear { year };
                    names.push((
                        self.virtuals.ino_of(n),
                        format!("{year:04}").into(),
                        FileKind::Directory,
                    ));
                }
            }
            VirtualNode::TimelineYear { year } => {
                for &(y, month) in index.months.keys().filter(|k| k.0 == year) {
                    let n = VirtualNode::TimelineMonth { year: y, month };
                    names.push((
                        self.virtuals.ino_of(n),
                        month_name(y, month).into(),
                        FileKind::Directory,
                    ));
                }
            }
            VirtualNode::TimelineMonth { year, month } => {
                if let Some(m) = index.months.get(&(year, month)) {
                    for (name, ino) in m.entries.values() {
                        names.push((*ino, name.into(), FileKind::File));
                    }
                }
            }
            _ => {}
        }
        let mut out = Vec::new();
        for (i, (ino, name, kind)) in names.into_iter().enumerate().skip(offset as usize).take(max) {
            let entry = if plus && i >= 2 {
                match self.virtuals.node(ino) {
                    Some(n) => Some(self.entry_of(self.timeline_attr(ino, n)?)),
                    None => match self.item(ino) {
                        Ok(item) => Some(self.entry_of(self.attr_of(&item))),
                        Err(_) => continue,
                    },
                }
            } else {
                None
            };
            out.push(DirEntry {
                ino,
                name,
                kind,
                offset: i as u64 + 1,
                entry,
            });
        }
        Ok(out)
    }

    /// The album entry (parent, name) of a Timeline month's entry.
    pub(super) fn timeline_target(&self, parent: Ino, name: &OsStr) -> FsResult<(Ino, OsString)> {
        let Some(VirtualNode::TimelineMonth { year, month }) = self.virtuals.node(parent) else {
            return Err(FsError::NotPermitted {
                what: "changes to the Timeline's folders",
            });
        };
        let name = name.to_str().ok_or(FsError::NotFound)?;
        let index = self.timeline_index()?;
        let (_, ino) = index
            .months
            .get(&(year, month))
            .and_then(|m| m.entries.get(&name_key(name)))
            .ok_or(FsError::NotFound)?;
        let item = self.item(*ino)?;
        let album = item.parent_ino.ok_or(FsError::NotFound)?;
        Ok((album, OsString::from(item.name)))
    }

    /// A month's files under the names it shows them (for `.sh_thumbnails` there).
    pub(super) fn timeline_month_files(&self, dir: Ino) -> FsResult<Vec<(String, crate::store::ItemRow)>> {
        let Some(VirtualNode::TimelineMonth { year, month }) = self.virtuals.node(dir) else {
            return Ok(Vec::new());
        };
        let index = self.timeline_index()?;
        let mut out = Vec::new();
        if let Some(m) = index.months.get(&(year, month)) {
            for (name, ino) in m.entries.values() {
                if let Ok(item) = self.item(*ino) {
                    out.push((name.clone(), item));
                }
            }
        }
        Ok(out)
    }

    /// Whether `name` at the root is the Timeline itself (not a gallery item of that name).
    pub(super) fn timeline_lookup_root(&self, name: &OsStr) -> bool {
        self.timeline_on()
            && name == TIMELINE_DIR
            && matches!(self.store.lookup(crate::store::ROOT_INO, TIMELINE_DIR), Ok(None))
    }

    /// Inodes of the media files the Timeline shows (for their link count).
    pub(super) fn in_timeline(&self, item: &crate::store::ItemRow) -> bool {
        self.timeline_on()
            && item.kind == crate::store::ItemKind::File
            && item.is_media
            && !item.remote_removed
            && item.parent_ino.is_some()
    }
}
