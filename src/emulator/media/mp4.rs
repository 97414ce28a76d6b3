//! A minimal MP4 (ISO base media file) writer for Motion-JPEG video: one `jpeg` video track, one sample per
//! chunk, every sample a key frame. The index (`moov`) goes in front of the media data (as a "fast start" file
//! that plays while it streams) or after it (as a phone writes it). The frames are shared [`Bytes`], so a
//! video of many repeated frames is [`Content::Pieces`] of its header and those frames, never stored whole.
//! [`first_frame`] reads the first frame back through the index (for poster thumbnails).

use super::{Content, Pieces, Recipe};
use bytes::Bytes;

fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// A full box: version 0 and `flags`, then `body`.
fn full_box(kind: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 4);
    b.extend_from_slice(&(flags & 0x00FF_FFFF).to_be_bytes());
    b.extend_from_slice(body);
    boxed(kind, &b)
}

fn be32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn be16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// The unity transformation matrix of `mvhd` and `tkhd`.
fn matrix(out: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        be32(out, v);
    }
}

/// Seconds from 1904-01-01 (the MP4 epoch) to `unix` seconds.
fn mp4_time(unix: i64) -> u32 {
    (unix + 2_082_844_800).clamp(0, i64::from(u32::MAX)) as u32
}

/// The `moov` box of a track of `sizes.len()` samples of `sizes[i]` bytes at `offsets[i]`.
fn moov(sizes: &[u32], offsets: &[u32], width: u16, height: u16, fps: u32, created_unix: i64) -> Vec<u8> {
    // A tick per millisecond of a frame: every frame lasts exactly `delta` ticks.
    let delta = 1000;
    let timescale = fps.max(1) * delta;
    let count = sizes.len() as u32;
    let duration = count * delta;
    let t = mp4_time(created_unix);

    let mut mvhd = Vec::new();
    for v in [t, t, timescale, duration, 0x0001_0000] {
        be32(&mut mvhd, v); // creation, modification, timescale, duration, rate 1.0
    }
    be16(&mut mvhd, 0x0100); // volume 1.0
    mvhd.extend_from_slice(&[0; 10]);
    matrix(&mut mvhd);
    mvhd.extend_from_slice(&[0; 24]); // pre_defined
    be32(&mut mvhd, 2); // next_track_ID

    let mut tkhd = Vec::new();
    for v in [t, t, 1, 0, duration, 0, 0] {
        be32(&mut tkhd, v); // creation, modification, track_ID, reserved, duration, reserved ×2
    }
    for v in [0u16, 0, 0, 0] {
        be16(&mut tkhd, v); // layer, alternate_group, volume (0: video), reserved
    }
    matrix(&mut tkhd);
    be32(&mut tkhd, u32::from(width) << 16);
    be32(&mut tkhd, u32::from(height) << 16);

    let mut mdhd = Vec::new();
    for v in [t, t, timescale, duration] {
        be32(&mut mdhd, v);
    }
    be16(&mut mdhd, 0x55C4); // language "und"
    be16(&mut mdhd, 0);

    let mut hdlr = Vec::new();
    be32(&mut hdlr, 0);
    hdlr.extend_from_slice(b"vide");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.extend_from_slice(b"VideoHandler\0");

    let mut vmhd = Vec::new();
    vmhd.extend_from_slice(&[0; 8]); // graphicsmode, opcolor

    let mut dref = Vec::new();
    be32(&mut dref, 1);
    dref.extend_from_slice(&full_box(b"url ", 1, &[])); // the media is in this file

    // VisualSampleEntry `jpeg` (Motion JPEG, as QuickTime and ffmpeg name it).
    let mut entry = Vec::new();
    entry.extend_from_slice(&[0; 6]);
    be16(&mut entry, 1); // data_reference_index
    entry.extend_from_slice(&[0; 16]); // pre_defined, reserved, pre_defined
    be16(&mut entry, width);
    be16(&mut entry, height);
    be32(&mut entry, 0x0048_0000); // 72 dpi
    be32(&mut entry, 0x0048_0000);
    be32(&mut entry, 0);
    be16(&mut entry, 1); // frame_count
    let mut name = [0u8; 32];
    let label = b"Photo - JPEG";
    name[0] = label.len() as u8;
    name[1..=label.len()].copy_from_slice(label);
    entry.extend_from_slice(&name);
    be16(&mut entry, 0x0018); // depth
    be16(&mut entry, 0xFFFF); // pre_defined -1
    let mut stsd = Vec::new();
    be32(&mut stsd, 1);
    stsd.extend_from_slice(&boxed(b"jpeg", &entry));

    let mut stts = Vec::new();
    for v in [1, count, delta] {
        be32(&mut stts, v);
    }
    let mut stsc = Vec::new();
    for v in [1, 1, 1, 1] {
        be32(&mut stsc, v); // one entry: from chunk 1, one sample per chunk, description 1
    }
    let mut stsz = Vec::new();
    be32(&mut stsz, 0);
    be32(&mut stsz, count);
    for s in sizes {
        be32(&mut stsz, *s);
    }
    let mut stco = Vec::new();
    be32(&mut stco, count);
    for o in offsets {
        be32(&mut stco, *o);
    }

    let stbl = [
        full_box(b"stsd", 0, &stsd),
        full_box(b"stts", 0, &stts),
        full_box(b"stsc", 0, &stsc),
        full_box(b"stsz", 0, &stsz),
        full_box(b"stco", 0, &stco),
    ]
    .concat();
    let minf = [
        full_box(b"vmhd", 1, &vmhd),
        boxed(b"dinf", &full_box(b"dref", 0, &dref)),
        boxed(b"stbl", &stbl),
    ]
    .concat();
    let mdia = [
        full_box(b"mdhd", 0, &mdhd),
        full_box(b"hdlr", 0, &hdlr),
        boxed(b"minf", &minf),
    ]
    .concat();
    let trak = [full_box(b"tkhd", 3, &tkhd), boxed(b"mdia", &mdia)].concat();
    boxed(b"moov", &[full_box(b"mvhd", 0, &mvhd), boxed(b"trak", &trak)].concat())
}

