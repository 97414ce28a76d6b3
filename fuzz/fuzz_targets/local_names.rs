//! cargo-fuzz target `local_names`: see `galleryfs_fuzz::local_names` .
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| galleryfs_fuzz::local_names::local_names(data));
