//! The seed Samsung Gallery: a deterministic list of camera photos, burst shots, videos, screenshots and a few
//! app albums, named and dated the way a Samsung phone syncs them to `Pictures/Samsung Gallery`.
//!
//! Photos are real JPEGs with EXIF. Camera photos (`DCIM/Camera`) are full-size phone photos
//! ([`super::phone_photo`]) with their own date and unique id. Screenshots and app images are small, as on a
//! phone: their pixels come from a pool of pictures encoded once ([`pool`]: 16 photos of three sizes, 6
//! screenshots), each file with its own EXIF (date, model, orientation) or comment, so no two files have the
//! same bytes.
//! Videos are real Motion-JPEG MP4s (index in front or at the end) of a few seconds to a minute, made of a
//! shared loop of frames ([`video_frames`]), plus one Motion-JPEG AVI.

use super::exif_writer::{insert_exif, ExifFacts};
use super::phone_photo::{phone_photo, sources, SOURCES};
use super::{Content, MediaKind, SeedFile};
use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use image::{imageops, Rgb, RgbImage};

use super::raster::{encode_jpeg, picture, random_colour, SplitMix64};

const MODELS: [&str; 3] = ["SM-G991B", "SM-S908B", "SM-S921B"];
const SCREENSHOT_APPS: [&str; 6] = ["Chrome", "Gallery", "Maps", "WhatsApp", "Settings", "Instagram"];

enum Kind {
    Camera,
    Burst(u32),
    Video,
    Screenshot,
    Snapseed,
    WhatsApp,
}

/// A realistic Samsung Gallery of `count` photos and videos, the same for the same `seed`.
pub fn samsung_gallery(count: usize, seed: u64) -> Vec<SeedFile> {
    let mut rng = SplitMix64::new(seed ^ 0x5A17_5EED);
    let start = Utc.with_ymd_and_hms(2022, 1, 8, 9, 0, 0).unwrap();
    // Spread the items over about three years, in increasing order.
    let span_secs: i64 = 3 * 365 * 86_400;
    let mean_gap = (span_secs / count.max(1) as i64).max(2);
    let mut taken = start;
    let mut files: Vec<SeedFile> = Vec::with_capacity(count);
    let mut names = std::collections::HashSet::new();
    let mut whatsapp_counter = 0u32;
    let mut clip_placed = false;
    while files.len() < count {
        taken += Duration::seconds(rng.range(1, (2 * mean_gap) as u64) as i64);
        let kind = match rng.range(0, 119) {
            0..=9 => Kind::Video,
            10..=24 => Kind::Screenshot,
            25..=28 => Kind::Snapseed,
            29..=32 => Kind::WhatsApp,
            33..=37 => Kind::Burst(rng.range(2, 4) as u32),
            _ => Kind::Camera,
        };
        let model = MODELS[((taken - start).num_seconds() * MODELS.len() as i64 / span_secs)
            .clamp(0, MODELS.len() as i64 - 1) as usize];
        let stamp = taken.format("%Y%m%d_%H%M%S").to_string();
        let item_seed = rng.next_u64();
        let mut new_files = match kind {
            Kind::Camera => vec![full_size_photo(
                format!("DCIM/Camera/{stamp}.jpg"),
                taken,
                item_seed,
                item_seed,
            )],
            // The shots of a burst come from one camera.
            Kind::Burst(n) => (1..=n)
                .map(|i| {
                    full_size_photo(
                        format!("DCIM/Camera/{stamp}_{i:03}.jpg"),
                        taken,
                        item_seed,
                        item_seed.wrapping_add(i as u64),
                    )
                })
                .collect(),
            Kind::Video if !clip_placed => {
                clip_placed = true;
                vec![demo_clip_file(format!("DCIM/Camera/{stamp}.avi"), taken)]
            }
            Kind::Video => vec![video(format!("DCIM/Camera/{stamp}.mp4"), taken, item_seed)],
            Kind::Screenshot => {
                let app = SCREENSHOT_APPS[(item_seed % SCREENSHOT_APPS.len() as u64) as usize];
                let png = item_seed % 4 == 0;
                let ext = if png { "png" } else { "jpg" };
                let name = format!(
                    "DCIM/Screenshots/Screenshot_{}_{app}.{ext}",
                    taken.format("%Y%m%d-%H%M%S")
                );
                vec![screenshot(name, taken, png, item_seed)]
            }
            Kind::Snapseed => vec![camera_photo(
                format!("Snapseed/IMG_{stamp}.jpg"),
                taken,
                model,
                item_seed,
            )],
            Kind::WhatsApp => {
                whatsapp_counter += 1;
                let name = format!("WhatsApp/IMG-{}-WA{whatsapp_counter:04}.jpg", taken.format("%Y%m%d"));
                // WhatsApp strips the camera's EXIF.
                let mut photo = camera_photo(name, taken, "", item_seed);
                if let MediaKind::Photo {
                    camera_make,
                    camera_model,
                    ..
                } = &mut photo.kind
                {
                    camera_make.clear();
                    camera_model.clear();
                }
                vec![photo]
            }
        };
        new_files.retain(|f| names.insert(f.path.to_ascii_lowercase()));
        new_files.truncate(count - files.len());
        files.extend(new_files);
    }
    files
}

