//! A minimal EXIF writer: builds the APP1 `Exif` segment (little-endian TIFF, IFD0 + Exif IFD) a phone camera
//! puts in its JPEGs, and inserts it after the JPEG's SOI marker. Only the tags the emulator needs.

use chrono::{DateTime, Utc};

/// The EXIF facts of one emulated camera photo.
#[derive(Clone, Debug, PartialEq)]
pub struct ExifFacts {
    pub make: String,
    pub model: String,
    pub taken: DateTime<Utc>,
    /// TIFF orientation 1..=8.
    pub orientation: u16,
    pub width: u32,
    pub height: u32,
    /// `ImageUniqueID` (as Samsung cameras write it): tells apart the shots of a burst, taken the same second.
    pub unique_id: u64,
}

const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;

struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    /// Value bytes (little-endian); stored inline when ≤ 4 bytes, else in the data area.
    value: Vec<u8>,
}

fn ascii(tag: u16, s: &str) -> Entry {
    let mut value = s.as_bytes().to_vec();
    value.push(0);
    Entry {
        tag,
        kind: ASCII,
        count: value.len() as u32,
        value,
    }
}

fn short(tag: u16, v: u16) -> Entry {
    Entry {
        tag,
        kind: SHORT,
        count: 1,
        value: v.to_le_bytes().to_vec(),
    }
}

fn long(tag: u16, v: u32) -> Entry {
    Entry {
        tag,
        kind: LONG,
        count: 1,
        value: v.to_le_bytes().to_vec(),
    }
}

/// Writes one IFD at `start` (an offset from the TIFF header) into `out`; out-of-line values follow the IFD.
fn write_ifd(out: &mut Vec<u8>, start: u32, mut entries: Vec<Entry>) {
    entries.sort_by_key(|e| e.tag);
    let ifd_len = 2 + 12 * entries.len() as u32 + 4;
    let mut data_offset = start + ifd_len;
    let mut data = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for e in &entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.kind.to_le_bytes());
        out.extend_from_slice(&e.count.to_le_bytes());
        if e.value.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..e.value.len()].copy_from_slice(&e.value);
            out.extend_from_slice(&inline);
        } else {
            out.extend_from_slice(&data_offset.to_le_bytes());
            data.extend_from_slice(&e.value);
            if data.len() % 2 == 1 {
                data.push(0); // values start on word boundaries
            }
            data_offset = start + ifd_len + data.len() as u32;
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    out.extend_from_slice(&data);
}

/// The TIFF block (header + IFD0 + Exif IFD) for `facts`.
pub fn tiff_block(facts: &ExifFacts) -> Vec<u8> {
    let date = facts.taken.format("%Y:%m:%d %H:%M:%S").to_string();
    let ifd0 = |exif_offset: u32| {
        vec![
            ascii(0x010F, &facts.make),
            ascii(0x0110, &facts.model),
            short(0x0112, facts.orientation),
            ascii(0x0131, "G991BXXU5CVF1"),
            ascii(0x0132, &date),
            long(0x8769, exif_offset),
        ]
    };
    // Lay out IFD0 once to learn its length, then place the Exif IFD right after it.
    let mut probe = Vec::new();
    write_ifd(&mut probe, 8, ifd0(0));
    let exif_offset = 8 + probe.len() as u32;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"II");
    out.extend_from_slice(&42u16.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    write_ifd(&mut out, 8, ifd0(exif_offset));
    write_ifd(
        &mut out,
        exif_offset,
        vec![
            ascii(0x9003, &date),
            ascii(0x9004, &date),
            long(0xA002, facts.width),
            long(0xA003, facts.height),
            ascii(0xA420, &format!("{:032X}", facts.unique_id)),
        ],
    );
    out
}

/// `jpeg` with an APP1 EXIF segment for `facts` inserted right after SOI (where phone cameras put it).
pub fn insert_exif(jpeg: &[u8], facts: &ExifFacts) -> Vec<u8> {
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let segment = exif_segment(facts);
    let mut out = Vec::with_capacity(jpeg.len() + segment.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The APP1 EXIF segment for `facts` (marker, length, `Exif\0\0`, TIFF block).
pub fn exif_segment(facts: &ExifFacts) -> Vec<u8> {
    let tiff = tiff_block(facts);
    let segment_len = (2 + 6 + tiff.len()) as u16;
    let mut out = Vec::with_capacity(tiff.len() + 10);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&segment_len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(&tiff);
    out
}

/// The EXIF orientation of a JPEG (1 when absent or unreadable).
pub fn read_orientation(jpeg: &[u8]) -> u16 {
    let mut cursor = std::io::Cursor::new(jpeg);
    exif::Reader::new()
        .read_from_container(&mut cursor)
        .ok()
        .and_then(|e| {
            e.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .and_then(|f| f.value.get_uint(0))
        })
        .map(|v| v as u16)
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn kamadak_exif_reads_what_we_write() {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([10, 200, 30]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&img)
            .unwrap();
        let facts = ExifFacts {
            make: "samsung".into(),
            model: "SM-S921B".into(),
            taken: Utc.with_ymd_and_hms(2024, 3, 15, 14, 22, 33).unwrap(),
            orientation: 6,
            width: 16,
            height: 8,
            unique_id: 7,
        };
        let with_exif = insert_exif(&jpeg, &facts);
        let exif = exif::Reader::new()
            .read_from_container(&mut std::io::Cursor::new(&with_exif))
            .expect("EXIF readable");
        let text = |tag| {
            exif.get_field(tag, exif::In::PRIMARY)
                .unwrap()
                .display_value()
                .to_string()
        };
        assert_eq!(text(exif::Tag::Make), "\"samsung\"");
        assert_eq!(text(exif::Tag::Model), "\"SM-S921B\"");
        assert_eq!(text(exif::Tag::DateTimeOriginal), "2024-03-15 14:22:33");
        let orientation = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY).unwrap();
        assert_eq!(orientation.value.get_uint(0), Some(6));
        let width = exif.get_field(exif::Tag::PixelXDimension, exif::In::PRIMARY).unwrap();
        assert_eq!(width.value.get_uint(0), Some(16));
        assert_eq!(read_orientation(&with_exif), 6);
        // Still a decodable JPEG.
        let decoded = image::load_from_memory(&with_exif).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 8));
    }
}
