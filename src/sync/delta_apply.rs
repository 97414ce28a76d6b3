//! Turns one round of OneDrive delta items into store changes, in one transaction (delta:
//! <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/driveitem_delta>).
//!
//! Rules:
//! - The same id may appear several times in a round: the **last occurrence wins**.
//! - A root delta is filtered to the gallery subtree: an item belongs if its parent chain (as this round leaves
//!   it, falling back to the store for parents the round does not mention) reaches the gallery folder. The
//!   gallery item itself only updates the root row's attributes (its deletion is reported, never applied).
//! - Order within a round is undocumented, so items are placed parents first (by their depth in the final tree),
//!   and a name still held by a row that this round moves away or removes is freed first (swaps work).
//! - `deleted` items, items moved out of the gallery and hostile items are removed with their subtree, after
//!   everything else is applied (so children moved elsewhere in the same round survive).
//! - Renames and moves keep the inode. A file whose cTag changed is reported in `content_changed` and its cached
//!   blocks are dropped.
//! - Folder times behave as a local filesystem's: once the store has completed a round, a folder whose entries a
//!   round creates, removes or renames gets mtime and ctime = now; a folder's mtime follows OneDrive's
//!   `fileSystemInfo` only when that changes (it does not when entries change).
//! - Local state is never overwritten: a locally dirty item keeps its content attributes and baseline (a remote
//!   content change, delete or move-out is reported in `conflicts`); local-only items are never removed; a
//!   deleted folder that still holds dirty or local-only descendants is kept with just those, and the kept rows
//!   are flagged `remote_removed` (an upload must create them anew).
//! - The journal (outbox) is newer than any round: an item whose delete is journalled and not yet done is not
//!   brought back, and a row whose move is journalled keeps its local place (a round, above all a full re-list,
//!   may have been listed before the operation reached OneDrive).
//! - A folder that appears in an incremental round without being in the store is reported in `needs_listing`:
//!   it may have been moved into the gallery, and delta does not repeat the children of a moved folder. So is a
//!   folder that was kept for local changes (`remote_removed`) and comes back.
//! - An item of the store whose new parent is neither in the round nor in the store may have moved below such a
//!   folder (delta names the moved folder, not the unchanged folders between it and the item): when the round
//!   has folders to list, its row stays where it was and the item is reported in `unplaced`; the caller lists the
//!   folders and applies the listing together with the unplaced items ([`RoundKind::Listing`]), where an item
//!   whose parent is still unknown is out of the tree. So an album moved into the gallery with a folder around it
//!   keeps its inode.
//! - The folders to list and the unplaced items are kept in the store with the round's delta link
//!   ([`PendingListing`], under the tree's `listing_key`) and removed in the listing's transaction, so a listing
//!   that failed (offline, a crash) is done by the next poll, not lost behind the advanced link.
//!
//! Hostile names (policy): a name that is empty, `.` or `..`, contains `/` or NUL, or is longer than 255 bytes
//! cannot be shown safely: the item is skipped (or removed if it was in the store) with a warning, and listed in
//! `rejected`; its descendants in the round are skipped too. Items that are neither file nor folder (OneNote
//! packages), items whose parent is a file, and items whose id looks like one of galleryfs's own (`local:…`) are
//! rejected the same way. A name case-equal to a sibling with another id is shown with a suffix,
//! `IMG_1.jpg` → `IMG_1 (2).jpg`, and listed in `renamed_for_clash`.

use crate::remote::models::DriveItem;
use crate::store::{
    name_key, ItemKind, ItemRow, MediaFacet, NewItem, RemoteAttrs, Store, StoreError, StoreTx, ROOT_INO,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use thiserror::Error;

use super::server_names::is_reserved_id;
pub use super::server_names::{check_name, suffixed_name, RejectReason, NAME_MAX};

#[derive(Debug, Error)]
pub enum DeltaApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedItem {
    pub item_id: String,
    pub reason: RejectReason,
    /// The inode it had, when it was in the store (it has been removed).
    pub removed_ino: Option<u64>,
}

/// Why a local item was left alone although OneDrive changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConflictKind {
    /// The content changed remotely while the local copy is dirty.
    RemoteContentChanged,
    /// Deleted remotely (or moved out of the gallery) while it, or something below it, has local changes.
    RemoteRemoved,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub ino: u64,
    pub kind: ConflictKind,
}

/// What a round changed, for cache and kernel invalidation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppliedChanges {
    pub inserted: Vec<u64>,
    /// Existing rows whose attributes, name or place changed.
    pub updated: Vec<u64>,
    pub removed: Vec<u64>,
    /// Folders whose listing changed (entries added, removed or renamed).
    pub parents_changed: BTreeSet<u64>,
    /// `(parent, name)` entries that no longer lead where they did (renamed, moved or removed).
    pub stale_entries: Vec<(u64, String)>,
    /// Files whose content version (cTag) changed: their cached content is stale (blocks already dropped).
    pub content_changed: Vec<u64>,
    /// Folders new to the store in an incremental round: list their children.
    pub needs_listing: Vec<u64>,
    /// Items of the store whose parent the round does not place (it may be below a folder of `needs_listing`):
    /// their rows were kept as they were; apply them with the listing ([`RoundKind::Listing`]).
    pub unplaced: Vec<DriveItem>,
    pub conflicts: Vec<Conflict>,
    pub rejected: Vec<RejectedItem>,
    /// Items shown under another name than OneDrive's because of a case-insensitive clash.
    pub renamed_for_clash: Vec<u64>,
    /// The gallery folder's own attributes changed.
    pub root_updated: bool,
    /// The round deletes the gallery folder itself (not applied).
    pub gallery_deleted: bool,
    /// Items outside the gallery that were not in the store.
    pub ignored: usize,
    /// The names the round added, moved and removed, in the order applied (removals after the rest): what a
    /// local program would have done to the tree, replayed for file managers' inotify watches.
    pub entries: Vec<EntryChange>,
}

/// A name that came, moved or went in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryChange {
    /// A new row; the store has its place.
    Added { ino: u64 },
    /// A row renamed or moved; `before` is the row as it was, the store has its new place.
    Moved { before: ItemRow },
    /// A row removed with everything below it; `before` is the row as it was.
    Removed { before: ItemRow },
}

impl AppliedChanges {
    pub fn is_empty(&self) -> bool {
        self.inserted.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.conflicts.is_empty()
            && !self.root_updated
            && !self.gallery_deleted
    }

