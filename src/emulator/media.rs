//! Emulator media: the seed Samsung Gallery (real viewable JPEGs with EXIF, real videos, screenshots) and
//! content that is generated deterministically on the fly or assembled from shared pieces (large files are never
//! stored whole), plus thumbnail rendering (real JPEGs) for the thumbnail endpoints.
//!
//! Parts: [`gallery`] (the seed list and photo pixels), [`exif_writer`] (the APP1 EXIF segment),
//! [`phone_photo`] (full-size camera photos made from real phone JPEGs), [`thumbnail`] (thumbnails and poster
//! frames), [`avi`] (a Motion-JPEG AVI writer), [`mp4`] (a Motion-JPEG MP4
//! writer). This file holds the content types and the synthetic stream.

pub mod avi;
pub mod exif_writer;
pub mod gallery;
pub mod mp4;
pub mod phone_photo;
pub mod raster;
pub mod thumbnail;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The bytes of a file in the emulated drive: stored, generated deterministically from a seed (so a 4 GiB
/// file costs no memory and every read of the same range gives the same bytes), or the concatenation of pieces
/// shared with other files (a video's header and the frames it repeats).
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Bytes),
    Synthetic { seed: u64, len: u64 },
    Pieces(Arc<Pieces>),
}

/// A file made of pieces in order, each shared (cloning a [`Bytes`] copies nothing).
#[derive(Debug)]
pub struct Pieces {
    /// How to make the same file again (a state file records this instead of the bytes).
    pub recipe: Option<Recipe>,
    parts: Vec<Bytes>,
    /// Offset of each part in the file.
    starts: Vec<u64>,
    len: u64,
}

/// What a generated file is made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// A seed video ([`gallery::seed_video`]).
    SeedVideo { seed: u64, taken_unix: i64 },
    /// A full-size camera photo ([`phone_photo::phone_photo`]).
    PhonePhoto {
        source: usize,
        taken_unix: i64,
        unique_id: u64,
    },
}

impl Recipe {
    pub fn make(self) -> Content {
        match self {
            Recipe::SeedVideo { seed, taken_unix } => gallery::seed_video(seed, taken_unix).0,
            Recipe::PhonePhoto {
                source,
                taken_unix,
                unique_id,
            } => phone_photo::phone_photo(source, taken_unix, unique_id),
        }
    }
}

impl Pieces {
    pub fn new(parts: Vec<Bytes>, recipe: Option<Recipe>) -> Arc<Self> {
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0u64;
        for p in &parts {
            starts.push(len);
            len += p.len() as u64;
        }
        Arc::new(Self {
            recipe,
            parts,
            starts,
            len,
        })
    }

    fn read_range(&self, start: u64, end: u64) -> Bytes {
        // The part holding `start`: the last one starting at or before it.
        let first = self.starts.partition_point(|s| *s <= start).saturating_sub(1);
        if let Some(part) = self.parts.get(first) {
            let from = (start - self.starts[first]) as usize;
            if end - self.starts[first] <= part.len() as u64 {
                return part.slice(from..(end - self.starts[first]) as usize);
            }
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        for (part, at) in self.parts.iter().zip(&self.starts).skip(first) {
            if *at >= end {
                break;
            }
            let from = start.saturating_sub(*at) as usize;
            let to = ((end - at) as usize).min(part.len());
            if from < to {
                out.extend_from_slice(&part[from..to]);
            }
        }
        Bytes::from(out)
    }
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Synthetic { len, .. } => *len,
            Content::Pieces(p) => p.len,
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
            Content::Pieces(p) => p.read_range(start, end),
        }
    }
}

/// Fills `buf` with the synthetic stream of `seed` starting at `offset`: 8-byte little-endian words, word `i`
/// a mix of `seed` and `i`, so any range is computable on its own and the same at every chunking.
pub fn fill_synthetic(seed: u64, offset: u64, buf: &mut [u8]) {
    let key = raster::mix(seed ^ 0xC0FF_EE00_D15E_A5E5);
    let word = |i: u64| -> [u8; 8] {
        let mut z = (i ^ key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z ^= z >> 29;
        z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (z ^ (z >> 32)).to_le_bytes()
    };
    let mut pos = 0usize;
    let mut abs = offset;
    // Unaligned head.
    let head = ((8 - (abs % 8)) % 8) as usize;
    if head > 0 {
        let w = word(abs / 8);
        let n = head.min(buf.len());
        let from = (abs % 8) as usize;
        buf[..n].copy_from_slice(&w[from..from + n]);
        pos += n;
        abs += n as u64;
    }
    // Whole words.
    let mut index = abs / 8;
    let body = &mut buf[pos..];
    let mut chunks = body.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(index));
        index += 1;
    }
    // Tail.
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let n = tail.len();
        tail.copy_from_slice(&word(index)[..n]);
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

