//! The first listing of a gallery by its folders instead of by delta pages: [`list_tree`].
//!
//! A folder-scoped delta enumeration comes in pages of at most 200 items, one after the other (`$top` is avoided
//! on delta), so 10,000 items cost ~50 sequential round trips. Listing the folders with `children()`
//! (`$top=1000`) several folders at once costs the deepest chain of pages instead. Delta:
//! <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/driveitem_delta>; children:
//! <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/driveitem_list_children>.
//! Children paging is not a consistent snapshot under concurrent writes, so:
//!
//! 1. a delta link for "from now on" is taken FIRST (`…/delta?token=latest`, scoped to the folder);
//! 2. then the folder item itself and its tree are listed, breadth-first, at most `folders_in_flight` requests at
//!    once, each folder's pages in sequence (inside [`DriveApi::children`]).
//!
//! Whatever changes on OneDrive after step 1 (an item moved from a folder not yet listed into one already listed,
//! a folder deleted before it was listed) is reported by the first incremental round from that link; items it
//! re-reports are applied again harmlessly. The output has the shape of a full delta enumeration (the folder item
//! first, every item once per listing it was seen in: the last occurrence wins), ready for the delta applier as
//! one full round with [`TreeListing::delta_link`].
//!
//! With [`list_tree_with_thumbnails`] each folder is listed with its items' thumbnail sets
//! (`$expand=thumbnails($select=…)`, OneDrive Personal): they are taken out of the items into
//! [`TreeListing::thumbnails`] (the thumbnail fetcher's, not the store's), so the fetcher needs no request per item
//! to learn them. Items listed without (a service that cannot expand them) have no entry there.
//!
//! Pure: a [`DriveApi`] in, items out; nothing is written here.

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use thiserror::Error;

use crate::remote::drive_api::{DeltaRequest, DriveApi, DriveError};
use crate::remote::models::{DriveItem, ItemReference, Thumbnail, ThumbnailSet};

/// How many listing requests [`list_tree`] keeps in flight by default.
pub const DEFAULT_FOLDERS_IN_FLIGHT: usize = 6;

/// A complete listing of a folder's subtree.
#[derive(Clone, Debug, Default)]
pub struct TreeListing {
    /// The folder item first, then the items below it.
    pub items: Vec<DriveItem>,
    /// The folder-scoped delta link taken before the listing began: the next incremental round starts there.
    pub delta_link: String,
    /// Folders listed with `children()` (the top folder included).
    pub folders_listed: usize,
    /// The thumbnail sets listed with the items (only with [`list_tree_with_thumbnails`], only the items the
    /// service sent them for).
    pub thumbnails: Vec<ListedThumbnails>,
}

/// An item's thumbnail sets as a listing carried them: valid for that content version (cTag). Holds
/// pre-authenticated URLs: never log them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListedThumbnails {
    pub item_id: String,
    pub ctag: Option<String>,
    /// Empty: OneDrive has no thumbnail for this version (yet).
    pub sets: Vec<ThumbnailSet>,
}

