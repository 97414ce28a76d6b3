//! Thumbnail rendering for the emulator's thumbnail endpoints: real JPEGs made from stored images (EXIF
//! orientation applied, fit inside or fill-and-crop), and deterministic poster frames (a colour field with a
//! play triangle) for videos and for originals that are generated rather than stored.

use super::exif_writer::read_orientation;
use super::raster::upright;
use super::raster::{encode_jpeg, mix};
use super::Content;
use bytes::Bytes;
use image::{imageops, DynamicImage, Rgb, RgbImage};

/// See [`super::render_thumbnail`].
pub fn render_thumbnail(
    content: &Content,
    mime_type: &str,
    width: u32,
    height: u32,
    crop: bool,
) -> Option<(Bytes, u32, u32)> {
    if width == 0 || height == 0 {
        return None;
    }
    let mime = mime_type.to_ascii_lowercase();
    let is_image = mime.starts_with("image/");
    let is_video = mime.starts_with("video/");
    if !is_image && !is_video {
        return None;
    }
    if let (false, Some((tw, th)), Content::Synthetic { seed, .. }) = (
        crop,
        synthetic_thumbnail_size(content, &mime, width, height, crop),
        content,
    ) {
        // Drawn at its final size: the same picture as the full poster scaled down, for a fraction of the work.
        let (bytes, w, h) = encode_sized(&poster_sized(*seed, tw, th));
        return Some((bytes, w, h));
    }
    let img = match content {
        Content::Bytes(bytes) if is_image => decode_upright(bytes)?,
        Content::Bytes(bytes) => match super::avi::first_frame(bytes).and_then(|f| image::load_from_memory(f).ok()) {
            Some(frame) => frame,
            None => poster(16, 9, seed_of_bytes(bytes)),
        },
        Content::Synthetic { seed, .. } if is_video => poster(16, 9, *seed),
        Content::Synthetic { seed, .. } => poster(4, 3, *seed),
        Content::Pieces(p) if is_image => match p.recipe {
            Some(super::Recipe::PhonePhoto { source, .. }) => super::phone_photo::preview(source)?,
            _ => decode_upright(&content.read_range(0, content.len()))?,
        },
        Content::Pieces(_) => match super::mp4::first_frame(content).and_then(|f| image::load_from_memory(&f).ok()) {
            Some(frame) => frame,
            None => poster(16, 9, content.len()),
        },
    };
    let thumb = if crop {
        fill_and_crop(&img, width, height)
    } else {
        fit_inside(&img, width, height)
    };
    let (w, h) = thumb.dimensions();
    Some((Bytes::from(encode_jpeg(&thumb, 80)), w, h))
}

/// Decodes a stored image and turns it upright per its EXIF orientation.
fn decode_upright(bytes: &[u8]) -> Option<DynamicImage> {
    let img = image::load_from_memory(bytes).ok()?;
    Some(upright(img, read_orientation(bytes)))
}

// Only `DynamicImage` methods below: they are compiled (optimised) inside the image crate, while generic
// `imageops` functions would be instantiated, unoptimised, in this crate's debug builds.

/// Fits inside `w`×`h`, keeping the aspect ratio, never enlarging.
fn fit_inside(img: &DynamicImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = (img.width(), img.height());
    let scale = (w as f64 / iw as f64).min(h as f64 / ih as f64).min(1.0);
    let tw = ((iw as f64 * scale).round() as u32).max(1);
    let th = ((ih as f64 * scale).round() as u32).max(1);
    if (tw, th) == (iw, ih) {
        return img.to_rgb8();
    }
    img.thumbnail_exact(tw, th).to_rgb8()
}

/// Scales to cover `w`×`h` and crops the centre to exactly that size.
fn fill_and_crop(img: &DynamicImage, w: u32, h: u32) -> RgbImage {
    img.resize_to_fill(w, h, imageops::FilterType::Triangle).to_rgb8()
}

fn seed_of_bytes(bytes: &[u8]) -> u64 {
    let head = &bytes[..bytes.len().min(64)];
    head.iter().fold(bytes.len() as u64, |acc, b| mix(acc ^ u64::from(*b)))
}

