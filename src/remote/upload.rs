//! Uploads: simple `PUT …/content` for small files (≤ 4 MiB, and 0-byte files), and resumable upload sessions
//! (`createUploadSession` with `fileSystemInfo` and an explicit conflict behavior; fragments with
//! `Content-Range` and **no** Authorization header; resume from `nextExpectedRanges` after a 416 or a dropped
//! connection; 404 → `UploadSessionGone`). [`GraphClient::upload_file`] drives a whole upload.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::error::{ErrorCodes, GraphError};
use super::graph::{decode_json, GraphClient};
use super::http::{ApiRequest, UrlKind};
use super::models::{ConflictBehavior, DriveItem, FileSystemInfo, ItemPatch, UploadSession};
use super::paths::{child_resource, item_resource};
use super::quickxor::QuickXorHash;

/// Fragments (except the last) must be a multiple of this (320 KiB).
pub const FRAGMENT_ALIGN: u64 = 320 * 1024;
/// Each fragment request must be smaller than this (60 MiB).
pub const FRAGMENT_MAX: u64 = 60 * 1024 * 1024;
/// The default fragment: 32 × 320 KiB = 10 MiB.
pub const DEFAULT_FRAGMENT: u64 = 32 * FRAGMENT_ALIGN;
/// Files up to this size go by simple PUT.
pub const SIMPLE_UPLOAD_LIMIT: u64 = 4 * 1024 * 1024;

/// Bytes to upload, readable at any offset (so a fragment can be re-sent or resumed).
#[async_trait]
pub trait UploadSource: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Exactly `len` bytes from `offset` (the caller never reads past the end).
    async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes>;
}

#[async_trait]
impl UploadSource for Bytes {
    fn len(&self) -> u64 {
        Bytes::len(self) as u64
    }
    async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let start = offset as usize;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= Bytes::len(self))
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end"))?;
        Ok(self.slice(start..end))
    }
}

/// A local file (its length taken at open), read with `pread` on a blocking thread.
pub struct FileSource {
    file: Arc<std::fs::File>,
    len: u64,
}

impl FileSource {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file: Arc::new(file),
            len,
        })
    }
}

#[async_trait]
impl UploadSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// What an upload creates or replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadTarget {
    NewChild { parent_id: String, name: String },
    Existing { item_id: String },
}

/// One whole upload for [`GraphClient::upload_file`].
#[derive(Clone, Debug)]
pub struct UploadJob {
    pub target: UploadTarget,
    /// Sent in the session `item` (and PATCHed after a simple PUT) so OneDrive keeps the local times.
    pub file_system_info: Option<FileSystemInfo>,
    pub conflict: ConflictBehavior,
    /// For `Existing`: fail with `PreconditionFailed` when the item's eTag/cTag is no longer this. Sent as
    /// `If-Match` on a simple PUT; for a session it is checked against the item just before the session is
    /// created (If-Match on `createUploadSession` is reported to 412 even when current), which leaves a short
    /// race window.
    pub if_match: Option<String>,
    /// A session saved earlier (from [`UploadEvent::SessionStarted`]): resume it instead of starting over.
    pub resume_from: Option<UploadSession>,
}

#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// A multiple of 320 KiB below 60 MiB.
    pub fragment_size: u64,
    /// Simple PUT up to this size.
    pub simple_limit: u64,
    /// How many times in a row a fragment may fail (416, dropped connection) and be resumed from the
    /// session status without progress.
    pub max_resumes: u32,
    /// Compare the uploaded item's quickXorHash (when the service reports one) with the bytes sent; a
    /// difference is `HashMismatch` (the upload must not be trusted).
    pub verify_hash: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            fragment_size: DEFAULT_FRAGMENT,
            simple_limit: SIMPLE_UPLOAD_LIMIT,
            max_resumes: 5,
            verify_hash: true,
        }
    }
}

