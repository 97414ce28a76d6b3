//! Target `local_names`: any bytes as a name created locally (`fs::gallery::names::check_local_name`). What the validator accepts must be a name OneDrive takes and the store can hold; what it
//! refuses must be refused with an error, never a panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use galleryfs::fs::gallery::names::check_local_name;
use galleryfs::sync::delta_apply::check_name;

pub fn local_names(data: &[u8]) {
    let name = OsStr::from_bytes(data);
    let Ok(accepted) = check_local_name(name) else {
        return;
    };
    assert_eq!(accepted.as_bytes(), data);
    assert!(
        check_name(accepted).is_ok(),
        "accepted locally but not storable: {accepted:?}"
    );
    assert!(
        !accepted.contains(['/', '\\', '*', '<', '>', '?', ':', '|', '"']),
        "{accepted:?}"
    );
    assert!(!accepted.chars().any(char::is_control), "{accepted:?}");
    assert!(!accepted.ends_with('.') && accepted.trim() == accepted, "{accepted:?}");
    let lower = accepted.to_ascii_lowercase();
    assert!(
        lower != "desktop.ini" && lower != ".lock" && !lower.contains("_vti_"),
        "{accepted:?}"
    );
    let stem = lower.split('.').next().unwrap_or_default();
    assert!(!["con", "prn", "aux", "nul"].contains(&stem), "{accepted:?}");
}