#[derive(Debug, Error)]
pub enum TreeListingError {
    /// The service has no `token=latest` (or no folder-scoped delta): enumerate by delta instead.
    #[error("no delta link for \"from now on\" on this OneDrive: {0}")]
    LatestRefused(DriveError),
    #[error(transparent)]
    Drive(#[from] DriveError),
}

/// The thumbnail sizes a listing asks for (`$expand=thumbnails($select=…)`): each freedesktop size exactly
/// (`normal` 128 px, `large` 256 px).
pub const LISTED_SIZES: &str = "c128x128,c256x256";

/// Thumbnail sets that listings carried, by item id, until the fetcher takes them. Holds pre-authenticated URLs
/// (never logged); an entry is used only for the cTag it was listed with. Kept compact (the first set's
/// thumbnails with their sizes and URLs, ~0.3 KiB an item instead of the parsed JSON's ~2 KiB): a gallery's worth
/// waits here during the whole pass.
#[derive(Debug, Default)]
pub struct ListedThumbnailSets {
    by_item: Mutex<HashMap<String, KeptThumbnails>>,
}

#[derive(Debug)]
struct KeptThumbnails {
    ctag: Option<String>,
    /// (size name: `small`, `medium`, `large` or a custom `c{W}x{H}`, the thumbnail).
    thumbs: Vec<(Box<str>, Thumbnail)>,
}

impl KeptThumbnails {
    fn of(listed: ListedThumbnails) -> Option<KeptThumbnails> {
        let set = listed
            .sets
            .iter()
            .position(|s| s.id == "0")
            .or((!listed.sets.is_empty()).then_some(0))
            .map(|i| listed.sets.into_iter().nth(i))??;
        let lean = |t: Thumbnail| Thumbnail {
            source_item_id: None,
            ..t
        };
        let mut thumbs: Vec<(Box<str>, Thumbnail)> =
            [("small", set.small), ("medium", set.medium), ("large", set.large)]
                .into_iter()
                .filter_map(|(name, t)| Some((Box::from(name), lean(t?))))
                .collect();
        for (key, value) in set.custom {
            if let Ok(t) = serde_json::from_value::<Thumbnail>(value) {
                thumbs.push((key.into_boxed_str(), lean(t)));
            }
        }
        thumbs.retain(|(_, t)| t.url.is_some());
        thumbs.shrink_to_fit();
        (!thumbs.is_empty()).then_some(KeptThumbnails {
            ctag: listed.ctag,
            thumbs,
        })
    }

    /// Back to the shape the service sent (set `"0"`).
    fn into_sets(self) -> Vec<ThumbnailSet> {
        let mut set = ThumbnailSet {
            id: "0".into(),
            ..Default::default()
        };
        for (name, t) in self.thumbs {
            match &*name {
                "small" => set.small = Some(t),
                "medium" => set.medium = Some(t),
                "large" => set.large = Some(t),
                _ => {
                    set.custom
                        .insert(name.into_string(), serde_json::to_value(t).unwrap_or_default());
                }
            }
        }
        vec![set]
    }
}

impl ListedThumbnailSets {
    /// Keeps what a listing carried (a later listing of the same item replaces it). An item listed without a
    /// thumbnail URL is not kept: it is asked by itself (OneDrive may not have made its thumbnails yet).
    pub fn add(&self, listed: Vec<ListedThumbnails>) {
        let mut map = self.by_item.lock();
        for l in listed {
            let id = l.item_id.clone();
            if let Some(kept) = KeptThumbnails::of(l) {
                map.insert(id, kept);
            }
        }
    }

    /// Forgets everything (what is left after a pass belongs to items that need no thumbnail).
    pub fn clear(&self) {
        let mut map = self.by_item.lock();
        map.clear();
        map.shrink_to_fit();
    }

    /// The sets listed for `item_id` at `ctag`, taken out.
    pub fn take(&self, item_id: &str, ctag: Option<&str>) -> Option<Vec<ThumbnailSet>> {
        let kept = self.by_item.lock().remove(item_id)?;
        (kept.ctag.as_deref() == ctag).then(|| kept.into_sets())
    }