/// The size of a synthetic file's poster (`Content::Synthetic` photo or video) fitted inside `w`×`h` (exactly
/// `w`×`h` when cropped), known without drawing it: what a listing's `$expand=thumbnails` reports.
pub fn synthetic_thumbnail_size(content: &Content, mime: &str, w: u32, h: u32, crop: bool) -> Option<(u32, u32)> {
    let Content::Synthetic { .. } = content else {
        return None;
    };
    let mime = mime.to_ascii_lowercase();
    let (aw, ah) = if mime.starts_with("video/") {
        (16, 9)
    } else if mime.starts_with("image/") {
        (4, 3)
    } else {
        return None;
    };
    if w == 0 || h == 0 {
        return None;
    }
    if crop {
        return Some((w, h));
    }
    let (iw, ih) = (POSTER_WIDTH, POSTER_WIDTH * ah / aw);
    let scale = (w as f64 / iw as f64).min(h as f64 / ih as f64).min(1.0);
    Some((
        ((iw as f64 * scale).round() as u32).max(1),
        ((ih as f64 * scale).round() as u32).max(1),
    ))
}

fn encode_sized(img: &DynamicImage) -> (Bytes, u32, u32) {
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    (Bytes::from(encode_jpeg(&rgb, 80)), w, h)
}

/// Width of a full-size poster frame.
const POSTER_WIDTH: u32 = 640;

/// A 640-pixel-wide poster frame of aspect `aw:ah`, coloured from `seed`, with a white play triangle.
fn poster(aw: u32, ah: u32, seed: u64) -> DynamicImage {
    poster_sized(seed, POSTER_WIDTH, POSTER_WIDTH * ah / aw)
}

