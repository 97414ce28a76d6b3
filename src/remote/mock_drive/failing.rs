//! [`FailingDrive`]: wraps any [`DriveApi`] and fails chosen calls with chosen errors (the next N calls and/or a
//! seeded random fraction, optionally only some operations), for offline, throttling and retry tests; loses the
//! answers of chosen calls (the call reaches the drive, its answer does not come back), as a connection reset after
//! the service acted does; and fails, truncates or breaks off the bodies of chosen downloads
//! ([`FailingDrive::fail_downloads`]), as a flaky network does mid-transfer.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

use super::MockOp;
use crate::remote::drive_api::{
    DeltaPage, DeltaRequest, DownloadStream, DriveApi, DriveError, MoveRequest, UploadRequest,
};
use crate::remote::models::{Drive, DriveItem, Thumbnail, ThumbnailSet};

/// How [`FailingDrive`] fails.
struct FailurePlan {
    next: u32,
    next_error: Option<DriveError>,
    lose_next: u32,
    lose_error: Option<DriveError>,
    fraction: f64,
    fraction_error: Option<DriveError>,
    only: Option<HashSet<MockOp>>,
    rng: rand::rngs::StdRng,
    injected: u64,
    downloads: Option<(DownloadPick, DownloadFailure)>,
    download_count: u64,
}

/// What [`FailingDrive::fail_downloads`] does to a download it picks.
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadFailure {
    /// The request fails before any byte with this error.
    Error(DriveError),
    /// The body stops after this fraction (0.0–1.0) of the requested bytes, without an error (a short body).
    Truncate(f64),
    /// The body yields this fraction of the bytes, then this error.
    ErrorMidway(f64, DriveError),
    /// The body flips one bit of the content byte at this offset, when it covers it (a corrupting network).
    Corrupt { at: u64 },
}

/// Which downloads [`FailingDrive::fail_downloads`] picks, by their number (1-based, counted across all items).
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadPick {
    Numbers(Vec<u64>),
    /// Every download from this number on.
    From(u64),
    /// Each download with this probability (deterministic for a seed).
    Fraction {
        probability: f64,
        seed: u64,
    },
}

