//! OneDrive naming rules (graph-api.md §12, OAD concepts/addressing-driveitems.md): invalid characters, reserved
//! names, whitespace and length rules, case-insensitive comparison and the `rename` conflict behaviour.

use super::errors::GraphError;

const INVALID_CHARS: &[char] = &['/', '\\', '*', '<', '>', '?', ':', '|', '"'];
const RESERVED: &[&str] = &[".lock", "desktop.ini", "con", "prn", "aux", "nul"];
/// Longest name accepted, in bytes (UTF-8).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest whole path accepted, in characters.
pub const MAX_PATH_CHARS: usize = 400;

/// Checks a single item name; the error is a 400 Graph error.
pub fn validate_name(name: &str) -> Result<(), GraphError> {
    let bad = |why: &str| GraphError::invalid(format!("Invalid name '{name}': {why}")).with_inner("invalidPath");
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(GraphError::invalid("The name is too long").with_inner("pathIsTooLong"));
    }
    if name == "." || name == ".." {
        return Err(bad("reserved"));
    }
    if let Some(c) = name.chars().find(|c| INVALID_CHARS.contains(c) || c.is_control()) {
        return Err(bad(&format!("contains '{}'", c.escape_default())));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(bad("leading or trailing whitespace"));
    }
    if name.ends_with('.') {
        return Err(bad("ends with a period"));
    }
    if name.starts_with("~$") {
        return Err(bad("starts with ~$"));
    }
    let lower = name.to_lowercase();
    if lower.contains("_vti_") {
        return Err(bad("contains _vti_"));
    }
    let stem = match lower.split_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => lower.as_str(),
    };
    if RESERVED.contains(&lower.as_str()) || RESERVED.contains(&stem) || is_device_name(stem) {
        return Err(bad("reserved name"));
    }
    Ok(())
}

fn is_device_name(stem: &str) -> bool {
    let b = stem.as_bytes();
    b.len() == 4 && (stem.starts_with("com") || stem.starts_with("lpt")) && b[3].is_ascii_digit()
}

/// The key names are compared by: case-insensitive, case-preserving.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The `n`th candidate of conflictBehavior `rename`: `photo 1.jpg`, `folder 1`.
pub fn numbered(name: &str, n: u32, is_folder: bool) -> String {
    if !is_folder {
        if let Some((stem, ext)) = name.rsplit_once('.') {
            if !stem.is_empty() {
                return format!("{stem} {n}.{ext}");
            }
        }
    }
    format!("{name} {n}")
}

/// MIME type the service would choose from a file name.
pub fn mime_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "webp" => "image/webp",
        "dng" => "image/x-adobe-dng",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "3gp" => "video/3gpp",
        "mkv" => "video/x-matroska",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["20240315_142233.jpg", "Samsung Gallery", "a.b.c", "été ☀.png", "x"] {
            validate_name(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn rejects_documented_bad_names() {
        for n in [
            "a/b",
            "a\\b",
            "a*",
            "a<b",
            "a>b",
            "a?",
            "a:b",
            "a|b",
            "a\"b",
            " lead",
            "trail ",
            "dot.",
            "CON",
            "con.txt",
            "Lpt3.jpg",
            "COM0",
            "desktop.ini",
            ".lock",
            "~$doc.docx",
            "x_vti_y",
            "",
            "..",
        ] {
            let e = validate_name(n).expect_err(n);
            assert_eq!(e.status.as_u16(), 400, "{n}");
            assert_eq!(e.inner, Some("invalidPath"), "{n}");
        }
        let long = "a".repeat(256);
        assert_eq!(validate_name(&long).unwrap_err().inner, Some("pathIsTooLong"));
        validate_name(&"a".repeat(255)).unwrap();
        // Device names only when the whole stem is one.
        validate_name("console.txt").unwrap();
        validate_name("COM10").unwrap();
    }

    #[test]
    fn rename_candidates() {
        assert_eq!(numbered("photo.jpg", 1, false), "photo 1.jpg");
        assert_eq!(numbered("a.tar.gz", 2, false), "a.tar 2.gz");
        assert_eq!(numbered("Camera", 1, true), "Camera 1");
        assert_eq!(numbered(".hidden", 1, false), ".hidden 1");
        assert_eq!(fold("IMG.JPG"), fold("img.jpg"));
    }
}
