//! The sync engine: applies OneDrive delta rounds to the store and replays the local outbox to OneDrive.
//! (Built by the browse and edits issues.)
//!
//! - [`delta_apply`]: one round of delta items (or a full enumeration) → store changes, in one transaction.
//! - [`outbox_replay`]: the journalled local changes → OneDrive, in order, with conflict copies and guards.

pub mod delta_apply;
pub mod outbox_replay;