/// An MP4 of `samples` (JPEG frames, `width`×`height`, played at `fps`), the index in front when `moov_first`.
/// Frames may repeat: the same `Bytes` is shared, not copied. `recipe` says how to make it again, if it can be.
/// Panics past 4 GiB (32-bit chunk offsets).
pub fn mjpeg_mp4(
    samples: &[Bytes],
    (width, height): (u16, u16),
    fps: u32,
    moov_first: bool,
    created_unix: i64,
    recipe: Option<Recipe>,
) -> Content {
    let mut ftyp = Vec::new();
    ftyp.extend_from_slice(b"isom");
    be32(&mut ftyp, 0x200);
    for brand in [b"isom", b"iso2", b"mp41"] {
        ftyp.extend_from_slice(brand);
    }
    let ftyp = boxed(b"ftyp", &ftyp);
    let sizes: Vec<u32> = samples.iter().map(|s| s.len() as u32).collect();
    let media: u64 = sizes.iter().map(|s| u64::from(*s)).sum();
    let mdat_header = {
        let mut h = Vec::new();
        be32(&mut h, u32::try_from(media + 8).expect("an MP4 under 4 GiB"));
        h.extend_from_slice(b"mdat");
        h
    };
    let offsets_from = |base: u64| -> Vec<u32> {
        let mut at = base;
        sizes
            .iter()
            .map(|s| {
                let o = u32::try_from(at).expect("an MP4 under 4 GiB");
                at += u64::from(*s);
                o
            })
            .collect()
    };
    // The index's size does not depend on the offsets it holds: measure it, then write it with the real ones.
    let moov_len = moov(&sizes, &offsets_from(0), width, height, fps, created_unix).len() as u64;
    let base = ftyp.len() as u64 + if moov_first { moov_len } else { 0 } + 8;
    let index = Bytes::from(moov(&sizes, &offsets_from(base), width, height, fps, created_unix));
    let mut parts = Vec::with_capacity(samples.len() + 3);
    parts.push(Bytes::from(ftyp));
    if moov_first {
        parts.push(index.clone());
    }
    parts.push(Bytes::from(mdat_header));
    parts.extend(samples.iter().cloned());
    if !moov_first {
        parts.push(index);
    }
    Content::Pieces(Pieces::new(parts, recipe))
}

/// The top-level box `kind` of `content`: its offset and size.
fn find_top_box(content: &Content, kind: &[u8; 4]) -> Option<(u64, u64)> {
    let mut at = 0;
    while at + 8 <= content.len() {
        let head = content.read_range(at, at + 8);
        let size = u64::from(u32::from_be_bytes(head[..4].try_into().ok()?));
        if size < 8 {
            return None;
        }
        if &head[4..8] == kind {
            return Some((at, size));
        }
        at += size;
    }
    None
}

