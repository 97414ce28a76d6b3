//! cargo-fuzz target `content_range`: see `galleryfs_fuzz::harness::content_range`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| galleryfs_fuzz::harness::content_range(data));
