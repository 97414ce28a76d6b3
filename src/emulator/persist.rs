//! The `--state FILE` of the emulator: the whole drive (metadata, journal position, quota, recycle bin) as JSON,
//! small content inline, generated content by seed, large stored content in a `FILE.blobs/` directory beside it.
//! Written atomically at shutdown, read at start.

use super::blob::{Blob, SpoolFile};
use super::drive::{Drive, FileData, Item, ItemKind, ItemNo, ItemState};
use super::media::{Content, MediaKind, Recipe};
use super::state::EmulatorState;
use anyhow::{bail, Context};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const VERSION: u32 = 1;
/// Stored content up to this size goes inline (base64) in the state file.
const INLINE_MAX: u64 = 256 * 1024;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    drive_id: String,
    next_no: ItemNo,
    seq: u64,
    epoch: u64,
    quota_total: i64,
    quota_used_extra: i64,
    items: Vec<ItemRecord>,
    /// The identity platform's tokens and clients (see `state::identity_snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct ItemRecord {
    no: ItemNo,
    name: String,
    parent: Option<ItemNo>,
    special: Option<String>,
    file: Option<FileRecord>,
    etag_ver: u64,
    ctag_ver: u64,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    fs_created: DateTime<Utc>,
    fs_modified: DateTime<Utc>,
    description: Option<String>,
    change_seq: u64,
    state: StateRecord,
    former_parent: Option<ItemNo>,
    no_thumbnail: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum StateRecord {
    Live,
    Recycled { deleted_at: DateTime<Utc>, top: ItemNo },
    Gone,
}

