//! [`CameraRollTree`]: the drive's Camera Roll (where OneDrive Camera Backup puts new photos) as one more folder at
//! the mount root, synced as a tree of its own beside the gallery's.
//!
//! - Looked up at every round through `special/cameraroll` (found by what it is, whatever its localized name),
//!   then followed by item id. Absent (404/403): nothing is shown, status `missing`; a folder row kept from an
//!   earlier round stays with what is local (as the gallery's does). Created later: it appears at the next round.
//! - Its row is a folder below the root (a nested tree root, store/roots.rs) named as OneDrive names the folder,
//!   or `NAME (Camera Backup)` when the gallery already has a child of that name. Everything below it is ordinary
//!   rows, so the filesystem serves it by the same code as the gallery (reads, edits, moves by item id, …).
//! - Its own delta link (`camera_roll_delta_link`): the first round lists it by folders, later ones apply its
//!   folder-scoped delta; a 410 or a forgotten link re-lists this tree only. Failures here leave the gallery
//!   alone and the other way round.
//! - `camera_roll=off`: the folder of an earlier mount is retired (kept only for its pending changes).
//! - When the gallery is the Camera Roll, lies inside it, or holds it, the Camera Roll shows once (in the
//!   gallery's tree) and no extra folder is made.

use std::sync::Arc;
use thiserror::Error;

use super::delta_apply::{apply_fresh_scoped_round_with_link, AppliedChanges, DeltaApplyError, RoundKind, TreeScope};
use super::status::{CameraRollState, CameraRollStatus, SyncStatus};
use super::tree_listing::{list_tree, TreeListingError, DEFAULT_FOLDERS_IN_FLIGHT};
use crate::remote::drive_api::{DeltaRequest, DriveApi, DriveError};
use crate::remote::models::DriveItem;
use crate::store::{meta_keys, ItemKind, NewItem, Store, StoreError, ROOT_INO};

/// The name of the drive's Camera Roll special folder in Graph (`special/cameraroll`).
pub const CAMERA_ROLL_SPECIAL: &str = "cameraroll";

#[derive(Debug, Error)]
pub enum CameraRollError {
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] DeltaApplyError),
}

/// The Camera Roll's tree (see the module note).
pub struct CameraRollTree {
    store: Arc<Store>,
    drive: Arc<dyn DriveApi>,
    status: Arc<SyncStatus>,
    enabled: bool,
}

impl CameraRollTree {
    pub fn new(store: Arc<Store>, drive: Arc<dyn DriveApi>, status: Arc<SyncStatus>, enabled: bool) -> Self {
        if !enabled {
            // Off: the folder of an earlier mount is no longer shown (kept only for its pending changes).
            if let Err(e) = store.write(|t| {
                if let Some(ino) = t.meta(meta_keys::CAMERA_ROLL_INO)?.and_then(|i| i.parse::<u64>().ok()) {
                    t.retire_subtree(ino)?;
                    t.prune_retired_roots()?;
                }
                for key in [
                    meta_keys::CAMERA_ROLL_INO,
                    meta_keys::CAMERA_ROLL_ITEM_ID,
                    meta_keys::CAMERA_ROLL_DELTA_LINK,
                ] {
                    t.delete_meta(key)?;
                }
                Ok::<_, StoreError>(())
            }) {
                tracing::warn!(error = %e, "cannot hide the Camera Roll's folder");
            }
            status.update(|s| {
                s.camera_roll = CameraRollStatus {
                    path: None,
                    state: CameraRollState::Off,
                    items: 0,
                }
            });
        }
        CameraRollTree {
            store,
            drive,
            status,
            enabled,
        }
    }