    /// Adds `more` (from the application that followed this one).
    pub fn merge(&mut self, more: AppliedChanges) {
        self.inserted.extend(more.inserted);
        self.updated.extend(more.updated);
        self.removed.extend(more.removed);
        self.parents_changed.extend(more.parents_changed);
        self.stale_entries.extend(more.stale_entries);
        self.content_changed.extend(more.content_changed);
        self.needs_listing.extend(more.needs_listing);
        self.unplaced.extend(more.unplaced);
        self.conflicts.extend(more.conflicts);
        self.rejected.extend(more.rejected);
        self.renamed_for_clash.extend(more.renamed_for_clash);
        self.root_updated |= more.root_updated;
        self.gallery_deleted |= more.gallery_deleted;
        self.ignored += more.ignored;
        self.entries.extend(more.entries);
    }
}

/// The tree a round belongs to: the gallery (at the root) or a nested tree root such as the Camera Roll (a folder
/// row below the root whose OneDrive folder lies elsewhere; store/roots.rs). Items are placed by their parent's
/// item id wherever it is in the store; a full round removes only unseen rows of its own tree (not of a nested
/// one), and the nested roots themselves are never moved or removed by another tree's round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeScope {
    /// The OneDrive id of the tree's folder.
    pub item_id: String,
    /// Its row.
    pub ino: u64,
    /// Where its delta link is kept in `meta`.
    pub link_key: &'static str,
    /// Where its [`PendingListing`] is kept in `meta`.
    pub listing_key: &'static str,
}

/// Folders an incremental round brought into a tree, not listed yet, and the round's unplaced items.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingListing {
    /// OneDrive ids of the folders to list (everything below them).
    pub folders: Vec<String>,
    pub unplaced: Vec<DriveItem>,
}

/// The tree's listing still to do, if any.
pub fn pending_listing(store: &Store, scope: &TreeScope) -> Result<Option<PendingListing>, DeltaApplyError> {
    let Some(json) = store.meta(scope.listing_key)? else {
        return Ok(None);
    };
    match serde_json::from_str(&json) {
        Ok(pending) => Ok(Some(pending)),
        Err(e) => {
            tracing::warn!(error = %e, "a pending folder listing could not be read; it is dropped");
            store.delete_meta(scope.listing_key)?;
            Ok(None)
        }
    }
}

/// Applies a tree's pending listing: `listed` (everything below its folders) with its unplaced items
/// ([`listing_round`]), and forgets it in the same transaction.
pub fn apply_pending_listing(
    store: &Store,
    scope: &TreeScope,
    pending: &PendingListing,
    listed: Vec<DriveItem>,
) -> Result<AppliedChanges, DeltaApplyError> {
    let items = listing_round(listed, &pending.unplaced);
    store.write(|tx| {
        let mut changes = apply_in_scope(tx, scope, &items, RoundKind::Listing)?;
        changes.needs_listing.clear();
        tx.delete_meta(scope.listing_key)?;
        Ok(changes)
    })
}

/// Records what a round leaves to list, added to what is pending already; a full round (which lists everything)
/// leaves nothing pending.
fn record_pending_listing(
    tx: &StoreTx<'_>,
    scope: &TreeScope,
    kind: RoundKind,
    changes: &AppliedChanges,
) -> Result<(), StoreError> {
    if kind == RoundKind::Full {
        return tx.delete_meta(scope.listing_key);
    }
    if changes.needs_listing.is_empty() {
        return Ok(());
    }
    let earlier: PendingListing = tx
        .meta(scope.listing_key)?
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    let mut folders = earlier.folders;
    for &ino in &changes.needs_listing {
        if let Some(row) = tx.get(ino)? {
            folders.push(row.item_id);
        }
    }
    let mut unplaced = earlier.unplaced;
    unplaced.extend(changes.unplaced.iter().map(|item| DriveItem {
        // Pre-authenticated: never stored.
        download_url: None,
        ..item.clone()
    }));
    let json = serde_json::to_string(&PendingListing { folders, unplaced }).expect("serialisable");
    tx.set_meta(scope.listing_key, &json)
}

impl TreeScope {
    /// The gallery's tree: the root row.
    pub fn gallery(item_id: &str) -> TreeScope {
        TreeScope {
            item_id: item_id.to_string(),
            ino: ROOT_INO,
            link_key: crate::store::meta_keys::DELTA_LINK,
            listing_key: crate::store::meta_keys::PENDING_LISTING,
        }
    }

    /// The Camera Roll's tree, whose folder is the row `ino`.
    pub fn camera_roll(item_id: &str, ino: u64) -> TreeScope {
        TreeScope {
            item_id: item_id.to_string(),
            ino,
            link_key: crate::store::meta_keys::CAMERA_ROLL_DELTA_LINK,
            listing_key: crate::store::meta_keys::CAMERA_ROLL_PENDING_LISTING,
        }
    }
}

/// Whether the round is a page set of changes or a complete enumeration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundKind {
    /// Changes since the last delta link.
    Incremental,
    /// A full enumeration (first sync, or after `410 Gone`): rows not seen are removed, no listing needed.
    Full,
    /// The listing of an incremental round's `needs_listing` folders, with that round's `unplaced` items: as
    /// `Incremental`, except that an item whose parent is still unknown is out of the tree.
    Listing,
}

/// The round that follows an incremental round with folders to list: `listed` (everything below those
/// folders) and the round's `unplaced` items the listing does not mention.
pub fn listing_round(listed: Vec<DriveItem>, unplaced: &[DriveItem]) -> Vec<DriveItem> {
    let ids: HashSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    let rest: Vec<DriveItem> = unplaced
        .iter()
        .filter(|i| !ids.contains(i.id.as_str()))
        .cloned()
        .collect();
    let mut items = listed;
    items.extend(rest);
    items
}

/// Applies one incremental delta round in one transaction.
pub fn apply_delta_round(
    store: &Store,
    gallery_item_id: &str,
    items: &[DriveItem],
) -> Result<AppliedChanges, DeltaApplyError> {
    store.write(|tx| apply_in(tx, gallery_item_id, items, RoundKind::Incremental))
}

/// Applies the listing that follows an incremental round ([`listing_round`]) in one transaction.
pub fn apply_listing_round(
    store: &Store,
    gallery_item_id: &str,
    items: &[DriveItem],
) -> Result<AppliedChanges, DeltaApplyError> {
    store.write(|tx| apply_in(tx, gallery_item_id, items, RoundKind::Listing))
}

/// Applies a round and, in the same transaction, stores its `@odata.deltaLink` and the sync time, so the link
/// never runs ahead of (or behind) the applied changes.
pub fn apply_delta_round_with_link(
    store: &Store,
    gallery_item_id: &str,
    items: &[DriveItem],
    kind: RoundKind,
    delta_link: &str,
) -> Result<AppliedChanges, DeltaApplyError> {
    store.write(|tx| {
        let changes = apply_in(tx, gallery_item_id, items, kind)?;
        record_pending_listing(tx, &TreeScope::gallery(gallery_item_id), kind, &changes)?;
        tx.set_meta(crate::store::meta_keys::DELTA_LINK, delta_link)?;
        tx.set_meta(crate::store::meta_keys::LAST_SYNC, &chrono::Utc::now().to_rfc3339())?;
        Ok(changes)
    })
}