/// A full-size camera photo (see [`super::phone_photo`]): made from the source `source_seed` picks, with
/// `unique_id` as its `ImageUniqueID`.
fn full_size_photo(path: String, taken: DateTime<Utc>, source_seed: u64, unique_id: u64) -> SeedFile {
    let source = (source_seed % SOURCES as u64) as usize;
    let s = &sources()[source];
    SeedFile {
        path,
        content: phone_photo(source, taken.timestamp(), unique_id),
        mime_type: "image/jpeg".into(),
        taken,
        kind: MediaKind::Photo {
            width: s.width,
            height: s.height,
            camera_make: s.make.clone(),
            camera_model: s.model.clone(),
        },
    }
}

/// A small photo (an app's export or a messaging image): a real JPEG from the pool with EXIF (`model` empty
/// means no EXIF at all).
fn camera_photo(path: String, taken: DateTime<Utc>, model: &str, seed: u64) -> SeedFile {
    let mut rng = SplitMix64::new(seed);
    let base = &pool().photos[(rng.next_u64() % POOL_PHOTOS as u64) as usize];
    let (w, h) = (base.width, base.height);
    // One in five was taken holding the phone upright: landscape pixels, orientation 6 (rotate 90° CW).
    let orientation = if rng.one_in(5) { 6 } else { 1 };
    let bytes = if model.is_empty() {
        insert_comment(&base.jpeg, &format!("{path} {}", taken.to_rfc3339()))
    } else {
        insert_exif(
            &base.jpeg,
            &ExifFacts {
                make: "samsung".into(),
                model: model.to_string(),
                taken,
                orientation,
                width: w,
                height: h,
                unique_id: seed,
            },
        )
    };
    SeedFile {
        path,
        content: Content::Bytes(Bytes::from(bytes)),
        mime_type: "image/jpeg".into(),
        taken,
        kind: MediaKind::Photo {
            width: w,
            height: h,
            camera_make: "samsung".into(),
            camera_model: model.to_string(),
        },
    }
}

/// A video: a real Motion-JPEG MP4 of 3 to 60 seconds at [`VIDEO_FPS`], its index in front for about half of
/// them (as a "fast start" file) and at the end for the rest (as a phone writes it).
fn video(path: String, taken: DateTime<Utc>, seed: u64) -> SeedFile {
    let (content, seconds) = seed_video(seed, taken.timestamp());
    let (width, height) = VIDEO_SIZE;
    SeedFile {
        path,
        content,
        mime_type: "video/mp4".into(),
        taken,
        kind: MediaKind::Video {
            width,
            height,
            duration_ms: seconds * 1000,
        },
    }
}

