//! Test controls: remote changes as a phone or the web would make them (add, edit, rename, move, delete,
//! restore, a Camera Backup upload: `camera-backup`), quota, expiring download URLs, dropping upload sessions,
//! invalidating delta tokens, leaving the next deletion out of delta (`drop-next-delta-deletion`; the socket.io
//! controls are in `socketio.rs`), stored bytes that no longer match their recorded hashes (`corrupt`), missing
//! thumbnails, strict simple-upload mode, and the state and recycle-bin dumps. Callable in-process on
//! [`EmulatorState`] and over HTTP under `/_emulator/...` (JSON; no bearer token needed).

use super::api_content;
use super::api_delta;
use super::api_upload;
use super::blob::Blob;
use super::drive::{Conflict, Drive, ItemKind, ItemNo, ItemPatch, ItemState, NewContent, QuotaView, ROOT_NO};
use super::errors::{GraphError, GraphResult};
use super::media::Content;
use super::render::{item_json, time, RenderOpts};
use super::state::{EmulatorState, HASH_NOW_MAX, SIMPLE_UPLOAD_MAX, STRICT_SIMPLE_UPLOAD_MAX};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// One live item in the state dump.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    /// From the drive root, e.g. `/Pictures/Samsung Gallery/DCIM/Camera/a.jpg`.
    pub path: String,
    pub id: String,
    pub size: u64,
    pub quick_xor_hash: Option<String>,
    pub e_tag: String,
    pub c_tag: String,
    /// `file` or `folder`.
    pub kind: String,
}

/// One recycle-bin entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecycleEntry {
    pub id: String,
    pub name: String,
    /// Original location (path of the parent folder).
    pub original_parent_path: String,
    pub original_parent_id: String,
    pub deleted_date_time: String,
    pub size: u64,
    pub kind: String,
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// An item named by id (`ABC!123`) or by path from the root (`/Pictures/x.jpg`).
fn find(d: &Drive, item: &str) -> GraphResult<ItemNo> {
    if item.contains('!') && !item.starts_with('/') {
        if let Some(no) = d.parse_id(item) {
            return Ok(no);
        }
    }
    d.resolve_path(ROOT_NO, &segments(item))
}

/// The content as a blob, hashed now unless it is large generated content (then hashed in the background).
fn hashed(content: Content) -> (Blob, Option<String>) {
    let blob = Blob::Media(content);
    let now = !matches!(blob, Blob::Media(Content::Synthetic { .. })) || blob.len() <= HASH_NOW_MAX;
    let hash = if now { blob.compute_hash().ok() } else { None };
    (blob, hash)
}

