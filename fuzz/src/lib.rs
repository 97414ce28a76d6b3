//! The galleryfs fuzz targets' shared code: [`harness`] and [`local_names`] (both also compiled into
//! `tests/suite/hostile_input.rs`).

pub mod harness;
pub mod local_names;
