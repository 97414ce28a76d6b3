//! [`GraphDrive`]: [`DriveApi`] over the real [`GraphClient`], and the one mapping from [`GraphError`] to
//! [`DriveError`] ([`drive_error`]).
//!
//! Downloads are pinned to the cTag the caller saw: the item's metadata (one `GET /items/{id}`, which also carries
//! the pre-authenticated `@microsoft.graph.downloadUrl`) is checked before a download URL is used, and the URL is
//! kept per (item, cTag) for a short while, so a run of ranged reads costs one metadata call. A kept URL that went
//! stale (401/403/404/410) is replaced once. Download URLs are secrets: they never reach an error or a log line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;

use super::auth::AuthError;
use super::download::DownloadUrl;
use super::drive_api::{
    ConflictBehavior as ApiConflict, DeltaPage, DeltaRequest, DownloadStream, DriveApi, DriveError, MoveRequest,
    UploadRequest, UploadSource as ApiSource, UploadTarget as ApiTarget,
};
use super::error::GraphError;
use super::graph::{GraphClient, ThumbnailRef};
use super::models::{
    ConflictBehavior, Drive, DriveItem, FileSystemInfo, ItemPatch, Thumbnail, ThumbnailSet, UploadSession,
};
use super::upload::{FileSource, UploadJob, UploadOptions, UploadSource, UploadTarget};

/// How long a download URL is reused for the same (item, cTag). The service documents "a few minutes"; a stale one
/// is replaced anyway.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(120);
/// At most this many download URLs are remembered.
const DOWNLOAD_URL_CAP: usize = 1024;

/// [`DriveApi`] over Microsoft Graph.
pub struct GraphDrive {
    client: GraphClient,
    upload_options: UploadOptions,
    /// item id → (the cTag the URL was checked against, URL, when).
    download_urls: Mutex<HashMap<String, (String, DownloadUrl, Instant)>>,
    /// The service refused `$expand=thumbnails` on a listing (OneDrive for Business answers 400): list without.
    no_listed_thumbnails: std::sync::atomic::AtomicBool,
}

