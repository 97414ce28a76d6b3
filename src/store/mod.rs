//! The metadata store (SQLite, WAL): items keyed by OneDrive id with stable inode numbers, the delta link, and
//! the durable outbox. Knows rows, nothing of HTTP or FUSE. (Built by the browse issue.)
