//! Full-size camera photos made from real Samsung phone JPEGs (`tests/data/photos`, free to use; see the
//! MANIFEST there):
//! each photo is the source's own bytes with its EXIF segment replaced by one carrying the photo's date and
//! `ImageUniqueID` (so every file is distinct and its date matches its name). The source's bytes before and
//! after that segment are shared by every photo made from it, so a photo costs only its few hundred bytes of EXIF.

use super::exif_writer::{exif_segment, read_orientation, ExifFacts};
use super::{Content, Pieces, Recipe};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use image::DynamicImage;
use std::sync::{Mutex, OnceLock};

/// The source JPEGs: photos of 1.9-4.2 MB from three Samsung phones (the smaller samples there would not look
/// like a phone camera's photo).
static SOURCE_FILES: [&[u8]; SOURCES] = [
    include_bytes!("../../../tests/data/photos/samsung_gt-i9505.jpg"),
    include_bytes!("../../../tests/data/photos/samsung_sm-n900a.jpg"),
    include_bytes!("../../../tests/data/photos/samsung_sm-g935l.jpg"),
];

/// How many source photos there are.
pub const SOURCES: usize = 3;

/// One source photo, split around its EXIF segment.
pub struct Source {
    pub make: String,
    pub model: String,
    /// Stored pixel size (before the orientation is applied).
    pub width: u32,
    pub height: u32,
    pub orientation: u16,
    /// From SOI up to the EXIF segment (SOI and a JFIF APP0 when there is one).
    before: Bytes,
    /// Everything after the EXIF segment (tables, scan, trailer).
    after: Bytes,
}

/// The sources, parsed once per process (no copies: the parts borrow the binary's static bytes).
pub fn sources() -> &'static [Source] {
    static SOURCES: OnceLock<Vec<Source>> = OnceLock::new();
    SOURCES.get_or_init(|| SOURCE_FILES.iter().map(|b| parse(b)).collect())
}

