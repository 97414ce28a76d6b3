//! Where original bytes come from: the [`RangeSource`] trait (ranged reads of one content version of an item),
//! its errors, and two test doubles — [`MockSource`] (in-memory items, request log, optional latency) and
//! [`FailingSource`] (wraps another source and fails or truncates chosen requests).
//!
//! The Graph client implements [`RangeSource`] with ranged GETs on the item's download URL, pinned to the cTag
//! seen when the file was opened. Implementations must never put a pre-authenticated URL or its query string in
//! a [`SourceError`] message (those messages are logged).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// A body of bytes arriving in chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, SourceError>>;

/// Why a ranged read failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    /// No connection, timeout, 5xx, throttling: worth retrying later.
    #[error("OneDrive is unreachable: {0}")]
    Offline(String),
    /// The cTag the read was pinned to is no longer the item's current content version.
    #[error("the content changed on OneDrive since the file was opened")]
    VersionChanged,
    /// The range lies beyond the content (HTTP 416).
    #[error("bytes {start}..{end} are beyond the end of the content")]
    RangeNotSatisfiable { start: u64, end: u64 },
    /// Anything else (item gone, access denied, malformed answer).
    #[error("download failed: {0}")]
    Other(String),
}

impl SourceError {
    /// Whether repeating the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Offline(_))
    }
}

/// Ranged reads of item content.
#[async_trait]
pub trait RangeSource: Send + Sync {
    /// Bytes `[start, end)` of content version `ctag` of item `item_id`. The stream must yield exactly those bytes
    /// in order; it may end early (a short body), which the caller treats as a retryable failure. `end` may lie
    /// past the end of the content; the source then stops at the end.
    async fn fetch(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<ByteStream, SourceError>;
}

#[async_trait]
impl<T: RangeSource + ?Sized> RangeSource for Arc<T> {
    async fn fetch(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<ByteStream, SourceError> {
        self.as_ref().fetch(item_id, ctag, start, end).await
    }
}

/// One request seen by a [`MockSource`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub item_id: String,
    pub start: u64,
    pub end: u64,
}

impl RequestRecord {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// An in-memory [`RangeSource`] for tests: items keyed by id, each with one current cTag.
pub struct MockSource {
    items: Mutex<HashMap<String, (String, Bytes)>>,
    log: Mutex<Vec<RequestRecord>>,
    bytes_served: Arc<AtomicU64>,
    latency_micros: AtomicU64,
    offline: AtomicBool,
    chunk_size: usize,
}

impl Default for MockSource {
    fn default() -> Self {
        Self::new()
    }
}

impl MockSource {
    pub fn new() -> Self {
        Self::with_chunk_size(64 * 1024)
    }

    /// A source whose streams yield chunks of at most `chunk_size` bytes.
    pub fn with_chunk_size(chunk_size: usize) -> Self {
        MockSource {
            items: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            bytes_served: Arc::new(AtomicU64::new(0)),
            latency_micros: AtomicU64::new(0),
            offline: AtomicBool::new(false),
            chunk_size: chunk_size.max(1),
        }
    }

    /// Adds or replaces an item (a replacement with another cTag makes reads pinned to the old one fail).
    pub fn insert(&self, item_id: &str, ctag: &str, content: impl Into<Bytes>) {
        self.items
            .lock()
            .insert(item_id.to_string(), (ctag.to_string(), content.into()));
    }

    /// Delay before each response starts.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_micros.store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// While offline every request fails with [`SourceError::Offline`].
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
    }

    /// Every request so far, in the order they were made.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.lock().clone()
    }

    pub fn request_count(&self) -> usize {
        self.log.lock().len()
    }

    /// Forgets the request log and byte counter.
    pub fn reset_counters(&self) {
        self.log.lock().clear();
        self.bytes_served.store(0, Ordering::Relaxed);
    }

    /// Bytes handed out by streams so far (counted as they are consumed).
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl RangeSource for MockSource {
    async fn fetch(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<ByteStream, SourceError> {
        self.log.lock().push(RequestRecord {
            item_id: item_id.to_string(),
            start,
            end,
        });
        let latency = self.latency_micros.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        if self.offline.load(Ordering::Relaxed) {
            return Err(SourceError::Offline("mock source is offline".into()));
        }
        let (current, content) = self
            .items
            .lock()
            .get(item_id)
            .cloned()
            .ok_or_else(|| SourceError::Other(format!("itemNotFound: {item_id}")))?;
        if current != ctag {
            return Err(SourceError::VersionChanged);
        }
        let len = content.len() as u64;
        if start >= len || start >= end {
            return Err(SourceError::RangeNotSatisfiable { start, end });
        }
        let body = content.slice(start as usize..end.min(len) as usize);
        let chunk = self.chunk_size;
        let served = self.bytes_served.clone();
        let chunks = (0..body.len().div_ceil(chunk)).map(move |i| {
            let piece = body.slice(i * chunk..((i + 1) * chunk).min(body.len()));
            served.fetch_add(piece.len() as u64, Ordering::Relaxed);
            Ok(piece)
        });
        Ok(stream::iter(chunks).boxed())
    }
}

/// What a [`FailingSource`] does to a request it picks.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The request fails before any byte with this error.
    Error(SourceError),
    /// The body stops after this fraction (0.0–1.0) of the requested bytes, without an error (a short body).
    Truncate(f64),
    /// The body yields this fraction of the bytes, then this error.
    ErrorMidway(f64, SourceError),
}

/// Which requests a [`FailingSource`] picks.
#[derive(Clone, Debug)]
enum Pick {
    /// Request numbers (1-based, counted across all items).
    Numbers(Vec<u64>),
    /// Every request from this number on.
    From(u64),
    /// Each request with this probability (deterministic for a seed).
    Fraction { probability: f64, seed: u64 },
}

/// Wraps a source and fails or truncates chosen requests (tests).
pub struct FailingSource<S> {
    inner: S,
    pick: Pick,
    failure: Failure,
    count: AtomicU64,
    injected: AtomicU64,
}

impl<S: RangeSource> FailingSource<S> {
    /// Applies `failure` to the `n`th request (1-based).
    pub fn nth(inner: S, n: u64, failure: Failure) -> Self {
        Self::new(inner, Pick::Numbers(vec![n]), failure)
    }

