//! Uploads: simple `PUT …/content` (OAD api/driveitem_put_content.md; 250 MB, or 4 MiB in strict mode) and
//! upload sessions (GDC driveitem-createuploadsession.md): session creation, fragments with the documented
//! `Content-Range` rules (same total, < 60 MiB, multiples of 320 KiB except the last, in order), status,
//! cancel, commit (`deferCommit`). Large uploads are spooled to disk.

use super::addressing::{resolve, GraphRequest, Target};
use super::api_items::{conflict_of, patch_times, read_json};
use super::blob::SpoolWriter;
use super::drive::{Conflict, Drive, ItemNo, ItemPatch, NewContent};
use super::errors::{GraphError, GraphResult};
use super::facets;
use super::names::validate_name;
use super::render::{item_json, time, RenderOpts};
use super::state::EmulatorState;
use super::upload_session::{SessionTarget, UploadSession};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

/// Every fragment but the last must be a multiple of this (320 KiB).
pub const FRAGMENT_MULTIPLE: u64 = 327_680;
/// Each fragment must be smaller than this (60 MiB).
pub const FRAGMENT_MAX: u64 = 60 * 1024 * 1024;

impl UploadSession {
    fn complete(&self) -> bool {
        self.received.is_some()
    }
    fn next_expected(&self) -> u64 {
        match (&self.received, self.total) {
            (Some(_), Some(t)) => t,
            _ => self.writer.len(),
        }
    }
    fn status_json(&self) -> Value {
        let ranges: Vec<String> = if self.complete() {
            vec![]
        } else {
            vec![format!("{}-", self.writer.len())]
        };
        json!({"expirationDateTime": time(self.expires), "nextExpectedRanges": ranges})
    }
}

fn too_large(limit: u64) -> GraphError {
    GraphError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalidRequest",
        format!("The request is larger than {limit} bytes; use an upload session"),
    )
    .with_inner("maxFileSizeExceeded")
}

fn io_error(e: std::io::Error) -> GraphError {
    GraphError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generalException",
        format!("Storage error: {e}"),
    )
}

/// Receives a whole request body into the spool, refusing more than `limit` bytes.
async fn receive(state: &EmulatorState, body: Body, limit: u64) -> GraphResult<SpoolWriter> {
    let mut w = SpoolWriter::new(&state.spool_dir);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| GraphError::invalid(format!("Reading the body failed: {e}")))?;
        if w.len() + chunk.len() as u64 > limit {
            return Err(too_large(limit));
        }
        w.write(&chunk).map_err(io_error)?;
    }
    Ok(w)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn check_if_match(d: &Drive, existing: Option<ItemNo>, req: &GraphRequest) -> GraphResult<()> {
    if let Some(tag) = req.header(header::IF_MATCH) {
        match existing.and_then(|n| d.item(n)) {
            Some(item) if d.tag_matches(item, tag) => {}
            _ => return Err(GraphError::modified()),
        }
    }
    if let Some(tag) = req.header(header::IF_NONE_MATCH) {
        if let Some(item) = existing.and_then(|n| d.item(n)) {
            if tag.trim() == "*" || d.tag_matches(item, tag) {
                return Err(GraphError::modified());
            }
        }
    }
    Ok(())
}

/// Splits a path target into (base, parent folder segments, file name).
fn split_target(t: &Target) -> Option<(&[String], &String)> {
    let path = t.path.as_ref()?;
    let (name, dirs) = path.split_last()?;
    Some((dirs, name))
}

