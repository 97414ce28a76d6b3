//! Downloads (OAD api/driveitem_get_content.md): `GET …/content` answers 302 to a pre-authenticated, expiring URL
//! on the content host, bound to the content version it was issued for; the content host serves it with
//! `Range` support (206, 416 with `Content-Range: bytes */total`). Also assembles the content host's routes
//! (downloads, thumbnails, upload sessions, copy monitors).

use super::addressing::{resolve, GraphRequest, Target};
use super::blob::Blob;
use super::errors::{GraphError, GraphResult};
use super::state::issue_download_url;
use super::state::EmulatorState;
use super::{api_thumbnails, api_upload};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per chunk when streaming a download.
const CHUNK: u64 = 256 * 1024;

/// The content host: downloads, thumbnails and upload sessions.
pub fn content_router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/download/{token}", get(download))
        .route("/thumbnails/{no}/{ver}/{key}", get(api_thumbnails::serve))
        .route("/monitor/{token}", get(super::api_items::monitor))
        .route(
            "/upload/{session}",
            put(api_upload::put_fragment)
                .get(api_upload::session_status)
                .delete(api_upload::cancel_session)
                .post(api_upload::commit_session),
        )
        .fallback(|| async { GraphError::not_found("resource").into_response() })
        .with_state(state)
}

/// Makes every issued download URL expired.
pub fn expire_all(state: &EmulatorState) {
    let past = Instant::now() - Duration::from_millis(1);
    for g in state.downloads.lock().values_mut() {
        g.expires = past;
    }
}

/// `GET …/content` → 302 to the content host (304 on a matching `If-None-Match`).
pub fn redirect_to_content(state: &Arc<EmulatorState>, req: &GraphRequest, target: &Target) -> GraphResult<Response> {
    let mut d = state.drive.lock();
    let no = resolve(&mut d, target)?;
    let item = d.live(no)?;
    if req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|t| d.tag_matches(item, t))
    {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let url =
        issue_download_url(state, item).ok_or_else(|| GraphError::invalid("A folder has no content to download"))?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// What a `Range` header asks of a resource of `total` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    Full,
    /// Inclusive byte positions.
    Partial(u64, u64),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` (RFC 9110 §14); several ranges or junk are ignored (200).
pub fn parse_range(value: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(_) if total == 0 => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Partial(total - n.min(total), total - 1),
            Err(_) => RangeRequest::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeRequest::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeRequest::Full,
        }
    };
    if start >= total {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(start, end.min(total - 1))
}

/// A body streaming `[start, end)` of `blob` in chunks (large generated files are never held whole).
pub fn stream_body(blob: Blob, start: u64, end: u64) -> Body {
    let stream = futures::stream::unfold(start, move |at| {
        let blob = blob.clone();
        async move {
            if at >= end {
                return None;
            }
            let stop = (at + CHUNK).min(end);
            Some((blob.read_range(at, stop), stop))
        }
    });
    Body::from_stream(stream)
}

async fn download(State(state): State<Arc<EmulatorState>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let grant = state.downloads.lock().get(&token).cloned();
    let Some(grant) = grant else {
        return GraphError::not_found("download URL").into_response();
    };
    if grant.expires <= Instant::now() {
        return GraphError::new(
            StatusCode::FORBIDDEN,
            "accessDenied",
            "The pre-authenticated download URL has expired",
        )
        .into_response();
    }
    if !state.drive.lock().item(grant.no).is_some_and(|i| i.is_live()) {
        return GraphError::not_found("item").into_response();
    }
    let total = grant.blob.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range, total) {
        RangeRequest::Full => (StatusCode::OK, 0, total),
        RangeRequest::Partial(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeRequest::Unsatisfiable => {
            let mut e = GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                "The requested range is not satisfiable",
            );
            e.content_range = Some(format!("bytes */{total}"));
            return e.into_response();
        }
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, grant.mime.as_str())
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", start, end - 1, total));
    }
    resp.body(stream_body(grant.blob, start, end))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial(0, 9));
        assert_eq!(parse_range(Some("bytes=90-200"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=50-"), 100), Partial(50, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), Partial(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
    }
}
