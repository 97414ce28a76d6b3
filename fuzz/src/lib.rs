//! The galleryfs fuzz targets' shared code: [`harness`] (also compiled into `tests/hostile_input.rs`).

pub mod harness;