/// `PUT …/{parent}:/{name}:/content` (201 new, 200 replaced) and `PUT /items/{id}/content` (200).
pub async fn simple_upload(
    state: &Arc<EmulatorState>,
    req: &GraphRequest,
    target: &Target,
    body: Body,
) -> GraphResult<Response> {
    let limit = state.settings.lock().simple_upload_max;
    if content_length(&req.headers).is_some_and(|l| l > limit) {
        return Err(too_large(limit));
    }
    let conflict = conflict_of(None, Some(&req.query), Conflict::Replace)?;
    {
        let d = state.drive.lock();
        if let Some(len) = content_length(&req.headers) {
            d.check_space(len as i64, false)?;
        }
    }
    let writer = receive(state, body, limit).await?;
    let (blob, hash) = writer.finish().map_err(io_error)?;
    let name = match split_target(target) {
        Some((_, name)) => name.clone(),
        None => {
            let mut d = state.drive.lock();
            let no = resolve(&mut d, target)?;
            d.live(no)?.name.clone()
        }
    };
    let mut content = NewContent::plain(blob, Some(hash)).with_facets(&name);
    let late = facets::deliver_photo_later(state, &mut content);
    let now = Utc::now();
    let mut d = state.drive.lock();
    let (no, created) = match split_target(target) {
        Some((dirs, name)) => {
            let base = super::addressing::resolve_base_for_write(&mut d, &target.base)?;
            let existing = target.path.as_ref().and_then(|p| d.resolve_path(base, p).ok());
            check_if_match(&d, existing, req)?;
            validate_name(name)?;
            let parent = d.ensure_folders(base, dirs, now)?;
            d.write_file(parent, name, content, conflict, &ItemPatch::default(), now)?
        }
        None => {
            let no = resolve(&mut d, target)?;
            check_if_match(&d, Some(no), req)?;
            d.replace_content(no, content, &ItemPatch::default(), now)?;
            (no, false)
        }
    };
    schedule_post_processing(state, &mut d, no);
    if let Some((late, delay)) = late {
        facets::schedule_photo(state, no, d.live(no)?.ctag_ver, late, delay);
    }
    let v = item_json(state, &d, d.live(no)?, &RenderOpts::default());
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(v)).into_response())
}

/// When post-processing is on: no thumbnails until it is done, then one more eTag change (a client's `If-Match`
/// with the eTag it got from the upload then fails with 412, as on the real service).
fn schedule_post_processing(state: &Arc<EmulatorState>, d: &mut Drive, no: ItemNo) {
    let Some(delay) = state.settings.lock().post_processing else {
        return;
    };
    let Some(item) = d.item_mut(no) else { return };
    item.no_thumbnail = true;
    let ver = item.ctag_ver;
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Some(state) = weak.upgrade() {
            state.drive.lock().finish_processing(no, ver, Utc::now());
        }
    });
}

/// `POST …/createUploadSession` by parent path or by item id.
pub async fn create_session(
    state: &Arc<EmulatorState>,
    req: &GraphRequest,
    target: &Target,
    body: Body,
) -> GraphResult<Response> {
    let body = read_json(body).await?;
    let item = body.get("item").cloned().unwrap_or(json!({}));
    let conflict = conflict_of(Some(&item), Some(&req.query), Conflict::Fail)?;
    let file_size = match item.get("fileSize") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| GraphError::invalid("fileSize must be a non-negative integer"))?,
        ),
    };
    let mut patch = ItemPatch::default();
    patch_times(&item, &mut patch)?;
    let defer_commit = body.get("deferCommit").and_then(Value::as_bool).unwrap_or(false);
    let now = Utc::now();
    let session_target = {
        let mut d = state.drive.lock();
        let (session_target, existing) = match split_target(target) {
            Some((dirs, name)) => {
                validate_name(name)?;
                let base = super::addressing::resolve_base_for_write(&mut d, &target.base)?;
                let parent = d.ensure_folders(base, dirs, now)?;
                let existing = d.child_by_name(parent, name);
                (
                    SessionTarget::New {
                        parent,
                        name: name.clone(),
                    },
                    existing,
                )
            }
            None => {
                let no = resolve(&mut d, target)?;
                if d.live(no)?.is_folder() {
                    return Err(GraphError::invalid(
                        "Upload sessions by item id replace a file; address a new file by path",
                    ));
                }
                (SessionTarget::Existing(no), Some(no))
            }
        };
        check_if_match(&d, existing, req)?;
        if let (SessionTarget::New { name, .. }, Some(_), Conflict::Fail) = (&session_target, existing, conflict) {
            return Err(GraphError::name_exists(name));
        }
        let old = match (&session_target, existing, conflict) {
            (SessionTarget::New { .. }, _, Conflict::Rename) => 0,
            (_, Some(n), _) => d.size_of(n) as i64,
            _ => 0,
        };
        if let Some(size) = file_size {
            d.check_space(size as i64 - old, existing.is_none())?;
        }
        session_target
    };
    let lifetime = state.settings.lock().upload_session_lifetime;
    let session = UploadSession {
        target: session_target,
        conflict,
        file_size,
        total: None,
        patch,
        defer_commit,
        writer: SpoolWriter::new(&state.spool_dir),
        received: None,
        expires: now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(24)),
    };
    let token = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let expires = session.expires;
    state
        .uploads
        .lock()
        .insert(token.clone(), Arc::new(tokio::sync::Mutex::new(session)));
    Ok(Json(json!({
        "uploadUrl": format!("{}/upload/{token}", state.content_url),
        "expirationDateTime": time(expires),
        "nextExpectedRanges": ["0-"],
    }))
    .into_response())
}

