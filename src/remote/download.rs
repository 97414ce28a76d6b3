//! Downloading originals: the pre-authenticated URL (`GET /items/{id}/content` → 302 `Location`, or the item's
//! `@microsoft.graph.downloadUrl`), ranged reads against it with **no** Authorization header (206 checked against
//! `Content-Range`, a 200 that ignored the range is skipped forward, 416 → `RangeNotSatisfiable`), one fresh URL
//! when the old one went stale, and a whole-item download verified against the quickXorHash.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::error::GraphError;
use super::graph::{redirect_location, GraphClient};
use super::http::{describe_reqwest_error, redact, ApiRequest, UrlKind};
use super::models::DriveItem;
use super::paths::item_resource;
use super::quickxor::QuickXorHash;

/// When a download host answers a ranged request with the whole file (200), at most this many leading bytes
/// are read and discarded to reach the wanted offset; further in, the read fails instead.
pub const MAX_SKIP_FOR_IGNORED_RANGE: u64 = 64 * 1024 * 1024;

/// A stream of body bytes; errors are typed.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, GraphError>> + Send>>;

/// Where an item's bytes can be fetched. Usually a short-lived pre-authenticated URL (no token sent; never
/// logged); when the service streams `/content` itself, that Graph URL (bearer token sent).
#[derive(Clone, PartialEq, Eq)]
pub struct DownloadUrl {
    url: String,
    kind: UrlKind,
}

impl DownloadUrl {
    pub fn pre_authenticated(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            kind: UrlKind::PreAuthenticated,
        }
    }
    /// The `@microsoft.graph.downloadUrl` of item metadata, if present.
    pub fn from_item(item: &DriveItem) -> Option<Self> {
        item.download_url.as_deref().map(Self::pre_authenticated)
    }
    /// The URL itself: a secret, never log it.
    pub fn as_secret_str(&self) -> &str {
        &self.url
    }
    pub fn kind(&self) -> UrlKind {
        self.kind
    }
}

impl fmt::Debug for DownloadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DownloadUrl({})", redact(&self.url, self.kind))
    }
}

impl GraphClient {
    /// A fresh download location for `item_id`: the 302 `Location` of `/content`; if the service streamed the
    /// content instead (200), the item's `@microsoft.graph.downloadUrl`, else `/content` itself.
    pub async fn download_url(&self, item_id: &str) -> Result<DownloadUrl, GraphError> {
        let content_path = format!("{}/content", item_resource(item_id));
        let req = self.graph_request(Method::GET, &content_path).streaming();
        let resp = self.http.send(&req).await?;
        if resp.status().is_redirection() {
            let loc = redirect_location(&req.url, resp.status(), resp.headers())
                .ok_or_else(|| GraphError::Decode("redirect from /content without a usable Location".into()))?;
            return Ok(DownloadUrl::pre_authenticated(loc));
        }
        drop(resp); // 200: the body is the whole file; we only wanted a location
        let item = self.item(item_id).await?;
        Ok(DownloadUrl::from_item(&item).unwrap_or(DownloadUrl {
            url: self.url(&content_path),
            kind: UrlKind::Graph,
        }))
    }

