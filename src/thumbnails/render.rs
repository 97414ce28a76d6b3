//! Turning a source thumbnail (OneDrive's JPEG, or a PNG) into a freedesktop thumbnail PNG, and reading the
//! `tEXt` attributes of such a PNG back.
//!
//! Output: an 8-bit RGB (RGBA when the source has alpha) PNG whose longest edge is at most the size's pixels,
//! never scaled up (spec, "Thumbnail Size": a smaller original is stored at its own size), with EXIF orientation
//! applied, carrying `tEXt` chunks before the image data: `Thumb::URI`, `Thumb::MTime`, `Software`, and when known
//! `Thumb::Size`, `Thumb::Mimetype`, `Thumb::Image::Width`, `Thumb::Image::Height`.
//!
//! `Thumb::Size` is the size in bytes of the *original file* (spec "Thumbnail Attributes"); GLib's
//! `thumbnail-verify.c` rejects a thumbnail whose `Thumb::Size` differs from the file's `st_size`, so pass it only
//! when it is exactly what the mount reports.

use std::io::Cursor;

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::{ThumbError, ThumbSize};

/// Value of the `Software` key.
pub const SOFTWARE: &str = "galleryfs";

/// Largest source (either edge) accepted for decoding. OneDrive thumbnails are at most 800 px (`large`) or the
/// custom size asked for; a header claiming more is hostile (a 458-byte JPEG claiming 16000×16000 took 21 s and
/// most of a GiB to decode under the old 16384 limit).
const MAX_SOURCE_EDGE: u32 = 4_096;
/// Most memory the decoder may allocate for one source (a 4096×4096 RGBA image).
const MAX_SOURCE_ALLOC: u64 = 64 * 1024 * 1024;

/// What is known about the original beyond its URI and mtime. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThumbExtra {
    /// `Thumb::Size`: the original file's size in bytes (must equal its `st_size` in the mount).
    pub original_size: Option<u64>,
    /// `Thumb::Mimetype` of the original, e.g. `image/jpeg`.
    pub mimetype: Option<String>,
    /// `Thumb::Image::Width` / `Thumb::Image::Height` of the original, when OneDrive's `image` facet gave them.
    pub image_width: Option<u32>,
    pub image_height: Option<u32>,
    /// EXIF orientation (1–8) to apply to the *source* pixels instead of the orientation embedded in the source.
    /// `None` = use the source's own EXIF orientation (OneDrive thumbnails are normally already upright and carry
    /// none). Values outside 1–8 are ignored.
    pub orientation: Option<u16>,
}

/// Renders `source` (JPEG or PNG bytes) as a thumbnail PNG for `size`, labelled with `uri` and `mtime_secs`.
pub fn render_png(
    source: &[u8],
    size: ThumbSize,
    uri: &str,
    mtime_secs: i64,
    extra: &ThumbExtra,
) -> Result<Vec<u8>, ThumbError> {
    prepare_png(source, size, extra.orientation)?.labelled(uri, mtime_secs, extra)
}

/// A thumbnail decoded, fitted and compressed once: a PNG without text chunks, labelled for each URI it is
/// stored under by [`PreparedPng::labelled`] (a photo shown in its album and in the Timeline costs one encode).
#[derive(Clone, Debug)]
pub struct PreparedPng {
    /// A complete PNG whose first chunk is `IHDR` and which has no `tEXt`.
    unlabelled: Vec<u8>,
}

/// PNG signature and the `IHDR` chunk (4 length + 4 type + 13 data + 4 CRC): where the labels go.
const AFTER_IHDR: usize = 8 + 25;

/// Decodes `source`, applies the orientation, fits it within `size` (no resize when it already fits) and
/// compresses it, for [`PreparedPng::labelled`].
pub fn prepare_png(source: &[u8], size: ThumbSize, orientation: Option<u16>) -> Result<PreparedPng, ThumbError> {
    if source.is_empty() {
        return Err(ThumbError::EmptySource);
    }
    let mut image = decode_upright(source, orientation)?;
    let (width, height) = fit_within(image.width(), image.height(), size.pixels());
    if (width, height) != (image.width(), image.height()) {
        image = image.resize_exact(width, height, FilterType::Triangle);
    }
    let unlabelled = if image.color().has_alpha() {
        encode_png(width, height, png::ColorType::Rgba, &image.into_rgba8().into_raw(), &[])?
    } else {
        encode_png(width, height, png::ColorType::Rgb, &image.into_rgb8().into_raw(), &[])?
    };
    Ok(PreparedPng { unlabelled })
}

