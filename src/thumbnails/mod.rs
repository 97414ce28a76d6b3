//! The freedesktop Thumbnail Managing Standard, as a pure library the mount drives: file URIs escaped exactly as
//! GLib does ([`uri`]), thumbnail PNGs with `Thumb::URI`/`Thumb::MTime` made from OneDrive's thumbnails
//! ([`render`]), the user's personal cache `$XDG_CACHE_HOME/thumbnails/` ([`personal_cache`]) and the virtual
//! per-directory shared repository `.sh_thumbnails/` ([`shared_repo`]). No network, no FUSE.
//!
//! Where the spec is ambiguous we follow what GLib and tumbler/Thunar do:
//! - URI escaping is not defined by the spec; we use GLib's `g_filename_to_uri` (what GLib apps and tumbler hash).
//! - `Thumb::MTime` is whole seconds; GLib compares it with `st_mtime` as an integer string with no leading zeros,
//!   and tumbler compares sub-seconds too, so the mount must report whole-second mtimes (CONTRACT does).
//! - `Thumb::Size` is the original's byte size; GLib rejects a thumbnail whose `Thumb::Size` differs from the
//!   file's `st_size`, so it is written only when the caller passes it.
//! - The shared repository's name hash changed between spec versions (bare name, then `./name`); see
//!   [`shared_repo`] for how every spelling is answered.
//! - A failure marker is the spec's "empty PNG": GNOME writes a 1×1 image; so do we.

pub mod personal_cache;
pub mod render;
pub mod shared_repo;
pub mod uri;

use std::path::PathBuf;

pub use personal_cache::PersonalCache;
pub use render::{
    fail_marker_png, prepare_png, read_text, read_text_chunks, relabel_png, render_png, PreparedPng, ThumbExtra,
};
pub use shared_repo::{find_name_for_md5, SharedRepoPath, SHARED_REPO_DIR};
pub use uri::{file_uri, md5_of_name, shared_md5_candidates, shared_thumbnail_name, shared_uri, thumbnail_name};

/// A thumbnail size directory of the spec. The mount seeds [`ThumbSize::SEEDED`]; the larger ones exist for later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThumbSize {
    /// `normal/`, at most 128×128.
    Normal = 128,
    /// `large/`, at most 256×256.
    Large = 256,
    /// `x-large/`, at most 512×512 (spec 0.9).
    XLarge = 512,
    /// `xx-large/`, at most 1024×1024 (spec 0.9).
    XXLarge = 1024,
}

impl ThumbSize {
    /// The sizes galleryfs writes and serves (CONTRACT: `normal` and `large`).
    pub const SEEDED: [ThumbSize; 2] = [ThumbSize::Normal, ThumbSize::Large];
    /// Every size directory of the spec, smallest first.
    pub const ALL: [ThumbSize; 4] = [
        ThumbSize::Normal,
        ThumbSize::Large,
        ThumbSize::XLarge,
        ThumbSize::XXLarge,
    ];

    /// Longest edge in pixels.
    pub fn pixels(self) -> u32 {
        self as u32
    }

    /// The directory name: `normal`, `large`, `x-large`, `xx-large`.
    pub fn dir_name(self) -> &'static str {
        match self {
            ThumbSize::Normal => "normal",
            ThumbSize::Large => "large",
            ThumbSize::XLarge => "x-large",
            ThumbSize::XXLarge => "xx-large",
        }
    }

    /// The size whose directory is called `name`.
    pub fn from_dir_name(name: &str) -> Option<ThumbSize> {
        ThumbSize::ALL.into_iter().find(|size| size.dir_name() == name)
    }
}

/// Why a thumbnail could not be made, stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("the source thumbnail is empty")]
    EmptySource,
    #[error("cannot read the source thumbnail: {0}")]
    Read(#[source] std::io::Error),
    #[error("cannot decode the source thumbnail: {0}")]
    Decode(#[source] image::ImageError),
    #[error("cannot encode the thumbnail PNG: {0}")]
    Encode(#[source] png::EncodingError),
    #[error("the PNG text chunk {key:?} is not ASCII")]
    NotAscii { key: String },
    #[error("thumbnail file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheHome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_spec_directories_and_pixels() {
        let table = [
            (ThumbSize::Normal, "normal", 128),
            (ThumbSize::Large, "large", 256),
            (ThumbSize::XLarge, "x-large", 512),
            (ThumbSize::XXLarge, "xx-large", 1024),
        ];
        for (size, dir, pixels) in table {
            assert_eq!(size.dir_name(), dir);
            assert_eq!(size.pixels(), pixels);
            assert_eq!(ThumbSize::from_dir_name(dir), Some(size));
        }
        assert_eq!(ThumbSize::from_dir_name("fail"), None);
        assert_eq!(ThumbSize::from_dir_name("Normal"), None);
    }
}