/// The MP4 of the seed video `seed` taken at `taken_unix`, and its length in seconds.
pub fn seed_video(seed: u64, taken_unix: i64) -> (Content, u64) {
    let mut rng = SplitMix64::new(seed);
    let seconds = rng.range(3, 60) as usize;
    let moov_first = rng.one_in(2);
    let frames = video_frames();
    // The loop plays forwards then backwards, so the motion has no jump.
    let cycle = 2 * frames.len() - 2;
    let samples: Vec<Bytes> = (0..seconds * VIDEO_FPS as usize)
        .map(|i| {
            let k = i % cycle;
            frames[if k < frames.len() { k } else { cycle - k }].clone()
        })
        .collect();
    let content = super::mp4::mjpeg_mp4(
        &samples,
        (VIDEO_SIZE.0 as u16, VIDEO_SIZE.1 as u16),
        VIDEO_FPS,
        moov_first,
        taken_unix,
        Some(super::Recipe::SeedVideo { seed, taken_unix }),
    );
    (content, seconds as u64)
}

/// Size and frame rate of the seed MP4 videos.
pub const VIDEO_SIZE: (u32, u32) = (640, 360);
pub const VIDEO_FPS: u32 = 24;

/// The frames every seed MP4 plays: a ball crossing a colour field in one second, encoded once per process.
pub fn video_frames() -> &'static [Bytes] {
    static FRAMES: std::sync::OnceLock<Vec<Bytes>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        let (w, h) = VIDEO_SIZE;
        let mut rng = SplitMix64::new(0x71DE0);
        let background = picture(w, h, &mut rng);
        let n = VIDEO_FPS;
        let size = h / 5;
        (0..n)
            .map(|i| {
                let mut frame = background.clone();
                let x = i64::from(i * (w - size) / (n - 1));
                let y = i64::from(h / 2 - size / 2);
                imageops::overlay(
                    &mut frame,
                    &RgbImage::from_pixel(size, size, Rgb([250, 250, 250])),
                    x,
                    y,
                );
                Bytes::from(encode_jpeg(&frame, 80))
            })
            .collect()
    })
}

/// The one real playable video (see [`super::avi::demo_clip`]).
fn demo_clip_file(path: String, taken: DateTime<Utc>) -> SeedFile {
    use super::avi::{CLIP_FPS, CLIP_FRAMES, CLIP_SIZE};
    SeedFile {
        path,
        content: Content::Bytes(Bytes::from_static(CLIP_FILE)),
        mime_type: "video/x-msvideo".into(),
        taken,
        kind: MediaKind::Video {
            width: CLIP_SIZE.0,
            height: CLIP_SIZE.1,
            duration_ms: u64::from(CLIP_FRAMES) * 1000 / u64::from(CLIP_FPS),
        },
    }
}

/// A phone screenshot (JPEG or PNG from the pool, made unique by a comment or text chunk), no camera EXIF.
fn screenshot(path: String, taken: DateTime<Utc>, png: bool, seed: u64) -> SeedFile {
    let pool = pool();
    let list = if png {
        &pool.screenshots_png
    } else {
        &pool.screenshots_jpeg
    };
    let base = &list[(seed % list.len() as u64) as usize];
    let note = format!("{path} {}", taken.to_rfc3339());
    let bytes = if png {
        insert_png_text(base, "Creation Time", &note)
    } else {
        insert_comment(base, &note)
    };
    SeedFile {
        path,
        content: Content::Bytes(Bytes::from(bytes)),
        mime_type: if png { "image/png" } else { "image/jpeg" }.into(),
        taken,
        kind: MediaKind::Photo {
            width: SCREENSHOT_SIZE.0,
            height: SCREENSHOT_SIZE.1,
            camera_make: String::new(),
            camera_model: String::new(),
        },
    }
}

const POOL_PHOTOS: usize = 16;
const POOL_SCREENSHOTS: usize = 3;
const SCREENSHOT_SIZE: (u32, u32) = (540, 1170);

