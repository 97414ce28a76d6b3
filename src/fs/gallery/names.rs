//! OneDrive's naming rules applied to names created locally (create, mkdir, rename targets), so a name OneDrive
//! would refuse is refused at the syscall (`EINVAL`, `ENAMETOOLONG`) with a log line naming the rule, and
//! nothing is created. The rules:
//! <https://learn.microsoft.com/en-us/onedrive/developer/rest-api/concepts/addressing-driveitems> and, for users,
//! "Restrictions and limitations in OneDrive and SharePoint" (support.microsoft.com).

use crate::fs::error::FsError;
use std::ffi::OsStr;

/// Longest name in bytes (Linux `NAME_MAX`; OneDrive Personal's own limit is not documented, 255 assumed).
pub const NAME_MAX: usize = 255;

const FORBIDDEN_CHARS: &[char] = &['/', '\\', '*', '<', '>', '?', ':', '|', '"'];
/// Reserved device names, refused case-insensitively, alone or with any extension (`CON.txt`).
const RESERVED_STEMS: &[&str] = &["CON", "PRN", "AUX", "NUL"];
/// Reserved whole names (case-insensitive).
const RESERVED_NAMES: &[&str] = &[".lock", "desktop.ini"];

/// The rule `name` breaks, if any. `Err(NameTooLong)` for more than [`NAME_MAX`] bytes, `Err(InvalidName)`
/// naming the rule otherwise.
pub fn check_local_name(name: &OsStr) -> Result<&str, FsError> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    let invalid = |rule: &str| FsError::InvalidName { rule: rule.to_string() };
    let name = name.to_str().ok_or_else(|| invalid("names must be valid UTF-8"))?;
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid("empty, `.` and `..` are not names"));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN_CHARS.contains(c)) {
        return Err(invalid(&format!(
            "the character {c:?} is not allowed (/ \\ * < > ? : | \")"
        )));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(invalid("control characters are not allowed"));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(invalid("no leading or trailing whitespace"));
    }
    if name.ends_with('.') {
        return Err(invalid("no trailing `.`"));
    }
    if name.starts_with("~$") {
        return Err(invalid("names starting with `~$` are reserved"));
    }
    if name.to_ascii_lowercase().contains("_vti_") {
        return Err(invalid("names containing `_vti_` are reserved"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_NAMES.iter().any(|r| lower == *r) {
        return Err(invalid(&format!("{name:?} is a reserved name")));
    }
    let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
    let device = RESERVED_STEMS.contains(&stem.as_str())
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if device {
        return Err(invalid(&format!(
            "{stem} is a reserved device name (also with an extension)"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str) -> Option<i32> {
        check_local_name(OsStr::new(name)).err().map(|e| e.errno())
    }

    #[test]
    fn ordinary_names_pass() {
        for ok in [
            "IMG_0001.jpg",
            "Ärger über Straße.HEIC",
            "photo (1).jpg",
            ".hidden",
            "CONSOLE.txt",
            "COM10",
            "a~$b",
            "lock",
            "x.lock.jpg",
        ] {
            assert_eq!(rule(ok), None, "{ok}");
        }
        assert_eq!(rule(&"e".repeat(255)), None);
    }

    #[test]
    fn onedrive_rejections_are_einval() {
        for bad in [
            "a/b",
            "a\\b",
            "a*b",
            "a<b",
            "a>b",
            "a?b",
            "a:b",
            "a|b",
            "a\"b",
            " lead",
            "trail ",
            "trail.",
            "CON",
            "con.txt",
            "Prn.jpg",
            "aux",
            "NUL.tar.gz",
            "COM0",
            "com9.log",
            "LPT1",
            "lpt7.x",
            ".lock",
            ".LOCK",
            "desktop.ini",
            "Desktop.INI",
            "~$doc.docx",
            "my_vti_file",
            "",
            ".",
            "..",
            "tab\t",
        ] {
            assert_eq!(rule(bad), Some(libc::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn too_long_is_enametoolong_and_names_the_rule() {
        assert_eq!(rule(&"e".repeat(256)), Some(libc::ENAMETOOLONG));
        assert_eq!(rule(&"é".repeat(128)), Some(libc::ENAMETOOLONG));
        let err = check_local_name(OsStr::new("a:b")).unwrap_err();
        assert!(err.to_string().contains("':'"), "{err}");
    }
}
