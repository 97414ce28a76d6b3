//! Names and ids from the server that the mount cannot show as they are: the policy of what a Linux directory
//! entry can hold ([`check_name`], [`RejectReason`]), the id prefixes galleryfs keeps for its own rows, and the
//! ` (n)` suffix given to a name that clashes case-insensitively with a sibling ([`suffixed_name`]).

/// Longest name (bytes) a Linux filesystem can show.
pub const NAME_MAX: usize = 255;

/// Why an item of a delta round was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    NoName,
    EmptyName,
    DotName,
    ContainsSlash,
    ContainsNul,
    NameTooLong,
    /// Neither a file nor a folder (a package such as a OneNote notebook).
    UnsupportedKind,
    /// Its parent folder was rejected.
    ParentRejected,
    /// Its parent is a file (an inconsistent or hostile round): there is nowhere to put it.
    ParentNotFolder,
    /// Its id has a prefix galleryfs keeps for its own rows (`local:`, `galleryfs:`); OneDrive never sends one.
    ReservedId,
}

/// Id prefixes of rows that are not OneDrive items (local placeholders, the root before its id is known). A server
/// item with such an id would be taken for a local one (never uploaded, or merged into a local row).
const RESERVED_ID_PREFIXES: &[&str] = &["local:", "galleryfs:"];

pub(crate) fn is_reserved_id(id: &str) -> bool {
    RESERVED_ID_PREFIXES.iter().any(|p| id.starts_with(p))
}

/// Checks a name from the server against what a Linux directory entry can hold.
pub fn check_name(name: &str) -> Result<(), RejectReason> {
    if name.is_empty() {
        Err(RejectReason::EmptyName)
    } else if name == "." || name == ".." {
        Err(RejectReason::DotName)
    } else if name.contains('/') {
        Err(RejectReason::ContainsSlash)
    } else if name.contains('\0') {
        Err(RejectReason::ContainsNul)
    } else if name.len() > NAME_MAX {
        Err(RejectReason::NameTooLong)
    } else {
        Ok(())
    }
}

/// `name` with a ` (n)` suffix before its extension, kept within [`NAME_MAX`] bytes.
pub fn suffixed_name(name: &str, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let suffix = format!(" ({n}){ext}");
    let mut stem = stem.to_string();
    while stem.len() + suffix.len() > NAME_MAX && !stem.is_empty() {
        stem.pop();
    }
    format!("{stem}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_classified() {
        assert_eq!(check_name(""), Err(RejectReason::EmptyName));
        assert_eq!(check_name("."), Err(RejectReason::DotName));
        assert_eq!(check_name(".."), Err(RejectReason::DotName));
        assert_eq!(check_name("a/b"), Err(RejectReason::ContainsSlash));
        assert_eq!(check_name("a\0b"), Err(RejectReason::ContainsNul));
        assert_eq!(check_name(&"é".repeat(128)), Err(RejectReason::NameTooLong));
        assert_eq!(check_name(&"e".repeat(255)), Ok(()));
        assert_eq!(check_name("...jpg"), Ok(()));
    }

    #[test]
    fn suffix_goes_before_the_extension_and_fits() {
        assert_eq!(suffixed_name("IMG_1.jpg", 2), "IMG_1 (2).jpg");
        assert_eq!(suffixed_name("album", 3), "album (3)");
        assert_eq!(suffixed_name(".hidden", 2), ".hidden (2)");
        let long = format!("{}.jpg", "ü".repeat(125));
        let s = suffixed_name(&long, 2);
        assert!(s.len() <= NAME_MAX && s.ends_with(" (2).jpg"), "{s}");
    }
}