impl UploadOptions {
    pub fn validate(&self) -> Result<(), GraphError> {
        let f = self.fragment_size;
        if f == 0 || f % FRAGMENT_ALIGN != 0 || f >= FRAGMENT_MAX {
            return Err(GraphError::Invalid(format!(
                "fragment size {f} must be a non-zero multiple of 327680 below 62914560"
            )));
        }
        Ok(())
    }
}

/// Progress of [`GraphClient::upload_file`].
#[derive(Debug)]
pub enum UploadEvent<'a> {
    /// A session exists (new or resumed): journal it to resume after a crash. Its URL is a secret.
    SessionStarted(&'a UploadSession),
    /// Bytes the service has acknowledged so far.
    Progress { sent: u64, total: u64 },
}

/// Where [`GraphClient::send_session`] stopped.
enum SessionEnd {
    Completed(Box<DriveItem>),
    /// Every fragment but the last is sent: the session holds `sent` bytes.
    HeldBack {
        sent: u64,
    },
}

impl SessionEnd {
    fn completed(item: DriveItem) -> SessionEnd {
        SessionEnd::Completed(Box::new(item))
    }
}

/// The answer to one fragment.
#[derive(Debug)]
pub enum FragmentOutcome {
    /// 202: more expected (`next_expected_ranges`).
    Accepted(UploadSession),
    /// 200/201: the upload is complete.
    Completed(Box<DriveItem>),
}

impl GraphClient {
    /// `PUT /items/{parent}:/{name}:/content?@microsoft.graph.conflictBehavior=…` (≤ 4 MiB).
    pub async fn upload_small(
        &self,
        parent_id: &str,
        name: &str,
        bytes: Bytes,
        conflict: ConflictBehavior,
    ) -> Result<DriveItem, GraphError> {
        let path = format!(
            "{}/content?@microsoft.graph.conflictBehavior={}",
            child_resource(parent_id, name),
            conflict.as_str()
        );
        let req = self
            .graph_request(Method::PUT, &path)
            .bytes_body(bytes, "application/octet-stream")
            .streaming();
        self.call_json(&req).await
    }

    /// `PUT /items/{id}/content` (≤ 4 MiB). `if_match` → `PreconditionFailed` when the item changed.
    pub async fn replace_small(
        &self,
        item_id: &str,
        bytes: Bytes,
        if_match: Option<&str>,
    ) -> Result<DriveItem, GraphError> {
        let path = format!("{}/content", item_resource(item_id));
        let mut req = self
            .graph_request(Method::PUT, &path)
            .bytes_body(bytes, "application/octet-stream")
            .streaming();
        if let Some(tag) = if_match {
            req = req.header(IF_MATCH, tag)?;
        }
        self.call_json(&req).await
    }

    /// `POST …/createUploadSession` with `item: {@microsoft.graph.conflictBehavior, name, fileSize,
    /// fileSystemInfo}`.
    pub async fn create_upload_session(
        &self,
        target: &UploadTarget,
        size: u64,
        file_system_info: Option<&FileSystemInfo>,
        conflict: ConflictBehavior,
    ) -> Result<UploadSession, GraphError> {
        let mut item = serde_json::Map::new();
        item.insert("@microsoft.graph.conflictBehavior".into(), conflict.as_str().into());
        let path = match target {
            UploadTarget::NewChild { parent_id, name } => {
                item.insert("name".into(), name.clone().into());
                format!("{}/createUploadSession", child_resource(parent_id, name))
            }
            UploadTarget::Existing { item_id } => format!("{}/createUploadSession", item_resource(item_id)),
        };
        item.insert("fileSize".into(), size.into());
        if let Some(fsi) = file_system_info {
            item.insert(
                "fileSystemInfo".into(),
                serde_json::to_value(fsi).map_err(|e| GraphError::Invalid(e.to_string()))?,
            );
        }
        let req = self
            .graph_request(Method::POST, &path)
            .json_body(&json!({ "item": item }));
        let session: UploadSession = self.call_json(&req).await?;
        if session.upload_url.is_none() {
            return Err(GraphError::Decode("upload session without uploadUrl".into()));
        }
        Ok(session)
    }