fn session(state: &EmulatorState, token: &str) -> GraphResult<Arc<tokio::sync::Mutex<UploadSession>>> {
    state
        .uploads
        .lock()
        .get(token)
        .cloned()
        .ok_or_else(GraphError::upload_session_not_found)
}

/// Takes the session's lock and checks it still exists and has not expired.
async fn locked(state: &EmulatorState, token: &str) -> GraphResult<tokio::sync::OwnedMutexGuard<UploadSession>> {
    let s = session(state, token)?.lock_owned().await;
    if !state.uploads.lock().contains_key(token) {
        return Err(GraphError::upload_session_not_found());
    }
    if s.expires <= Utc::now() {
        state.uploads.lock().remove(token);
        return Err(GraphError::upload_session_not_found());
    }
    Ok(s)
}

/// `Content-Range: bytes a-b/total` → (a, b, total).
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.trim().split_once('-')?;
    Some((
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

fn fragment_error(status: StatusCode, code: &'static str, inner: &'static str, msg: &str) -> Response {
    GraphError::new(status, code, msg).with_inner(inner).into_response()
}

/// `PUT {uploadUrl}`: one fragment.
pub async fn put_fragment(
    State(state): State<Arc<EmulatorState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut s = match locked(&state, &token).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let bad = |inner, msg: &str| fragment_error(StatusCode::BAD_REQUEST, "invalidRequest", inner, msg);
    let Some((a, b, total)) = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
    else {
        return bad(
            "invalidContentRange",
            "A Content-Range header 'bytes a-b/total' is required",
        );
    };
    if b < a || b >= total {
        return bad(
            "invalidContentRange",
            "The Content-Range is not valid for the total size",
        );
    }
    if s.file_size.is_some_and(|f| f != total) || s.total.is_some_and(|t| t != total) {
        return bad(
            "fragmentLengthMismatch",
            "The total size differs from the size declared for this session",
        );
    }
    let len = b - a + 1;
    if content_length(&headers).is_some_and(|l| l != len) {
        return bad(
            "fragmentLengthMismatch",
            "Content-Length does not match the Content-Range",
        );
    }
    if len >= FRAGMENT_MAX {
        return bad("fragmentTooLarge", "Each fragment must be smaller than 60 MiB");
    }
    let next = s.next_expected();
    if a < next {
        return fragment_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "fragmentOverlap",
            "The uploaded fragment overlaps with data that has already been received",
        );
    }
    if a > next {
        return fragment_error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "invalidRange",
            "fragmentOutOfOrder",
            "The uploaded fragment does not start at the next expected byte",
        );
    }
    let last = b + 1 == total;
    if !last && len % FRAGMENT_MULTIPLE != 0 {
        return bad(
            "invalidFragmentSize",
            "Fragments other than the last must be a multiple of 320 KiB",
        );
    }
    let data = match axum::body::to_bytes(body, len as usize + 1).await {
        Ok(d) if d.len() as u64 == len => d,
        _ => {
            return bad(
                "fragmentLengthMismatch",
                "The body length does not match the Content-Range",
            )
        }
    };
    if let Err(e) = s.writer.write(&data) {
        return io_error(e).into_response();
    }
    s.total = Some(total);
    if last {
        let writer = std::mem::replace(&mut s.writer, SpoolWriter::new(&state.spool_dir));
        match writer.finish() {
            Ok(done) => s.received = Some(done),
            Err(e) => return io_error(e).into_response(),
        }
    }
    if !last || s.defer_commit {
        return (StatusCode::ACCEPTED, Json(s.status_json())).into_response();
    }
    commit(&state, &token, &mut s, None).unwrap_or_else(|e| e.into_response())
}

