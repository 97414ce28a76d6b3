//! [`FailingDrive`]: wraps any [`DriveApi`] and fails chosen calls with chosen errors (the next N calls and/or a
//! seeded random fraction, optionally only some operations), for offline, throttling and retry tests; and loses
//! the answers of chosen calls (the call reaches the drive, its answer does not come back), as a connection reset
//! after the service acted does.

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;

use super::MockOp;
use crate::remote::drive_api::{DeltaPage, DeltaRequest, DriveApi, DriveError, MoveRequest, UploadRequest};
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
            }),
        }
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
    async fn download_range(&self, id: &str, offset: u64, len: u64) -> Result<Bytes, DriveError> {
        self.check(MockOp::DownloadContent)?;
        self.inner.download_range(id, offset, len).await
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
    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Restore)?;
        self.answer(MockOp::Restore, self.inner.restore(id, parent_id, name).await)
    }
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
}