/// Whether two blobs are the same stored bytes (not merely equal ones).
fn same_stored(a: &Blob, b: &Blob) -> bool {
    match (a, b) {
        (Blob::Media(Content::Bytes(x)), Blob::Media(Content::Bytes(y))) => {
            x.as_ptr() == y.as_ptr() && x.len() == y.len()
        }
        (
            Blob::Media(Content::Synthetic { seed: s1, len: l1 }),
            Blob::Media(Content::Synthetic { seed: s2, len: l2 }),
        ) => s1 == s2 && l1 == l2,
        (Blob::Spooled(x), Blob::Spooled(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

fn find_live(d: &Drive, item: &str) -> GraphResult<ItemNo> {
    let no = find(d, item)?;
    d.live(no)?;
    Ok(no)
}

impl EmulatorState {
    /// Adds (or replaces the content of) a file at `path`, making missing folders; returns its id.
    pub fn add_file(&self, path: &str, content: Content) -> GraphResult<String> {
        let mut segs = segments(path);
        let name = segs
            .pop()
            .ok_or_else(|| GraphError::invalid("A file path is required"))?;
        let now = Utc::now();
        let (blob, hash) = hashed(content);
        let later = hash.is_none();
        let mut d = self.drive.lock();
        let parent = d.ensure_folders(ROOT_NO, &segs, now)?;
        let (no, _) = d.write_file(
            parent,
            &name,
            NewContent::plain(blob, hash).with_facets(&name),
            Conflict::Replace,
            &ItemPatch::default(),
            now,
        )?;
        if later {
            self.hash_later(no);
        }
        Ok(d.id_of(no))
    }

    /// Makes a folder and any missing parents; returns its id.
    pub fn add_folder(&self, path: &str) -> GraphResult<String> {
        let mut d = self.drive.lock();
        let no = d.ensure_folders(ROOT_NO, &segments(path), Utc::now())?;
        Ok(d.id_of(no))
    }

    /// New content for an existing file (as an edit made elsewhere).
    pub fn edit_file(&self, item: &str, content: Content) -> GraphResult<()> {
        let (blob, hash) = hashed(content);
        let later = hash.is_none();
        let name = {
            let d = self.drive.lock();
            d.live(find_live(&d, item)?)?.name.clone()
        };
        let content = NewContent::plain(blob, hash).with_facets(&name);
        let mut d = self.drive.lock();
        let no = find_live(&d, item)?;
        d.replace_content(no, content, &ItemPatch::default(), Utc::now())?;
        if later {
            self.hash_later(no);
        }
        Ok(())
    }

    pub fn rename_item(&self, item: &str, new_name: &str) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = find_live(&d, item)?;
        d.update(
            no,
            &ItemPatch {
                name: Some(new_name.into()),
                ..Default::default()
            },
            Utc::now(),
        )
    }

    /// Moves `item` into the folder `new_parent` (path or id), optionally renaming it.
    pub fn move_item(&self, item: &str, new_parent: &str, new_name: Option<&str>) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = find_live(&d, item)?;
        let parent = find_live(&d, new_parent)?;
        let patch = ItemPatch {
            name: new_name.map(str::to_string),
            parent: Some(parent),
            ..Default::default()
        };
        d.update(no, &patch, Utc::now())
    }

    /// Deletes to the recycle bin.
    pub fn delete_item(&self, item: &str) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = find_live(&d, item)?;
        d.delete(no, Utc::now())
    }

    /// Deletes `Pictures/Samsung Gallery` (to the recycle bin).
    pub fn delete_gallery(&self) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let now = Utc::now();
        let pictures = d.special("photos", now)?;
        let gallery = d
            .child_by_name(pictures, "Samsung Gallery")
            .ok_or_else(|| GraphError::not_found("Samsung Gallery"))?;
        d.delete(gallery, now)
    }

    /// Restores a recycle-bin item (by id) to where it was.
    pub fn restore_item(&self, id: &str) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = d.parse_id(id).ok_or_else(|| GraphError::not_found(id))?;
        d.restore(no, None, None, Utc::now())
    }

    pub fn empty_recycle_bin(&self) {
        self.drive.lock().empty_recycle_bin();
    }

    pub fn set_quota(&self, total: Option<i64>, used: Option<i64>) -> QuotaView {
        let mut d = self.drive.lock();
        d.set_quota(total, used);
        d.quota()
    }

    pub fn quota(&self) -> QuotaView {
        self.drive.lock().quota()
    }

    /// Every download URL issued so far stops working.
    pub fn expire_download_urls(&self) {
        api_content::expire_all(self);
    }

    /// The secret tokens of the pre-authenticated URLs on record: every download URL issued (the emulator keeps
    /// the most recent few thousand) and every live upload session. For tests that scan logs for leaks; never
    /// log them.
    pub fn issued_url_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self.downloads.lock().keys().cloned().collect();
        tokens.extend(self.uploads.lock().keys().cloned());
        tokens
    }

    /// Every upload session ends (their URLs answer 404).
    pub fn drop_upload_sessions(&self) {
        api_upload::drop_all(self);
    }

    /// Every delta token and page link issued so far answers 410 `resyncRequired`.
    pub fn invalidate_delta_tokens(&self) {
        api_delta::invalidate_tokens(self);
    }

    /// Every delta token and page link issued so far for the scope `folder` (path or id) answers 410
    /// `resyncRequired`; other scopes' tokens keep working (the service forgets one folder's delta state).
    pub fn invalidate_delta_tokens_of(&self, folder: &str) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = find_live(&d, folder)?;
        api_delta::invalidate_scope(self, &mut d, no);
        Ok(())
    }

    /// Flips the bits of `mask` in the stored byte at `offset` of a file, leaving its size, hashes, eTag and cTag
    /// as they were: the service then serves bytes that do not match the quickXorHash it reports (a damaged
    /// stored copy; no change is journalled, so delta does not report it). The same call again restores the
    /// bytes.
    pub fn corrupt_file(&self, item: &str, offset: u64, mask: u8) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = find_live(&d, item)?;
        let Some(ItemKind::File(f)) = d.item_mut(no).map(|i| &mut i.kind) else {
            return Err(GraphError::invalid("Only a file's content can be damaged"));
        };
        if offset >= f.blob.len() {
            return Err(GraphError::invalid("offset is past the end of the file"));
        }
        let mut bytes = f
            .blob
            .read_range(0, f.blob.len())
            .map_err(|e| GraphError::invalid(format!("cannot read the stored bytes: {e}")))?
            .to_vec();
        bytes[offset as usize] ^= mask;
        let damaged = Blob::bytes(bytes);
        let before = std::mem::replace(&mut f.blob, damaged.clone());
        drop(d);
        // Download URLs already issued for this version serve the same stored copy.
        for grant in self.downloads.lock().values_mut() {
            if grant.no == no && same_stored(&grant.blob, &before) {
                grant.blob = damaged.clone();
            }
        }
        Ok(())
    }

    /// Marks an item as having no thumbnails (as just after an upload), or clears that.
    pub fn set_thumbnails_missing(&self, item: &str, missing: bool) -> GraphResult<()> {
        let mut d = self.drive.lock();
        let no = find_live(&d, item)?;
        if let Some(i) = d.item_mut(no) {
            i.no_thumbnail = missing;
        }
        Ok(())
    }

    /// Strict mode: simple uploads above 4 MiB answer 413 (the older OneDrive documentation's limit).
    /// The next incremental delta round leaves out its first deletion (as a deletion delta reported once and the
    /// client missed).
    pub fn drop_next_delta_deletion(&self) {
        self.settings.lock().drop_next_delta_deletion = true;
    }

    pub fn set_strict_simple_upload(&self, strict: bool) {
        self.settings.lock().simple_upload_max = if strict {
            STRICT_SIMPLE_UPLOAD_MAX
        } else {
            SIMPLE_UPLOAD_MAX
        };
    }

    /// Lifetime of download URLs issued from now on.
    pub fn set_download_url_lifetime(&self, lifetime: Duration) {
        self.settings.lock().download_url_lifetime = lifetime;
    }

    /// Post-processing of uploads: for `delay` after an upload no thumbnails, then one more eTag change.
    /// How long after an upload its `photo` facet appears (zero: at once).
    pub fn set_photo_facet_delay(&self, delay: Duration) {
        self.settings.lock().photo_facet_delay = delay;
    }

    pub fn set_post_processing(&self, delay: Option<Duration>) {
        self.settings.lock().post_processing = delay;
    }

    /// The driveItem JSON of an item (path or id), as `GET /items/{id}` renders it.
    pub fn item_json(&self, item: &str) -> GraphResult<Value> {
        let d = self.drive.lock();
        let no = find_live(&d, item)?;
        Ok(item_json(self, &d, d.live(no)?, &RenderOpts::default()))
    }

    /// Every live item below the root, parents first.
    pub fn state_dump(&self) -> Vec<StateEntry> {
        let d = self.drive.lock();
        d.live_items()
            .into_iter()
            .filter_map(|no| {
                let i = d.item(no)?;
                Some(StateEntry {
                    path: format!("/{}", d.names_from_root(no).join("/")),
                    id: d.id_of(no),
                    size: d.size_of(no),
                    quick_xor_hash: i.file().and_then(|f| f.hash.clone()),
                    e_tag: d.etag(i),
                    c_tag: d.ctag(i),
                    kind: if i.is_folder() { "folder" } else { "file" }.into(),
                })
            })
            .collect()
    }

    /// The recycle bin (what was deleted, oldest first).
    pub fn recycle_bin_dump(&self) -> Vec<RecycleEntry> {
        let d = self.drive.lock();
        d.recycle_bin()
            .into_iter()
            .map(|i| {
                let parent = i.parent.unwrap_or(ROOT_NO);
                let deleted_at = match i.state {
                    ItemState::Recycled { deleted_at, .. } => deleted_at,
                    _ => i.modified,
                };
                RecycleEntry {
                    id: d.id_of(i.no),
                    name: i.name.clone(),
                    original_parent_path: format!("/{}", d.names_from_root(parent).join("/")),
                    original_parent_id: d.id_of(parent),
                    deleted_date_time: time(deleted_at),
                    size: match &i.kind {
                        ItemKind::File(f) => f.blob.len(),
                        ItemKind::Folder { .. } => 0,
                    },
                    kind: if i.is_folder() { "folder" } else { "file" }.into(),
                }
            })
            .collect()
    }
}

