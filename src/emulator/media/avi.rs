//! A tiny Motion-JPEG AVI writer (RIFF `AVI ` with one `vids`/`MJPG` stream and an `idx1` index), for the one
//! real playable video of the seed gallery (`media/pool/clip.avi`, made by [`demo_clip`]).

use super::raster::{encode_jpeg, SplitMix64};
use image::{imageops, Rgb, RgbImage};

fn fourcc(out: &mut Vec<u8>, code: &[u8; 4]) {
    out.extend_from_slice(code);
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a chunk `id` + size + `data` (+ pad byte to an even length).
fn chunk(out: &mut Vec<u8>, id: &[u8; 4], data: &[u8]) {
    fourcc(out, id);
    u32le(out, data.len() as u32);
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

/// Appends `LIST` + size + `kind` + `body`.
fn list(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    fourcc(out, b"LIST");
    u32le(out, (body.len() + 4) as u32);
    fourcc(out, kind);
    out.extend_from_slice(body);
}

/// An AVI file of JPEG `frames` (all `width`×`height`) played at `fps`.
pub fn mjpeg_avi(frames: &[Vec<u8>], width: u32, height: u32, fps: u32) -> Vec<u8> {
    let max_frame = frames.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let count = frames.len() as u32;

    let mut avih = Vec::with_capacity(56);
    for v in [
        1_000_000 / fps, // dwMicroSecPerFrame
        max_frame * fps, // dwMaxBytesPerSec
        0,               // dwPaddingGranularity
        0x10,            // dwFlags: AVIF_HASINDEX
        count,           // dwTotalFrames
        0,               // dwInitialFrames
        1,               // dwStreams
        max_frame + 8,   // dwSuggestedBufferSize
        width,           // dwWidth
        height,          // dwHeight
        0,
        0,
        0,
        0, // dwReserved
    ] {
        u32le(&mut avih, v);
    }

    let mut strh = Vec::with_capacity(56);
    fourcc(&mut strh, b"vids");
    fourcc(&mut strh, b"MJPG");
    for v in [0, 0, 0, 1, fps, 0, count, max_frame + 8, u32::MAX, 0] {
        // dwFlags, wPriority+wLanguage, dwInitialFrames, dwScale, dwRate, dwStart, dwLength,
        // dwSuggestedBufferSize, dwQuality (-1 = default), dwSampleSize
        u32le(&mut strh, v);
    }
    for v in [0u16, 0, width as u16, height as u16] {
        strh.extend_from_slice(&v.to_le_bytes()); // rcFrame
    }

    let mut strf = Vec::with_capacity(40);
    u32le(&mut strf, 40); // biSize
    u32le(&mut strf, width);
    u32le(&mut strf, height);
    strf.extend_from_slice(&1u16.to_le_bytes()); // biPlanes
    strf.extend_from_slice(&24u16.to_le_bytes()); // biBitCount
    fourcc(&mut strf, b"MJPG");
    for v in [width * height * 3, 0, 0, 0, 0] {
        u32le(&mut strf, v);
    }

    let mut strl = Vec::new();
    chunk(&mut strl, b"strh", &strh);
    chunk(&mut strl, b"strf", &strf);
    let mut hdrl = Vec::new();
    chunk(&mut hdrl, b"avih", &avih);
    list(&mut hdrl, b"strl", &strl);

    // movi: offsets in idx1 count from the `movi` fourcc.
    let mut movi = Vec::new();
    let mut index = Vec::with_capacity(frames.len() * 16);
    for frame in frames {
        let offset = 4 + movi.len() as u32;
        chunk(&mut movi, b"00dc", frame);
        fourcc(&mut index, b"00dc");
        u32le(&mut index, 0x10); // AVIIF_KEYFRAME
        u32le(&mut index, offset);
        u32le(&mut index, frame.len() as u32);
    }

    let mut body = Vec::new();
    fourcc(&mut body, b"AVI ");
    list(&mut body, b"hdrl", &hdrl);
    list(&mut body, b"movi", &movi);
    chunk(&mut body, b"idx1", &index);
    let mut out = Vec::with_capacity(body.len() + 8);
    fourcc(&mut out, b"RIFF");
    u32le(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}

/// Size, frame rate and length of the demo clip.
pub const CLIP_SIZE: (u32, u32) = (320, 240);
pub const CLIP_FPS: u32 = 12;
pub const CLIP_FRAMES: u32 = 36;

/// The demo clip: a ball crossing a colour field, three seconds of Motion JPEG.
pub fn demo_clip() -> Vec<u8> {
    let (w, h) = CLIP_SIZE;
    let mut rng = SplitMix64::new(0xC11B);
    let background = super::raster::picture(w, h, &mut rng);
    let frames: Vec<Vec<u8>> = (0..CLIP_FRAMES)
        .map(|i| {
            let mut frame = background.clone();
            let size = 40;
            let x = (i * (w - size) / (CLIP_FRAMES - 1)) as i64;
            let y = (h / 2 - size / 2) as i64;
            imageops::overlay(
                &mut frame,
                &RgbImage::from_pixel(size, size, Rgb([250, 250, 250])),
                x,
                y,
            );
            encode_jpeg(&frame, 80)
        })
        .collect();
    mjpeg_avi(&frames, w, h, CLIP_FPS)
}

/// The first frame's JPEG inside a Motion-JPEG AVI (for its thumbnail).
pub fn first_frame(avi: &[u8]) -> Option<&[u8]> {
    if avi.len() < 12 || &avi[..4] != b"RIFF" || &avi[8..12] != b"AVI " {
        return None;
    }
    let at = avi.windows(4).position(|w| w == b"00dc")?;
    let len = u32::from_le_bytes(avi.get(at + 4..at + 8)?.try_into().ok()?) as usize;
    avi.get(at + 8..at + 8 + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn avi_structure_is_consistent() {
        let frames: Vec<Vec<u8>> = (0..3u8)
            .map(|i| encode_jpeg(&RgbImage::from_pixel(16, 8, Rgb([i * 80, 0, 0])), 80))
            .collect();
        let avi = mjpeg_avi(&frames, 16, 8, 10);
        assert_eq!(&avi[..4], b"RIFF");
        assert_eq!(u32_at(&avi, 4) as usize, avi.len() - 8);
        assert_eq!(&avi[8..12], b"AVI ");
        // avih: total frames and size.
        let avih = avi.windows(4).position(|w| w == b"avih").unwrap() + 8;
        assert_eq!(u32_at(&avi, avih + 16), 3);
        assert_eq!((u32_at(&avi, avih + 32), u32_at(&avi, avih + 36)), (16, 8));
        // Every idx1 entry points at a 00dc chunk holding a decodable JPEG.
        let movi = avi.windows(4).position(|w| w == b"movi").unwrap();
        let idx = avi.windows(4).position(|w| w == b"idx1").unwrap();
        let entries = u32_at(&avi, idx + 4) as usize / 16;
        assert_eq!(entries, 3);
        for e in 0..entries {
            let base = idx + 8 + e * 16;
            let offset = u32_at(&avi, base + 8) as usize;
            let len = u32_at(&avi, base + 12) as usize;
            let at = movi + offset;
            assert_eq!(&avi[at..at + 4], b"00dc");
            assert_eq!(u32_at(&avi, at + 4) as usize, len);
            let img = image::load_from_memory(&avi[at + 8..at + 8 + len]).unwrap();
            assert_eq!((img.width(), img.height()), (16, 8));
        }
        assert_eq!(first_frame(&avi).unwrap(), frames[0].as_slice());
    }
}
