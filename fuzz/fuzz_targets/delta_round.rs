//! cargo-fuzz target `delta_round`: see `galleryfs_fuzz::harness::delta_round`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| galleryfs_fuzz::harness::delta_round(data));
