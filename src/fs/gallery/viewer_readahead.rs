//! Read-ahead of the next photos of a folder viewed in order: a photo viewer's "next" opens the files of a folder
//! one after the other, so when an open follows the previous open of the same folder closely in name order, the
//! next few photos are fetched whole in the background ([`Originals::prefetch`]) and open from the cache.
//!
//! Bounded on every side: only [`READAHEAD_PHOTOS`] files ahead, only media files of at most
//! [`READAHEAD_MAX_SIZE`] bytes that are not cached yet, only after two opens in order (one open is not a
//! pattern) of which the first was read whole (a viewer shows the photo; a metadata scan such as `exiftool` or a
//! photo manager's import reads headers only and must not download the folder), and the fetches themselves are
//! limited by the content layer. A jump (a far file, or backwards) only
//! moves the position.

use super::GalleryFs;
use crate::fs::types::Ino;
use crate::store::{name_key, ContentState, ItemKind, ItemRow};
use parking_lot::Mutex;
use std::collections::HashMap;

/// Photos fetched ahead of the one opened.
pub const READAHEAD_PHOTOS: usize = 3;
/// Larger files (videos) are streamed on demand instead.
pub const READAHEAD_MAX_SIZE: u64 = 32 * 1024 * 1024;
/// How far ahead (in files) an open may be and still count as the viewer's "next".
const NEXT_WINDOW: usize = 3;
/// Folders remembered at most.
const FOLDERS_REMEMBERED: usize = 256;

/// The last open per folder: its name key and inode.
#[derive(Default)]
pub(crate) struct ViewerTracker {
    last_open: Mutex<HashMap<Ino, (String, Ino)>>,
}

impl ViewerTracker {
    /// Records an open of `name_key` (inode `ino`) in `parent`; returns the previous one there.
    fn record(&self, parent: Ino, key: String, ino: Ino) -> Option<(String, Ino)> {
        let mut last = self.last_open.lock();
        if last.len() >= FOLDERS_REMEMBERED && !last.contains_key(&parent) {
            last.clear();
        }
        last.insert(parent, (key, ino))
    }
}

/// Whether the whole content of the item is here (read whole by whoever opened it, or never in the cloud).
fn read_whole(row: &ItemRow) -> bool {
    !matches!(row.content_state, ContentState::Cloud | ContentState::Partial)
}

fn worth_fetching(row: &ItemRow) -> bool {
    row.kind == ItemKind::File
        && row.is_media
        && !row.local_only
        && row.size > 0
        && row.size <= READAHEAD_MAX_SIZE
        && matches!(row.content_state, ContentState::Cloud | ContentState::Partial)
}

impl GalleryFs {
    /// A file was opened for reading: when it is the viewer's "next" in its folder, fetch the photos after it.
    pub(super) fn viewer_opened(&self, item: &ItemRow) {
        if item.kind != ItemKind::File || !item.is_media {
            return;
        }
        let Some(parent) = item.parent_ino else {
            return;
        };
        let key = name_key(&item.name);
        let Some((previous, previous_ino)) = self.viewer.record(parent, key.clone(), item.ino) else {
            return;
        };
        if previous >= key {
            return;
        }
        // A viewer read the previous photo whole; a scan of headers did not.
        match self.store.get(previous_ino) {
            Ok(Some(row)) if read_whole(&row) => {}
            _ => return,
        }
        // In order: the file is among the few after the previous one.
        let next_of_previous = match self
            .store
            .read(|t| t.children_after(parent, Some(&previous), NEXT_WINDOW))
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "read-ahead: cannot list the folder");
                return;
            }
        };
        if !next_of_previous.iter().any(|r| r.ino == item.ino) {
            return;
        }
        let ahead = match self
            .store
            .read(|t| t.children_after(parent, Some(&key), READAHEAD_PHOTOS * 2))
        {
            Ok(rows) => rows,
            Err(_) => return,
        };
        for row in ahead
            .into_iter()
            .filter(|r| r.kind == ItemKind::File && r.is_media)
            .take(READAHEAD_PHOTOS)
            .filter(worth_fetching)
        {
            tracing::debug!(
                ino = row.ino,
                "read-ahead of the next photo in a folder viewed in order"
            );
            self.content.prefetch(&row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::content::{NoThumbnails, OriginalReader, Originals};
    use crate::fs::error::FsError;
    use crate::fs::gallery::GalleryConfig;
    use crate::fs::{Caller, FsCore, OpenMode};
    use crate::store::{NewItem, Store, ROOT_INO};
    use async_trait::async_trait;
    use std::sync::Arc;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    #[async_trait]
    impl Originals for Recorder {
        async fn open_reader(&self, _item: &ItemRow) -> Result<Box<dyn OriginalReader>, FsError> {
            Err(FsError::io("not in this test"))
        }
        fn prefetch(&self, item: &ItemRow) {
            self.0.lock().push(item.name.clone());
        }
    }

    fn file(store: &Store, name: &str, size: u64, is_media: bool) -> u64 {
        store
            .insert(&NewItem {
                item_id: format!("id-{name}"),
                parent_ino: ROOT_INO,
                name: name.into(),
                kind: ItemKind::File,
                size,
                etag: None,
                ctag: Some("c".into()),
                quick_xor_hash: None,
                mtime: 0,
                mime_type: None,
                is_media,
                content_state: ContentState::Cloud,
                local_only: false,
            })
            .unwrap()
    }

    #[tokio::test]
    async fn opens_in_order_fetch_the_next_photos_and_jumps_do_not() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let mut ino = HashMap::new();
        for i in 0..10 {
            let name = format!("IMG_{i:02}.jpg");
            ino.insert(i, file(&store, &name, 3_000_000, true));
        }
        file(&store, "IMG_04 notes.txt", 100, false);
        file(&store, "IMG_05 clip.mp4", READAHEAD_MAX_SIZE + 1, true);
        let recorder = Arc::new(Recorder::default());
        let fs = GalleryFs::new(
            store.clone(),
            recorder.clone(),
            Arc::new(NoThumbnails),
            GalleryConfig::default(),
        );
        let read = OpenMode {
            read: true,
            ..Default::default()
        };
        let open = |i: usize| {
            let fs = &fs;
            let ino = ino[&i];
            async move { fs.open(Caller::default(), ino, read).await.unwrap() }
        };
        let taken = || std::mem::take(&mut *recorder.0.lock());
        let viewed = |i: usize| store.set_content_state(ino[&i], ContentState::Cached).unwrap();
        open(2).await;
        assert!(taken().is_empty(), "one open is not a pattern");
        open(3).await;
        assert!(
            taken().is_empty(),
            "the previous photo was not read whole: a metadata scan, not a viewer"
        );
        open(2).await;
        viewed(2);
        open(3).await;
        // The next three photos; the text file is skipped, the large video is not fetched whole.
        assert_eq!(taken(), ["IMG_04.jpg", "IMG_05.jpg"]);
        viewed(3);
        open(7).await;
        assert!(taken().is_empty(), "a jump is not the viewer's next");
        viewed(7);
        open(8).await;
        assert_eq!(taken(), ["IMG_09.jpg"], "only what is left");
        open(1).await;
        assert!(taken().is_empty(), "backwards");
        // Cached files are not fetched again (and still count among the three ahead).
        viewed(1);
        open(2).await;
        assert_eq!(taken(), ["IMG_04.jpg"]);
    }
}
