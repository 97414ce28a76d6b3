//! Pixels for the seed media: a deterministic generator ([`SplitMix64`]), photo-like pictures, JPEG encoding
//! and EXIF orientation. Shared by the generators of photos, clips and thumbnails (which use nothing of each
//! other's for these).

use image::{imageops, DynamicImage, Rgb, RgbImage};

/// A small deterministic generator (SplitMix64): the same seed gives the same gallery on every platform and
/// with every version of `rand`.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next_u64() % n == 0
    }
}

/// The SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Phones over the years, oldest first: the model follows the date.
/// A random opaque colour.
pub fn random_colour(rng: &mut SplitMix64) -> Rgb<u8> {
    let v = rng.next_u64();
    Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
}

/// A photo-like picture: a smooth colour field (a few random colours, upscaled) with a sun or a block on it.
pub fn picture(w: u32, h: u32, rng: &mut SplitMix64) -> RgbImage {
    let mut seedling = RgbImage::new(4, 3);
    for p in seedling.pixels_mut() {
        *p = random_colour(rng);
    }
    // DynamicImage methods are compiled (optimised) in the image crate; generic imageops would be built here.
    let mut img = image::DynamicImage::ImageRgb8(seedling)
        .resize_exact(w, h, imageops::FilterType::Triangle)
        .to_rgb8();
    let size = rng.range(u64::from(h / 8), u64::from(h / 3)) as u32;
    let x = rng.range(0, u64::from(w - size)) as i64;
    let y = rng.range(0, u64::from(h - size)) as i64;
    imageops::overlay(&mut img, &RgbImage::from_pixel(size, size, random_colour(rng)), x, y);
    // A horizon line so the orientation of a thumbnail is visible.
    let horizon = RgbImage::from_pixel(w, (h / 60).max(2), Rgb([20, 20, 20]));
    imageops::overlay(&mut img, &horizon, 0, i64::from(h * 2 / 3));
    img
}

pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .expect("JPEG encoding to memory");
    out
}

/// `img` turned upright per the EXIF `orientation`.
pub fn upright(img: DynamicImage, orientation: u16) -> DynamicImage {
    match orientation {
        2 => img.fliph(),
        3 => img.rotate180(),
        4 => img.flipv(),
        5 => img.rotate90().fliph(),
        6 => img.rotate90(),
        7 => img.rotate270().fliph(),
        8 => img.rotate270(),
        _ => img,
    }
}
