//! Building Graph resource paths: item ids and drive-root-relative paths, each segment percent-encoded per
//! RFC 3986 (everything but unreserved characters), and the `root:/a/b:` path-addressing form.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything except RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Item ids: like [`SEGMENT`] but `!` (a sub-delim, legal in a path, and in every OneDrive Personal id) stays.
const ITEM_ID: &AsciiSet = &SEGMENT.remove(b'!');

/// Encodes one path segment (a file or folder name).
pub fn encode_segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// Encodes an item id for use as a path segment.
pub fn encode_id(id: &str) -> String {
    utf8_percent_encode(id, ITEM_ID).to_string()
}

/// `a/b c/d` → `a/b%20c/d` (leading, trailing and doubled `/` dropped). Empty when the path names the root.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// `/me/drive/root:/a/b:` for a drive-root-relative path, `/me/drive/root` for the root itself.
pub fn root_path_resource(path: &str) -> String {
    let encoded = encode_path(path);
    if encoded.is_empty() {
        "/me/drive/root".into()
    } else {
        format!("/me/drive/root:/{encoded}:")
    }
}

/// `/me/drive/items/{id}`.
pub fn item_resource(id: &str) -> String {
    format!("/me/drive/items/{}", encode_id(id))
}

/// `/me/drive/items/{parent}:/{name}:` — a child addressed by name.
pub fn child_resource(parent_id: &str, name: &str) -> String {
    format!("{}:/{}:", item_resource(parent_id), encode_segment(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_unicode() {
        assert_eq!(encode_segment("#1 100%.jpg"), "%231%20100%25.jpg");
        assert_eq!(encode_segment("a+b&c=d?e"), "a%2Bb%26c%3Dd%3Fe");
        assert_eq!(encode_segment("Fotos ü.jpg"), "Fotos%20%C3%BC.jpg");
        assert_eq!(encode_segment("x~y-z_w.v"), "x~y-z_w.v");
    }

    #[test]
    fn path_forms() {
        assert_eq!(
            root_path_resource("/Pictures/Samsung Gallery/#1 100%.jpg"),
            "/me/drive/root:/Pictures/Samsung%20Gallery/%231%20100%25.jpg:"
        );
        assert_eq!(root_path_resource("/"), "/me/drive/root");
        assert_eq!(root_path_resource(""), "/me/drive/root");
        assert_eq!(
            item_resource("66D53BE8A5056ECA!103"),
            "/me/drive/items/66D53BE8A5056ECA!103"
        );
        assert_eq!(item_resource("a/b"), "/me/drive/items/a%2Fb");
        assert_eq!(
            child_resource("A!1", "Samsung Gallery"),
            "/me/drive/items/A!1:/Samsung%20Gallery:"
        );
    }
}
