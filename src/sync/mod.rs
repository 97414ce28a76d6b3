//! The sync engine: applies OneDrive delta rounds to the store and replays the local outbox to OneDrive.
//! (Built by the browse and edits issues.)
