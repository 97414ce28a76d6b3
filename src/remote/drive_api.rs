//! [`DriveApi`]: the one abstraction of OneDrive. Everything the sync engine, the content cache (ranged downloads
//! pinned to a content version) and the edits outbox need, as one object-safe async trait over the shared
//! [`models`](super::models) types and one error type, [`DriveError`]. [`GraphDrive`](super::graph_drive_api::GraphDrive)
//! implements it over Microsoft Graph; tests use the in-memory `MockDrive` and the failure-injecting `FailingDrive`
//! of `remote::mock_drive`, compiled only with the `mock` cargo feature (the tests enable it; the shipped binary
//! does not contain them).
//!
//! Conventions every implementation follows:
//! - Paths given to [`DriveApi::item_by_path`] start at the drive root, `/` separated, not percent-encoded (the
//!   implementation encodes each segment); `/` alone is the root; the leading `/` is optional.
//! - [`DriveApi::children`] and [`DriveApi::delta`] follow every `@odata.nextLink` themselves.
//! - Error messages never contain tokens or pre-authenticated URLs.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use std::path::PathBuf;
use thiserror::Error;

use super::models::{Drive, DriveItem, Thumbnail, ThumbnailSet};

/// Files up to this size go in one simple `PUT`; larger ones through an upload session
/// (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/driveitem-createuploadsession>).
pub const SIMPLE_UPLOAD_MAX: u64 = 4 * 1024 * 1024;

/// Why a remote operation failed, sorted by what the caller should do about it.
///
/// Mapping from HTTP (for implementations): 404 → `NotFound`; 410 on delta → `ResyncRequired` with the
/// `Location` header; connection errors, timeouts and 5xx after retries → `Offline`; 429/503/509 after retries →
/// `Throttled` (from `Retry-After`); 401 after one refresh, or a token source that needs a new sign-in →
/// `Unauthorized`; 507 → `QuotaExceeded`; 501 or the code `notSupported` → `NotSupported`; 409 → `Conflict`;
/// 412 → `PreconditionFailed`; anything else → `Other` with the status.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum DriveError {
    /// 404 `itemNotFound` (or a path that does not exist).
    #[error("not found on OneDrive: {0}")]
    NotFound(String),
    /// 410 on delta: start over from `location` (a new first-page link) when the service gave one, else from a
    /// full enumeration.
    #[error("OneDrive asks for a full delta resync")]
    ResyncRequired { location: Option<String> },
    /// No connection, DNS failure, timeout, 5xx after retries: retry later, keep serving from the store.
    #[error("OneDrive unreachable: {0}")]
    Offline(String),
    /// 429/503 that outlasted the retry policy; come back at `until` when known.
    #[error("throttled by OneDrive{}", until.map(|u| format!(" until {}", u.to_rfc3339())).unwrap_or_default())]
    Throttled { until: Option<DateTime<Utc>> },
    /// 401 after a refresh, or the refresh token is no longer accepted: only a new sign-in helps.
    #[error("not authorized by OneDrive: {message}")]
    Unauthorized { message: String },
    /// 507 `quotaLimitReached`.
    #[error("OneDrive is full")]
    QuotaExceeded,
    /// 400/501 `notSupported` (e.g. folder-scoped delta on OneDrive for Business).
    #[error("not supported by this OneDrive: {0}")]
    NotSupported(String),
    /// 409: a name already taken, or a missing parent.
    #[error("conflict on OneDrive: {0}")]
    Conflict(String),
    /// 412: the item changed on OneDrive since the tag the caller sent.
    #[error("the item changed on OneDrive: {0}")]
    PreconditionFailed(String),
    /// Anything else (bad request, unexpected response).
    #[error("OneDrive error{}: {message}", status.map(|s| format!(" {s}")).unwrap_or_default())]
    Other { status: Option<u16>, message: String },
}

impl DriveError {
    /// Worth retrying later without any user action.
    pub fn is_retryable(&self) -> bool {
        match self {
            DriveError::Offline(_) | DriveError::Throttled { .. } => true,
            DriveError::Other { status: Some(s), .. } => *s >= 500,
            _ => false,
        }
    }