/// [`apply_delta_round_with_link`], unless `stale()` says (inside the transaction, so no change recorded after
/// the check can be overwritten) that the round may predate a change this process made: then nothing is applied
/// and `None` returned, for the caller to fetch the round again.
pub fn apply_fresh_delta_round_with_link(
    store: &Store,
    gallery_item_id: &str,
    items: &[DriveItem],
    kind: RoundKind,
    delta_link: &str,
    stale: impl FnOnce() -> bool,
) -> Result<Option<AppliedChanges>, DeltaApplyError> {
    let scope = TreeScope::gallery(gallery_item_id);
    apply_fresh_scoped_round_with_link(store, &scope, items, kind, delta_link, stale)
}

/// Replaces the store's view with a full enumeration: applies it, then removes every row it did not mention
/// (except local-only and dirty ones and their ancestors).
pub fn replace_all(
    store: &Store,
    gallery_item_id: &str,
    items: &[DriveItem],
) -> Result<AppliedChanges, DeltaApplyError> {
    store.write(|tx| apply_in(tx, gallery_item_id, items, RoundKind::Full))
}

/// Applies a round inside a caller's transaction.
pub fn apply_in(
    tx: &StoreTx<'_>,
    gallery_item_id: &str,
    items: &[DriveItem],
    kind: RoundKind,
) -> Result<AppliedChanges, DeltaApplyError> {
    apply_in_scope(tx, &TreeScope::gallery(gallery_item_id), items, kind)
}

/// [`apply_fresh_delta_round_with_link`] for the tree `scope`, its link kept under `scope.link_key`.
pub fn apply_fresh_scoped_round_with_link(
    store: &Store,
    scope: &TreeScope,
    items: &[DriveItem],
    kind: RoundKind,
    delta_link: &str,
    stale: impl FnOnce() -> bool,
) -> Result<Option<AppliedChanges>, DeltaApplyError> {
    store.write(|tx| {
        if stale() {
            return Ok(None);
        }
        let changes = apply_in_scope(tx, scope, items, kind)?;
        record_pending_listing(tx, scope, kind, &changes)?;
        tx.set_meta(scope.link_key, delta_link)?;
        tx.set_meta(crate::store::meta_keys::LAST_SYNC, &chrono::Utc::now().to_rfc3339())?;
        Ok(Some(changes))
    })
}

/// Applies a round of the tree `scope` inside a caller's transaction.
pub fn apply_in_scope(
    tx: &StoreTx<'_>,
    scope: &TreeScope,
    items: &[DriveItem],
    kind: RoundKind,
) -> Result<AppliedChanges, DeltaApplyError> {
    // The other trees' roots: never moved or removed by this round; their subtrees not this round's to prune.
    let mut nested = Vec::new();
    if let (Some(id), Some(ino)) = (
        tx.meta(crate::store::meta_keys::CAMERA_ROLL_ITEM_ID)?,
        tx.meta(crate::store::meta_keys::CAMERA_ROLL_INO)?
            .and_then(|i| i.parse::<u64>().ok()),
    ) {
        if ino != scope.ino && tx.get(ino)?.is_some() {
            nested.push((id, ino));
        }
    }
    let depth = if scope.ino == ROOT_INO {
        0
    } else {
        tx.path(scope.ino).map(|p| p.matches('/').count() as u32).unwrap_or(1)
    };
    let mut applier = Applier::new(tx, scope, depth, nested, items, kind);
    applier.run()?;
    let changes = applier.changes;
    tracing::debug!(
        inserted = changes.inserted.len(),
        updated = changes.updated.len(),
        removed = changes.removed.len(),
        rejected = changes.rejected.len(),
        conflicts = changes.conflicts.len(),
        ignored = changes.ignored,
        "delta round applied"
    );
    Ok(changes)
}

/// Where an item of the round ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    /// In the gallery, at this depth below the root.
    In(u32),
    Out,
    /// Below a parent neither the round nor the store knows.
    Unplaced,
    Deleted,
    Rejected(RejectReason),
    /// Being resolved (cycle guard).
    Visiting,
}

struct Applier<'a, 't> {
    tx: &'a StoreTx<'t>,
    /// The tree's folder id (the gallery's for the root).
    gallery: &'a str,
    /// The tree's folder row and its depth below the root.
    scope_ino: u64,
    scope_depth: u32,
    /// Roots of other trees below this one: left alone.
    nested: Vec<(String, u64)>,
    kind: RoundKind,
    /// Last occurrence of each id.
    latest: HashMap<&'a str, &'a DriveItem>,
    /// Ids in order of first appearance (deterministic processing).
    order: Vec<&'a str>,
    memo: HashMap<&'a str, Resolution>,
    /// Rows of the store as they were before the round, for ids the round mentions.
    before: HashMap<&'a str, ItemRow>,
    /// Upserts not placed yet (their rows may be detached to free a name).
    unplaced: HashSet<&'a str>,
    /// Rows to remove after the upserts.
    removals: Vec<ItemRow>,
    /// Rows of `Unplaced` items: removed, or kept and reported when the round has folders to list.
    unplaced_rows: Vec<(&'a str, ItemRow)>,
    removal_inos: HashSet<u64>,
    /// First ` (n)` suffix worth trying per (folder, case-folded name): keeps many clashing names linear.
    next_suffix: HashMap<(u64, String), u32>,
    /// Ids with a local delete journalled and not yet done: the round must not bring them back.
    pending_deletes: HashSet<String>,
    /// Rows with a local move journalled and not yet done: they keep their local place.
    pending_moves: HashSet<u64>,
    /// Inode of each parent folder id looked up this round (most items share a parent); emptied whenever a row
    /// is removed, the only way an id's inode changes.
    parent_inos: HashMap<String, u64>,
    changes: AppliedChanges,
}

impl<'a, 't> Applier<'a, 't> {
    fn new(
        tx: &'a StoreTx<'t>,
        scope: &'a TreeScope,
        scope_depth: u32,
        nested: Vec<(String, u64)>,
        items: &'a [DriveItem],
        kind: RoundKind,
    ) -> Self {
        let gallery = scope.item_id.as_str();
        let mut latest = HashMap::new();
        let mut order = Vec::new();
        let mut changes = AppliedChanges::default();
        for item in items {
            if nested.iter().any(|(id, _)| *id == item.id) {
                // Another tree's root (a drive-wide round mentions it): that tree follows it.
                continue;
            }
            if is_reserved_id(&item.id) && item.id != gallery {
                tracing::warn!(item_id = %item.id, "skipping an item whose id is reserved for local rows");
                if !changes.rejected.iter().any(|r| r.item_id == item.id) {
                    changes.rejected.push(RejectedItem {
                        item_id: item.id.clone(),
                        reason: RejectReason::ReservedId,
                        removed_ino: None,
                    });
                }
                continue;
            }
            if latest.insert(item.id.as_str(), item).is_none() {
                order.push(item.id.as_str());
            }
        }
        let mut memo = HashMap::new();
        // The tree's own folder is placed (its parent lies outside every tree).
        memo.insert(gallery, Resolution::In(scope_depth));
        Applier {
            tx,
            gallery,
            scope_ino: scope.ino,
            scope_depth,
            nested,
            kind,
            latest,
            order,
            memo,
            before: HashMap::new(),
            unplaced: HashSet::new(),
            removals: Vec::new(),
            unplaced_rows: Vec::new(),
            removal_inos: HashSet::new(),
            next_suffix: HashMap::new(),
            pending_deletes: HashSet::new(),
            pending_moves: HashSet::new(),
            parent_inos: HashMap::new(),
            changes,
        }
    }