impl PreparedPng {
    /// The thumbnail labelled with `uri`, `mtime_secs` and `extra` (its `orientation` is not used here): the
    /// `tEXt` chunks right after `IHDR`, before the image data, as [`render_png`] writes them.
    pub fn labelled(&self, uri: &str, mtime_secs: i64, extra: &ThumbExtra) -> Result<Vec<u8>, ThumbError> {
        let texts = text_chunks(uri, mtime_secs, extra);
        check_ascii(&texts)?;
        // Made by `prepare_png` with the png encoder: signature, then IHDR, always.
        let head = &self.unlabelled[..AFTER_IHDR];
        debug_assert_eq!(&head[12..16], b"IHDR");
        let text_len: usize = texts.iter().map(|(k, v)| 12 + k.len() + 1 + v.len()).sum();
        let mut out = Vec::with_capacity(self.unlabelled.len() + text_len);
        out.extend_from_slice(head);
        for (key, value) in &texts {
            let mut data = Vec::with_capacity(key.len() + 1 + value.len());
            data.extend_from_slice(key.as_bytes());
            data.push(0);
            data.extend_from_slice(value.as_bytes());
            write_chunk(&mut out, b"tEXt", &data);
        }
        out.extend_from_slice(&self.unlabelled[AFTER_IHDR..]);
        Ok(out)
    }
}

/// Appends one PNG chunk: length, type, data, CRC-32 of type and data.
fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&[kind.as_slice(), data]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (ISO 3309, as PNG uses it) over the concatenation of `parts`.
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut c = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
    }
    c ^ 0xFFFF_FFFF
}

fn check_ascii(texts: &[(String, String)]) -> Result<(), ThumbError> {
    for (key, value) in texts {
        // tEXt is Latin-1; our values are ASCII by construction (escaped URIs, digits, MIME types).
        if !key.is_ascii() || !value.is_ascii() {
            return Err(ThumbError::NotAscii { key: key.clone() });
        }
    }
    Ok(())
}

/// The same thumbnail labelled for another URI and mtime (after a rename or move), pixels and other attributes
/// kept. Accepts any PNG; the result is 8-bit RGB or RGBA like [`render_png`]'s.
pub fn relabel_png(png_bytes: &[u8], uri: &str, mtime_secs: i64) -> Result<Vec<u8>, ThumbError> {
    let image = image::load_from_memory_with_format(png_bytes, image::ImageFormat::Png).map_err(ThumbError::Decode)?;
    let mut texts = vec![
        ("Thumb::URI".to_string(), uri.to_string()),
        ("Thumb::MTime".to_string(), mtime_secs.to_string()),
    ];
    texts.extend(
        read_text_chunks(png_bytes)
            .into_iter()
            .filter(|(key, _)| key != "Thumb::URI" && key != "Thumb::MTime"),
    );
    let (width, height) = (image.width(), image.height());
    if image.color().has_alpha() {
        encode_png(
            width,
            height,
            png::ColorType::Rgba,
            &image.into_rgba8().into_raw(),
            &texts,
        )
    } else {
        encode_png(
            width,
            height,
            png::ColorType::Rgb,
            &image.into_rgb8().into_raw(),
            &texts,
        )
    }
}

/// The spec's "empty PNG" recording that no thumbnail could be made: 1×1 transparent, with `Thumb::URI` and
/// `Thumb::MTime` (and `Software`), as GNOME's thumbnail factory writes it.
pub fn fail_marker_png(uri: &str, mtime_secs: i64) -> Result<Vec<u8>, ThumbError> {
    encode_png(
        1,
        1,
        png::ColorType::Rgba,
        &[0, 0, 0, 0],
        &text_chunks(uri, mtime_secs, &ThumbExtra::default()),
    )
}