    /// The service refused the request as unsupported (`notSupported`, 501, or a plain 400 on a delta start).
    pub fn is_not_supported(&self) -> bool {
        matches!(
            self,
            DriveError::NotSupported(_)
                | DriveError::Other {
                    status: Some(400 | 501),
                    ..
                }
        )
    }
}

/// The body of a download, arriving in chunks. It may end before the requested range does (a short body: the
/// caller retries from where it stopped); an error in it is a [`DriveError`] like any other.
pub type DownloadStream = BoxStream<'static, Result<Bytes, DriveError>>;

/// Where a delta request starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaRequest {
    /// A full enumeration of `folder_id`'s subtree (`None` = the drive root: `/me/drive/root/delta`).
    Full { folder_id: Option<String> },
    /// No items, just a delta link for "from now on" (`…/delta?token=latest`,
    /// <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/driveitem-delta>) of `folder_id`'s
    /// subtree (`None` = the drive root). An implementation without it answers
    /// [`is_not_supported`](DriveError::is_not_supported).
    Latest { folder_id: Option<String> },
    /// A link the service gave: an `@odata.nextLink`, a stored `@odata.deltaLink` or a resync `Location`.
    Link(String),
}

/// One page of a delta response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeltaPage {
    pub items: Vec<DriveItem>,
    /// More pages follow: request this link next.
    pub next_link: Option<String>,
    /// The last page: store this link for the next round.
    pub delta_link: Option<String>,
}

/// A whole delta round (every page), items in the order the service sent them (duplicates kept: the last
/// occurrence of an id wins, which the applier handles).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeltaRound {
    pub items: Vec<DriveItem>,
    pub delta_link: String,
}

/// What happens when the target name is taken (`@microsoft.graph.conflictBehavior`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictBehavior {
    #[default]
    Fail,
    Replace,
    Rename,
}

/// Where an upload goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadTarget {
    /// A new file `name` in folder `parent_id`.
    New { parent_id: String, name: String },
    /// New content for an existing file; `if_match` (an eTag or cTag) makes it fail with
    /// [`DriveError::PreconditionFailed`] when the file changed meanwhile.
    Replace { item_id: String, if_match: Option<String> },
}

/// The bytes of an upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadSource {
    Bytes(Bytes),
    /// A local file, read (in fragments for a session upload) by the implementation.
    File(PathBuf),
}

/// One upload: simple `PUT` up to [`SIMPLE_UPLOAD_MAX`], an upload session above (the implementation chooses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRequest {
    pub target: UploadTarget,
    pub source: UploadSource,
    /// `fileSystemInfo.lastModifiedDateTime` to record (the local mtime).
    pub modified: Option<DateTime<Utc>>,
    pub conflict: ConflictBehavior,
    /// The pre-authenticated URL of a session an earlier attempt started (journalled through `session_journal`):
    /// a session upload resumes it from `nextExpectedRanges` when it is still alive, else starts anew. Secret.
    pub resume_url: Option<String>,
    /// Told when a session upload has a session (new or resumed), so a crash can resume it.
    pub session_journal: Option<SessionJournal>,
}

/// Called with an upload session's URL and expiry when it exists.
pub type SessionStarted = dyn Fn(&str, Option<DateTime<Utc>>) + Send + Sync;

/// Where an upload session's URL is journalled (the outbox). Compared by identity.
#[derive(Clone)]
pub struct SessionJournal(pub std::sync::Arc<SessionStarted>);

impl SessionJournal {
    pub fn started(&self, url: &str, expires: Option<DateTime<Utc>>) {
        (self.0)(url, expires)
    }
}

impl std::fmt::Debug for SessionJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionJournal")
    }
}

impl PartialEq for SessionJournal {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionJournal {}

/// A rename, move and/or time change (`PATCH` with `name`, `parentReference.id`, `fileSystemInfo`); `None`
/// fields are left alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MoveRequest {
    pub new_parent_id: Option<String>,
    pub new_name: Option<String>,
    /// `fileSystemInfo.lastModifiedDateTime` to record.
    pub modified: Option<DateTime<Utc>>,
    pub if_match: Option<String>,
}

