//! cargo-fuzz target `thumbnail_decode`: see `galleryfs_fuzz::harness::thumbnail_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| galleryfs_fuzz::harness::thumbnail_decode(data));