pub struct PoolPhoto {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Pictures encoded once per process and shared by every gallery.
pub struct Pool {
    pub photos: Vec<PoolPhoto>,
    pub screenshots_jpeg: Vec<Vec<u8>>,
    pub screenshots_png: Vec<Vec<u8>>,
}

/// The pictures of the pool, generated once by [`generate_pool`] and kept in `media/pool/` (JPEG encoding in
/// debug builds costs up to a few hundred milliseconds per picture on a busy machine; the assets load at once).
/// Regenerate with `cargo test --lib regenerate_pool_assets -- --ignored`.
macro_rules! pool_assets {
    ($($file:literal),* $(,)?) => { [$(include_bytes!(concat!("pool/", $file)) as &[u8]),*] };
}
static POOL_PHOTO_FILES: [&[u8]; POOL_PHOTOS] = pool_assets!(
    "photo_00.jpg",
    "photo_01.jpg",
    "photo_02.jpg",
    "photo_03.jpg",
    "photo_04.jpg",
    "photo_05.jpg",
    "photo_06.jpg",
    "photo_07.jpg",
    "photo_08.jpg",
    "photo_09.jpg",
    "photo_10.jpg",
    "photo_11.jpg",
    "photo_12.jpg",
    "photo_13.jpg",
    "photo_14.jpg",
    "photo_15.jpg",
);
static POOL_SCREEN_JPEG_FILES: [&[u8]; POOL_SCREENSHOTS] = pool_assets!("screen_0.jpg", "screen_1.jpg", "screen_2.jpg");
static POOL_SCREEN_PNG_FILES: [&[u8]; POOL_SCREENSHOTS] = pool_assets!("screen_0.png", "screen_1.png", "screen_2.png");

static CLIP_FILE: &[u8] = include_bytes!("pool/clip.avi");

/// Size of pool photo `i`.
fn pool_photo_size(i: usize) -> (u32, u32) {
    [(1024, 768), (800, 600), (640, 480)][i % 3]
}

/// The process-wide picture pool (from the assets in `media/pool/`).
pub fn pool() -> &'static Pool {
    static POOL: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| Pool {
        photos: POOL_PHOTO_FILES
            .iter()
            .enumerate()
            .map(|(i, jpeg)| {
                let (width, height) = pool_photo_size(i);
                PoolPhoto {
                    jpeg: jpeg.to_vec(),
                    width,
                    height,
                }
            })
            .collect(),
        screenshots_jpeg: POOL_SCREEN_JPEG_FILES.iter().map(|b| b.to_vec()).collect(),
        screenshots_png: POOL_SCREEN_PNG_FILES.iter().map(|b| b.to_vec()).collect(),
    })
}

/// Makes the pool's pictures from scratch (what the assets in `media/pool/` hold).
pub fn generate_pool() -> Pool {
    let photos = (0..POOL_PHOTOS)
        .map(|i| {
            let mut rng = SplitMix64::new(0xF0_70 + i as u64);
            let (width, height) = pool_photo_size(i);
            PoolPhoto {
                jpeg: encode_jpeg(&picture(width, height, &mut rng), 82),
                width,
                height,
            }
        })
        .collect();
    let (screenshots_jpeg, screenshots_png) = (0..POOL_SCREENSHOTS)
        .map(|i| {
            let img = screen(i as u64);
            let mut png = std::io::Cursor::new(Vec::new());
            image::DynamicImage::ImageRgb8(img.clone())
                .write_to(&mut png, image::ImageFormat::Png)
                .expect("PNG encoding to memory");
            (encode_jpeg(&img, 85), png.into_inner())
        })
        .unzip();
    Pool {
        photos,
        screenshots_jpeg,
        screenshots_png,
    }
}