fn parse(jpeg: &'static [u8]) -> Source {
    let (start, end) = exif_span(jpeg).expect("a source photo has an EXIF segment");
    let exif = exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(jpeg))
        .expect("a source photo's EXIF is readable");
    let text = |tag| {
        exif.get_field(tag, exif::In::PRIMARY)
            .map(|f| match &f.value {
                exif::Value::Ascii(v) => v
                    .first()
                    .map(|s| String::from_utf8_lossy(s).trim().to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .unwrap_or_default()
    };
    let (width, height) = image::ImageReader::with_format(std::io::Cursor::new(jpeg), image::ImageFormat::Jpeg)
        .into_dimensions()
        .expect("a source photo's size");
    Source {
        make: text(exif::Tag::Make),
        model: text(exif::Tag::Model),
        width,
        height,
        orientation: read_orientation(jpeg),
        before: Bytes::from_static(&jpeg[..start]),
        after: Bytes::from_static(&jpeg[end..]),
    }
}

/// The byte range of the first APP1 `Exif` segment among the segments before the first scan.
fn exif_span(jpeg: &[u8]) -> Option<(usize, usize)> {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let end = at + 2 + len;
        if marker == 0xE1 && jpeg.get(at + 4..at + 10) == Some(b"Exif\0\0") {
            return Some((at, end));
        }
        at = end;
    }
    None
}

/// The camera photo made from source `source` (taken modulo the number of sources), dated `taken_unix`, with
/// `ImageUniqueID` `unique_id`.
pub fn phone_photo(source: usize, taken_unix: i64, unique_id: u64) -> Content {
    let source = source % SOURCES;
    let s = &sources()[source];
    let taken: DateTime<Utc> = DateTime::from_timestamp(taken_unix, 0).unwrap_or_default();
    let exif = exif_segment(&ExifFacts {
        make: s.make.clone(),
        model: s.model.clone(),
        taken,
        orientation: s.orientation,
        width: s.width,
        height: s.height,
        unique_id,
    });
    Content::Pieces(Pieces::new(
        vec![s.before.clone(), Bytes::from(exif), s.after.clone()],
        Some(Recipe::PhonePhoto {
            source,
            taken_unix,
            unique_id,
        }),
    ))
}

/// Source `source` decoded and turned upright, scaled to fit 1024×1024: what thumbnails of its photos are made
/// from. Decoded once per process, one at a time (a full-size decode takes ~30 MB and a few hundred
/// milliseconds; concurrent thumbnail requests wait for the first instead of decoding the same source again).
pub fn preview(source: usize) -> Option<DynamicImage> {
    static PREVIEWS: OnceLock<Mutex<Vec<Option<DynamicImage>>>> = OnceLock::new();
    let cache = PREVIEWS.get_or_init(|| Mutex::new(vec![None; SOURCES]));
    let source = source % SOURCES;
    let mut cache = cache.lock().ok()?;
    if cache[source].is_none() {
        let img = image::load_from_memory_with_format(SOURCE_FILES[source], image::ImageFormat::Jpeg).ok()?;
        cache[source] = Some(super::raster::upright(img, sources()[source].orientation).thumbnail(1024, 1024));
    }
    cache[source].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_full_size_phone_photos() {
        for s in sources() {
            assert!(
                s.width * s.height >= 8_000_000,
                "{} {}: {}x{}",
                s.make,
                s.model,
                s.width,
                s.height
            );
            assert!(s.make.eq_ignore_ascii_case("samsung"), "{}", s.make);
            assert!(!s.model.is_empty());
            assert!(s.before.len() + s.after.len() > 1_000_000, "{}", s.model);
        }
    }

    #[test]
    fn a_photo_is_its_source_with_new_exif_and_decodes() {
        use chrono::TimeZone;
        let taken = Utc.with_ymd_and_hms(2023, 5, 6, 7, 8, 9).unwrap();
        let content = phone_photo(4, taken.timestamp(), 42);
        let bytes = content.read_range(0, content.len());
        assert!(bytes.len() > 1_000_000);
        let exif = exif::Reader::new()
            .read_from_container(&mut std::io::Cursor::new(&bytes[..]))
            .unwrap();
        let date = exif.get_field(exif::Tag::DateTimeOriginal, exif::In::PRIMARY).unwrap();
        assert_eq!(date.display_value().to_string(), "2023-05-06 07:08:09");
        let id = exif.get_field(exif::Tag::ImageUniqueID, exif::In::PRIMARY).unwrap();
        assert!(id.display_value().to_string().contains(&format!("{:032X}", 42)));
        let img = image::load_from_memory(&bytes).unwrap();
        let s = &sources()[1];
        assert_eq!((img.width(), img.height()), (s.width, s.height));
        let other = phone_photo(1, taken.timestamp(), 43);
        assert_ne!(other.read_range(0, other.len()), bytes);
        assert_eq!(other.len(), content.len());
        let Content::Pieces(p) = &content else { panic!() };
        let again = p.recipe.unwrap().make();
        assert_eq!(again.read_range(0, again.len()), bytes);
    }

    #[test]
    fn thumbnails_come_from_the_source_pixels() {
        let content = phone_photo(2, 1_700_000_000, 1);
        let (jpeg, w, h) = super::super::render_thumbnail(&content, "image/jpeg", 256, 256, false).unwrap();
        // A 4:3 source, where the stand-in poster would be 16:9.
        let s = &sources()[2];
        assert_eq!(s.width * 3, s.height * 4);
        // Fits inside 256x256 with the source's aspect (not a poster's 16:9 or 4:3 stand-in).
        assert_eq!(w.max(h), 256);
        let expected = if s.width > s.height {
            (256, 256 * s.height / s.width)
        } else {
            (256 * s.width / s.height, 256)
        };
        assert!(
            w.abs_diff(expected.0) <= 1 && h.abs_diff(expected.1) <= 1,
            "{w}x{h} for {expected:?}"
        );
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (w, h));
    }
}