/// Makes the item from a complete session (at `retarget` when given: the explicit commit). The session ends when
/// the commit succeeds; after a failure (name conflict, quota) it stays until it expires, so the client can
/// commit it explicitly (GDC driveitem-createuploadsession.md, "Handle upload errors").
fn commit(
    state: &Arc<EmulatorState>,
    token: &str,
    s: &mut UploadSession,
    retarget: Option<(SessionTarget, Conflict)>,
) -> GraphResult<Response> {
    let (blob, hash) = s
        .received
        .clone()
        .ok_or_else(|| GraphError::invalid("The upload is not complete"))?;
    let (target, conflict) = retarget.unwrap_or_else(|| (s.target.clone(), s.conflict));
    let name = match &target {
        SessionTarget::New { name, .. } => name.clone(),
        SessionTarget::Existing(no) => state.drive.lock().live(*no)?.name.clone(),
    };
    let mut content = NewContent::plain(blob, Some(hash)).with_facets(&name);
    let late = facets::deliver_photo_later(state, &mut content);
    let now = Utc::now();
    let mut d = state.drive.lock();
    let (no, created) = match &target {
        SessionTarget::Existing(no) => {
            d.replace_content(*no, content, &s.patch, now)?;
            (*no, false)
        }
        SessionTarget::New { parent, name } => {
            d.write_file(*parent, name, content, conflict, &s.patch, now).map_err(|e| {
                if e.code == "nameAlreadyExists" {
                    GraphError::new(
                        StatusCode::CONFLICT,
                        "upload_name_conflict",
                        "Another file exists with the same name as the uploaded session. You can redirect the upload session to use a new filename by calling PUT with the new metadata and @microsoft.graph.sourceUrl attribute.",
                    )
                    .with_inner("nameAlreadyExists")
                } else {
                    e
                }
            })?
        }
    };
    state.uploads.lock().remove(token);
    if s.patch.description.is_some() {
        let p = ItemPatch {
            description: s.patch.description.clone(),
            ..Default::default()
        };
        d.update(no, &p, now)?;
    }
    schedule_post_processing(state, &mut d, no);
    if let Some((late, delay)) = late {
        facets::schedule_photo(state, no, d.live(no)?.ctag_ver, late, delay);
    }
    let v = item_json(state, &d, d.live(no)?, &RenderOpts::default());
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(v)).into_response())
}

/// `PUT /…/root:/{path}` with `{"name", "@microsoft.graph.conflictBehavior", "@microsoft.graph.sourceUrl"}`:
/// commits a complete upload session at that path (after an upload error, or a Personal `deferCommit`).
pub async fn commit_from_source(
    state: &Arc<EmulatorState>,
    req: &GraphRequest,
    target: &Target,
    body: Body,
) -> GraphResult<Response> {
    let body = read_json(body).await?;
    let source = body
        .get("@microsoft.graph.sourceUrl")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GraphError::invalid("PUT on an item needs @microsoft.graph.sourceUrl; upload content with PUT …/content")
        })?;
    let prefix = format!("{}/upload/", state.content_url);
    let token = source
        .strip_prefix(&prefix)
        .ok_or_else(GraphError::upload_session_not_found)?
        .to_string();
    let mut s = locked(state, &token).await?;
    let conflict = conflict_of(Some(&body), Some(&req.query), s.conflict)?;
    let retarget = {
        let mut d = state.drive.lock();
        let (dirs, path_name) = split_target(target).ok_or_else(|| GraphError::invalid("Address the file by path"))?;
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(path_name)
            .to_string();
        validate_name(&name)?;
        let base = super::addressing::resolve_base_for_write(&mut d, &target.base)?;
        let parent = d.ensure_folders(base, dirs, Utc::now())?;
        let existing = d.child_by_name(parent, &name);
        check_if_match(&d, existing, req)?;
        SessionTarget::New { parent, name }
    };
    commit(state, &token, &mut s, Some((retarget, conflict)))
}

/// `GET {uploadUrl}`: where the upload stands.
pub async fn session_status(State(state): State<Arc<EmulatorState>>, Path(token): Path<String>) -> Response {
    match locked(&state, &token).await {
        Ok(s) => Json(s.status_json()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE {uploadUrl}`: cancel.
pub async fn cancel_session(State(state): State<Arc<EmulatorState>>, Path(token): Path<String>) -> Response {
    match state.uploads.lock().remove(&token) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => GraphError::upload_session_not_found().into_response(),
    }
}

/// `POST {uploadUrl}` with an empty body: commit a `deferCommit` session.
pub async fn commit_session(State(state): State<Arc<EmulatorState>>, Path(token): Path<String>) -> Response {
    let mut s = match locked(&state, &token).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if !s.complete() {
        return GraphError::invalid("The upload is not complete").into_response();
    }
    commit(&state, &token, &mut s, None).unwrap_or_else(|e| e.into_response())
}

/// Ends every upload session (a control).
pub fn drop_all(state: &EmulatorState) {
    state.uploads.lock().clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-25/128"), Some((0, 25, 128)));
        assert_eq!(
            parse_content_range("bytes 327680-655359/1000000"),
            Some((327_680, 655_359, 1_000_000))
        );
        assert_eq!(parse_content_range("bytes */128"), None);
        assert_eq!(parse_content_range("0-1/2"), None);
    }
}