    /// One round of the Camera Roll's tree for the gallery `gallery_id`: looks it up, places its folder, then
    /// applies its delta (or lists it in full when `full` or it has no link yet).
    pub async fn sync(&self, gallery_id: &str, full: bool) -> Result<AppliedChanges, CameraRollError> {
        if !self.enabled {
            return Ok(AppliedChanges::default());
        }
        let folder = match self.drive.special_folder(CAMERA_ROLL_SPECIAL).await {
            Ok(f) if f.is_folder() && !f.is_deleted() => f,
            Ok(_) | Err(DriveError::NotFound(_)) | Err(DriveError::Other { status: Some(403), .. }) => {
                self.report(CameraRollState::Missing)?;
                return Ok(AppliedChanges::default());
            }
            Err(e) => return Err(e.into()),
        };
        if self.shown_by_gallery(&folder, gallery_id).await? {
            self.report(CameraRollState::Ok)?;
            return Ok(AppliedChanges::default());
        }
        let (scope, mut changes) = self.place(&folder)?;
        let link = self.store.meta(meta_keys::CAMERA_ROLL_DELTA_LINK)?;
        let applied = match link.filter(|_| !full) {
            Some(link) => match self.list_pending_folders(&scope).await? {
                Some(listed) => listed,
                None => match self.drive.delta(DeltaRequest::Link(link)).await {
                    Ok(round) => {
                        let mut applied = apply_fresh_scoped_round_with_link(
                            &self.store,
                            &scope,
                            &round.items,
                            RoundKind::Incremental,
                            &round.delta_link,
                            || false,
                        )?
                        .unwrap_or_default();
                        if !applied.needs_listing.is_empty() {
                            if let Some(listed) = self.list_pending_folders(&scope).await? {
                                applied.merge(listed);
                            }
                        }
                        applied
                    }
                    Err(DriveError::ResyncRequired { .. }) | Err(DriveError::NotFound(_)) => {
                        tracing::info!("the Camera Roll's delta must start again; listing it");
                        self.list(&scope).await?
                    }
                    Err(e) => return Err(e.into()),
                },
            },
            None => self.list(&scope).await?,
        };
        changes.merge(applied);
        self.report(CameraRollState::Ok)?;
        Ok(changes)
    }

    /// Lists the tree by folders after a `token=latest` link and applies it as one full round of its scope.
    async fn list(&self, scope: &TreeScope) -> Result<AppliedChanges, CameraRollError> {
        let (items, delta_link) =
            match list_tree(self.drive.as_ref(), &scope.item_id, DEFAULT_FOLDERS_IN_FLIGHT, |_| {}).await {
                Ok(listing) => (listing.items, listing.delta_link),
                Err(TreeListingError::LatestRefused(_)) => self.enumerate_by_delta(&scope.item_id).await?,
                Err(TreeListingError::Drive(e)) => return Err(e.into()),
            };
        Ok(
            apply_fresh_scoped_round_with_link(&self.store, scope, &items, RoundKind::Full, &delta_link, || false)?
                .unwrap_or_default(),
        )
    }

    async fn enumerate_by_delta(&self, folder_id: &str) -> Result<(Vec<DriveItem>, String), CameraRollError> {
        let mut request = DeltaRequest::Full {
            folder_id: Some(folder_id.to_string()),
        };
        let mut all = Vec::new();
        loop {
            let page = self.drive.delta_page(&request).await?;
            all.extend(page.items);
            match (page.next_link, page.delta_link) {
                (Some(next), _) => request = DeltaRequest::Link(next),
                (None, Some(link)) => return Ok((all, link)),
                (None, None) => {
                    return Err(DriveError::Other {
                        status: None,
                        message: "delta page has neither a nextLink nor a deltaLink".into(),
                    }
                    .into())
                }
            }
        }
    }

    /// Folders an incremental round brought into the tree, if a listing is pending: their content, applied with
    /// the round's unplaced items (see [`super::delta_apply::PendingListing`]).
    async fn list_pending_folders(&self, scope: &TreeScope) -> Result<Option<AppliedChanges>, CameraRollError> {
        let Some(pending) = super::delta_apply::pending_listing(&self.store, scope)? else {
            return Ok(None);
        };
        let listed = super::tree_listing::everything_below(self.drive.as_ref(), pending.folders.clone()).await?;
        Ok(Some(super::delta_apply::apply_pending_listing(
            &self.store,
            scope,
            &pending,
            listed,
        )?))
    }