/// A plain app-like screen: a coloured bar and a few cards.
fn screen(seed: u64) -> RgbImage {
    let mut rng = SplitMix64::new(seed ^ 0x5C2E_E45B);
    let (w, h) = SCREENSHOT_SIZE;
    let mut img = RgbImage::from_pixel(w, h, Rgb([245, 245, 245]));
    let accent = random_colour(&mut rng);
    imageops::replace(&mut img, &RgbImage::from_pixel(w, 120, accent), 0, 0);
    for card in 0..rng.range(3, 5) {
        let top = 160 + card as i64 * 190;
        let shade = 200 + (rng.next_u64() % 40) as u8;
        imageops::replace(
            &mut img,
            &RgbImage::from_pixel(w - 60, 160, Rgb([shade, shade, 255])),
            30,
            top,
        );
    }
    img
}

/// `jpeg` with a COM segment holding `text`, right after SOI.
fn insert_comment(jpeg: &[u8], text: &str) -> Vec<u8> {
    let len = (2 + text.len()) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `png` with a `tEXt` chunk `keyword`=`text` right after IHDR.
fn insert_png_text(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    // Signature (8) + IHDR chunk (4 len + 4 type + 13 data + 4 CRC).
    let after_ihdr = 8 + 25;
    let mut data = Vec::with_capacity(keyword.len() + 1 + text.len());
    data.extend_from_slice(keyword.as_bytes());
    data.push(0);
    data.extend_from_slice(text.as_bytes());
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&data);
    chunk.extend_from_slice(&crc32(&chunk[4..]).to_be_bytes());
    let mut out = Vec::with_capacity(png.len() + chunk.len());
    out.extend_from_slice(&png[..after_ihdr]);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[after_ihdr..]);
    out
}

