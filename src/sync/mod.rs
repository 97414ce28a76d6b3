//! The sync engine: applies OneDrive delta rounds to the store and replays the local outbox to OneDrive.
//! (Built by the browse and edits issues.)
//!
//! - [`delta_apply`]: one round of delta items (or a full enumeration) → store changes, in one transaction.

pub mod delta_apply;