/// The box `kind` somewhere inside `data` (a box's body), by walking the container boxes on the way.
fn find_in(data: &[u8], kind: &[u8; 4]) -> Option<std::ops::Range<usize>> {
    const CONTAINERS: [&[u8; 4]; 5] = [b"trak", b"mdia", b"minf", b"stbl", b"dinf"];
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().ok()?) as usize;
        if size < 8 || at + size > data.len() {
            return None;
        }
        let this: &[u8; 4] = data[at + 4..at + 8].try_into().ok()?;
        if this == kind {
            return Some(at + 8..at + size);
        }
        if CONTAINERS.contains(&this) {
            if let Some(r) = find_in(&data[at + 8..at + size], kind) {
                return Some(r.start + at + 8..r.end + at + 8);
            }
        }
        at += size;
    }
    None
}

/// The first frame of an MP4 video, found through its index (`stco` and `stsz`), or `None` when `content` is not
/// such a file.
pub fn first_frame(content: &Content) -> Option<Bytes> {
    let (at, size) = find_top_box(content, b"moov")?;
    if size > 64 << 20 {
        return None;
    }
    let moov = content.read_range(at + 8, at + size);
    let stco = &moov[find_in(&moov, b"stco")?];
    let stsz = &moov[find_in(&moov, b"stsz")?];
    let offset = u64::from(u32::from_be_bytes(stco.get(8..12)?.try_into().ok()?));
    let fixed = u32::from_be_bytes(stsz.get(4..8)?.try_into().ok()?);
    let len = if fixed != 0 {
        fixed
    } else {
        u32::from_be_bytes(stsz.get(12..16)?.try_into().ok()?)
    };
    let end = offset + u64::from(len);
    (end <= content.len()).then(|| content.read_range(offset, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::media::raster::encode_jpeg;
    use image::{Rgb, RgbImage};

    fn frames() -> Vec<Bytes> {
        (0..3u8)
            .map(|i| Bytes::from(encode_jpeg(&RgbImage::from_pixel(32, 16, Rgb([i * 80, 10, 200])), 80)))
            .collect()
    }

    #[test]
    fn both_layouts_index_every_frame() {
        let frames = frames();
        let samples: Vec<Bytes> = (0..7).map(|i| frames[i % 3].clone()).collect();
        for moov_first in [true, false] {
            let mp4 = mjpeg_mp4(&samples, (32, 16), 12, moov_first, 1_700_000_000, None);
            let whole = mp4.read_range(0, mp4.len());
            assert_eq!(&whole[4..8], b"ftyp");
            let (moov_at, moov_len) = find_top_box(&mp4, b"moov").unwrap();
            let (mdat_at, mdat_len) = find_top_box(&mp4, b"mdat").unwrap();
            assert_eq!(moov_at < mdat_at, moov_first);
            let boxes_end = moov_at.max(mdat_at) + if moov_first { mdat_len } else { moov_len };
            assert_eq!(boxes_end, mp4.len(), "the top-level boxes cover the file");
            let moov = &whole[moov_at as usize + 8..(moov_at + moov_len) as usize];
            let stco = &moov[find_in(moov, b"stco").unwrap()];
            let stsz = &moov[find_in(moov, b"stsz").unwrap()];
            assert_eq!(u32::from_be_bytes(stco[4..8].try_into().unwrap()), 7);
            for (i, sample) in samples.iter().enumerate() {
                let o = u32::from_be_bytes(stco[8 + 4 * i..12 + 4 * i].try_into().unwrap()) as usize;
                let s = u32::from_be_bytes(stsz[12 + 4 * i..16 + 4 * i].try_into().unwrap()) as usize;
                assert!(o as u64 >= mdat_at + 8 && (o + s) as u64 <= mdat_at + mdat_len);
                assert_eq!(&whole[o..o + s], &sample[..]);
            }
            let first = first_frame(&mp4).unwrap();
            assert_eq!(first, frames[0]);
            let img = image::load_from_memory(&first).unwrap();
            assert_eq!((img.width(), img.height()), (32, 16));
        }
    }

    #[test]
    fn not_an_mp4_has_no_first_frame() {
        assert!(first_frame(&Content::Bytes(Bytes::from_static(b"hello world, no boxes"))).is_none());
        assert!(first_frame(&Content::Synthetic { seed: 1, len: 4096 }).is_none());
    }
}