    /// `PUT {uploadUrl}` with `Content-Range: bytes {start}-{end}/{total}` and no Authorization header.
    pub async fn upload_fragment(
        &self,
        upload_url: &str,
        start: u64,
        total: u64,
        data: Bytes,
    ) -> Result<FragmentOutcome, GraphError> {
        if data.is_empty() || start + data.len() as u64 > total {
            return Err(GraphError::Invalid("fragment outside the file".into()));
        }
        let end = start + data.len() as u64 - 1;
        let req = ApiRequest::new(Method::PUT, upload_url, UrlKind::PreAuthenticated)
            .bytes_body(data, "application/octet-stream")
            .header(CONTENT_RANGE, &format!("bytes {start}-{end}/{total}"))?
            .streaming();
        let resp = self.http.send_full(&req).await.map_err(session_gone)?;
        match resp.status {
            StatusCode::ACCEPTED => Ok(FragmentOutcome::Accepted(decode_json(&resp)?)),
            StatusCode::OK | StatusCode::CREATED => Ok(FragmentOutcome::Completed(Box::new(decode_json(&resp)?))),
            s => Err(GraphError::Decode(format!(
                "upload fragment: unexpected status {}",
                s.as_u16()
            ))),
        }
    }

    /// `GET {uploadUrl}`: what the service still expects.
    pub async fn upload_status(&self, upload_url: &str) -> Result<UploadSession, GraphError> {
        let req = ApiRequest::new(Method::GET, upload_url, UrlKind::PreAuthenticated);
        let resp = self.http.send_full(&req).await.map_err(session_gone)?;
        decode_json(&resp)
    }