/// Content of a control request: `content_base64`, `text`, or `size` (+ `seed`) for generated bytes.
fn content_of(body: &Value) -> GraphResult<Content> {
    if let Some(b) = body.get("content_base64").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| GraphError::invalid("content_base64 is not base64"))?;
        return Ok(Content::Bytes(bytes.into()));
    }
    if let Some(t) = body.get("text").and_then(Value::as_str) {
        return Ok(Content::Bytes(t.as_bytes().to_vec().into()));
    }
    if let Some(len) = body.get("size").and_then(Value::as_u64) {
        let seed = body.get("seed").and_then(Value::as_u64).unwrap_or_else(rand::random);
        return Ok(Content::Synthetic { seed, len });
    }
    Err(GraphError::invalid("Give content_base64, text, or size"))
}

fn str_field<'a>(body: &'a Value, name: &str) -> GraphResult<&'a str> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::invalid(format!("'{name}' is required")))
}

type S = State<Arc<EmulatorState>>;

/// A JSON body whatever its `Content-Type` (controls are often called with plain `curl -d`); empty means `{}`.
struct Lenient(Value);

impl<St: Send + Sync> axum::extract::FromRequest<St> for Lenient {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &St) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Lenient(json!({})));
        }
        serde_json::from_slice(&bytes)
            .map(Lenient)
            .map_err(|e| GraphError::invalid(format!("Invalid JSON body: {e}")).into_response())
    }
}