impl DownloadPick {
    fn picks(&self, number: u64) -> bool {
        match self {
            DownloadPick::Numbers(ns) => ns.contains(&number),
            DownloadPick::From(n) => number >= *n,
            DownloadPick::Fraction { probability, seed } => {
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

/// Wraps a drive and fails chosen calls with chosen errors: the next N calls, and/or a random fraction of
/// calls (seeded, so runs repeat), optionally only for some operations.
pub struct FailingDrive<D> {
    inner: D,
    plan: Mutex<FailurePlan>,
}

impl<D: DriveApi> FailingDrive<D> {
    pub fn new(inner: D) -> FailingDrive<D> {
        FailingDrive {
            inner,
            plan: Mutex::new(FailurePlan {
                next: 0,
                next_error: None,
                lose_next: 0,
                lose_error: None,
                fraction: 0.0,
                fraction_error: None,
                only: None,
                rng: rand::rngs::StdRng::seed_from_u64(7),
                injected: 0,
                downloads: None,
                download_count: 0,
            }),
        }
    }
    /// Applies `failure` to the downloads `pick` chooses (counted from the first download through this wrapper).
    pub fn fail_downloads(&self, pick: DownloadPick, failure: DownloadFailure) {
        self.plan.lock().downloads = Some((pick, failure));
    }
    /// [`FailingDrive::new`] with [`FailingDrive::fail_downloads`].
    pub fn with_download_failures(inner: D, pick: DownloadPick, failure: DownloadFailure) -> FailingDrive<D> {
        let drive = FailingDrive::new(inner);
        drive.fail_downloads(pick, failure);
        drive
    }
    pub fn inner(&self) -> &D {
        &self.inner
    }
    /// The next `n` calls (of the selected operations) fail with `error`.
    pub fn fail_next(&self, n: u32, error: DriveError) {
        let mut p = self.plan.lock();
        p.next = n;
        p.next_error = Some(error);
    }
    /// The next `n` calls (of the selected operations) reach the drive, which acts on them, but answer `error`.
    pub fn lose_next_answers(&self, n: u32, error: DriveError) {
        let mut p = self.plan.lock();
        p.lose_next = n;
        p.lose_error = Some(error);
    }
    /// Each call (of the selected operations) fails with `error` with probability `fraction`.
    pub fn fail_fraction(&self, fraction: f64, error: DriveError) {
        let mut p = self.plan.lock();
        p.fraction = fraction.clamp(0.0, 1.0);
        p.fraction_error = Some(error);
    }
    /// Restrict failures to these operations (`None`: all).
    pub fn only_ops(&self, ops: Option<&[MockOp]>) {
        self.plan.lock().only = ops.map(|o| o.iter().copied().collect());
    }
    /// Stop failing.
    pub fn heal(&self) {
        let mut p = self.plan.lock();
        p.next = 0;
        p.lose_next = 0;
        p.fraction = 0.0;
        p.downloads = None;
    }
    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.plan.lock().injected
    }

    fn check(&self, op: MockOp) -> Result<(), DriveError> {
        let mut p = self.plan.lock();
        if p.only.as_ref().is_some_and(|only| !only.contains(&op)) {
            return Ok(());
        }
        if p.next > 0 {
            if let Some(e) = p.next_error.clone() {
                p.next -= 1;
                p.injected += 1;
                return Err(e);
            }
        }
        if p.fraction > 0.0 {
            let roll: f64 = p.rng.random();
            if roll < p.fraction {
                if let Some(e) = p.fraction_error.clone() {
                    p.injected += 1;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// After `op` reached the drive: the error to answer instead of its result, when its answer is to be lost.
    fn lost(&self, op: MockOp) -> Option<DriveError> {
        let mut p = self.plan.lock();
        if p.only.as_ref().is_some_and(|only| !only.contains(&op)) || p.lose_next == 0 {
            return None;
        }
        p.lose_next -= 1;
        p.injected += 1;
        p.lose_error.clone()
    }

    /// `result` of `op`, unless its answer is to be lost.
    fn answer<T>(&self, op: MockOp, result: Result<T, DriveError>) -> Result<T, DriveError> {
        match self.lost(op) {
            Some(e) => Err(e),
            None => result,
        }
    }
}

#[async_trait]
impl<D: DriveApi> DriveApi for FailingDrive<D> {
    async fn drive(&self) -> Result<Drive, DriveError> {
        self.check(MockOp::Drive)?;
        self.inner.drive().await
    }
    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Item)?;
        self.inner.item(id).await
    }
    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::ItemByPath)?;
        self.inner.item_by_path(path).await
    }
    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::SpecialFolder)?;
        self.inner.special_folder(name).await
    }
    async fn special_folder_child(&self, special: &str, name: &str) -> Result<Option<DriveItem>, DriveError> {
        self.check(MockOp::SpecialFolder)?;
        self.inner.special_folder_child(special, name).await
    }
    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        self.check(MockOp::Children)?;
        self.inner.children(id).await
    }
    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        let op = match request {
            DeltaRequest::Full { .. } => MockOp::DeltaFull,
            DeltaRequest::Latest { .. } => MockOp::DeltaLatest,
            DeltaRequest::Link(_) => MockOp::DeltaPage,
        };
        self.check(op)?;
        self.inner.delta_page(request).await
    }
    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        self.check(MockOp::Thumbnails)?;
        self.inner.thumbnails(id).await
    }
    async fn thumbnail_custom(&self, id: &str, size: &str) -> Result<Option<Thumbnail>, DriveError> {
        self.check(MockOp::Thumbnails)?;
        self.inner.thumbnail_custom(id, size).await
    }
    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        self.check(MockOp::DownloadThumbnail)?;
        self.inner.download_thumbnail(url).await
    }
    async fn download(&self, id: &str, ctag: &str, start: u64, end: u64) -> Result<DownloadStream, DriveError> {
        self.check(MockOp::DownloadContent)?;
        let failure = {
            let mut p = self.plan.lock();
            p.download_count += 1;
            let number = p.download_count;
            let failure = match &p.downloads {
                Some((pick, failure)) if pick.picks(number) => Some(failure.clone()),
                _ => None,
            };
            p.injected += failure.is_some() as u64;
            failure
        };
        let (fraction, then) = match failure {
            None => return self.inner.download(id, ctag, start, end).await,
            Some(DownloadFailure::Error(e)) => return Err(e),
            Some(DownloadFailure::Corrupt { at }) => {
                let body = self.inner.download(id, ctag, start, end).await?;
                return Ok(corrupt(body, start, at));
            }
            Some(DownloadFailure::Truncate(f)) => (f, None),
            Some(DownloadFailure::ErrorMidway(f, e)) => (f, Some(e)),
        };
        let body = self.inner.download(id, ctag, start, end).await?;
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
    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::CreateFolder)?;
        self.answer(MockOp::CreateFolder, self.inner.create_folder(parent_id, name).await)
    }
    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
        self.check(MockOp::Delete)?;
        self.answer(MockOp::Delete, self.inner.delete(id, if_match).await)
    }
    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Move)?;
        self.answer(MockOp::Move, self.inner.move_item(id, request).await)
    }
    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Upload)?;
        self.answer(MockOp::Upload, self.inner.upload(request).await)
    }
    async fn upload_ahead(&self, request: UploadRequest) -> Result<u64, DriveError> {
        self.check(MockOp::Upload)?;
        self.inner.upload_ahead(request).await
    }
    async fn cancel_upload(&self, upload_url: &str) -> Result<(), DriveError> {
        self.inner.cancel_upload(upload_url).await
    }
    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Restore)?;
        self.answer(MockOp::Restore, self.inner.restore(id, parent_id, name).await)
    }
}