    fn run(&mut self) -> Result<(), StoreError> {
        // Before the first completed round the store is being filled, not changed: folder times stay OneDrive's.
        let changes_move_folder_times = self.tx.meta(crate::store::meta_keys::LAST_SYNC)?.is_some();
        if self.scope_ino == ROOT_INO {
            self.tx.set_root_item(self.gallery)?;
        }
        (self.pending_deletes, self.pending_moves) = self.tx.pending_deletes_and_moves()?;
        if let Some(item) = self.latest.get(self.gallery).copied() {
            self.apply_root(item)?;
        }
        for &id in &self.order {
            if id == self.gallery {
                continue;
            }
            if let Some(row) = self.tx.get_by_item_id(id)? {
                self.before.insert(id, row);
            }
        }
        let mut upserts: Vec<(u32, usize, &'a str)> = Vec::new();
        for (index, &id) in self.order.clone().iter().enumerate() {
            if id == self.gallery {
                continue;
            }
            let resolution = self.resolve(id)?;
            let existing = self.before.get(id).cloned();
            match resolution {
                Resolution::In(depth) => {
                    upserts.push((depth, index, id));
                    self.unplaced.insert(id);
                }
                Resolution::Rejected(reason) => {
                    tracing::warn!(
                        item_id = id,
                        ?reason,
                        "skipping an item with a name that cannot be shown"
                    );
                    self.changes.rejected.push(RejectedItem {
                        item_id: id.to_string(),
                        reason,
                        removed_ino: existing.as_ref().map(|r| r.ino),
                    });
                    if let Some(row) = existing {
                        self.schedule_removal(row);
                    }
                }
                Resolution::Unplaced if self.kind == RoundKind::Incremental => match existing {
                    Some(row) if row.parent_ino.is_none() => {}
                    Some(row) if !self.in_own_tree(row.ino)? => {}
                    Some(row) => self.unplaced_rows.push((id, row)),
                    None => self.changes.ignored += 1,
                },
                Resolution::Out | Resolution::Unplaced | Resolution::Deleted | Resolution::Visiting => match existing {
                    // Detached: a file removed here while open; the filesystem removes it at its last close.
                    Some(row) if row.parent_ino.is_none() => {}
                    // Gone from this tree into another one (Camera Roll ↔ gallery): that tree's round answers.
                    Some(row) if !self.in_own_tree(row.ino)? => {}
                    Some(row) => self.schedule_removal(row),
                    None if matches!(resolution, Resolution::Out | Resolution::Unplaced) => self.changes.ignored += 1,
                    None => {}
                },
            }
        }
        self.keep_or_remove_unplaced(&upserts)?;
        if self.kind == RoundKind::Full {
            // Before placing anything, so names held by rows that go are free.
            self.schedule_unseen()?;
        }
        upserts.sort();
        for &(_, _, id) in &upserts {
            self.upsert(id)?;
            crate::crash_points::crash_point("delta.row_applied");
        }
        self.remove_scheduled()?;
        if changes_move_folder_times {
            self.folder_times_follow_entries()?;
        }
        let mut seen = HashSet::new();
        self.changes.conflicts.retain(|c| seen.insert((c.ino, c.kind)));
        Ok(())
    }

    /// The rows of `Unplaced` items stay where they are, to be placed by the listing of the round's new folders,
    /// when the round has such folders and places nothing under a name one of them holds; otherwise they go.
    fn keep_or_remove_unplaced(&mut self, upserts: &[(u32, usize, &'a str)]) -> Result<(), StoreError> {
        let rows = std::mem::take(&mut self.unplaced_rows);
        if rows.is_empty() {
            return Ok(());
        }
        let lists_folders = upserts
            .iter()
            .any(|&(_, _, id)| self.latest[id].is_folder() && self.before.get(id).is_none_or(|row| row.remote_removed));
        let wanted: HashSet<(&str, String)> = upserts
            .iter()
            .filter_map(|&(_, _, id)| {
                let item = self.latest[id];
                Some((item.parent_id()?, name_key(item.name.as_deref()?)))
            })
            .collect();
        for (id, row) in rows {
            let parent_id = match row.parent_ino {
                Some(parent) => self.tx.get(parent)?.map(|p| p.item_id),
                None => None,
            };
            let name_wanted =
                parent_id.is_none_or(|parent_id| wanted.contains(&(parent_id.as_str(), name_key(&row.name))));
            if lists_folders && !name_wanted {
                self.changes.unplaced.push(self.latest[id].clone());
            } else {
                self.schedule_removal(row);
            }
        }
        Ok(())
    }

    /// Folders whose entries this round created, removed or renamed (and that were in the store before it): their
    /// mtime and ctime move to now, as a local change's would.
    fn folder_times_follow_entries(&mut self) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp();
        let inserted: HashSet<u64> = self.changes.inserted.iter().copied().collect();
        for &folder in &self.changes.parents_changed {
            if !inserted.contains(&folder) {
                self.tx.folder_entries_changed(folder, now)?;
            }
        }
        Ok(())
    }

    fn apply_root(&mut self, item: &DriveItem) -> Result<(), StoreError> {
        if item.is_deleted() {
            tracing::warn!(ino = self.scope_ino, "the tree's folder was deleted on OneDrive");
            self.changes.gallery_deleted = true;
            return Ok(());
        }
        let root = self
            .tx
            .get(self.scope_ino)?
            .ok_or(StoreError::NoSuchInode(self.scope_ino))?;
        let mut attrs = remote_attrs(item);
        attrs.size = 0;
        if !same_attrs(&root, &attrs) {
            self.tx.update_remote(self.scope_ino, &attrs)?;
            self.changes.root_updated = true;
        }
        Ok(())
    }

    /// Where item `id` (mentioned in the round) ends up. Iterative: the unresolved items above it are collected
    /// first and resolved top down, so a hostile chain of thousands of nested folders cannot overflow the stack.
    fn resolve(&mut self, id: &'a str) -> Result<Resolution, StoreError> {
        if let Some(r) = self.memo.get(id) {
            return Ok(*r);
        }
        self.memo.insert(id, Resolution::Visiting);
        let mut chain = vec![id];
        while let Some(next) = self.unresolved_ancestor(chain[chain.len() - 1])? {
            self.memo.insert(next, Resolution::Visiting);
            chain.push(next);
        }
        for &cid in chain.iter().rev() {
            let r = self.resolve_uncached(cid)?;
            self.memo.insert(cid, r);
        }
        Ok(self.memo[id])
    }

    /// The nearest item of the round above `id` (its parent, or reached through store rows) not resolved yet.
    fn unresolved_ancestor(&self, id: &str) -> Result<Option<&'a str>, StoreError> {
        let item = self.latest[id];
        if item.is_deleted() {
            return Ok(None);
        }
        let Some(parent_id) = item.parent_id() else {
            return Ok(None);
        };
        if parent_id == self.gallery || is_reserved_id(parent_id) {
            return Ok(None);
        }
        let mut found = self.latest.get_key_value(parent_id).map(|(&pid, _)| pid);
        if found.is_none() {
            let mut row = self.tx.get_by_item_id(parent_id)?;
            let mut steps = 0u32;
            while let Some(r) = row.filter(|r| r.ino != ROOT_INO && steps <= 10_000) {
                if let Some((&cid, _)) = self.latest.get_key_value(r.item_id.as_str()) {
                    found = Some(cid);
                    break;
                }
                row = match r.parent_ino {
                    Some(p) => self.tx.get(p)?,
                    None => None,
                };
                steps += 1;
            }
        }
        Ok(found.filter(|cid| !self.memo.contains_key(cid)))
    }

    fn resolve_uncached(&mut self, id: &'a str) -> Result<Resolution, StoreError> {
        let item = self.latest[id];
        if item.is_deleted() || self.pending_deletes.contains(id) {
            // Deleted here and journalled: the round may predate the delete reaching OneDrive.
            return Ok(Resolution::Deleted);
        }
        let Some(parent_id) = item.parent_id() else {
            return Ok(Resolution::Out);
        };
        if is_reserved_id(parent_id) && parent_id != self.gallery {
            return Ok(Resolution::Rejected(RejectReason::ParentRejected));
        }
        let (parent, parent_is_folder) = if parent_id == self.gallery {
            (Resolution::In(self.scope_depth), true)
        } else if let Some((&pid, &parent_item)) = self.latest.get_key_value(parent_id) {
            (self.resolve(pid)?, parent_item.is_folder())
        } else if let Some(row) = self.tx.get_by_item_id(parent_id)? {
            let is_dir = row.is_dir();
            (self.resolve_store_chain(row)?, is_dir)
        } else {
            (Resolution::Unplaced, true)
        };
        let parent_depth = match parent {
            Resolution::In(depth) => depth,
            Resolution::Rejected(_) => return Ok(Resolution::Rejected(RejectReason::ParentRejected)),
            Resolution::Unplaced => return Ok(Resolution::Unplaced),
            _ => return Ok(Resolution::Out),
        };
        if !parent_is_folder {
            return Ok(Resolution::Rejected(RejectReason::ParentNotFolder));
        }
        let Some(name) = item.name.as_deref() else {
            return Ok(Resolution::Rejected(RejectReason::NoName));
        };
        if let Err(reason) = check_name(name) {
            return Ok(Resolution::Rejected(reason));
        }
        if !item.is_file() && !item.is_folder() {
            return Ok(Resolution::Rejected(RejectReason::UnsupportedKind));
        }
        Ok(Resolution::In(parent_depth + 1))
    }

    /// Resolution of a store row as a parent: walks up the store until the root or a row the round mentions.
    fn resolve_store_chain(&mut self, row: ItemRow) -> Result<Resolution, StoreError> {
        let mut steps = 0u32;
        let mut current = row;
        loop {
            if current.ino == ROOT_INO {
                return Ok(Resolution::In(steps));
            }
            if let Some((&cid, _)) = self.latest.get_key_value(current.item_id.as_str()) {
                return Ok(match self.resolve(cid)? {
                    Resolution::In(depth) => Resolution::In(depth + steps),
                    other => other,
                });
            }
            let Some(parent) = current.parent_ino else {
                return Ok(Resolution::Out);
            };
            current = self.tx.get(parent)?.ok_or(StoreError::NoSuchInode(parent))?;
            steps += 1;
            if steps > 10_000 {
                return Ok(Resolution::Out);
            }
        }
    }

    /// Whether row `ino` is in this round's tree (not in a nested tree, not detached or retired).
    fn in_own_tree(&self, ino: u64) -> Result<bool, StoreError> {
        let mut current = Some(ino);
        let mut steps = 0u32;
        while let Some(i) = current {
            if i == self.scope_ino {
                return Ok(true);
            }
            if i == ROOT_INO || self.nested.iter().any(|(_, n)| *n == i) || steps > 100_000 {
                return Ok(false);
            }
            current = self.tx.get(i)?.and_then(|r| r.parent_ino);
            steps += 1;
        }
        Ok(false)
    }

    fn schedule_removal(&mut self, row: ItemRow) {
        if row.ino == self.scope_ino || self.nested.iter().any(|(_, ino)| *ino == row.ino) {
            return;
        }
        if row.ino != ROOT_INO && self.removal_inos.insert(row.ino) {
            self.removals.push(row);
        }
    }

    /// Whether a row may be detached now to free its name: it is placed later in this round, or removed by it
    /// without anything local below it.
    fn can_evict(&self, occupant: &ItemRow) -> Result<bool, StoreError> {
        if self.unplaced.contains(occupant.item_id.as_str()) {
            return Ok(true);
        }
        if self.removal_inos.contains(&occupant.ino) {
            return Ok(self.protected_in(occupant.ino)?.is_empty());
        }
        Ok(false)
    }

    /// Dirty or local-only rows in the subtree of `ino`.
    fn protected_in(&self, ino: u64) -> Result<Vec<ItemRow>, StoreError> {
        let mut protected = Vec::new();
        for i in self.tx.subtree(ino)? {
            if let Some(row) = self.tx.get(i)? {
                if row.is_dirty() || row.local_only {
                    protected.push(row);
                }
            }
        }
        Ok(protected)
    }

    /// A name for `ino` (or a new item) in `parent`: `desired`, freeing it from a row this round moves or removes
    /// anyway, else with a ` (n)` suffix.
    fn free_name(&mut self, parent: u64, desired: &str, ino: Option<u64>) -> Result<String, StoreError> {
        let mut n = 1;
        loop {
            let candidate = if n == 1 {
                desired.to_string()
            } else {
                suffixed_name(desired, n)
            };
            let free = match self.tx.lookup(parent, &candidate)? {
                None => true,
                Some(occupant) if Some(occupant.ino) == ino => true,
                Some(occupant) => {
                    let evict = self.can_evict(&occupant)?;
                    if evict {
                        self.tx.detach(occupant.ino)?;
                    }
                    evict
                }
            };
            if free {
                if n > 1 {
                    self.next_suffix.insert((parent, name_key(desired)), n + 1);
                }
                return Ok(candidate);
            }
            n = if n == 1 {
                self.next_suffix.get(&(parent, name_key(desired))).copied().unwrap_or(2)
            } else {
                n + 1
            };
        }
    }

    fn parent_ino(&mut self, item: &DriveItem) -> Result<u64, StoreError> {
        let parent_id = item.parent_id().unwrap_or_default();
        if parent_id == self.gallery {
            return Ok(self.scope_ino);
        }
        if let Some(&ino) = self.parent_inos.get(parent_id) {
            return Ok(ino);
        }
        let ino = self
            .tx
            .get_by_item_id(parent_id)?
            .map(|r| r.ino)
            .ok_or_else(|| StoreError::Corrupt(format!("delta parent {parent_id:?} not placed")))?;
        self.parent_inos.insert(parent_id.to_string(), ino);
        Ok(ino)
    }

    fn upsert(&mut self, id: &'a str) -> Result<(), StoreError> {
        let item = self.latest[id];
        self.unplaced.remove(id);
        let parent = self.parent_ino(item)?;
        let name = item.name.as_deref().unwrap_or_default();
        let kind = if item.is_folder() {
            ItemKind::Dir
        } else {
            ItemKind::File
        };
        let mut existing = self.before.get(id).cloned();
        if let Some(row) = existing.as_ref().filter(|r| r.kind != kind) {
            // The same id changed between file and folder: replace the row.
            let old = row.clone();
            self.record_removal(&old, self.tx.remove(old.ino)?);
            existing = None;
        }
        let attrs = remote_attrs(item);
        match existing {
            None => {
                let final_name = self.free_name(parent, name, None)?;
                let ino = self.tx.insert(&NewItem {
                    item_id: id.to_string(),
                    parent_ino: parent,
                    name: final_name.clone(),
                    kind,
                    size: if kind == ItemKind::Dir { 0 } else { attrs.size },
                    etag: attrs.etag.clone(),
                    ctag: attrs.ctag.clone(),
                    quick_xor_hash: attrs.quick_xor_hash.clone(),
                    mtime: attrs.mtime,
                    mime_type: attrs.mime_type.clone(),
                    is_media: attrs.is_media,
                    content_state: Default::default(),
                    local_only: false,
                })?;
                if final_name != name {
                    self.changes.renamed_for_clash.push(ino);
                }
                self.changes.inserted.push(ino);
                self.changes.entries.push(EntryChange::Added { ino });
                self.changes.parents_changed.insert(parent);
                if kind == ItemKind::Dir && self.kind != RoundKind::Full {
                    self.changes.needs_listing.push(ino);
                }
            }
            Some(row) => {
                let ino = row.ino;
                let updated_before = self.changes.updated.len();
                self.update_existing(row, parent, name, attrs)?;
                if let Some(facet) = media_facet(item) {
                    // A photo facet that arrives after the upload re-dates the item.
                    if self.tx.set_media(ino, &facet)? && self.changes.updated.len() == updated_before {
                        self.changes.updated.push(ino);
                    }
                }
                return Ok(());
            }
        }
        if let Some(facet) = media_facet(item) {
            if let Some(&ino) = self.changes.inserted.last() {
                self.tx.set_media(ino, &facet)?;
            }
        }
        Ok(())
    }

    fn update_existing(
        &mut self,
        row: ItemRow,
        parent: u64,
        name: &str,
        mut attrs: RemoteAttrs,
    ) -> Result<(), StoreError> {
        let mut updated = false;
        // Moved here and journalled: the local place is newer than the round's (the move may not have reached
        // OneDrive when the round was listed).
        let (parent, name) = match row.parent_ino {
            Some(local_parent) if self.pending_moves.contains(&row.ino) => (local_parent, row.name.as_str()),
            _ => (parent, name),
        };
        // A detached row (name freed for another item) must be re-attached even if its place is unchanged.
        let current = self.tx.get(row.ino)?.ok_or(StoreError::NoSuchInode(row.ino))?;
        let final_name = self.free_name(parent, name, Some(row.ino))?;
        if current.parent_ino != Some(parent) || current.name != final_name {
            self.tx.rename(row.ino, parent, &final_name)?;
            if row.parent_ino != Some(parent) || row.name != final_name {
                if let Some(old_parent) = row.parent_ino {
                    self.changes.parents_changed.insert(old_parent);
                    self.changes.stale_entries.push((old_parent, row.name.clone()));
                }
                self.changes.parents_changed.insert(parent);
                self.changes.entries.push(EntryChange::Moved { before: row.clone() });
                updated = true;
            }
        }
        if final_name != name {
            self.changes.renamed_for_clash.push(row.ino);
        }
        if row.remote_removed {
            // Back in the gallery (moved back or restored): what it holds now is unknown.
            self.tx.set_remote_removed(row.ino, false)?;
            if row.kind == ItemKind::Dir && self.kind != RoundKind::Full {
                self.changes.needs_listing.push(row.ino);
            }
            updated = true;
        }
        if row.kind == ItemKind::Dir {
            attrs.size = 0;
        }
        if row.is_dirty() {
            // Keep local content attributes and the baseline; a different remote cTag is a conflict.
            if row.kind == ItemKind::File
                && content_differs(row.base_ctag.as_ref(), row.base_hash.as_ref(), row.base_size, &attrs)
            {
                self.changes.conflicts.push(Conflict {
                    ino: row.ino,
                    kind: ConflictKind::RemoteContentChanged,
                });
            }
            if attrs.etag != row.etag {
                self.tx.set_etag(row.ino, attrs.etag.as_deref())?;
                updated = true;
            }
        } else if !same_attrs(&row, &attrs) {
            if row.kind == ItemKind::File
                && content_differs(row.ctag.as_ref(), row.quick_xor_hash.as_ref(), Some(row.size), &attrs)
            {
                self.tx.drop_blocks(row.ino)?;
                self.changes.content_changed.push(row.ino);
            }
            self.tx.update_remote(row.ino, &attrs)?;
            updated = true;
        }
        if updated {
            self.changes.updated.push(row.ino);
        }
        Ok(())
    }

    /// Full enumeration: every row not mentioned (and not under a mentioned folder's kept subtree) goes.
    fn schedule_unseen(&mut self) -> Result<(), StoreError> {
        let seen: HashSet<&str> = self
            .memo
            .iter()
            .filter(|(_, r)| matches!(r, Resolution::In(_)))
            .map(|(id, _)| *id)
            .collect();
        // Only the shown tree: retired roots keep what their pending changes need (store/roots.rs).
        let nested: Vec<u64> = self.nested.iter().map(|(_, ino)| *ino).collect();
        for (ino, item_id) in self.tx.tree_item_ids(self.scope_ino, &nested)? {
            if !seen.contains(item_id.as_str()) && !self.removal_inos.contains(&ino) {
                if let Some(row) = self.tx.get(ino)? {
                    if !row.local_only && !row.is_dirty() && row.parent_ino.is_some() {
                        self.schedule_removal(row);
                    }
                }
            }
        }
        Ok(())
    }

    fn record_removal(&mut self, row: &ItemRow, removed: Vec<u64>) {
        self.parent_inos.clear();
        if let Some(parent) = row.parent_ino {
            self.changes.parents_changed.insert(parent);
            self.changes.stale_entries.push((parent, row.name.clone()));
            self.changes.entries.push(EntryChange::Removed { before: row.clone() });
        }
        for ino in &removed {
            self.changes.parents_changed.remove(ino);
        }
        self.changes.removed.extend(removed);
    }

    /// Removes the scheduled rows, deepest first, keeping dirty and local-only rows and their ancestors.
    fn remove_scheduled(&mut self) -> Result<(), StoreError> {
        let mut scheduled = std::mem::take(&mut self.removals);
        let mut depths = HashMap::new();
        for row in &scheduled {
            depths.insert(row.ino, self.depth_before(row)?);
        }
        scheduled.sort_by_key(|r| std::cmp::Reverse(depths[&r.ino]));
        for row in scheduled {
            let Some(current) = self.tx.get(row.ino)? else {
                continue; // went with an ancestor
            };
            let protected = self.protected_in(row.ino)?;
            if protected.is_empty() {
                let removed = self.tx.remove(row.ino)?;
                self.record_removal(&row, removed);
                continue;
            }
            self.remove_around(&current, &protected)?;
            for ino in self.tx.subtree(row.ino)? {
                if self.tx.get(ino)?.is_some_and(|r| !r.local_only && !r.remote_removed) {
                    self.tx.set_remote_removed(ino, true)?;
                }
            }
            for p in &protected {
                self.changes.conflicts.push(Conflict {
                    ino: p.ino,
                    kind: ConflictKind::RemoteRemoved,
                });
            }
            if current.parent_ino.is_none() {
                // Detached earlier to free its name; put it back where it was.
                let parent = match row.parent_ino {
                    Some(p) if self.tx.get(p)?.is_some() => p,
                    _ => ROOT_INO,
                };
                let name = self.free_name(parent, &row.name, Some(row.ino))?;
                self.tx.rename(row.ino, parent, &name)?;
            }
        }
        Ok(())
    }

    /// Removes everything below `top` except the `protected` rows and their ancestors.
    fn remove_around(&mut self, top: &ItemRow, protected: &[ItemRow]) -> Result<(), StoreError> {
        let mut keep: HashSet<u64> = HashSet::new();
        for p in protected {
            let mut current = Some(p.ino);
            while let Some(ino) = current {
                if !keep.insert(ino) || ino == top.ino {
                    break;
                }
                current = self.tx.get(ino)?.and_then(|r| r.parent_ino);
            }
        }
        for ino in self.tx.subtree(top.ino)? {
            if keep.contains(&ino) {
                continue;
            }
            let Some(row) = self.tx.get(ino)? else { continue };
            if row.parent_ino.is_some_and(|p| keep.contains(&p)) {
                let removed = self.tx.remove(ino)?;
                self.record_removal(&row, removed);
            }
        }
        Ok(())
    }

    /// Depth of a row in the tree as it was before the round (0 for unknown).
    fn depth_before(&self, row: &ItemRow) -> Result<u32, StoreError> {
        let mut depth = 0;
        let mut parent = row.parent_ino;
        while let Some(p) = parent {
            depth += 1;
            if depth > 10_000 {
                break;
            }
            parent = self.tx.get(p)?.and_then(|r| r.parent_ino);
        }
        Ok(depth)
    }
}

fn remote_attrs(item: &DriveItem) -> RemoteAttrs {
    RemoteAttrs {
        etag: item.e_tag.clone(),
        ctag: item.c_tag.clone(),
        size: item.size.unwrap_or(0).max(0) as u64,
        quick_xor_hash: item.quick_xor_hash().map(str::to_string),
        mtime: item.modified().map(|t| t.timestamp()).unwrap_or(0),
        mime_type: item.file.as_ref().and_then(|f| f.mime_type.clone()),
        is_media: item.is_file() && item.is_media(),
    }
}

/// The photo/image/video/location facets and creation time of a media file (`None` for anything else).
fn media_facet(item: &DriveItem) -> Option<MediaFacet> {
    if !(item.is_file() && item.is_media()) {
        return None;
    }
    let photo = item.photo.as_ref();
    let (width, height) = match (&item.image, &item.video) {
        (Some(i), _) if i.width.is_some() => (i.width, i.height),
        (_, Some(v)) => (v.width, v.height),
        _ => (None, None),
    };
    let location = item.location.as_ref();
    Some(MediaFacet {
        taken: photo.and_then(|p| p.taken_date_time).map(|t| t.timestamp()),
        created: item
            .file_system_info
            .as_ref()
            .and_then(|f| f.created_date_time)
            .or(item.created_date_time)
            .map(|t| t.timestamp()),
        camera_make: photo.and_then(|p| p.camera_make.clone()),
        camera_model: photo.and_then(|p| p.camera_model.clone()),
        width,
        height,
        latitude: location.and_then(|l| l.latitude),
        longitude: location.and_then(|l| l.longitude),
        altitude: location.and_then(|l| l.altitude),
    })
}

/// Whether `attrs` describe other content than the version known by cTag/hash/size. The cTag decides when both
/// sides have one (Business omits it on creates); otherwise a known quickXorHash, otherwise the size.
fn content_differs(ctag: Option<&String>, hash: Option<&String>, size: Option<u64>, attrs: &RemoteAttrs) -> bool {
    if let (Some(old), Some(new)) = (ctag, attrs.ctag.as_ref()) {
        return old != new;
    }
    if let (Some(old), Some(new)) = (hash, attrs.quick_xor_hash.as_ref()) {
        return old != new;
    }
    size.is_some_and(|s| s != attrs.size)
}

/// Whether the row already holds `a`. A folder's time is compared with OneDrive's as last seen: its local mtime
/// moves with its entries.
fn same_attrs(row: &ItemRow, a: &RemoteAttrs) -> bool {
    let same_time = if row.is_dir() {
        row.remote_mtime == Some(a.mtime)
    } else {
        row.mtime == a.mtime
    };
    row.etag == a.etag
        && row.ctag == a.ctag
        && row.size == a.size
        && row.quick_xor_hash == a.quick_xor_hash
        && same_time
        && row.mime_type == a.mime_type
        && row.is_media == a.is_media
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_local_move_is_not_undone_by_a_round_that_reports_the_old_place() {
        use crate::remote::models::{FileFacet, FolderFacet, ItemReference};
        use crate::store::OutboxOp;
        let at = |id: &str, parent: &str, name: &str| DriveItem {
            id: id.into(),
            name: Some(name.into()),
            c_tag: Some(format!("c-{id}")),
            parent_reference: Some(ItemReference {
                id: Some(parent.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let folder = |id: &str, parent: &str, name: &str| DriveItem {
            folder: Some(FolderFacet::default()),
            ..at(id, parent, name)
        };
        let file = |id: &str, parent: &str, name: &str| DriveItem {
            file: Some(FileFacet::default()),
            size: Some(10),
            ..at(id, parent, name)
        };
        let store = Store::open_in_memory().unwrap();
        let camera = [folder("G", "P", "Samsung Gallery"), folder("D1", "G", "Camera")];
        let photo = file("F1", "D1", "IMG_1.jpg");
        replace_all(&store, "G", &[camera[0].clone(), camera[1].clone(), photo.clone()]).unwrap();
        let f1 = store.get_by_item_id("F1").unwrap().unwrap().ino;
        // mkdir Album && mv Camera/IMG_1.jpg Album/: the folder is not on OneDrive yet, the move is journalled.
        let album = store
            .insert(&NewItem::local(ROOT_INO, "Album", ItemKind::Dir, 0))
            .unwrap();
        let album_id = store.get(album).unwrap().unwrap().item_id;
        store.rename(f1, album, "IMG_1.jpg").unwrap();
        store
            .enqueue(&OutboxOp::Move {
                ino: f1,
                item_id: "F1".into(),
                new_parent_id: album_id,
                new_name: "IMG_1.jpg".into(),
            })
            .unwrap();
        // A round (or a periodic full re-list) reports the photo where OneDrive still has it.
        apply_delta_round(&store, "G", std::slice::from_ref(&photo)).unwrap();
        replace_all(&store, "G", &[camera[0].clone(), camera[1].clone(), photo]).unwrap();
        let row = store.get(f1).unwrap().unwrap();
        assert_eq!((row.parent_ino, row.name.as_str()), (Some(album), "IMG_1.jpg"));
        // Without a pending move, the place OneDrive reports wins as before.
        store.write(|t| t.drop_ops(f1, &["move"])).unwrap();
        apply_delta_round(&store, "G", &[file("F1", "D1", "IMG_1.jpg")]).unwrap();
        assert_eq!(
            store.get(f1).unwrap().unwrap().parent_ino,
            store.get_by_item_id("D1").unwrap().map(|r| r.ino)
        );
    }

    #[test]
    fn folder_times_move_with_entries_once_synced_and_follow_onedrive_only_when_it_changes() {
        use crate::remote::models::{FileFacet, FileSystemInfo, FolderFacet, ItemReference};
        let at = |id: &str, parent: &str, name: &str, mtime: i64| DriveItem {
            id: id.into(),
            name: Some(name.into()),
            parent_reference: Some(ItemReference {
                id: Some(parent.into()),
                ..Default::default()
            }),
            file_system_info: Some(FileSystemInfo {
                last_modified_date_time: chrono::DateTime::from_timestamp(mtime, 0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let folder = |id: &str, parent: &str, name: &str, mtime: i64| DriveItem {
            folder: Some(FolderFacet::default()),
            ..at(id, parent, name, mtime)
        };
        let file = |id: &str, parent: &str, name: &str| DriveItem {
            file: Some(FileFacet::default()),
            size: Some(1),
            c_tag: Some(format!("c-{id}")),
            ..at(id, parent, name, 100)
        };
        let store = Store::open_in_memory().unwrap();
        let listing = [
            folder("G", "P", "Samsung Gallery", 10),
            folder("A", "G", "Album", 20),
            file("F1", "A", "1.jpg"),
        ];
        // The first listing fills the store: OneDrive's times.
        apply_delta_round_with_link(&store, "G", &listing, RoundKind::Full, "link1").unwrap();
        let album = store.get_by_item_id("A").unwrap().unwrap();
        assert_eq!((album.mtime, album.ctime, album.remote_mtime), (20, None, Some(20)));
        assert_eq!(store.root().unwrap().mtime, 10);
        // A file added on OneDrive: the folder's mtime and ctime move to now; the folder reported again with
        // OneDrive's unchanged time keeps them.
        let before = chrono::Utc::now().timestamp();
        apply_delta_round(&store, "G", &[file("F2", "A", "2.jpg"), listing[1].clone()]).unwrap();
        let album = store.get_by_item_id("A").unwrap().unwrap();
        assert!(album.mtime >= before && album.status_changed() >= before, "{album:?}");
        assert_eq!(store.root().unwrap().mtime, 10, "the root's entries did not change");
        let changes = apply_delta_round(&store, "G", &[listing[1].clone()]).unwrap();
        assert!(changes.updated.is_empty(), "nothing changed: {changes:?}");
        assert!(store.get_by_item_id("A").unwrap().unwrap().mtime >= before);
        // OneDrive's own time of the folder changed (set elsewhere): it is taken.
        apply_delta_round(&store, "G", &[folder("A", "G", "Album", 30)]).unwrap();
        let album = store.get_by_item_id("A").unwrap().unwrap();
        assert_eq!((album.mtime, album.remote_mtime), (30, Some(30)));
        // A removal and a move out move the folders concerned.
        let gone = DriveItem {
            deleted: Some(Default::default()),
            ..file("F2", "A", "2.jpg")
        };
        apply_delta_round(&store, "G", &[gone, file("F1", "G", "1.jpg")]).unwrap();
        assert!(store.get_by_item_id("A").unwrap().unwrap().mtime >= before);
        assert!(store.root().unwrap().mtime >= before);
    }

    #[test]
    fn content_change_falls_back_from_ctag_to_hash_to_size() {
        let c = |s: &str| Some(s.to_string());
        let attrs = |ctag: Option<String>, hash: Option<String>, size| RemoteAttrs {
            ctag,
            quick_xor_hash: hash,
            size,
            ..RemoteAttrs::default()
        };
        assert!(content_differs(c("a").as_ref(), None, Some(1), &attrs(c("b"), None, 1)));
        assert!(!content_differs(
            c("a").as_ref(),
            c("h").as_ref(),
            Some(1),
            &attrs(c("a"), c("x"), 2)
        ));
        // No cTag on one side (a Business create): the hash decides, then the size.
        assert!(!content_differs(
            None,
            c("h").as_ref(),
            Some(1),
            &attrs(c("a"), c("h"), 1)
        ));
        assert!(content_differs(
            c("a").as_ref(),
            c("h").as_ref(),
            Some(1),
            &attrs(None, c("h2"), 1)
        ));
        assert!(content_differs(None, None, Some(1), &attrs(None, None, 2)));
        assert!(!content_differs(None, None, None, &attrs(None, None, 2)));
    }
}
