//! [`UploadSession`]: one upload session's state (see [`super::api_upload`]), kept in the emulator's state.

use super::blob::{Blob, SpoolWriter};
use super::drive::{Conflict, ItemNo, ItemPatch};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub enum SessionTarget {
    /// Replace the content of this item.
    Existing(ItemNo),
    /// A file named `name` in `parent`, per the session's conflict behaviour.
    New { parent: ItemNo, name: String },
}

/// One upload session.
#[derive(Debug)]
pub struct UploadSession {
    pub target: SessionTarget,
    pub conflict: Conflict,
    pub file_size: Option<u64>,
    pub total: Option<u64>,
    pub patch: ItemPatch,
    pub defer_commit: bool,
    pub writer: SpoolWriter,
    /// The whole file once its last byte arrived (kept until a commit succeeds or the session expires).
    pub received: Option<(Blob, String)>,
    pub expires: DateTime<Utc>,
}