/// The OneDrive operations galleryfs uses. Object safe: use it as `Arc<dyn DriveApi>`.
#[async_trait]
pub trait DriveApi: Send + Sync {
    /// `GET /me/drive` (id, type, quota).
    async fn drive(&self) -> Result<Drive, DriveError>;
    /// `GET /me/drive/items/{id}`.
    async fn item(&self, id: &str) -> Result<DriveItem, DriveError>;
    /// `GET /me/drive/root:/{path}:` (see the module note for the path form).
    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError>;
    /// `GET /me/drive/special/{name}` (`photos`, `cameraroll`, …).
    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError>;
    /// Every child of folder `id` (all pages).
    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError>;
    /// Every child of folder `id` with its thumbnail sets (`DriveItem::thumbnails`, only the comma-separated
    /// `sizes`, e.g. `c128x128,c256x256`) taken with the listing (`$expand=thumbnails($select=…)`). Where the
    /// service cannot (OneDrive for Business), and in this default, the children come without `thumbnails`:
    /// callers then ask [`DriveApi::thumbnails`] per item.
    async fn children_with_thumbnails(&self, id: &str, sizes: &str) -> Result<Vec<DriveItem>, DriveError> {
        let _ = sizes;
        self.children(id).await
    }
    /// The child `name` of special folder `special` (names compared case-insensitively, as OneDrive does); `None`
    /// when either is missing (a missing special folder answers 404, or 403 without write permission). The Graph
    /// client asks in one request (`GET /me/drive/special/{special}:/{name}:`); this default lists the folder.
    async fn special_folder_child(&self, special: &str, name: &str) -> Result<Option<DriveItem>, DriveError> {
        let folder = match self.special_folder(special).await {
            Ok(folder) => folder,
            Err(DriveError::NotFound(_)) | Err(DriveError::Other { status: Some(403), .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let wanted = name.to_lowercase();
        Ok(self
            .children(&folder.id)
            .await?
            .into_iter()
            .find(|c| !c.is_deleted() && c.name.as_deref().is_some_and(|n| n.to_lowercase() == wanted)))
    }
    /// One page of delta.
    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError>;
    /// A whole delta round: pages from `request` until the one carrying the `@odata.deltaLink`.
    async fn delta(&self, request: DeltaRequest) -> Result<DeltaRound, DriveError> {
        let mut items = Vec::new();
        let mut request = request;
        loop {
            let page = self.delta_page(&request).await?;
            items.extend(page.items);
            match (page.next_link, page.delta_link) {
                (Some(next), _) => request = DeltaRequest::Link(next),
                (None, Some(delta_link)) => return Ok(DeltaRound { items, delta_link }),
                (None, None) => {
                    return Err(DriveError::Other {
                        status: None,
                        message: "delta page has neither a nextLink nor a deltaLink".into(),
                    })
                }
            }
        }
    }
    /// `GET /me/drive/items/{id}/thumbnails`; empty when OneDrive has none.
    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError>;
    /// A custom-size thumbnail (`GET …/thumbnails?select=c256x256`: fits inside the box, aspect kept); `None`
    /// when OneDrive has no thumbnail for the item, or (this default) when the implementation does not offer
    /// custom sizes: callers then use the named sizes of [`DriveApi::thumbnails`].
    async fn thumbnail_custom(&self, id: &str, size: &str) -> Result<Option<Thumbnail>, DriveError> {
        let _ = (id, size);
        Ok(None)
    }
    /// The bytes behind a thumbnail `url` from [`DriveApi::thumbnails`] or [`DriveApi::thumbnail_custom`].
    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError>;
    /// Bytes `[start, end)` of content version `ctag` of file `item_id`, streamed in order; `end` may lie past the
    /// end of the content (the body stops there). Fails with [`DriveError::PreconditionFailed`] when `ctag` is no
    /// longer the file's content version, and with `Other { status: Some(416) }` when `start` is at or past the
    /// end. The body may end early (see [`DownloadStream`]).
    async fn download(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<DownloadStream, DriveError>;

    /// `POST /items/{parent}/children` with `conflictBehavior: fail`.
    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError>;
    /// `DELETE /items/{id}` (to the recycle bin).
    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError>;
    /// `PATCH /items/{id}`: rename, move and/or set `fileSystemInfo.lastModifiedDateTime`.
    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError>;
    /// Creates or replaces a file.
    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError>;
    /// Sends ahead every fragment of `request`'s upload session but the last (the session is started, or resumed
    /// from `resume_url`, and journalled through `session_journal`): nothing is committed, and a later
    /// [`DriveApi::upload`] resuming the session sends the last fragment only. Returns the bytes the session
    /// holds; 0 when there is nothing to send ahead (a simple upload, a file of one fragment, an implementation
    /// without sessions: this default).
    async fn upload_ahead(&self, request: UploadRequest) -> Result<u64, DriveError> {
        let _ = request;
        Ok(0)
    }
    /// Cancels the upload session at `upload_url` (`DELETE`), one that will never be committed; a session already
    /// gone counts as cancelled. This default does nothing (sessions expire on their own).
    async fn cancel_upload(&self, upload_url: &str) -> Result<(), DriveError> {
        let _ = upload_url;
        Ok(())
    }
    /// `POST /items/{id}/restore` (OneDrive Personal): back from the recycle bin, optionally elsewhere.
    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError>;
    /// How many throttling answers (429/503 with or without `Retry-After`) the service gave so far, including
    /// those the implementation sat out and retried itself; callers running requests in parallel narrow their
    /// parallelism when it moves. This default never moves.
    fn throttle_answers(&self) -> u64 {
        0
    }
}

/// A shared drive is a drive (tests keep a handle on a mock the engine also holds).
#[async_trait]
impl<T: DriveApi + ?Sized> DriveApi for std::sync::Arc<T> {
    async fn drive(&self) -> Result<Drive, DriveError> {
        (**self).drive().await
    }
    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        (**self).item(id).await
    }
    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        (**self).item_by_path(path).await
    }
    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        (**self).special_folder(name).await
    }
    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        (**self).children(id).await
    }
    async fn children_with_thumbnails(&self, id: &str, sizes: &str) -> Result<Vec<DriveItem>, DriveError> {
        (**self).children_with_thumbnails(id, sizes).await
    }
    async fn special_folder_child(&self, special: &str, name: &str) -> Result<Option<DriveItem>, DriveError> {
        (**self).special_folder_child(special, name).await
    }
    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        (**self).delta_page(request).await
    }
    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        (**self).thumbnails(id).await
    }
    async fn thumbnail_custom(&self, id: &str, size: &str) -> Result<Option<Thumbnail>, DriveError> {
        (**self).thumbnail_custom(id, size).await
    }
    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        (**self).download_thumbnail(url).await
    }
    async fn download(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<DownloadStream, DriveError> {
        (**self).download(item_id, ctag, start, end).await
    }
    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        (**self).create_folder(parent_id, name).await
    }
    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
        (**self).delete(id, if_match).await
    }
    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        (**self).move_item(id, request).await
    }
    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        (**self).upload(request).await
    }
    async fn upload_ahead(&self, request: UploadRequest) -> Result<u64, DriveError> {
        (**self).upload_ahead(request).await
    }
    async fn cancel_upload(&self, upload_url: &str) -> Result<(), DriveError> {
        (**self).cancel_upload(upload_url).await
    }
    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        (**self).restore(id, parent_id, name).await
    }
    fn throttle_answers(&self) -> u64 {
        (**self).throttle_answers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_and_not_supported_classification() {
        assert!(DriveError::Offline("x".into()).is_retryable());
        assert!(DriveError::Throttled { until: None }.is_retryable());
        assert!(DriveError::Other {
            status: Some(503),
            message: String::new()
        }
        .is_retryable());
        assert!(!DriveError::Unauthorized { message: String::new() }.is_retryable());
        assert!(!DriveError::NotFound("x".into()).is_retryable());
        assert!(DriveError::NotSupported("x".into()).is_not_supported());
        assert!(DriveError::Other {
            status: Some(501),
            message: String::new()
        }
        .is_not_supported());
        assert!(!DriveError::Other {
            status: Some(500),
            message: String::new()
        }
        .is_not_supported());
    }

    #[test]
    fn trait_is_object_safe() {
        fn takes(_: &dyn DriveApi) {}
        let _ = takes;
    }
}