    pub fn len(&self) -> usize {
        self.by_item.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Job {
    /// `GET /items/{id}`: the top folder's own item (delta's first item).
    TopItem(String),
    /// Every child of a folder (all its pages).
    Children(String),
}

/// Lists `folder_id`'s subtree (see the module note). `on_folder_listed` is called after each folder's listing
/// arrives with the number of items received so far (progress; a crash point between folders).
pub async fn list_tree(
    drive: &dyn DriveApi,
    folder_id: &str,
    folders_in_flight: usize,
    on_folder_listed: impl FnMut(u64),
) -> Result<TreeListing, TreeListingError> {
    list_tree_with_thumbnails(drive, folder_id, folders_in_flight, None, on_folder_listed).await
}

/// [`list_tree`], each folder listed with its items' thumbnails of `thumbnail_sizes` (e.g. `c128x128,c256x256`)
/// when given (see the module note).
pub async fn list_tree_with_thumbnails(
    drive: &dyn DriveApi,
    folder_id: &str,
    folders_in_flight: usize,
    thumbnail_sizes: Option<&str>,
    mut on_folder_listed: impl FnMut(u64),
) -> Result<TreeListing, TreeListingError> {
    let delta_link = latest_link(drive, folder_id).await?;
    let mut top: Option<DriveItem> = None;
    let mut items: Vec<DriveItem> = Vec::new();
    let mut thumbnails: Vec<ListedThumbnails> = Vec::new();
    let mut queue: VecDeque<Job> = VecDeque::from([
        Job::TopItem(folder_id.to_string()),
        Job::Children(folder_id.to_string()),
    ]);
    let mut queued: HashSet<String> = HashSet::from([folder_id.to_string()]);
    let mut in_flight = FuturesUnordered::new();
    let mut folders_listed = 0;
    let limit = folders_in_flight.max(1);
    loop {
        while in_flight.len() < limit {
            let Some(job) = queue.pop_front() else { break };
            in_flight.push(run(drive, job, thumbnail_sizes));
        }
        let Some((job, result)) = in_flight.next().await else {
            break;
        };
        match (job, result) {
            (Job::TopItem(_), Ok(mut got)) => top = got.pop(),
            (Job::Children(id), Ok(children)) => {
                folders_listed += 1;
                for mut child in children {
                    // A shortcut to a folder shared from another drive (`remoteItem`) is not descended into, as
                    // a folder-scoped delta does not enumerate it either.
                    let listable = child.is_folder() && !child.is_deleted() && child.remote_item.is_none();
                    if listable && queued.insert(child.id.clone()) {
                        queue.push_back(Job::Children(child.id.clone()));
                    }
                    // The shape of a delta item: no download URL (secret, short-lived, unused: a 100,000-item
                    // listing held ~15 MB of them until applied) and no parent path (delta never has one).
                    child.download_url = None;
                    if let Some(sets) = child.thumbnails.take() {
                        thumbnails.push(ListedThumbnails {
                            item_id: child.id.clone(),
                            ctag: child.c_tag.clone(),
                            sets,
                        });
                    }
                    let reference = child.parent_reference.get_or_insert_with(ItemReference::default);
                    reference.path = None;
                    if reference.id.is_none() {
                        reference.id = Some(id.clone());
                    }
                    items.push(child);
                }
                on_folder_listed(items.len() as u64);
            }
            // A subfolder deleted after its parent was listed: the round from the link reports the deletion.
            (Job::Children(id), Err(DriveError::NotFound(_))) if id != folder_id => {
                tracing::debug!("a folder went away during the listing; the next delta round reports it");
            }
            (_, Err(e)) => return Err(e.into()),
        }
    }
    let top = top.ok_or_else(|| DriveError::NotFound("the listed folder".into()))?;
    let mut all = Vec::with_capacity(items.len() + 1);
    all.push(top);
    all.append(&mut items);
    Ok(TreeListing {
        items: all,
        delta_link,
        folders_listed,
        thumbnails,
    })
}

/// The folder-scoped `token=latest` delta link. Items, should an implementation send any, are not needed: the
/// listing that follows is complete by itself.
async fn latest_link(drive: &dyn DriveApi, folder_id: &str) -> Result<String, TreeListingError> {
    let request = DeltaRequest::Latest {
        folder_id: Some(folder_id.to_string()),
    };
    match drive.delta(request).await {
        Ok(round) => {
            if !round.items.is_empty() {
                tracing::debug!(
                    items = round.items.len(),
                    "token=latest answered with items; ignoring them"
                );
            }
            Ok(round.delta_link)
        }
        Err(e) if e.is_not_supported() => Err(TreeListingError::LatestRefused(e)),
        Err(e) => Err(e.into()),
    }
}

async fn run(
    drive: &dyn DriveApi,
    job: Job,
    thumbnail_sizes: Option<&str>,
) -> (Job, Result<Vec<DriveItem>, DriveError>) {
    let result = match (&job, thumbnail_sizes) {
        (Job::TopItem(id), _) => drive.item(id).await.map(|item| vec![item]),
        (Job::Children(id), Some(sizes)) => drive.children_with_thumbnails(id, sizes).await,
        (Job::Children(id), None) => drive.children(id).await,
    };
    (job, result)
}

/// Everything below the folders `item_ids` (their children, their subfolders' children, ...), listed folder by
/// folder: what an incremental round must add for folders new to the store, since delta does not repeat a
/// moved-in folder's content. A folder that is gone (404) is skipped.
pub async fn everything_below(drive: &dyn DriveApi, item_ids: Vec<String>) -> Result<Vec<DriveItem>, DriveError> {
    let mut queue: VecDeque<String> = item_ids.into();
    let mut listed = HashSet::new();
    let mut items = Vec::new();
    while let Some(id) = queue.pop_front() {
        if !listed.insert(id.clone()) {
            continue;
        }
        let children = match drive.children(&id).await {
            Ok(children) => children,
            // Gone meanwhile: a later delta round reports it.
            Err(DriveError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        for child in children {
            if child.is_folder() {
                queue.push_back(child.id.clone());
            }
            items.push(child);
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::mock_drive::{FailingDrive, MockDrive, MockOp};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A gallery of three levels: `n` files spread over `Album k/Sub j` folders and the gallery itself.
    fn three_levels(drive: &MockDrive, n: usize) -> String {
        let gallery = drive.mkdir_p("/Pictures/Samsung Gallery");
        let mut folders = vec![gallery.clone()];
        for a in 0..4 {
            let album = drive.add_folder(&gallery, &format!("Album {a}"));
            folders.push(album.clone());
            for s in 0..3 {
                folders.push(drive.add_folder(&album, &format!("Sub {s}")));
            }
        }
        for i in 0..n {
            drive.add_file(
                &folders[i % folders.len()],
                &format!("IMG_{i:05}.jpg"),
                format!("photo {i}"),
            );
        }
        gallery
    }

    /// id → (name, parent id) of a listing or enumeration.
    fn tree(items: &[DriveItem]) -> BTreeMap<String, (Option<String>, Option<String>)> {
        items
            .iter()
            .map(|i| (i.id.clone(), (i.name.clone(), i.parent_id().map(str::to_string))))
            .collect()
    }

    #[tokio::test]
    async fn lists_the_same_items_as_a_delta_enumeration_with_the_folder_first() {
        let drive = MockDrive::new();
        let gallery = three_levels(&drive, 2_500);
        let enumeration = drive
            .delta(DeltaRequest::Full {
                folder_id: Some(gallery.clone()),
            })
            .await
            .unwrap();
        let reports = Arc::new(AtomicUsize::new(0));
        let r = reports.clone();
        let listing = list_tree(&drive, &gallery, DEFAULT_FOLDERS_IN_FLIGHT, move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
        assert_eq!(listing.items[0].id, gallery);
        assert_eq!(listing.items.len(), 1 + 16 + 2_500);

        assert_eq!(tree(&listing.items), tree(&enumeration.items));
        assert_eq!(listing.folders_listed, 17);
        assert_eq!(reports.load(Ordering::SeqCst), 17, "one report per folder");
        assert_eq!(drive.count(MockOp::DeltaLatest), 1);
        assert_eq!(drive.count(MockOp::Children), 17);
        // The link is a working incremental link: nothing changed since.
        let quiet = drive.delta(DeltaRequest::Link(listing.delta_link)).await.unwrap();
        assert!(quiet.items.is_empty());
    }

    /// A drive whose `children` calls are counted while in flight, and which runs `after_children` on the mock
    /// after each of them (a change made on OneDrive during the listing).
    struct Gauge {
        inner: MockDrive,
        now: AtomicUsize,
        max: AtomicUsize,
        after_children: AfterChildren,
    }

    type AfterChildren = Box<dyn Fn(&MockDrive, &str) + Send + Sync>;

    impl Gauge {
        fn new() -> Gauge {
            Gauge {
                inner: MockDrive::new(),
                now: AtomicUsize::new(0),
                max: AtomicUsize::new(0),
                after_children: Box::new(|_, _| {}),
            }
        }
    }

    #[async_trait::async_trait]
    impl crate::remote::drive_api::DriveApi for Gauge {
        async fn drive(&self) -> Result<crate::remote::models::Drive, DriveError> {
            self.inner.drive().await
        }
        async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
            self.inner.item(id).await
        }
        async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
            self.inner.item_by_path(path).await
        }
        async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
            self.inner.special_folder(name).await
        }
        async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(now, Ordering::SeqCst);
            let mut out = self.inner.children(id).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            // Folders named `Shared …` are shortcuts to folders of another drive.
            for item in out.iter_mut().flatten() {
                if item.name.as_deref().is_some_and(|n| n.starts_with("Shared ")) {
                    item.remote_item = Some(serde_json::json!({"id": "OTHER!1", "folder": {}}));
                }
            }
            (self.after_children)(&self.inner, id);
            out
        }
        async fn delta_page(&self, request: &DeltaRequest) -> Result<crate::remote::drive_api::DeltaPage, DriveError> {
            self.inner.delta_page(request).await
        }
        async fn thumbnails(&self, id: &str) -> Result<Vec<crate::remote::models::ThumbnailSet>, DriveError> {
            self.inner.thumbnails(id).await
        }
        async fn download_thumbnail(&self, url: &str) -> Result<bytes::Bytes, DriveError> {
            self.inner.download_thumbnail(url).await
        }
        async fn download(
            &self,
            id: &str,
            ctag: &str,
            start: u64,
            end: u64,
        ) -> Result<crate::remote::drive_api::DownloadStream, DriveError> {
            self.inner.download(id, ctag, start, end).await
        }
        async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
            self.inner.create_folder(parent_id, name).await
        }
        async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
            self.inner.delete(id, if_match).await
        }
        async fn move_item(
            &self,
            id: &str,
            request: &crate::remote::drive_api::MoveRequest,
        ) -> Result<DriveItem, DriveError> {
            self.inner.move_item(id, request).await
        }
        async fn upload(&self, request: crate::remote::drive_api::UploadRequest) -> Result<DriveItem, DriveError> {
            self.inner.upload(request).await
        }
        async fn restore(
            &self,
            id: &str,
            parent_id: Option<&str>,
            name: Option<&str>,
        ) -> Result<DriveItem, DriveError> {
            self.inner.restore(id, parent_id, name).await
        }
    }

    #[test]
    fn listed_thumbnails_are_kept_compact_and_given_back_for_their_ctag_only() {
        let thumb = |edge: i64, url: &str| Thumbnail {
            width: Some(edge),
            height: Some(edge * 3 / 4),
            url: Some(url.into()),
            source_item_id: Some("x".into()),
        };
        let listed_set = || {
            let mut set = ThumbnailSet {
                id: "0".into(),
                medium: Some(thumb(176, "u-medium")),
                ..Default::default()
            };
            set.custom
                .insert("c128x128".into(), serde_json::to_value(thumb(128, "u-128")).unwrap());
            set
        };
        let set = listed_set();
        let sinks = ListedThumbnailSets::default();
        sinks.add(vec![
            ListedThumbnails {
                item_id: "A".into(),
                ctag: Some("c1".into()),
                sets: vec![set],
            },
            ListedThumbnails {
                item_id: "B".into(),
                ctag: Some("c1".into()),
                sets: vec![],
            },
        ]);
        assert_eq!(sinks.len(), 1, "an empty list is not kept");
        assert!(
            sinks.take("A", Some("c2")).is_none(),
            "another version's URLs are not used"
        );
        assert!(sinks.is_empty(), "and are dropped");
        let set = listed_set();
        sinks.add(vec![ListedThumbnails {
            item_id: "A".into(),
            ctag: Some("c1".into()),
            sets: vec![set],
        }]);
        let back = sinks.take("A", Some("c1")).unwrap();
        assert_eq!(back[0].medium.as_ref().and_then(|t| t.url.as_deref()), Some("u-medium"));
        let custom: Thumbnail = serde_json::from_value(back[0].custom["c128x128"].clone()).unwrap();
        assert_eq!((custom.width, custom.url.as_deref()), (Some(128), Some("u-128")));
    }

    #[tokio::test]
    async fn folders_are_listed_several_at_once_within_the_bound() {
        let gauge = Gauge::new();
        let gallery = three_levels(&gauge.inner, 200);
        gauge.inner.set_latency(Duration::from_millis(20));
        let listing = list_tree(&gauge, &gallery, 4, |_| {}).await.unwrap();
        assert_eq!(listing.items.len(), 1 + 16 + 200);
        let max = gauge.max.load(Ordering::SeqCst);
        assert_eq!(max, 4, "children requests in flight at once: the bound, never more");
        assert_eq!(gauge.inner.count(MockOp::Children), 17);

        let one_at_a_time = Gauge::new();
        let gallery = three_levels(&one_at_a_time.inner, 20);
        list_tree(&one_at_a_time, &gallery, 1, |_| {}).await.unwrap();
        assert_eq!(one_at_a_time.max.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shortcuts_to_folders_of_other_drives_are_listed_not_descended_into() {
        let drive = Gauge::new();
        let gallery = three_levels(&drive.inner, 30);
        let shortcut = drive.inner.add_folder(&gallery, "Shared album");
        drive.inner.add_file(&shortcut, "theirs.jpg", "t");
        let listing = list_tree(&drive, &gallery, 4, |_| {}).await.unwrap();
        assert!(listing.items.iter().any(|i| i.id == shortcut));
        assert!(listing.items.iter().all(|i| i.parent_id() != Some(shortcut.as_str())));
        assert_eq!(listing.folders_listed, 17);
    }

    #[tokio::test]
    async fn a_refused_latest_is_reported_as_such_and_nothing_is_listed() {
        let drive = FailingDrive::new(MockDrive::new());
        let gallery = three_levels(drive.inner(), 10);
        drive.only_ops(Some(&[MockOp::DeltaLatest]));
        drive.fail_next(1, DriveError::NotSupported("token=latest".into()));
        match list_tree(&drive, &gallery, 4, |_| {}).await {
            Err(TreeListingError::LatestRefused(e)) => assert!(e.is_not_supported()),
            other => panic!("expected LatestRefused, got {other:?}"),
        }
        assert_eq!(drive.inner().count(MockOp::Children), 0);
        // Folder-scoped delta refused altogether (OneDrive for Business): the same.
        drive.inner().set_folder_delta_supported(false);
        assert!(matches!(
            list_tree(&drive, &gallery, 4, |_| {}).await,
            Err(TreeListingError::LatestRefused(_))
        ));
        // Other failures are failures.
        drive.only_ops(Some(&[MockOp::Children]));
        drive.inner().set_folder_delta_supported(true);
        drive.fail_next(1, DriveError::Offline("down".into()));
        assert!(matches!(
            list_tree(&drive, &gallery, 4, |_| {}).await,
            Err(TreeListingError::Drive(DriveError::Offline(_)))
        ));
    }

    #[tokio::test]
    async fn a_subfolder_gone_during_the_listing_is_skipped_the_top_folder_gone_is_an_error() {
        let mut drive = Gauge::new();
        let gallery = three_levels(&drive.inner, 40);
        let album = drive.inner.id_by_path("/Pictures/Samsung Gallery/Album 2").unwrap();
        // Deleted on OneDrive right after the gallery's own children were listed (it is in that listing).
        let (g, a) = (gallery.clone(), album.clone());
        drive.after_children = Box::new(move |mock, listed| {
            if listed == g {
                mock.delete_item(&a);
            }
        });
        let listing = list_tree(&drive, &gallery, 1, |_| {}).await.unwrap();
        assert!(listing.items.iter().any(|i| i.id == album), "listed with its parent");
        assert!(
            listing.items.iter().all(|i| i.parent_id() != Some(album.as_str())),
            "its children could not be listed"
        );
        assert_eq!(
            listing.folders_listed,
            17 - 4,
            "Album 2 and its three subfolders are not listed"
        );
        // The link taken first reports the deletion.
        let round = drive.inner.delta(DeltaRequest::Link(listing.delta_link)).await.unwrap();
        assert!(round.items.iter().any(|i| i.id == album && i.is_deleted()));

        drive.inner.delete_item(&gallery);
        assert!(matches!(
            list_tree(&drive, &gallery, 1, |_| {}).await,
            Err(TreeListingError::Drive(DriveError::NotFound(_)))
        ));
    }
}
