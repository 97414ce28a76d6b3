//! [`GraphRangeSource`]: the content cache's [`RangeSource`] over the real [`GraphClient`]. Reads are pinned to
//! the cTag seen at open: the item's metadata (one `GET /items/{id}`, which also carries the pre-authenticated
//! `@microsoft.graph.downloadUrl`) is checked before a download URL is used, and the URL is kept per
//! (item, cTag) for a short while so a run of reads costs one metadata call.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;

use super::range_source::{ByteStream, RangeSource, SourceError};
use crate::remote::download::DownloadUrl;
use crate::remote::error::GraphError;
use crate::remote::graph::GraphClient;

/// How long a download URL is reused for the same (item, cTag).
const URL_TTL: Duration = Duration::from_secs(120);
/// At most this many URLs are remembered.
const URL_CAP: usize = 1024;

/// [`RangeSource`] over Microsoft Graph.
pub struct GraphRangeSource {
    client: GraphClient,
    /// item id → (cTag the URL was checked against, URL, when).
    urls: Mutex<HashMap<String, (String, DownloadUrl, Instant)>>,
}

impl GraphRangeSource {
    pub fn new(client: GraphClient) -> Self {
        Self {
            client,
            urls: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, item_id: &str, ctag: &str) -> Option<DownloadUrl> {
        let urls = self.urls.lock();
        match urls.get(item_id) {
            Some((c, url, at)) if c == ctag && at.elapsed() < URL_TTL => Some(url.clone()),
            _ => None,
        }
    }

    fn remember(&self, item_id: &str, ctag: &str, url: &DownloadUrl) {
        let mut urls = self.urls.lock();
        if urls.len() >= URL_CAP {
            urls.retain(|_, (_, _, at)| at.elapsed() < URL_TTL);
            if urls.len() >= URL_CAP {
                urls.clear();
            }
        }
        urls.insert(item_id.to_string(), (ctag.to_string(), url.clone(), Instant::now()));
    }

    fn forget(&self, item_id: &str) {
        self.urls.lock().remove(item_id);
    }

    /// A download URL for the content version `ctag`, checked against the item's current metadata.
    async fn fresh_url(&self, item_id: &str, ctag: &str) -> Result<DownloadUrl, SourceError> {
        let item = self.client.item(item_id).await.map_err(source_error)?;
        if item.c_tag.as_deref() != Some(ctag) {
            self.forget(item_id);
            return Err(SourceError::VersionChanged);
        }
        let url = match DownloadUrl::from_item(&item) {
            Some(url) => url,
            None => self.client.download_url(item_id).await.map_err(source_error)?,
        };
        self.remember(item_id, ctag, &url);
        Ok(url)
    }
}

/// Graph failures in the content cache's categories. Messages carry no URLs or tokens.
pub fn source_error(e: GraphError) -> SourceError {
    match &e {
        GraphError::Network(_) | GraphError::Throttled { .. } | GraphError::Truncated { .. } => {
            SourceError::Offline(e.to_string())
        }
        GraphError::Auth(crate::remote::auth::AuthError::Network(_)) => SourceError::Offline(e.to_string()),
        _ if e.is_retryable() => SourceError::Offline(e.to_string()),
        _ => SourceError::Other(e.to_string()),
    }
}

#[async_trait]
impl RangeSource for GraphRangeSource {
    async fn fetch(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<ByteStream, SourceError> {
        if end <= start {
            return Ok(futures::stream::empty().boxed());
        }
        let len = end - start;
        let (url, was_cached) = match self.cached(item_id, ctag) {
            Some(url) => (url, true),
            None => (self.fresh_url(item_id, ctag).await?, false),
        };
        let stream = match self.client.get_range(&url, start, len).await {
            Ok(s) => s,
            Err(e) if was_cached && e.is_stale_url() => {
                tracing::debug!(item = item_id, "download URL went stale; re-checking the item");
                self.forget(item_id);
                let url = self.fresh_url(item_id, ctag).await?;
                self.client
                    .get_range(&url, start, len)
                    .await
                    .map_err(|e| range_error(e, start, end))?
            }
            Err(e) => return Err(range_error(e, start, end)),
        };
        Ok(stream.map(move |r| r.map_err(|e| range_error(e, start, end))).boxed())
    }
}

fn range_error(e: GraphError, start: u64, end: u64) -> SourceError {
    match e {
        GraphError::RangeNotSatisfiable { .. } => SourceError::RangeNotSatisfiable { start, end },
        other => source_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::auth::StaticToken;
    use crate::remote::{Endpoints, RetryPolicy};
    use std::sync::Arc;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    async fn collect(mut s: ByteStream) -> Result<Vec<u8>, SourceError> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn reads_are_pinned_to_the_ctag_and_reuse_the_url() {
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
        let source = GraphRangeSource::new(client);
        assert_eq!(
            collect(source.fetch("A!1", "c2", 0, 10).await.unwrap()).await.unwrap(),
            body[0..10]
        );
        assert_eq!(
            collect(source.fetch("A!1", "c2", 90, 200).await.unwrap())
                .await
                .unwrap(),
            body[90..100]
        );
        assert_eq!(
            source.fetch("A!1", "c2", 100, 110).await.err(),
            Some(SourceError::RangeNotSatisfiable { start: 100, end: 110 })
        );
        // Another version than the current one: refused after one metadata call.
        assert_eq!(
            source.fetch("A!1", "c1", 0, 10).await.err(),
            Some(SourceError::VersionChanged)
        );
    }
}
