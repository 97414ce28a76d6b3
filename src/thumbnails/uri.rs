//! File URIs and MD5 thumbnail names, byte for byte as GLib and the Thumbnail Managing Standard compute them.
//!
//! GLib (`glib/gconvert.c`, `g_filename_to_uri` → `g_escape_file_uri` → `g_escape_uri_string(path, UNSAFE_PATH)`)
//! keeps ASCII letters, digits and `- _ . ! ~ * ' ( ) / & = : @ + $ ,`, and percent-encodes every other byte with
//! uppercase hex: space, `"` `#` `%` `;` `<` `>` `?` `[` `\` `]` `^` `` ` `` `{` `|` `}`, DEL, control bytes and every
//! byte ≥ 0x80 (so UTF-8 names are encoded byte by byte). The path is taken as raw bytes (Unix file names are bytes,
//! not necessarily UTF-8), and no hostname is used: `file:///…`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use md5::{Digest, Md5};

/// The `UNSAFE_PATH` column (bit 0x08) of GLib's `acceptable[96]` table, for bytes 0x20..=0x7F.
/// `true` = the byte is kept as is.
fn is_kept_in_path(byte: u8) -> bool {
    matches!(byte,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        | b'/' | b'&' | b'=' | b':' | b'@' | b'+' | b'$' | b',')
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes raw path bytes as GLib's `g_escape_uri_string(…, UNSAFE_PATH)` does.
pub fn escape_path_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 16);
    for &byte in bytes {
        if is_kept_in_path(byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(UPPER_HEX[(byte >> 4) as usize] as char);
            out.push(UPPER_HEX[(byte & 0x0F) as usize] as char);
        }
    }
    out
}

/// The `file://` URI of an absolute path, as GLib file managers compute it: `g_file_get_uri` of a local `GFile`,
/// i.e. `g_filename_to_uri` of the path after GLib's lexical canonicalisation (`g_canonicalize_filename`: repeated
/// `/` collapsed, `.` dropped, `..` removes the previous component, no trailing `/`; symlinks are not resolved).
///
/// Give the mount point's canonical path joined with the file's path in the mount: `Thumb::URI` must be the string
/// file managers hash. A relative path (which GLib refuses) is taken as if it started at `/`.
pub fn file_uri(path: &Path) -> String {
    let mut segments: Vec<&[u8]> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => segments.push(name.as_bytes()),
            Component::ParentDir => {
                segments.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut uri = String::from("file://");
    if segments.is_empty() {
        uri.push('/');
    }
    for segment in segments {
        uri.push('/');
        uri.push_str(&escape_path_bytes(segment));
    }
    uri
}

/// Lowercase hex MD5 of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    let digest = Md5::digest(data);
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push(UPPER_HEX[(byte >> 4) as usize].to_ascii_lowercase() as char);
        out.push(UPPER_HEX[(byte & 0x0F) as usize].to_ascii_lowercase() as char);
    }
    out
}

/// The personal-cache file name of a thumbnail: lowercase hex MD5 of the URI, then `.png`.
pub fn thumbnail_name(uri: &str) -> String {
    format!("{}.png", md5_hex(uri.as_bytes()))
}

/// The URI a shared repository (`<dir>/.sh_thumbnails/`) uses for a file of that directory: `./` followed by the
/// file name with the same escaping as [`file_uri`] (spec: "a relative thumbnail URI must be comprised of `./`
/// followed by a single path segment for the filename with canonical URI encoding applied"). This is both what is
/// hashed for the thumbnail's name and what its `Thumb::URI` carries.
pub fn shared_uri(file_name: &OsStr) -> String {
    format!("./{}", escape_path_bytes(file_name.as_bytes()))
}

/// The shared-repository file name of a thumbnail for `file_name`: MD5 of [`shared_uri`] + `.png`. This is what the
/// current spec and libxfce4util ≥ 4.19.4 (`xfce_create_shared_thumbnail_path`, used by Thunar and Ristretto)
/// compute. Older readers hash other spellings; see [`shared_md5_candidates`].
pub fn shared_thumbnail_name(file_name: &OsStr) -> String {
    format!("{}.png", md5_of_name(file_name))
}