/// A realistic Samsung Gallery of `count` photos and videos, the same for the same `seed`: camera photos
/// `DCIM/Camera/YYYYMMDD_HHMMSS.jpg` (some bursts `_001`…), videos `DCIM/Camera/….mp4` (about 1 in 12),
/// screenshots `DCIM/Screenshots/Screenshot_YYYYMMDD-HHMMSS_App.jpg|png` (about 1 in 8), and a few photos in
/// `Snapseed/` and `WhatsApp/`, dated over about three years in increasing order. The first video is a real
/// playable 3-second Motion-JPEG AVI (`….avi`, `video/x-msvideo`); the others are generated content. `MediaKind::Photo` with empty
/// `camera_make`/`camera_model` means the file carries no camera EXIF (screenshots, WhatsApp).
pub fn samsung_gallery(count: usize, seed: u64) -> Vec<SeedFile> {
    gallery::samsung_gallery(count, seed)
}

/// A real JPEG thumbnail of `content` that fits in `width`×`height` (aspect kept), or fills and is cropped to it
/// when `crop`; returns the JPEG and its real size, or `None` when no thumbnail can be made for this content.
/// Stored images are decoded (EXIF orientation applied); videos and generated originals get a poster frame.
/// The size [`render_thumbnail`] gives a synthetic file, known without rendering (`None` for other content).
pub fn synthetic_thumbnail_size(
    content: &Content,
    mime_type: &str,
    width: u32,
    height: u32,
    crop: bool,
) -> Option<(u32, u32)> {
    thumbnail::synthetic_thumbnail_size(content, mime_type, width, height, crop)
}

pub fn render_thumbnail(
    content: &Content,
    mime_type: &str,
    width: u32,
    height: u32,
    crop: bool,
) -> Option<(Bytes, u32, u32)> {
    thumbnail::render_thumbnail(content, mime_type, width, height, crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_ranges_agree_at_every_chunking() {
        let content = Content::Synthetic { seed: 77, len: 10_000 };
        let whole = content.read_range(0, 10_000);
        for (start, end) in [
            (0, 1),
            (3, 11),
            (7, 8),
            (8, 16),
            (13, 4097),
            (9_995, 10_000),
            (9_999, 20_000),
        ] {
            assert_eq!(
                content.read_range(start, end),
                whole.slice(start as usize..end.min(10_000) as usize)
            );
        }
        let mut pieces = Vec::new();
        let mut at = 0;
        for size in [1u64, 5, 8, 13, 1000, 3, 8970] {
            pieces.extend_from_slice(&content.read_range(at, at + size));
            at += size;
        }
        assert_eq!(pieces, whole);
        let other = Content::Synthetic { seed: 78, len: 10_000 }.read_range(0, 10_000);
        assert_ne!(other, whole);
        // Not a trivially repeating pattern.
        assert_ne!(whole.slice(0..8), whole.slice(8..16));
        let zeros = whole.iter().filter(|b| **b == 0).count();
        assert!(zeros < 100, "{zeros} zero bytes in 10 kB");
    }

    #[test]
    fn pieces_read_like_their_concatenation() {
        let parts: Vec<Bytes> = ["abc", "", "defgh", "i", "jklmnop"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let content = Content::Pieces(Pieces::new(parts, None));
        let whole = b"abcdefghijklmnop";
        assert_eq!(content.len(), whole.len() as u64);
        for start in 0..=whole.len() as u64 {
            for end in start..=whole.len() as u64 + 2 {
                let want = &whole[start as usize..(end as usize).min(whole.len())];
                assert_eq!(&content.read_range(start, end)[..], want, "{start}..{end}");
            }
        }
    }

    #[test]
    fn synthetic_throughput() {
        let mut buf = vec![0u8; 64 << 20];
        let t = std::time::Instant::now();
        fill_synthetic(5, 3, &mut buf);
        let secs = t.elapsed().as_secs_f64();
        let mb_per_s = 64.0 / secs;
        eprintln!("fill_synthetic: {mb_per_s:.0} MB/s (debug builds are far slower than release)");
        // Loose bound: debug build on a shared, loaded machine; catches only pathological slowness.
        assert!(mb_per_s > 8.0, "{mb_per_s} MB/s");
    }
}
