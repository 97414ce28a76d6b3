//! The galleryfs fuzz targets' shared code: [`harness`] (also compiled into `tests/hostile_input.rs`), and the
//! `local_names` target once the local-name validator is in the tree (feature `local-names`).

pub mod harness;
#[cfg(feature = "local-names")]
pub mod local_names;