    /// Applies `failure` to each listed request number (1-based).
    pub fn requests(inner: S, numbers: &[u64], failure: Failure) -> Self {
        Self::new(inner, Pick::Numbers(numbers.to_vec()), failure)
    }

    /// Applies `failure` to every request from the `n`th on.
    pub fn from_nth(inner: S, n: u64, failure: Failure) -> Self {
        Self::new(inner, Pick::From(n), failure)
    }

    /// Applies `failure` to a random `probability` of the requests (reproducible for a given `seed`).
    pub fn fraction(inner: S, probability: f64, seed: u64, failure: Failure) -> Self {
        Self::new(inner, Pick::Fraction { probability, seed }, failure)
    }

    fn new(inner: S, pick: Pick, failure: Failure) -> Self {
        FailingSource {
            inner,
            pick,
            failure,
            count: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// How many requests had a failure injected.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn picks(&self, number: u64) -> bool {
        match &self.pick {
            Pick::Numbers(ns) => ns.contains(&number),
            Pick::From(n) => number >= *n,
            Pick::Fraction { probability, seed } => {
                // splitmix64 of (seed, number) → uniform in [0, 1).
                let mut z = seed.wrapping_add(number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 11) as f64 / (1u64 << 53) as f64) < *probability
            }
        }
    }
}

#[async_trait]
impl<S: RangeSource> RangeSource for FailingSource<S> {
    async fn fetch(&self, item_id: &str, ctag: &str, start: u64, end: u64) -> Result<ByteStream, SourceError> {
        let number = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.picks(number) {
            return self.inner.fetch(item_id, ctag, start, end).await;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let (fraction, then) = match &self.failure {
            Failure::Error(e) => return Err(e.clone()),
            Failure::Truncate(f) => (*f, None),
            Failure::ErrorMidway(f, e) => (*f, Some(e.clone())),
        };
        let body = self.inner.fetch(item_id, ctag, start, end).await?;
        let keep = ((end - start) as f64 * fraction.clamp(0.0, 1.0)) as u64;
        let cut = body
            .scan(0u64, move |taken, chunk| {
                let out = match chunk {
                    Ok(bytes) if *taken < keep => {
                        let n = (bytes.len() as u64).min(keep - *taken);
                        *taken += n;
                        Some(Ok(bytes.slice(..n as usize)))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                };
                futures::future::ready(out)
            })
            .chain(stream::iter(then.map(Err)));
        Ok(cut.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: ByteStream) -> (Vec<u8>, Option<SourceError>) {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            match c {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn mock_serves_ranges_and_checks_the_ctag() {
        let m = MockSource::with_chunk_size(7);
        let data: Vec<u8> = (0..100u8).collect();
        m.insert("A", "c1", data.clone());
        let (got, err) = collect(m.fetch("A", "c1", 10, 50).await.unwrap()).await;
        assert_eq!((got.as_slice(), err), (&data[10..50], None));
        let (got, _) = collect(m.fetch("A", "c1", 90, 200).await.unwrap()).await;
        assert_eq!(got, &data[90..]);
        assert_eq!(m.fetch("A", "c0", 0, 1).await.err(), Some(SourceError::VersionChanged));
        assert!(matches!(
            m.fetch("A", "c1", 100, 101).await.err(),
            Some(SourceError::RangeNotSatisfiable { .. })
        ));
        assert_eq!(m.request_count(), 4);
        assert_eq!(m.bytes_served(), 50);
        assert_eq!(
            m.requests()[1],
            RequestRecord {
                item_id: "A".into(),
                start: 90,
                end: 200
            }
        );
    }

    #[tokio::test]
    async fn failing_source_truncates_and_fails_the_chosen_requests() {
        let m = MockSource::with_chunk_size(16);
        m.insert("A", "c1", vec![1u8; 100]);
        let f = FailingSource::requests(m, &[2], Failure::Truncate(0.5));
        assert_eq!(collect(f.fetch("A", "c1", 0, 100).await.unwrap()).await.0.len(), 100);
        assert_eq!(collect(f.fetch("A", "c1", 0, 100).await.unwrap()).await.0.len(), 50);
        assert_eq!(f.injected(), 1);
        let m = MockSource::new();
        m.insert("A", "c1", vec![1u8; 100]);
        let offline = SourceError::Offline("x".into());
        let f = FailingSource::nth(m, 1, Failure::ErrorMidway(0.3, offline.clone()));
        let (got, err) = collect(f.fetch("A", "c1", 0, 100).await.unwrap()).await;
        assert_eq!((got.len(), err), (30, Some(offline)));
        let m = MockSource::new();
        m.insert("A", "c1", vec![1u8; 10]);
        let f = FailingSource::fraction(m, 0.5, 7, Failure::Error(SourceError::Other("boom".into())));
        let mut failed = 0;
        for _ in 0..400 {
            failed += f.fetch("A", "c1", 0, 10).await.is_err() as u32;
        }
        assert!((120..280).contains(&failed), "about half fail, got {failed}");
    }
}