/// CRC-32 (ISO-HDLC, as PNG uses), bitwise.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallery_is_deterministic_and_laid_out_like_a_samsung_phone() {
        let a = samsung_gallery(120, 7);
        let b = samsung_gallery(120, 7);
        assert_eq!(a.len(), 120);
        let paths: Vec<_> = a.iter().map(|f| f.path.clone()).collect();
        assert_eq!(paths, b.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.content.read_range(0, 4096), y.content.read_range(0, 4096));
        }
        assert_ne!(
            paths,
            samsung_gallery(120, 8)
                .iter()
                .map(|f| f.path.clone())
                .collect::<Vec<_>>()
        );
        let unique: std::collections::HashSet<_> = paths.iter().map(|p| p.to_lowercase()).collect();
        assert_eq!(unique.len(), paths.len());
        assert!(a.windows(2).all(|w| w[0].taken <= w[1].taken));
        let camera = regex_like(&paths, "DCIM/Camera/", ".jpg");
        let videos = regex_like(&paths, "DCIM/Camera/", ".mp4") + regex_like(&paths, "DCIM/Camera/", ".avi");
        let shots = regex_like(&paths, "DCIM/Screenshots/Screenshot_", "");
        assert!(camera > 60 && videos > 2 && shots > 5, "{camera} {videos} {shots}");
        assert!(paths
            .iter()
            .any(|p| p.starts_with("Snapseed/") || p.starts_with("WhatsApp/")));
        let first = &a[0];
        assert!(first.taken.timestamp() > Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap().timestamp());
        assert!(a.last().unwrap().taken - first.taken > Duration::days(700));
    }

    fn regex_like(paths: &[String], prefix: &str, suffix: &str) -> usize {
        paths
            .iter()
            .filter(|p| p.starts_with(prefix) && p.ends_with(suffix))
            .count()
    }

    #[test]
    fn camera_names_follow_samsung_pattern_and_match_exif_date() {
        let gallery = samsung_gallery(60, 3);
        let photo = gallery
            .iter()
            .find(|f| f.path.starts_with("DCIM/Camera/") && f.path.ends_with(".jpg"))
            .unwrap();
        let name = photo.path.rsplit('/').next().unwrap();
        assert_eq!(&name[..15], photo.taken.format("%Y%m%d_%H%M%S").to_string());
        let bytes = photo.content.read_range(0, photo.content.len());
        assert!(
            bytes.len() > 1_000_000,
            "a full-size camera photo: {} bytes",
            bytes.len()
        );
        let exif = exif::Reader::new()
            .read_from_container(&mut std::io::Cursor::new(bytes.as_ref()))
            .unwrap();
        let make = exif.get_field(exif::Tag::Make, exif::In::PRIMARY).unwrap();
        assert!(
            make.display_value().to_string().to_lowercase().contains("samsung"),
            "{}",
            make.display_value()
        );
        let date = exif.get_field(exif::Tag::DateTimeOriginal, exif::In::PRIMARY).unwrap();
        assert_eq!(
            date.display_value().to_string(),
            photo.taken.format("%Y-%m-%d %H:%M:%S").to_string()
        );
        let img = image::load_from_memory(&bytes).unwrap();
        let MediaKind::Photo { width, height, .. } = photo.kind else {
            panic!()
        };
        assert_eq!((img.width(), img.height()), (width, height));
    }

    #[test]
    fn every_file_has_its_own_bytes_and_decodes() {
        let gallery = samsung_gallery(200, 11);
        let mut seen = std::collections::HashSet::new();
        for f in &gallery {
            if f.mime_type == "image/jpeg" {
                // Camera photos share their bulk: the EXIF near the start tells them apart.
                let head = f.content.read_range(0, 64 << 10);
                assert!(seen.insert(head), "{} duplicates another file", f.path);
            }
            if let Content::Bytes(b) = &f.content {
                assert!(
                    f.mime_type == "image/jpeg" || seen.insert(b.clone()),
                    "{} duplicates another file",
                    f.path
                );
                if !f.mime_type.starts_with("image/") {
                    continue;
                }
                let format = if f.mime_type == "image/png" {
                    image::ImageFormat::Png
                } else {
                    image::ImageFormat::Jpeg
                };
                image::load_from_memory_with_format(b, format).unwrap_or_else(|e| panic!("{}: {e}", f.path));
            }
        }
        assert!(gallery.iter().any(|f| f.mime_type == "image/png"));
        let clip = gallery
            .iter()
            .find(|f| f.path.ends_with(".avi"))
            .expect("the playable clip");
        let Content::Bytes(avi) = &clip.content else {
            panic!("clip is stored")
        };
        let frame = super::super::avi::first_frame(avi).expect("a Motion-JPEG AVI");
        let img = image::load_from_memory_with_format(frame, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((img.width(), img.height()), super::super::avi::CLIP_SIZE);
    }

    /// Every file of the seed gallery is a real file of its kind: images decode at their stated size, and
    /// videos are MP4s whose index (in front for some, at the end for others) leads to a decodable first frame.
    #[test]
    fn every_seed_file_is_real() {
        let gallery = samsung_gallery(300, 5);
        let (mut front, mut end) = (0, 0);
        let mut decoded = std::collections::HashSet::new();
        for f in &gallery {
            let bytes = f.content.read_range(0, f.content.len());
            match (&f.kind, f.mime_type.as_str()) {
                (MediaKind::Photo { width, height, .. }, _) => {
                    // Full-size photos made from one source differ only in their EXIF: one full decode per
                    // source, the header of the others.
                    let source = match &f.content {
                        Content::Pieces(p) => match p.recipe {
                            Some(super::super::Recipe::PhonePhoto { source, .. }) => Some(source),
                            _ => None,
                        },
                        _ => None,
                    };
                    let size = if source.is_none_or(|s| decoded.insert(s)) {
                        let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.path));
                        (img.width(), img.height())
                    } else {
                        image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
                            .with_guessed_format()
                            .unwrap()
                            .into_dimensions()
                            .unwrap_or_else(|e| panic!("{}: {e}", f.path))
                    };
                    assert_eq!(size, (*width, *height), "{}", f.path);
                    if f.path.starts_with("DCIM/Camera/") {
                        assert!(bytes.len() > 1_000_000, "{}: {} bytes", f.path, bytes.len());
                    } else {
                        assert!(bytes.len() < 300_000, "{}: {} bytes", f.path, bytes.len());
                    }
                }
                (MediaKind::Video { width, height, .. }, "video/mp4") => {
                    assert_eq!(&bytes[4..8], b"ftyp", "{}", f.path);
                    let moov = bytes.windows(4).position(|w| w == b"moov").unwrap();
                    let mdat = bytes.windows(4).position(|w| w == b"mdat").unwrap();
                    if moov < mdat {
                        front += 1
                    } else {
                        end += 1
                    }
                    let frame = super::super::mp4::first_frame(&f.content).expect("an indexed first frame");
                    let img = image::load_from_memory(&frame).unwrap();
                    assert_eq!((img.width(), img.height()), (*width, *height), "{}", f.path);
                    assert!(
                        bytes.len() > 1 << 20,
                        "{}: {} bytes for {:?}",
                        f.path,
                        bytes.len(),
                        f.kind
                    );
                }
                (MediaKind::Video { .. }, "video/x-msvideo") => {
                    assert!(super::super::avi::first_frame(&bytes).is_some(), "{}", f.path)
                }
                (kind, mime) => panic!("{}: {kind:?} {mime}", f.path),
            }
        }
        assert!(
            front > 0 && end > 0,
            "{front} videos indexed in front, {end} at the end"
        );
        // A state file records a video by its recipe: made again, it has the same bytes.
        let video = gallery.iter().find(|f| f.mime_type == "video/mp4").unwrap();
        let Content::Pieces(p) = &video.content else {
            panic!("a seed video is assembled from pieces")
        };
        let again = p.recipe.expect("a recipe").make();
        assert_eq!(
            again.read_range(0, again.len()),
            video.content.read_range(0, video.content.len())
        );
    }

    fn pool_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/emulator/media/pool")
    }

    #[test]
    #[ignore = "writes the pool assets; run after changing the picture generator"]
    fn regenerate_pool_assets() {
        let pool = generate_pool();
        let dir = pool_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (i, p) in pool.photos.iter().enumerate() {
            std::fs::write(dir.join(format!("photo_{i:02}.jpg")), &p.jpeg).unwrap();
        }
        std::fs::write(dir.join("clip.avi"), super::super::avi::demo_clip()).unwrap();
        for (i, (jpeg, png)) in pool.screenshots_jpeg.iter().zip(&pool.screenshots_png).enumerate() {
            std::fs::write(dir.join(format!("screen_{i}.jpg")), jpeg).unwrap();
            std::fs::write(dir.join(format!("screen_{i}.png")), png).unwrap();
        }
    }

    #[test]
    fn pool_assets_are_distinct_pictures_of_the_stated_sizes() {
        let pool = pool();
        let mut seen = std::collections::HashSet::new();
        for p in &pool.photos {
            let img = image::load_from_memory_with_format(&p.jpeg, image::ImageFormat::Jpeg).unwrap();
            assert_eq!((img.width(), img.height()), (p.width, p.height));
            assert!(seen.insert(img.to_rgb8().into_raw()), "two pool photos look the same");
        }
        for (jpeg, png) in pool.screenshots_jpeg.iter().zip(&pool.screenshots_png) {
            let a = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg).unwrap();
            let b = image::load_from_memory_with_format(png, image::ImageFormat::Png).unwrap();
            assert_eq!((a.width(), a.height()), SCREENSHOT_SIZE);
            assert_eq!((b.width(), b.height()), SCREENSHOT_SIZE);
        }
    }

    #[test]
    fn the_generator_makes_photos_of_the_pool_sizes() {
        let mut rng = SplitMix64::new(1);
        let img = picture(64, 48, &mut rng);
        assert_eq!(img.dimensions(), (64, 48));
        let other = picture(64, 48, &mut rng);
        assert_ne!(img, other, "pictures vary with the generator state");
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn seeding_500_items_is_fast() {
        let t = std::time::Instant::now();
        let gallery = samsung_gallery(500, 42);
        let elapsed = t.elapsed();
        assert_eq!(gallery.len(), 500);
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    }
}