/// Decodes the source and applies the orientation (explicit, else embedded EXIF).
fn decode_upright(source: &[u8], explicit: Option<u16>) -> Result<DynamicImage, ThumbError> {
    let mut reader = ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(ThumbError::Read)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_EDGE);
    limits.max_image_height = Some(MAX_SOURCE_EDGE);
    limits.max_alloc = Some(MAX_SOURCE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(ThumbError::Decode)?;
    let embedded = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(ThumbError::Decode)?;
    let orientation = match explicit {
        Some(value) => u8::try_from(value)
            .ok()
            .and_then(Orientation::from_exif)
            .unwrap_or_else(|| {
                tracing::debug!(value, "ignoring an EXIF orientation outside 1-8");
                embedded
            }),
        None => embedded,
    };
    image.apply_orientation(orientation);
    Ok(image)
}

/// Dimensions with the longest edge at most `max`, aspect kept (rounded, never below 1), never larger than given.
pub fn fit_within(width: u32, height: u32, max: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max || longest == 0 {
        return (width, height);
    }
    let scale = |edge: u32| ((u64::from(edge) * u64::from(max) + u64::from(longest) / 2) / u64::from(longest)) as u32;
    (scale(width).clamp(1, max), scale(height).clamp(1, max))
}

fn text_chunks(uri: &str, mtime_secs: i64, extra: &ThumbExtra) -> Vec<(String, String)> {
    let mut chunks = vec![
        ("Thumb::URI", uri.to_string()),
        ("Thumb::MTime", mtime_secs.to_string()),
    ];
    if let Some(bytes) = extra.original_size {
        chunks.push(("Thumb::Size", bytes.to_string()));
    }
    if let Some(mimetype) = &extra.mimetype {
        chunks.push(("Thumb::Mimetype", mimetype.clone()));
    }
    if let Some(width) = extra.image_width {
        chunks.push(("Thumb::Image::Width", width.to_string()));
    }
    if let Some(height) = extra.image_height {
        chunks.push(("Thumb::Image::Height", height.to_string()));
    }
    chunks.push(("Software", SOFTWARE.to_string()));
    chunks
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

fn encode_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    pixels: &[u8],
    texts: &[(String, String)],
) -> Result<Vec<u8>, ThumbError> {
    check_ascii(texts)?;
    let mut out = Vec::with_capacity(pixels.len() / 2 + 512);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    // Thumbnails are small and many: fast deflate costs a few percent in size and saves most of the CPU.
    encoder.set_compression(png::Compression::Fast);
    for (key, value) in texts {
        encoder
            .add_text_chunk(key.clone(), value.clone())
            .map_err(ThumbError::Encode)?;
    }
    let mut writer = encoder.write_header().map_err(ThumbError::Encode)?;
    writer.write_image_data(pixels).map_err(ThumbError::Encode)?;
    writer.finish().map_err(ThumbError::Encode)?;
    Ok(out)
}

/// Every `tEXt` chunk of a PNG, in file order, as (keyword, text) with Latin-1 decoded. Scans the chunk list the
/// way GLib's `thumbnail-verify.c` does (no decompression, CRCs ignored); stops at `IEND` or at a truncated chunk.
pub fn read_text_chunks(png_bytes: &[u8]) -> Vec<(String, String)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let mut out = Vec::new();
    let Some(mut rest) = png_bytes.strip_prefix(SIGNATURE) else {
        return out;
    };
    while rest.len() >= 12 {
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = &rest[4..8];
        let Some(data) = rest.get(8..8 + length) else {
            break;
        };
        if kind == b"tEXt" {
            if let Some(split) = data.iter().position(|&b| b == 0) {
                let latin1 = |bytes: &[u8]| bytes.iter().map(|&b| b as char).collect::<String>();
                out.push((latin1(&data[..split]), latin1(&data[split + 1..])));
            }
        } else if kind == b"IEND" {
            break;
        }
        match rest.get(12 + length..) {
            Some(next) => rest = next,
            None => break,
        }
    }
    out
}