    /// `len` bytes from `start` of the file at `url` (fewer only at end of file). Sends `Range: bytes=a-b` and
    /// no Authorization header to pre-authenticated URLs. A body that breaks off mid-way is resumed from the
    /// next missing byte (bounded by the retry policy's attempts) before an error is yielded.
    pub async fn get_range(&self, url: &DownloadUrl, start: u64, len: u64) -> Result<ByteStream, GraphError> {
        if len == 0 {
            return Err(GraphError::Invalid("empty range requested".into()));
        }
        let inner = self.open_range(url, start, len).await?;
        let state = Resuming {
            client: self.clone(),
            url: url.clone(),
            pos: start,
            end: start + len - 1,
            inner,
            resumes: 0,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                match st.inner.next().await {
                    Some(Ok(chunk)) => {
                        st.pos += chunk.len() as u64;
                        return Some((Ok(chunk), st));
                    }
                    None => return None,
                    Some(Err(e @ (GraphError::Network(_) | GraphError::Truncated { .. })))
                        if st.resumes + 1 < st.client.http.policy().max_attempts && st.pos <= st.end =>
                    {
                        st.resumes += 1;
                        tracing::warn!(url = %redact(&st.url.url, st.url.kind), at = st.pos, error = %e,
                            "download broke off; resuming");
                        match st.client.open_range(&st.url, st.pos, st.end - st.pos + 1).await {
                            Ok(s) => st.inner = s,
                            Err(e) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                        }
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })))
    }

    /// One ranged request: checks the status and `Content-Range`, and limits the body to the range.
    async fn open_range(&self, url: &DownloadUrl, start: u64, len: u64) -> Result<ByteStream, GraphError> {
        let end = start + len - 1;
        let req = ApiRequest::new(Method::GET, url.url.clone(), url.kind)
            .streaming()
            .header(RANGE, &format!("bytes={start}-{end}"))?;
        let resp = self.http.send(&req).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let header = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| GraphError::Decode("206 without Content-Range".into()))?;
                let (a, b, _total) = parse_content_range(header)
                    .ok_or_else(|| GraphError::Decode(format!("bad Content-Range {header:?}")))?;
                if a != start || b < a || b > end {
                    return Err(GraphError::Decode(format!(
                        "asked for bytes {start}-{end}, got Content-Range {header:?}"
                    )));
                }
                Ok(limited_stream(resp, 0, b - a + 1, true))
            }
            StatusCode::OK => {
                let total = content_length(&resp);
                if let Some(total) = total {
                    if start >= total {
                        return Err(GraphError::RangeNotSatisfiable {
                            total: Some(total),
                            codes: Default::default(),
                        });
                    }
                }
                if start > MAX_SKIP_FOR_IGNORED_RANGE {
                    return Err(GraphError::Decode(format!(
                        "download host ignored Range; refusing to read {start} bytes to reach the wanted offset"
                    )));
                }
                if start > 0 {
                    tracing::debug!(url = %redact(&url.url, url.kind), skip = start,
                        "download host ignored Range; skipping to the wanted offset");
                }
                let want = total.map_or(len, |t| len.min(t - start));
                Ok(limited_stream(resp, start, want, total.is_some()))
            }
            s => Err(GraphError::Decode(format!(
                "ranged download: unexpected status {}",
                s.as_u16()
            ))),
        }
    }

    /// Like [`get_range`](Self::get_range) for an item, keeping its download URL in `slot`: fetched when empty,
    /// and fetched once more when the one used has gone stale (401/403/404/410 from the download host).
    pub async fn item_range(
        &self,
        item_id: &str,
        slot: &mut Option<DownloadUrl>,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, GraphError> {
        let url = match slot.take() {
            Some(u) => u,
            None => self.download_url(item_id).await?,
        };
        match self.get_range(&url, start, len).await {
            Ok(s) => {
                *slot = Some(url);
                Ok(s)
            }
            // Even a URL fetched just now: retries and throttle pauses can outlast it.
            Err(e) if e.is_stale_url() => {
                tracing::debug!(
                    item = item_id,
                    status = e.status(),
                    "download URL went stale; fetching a fresh one"
                );
                let fresh = self.download_url(item_id).await?;
                let s = self.get_range(&fresh, start, len).await?;
                *slot = Some(fresh);
                Ok(s)
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads the whole item into `sink`, verifying size and quickXorHash when the item has them. A wrong
    /// hash is `HashMismatch`, a short body `Truncated`: never silently wrong. Returns the byte count.
    pub async fn download_item<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        item: &DriveItem,
        sink: &mut W,
    ) -> Result<u64, GraphError> {
        let listed = DownloadUrl::from_item(item);
        let had_listed = listed.is_some();
        let url = match listed {
            Some(u) => u,
            None => self.download_url(&item.id).await?,
        };
        let resp = match self.get_whole(&url).await {
            Err(e) if had_listed && e.is_stale_url() => self.get_whole(&self.download_url(&item.id).await?).await?,
            other => other?,
        };
        let announced = content_length(&resp);
        let mut hasher = QuickXorHash::new();
        let mut received = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| GraphError::Network(describe_reqwest_error(&e)))?;
            hasher.update(&chunk);
            received += chunk.len() as u64;
            sink.write_all(&chunk)
                .await
                .map_err(|e| GraphError::Invalid(format!("writing the download: {e}")))?;
        }
        sink.flush()
            .await
            .map_err(|e| GraphError::Invalid(format!("writing the download: {e}")))?;
        if let Some(expected) = announced {
            if received < expected {
                return Err(GraphError::Truncated { expected, received });
            }
        }
        match item.quick_xor_hash() {
            Some(expected) => {
                let actual = hasher.finish_base64();
                if actual != expected {
                    return Err(GraphError::HashMismatch {
                        expected: expected.to_string(),
                        actual,
                    });
                }
            }
            None => {
                if let Some(size) = item.size.filter(|s| *s >= 0).map(|s| s as u64) {
                    if received < size {
                        return Err(GraphError::Truncated {
                            expected: size,
                            received,
                        });
                    }
                }
            }
        }
        Ok(received)
    }

    async fn get_whole(&self, url: &DownloadUrl) -> Result<Response, GraphError> {
        let resp = self
            .http
            .send(&ApiRequest::new(Method::GET, url.url.clone(), url.kind).streaming())
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(GraphError::Decode(format!(
                "download: unexpected status {}",
                resp.status().as_u16()
            )));
        }
        Ok(resp)
    }
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `bytes 0-99/1234` (or `/*`) → (0, 99, Some(1234)).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

