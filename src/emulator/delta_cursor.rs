//! [`DeltaCursor`]: a delta round being paged through (see [`super::api_delta`]), kept in the emulator's state.

use super::drive::{DeltaEntry, ItemNo};
use std::sync::Arc;
use std::time::Instant;

/// A delta round being paged through: its entries are fixed when the round starts, rendered in their state at
/// the time each page is served.
#[derive(Clone, Debug)]
pub struct DeltaCursor {
    pub(crate) entries: Arc<Vec<DeltaEntry>>,
    pub(crate) upto: u64,
    pub(crate) epoch: u64,
    pub(crate) scope: ItemNo,
    pub(crate) created: Instant,
}