/// The value of the first `tEXt` chunk named `key`.
pub fn read_text(png_bytes: &[u8], key: &str) -> Option<String> {
    read_text_chunks(png_bytes)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image)
            .write_to(&mut out, ImageFormat::Jpeg)
            .unwrap();
        out.into_inner()
    }

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>, Vec<(String, String)>) {
        let decoder = png::Decoder::new(Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let texts = reader
            .info()
            .uncompressed_latin1_text
            .iter()
            .map(|chunk| (chunk.keyword.clone(), chunk.text.clone()))
            .collect();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf, texts)
    }

    #[test]
    fn fit_within_keeps_aspect_and_never_upscales() {
        assert_eq!(fit_within(4000, 3000, 128), (128, 96));
        assert_eq!(fit_within(4000, 3000, 256), (256, 192));
        assert_eq!(fit_within(3000, 4000, 256), (192, 256));
        assert_eq!(fit_within(100, 50, 256), (100, 50));
        assert_eq!(fit_within(10_000, 1, 128), (128, 1));
        assert_eq!(fit_within(256, 256, 256), (256, 256));
        assert_eq!(fit_within(257, 100, 256), (256, 100));
    }

    #[test]
    fn tiny_source_keeps_its_size() {
        let out = render_png(
            &jpeg(40, 30),
            ThumbSize::Large,
            "file:///x.jpg",
            5,
            &ThumbExtra::default(),
        )
        .unwrap();
        let (info, _, _) = decode(&out);
        assert_eq!((info.width, info.height), (40, 30));
    }

    #[test]
    fn text_chunks_come_before_image_data_and_round_trip() {
        let extra = ThumbExtra {
            original_size: Some(1_234_567),
            mimetype: Some("image/jpeg".into()),
            image_width: Some(4000),
            image_height: Some(3000),
            orientation: None,
        };
        let uri = "file:///mnt/g/a%20b.jpg";
        let out = render_png(&jpeg(320, 240), ThumbSize::Normal, uri, 1_700_000_000, &extra).unwrap();
        let (info, _, texts) = decode(&out); // png crate only reports tEXt seen before IDAT
        assert_eq!((info.width, info.height), (128, 96));
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let expected: Vec<(String, String)> = [
            ("Thumb::URI", uri),
            ("Thumb::MTime", "1700000000"),
            ("Thumb::Size", "1234567"),
            ("Thumb::Mimetype", "image/jpeg"),
            ("Thumb::Image::Width", "4000"),
            ("Thumb::Image::Height", "3000"),
            ("Software", "galleryfs"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(texts, expected);
        assert_eq!(read_text_chunks(&out), expected);
        assert_eq!(read_text(&out, "Thumb::MTime").as_deref(), Some("1700000000"));
    }

    #[test]
    fn one_prepared_png_labelled_twice_decodes_with_each_label() {
        let prepared = prepare_png(&jpeg(300, 200), ThumbSize::Normal, None).unwrap();
        let extra = ThumbExtra {
            mimetype: Some("image/jpeg".into()),
            ..Default::default()
        };
        let a = prepared.labelled("file:///m/a.jpg", 7, &extra).unwrap();
        let b = prepared.labelled("file:///m/Timeline/2024/a.jpg", 7, &extra).unwrap();
        assert_eq!(
            a,
            render_png(&jpeg(300, 200), ThumbSize::Normal, "file:///m/a.jpg", 7, &extra).unwrap()
        );
        let (info_a, pixels_a, texts_a) = decode(&a);
        let (info_b, pixels_b, texts_b) = decode(&b);
        assert_eq!((info_a.width, info_a.height), (128, 85));
        assert_eq!((info_b.width, info_b.height), (128, 85));
        assert_eq!(pixels_a, pixels_b);
        assert_eq!(texts_a[0].1, "file:///m/a.jpg");
        assert_eq!(texts_b[0].1, "file:///m/Timeline/2024/a.jpg");
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082, "the CRC of an empty IEND chunk");
    }

    #[test]
    fn alpha_png_source_stays_rgba() {
        let image = RgbaImage::from_pixel(300, 100, Rgba([10, 20, 30, 40]));
        let mut src = Cursor::new(Vec::new());
        DynamicImage::ImageRgba8(image)
            .write_to(&mut src, ImageFormat::Png)
            .unwrap();
        let out = render_png(
            src.get_ref(),
            ThumbSize::Normal,
            "file:///a.png",
            1,
            &ThumbExtra::default(),
        )
        .unwrap();
        let (info, pixels, _) = decode(&out);
        assert_eq!(info.color_type, png::ColorType::Rgba);
        assert_eq!((info.width, info.height), (128, 43));
        assert_eq!(&pixels[..4], &[10, 20, 30, 40]);
    }

    #[test]
    fn explicit_orientation_rotates_and_invalid_values_are_ignored() {
        let src = jpeg(200, 100);
        let rotated = ThumbExtra {
            orientation: Some(6),
            ..Default::default()
        };
        let (info, _, _) = decode(&render_png(&src, ThumbSize::Large, "u", 1, &rotated).unwrap());
        assert_eq!((info.width, info.height), (100, 200));
        let bogus = ThumbExtra {
            orientation: Some(42),
            ..Default::default()
        };
        let (info, _, _) = decode(&render_png(&src, ThumbSize::Large, "u", 1, &bogus).unwrap());
        assert_eq!((info.width, info.height), (200, 100));
    }

    #[test]
    fn garbage_and_empty_sources_are_errors() {
        assert!(matches!(
            render_png(b"", ThumbSize::Normal, "u", 1, &ThumbExtra::default()),
            Err(ThumbError::EmptySource)
        ));
        assert!(render_png(
            b"not an image at all",
            ThumbSize::Normal,
            "u",
            1,
            &ThumbExtra::default()
        )
        .is_err());
        let mut truncated = jpeg(64, 64);
        truncated.truncate(100);
        assert!(render_png(&truncated, ThumbSize::Normal, "u", 1, &ThumbExtra::default()).is_err());
    }

    #[test]
    fn non_ascii_text_is_refused() {
        let err = render_png(
            &jpeg(8, 8),
            ThumbSize::Normal,
            "file:///Ü.jpg",
            1,
            &ThumbExtra::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ThumbError::NotAscii { key } if key == "Thumb::URI"));
    }

    #[test]
    fn fail_marker_is_a_1x1_png_with_uri_and_mtime() {
        let out = fail_marker_png("file:///x/y.heic", 42).unwrap();
        let (info, _, texts) = decode(&out);
        assert_eq!((info.width, info.height), (1, 1));
        assert_eq!(texts[0], ("Thumb::URI".to_string(), "file:///x/y.heic".to_string()));
        assert_eq!(texts[1], ("Thumb::MTime".to_string(), "42".to_string()));
    }

    #[test]
    fn relabel_keeps_pixels_and_attributes_but_changes_uri_and_mtime() {
        let extra = ThumbExtra {
            original_size: Some(99),
            mimetype: Some("image/jpeg".into()),
            ..Default::default()
        };
        let before = render_png(&jpeg(300, 200), ThumbSize::Normal, "file:///old.jpg", 5, &extra).unwrap();
        let after = relabel_png(&before, "file:///new%20name.jpg", 6).unwrap();
        let (info_before, pixels_before, _) = decode(&before);
        let (info_after, pixels_after, texts) = decode(&after);
        assert_eq!(
            (info_after.width, info_after.height),
            (info_before.width, info_before.height)
        );
        assert_eq!(pixels_after, pixels_before);
        let get = |key: &str| texts.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("Thumb::URI"), Some("file:///new%20name.jpg"));
        assert_eq!(get("Thumb::MTime"), Some("6"));
        assert_eq!(get("Thumb::Size"), Some("99"));
        assert_eq!(texts.iter().filter(|(k, _)| k == "Thumb::URI").count(), 1);
    }

    #[test]
    fn text_reader_tolerates_junk() {
        assert!(read_text_chunks(b"").is_empty());
        assert!(read_text_chunks(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xffIHDR").is_empty());
        let out = fail_marker_png("u", 1).unwrap();
        assert_eq!(read_text_chunks(&out[..out.len() - 20]).len(), 3);
    }
}
