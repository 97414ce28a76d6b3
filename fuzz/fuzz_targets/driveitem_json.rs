//! cargo-fuzz target `driveitem_json`: see `galleryfs_fuzz::harness::driveitem_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| galleryfs_fuzz::harness::driveitem_json(data));
