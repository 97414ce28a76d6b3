//! Emulator media: the seed Samsung Gallery (real viewable JPEGs with EXIF, videos, screenshots) and content
//! that is generated deterministically on the fly (large files are never stored whole), plus thumbnail
//! rendering (real JPEGs) for the thumbnail endpoints.

use bytes::Bytes;
use chrono::{DateTime, Utc};

/// The bytes of a file in the emulated drive: stored, or generated deterministically from a seed (so a 4 GiB
/// video costs no memory and every read of the same range gives the same bytes).
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Bytes),
    Synthetic { seed: u64, len: u64 },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Synthetic { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `[start, end)`, clamped to the content's length.
    pub fn read_range(&self, start: u64, end: u64) -> Bytes {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            Content::Bytes(b) => b.slice(start as usize..end as usize),
            Content::Synthetic { seed, .. } => {
                let mut buf = vec![0u8; (end - start) as usize];
                fill_synthetic(*seed, start, &mut buf);
                Bytes::from(buf)
            }
        }
    }
}

/// Fills `buf` with the synthetic stream of `seed` starting at `offset`. (Placeholder: owned by the media work.)
pub fn fill_synthetic(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
        *b = (x >> 29) as u8;
    }
}

/// What kind of media a seed file is, for the driveItem facets.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaKind {
    Photo {
        width: u32,
        height: u32,
        camera_make: String,
        camera_model: String,
    },
    Video {
        width: u32,
        height: u32,
        duration_ms: u64,
    },
    Other,
}

/// One file of the seed gallery.
#[derive(Clone, Debug)]
pub struct SeedFile {
    /// Path below the `Samsung Gallery` folder, e.g. `DCIM/Camera/20240315_142233.jpg`.
    pub path: String,
    pub content: Content,
    pub mime_type: String,
    /// When the photo or video was taken (also its file-system modification time).
    pub taken: DateTime<Utc>,
    pub kind: MediaKind,
}

/// A realistic Samsung Gallery of `count` photos and videos, the same for the same `seed`.
/// (Placeholder: owned by the media work.)
pub fn samsung_gallery(count: usize, seed: u64) -> Vec<SeedFile> {
    let _ = (count, seed);
    Vec::new()
}

/// A real JPEG thumbnail of `content` that fits in `width`×`height` (aspect kept), or fills and is cropped to it
/// when `crop`; returns the JPEG and its real size, or `None` when no thumbnail can be made for this content.
/// (Placeholder: owned by the media work.)
pub fn render_thumbnail(
    content: &Content,
    mime_type: &str,
    width: u32,
    height: u32,
    crop: bool,
) -> Option<(Bytes, u32, u32)> {
    let _ = (content, mime_type, width, height, crop);
    None
}
