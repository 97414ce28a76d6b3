//! Filesystem semantics in plain Rust: lookup, attributes, reads, writes, xattrs, errno mapping. No fuser types,
//! so it is testable without a mount. (Built by the browse issue.)
