//! cargo-fuzz target `error_body`: see `galleryfs_fuzz::harness::error_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| galleryfs_fuzz::harness::error_body(data));
