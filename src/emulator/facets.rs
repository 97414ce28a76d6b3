//! Media facets the service derives from uploaded content (OAD resources/image.md, resources/photo.md): image
//! dimensions from the file header and `photo` (taken time, camera) from EXIF, as a real drive shows them once
//! it has processed an upload from a phone or any client. Only JPEG and PNG are understood here.
//!
//! As on OneDrive, the `photo` facet of an upload arrives a little later ([`Settings::photo_facet_delay`],
//! default 2 s): the upload's answer has no `photo`, then the item changes once more (new eTag, a delta change)
//! with it. Seeded and control-API files have it at once.

use super::blob::Blob;
use super::drive::{ItemKind, ItemNo, NewContent};
use super::media::MediaKind;
use super::names::mime_for;
use super::state::EmulatorState;
use chrono::{DateTime, NaiveDate, Utc};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

/// How much of a file is read to find its header and EXIF block.
const PREFIX: u64 = 2 * 1024 * 1024;

/// The `image`/`photo` facets of `blob` (a file of type `mime`) and the time it was taken, when known.
pub fn extract(blob: &Blob, mime: &str) -> (MediaKind, Option<DateTime<Utc>>) {
    if !(mime == "image/jpeg" || mime == "image/png") {
        return (MediaKind::Other, None);
    }
    let Ok(prefix) = blob.read_range(0, PREFIX) else {
        return (MediaKind::Other, None);
    };
    let dims = image::ImageReader::new(Cursor::new(&prefix[..]))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    let Some((width, height)) = dims else {
        return (MediaKind::Other, None);
    };
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(&prefix[..]))
        .ok();
    let ascii = |tag: exif::Tag| -> Option<String> {
        let field = exif.as_ref()?.get_field(tag, exif::In::PRIMARY)?;
        match &field.value {
            exif::Value::Ascii(v) => {
                let s = String::from_utf8_lossy(v.first()?)
                    .trim_end_matches('\0')
                    .trim()
                    .to_string();
                (!s.is_empty()).then_some(s)
            }
            _ => None,
        }
    };
    let taken = ascii(exif::Tag::DateTimeOriginal)
        .or_else(|| ascii(exif::Tag::DateTime))
        .and_then(|s| exif::DateTime::from_ascii(s.as_bytes()).ok())
        .and_then(|t| {
            NaiveDate::from_ymd_opt(t.year.into(), t.month.into(), t.day.into())?.and_hms_opt(
                t.hour.into(),
                t.minute.into(),
                t.second.into(),
            )
        })
        .map(|n| n.and_utc());
    let media = MediaKind::Photo {
        width,
        height,
        camera_make: ascii(exif::Tag::Make).unwrap_or_default(),
        camera_model: ascii(exif::Tag::Model).unwrap_or_default(),
    };
    (media, taken)
}

impl NewContent {
    /// Sets the MIME type from `name` and the facets from the content (for uploads and remote changes).
    pub fn with_facets(mut self, name: &str) -> Self {
        let mime = self.mime.clone().unwrap_or_else(|| mime_for(name).to_string());
        let (media, taken) = extract(&self.blob, &mime);
        self.mime = Some(mime);
        self.media = media;
        self.taken = taken;
        self
    }
}

/// The `photo` facet of an upload, held back until the service has "processed" it.
#[derive(Clone, Debug)]
pub struct LatePhoto {
    taken: Option<DateTime<Utc>>,
    camera_make: String,
    camera_model: String,
}

impl NewContent {
    /// Removes the `photo` facet (taken time, camera) from the content, to be added later; `None` when there is
    /// none.
    pub fn defer_photo(&mut self) -> Option<LatePhoto> {
        let MediaKind::Photo {
            camera_make,
            camera_model,
            ..
        } = &mut self.media
        else {
            return None;
        };
        if self.taken.is_none() && camera_make.is_empty() && camera_model.is_empty() {
            return None;
        }
        Some(LatePhoto {
            taken: self.taken.take(),
            camera_make: std::mem::take(camera_make),
            camera_model: std::mem::take(camera_model),
        })
    }
}

/// Holds the upload's `photo` facet back for the configured delay (at once with none), then adds it with one more
/// change of the item, if its content is still that version.
pub fn deliver_photo_later(state: &Arc<EmulatorState>, content: &mut NewContent) -> Option<(LatePhoto, Duration)> {
    let delay = state.settings.lock().photo_facet_delay;
    if delay.is_zero() {
        return None;
    }
    content.defer_photo().map(|late| (late, delay))
}

/// Starts the wait for a deferred facet of item `no` (its content version now: `ctag_ver`).
pub fn schedule_photo(state: &Arc<EmulatorState>, no: ItemNo, ctag_ver: u64, late: LatePhoto, delay: Duration) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let Some(state) = weak.upgrade() else { return };
        let mut d = state.drive.lock();
        let current = d
            .item_mut(no)
            .filter(|i| i.is_live() && i.ctag_ver == ctag_ver)
            .and_then(|i| match &mut i.kind {
                ItemKind::File(f) => Some(f),
                _ => None,
            });
        let Some(file) = current else { return };
        if let MediaKind::Photo {
            camera_make,
            camera_model,
            ..
        } = &mut file.media
        {
            *camera_make = late.camera_make;
            *camera_model = late.camera_model;
        }
        file.taken = late.taken;
        d.touch(no, false, Utc::now());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::new(w, h);
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_gets_image_dimensions() {
        let (media, taken) = extract(&Blob::bytes(png(30, 20)), "image/png");
        assert_eq!(
            media,
            MediaKind::Photo {
                width: 30,
                height: 20,
                camera_make: String::new(),
                camera_model: String::new()
            }
        );
        assert_eq!(taken, None);
    }

    #[test]
    fn non_images_and_junk_have_no_facets() {
        assert_eq!(extract(&Blob::bytes(&b"hello"[..]), "text/plain").0, MediaKind::Other);
        assert_eq!(
            extract(&Blob::bytes(&b"not a jpeg"[..]), "image/jpeg").0,
            MediaKind::Other
        );
    }

    #[test]
    fn sample_photo_exif_when_present() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/photos");
        let Some(jpeg) = std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("jpg")))
        }) else {
            let require_all = std::env::var_os("GALLERYFS_REQUIRE_ALL").is_some_and(|v| !v.is_empty() && v != "0");
            assert!(
                !require_all,
                "GALLERYFS_REQUIRE_ALL=1 and no sample JPEG in {}",
                dir.display()
            );
            eprintln!("SKIPPED: no sample JPEG in {}", dir.display());
            return;
        };
        let bytes = std::fs::read(&jpeg).unwrap();
        let c = NewContent::plain(Blob::bytes(bytes), None).with_facets("x.jpg");
        assert_eq!(c.mime.as_deref(), Some("image/jpeg"));
        match c.media {
            MediaKind::Photo { width, height, .. } => assert!(width > 0 && height > 0),
            other => panic!("{}: {other:?}", jpeg.display()),
        }
    }
}