#[derive(Serialize, Deserialize)]
struct FileRecord {
    mime: String,
    hash: Option<String>,
    content: ContentRecord,
    media: MediaRecord,
    taken: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ContentRecord {
    Inline {
        base64: String,
    },
    Synthetic {
        seed: u64,
        len: u64,
    },
    /// A seed video, made again from its seed and date.
    Video {
        seed: u64,
        taken_unix: i64,
    },
    /// A full-size camera photo, made again from its source, date and unique id.
    Photo {
        source: usize,
        taken_unix: i64,
        unique_id: u64,
    },
    /// A file in the blobs directory.
    Blob {
        file: String,
        len: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum MediaRecord {
    Photo {
        width: u32,
        height: u32,
        camera_make: String,
        camera_model: String,
    },
    Video {
        width: u32,
        height: u32,
        duration_ms: u64,
    },
    Other,
}

fn blobs_dir(state_file: &Path) -> PathBuf {
    let mut s = state_file.as_os_str().to_owned();
    s.push(".blobs");
    PathBuf::from(s)
}

/// Writes the drive of `state` to `path` (atomically) and its large content to `path.blobs/`.
pub fn save(state: &EmulatorState, path: &Path) -> anyhow::Result<()> {
    let identity = super::state::identity_snapshot(&state.identity);
    let d = state.drive.lock();
    let blobs = blobs_dir(path);
    let fresh = blobs.with_extension("blobs.new");
    let _ = std::fs::remove_dir_all(&fresh);
    let mut items = Vec::with_capacity(d.items.len());
    let mut sorted: Vec<&Item> = d.items.values().collect();
    sorted.sort_by_key(|i| i.no);
    for i in sorted {
        let file = match &i.kind {
            ItemKind::File(f) => Some(FileRecord {
                mime: f.mime.clone(),
                hash: f.hash.clone(),
                content: content_record(&f.blob, &fresh, i)?,
                media: match &f.media {
                    MediaKind::Photo {
                        width,
                        height,
                        camera_make,
                        camera_model,
                    } => MediaRecord::Photo {
                        width: *width,
                        height: *height,
                        camera_make: camera_make.clone(),
                        camera_model: camera_model.clone(),
                    },
                    MediaKind::Video {
                        width,
                        height,
                        duration_ms,
                    } => MediaRecord::Video {
                        width: *width,
                        height: *height,
                        duration_ms: *duration_ms,
                    },
                    MediaKind::Other => MediaRecord::Other,
                },
                taken: f.taken,
            }),
            ItemKind::Folder { .. } => None,
        };
        items.push(ItemRecord {
            no: i.no,
            name: i.name.clone(),
            parent: i.parent,
            special: match &i.kind {
                ItemKind::Folder { special } => special.clone(),
                _ => None,
            },
            file,
            etag_ver: i.etag_ver,
            ctag_ver: i.ctag_ver,
            created: i.created,
            modified: i.modified,
            fs_created: i.fs_created,
            fs_modified: i.fs_modified,
            description: i.description.clone(),
            change_seq: i.change_seq,
            state: match i.state {
                ItemState::Live => StateRecord::Live,
                ItemState::Recycled { deleted_at, top } => StateRecord::Recycled { deleted_at, top },
                ItemState::Gone => StateRecord::Gone,
            },
            former_parent: i.former_parent,
            no_thumbnail: i.no_thumbnail,
        });
    }
    let file = StateFile {
        version: VERSION,
        drive_id: d.drive_id.clone(),
        next_no: d.next_no,
        seq: d.seq,
        epoch: d.epoch,
        quota_total: d.quota_total,
        quota_used_extra: d.quota_used_extra,
        items,
        identity,
    };
    drop(d);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&file)?).with_context(|| format!("writing {}", tmp.display()))?;
    let _ = std::fs::remove_dir_all(&blobs);
    if fresh.exists() {
        std::fs::rename(&fresh, &blobs)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn content_record(blob: &Blob, blobs: &Path, item: &Item) -> anyhow::Result<ContentRecord> {
    if let Blob::Media(Content::Synthetic { seed, len }) = blob {
        return Ok(ContentRecord::Synthetic { seed: *seed, len: *len });
    }
    if let Blob::Media(Content::Pieces(p)) = blob {
        match p.recipe {
            Some(Recipe::SeedVideo { seed, taken_unix }) => return Ok(ContentRecord::Video { seed, taken_unix }),
            Some(Recipe::PhonePhoto {
                source,
                taken_unix,
                unique_id,
            }) => {
                return Ok(ContentRecord::Photo {
                    source,
                    taken_unix,
                    unique_id,
                })
            }
            None => {}
        }
    }
    let len = blob.len();
    if len <= INLINE_MAX {
        let bytes = blob.read_range(0, len)?;
        return Ok(ContentRecord::Inline {
            base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
        });
    }
    std::fs::create_dir_all(blobs)?;
    let name = format!("{}-{}", item.no, item.ctag_ver);
    let mut out = std::fs::File::create(blobs.join(&name))?;
    let mut at = 0;
    while at < len {
        let end = (at + 4 * 1024 * 1024).min(len);
        std::io::Write::write_all(&mut out, &blob.read_range(at, end)?)?;
        at = end;
    }
    Ok(ContentRecord::Blob { file: name, len })
}

/// Reads a drive saved by [`save`] (and the identity part, if any); large content is copied into `spool_dir`.
pub fn load(path: &Path, spool_dir: &Path) -> anyhow::Result<(Drive, Option<serde_json::Value>)> {
    let file: StateFile = serde_json::from_slice(&std::fs::read(path)?).context("parsing the state file")?;
    if file.version != VERSION {
        bail!("state file version {} is not {VERSION}", file.version);
    }
    let blobs = blobs_dir(path);
    let mut items = HashMap::new();
    let mut children: HashMap<ItemNo, BTreeMap<String, ItemNo>> = HashMap::new();
    for r in file.items {
        let kind = match r.file {
            Some(f) => ItemKind::File(FileData {
                blob: match f.content {
                    ContentRecord::Inline { base64 } => {
                        Blob::bytes(base64::engine::general_purpose::STANDARD.decode(base64)?)
                    }
                    ContentRecord::Synthetic { seed, len } => Blob::Media(Content::Synthetic { seed, len }),
                    ContentRecord::Video { seed, taken_unix } => {
                        Blob::Media(Recipe::SeedVideo { seed, taken_unix }.make())
                    }
                    ContentRecord::Photo {
                        source,
                        taken_unix,
                        unique_id,
                    } => Blob::Media(
                        Recipe::PhonePhoto {
                            source,
                            taken_unix,
                            unique_id,
                        }
                        .make(),
                    ),
                    ContentRecord::Blob { file, len } => {
                        std::fs::create_dir_all(spool_dir)?;
                        let dest = spool_dir.join(format!("loaded-{file}"));
                        std::fs::copy(blobs.join(&file), &dest).with_context(|| format!("copying blob {file}"))?;
                        Blob::Spooled(Arc::new(SpoolFile { path: dest, len }))
                    }
                },
                mime: f.mime,
                hash: f.hash,
                media: match f.media {
                    MediaRecord::Photo {
                        width,
                        height,
                        camera_make,
                        camera_model,
                    } => MediaKind::Photo {
                        width,
                        height,
                        camera_make,
                        camera_model,
                    },
                    MediaRecord::Video {
                        width,
                        height,
                        duration_ms,
                    } => MediaKind::Video {
                        width,
                        height,
                        duration_ms,
                    },
                    MediaRecord::Other => MediaKind::Other,
                },
                taken: f.taken,
            }),
            None => ItemKind::Folder { special: r.special },
        };
        let state = match r.state {
            StateRecord::Live => ItemState::Live,
            StateRecord::Recycled { deleted_at, top } => ItemState::Recycled { deleted_at, top },
            StateRecord::Gone => ItemState::Gone,
        };
        let item = Item {
            no: r.no,
            name: r.name,
            parent: r.parent,
            kind,
            etag_ver: r.etag_ver,
            ctag_ver: r.ctag_ver,
            created: r.created,
            modified: r.modified,
            fs_created: r.fs_created,
            fs_modified: r.fs_modified,
            description: r.description,
            change_seq: r.change_seq,
            state,
            former_parent: r.former_parent,
            no_thumbnail: r.no_thumbnail,
        };
        if item.is_folder() {
            children.entry(item.no).or_default();
        }
        // The children index holds live items and the insides of recycled folders, not recycle-bin tops.
        let linked = match item.state {
            ItemState::Live => true,
            ItemState::Recycled { top, .. } => top != item.no,
            ItemState::Gone => false,
        };
        if let (true, Some(p)) = (linked, item.parent) {
            children
                .entry(p)
                .or_default()
                .insert(super::names::fold(&item.name), item.no);
        }
        items.insert(item.no, item);
    }
    if !items.contains_key(&super::drive::ROOT_NO) {
        bail!("the state file has no root item");
    }
    let drive = Drive {
        drive_id: file.drive_id,
        items,
        children,
        next_no: file.next_no,
        seq: file.seq,
        epoch: file.epoch,
        quota_total: file.quota_total,
        quota_used_extra: file.quota_used_extra,
        skip_quota: false,
        camera_roll_name: super::drive::DEFAULT_CAMERA_ROLL_NAME.to_string(),
    };
    Ok((drive, file.identity))
}