impl GraphDrive {
    pub fn new(client: GraphClient) -> Self {
        Self {
            client,
            upload_options: UploadOptions::default(),
            download_urls: Mutex::new(HashMap::new()),
            no_listed_thumbnails: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn with_upload_options(mut self, options: UploadOptions) -> Self {
        self.upload_options = options;
        self
    }

    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    fn cached_url(&self, id: &str, ctag: &str) -> Option<DownloadUrl> {
        let urls = self.download_urls.lock();
        match urls.get(id) {
            Some((c, url, at)) if c == ctag && at.elapsed() < DOWNLOAD_URL_TTL => Some(url.clone()),
            _ => None,
        }
    }

    fn remember_url(&self, id: &str, ctag: &str, url: &DownloadUrl) {
        let mut urls = self.download_urls.lock();
        if urls.len() >= DOWNLOAD_URL_CAP {
            urls.retain(|_, (_, _, at)| at.elapsed() < DOWNLOAD_URL_TTL);
            if urls.len() >= DOWNLOAD_URL_CAP {
                urls.clear();
            }
        }
        urls.insert(id.to_string(), (ctag.to_string(), url.clone(), Instant::now()));
    }

    fn forget_url(&self, id: &str) {
        self.download_urls.lock().remove(id);
    }

    /// A download URL for content version `ctag`, checked against the item's current metadata.
    async fn fresh_url(&self, id: &str, ctag: &str) -> Result<DownloadUrl, DriveError> {
        let item = self.client.item(id).await.map_err(drive_error)?;
        if item.c_tag.as_deref() != Some(ctag) {
            self.forget_url(id);
            return Err(DriveError::PreconditionFailed(
                "the content changed on OneDrive since the file was opened".into(),
            ));
        }
        let url = match DownloadUrl::from_item(&item) {
            Some(url) => url,
            None => self.client.download_url(id).await.map_err(drive_error)?,
        };
        self.remember_url(id, ctag, &url);
        Ok(url)
    }

    async fn upload_once(&self, request: &UploadRequest) -> Result<DriveItem, GraphError> {
        let job = upload_job(request);
        let journal = request.session_journal.clone();
        let mut ignore = journal_sessions(journal);
        match &request.source {
            ApiSource::Bytes(bytes) => {
                self.client
                    .upload_file(bytes, &job, &self.upload_options, &mut ignore)
                    .await
            }
            ApiSource::File(path) => {
                let file = FileSource::open(path)
                    .map_err(|e| GraphError::Invalid(format!("cannot read {}: {e}", path.display())))?;
                let source: &dyn UploadSource = &file;
                self.client
                    .upload_file(source, &job, &self.upload_options, &mut ignore)
                    .await
            }
        }
    }

    async fn upload_ahead_once(&self, request: &UploadRequest) -> Result<u64, GraphError> {
        let ApiSource::File(path) = &request.source else {
            return Ok(0);
        };
        let job = upload_job(request);
        let mut journal = journal_sessions(request.session_journal.clone());
        let file =
            FileSource::open(path).map_err(|e| GraphError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        self.client
            .upload_file_ahead(&file, &job, &self.upload_options, &mut journal)
            .await
    }
}

/// The client's upload job for `request`.
fn upload_job(request: &UploadRequest) -> UploadJob {
    let (target, if_match) = match &request.target {
        ApiTarget::New { parent_id, name } => (
            UploadTarget::NewChild {
                parent_id: parent_id.clone(),
                name: name.clone(),
            },
            None,
        ),
        ApiTarget::Replace { item_id, if_match } => (
            UploadTarget::Existing {
                item_id: item_id.clone(),
            },
            if_match.clone(),
        ),
    };
    UploadJob {
        target,
        file_system_info: request.modified.map(|m| FileSystemInfo {
            last_modified_date_time: Some(m),
            ..Default::default()
        }),
        conflict: match request.conflict {
            ApiConflict::Fail => ConflictBehavior::Fail,
            ApiConflict::Replace => ConflictBehavior::Replace,
            ApiConflict::Rename => ConflictBehavior::Rename,
        },
        if_match,
        resume_from: request.resume_url.as_ref().map(|url| UploadSession {
            upload_url: Some(url.clone()),
            ..Default::default()
        }),
    }
}

/// Journals the sessions an upload starts (their URL and expiry) through `journal`.
fn journal_sessions(
    journal: Option<super::drive_api::SessionJournal>,
) -> impl FnMut(super::upload::UploadEvent<'_>) + Send {
    move |event: super::upload::UploadEvent<'_>| {
        if let (super::upload::UploadEvent::SessionStarted(session), Some(journal)) = (event, &journal) {
            if let Some(url) = &session.upload_url {
                journal.started(url, session.expiration_date_time);
            }
        }
    }
}

/// The single place Graph failures become the sync engine's categories. Messages carry no secrets.
pub fn drive_error(e: GraphError) -> DriveError {
    let message = e.to_string();
    match e {
        GraphError::NotFound { .. } => DriveError::NotFound(message),
        GraphError::Conflict { .. } => DriveError::Conflict(e.error_code().unwrap_or("conflict").to_string()),
        GraphError::PreconditionFailed { .. } => DriveError::PreconditionFailed(message),
        GraphError::QuotaExceeded { .. } => DriveError::QuotaExceeded,
        GraphError::Throttled { until } => DriveError::Throttled { until },
        GraphError::ResyncRequired { location, .. } => DriveError::ResyncRequired { location },
        GraphError::Unauthorized { .. } => DriveError::Unauthorized { message },
        GraphError::Auth(AuthError::Network(reason)) => DriveError::Offline(reason),
        GraphError::Auth(_) => DriveError::Unauthorized { message },
        GraphError::Network(_) | GraphError::Truncated { .. } => DriveError::Offline(message),
        GraphError::Service { status, .. } if status == 501 || e.has_code("notSupported") => {
            DriveError::NotSupported(message)
        }
        GraphError::Service { status, .. } if status >= 500 => DriveError::Offline(message),
        other => DriveError::Other {
            status: other.status(),
            message,
        },
    }
}

#[async_trait]
impl DriveApi for GraphDrive {
    async fn drive(&self) -> Result<Drive, DriveError> {
        self.client.drive().await.map_err(drive_error)
    }

    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        self.client.item(id).await.map_err(drive_error)
    }

    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        self.client.item_by_path(path).await.map_err(drive_error)
    }

    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        self.client.special_folder(name).await.map_err(drive_error)
    }

    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        self.client.children(id).await.map_err(drive_error)
    }

    async fn children_with_thumbnails(&self, id: &str, sizes: &str) -> Result<Vec<DriveItem>, DriveError> {
        use std::sync::atomic::Ordering;
        if !self.no_listed_thumbnails.load(Ordering::Relaxed) {
            match self
                .client
                .children_with_thumbnails(id, sizes)
                .await
                .map_err(drive_error)
            {
                Err(e) if e.is_not_supported() => {
                    tracing::info!(error = %e, "listings with thumbnails refused; thumbnails are asked per item");
                    self.no_listed_thumbnails.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.children(id).await
    }

    async fn special_folder_child(&self, special: &str, name: &str) -> Result<Option<DriveItem>, DriveError> {
        match self
            .client
            .special_folder_child(special, name)
            .await
            .map_err(drive_error)
        {
            Ok(item) => Ok(Some(item)),
            Err(DriveError::NotFound(_)) | Err(DriveError::Other { status: Some(403), .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        let url = match request {
            DeltaRequest::Full { folder_id } => self.client.delta_first_url(folder_id.as_deref()),
            DeltaRequest::Latest { folder_id } => {
                format!("{}?token=latest", self.client.delta_first_url(folder_id.as_deref()))
            }
            DeltaRequest::Link(link) => link.clone(),
        };
        let page = self.client.delta_page(&url).await.map_err(drive_error)?;
        Ok(DeltaPage {
            items: page.value,
            next_link: page.next_link,
            delta_link: page.delta_link,
        })
    }

    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        self.client.thumbnails(id).await.map_err(drive_error)
    }

    async fn thumbnail_custom(&self, id: &str, size: &str) -> Result<Option<Thumbnail>, DriveError> {
        self.client.thumbnail_custom(id, size).await.map_err(drive_error)
    }

    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        self.client
            .thumbnail_content(ThumbnailRef::Url(url))
            .await
            .map_err(drive_error)
    }

    async fn download(&self, id: &str, ctag: &str, start: u64, end: u64) -> Result<DownloadStream, DriveError> {
        if end <= start {
            return Ok(futures::stream::empty().boxed());
        }
        let len = end - start;
        let (url, was_cached) = match self.cached_url(id, ctag) {
            Some(url) => (url, true),
            None => (self.fresh_url(id, ctag).await?, false),
        };
        let stream = match self.client.get_range(&url, start, len).await {
            Ok(s) => s,
            Err(e) if was_cached && e.is_stale_url() => {
                tracing::debug!(item = id, "download URL went stale; re-checking the item");
                self.forget_url(id);
                let url = self.fresh_url(id, ctag).await?;
                self.client.get_range(&url, start, len).await.map_err(drive_error)?
            }
            Err(e) => return Err(drive_error(e)),
        };
        Ok(stream.map(|r| r.map_err(drive_error)).boxed())
    }

    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        self.client
            .create_folder(parent_id, name, ConflictBehavior::Fail)
            .await
            .map_err(drive_error)
    }

    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
        self.forget_url(id);
        self.client.delete(id, if_match).await.map_err(drive_error)
    }

    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        let patch = ItemPatch {
            name: request.new_name.clone(),
            parent_id: request.new_parent_id.clone(),
            file_system_info: request.modified.map(|m| FileSystemInfo {
                last_modified_date_time: Some(m),
                ..Default::default()
            }),
        };
        self.client
            .update(id, &patch, request.if_match.as_deref())
            .await
            .map_err(drive_error)
    }

    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        if let ApiTarget::Replace { item_id, .. } = &request.target {
            self.forget_url(item_id);
        }
        match self.upload_once(&request).await {
            Err(GraphError::UploadSessionGone) => {
                tracing::info!("upload session vanished mid-upload; starting a new one");
                self.upload_once(&request).await.map_err(drive_error)
            }
            other => other.map_err(drive_error),
        }
    }

    async fn upload_ahead(&self, request: UploadRequest) -> Result<u64, DriveError> {
        self.upload_ahead_once(&request).await.map_err(drive_error)
    }

    async fn cancel_upload(&self, upload_url: &str) -> Result<(), DriveError> {
        self.client.cancel_upload(upload_url).await.map_err(drive_error)
    }

    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.client.restore(id, parent_id, name).await.map_err(drive_error)
    }

    fn throttle_answers(&self) -> u64 {
        self.client.throttle_answers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::error::ErrorCodes;

    #[test]
    fn graph_errors_map_to_drive_categories() {
        let codes = |c: &[&str]| ErrorCodes(c.iter().map(|s| s.to_string()).collect());
        assert!(matches!(
            drive_error(GraphError::NotFound {
                codes: codes(&["itemNotFound"])
            }),
            DriveError::NotFound(_)
        ));
        assert_eq!(
            drive_error(GraphError::Conflict {
                codes: codes(&["nameAlreadyExists"])
            }),
            DriveError::Conflict("nameAlreadyExists".into())
        );
        assert_eq!(
            drive_error(GraphError::ResyncRequired {
                location: Some("L".into()),
                codes: codes(&[])
            }),
            DriveError::ResyncRequired {
                location: Some("L".into())
            }
        );
        assert!(matches!(
            drive_error(GraphError::Network("x".into())),
            DriveError::Offline(_)
        ));
        let e = drive_error(GraphError::Service {
            status: 502,
            codes: codes(&[]),
            message: String::new(),
        });
        assert!(matches!(e, DriveError::Offline(_)) && e.is_retryable());
        let e = drive_error(GraphError::Service {
            status: 400,
            codes: codes(&["invalidRequest", "notSupported"]),
            message: String::new(),
        });
        assert!(e.is_not_supported());
        assert!(matches!(
            drive_error(GraphError::QuotaExceeded { codes: codes(&[]) }),
            DriveError::QuotaExceeded
        ));
        assert!(matches!(
            drive_error(GraphError::Auth(AuthError::NotSignedIn { account: None })),
            DriveError::Unauthorized { .. }
        ));
        assert!(matches!(
            drive_error(GraphError::RangeNotSatisfiable {
                total: Some(5),
                codes: codes(&[])
            }),
            DriveError::Other { status: Some(416), .. }
        ));
    }

    async fn collect(mut s: DownloadStream) -> Result<Vec<u8>, DriveError> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn downloads_are_pinned_to_the_ctag_and_reuse_the_url() {
        use crate::remote::auth::StaticToken;
        use crate::remote::{Endpoints, RetryPolicy};
        use std::sync::Arc;
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, Request, ResponseTemplate};

        let server = MockServer::start().await;
        let body: Vec<u8> = (0u8..100).collect();
        let served = body.clone();
        Mock::given(method("GET"))
            .and(path("/v1.0/me/drive/items/A!1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": "A!1", "cTag": "c2", "size": 100, "file": {},
                "@microsoft.graph.downloadUrl": format!("{}/dl/a?sig=x", server.uri())
            })))
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/dl/a"))
            .respond_with(move |r: &Request| {
                assert!(!r.headers.contains_key("authorization"));
                let range = r.headers.get("range").unwrap().to_str().unwrap().to_string();
                let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                if a >= 100 {
                    return ResponseTemplate::new(416).insert_header("Content-Range", "bytes */100");
                }
                let b = b.min(99);
                ResponseTemplate::new(206)
                    .insert_header("Content-Range", format!("bytes {a}-{b}/100").as_str())
                    .set_body_bytes(served[a..=b].to_vec())
            })
            .mount(&server)
            .await;
        let endpoints = Endpoints {
            graph_url: format!("{}/v1.0", server.uri()),
            ..Default::default()
        };
        let client = GraphClient::new(endpoints, Arc::new(StaticToken("t".into())), RetryPolicy::default()).unwrap();
        let drive = GraphDrive::new(client);
        assert_eq!(
            collect(drive.download("A!1", "c2", 0, 10).await.unwrap())
                .await
                .unwrap(),
            body[0..10]
        );
        assert_eq!(
            collect(drive.download("A!1", "c2", 90, 200).await.unwrap())
                .await
                .unwrap(),
            body[90..100]
        );
        assert!(collect(drive.download("A!1", "c2", 3, 3).await.unwrap())
            .await
            .unwrap()
            .is_empty());
        let beyond = drive.download("A!1", "c2", 100, 110).await.err();
        assert!(
            matches!(beyond, Some(DriveError::Other { status: Some(416), .. })),
            "{beyond:?}"
        );
        // Another version than the current one: refused after one metadata call.
        let stale = drive.download("A!1", "c1", 0, 10).await.err();
        assert!(matches!(stale, Some(DriveError::PreconditionFailed(_))), "{stale:?}");
    }
}