    /// Whether the gallery's tree already shows the Camera Roll (it is the gallery, inside it, or holds it).
    async fn shown_by_gallery(&self, folder: &DriveItem, gallery_id: &str) -> Result<bool, CameraRollError> {
        if folder.id == gallery_id {
            return Ok(true);
        }
        let own_row = self.own_ino()?;
        if let Some(row) = self.store.get_by_item_id(&folder.id)? {
            if Some(row.ino) != own_row && self.store.read(|t| t.is_shown(row.ino))? {
                return Ok(true);
            }
        }
        // The gallery below the Camera Roll: compare paths from the drive root. A gallery gone from OneDrive is
        // below nothing (the Camera Roll goes on without it).
        let gallery = match self.drive.item(gallery_id).await {
            Ok(gallery) if !gallery.is_deleted() => gallery,
            Ok(_) | Err(DriveError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        Ok(match (item_path(folder), item_path(&gallery)) {
            (Some(roll), Some(gallery)) => gallery.to_lowercase().starts_with(&format!("{}/", roll.to_lowercase())),
            _ => false,
        })
    }

    fn own_ino(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .meta(meta_keys::CAMERA_ROLL_INO)?
            .and_then(|i| i.parse().ok()))
    }

    /// The folder row of the Camera Roll at the root, made or renamed as OneDrive names it; a row of an earlier
    /// Camera Roll (another id) is retired with what its pending changes need.
    fn place(&self, folder: &DriveItem) -> Result<(TreeScope, AppliedChanges), CameraRollError> {
        let name = folder.name.clone().unwrap_or_else(|| "Camera Roll".into());
        let own = self.own_ino()?;
        let stored_id = self.store.meta(meta_keys::CAMERA_ROLL_ITEM_ID)?;
        let mut changes = AppliedChanges::default();
        let ino = self.store.write(|t| {
            if let (Some(old), Some(stored)) = (own, stored_id.as_deref()) {
                if stored != folder.id && t.get(old)?.is_some() {
                    tracing::info!(
                        "the drive has another Camera Roll now; the old one is kept for its pending changes"
                    );
                    t.retire_subtree(old)?;
                    t.delete_meta(meta_keys::CAMERA_ROLL_DELTA_LINK)?;
                }
            }
            let existing = t.get_by_item_id(&folder.id)?;
            let taken = |n: &str| -> Result<bool, StoreError> {
                Ok(t.lookup(ROOT_INO, n)?
                    .is_some_and(|r| Some(r.ino) != existing.as_ref().map(|e| e.ino)))
            };
            let shown_name = if taken(&name)? {
                format!("{name} (Camera Backup)")
            } else {
                name.clone()
            };
            let ino = match existing {
                Some(row) => {
                    if row.parent_ino != Some(ROOT_INO) || row.name != shown_name {
                        if let Some(p) = row.parent_ino {
                            changes.parents_changed.insert(p);
                            changes.stale_entries.push((p, row.name.clone()));
                        }
                        t.rename(row.ino, ROOT_INO, &shown_name)?;
                        changes.parents_changed.insert(ROOT_INO);
                        changes.updated.push(row.ino);
                    }
                    row.ino
                }
                None => {
                    let ino = t.insert(&NewItem {
                        item_id: folder.id.clone(),
                        parent_ino: ROOT_INO,
                        name: shown_name.clone(),
                        kind: ItemKind::Dir,
                        size: 0,
                        etag: folder.e_tag.clone(),
                        ctag: folder.c_tag.clone(),
                        quick_xor_hash: None,
                        mtime: folder
                            .file_system_info
                            .as_ref()
                            .and_then(|f| f.last_modified_date_time)
                            .map(|t| t.timestamp())
                            .unwrap_or_default(),
                        mime_type: None,
                        is_media: false,
                        content_state: Default::default(),
                        local_only: false,
                    })?;
                    changes.inserted.push(ino);
                    changes.parents_changed.insert(ROOT_INO);
                    ino
                }
            };
            t.set_meta(meta_keys::CAMERA_ROLL_ITEM_ID, &folder.id)?;
            t.set_meta(meta_keys::CAMERA_ROLL_INO, &ino.to_string())?;
            Ok::<_, StoreError>(ino)
        })?;
        Ok((TreeScope::camera_roll(&folder.id, ino), changes))
    }

    fn report(&self, state: CameraRollState) -> Result<(), StoreError> {
        let (path, items) = match (state, self.own_ino()?) {
            (CameraRollState::Ok, Some(ino)) if self.store.read(|t| t.is_shown(ino))? => {
                let path = self.store.read(|t| t.path(ino))?;
                let items = self.store.read(|t| t.file_count_below(ino))?;
                (Some(path), items)
            }
            _ => (None, 0),
        };
        self.status
            .update(|s| s.camera_roll = CameraRollStatus { path, state, items });
        Ok(())
    }
}

/// `/Pictures/Camera Roll` from an item's `parentReference.path` (`/drive/root:/Pictures`) and name.
fn item_path(item: &DriveItem) -> Option<String> {
    let parent = item.parent_reference.as_ref()?.path.as_deref()?;
    let below_root = parent.split_once("root:").map(|(_, p)| p).unwrap_or("");
    Some(format!("{below_root}/{}", item.name.as_deref()?))
}