    /// `DELETE {uploadUrl}`; a session that is already gone counts as cancelled.
    pub async fn cancel_upload(&self, upload_url: &str) -> Result<(), GraphError> {
        let req = ApiRequest::new(Method::DELETE, upload_url, UrlKind::PreAuthenticated);
        match self.http.send_full(&req).await {
            Ok(_) | Err(GraphError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Uploads all of `source`: simple PUT up to `opts.simple_limit` (and for 0 bytes), else an upload session
    /// (resumed from `job.resume_from` when it is still alive). Returns the final item.
    pub async fn upload_file(
        &self,
        source: &dyn UploadSource,
        job: &UploadJob,
        opts: &UploadOptions,
        on_event: &mut (dyn FnMut(UploadEvent<'_>) + Send),
    ) -> Result<DriveItem, GraphError> {
        opts.validate()?;
        let total = source.len();
        if total <= opts.simple_limit || total == 0 {
            return self.upload_simple(source, job, opts, on_event).await;
        }
        match self.send_session(source, job, opts, on_event, false).await? {
            SessionEnd::Completed(item) => Ok(*item),
            SessionEnd::HeldBack { .. } => unreachable!("a whole upload holds nothing back"),
        }
    }

    /// Sends every fragment of a session upload but the last, starting the session (or resuming
    /// `job.resume_from`): nothing is committed, and a later [`GraphClient::upload_file`] resuming the session
    /// sends the last fragment only. Returns the bytes the session holds; 0 (no session made) when the file goes
    /// by simple PUT or fits one fragment.
    pub async fn upload_file_ahead(
        &self,
        source: &dyn UploadSource,
        job: &UploadJob,
        opts: &UploadOptions,
        on_event: &mut (dyn FnMut(UploadEvent<'_>) + Send),
    ) -> Result<u64, GraphError> {
        opts.validate()?;
        let total = source.len();
        if total <= opts.simple_limit || total <= opts.fragment_size {
            return Ok(0);
        }
        match self.send_session(source, job, opts, on_event, true).await? {
            SessionEnd::HeldBack { sent } => Ok(sent),
            SessionEnd::Completed(_) => unreachable!("the last fragment is held back"),
        }
    }

    /// The fragments of a session upload (new, or `job.resume_from` while it is alive); with `hold_last`, stops
    /// before the last fragment.
    async fn send_session(
        &self,
        source: &dyn UploadSource,
        job: &UploadJob,
        opts: &UploadOptions,
        on_event: &mut (dyn FnMut(UploadEvent<'_>) + Send),
        hold_last: bool,
    ) -> Result<SessionEnd, GraphError> {
        let total = source.len();
        let mut resumed = None;
        if let Some(saved) = job.resume_from.as_ref().and_then(|s| s.upload_url.clone()) {
            match self.upload_status(&saved).await {
                Ok(status) => match status.next_expected_offset() {
                    Some(offset) if offset < total => resumed = Some((saved, offset)),
                    _ => tracing::info!("saved upload session expects nothing more; starting a new one"),
                },
                Err(GraphError::UploadSessionGone) => tracing::info!("saved upload session is gone; starting anew"),
                Err(e) => return Err(e),
            }
        }
        let (url, mut offset) = match resumed {
            Some((url, offset)) => {
                let session = UploadSession {
                    upload_url: Some(url.clone()),
                    ..job.resume_from.clone().unwrap_or_default()
                };
                on_event(UploadEvent::SessionStarted(&session));
                (url, offset)
            }
            None => {
                if let (UploadTarget::Existing { item_id }, Some(tag)) = (&job.target, job.if_match.as_deref()) {
                    let current = self.item(item_id).await?;
                    if current.e_tag.as_deref() != Some(tag) && current.c_tag.as_deref() != Some(tag) {
                        return Err(GraphError::PreconditionFailed {
                            codes: ErrorCodes(vec!["resourceModified".into()]),
                        });
                    }
                }
                let session = self
                    .create_upload_session(&job.target, total, job.file_system_info.as_ref(), job.conflict)
                    .await?;
                on_event(UploadEvent::SessionStarted(&session));
                (session.upload_url.clone().unwrap_or_default(), 0)
            }
        };
        on_event(UploadEvent::Progress { sent: offset, total });

        let mut sent_hash = RunningHash::default();
        let mut failures = 0u32;
        loop {
            if hold_last && offset + opts.fragment_size >= total {
                return Ok(SessionEnd::HeldBack { sent: offset });
            }
            let len = opts.fragment_size.min(total - offset) as usize;
            let data = read_source(source, offset, len).await?;
            if opts.verify_hash {
                sent_hash.feed(source, offset, &data).await?;
            }
            match self.upload_fragment(&url, offset, total, data).await {
                Ok(FragmentOutcome::Completed(item)) => {
                    on_event(UploadEvent::Progress { sent: total, total });
                    if opts.verify_hash {
                        verify_uploaded(&item, &sent_hash.finish(source).await?)?;
                    }
                    return Ok(SessionEnd::Completed(item));
                }
                Ok(FragmentOutcome::Accepted(status)) => {
                    crate::crash_points::crash_point("upload.fragment_sent");
                    let next = status.next_expected_offset().unwrap_or(offset + len as u64);
                    if next > offset {
                        failures = 0;
                    } else {
                        failures += 1;
                        if failures > opts.max_resumes {
                            return Err(GraphError::Decode(format!(
                                "upload session keeps asking for byte {next} (sent up to {offset})"
                            )));
                        }
                    }
                    offset = next.min(total);
                    on_event(UploadEvent::Progress { sent: offset, total });
                }
                Err(e @ (GraphError::RangeNotSatisfiable { .. } | GraphError::Network(_))) => {
                    failures += 1;
                    if failures > opts.max_resumes {
                        return Err(e);
                    }
                    tracing::warn!(offset, error = %e, "fragment not taken; asking the session where to resume");
                    let status = match self.upload_status(&url).await {
                        Err(GraphError::UploadSessionGone) if offset + len as u64 == total => {
                            return self.completed_or_gone(job, source).await.map(SessionEnd::completed)
                        }
                        other => other?,
                    };
                    match status.next_expected_offset() {
                        Some(next) if next < total => offset = next,
                        _ => {
                            return self
                                .item_after_lost_completion(job, source, opts)
                                .await
                                .map(SessionEnd::completed)
                        }
                    }
                    on_event(UploadEvent::Progress { sent: offset, total });
                }
                // The last fragment's answer was lost (connection dropped, the retry found the session closed):
                // a completed session is gone too (OAD driveitem_createuploadsession.md), so look for the item.
                Err(GraphError::UploadSessionGone) if offset + len as u64 == total => {
                    return self.completed_or_gone(job, source).await.map(SessionEnd::completed)
                }
                Err(e) => return Err(e),
            }
            if offset >= total {
                // The service acknowledged every byte but did not send the item.
                return self
                    .item_after_lost_completion(job, source, opts)
                    .await
                    .map(SessionEnd::completed);
            }
        }
    }

    async fn upload_simple(
        &self,
        source: &dyn UploadSource,
        job: &UploadJob,
        opts: &UploadOptions,
        on_event: &mut (dyn FnMut(UploadEvent<'_>) + Send),
    ) -> Result<DriveItem, GraphError> {
        let total = source.len();
        let bytes = read_source(source, 0, total as usize).await?;
        let sent_hash = opts.verify_hash.then(|| QuickXorHash::of(&bytes));
        let item = match &job.target {
            UploadTarget::NewChild { parent_id, name } => {
                self.upload_small(parent_id, name, bytes, job.conflict).await?
            }
            UploadTarget::Existing { item_id } => self.replace_small(item_id, bytes, job.if_match.as_deref()).await?,
        };
        crate::crash_points::crash_point("upload.simple_sent");
        on_event(UploadEvent::Progress { sent: total, total });
        if let Some(sent) = &sent_hash {
            verify_uploaded(&item, sent)?;
        }
        let Some(fsi) = &job.file_system_info else {
            return Ok(item);
        };
        // A simple PUT cannot carry fileSystemInfo: set it afterwards (no If-Match: the eTag moves right after
        // an upload). Failing here loses only the timestamp, so it is logged, not fatal.
        let patch = ItemPatch {
            file_system_info: Some(fsi.clone()),
            ..Default::default()
        };
        match self.update(&item.id, &patch, None).await {
            Ok(patched) => Ok(patched),
            Err(e) => {
                tracing::warn!(item = %item.id, error = %e, "uploaded, but setting fileSystemInfo failed");
                Ok(item)
            }
        }
    }

    /// The session vanished right after its last fragment was sent: the item is there with exactly our bytes
    /// (the session completed and only its answer was lost), else `UploadSessionGone` (start over). The hash is
    /// always checked here, else an older item of the same name would pass for the upload; an item without a
    /// hash yet is accepted only as a new file made with `fail` (the name was free when the session began).
    async fn completed_or_gone(&self, job: &UploadJob, source: &dyn UploadSource) -> Result<DriveItem, GraphError> {
        let strict = UploadOptions {
            verify_hash: true,
            ..Default::default()
        };
        let created_new = matches!(job.target, UploadTarget::NewChild { .. }) && job.conflict == ConflictBehavior::Fail;
        match self.item_after_lost_completion(job, source, &strict).await {
            Ok(item) if item.quick_xor_hash().is_some() || (created_new && item.size == Some(source.len() as i64)) => {
                tracing::info!(item = %item.id, "upload session closed with its answer lost; the item is complete");
                Ok(item)
            }
            _ => Err(GraphError::UploadSessionGone),
        }
    }

    /// The completion answer was lost: find the item the session produced (and check it is our bytes).
    async fn item_after_lost_completion(
        &self,
        job: &UploadJob,
        source: &dyn UploadSource,
        opts: &UploadOptions,
    ) -> Result<DriveItem, GraphError> {
        let item = match &job.target {
            UploadTarget::NewChild { parent_id, name } => self
                .child_by_name(parent_id, name)
                .await?
                .ok_or_else(|| GraphError::Decode("upload session finished but the item is not there".into()))?,
            UploadTarget::Existing { item_id } => self.item(item_id).await?,
        };
        if opts.verify_hash {
            verify_uploaded(&item, &RunningHash::default().finish(source).await?)?;
        }
        Ok(item)
    }
}

async fn read_source(source: &dyn UploadSource, offset: u64, len: usize) -> Result<Bytes, GraphError> {
    let data = source
        .read_at(offset, len)
        .await
        .map_err(|e| GraphError::Invalid(format!("reading the upload source at {offset}: {e}")))?;
    if data.len() != len {
        return Err(GraphError::Invalid(format!(
            "upload source returned {} bytes at {offset}, wanted {len}",
            data.len()
        )));
    }
    Ok(data)
}

/// quickXorHash of the bytes sent, in file order, whatever order the session asked for them in: bytes the
/// service says it already has are read from the source to fill the gap.
#[derive(Default)]
struct RunningHash {
    hasher: QuickXorHash,
    upto: u64,
}

impl RunningHash {
    const CATCH_UP_CHUNK: u64 = 4 * 1024 * 1024;

    async fn catch_up(&mut self, source: &dyn UploadSource, to: u64) -> Result<(), GraphError> {
        while self.upto < to {
            let n = Self::CATCH_UP_CHUNK.min(to - self.upto) as usize;
            let chunk = read_source(source, self.upto, n).await?;
            self.hasher.update(&chunk);
            self.upto += n as u64;
        }
        Ok(())
    }

    async fn feed(&mut self, source: &dyn UploadSource, offset: u64, data: &Bytes) -> Result<(), GraphError> {
        self.catch_up(source, offset).await?;
        let end = offset + data.len() as u64;
        if end > self.upto {
            self.hasher.update(&data[(self.upto - offset) as usize..]);
            self.upto = end;
        }
        Ok(())
    }

    async fn finish(&mut self, source: &dyn UploadSource) -> Result<String, GraphError> {
        self.catch_up(source, source.len()).await?;
        Ok(self.hasher.finish_base64())
    }
}

/// `HashMismatch` when the service reports a quickXorHash for the uploaded item that is not the one sent.
fn verify_uploaded(item: &DriveItem, sent: &str) -> Result<(), GraphError> {
    match item.quick_xor_hash() {
        Some(reported) if reported != sent => Err(GraphError::HashMismatch {
            expected: sent.to_string(),
            actual: reported.to_string(),
        }),
        _ => Ok(()),
    }
}

/// On an upload URL, 404 means the session is gone.
fn session_gone(e: GraphError) -> GraphError {
    match e {
        GraphError::NotFound { .. } => GraphError::UploadSessionGone,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_size_rules() {
        assert!(UploadOptions::default().validate().is_ok());
        assert_eq!(DEFAULT_FRAGMENT, 10 * 1024 * 1024);
        for bad in [0, 1000, FRAGMENT_ALIGN + 1, 192 * FRAGMENT_ALIGN] {
            let o = UploadOptions {
                fragment_size: bad,
                ..Default::default()
            };
            assert!(o.validate().is_err(), "{bad} accepted");
        }
        let o = UploadOptions {
            fragment_size: 191 * FRAGMENT_ALIGN,
            ..Default::default()
        };
        assert!(o.validate().is_ok());
    }

    #[tokio::test]
    async fn bytes_source_reads_exact_ranges() {
        let src = Bytes::from_static(b"0123456789");
        assert_eq!(&src.read_at(3, 4).await.unwrap()[..], b"3456");
        assert!(src.read_at(8, 4).await.is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abcdef").unwrap();
        let f = FileSource::open(&p).unwrap();
        assert_eq!(f.len(), 6);
        assert_eq!(&f.read_at(2, 3).await.unwrap()[..], b"cde");
    }
}
