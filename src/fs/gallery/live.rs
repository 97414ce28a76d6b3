//! Live views: the [`ReplayPlan`] of a round of remote changes already applied to the store. File managers watch
//! folders with inotify, and the kernel's FUSE cache invalidations raise no inotify event, so each change is
//! replayed through the mount (by the FUSE layer) as the syscall a local program would have made: `unlink`/`rmdir`
//! for a removal, `rename` for a move, `mkdir`, or `mknod` plus an open for writing and its close for a new file,
//! and an open for writing and its close for new content.
//!
//! Order: removals first (deepest first, as the round removed them), then additions and moves in the order the
//! round placed them (parents first), then content changes. Each step's paths are those of the tree as the
//! earlier steps left it; the plan's view answers the replaying thread's lookups of the names that differ from
//! the store at that point (a name removed or moved away still leads to its item, a name added is still free).

use super::GalleryFs;
use crate::fs::types::{Entry, Ino, ReplayOp, ReplayPlan, ReplayStep, ROOT_INO};
use crate::store::{ItemKind, ItemRow};
use crate::sync::delta_apply::{AppliedChanges, EntryChange};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;

/// A round with more steps than this is not replayed (a re-list after a long time offline, say): its folders are
/// invalidated as always, and open windows catch up when they are next refreshed.
pub const MAX_REPLAY_STEPS: usize = 2000;

type Key = (Ino, String);

fn os_key((parent, name): &Key) -> (Ino, OsString) {
    (*parent, OsString::from(name))
}

/// The tree as the steps emitted so far leave it, where it differs from the store.
struct Scene<'a> {
    fs: &'a GalleryFs,
    /// Where an item is (`None`: not in the tree).
    places: HashMap<Ino, Option<Key>>,
}

impl Scene<'_> {
    fn place(&self, ino: Ino) -> Option<Key> {
        match self.places.get(&ino) {
            Some(place) => place.clone(),
            None => {
                let row = self.fs.store.get(ino).ok()??;
                Some((row.parent_ino?, row.name))
            }
        }
    }

    /// The path of `ino` from the mount's root.
    fn path(&self, ino: Ino) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut current = ino;
        while current != ROOT_INO {
            let (parent, name) = self.place(current)?;
            names.push(name);
            current = parent;
            if names.len() > 4096 {
                return None;
            }
        }
        Some(names.iter().rev().collect())
    }

    fn child_path(&self, (parent, name): &Key) -> Option<PathBuf> {
        Some(self.path(*parent)?.join(name))
    }
}

impl GalleryFs {
    fn live_entry(&self, row: &ItemRow) -> Entry {
        let mut attr = self.attr_of(row);
        // A removed row is detached or gone; as seen before the round it had its link.
        if attr.nlink == 0 {
            attr.nlink = 1;
        }
        self.entry_of(attr)
    }

    /// The steps that replay `changes` (already applied to the store) through the mount.
    pub(super) fn replay_plan(&self, changes: &AppliedChanges) -> ReplayPlan {
        let mut scene = Scene {
            fs: self,
            places: HashMap::new(),
        };
        // Each change with the rows it needs: (change, row now (None if removed), place before, place now).
        struct Change {
            ino: Ino,
            dir: bool,
            before: Option<Key>,
            now: Option<Key>,
            entry: Entry,
        }
        let mut list = Vec::new();
        for e in &changes.entries {
            let change = match e {
                EntryChange::Added { ino } => {
                    let Ok(Some(row)) = self.store.get(*ino) else { continue };
                    let Some(parent) = row.parent_ino else { continue };
                    Change {
                        ino: row.ino,
                        dir: row.kind == ItemKind::Dir,
                        before: None,
                        now: Some((parent, row.name.clone())),
                        entry: self.live_entry(&row),
                    }
                }
                EntryChange::Moved { before } => {
                    let Ok(Some(row)) = self.store.get(before.ino) else {
                        continue;
                    };
                    let (Some(old), Some(new)) = (before.parent_ino, row.parent_ino) else {
                        continue;
                    };
                    Change {
                        ino: row.ino,
                        dir: row.kind == ItemKind::Dir,
                        before: Some((old, before.name.clone())),
                        now: Some((new, row.name.clone())),
                        entry: self.live_entry(&row),
                    }
                }
                EntryChange::Removed { before } => {
                    let Some(parent) = before.parent_ino else { continue };
                    Change {
                        ino: before.ino,
                        dir: before.kind == ItemKind::Dir,
                        before: Some((parent, before.name.clone())),
                        now: None,
                        entry: self.live_entry(before),
                    }
                }
            };
            list.push(change);
        }
        // Removals first, the rest in the round's order.
        list.sort_by_key(|c| c.now.is_some());

        // The view before the first step: places left answer what was there, new places are free.
        let mut view: HashMap<Key, Option<Entry>> = HashMap::new();
        let finals: HashSet<Key> = list.iter().filter_map(|c| c.now.clone()).collect();
        for c in &list {
            scene.places.insert(c.ino, c.before.clone());
            if let Some(now) = &c.now {
                view.entry(now.clone()).or_insert(None);
            }
        }
        for c in &list {
            if let Some(before) = &c.before {
                view.insert(before.clone(), Some(c.entry.clone()));
            }
        }
        let mut plan = ReplayPlan {
            view: view
                .iter()
                .map(|(k, v)| (k.0, OsString::from(&k.1), v.clone()))
                .collect(),
            steps: Vec::new(),
        };

        for c in &list {
            let mut step = ReplayStep {
                op: ReplayOp::Rewrite { path: PathBuf::new() },
                settled: Vec::new(),
                view: Vec::new(),
            };
            // The place the change leaves: free from now on, or settled if nothing else comes there.
            if let Some(before) = &c.before {
                if finals.contains(before) {
                    step.view.push((before.0, OsString::from(&before.1), None));
                } else {
                    step.settled.push(os_key(before));
                }
            }
            if let Some(now) = &c.now {
                step.settled.push(os_key(now));
            }
            let op = match (&c.before, &c.now) {
                (Some(before), Some(now)) => scene
                    .child_path(before)
                    .zip(scene.child_path(now))
                    .map(|(from, to)| ReplayOp::Rename { from, to }),
                (Some(before), None) => scene
                    .child_path(before)
                    .map(|path| ReplayOp::Remove { path, dir: c.dir }),
                (None, Some(now)) => scene.child_path(now).map(|path| ReplayOp::Create { path, dir: c.dir }),
                (None, None) => None,
            };
            match &c.now {
                Some(_) => scene.places.remove(&c.ino),
                None => scene.places.insert(c.ino, None),
            };
            if let Some(op) = op {
                step.op = op;
                plan.steps.push(step);
            } else if let Some(last) = plan.steps.last_mut() {
                // Nothing to replay (its folder is not reachable), but the view moves on.
                last.settled.extend(step.settled);
                last.view.extend(step.view);
            }
        }

        let added: HashSet<Ino> = list.iter().filter(|c| c.before.is_none()).map(|c| c.ino).collect();
        for ino in &changes.content_changed {
            if added.contains(ino) {
                continue;
            }
            if let Some(path) = scene.path(*ino) {
                plan.steps.push(ReplayStep {
                    op: ReplayOp::Rewrite { path },
                    settled: Vec::new(),
                    view: Vec::new(),
                });
            }
        }
        if plan.steps.len() > MAX_REPLAY_STEPS {
            tracing::info!(
                steps = plan.steps.len(),
                "too many remote changes at once to show them to file managers one by one"
            );
            return ReplayPlan::default();
        }
        plan
    }
}