/// MD5 (lowercase hex) under which the shared repository stores `file_name`'s thumbnail today (see
/// [`shared_thumbnail_name`]).
pub fn md5_of_name(file_name: &OsStr) -> String {
    md5_hex(shared_uri(file_name).as_bytes())
}

/// Every MD5 a reader may use to look up `file_name` in a shared repository, most current first, without duplicates:
/// 1. MD5 of `./<escaped name>` — current spec, libxfce4util ≥ 4.19.4;
/// 2. MD5 of `<escaped name>` — spec 0.7/0.8 ("only the filename part of the URI"), libxfce4util 4.17.1–4.19.3
///    (Debian 12's Thunar 4.18);
/// 3. MD5 of the raw name bytes — a literal reading of "md5 of the file name" (equal to 2 for plain names).
pub fn shared_md5_candidates(file_name: &OsStr) -> Vec<String> {
    let escaped = escape_path_bytes(file_name.as_bytes());
    let mut out = vec![md5_hex(format!("./{escaped}").as_bytes()), md5_hex(escaped.as_bytes())];
    let raw = md5_hex(file_name.as_bytes());
    if !out.contains(&raw) {
        out.push(raw);
    }
    out
}

/// Whether `md5` (lowercase hex, without `.png`) is one of the names under which a shared repository may be asked
/// for `file_name`'s thumbnail.
pub fn shared_name_matches(file_name: &OsStr, md5: &str) -> bool {
    shared_md5_candidates(file_name)
        .iter()
        .any(|candidate| candidate == md5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn file_uri_follows_glib_unsafe_path_rules() {
        let cases: &[(&str, &str)] = &[
            ("/tmp/a.jpg", "file:///tmp/a.jpg"),
            ("/tmp/a b.jpg", "file:///tmp/a%20b.jpg"),
            ("/tmp/#1.jpg", "file:///tmp/%231.jpg"),
            ("/tmp/100%.jpg", "file:///tmp/100%25.jpg"),
            ("/tmp/[x].jpg", "file:///tmp/%5Bx%5D.jpg"),
            ("/tmp/a+b.jpg", "file:///tmp/a+b.jpg"),
            ("/tmp/~me/x.jpg", "file:///tmp/~me/x.jpg"),
            ("/tmp/Ü.jpg", "file:///tmp/%C3%9C.jpg"),
            ("/tmp/a;b?.jpg", "file:///tmp/a%3Bb%3F.jpg"),
            ("/tmp/(1)!$&'*,=:@.jpg", "file:///tmp/(1)!$&'*,=:@.jpg"),
            ("/tmp/\"<>\\^`{|}.jpg", "file:///tmp/%22%3C%3E%5C%5E%60%7B%7C%7D.jpg"),
            ("/tmp/tab\there", "file:///tmp/tab%09here"),
            ("/tmp/del\x7f", "file:///tmp/del%7F"),
            ("/tmp/under_score-dash.JPG", "file:///tmp/under_score-dash.JPG"),
            (
                "/home/u/Pictures/Samsung Gallery/20240101_120000.jpg",
                "file:///home/u/Pictures/Samsung%20Gallery/20240101_120000.jpg",
            ),
            ("/mnt/g/日本.jpg", "file:///mnt/g/%E6%97%A5%E6%9C%AC.jpg"),
            ("/", "file:///"),
        ];
        for (path, expected) in cases {
            assert_eq!(file_uri(Path::new(path)), *expected, "path {path:?}");
        }
    }

    #[test]
    fn file_uri_encodes_non_utf8_bytes_and_relative_paths_like_glib() {
        let path = OsString::from_vec(b"/tmp/\xff\x80.jpg".to_vec());
        assert_eq!(file_uri(Path::new(&path)), "file:///tmp/%FF%80.jpg");
        assert_eq!(file_uri(Path::new("rel/a b")), "file:///rel/a%20b");
    }

    #[test]
    fn file_uri_canonicalises_lexically_like_gfile() {
        let cases: &[(&str, &str)] = &[
            ("/tmp//a/./b/../c.jpg", "file:///tmp/a/c.jpg"),
            ("/tmp/dir/", "file:///tmp/dir"),
            ("/..", "file:///"),
            ("/a/../../b", "file:///b"),
        ];
        for (path, expected) in cases {
            assert_eq!(file_uri(Path::new(path)), *expected, "path {path:?}");
        }
    }

    #[test]
    fn every_printable_ascii_byte_is_classified_as_glib_does() {
        // Independent restatement of GLib's table: kept = RFC 2396 unreserved + the UNSAFE_PATH extras.
        let kept: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()/&=:@+$,";
        for byte in 0u8..=255 {
            let escaped = escape_path_bytes(&[byte]);
            if kept.as_bytes().contains(&byte) {
                assert_eq!(escaped, (byte as char).to_string());
            } else {
                assert_eq!(escaped, format!("%{byte:02X}"));
            }
        }
    }

    #[test]
    fn md5_names_match_known_values() {
        // echo -n 'file:///tmp/a%20b.jpg' | md5sum
        assert_eq!(
            thumbnail_name("file:///tmp/a%20b.jpg"),
            "45f1b47640b52dc5428fd58ac89fec15.png"
        );
        // echo -n 'file:///tmp/%C3%9C.jpg' | md5sum
        assert_eq!(
            thumbnail_name(&file_uri(Path::new("/tmp/Ü.jpg"))),
            "d67241529e924379ae23f0482c0038a5.png"
        );
        // echo -n 'file:///home/u/Pictures/Samsung%20Gallery/20240101_120000.jpg' | md5sum
        assert_eq!(
            thumbnail_name(&file_uri(Path::new(
                "/home/u/Pictures/Samsung Gallery/20240101_120000.jpg"
            ))),
            "e17db97ab4555b3b68e77e9cdbf50856.png"
        );
        // echo -n '' | md5sum
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn shared_names_hash_the_relative_escaped_uri() {
        let name = OsStr::new("a b.jpg");
        assert_eq!(shared_uri(name), "./a%20b.jpg");
        // echo -n './a%20b.jpg' | md5sum
        assert_eq!(shared_thumbnail_name(name), "42dc3ce4d36a5be7fd011ec91196e357.png");
        assert_eq!(md5_of_name(name), "42dc3ce4d36a5be7fd011ec91196e357");
        // echo -n './photo.jpg' | md5sum
        assert_eq!(md5_of_name(OsStr::new("photo.jpg")), "b1389e2ea03b2f8883e2ff71b7f33742");
    }

    #[test]
    fn shared_lookup_accepts_current_legacy_and_raw_spellings() {
        let name = OsStr::new("a b.jpg");
        // './a%20b.jpg', 'a%20b.jpg', 'a b.jpg' | md5sum
        assert_eq!(
            shared_md5_candidates(name),
            vec![
                "42dc3ce4d36a5be7fd011ec91196e357".to_string(),
                "749d36c73fee145124f6f43eb634c68e".to_string(),
                "c5ef5a83de7315fa4fdda3aeee06e48f".to_string(),
            ]
        );
        // A plain name has two distinct spellings only: 'photo.jpg' escaped == raw.
        let plain = shared_md5_candidates(OsStr::new("photo.jpg"));
        assert_eq!(
            plain,
            vec!["b1389e2ea03b2f8883e2ff71b7f33742", "72acded3acd45e4c8b6ed680854b8ab1"]
        );
        assert!(shared_name_matches(
            OsStr::new("photo.jpg"),
            "72acded3acd45e4c8b6ed680854b8ab1"
        ));
        assert!(!shared_name_matches(
            OsStr::new("other.jpg"),
            "72acded3acd45e4c8b6ed680854b8ab1"
        ));
    }
}