/// The poster frame of `seed` drawn at `w`×`h`.
fn poster_sized(seed: u64, w: u32, h: u32) -> DynamicImage {
    let v = mix(seed);
    let top = Rgb([v as u8 / 2, (v >> 8) as u8 / 2, (v >> 16) as u8 / 2 + 60]);
    let bottom = Rgb([(v >> 24) as u8, (v >> 32) as u8, (v >> 40) as u8]);
    let mut seedling = RgbImage::new(1, 2);
    seedling.put_pixel(0, 0, top);
    seedling.put_pixel(0, 1, bottom);
    let mut img = DynamicImage::ImageRgb8(seedling)
        .resize_exact(w, h, imageops::FilterType::Triangle)
        .to_rgb8();
    // Play triangle: pointing right, centred, height a third of the frame.
    let th = h / 3;
    let (cx, cy) = (w / 2, h / 2);
    let left = cx - th * 2 / 5;
    for y in cy - th / 2..cy + th / 2 {
        let half_width_at_y = th / 2 - (y as i64 - cy as i64).unsigned_abs() as u32;
        for x in left..left + half_width_at_y * 17 / 10 {
            img.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    DynamicImage::ImageRgb8(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::media::raster::{picture, SplitMix64};

    fn decode(bytes: &Bytes) -> RgbImage {
        image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8()
    }

    #[test]
    fn a_synthetic_thumbnail_has_the_size_known_without_drawing_it() {
        for (mime, w, h, crop) in [
            ("image/jpeg", 128, 128, false),
            ("image/jpeg", 256, 256, false),
            ("video/mp4", 176, 176, false),
            ("image/jpeg", 1000, 1000, false),
            ("image/jpeg", 96, 96, true),
        ] {
            let content = Content::Synthetic { seed: 5, len: 3_000 };
            let known = synthetic_thumbnail_size(&content, mime, w, h, crop).unwrap();
            let (bytes, rw, rh) = render_thumbnail(&content, mime, w, h, crop).unwrap();
            let img = decode(&bytes);
            assert_eq!((rw, rh), known, "{mime} {w}x{h} crop {crop}");
            assert_eq!(img.dimensions(), known);
        }
        assert_eq!(
            synthetic_thumbnail_size(&Content::Synthetic { seed: 1, len: 9 }, "image/png", 128, 128, false),
            Some((128, 96))
        );
        assert!(
            synthetic_thumbnail_size(&Content::Synthetic { seed: 1, len: 9 }, "text/plain", 128, 128, false).is_none()
        );
        assert!(synthetic_thumbnail_size(&Content::Bytes(Bytes::new()), "image/jpeg", 128, 128, false).is_none());
    }

    #[test]
    fn fits_inside_and_crops() {
        let jpeg = Bytes::from(encode_jpeg(&picture(800, 600, &mut SplitMix64::new(1)), 80));
        let content = Content::Bytes(jpeg);
        let (bytes, w, h) = render_thumbnail(&content, "image/jpeg", 176, 176, false).unwrap();
        assert_eq!((w, h), (176, 132));
        assert_eq!(decode(&bytes).dimensions(), (176, 132));
        let (bytes, w, h) = render_thumbnail(&content, "image/jpeg", 256, 256, true).unwrap();
        assert_eq!((w, h), (256, 256));
        assert_eq!(decode(&bytes).dimensions(), (256, 256));
        // Never enlarged when fitting.
        let (_, w, h) = render_thumbnail(&content, "image/jpeg", 2000, 2000, false).unwrap();
        assert_eq!((w, h), (800, 600));
    }

    #[test]
    fn exif_orientation_is_applied() {
        use super::super::exif_writer::{insert_exif, ExifFacts};
        let jpeg = encode_jpeg(&picture(640, 480, &mut SplitMix64::new(2)), 80);
        let facts = ExifFacts {
            make: "samsung".into(),
            model: "SM-S921B".into(),
            taken: chrono::Utc::now(),
            orientation: 6,
            width: 640,
            height: 480,
            unique_id: 1,
        };
        let content = Content::Bytes(Bytes::from(insert_exif(&jpeg, &facts)));
        let (_, w, h) = render_thumbnail(&content, "image/jpeg", 96, 96, false).unwrap();
        assert_eq!((w, h), (72, 96), "portrait after rotation");
    }

    #[test]
    fn real_sample_with_orientation_6_comes_out_portrait() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/photos/orientation_6.jpg");
        let Ok(bytes) = std::fs::read(&path) else {
            let require_all = std::env::var_os("GALLERYFS_REQUIRE_ALL").is_some_and(|v| !v.is_empty() && v != "0");
            assert!(
                !require_all,
                "GALLERYFS_REQUIRE_ALL=1 and sample photo {} is absent",
                path.display()
            );
            eprintln!("SKIPPED: sample photo {} is absent", path.display());
            return;
        };
        let raw = image::load_from_memory(&bytes).unwrap();
        assert_eq!(read_orientation(&bytes), 6);
        let (_, w, h) = render_thumbnail(&Content::Bytes(Bytes::from(bytes)), "image/jpeg", 256, 256, false).unwrap();
        assert_eq!(
            raw.width() > raw.height(),
            h > w,
            "stored landscape shows portrait and vice versa"
        );
    }

    #[test]
    fn the_playable_clip_is_thumbnailed_from_its_first_frame() {
        let gallery = crate::emulator::media::samsung_gallery(40, 1);
        let clip = gallery
            .iter()
            .find(|f| f.mime_type == "video/x-msvideo")
            .expect("clip in 40 items");
        let (_, w, h) = render_thumbnail(&clip.content, &clip.mime_type, 176, 176, false).unwrap();
        assert_eq!((w, h), (176, 132), "4:3 like the clip, not a 16:9 poster");
    }

    #[test]
    fn videos_and_synthetic_get_posters_and_other_files_none() {
        let video = Content::Synthetic { seed: 9, len: 10 << 20 };
        let (a, w, h) = render_thumbnail(&video, "video/mp4", 800, 800, false).unwrap();
        assert_eq!((w, h), (640, 360));
        let (b, _, _) = render_thumbnail(&video, "video/mp4", 800, 800, false).unwrap();
        assert_eq!(a, b, "deterministic");
        let centre = decode(&a).get_pixel(320, 180).0;
        assert!(
            centre.iter().all(|c| *c > 200),
            "play triangle in the middle: {centre:?}"
        );
        let (_, w, h) = render_thumbnail(&Content::Synthetic { seed: 1, len: 5 }, "image/jpeg", 96, 96, false).unwrap();
        assert_eq!((w, h), (96, 72));
        let text = Content::Bytes(Bytes::from_static(b"hello"));
        assert!(render_thumbnail(&text, "text/plain", 96, 96, false).is_none());
        assert!(
            render_thumbnail(&text, "image/jpeg", 96, 96, false).is_none(),
            "undecodable image"
        );
    }
}