struct Resuming {
    client: GraphClient,
    url: DownloadUrl,
    /// Next absolute offset wanted.
    pos: u64,
    /// Last absolute offset wanted (inclusive).
    end: u64,
    inner: ByteStream,
    resumes: u32,
    done: bool,
}

struct Limited {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    skip: u64,
    remaining: u64,
    wanted: u64,
    must_fill: bool,
    done: bool,
}

/// Skips `skip` bytes of the body, then yields at most `wanted`; if `must_fill`, a body that ends early is an
/// error (`Truncated`), as is one that ends before reaching `skip` (`RangeNotSatisfiable`).
fn limited_stream(resp: Response, skip: u64, wanted: u64, must_fill: bool) -> ByteStream {
    let state = Limited {
        body: Box::pin(resp.bytes_stream()),
        skip,
        remaining: wanted,
        wanted,
        must_fill,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if st.done || st.remaining == 0 {
            return None;
        }
        loop {
            match st.body.next().await {
                Some(Ok(mut chunk)) => {
                    if st.skip > 0 {
                        let n = st.skip.min(chunk.len() as u64) as usize;
                        chunk = chunk.slice(n..);
                        st.skip -= n as u64;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if chunk.len() as u64 > st.remaining {
                        chunk.truncate(st.remaining as usize);
                    }
                    st.remaining -= chunk.len() as u64;
                    return Some((Ok(chunk), st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(GraphError::Network(describe_reqwest_error(&e))), st));
                }
                None => {
                    st.done = true;
                    if st.skip > 0 {
                        return Some((
                            Err(GraphError::RangeNotSatisfiable {
                                total: None,
                                codes: Default::default(),
                            }),
                            st,
                        ));
                    }
                    if st.must_fill && st.remaining > 0 {
                        let err = GraphError::Truncated {
                            expected: st.wanted,
                            received: st.wanted - st.remaining,
                        };
                        return Some((Err(err), st));
                    }
                    return None;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-99/1234"), Some((0, 99, Some(1234))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes */1234"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let u = DownloadUrl::pre_authenticated("https://dl.example/y4mSECRET?sig=SECRET");
        let shown = format!("{u:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
