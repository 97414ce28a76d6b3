//! [`ThumbCache`]: rendered thumbnails (see [`super::api_thumbnails`]), kept in the emulator's state.

use super::drive::ItemNo;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;

/// One rendered thumbnail.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
}

/// Rendered thumbnails per (item, cTag version, size key); `None` remembers "cannot be made".
#[derive(Debug, Default)]
pub struct ThumbCache {
    pub(crate) map: Mutex<HashMap<(ItemNo, u64, String), Option<Rendered>>>,
}