fn reply(r: GraphResult<Value>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn ok() -> GraphResult<Value> {
    Ok(json!({"ok": true}))
}

/// Routes under `/_emulator`.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route(
            "/_emulator/files",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    Ok(json!({"id": s.add_file(str_field(&b, "path")?, content_of(&b)?)?}))
                })())
            }),
        )
        .route(
            "/_emulator/camera-backup",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    let platform = match b.get("platform").and_then(Value::as_str).unwrap_or("android") {
                        "ios" => super::camera_backup::Platform::Ios,
                        "android" => super::camera_backup::Platform::Android,
                        other => return Err(GraphError::invalid(format!("unknown platform '{other}'"))),
                    };
                    let taken = match b.get("taken").and_then(Value::as_str) {
                        Some(t) => DateTime::parse_from_rfc3339(t)
                            .map_err(|_| GraphError::invalid("'taken' is not RFC 3339"))?
                            .with_timezone(&Utc),
                        None => Utc::now(),
                    };
                    let ext = b.get("ext").and_then(Value::as_str).unwrap_or(match platform {
                        super::camera_backup::Platform::Ios => "heic",
                        super::camera_backup::Platform::Android => "jpg",
                    });
                    let content = content_of(&b).ok();
                    let (id, path) = s.camera_backup(platform, taken, ext, content)?;
                    Ok(json!({"id": id, "path": path}))
                })())
            }),
        )
        .route(
            "/_emulator/folders",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| Ok(json!({"id": s.add_folder(str_field(&b, "path")?)?})))())
            }),
        )
        .route(
            "/_emulator/edit",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    s.edit_file(str_field(&b, "item")?, content_of(&b)?)?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/rename",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    s.rename_item(str_field(&b, "item")?, str_field(&b, "name")?)?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/move",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    s.move_item(
                        str_field(&b, "item")?,
                        str_field(&b, "parent")?,
                        b.get("name").and_then(Value::as_str),
                    )?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/delete",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    s.delete_item(str_field(&b, "item")?)?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/delete-gallery",
            post(|State(s): S| async move { reply(s.delete_gallery().and_then(|_| ok())) }),
        )
        .route(
            "/_emulator/restore",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    s.restore_item(str_field(&b, "item")?)?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/empty-recycle-bin",
            post(|State(s): S| async move {
                s.empty_recycle_bin();
                reply(ok())
            }),
        )
        .route(
            "/_emulator/quota",
            get(|State(s): S| async move { Json(s.quota()) }).post(|State(s): S, Lenient(b): Lenient| async move {
                Json(s.set_quota(
                    b.get("total").and_then(Value::as_i64),
                    b.get("used").and_then(Value::as_i64),
                ))
            }),
        )
        .route(
            "/_emulator/corrupt",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    let offset = b.get("offset").and_then(Value::as_u64).unwrap_or(0);
                    let mask = b.get("mask").and_then(Value::as_u64).unwrap_or(0xff);
                    let mask = u8::try_from(mask)
                        .ok()
                        .filter(|m| *m != 0)
                        .ok_or_else(|| GraphError::invalid("mask is a byte other than 0"))?;
                    s.corrupt_file(str_field(&b, "item")?, offset, mask)?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/expire-download-urls",
            post(|State(s): S| async move {
                s.expire_download_urls();
                reply(ok())
            }),
        )
        .route(
            "/_emulator/drop-upload-sessions",
            post(|State(s): S| async move {
                s.drop_upload_sessions();
                reply(ok())
            }),
        )
        .route(
            "/_emulator/invalidate-delta-tokens",
            post(|State(s): S, Lenient(b): Lenient| async move {
                match b.get("scope").and_then(Value::as_str) {
                    Some(scope) => reply(s.invalidate_delta_tokens_of(scope).and_then(|()| ok())),
                    None => {
                        s.invalidate_delta_tokens();
                        reply(ok())
                    }
                }
            }),
        )
        .route(
            "/_emulator/drop-next-delta-deletion",
            post(|State(s): S| async move {
                s.drop_next_delta_deletion();
                reply(ok())
            }),
        )
        .route(
            "/_emulator/thumbnails-missing",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply((|| {
                    s.set_thumbnails_missing(
                        str_field(&b, "item")?,
                        b.get("missing").and_then(Value::as_bool).unwrap_or(true),
                    )?;
                    ok()
                })())
            }),
        )
        .route(
            "/_emulator/settings",
            post(|State(s): S, Lenient(b): Lenient| async move {
                if let Some(strict) = b.get("strict_simple_upload").and_then(Value::as_bool) {
                    s.set_strict_simple_upload(strict);
                }
                if let Some(secs) = b.get("download_url_lifetime_secs").and_then(Value::as_u64) {
                    s.set_download_url_lifetime(Duration::from_secs(secs));
                }
                reply(ok())
            }),
        )
        .route(
            "/_emulator/item",
            post(|State(s): S, Lenient(b): Lenient| async move {
                reply(str_field(&b, "item").and_then(|i| s.item_json(i)))
            }),
        )
        .route(
            "/_emulator/state",
            get(|State(s): S| async move { Json(s.state_dump()) }),
        )
        .route(
            "/_emulator/recycle-bin",
            get(|State(s): S| async move { Json(s.recycle_bin_dump()) }),
        )
        .route(
            "/_emulator/token",
            get(|State(s): S| async move {
                Json(json!({"access_token": s.identity.issue_test_token(), "token_type": "Bearer"}))
            }),
        )
        .with_state(state)
}