/// `body` (starting at content offset `start`) with one bit of the byte at offset `at` flipped.
fn corrupt(body: DownloadStream, start: u64, at: u64) -> DownloadStream {
    body.scan(start, move |pos, chunk| {
        let out = chunk.map(|bytes| {
            let chunk_start = *pos;
            *pos += bytes.len() as u64;
            if (chunk_start..*pos).contains(&at) {
                let mut v = bytes.to_vec();
                v[(at - chunk_start) as usize] ^= 0x10;
                Bytes::from(v)
            } else {
                bytes
            }
        });
        futures::future::ready(Some(out))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::mock_drive::MockDrive;

    #[tokio::test]
    async fn fails_the_next_calls_then_a_fraction_of_selected_operations() {
        let drive = FailingDrive::new(MockDrive::new());
        drive.fail_next(2, DriveError::Offline("down".into()));
        assert!(drive.drive().await.is_err());
        assert!(drive.item("root").await.is_err());
        assert!(drive.drive().await.is_ok());
        assert_eq!(drive.injected(), 2);

        drive.only_ops(Some(&[MockOp::Item]));
        drive.fail_fraction(0.5, DriveError::Throttled { until: None });
        let mut failed = 0;
        for _ in 0..200 {
            assert!(drive.drive().await.is_ok(), "not a selected operation");
            if drive.item("root").await.is_err() {
                failed += 1;
            }
        }
        assert!((60..=140).contains(&failed), "{failed} of 200");
        drive.heal();
        assert!(drive.item("root").await.is_ok());

        drive.only_ops(None);
        drive.lose_next_answers(1, DriveError::Offline("reset".into()));
        let root = drive.inner().root_id();
        assert!(drive.create_folder(&root, "made").await.is_err(), "the answer is lost");
        assert!(drive.inner().id_by_path("/made").is_some(), "but the drive acted");
        assert!(drive.create_folder(&root, "made too").await.is_ok());
        assert_eq!(
            drive.inner().count(MockOp::Item),
            200 - failed + 1,
            "injected failures never reach the drive"
        );
    }

    async fn collect(s: DownloadStream) -> (Vec<u8>, Option<DriveError>) {
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
    async fn downloads_are_pinned_and_chosen_ones_cut_or_failed() {
        let m = std::sync::Arc::new(MockDrive::new());
        m.set_download_chunk_size(7);
        let data: Vec<u8> = (0..100u8).collect();
        m.insert_file("A", "c1", data.clone());
        let (got, err) = collect(m.download("A", "c1", 10, 50).await.unwrap()).await;
        assert_eq!((got.as_slice(), err), (&data[10..50], None));
        let (got, _) = collect(m.download("A", "c1", 90, 200).await.unwrap()).await;
        assert_eq!(got, &data[90..]);
        assert!(matches!(
            m.download("A", "c0", 0, 1).await.err(),
            Some(DriveError::PreconditionFailed(_))
        ));
        assert!(matches!(
            m.download("A", "c1", 100, 101).await.err(),
            Some(DriveError::Other { status: Some(416), .. })
        ));
        assert_eq!(m.count(MockOp::DownloadContent), 4);
        assert_eq!(m.bytes_served(), 50);
        assert_eq!((m.downloads()[1].start, m.downloads()[1].end), (90, 200));
        m.set_offline(true);
        assert!(matches!(
            m.download("A", "c1", 0, 1).await.err(),
            Some(DriveError::Offline(_))
        ));
        m.set_offline(false);

        let f = FailingDrive::with_download_failures(
            m.clone(),
            DownloadPick::Numbers(vec![2]),
            DownloadFailure::Truncate(0.5),
        );
        assert_eq!(collect(f.download("A", "c1", 0, 100).await.unwrap()).await.0.len(), 100);
        assert_eq!(collect(f.download("A", "c1", 0, 100).await.unwrap()).await.0.len(), 50);
        assert_eq!(f.injected(), 1);
        let offline = DriveError::Offline("x".into());
        f.fail_downloads(
            DownloadPick::From(3),
            DownloadFailure::ErrorMidway(0.3, offline.clone()),
        );
        let (got, err) = collect(f.download("A", "c1", 0, 100).await.unwrap()).await;
        assert_eq!((got.len(), err), (30, Some(offline)));
        f.fail_downloads(
            DownloadPick::Fraction {
                probability: 0.5,
                seed: 7,
            },
            DownloadFailure::Error(DriveError::Other {
                status: None,
                message: "boom".into(),
            }),
        );
        let mut failed = 0;
        for _ in 0..400 {
            failed += f.download("A", "c1", 0, 10).await.is_err() as u32;
        }
        assert!((120..280).contains(&failed), "about half fail, got {failed}");
        f.fail_downloads(DownloadPick::From(1), DownloadFailure::Corrupt { at: 12 });
        let (got, _) = collect(f.download("A", "c1", 10, 20).await.unwrap()).await;
        assert_eq!(
            (got[2], &got[..2], &got[3..]),
            (12 ^ 0x10, &data[10..12], &data[13..20])
        );
    }
}
