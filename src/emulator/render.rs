//! JSON of drive resources as Graph sends them (OAD resources/driveitem.md, drive.md, quota.md): driveItem with
//! its facets, the delete form used in delta, the drive with its quota, and `$select` filtering.

use super::drive::{Drive, Item, ItemKind, ItemState};
use super::media::MediaKind;
use super::state::issue_download_url;
use super::state::EmulatorState;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

pub const DOWNLOAD_URL_KEY: &str = "@microsoft.graph.downloadUrl";

/// How an item is to be rendered.
#[derive(Clone, Debug, Default)]
pub struct RenderOpts {
    /// `$select`: only these top-level properties.
    pub select: Option<Vec<String>>,
    /// Delta form: no `parentReference.path`, `folder.childCount` 0, no download URL unless selected.
    pub in_delta: bool,
}

impl RenderOpts {
    fn wants(&self, key: &str) -> bool {
        match &self.select {
            Some(sel) => sel
                .iter()
                .any(|s| s == key || (key == DOWNLOAD_URL_KEY && s == "content.downloadUrl")),
            None => true,
        }
    }
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Splits a `$select` value into property names.
pub fn parse_select(value: Option<&str>) -> Option<Vec<String>> {
    let v = value?;
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!list.is_empty()).then_some(list)
}

fn user(d: &Drive) -> Value {
    json!({"user": {"displayName": "Emulator User", "id": d.drive_id}})
}

/// `parentReference` of an item.
pub fn parent_reference(d: &Drive, item: &Item, with_path: bool) -> Value {
    let mut r = json!({"driveId": d.drive_id, "driveType": "personal"});
    if let Some(p) = item.parent {
        r["id"] = json!(d.id_of(p));
        if let Some(parent) = d.item(p) {
            if parent.parent.is_some() {
                r["name"] = json!(parent.name);
            }
        }
        if with_path && item.is_live() {
            r["path"] = json!(d.api_path(p));
        }
    }
    r
}

/// A driveItem.
pub fn item_json(state: &EmulatorState, d: &Drive, item: &Item, opts: &RenderOpts) -> Value {
    let id = d.id_of(item.no);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("name".into(), json!(item.name));
    m.insert("eTag".into(), json!(d.etag(item)));
    m.insert("cTag".into(), json!(d.ctag(item)));
    m.insert("size".into(), json!(d.size_of(item.no)));
    m.insert("createdDateTime".into(), json!(time(item.created)));
    m.insert("lastModifiedDateTime".into(), json!(time(item.modified)));
    m.insert(
        "webUrl".into(),
        json!(format!(
            "https://onedrive.live.com/?cid={}&id={}",
            d.drive_id,
            id.replace('!', "%21")
        )),
    );
    m.insert("createdBy".into(), user(d));
    m.insert("lastModifiedBy".into(), user(d));
    m.insert("parentReference".into(), parent_reference(d, item, !opts.in_delta));
    m.insert(
        "fileSystemInfo".into(),
        json!({"createdDateTime": time(item.fs_created), "lastModifiedDateTime": time(item.fs_modified)}),
    );
    if let Some(desc) = &item.description {
        m.insert("description".into(), json!(desc));
    }
    match &item.kind {
        ItemKind::Folder { special } => {
            let count = if opts.in_delta { 0 } else { d.child_count(item.no) };
            m.insert("folder".into(), json!({"childCount": count, "view": {"viewType": "thumbnails", "sortBy": "name", "sortOrder": "ascending"}}));
            if item.parent.is_none() {
                m.insert("root".into(), json!({}));
            }
            if let Some(s) = special {
                m.insert("specialFolder".into(), json!({"name": s}));
            }
        }
        ItemKind::File(f) => {
            let mut file = json!({"mimeType": f.mime});
            if let Some(h) = &f.hash {
                file["hashes"] = json!({"quickXorHash": h});
            }
            m.insert("file".into(), file);
            match &f.media {
                MediaKind::Photo {
                    width,
                    height,
                    camera_make,
                    camera_model,
                } => {
                    m.insert("image".into(), json!({"width": width, "height": height}));
                    let mut photo = Map::new();
                    if let Some(t) = f.taken {
                        photo.insert("takenDateTime".into(), json!(time(t)));
                    }
                    if !camera_make.is_empty() {
                        photo.insert("cameraMake".into(), json!(camera_make));
                    }
                    if !camera_model.is_empty() {
                        photo.insert("cameraModel".into(), json!(camera_model));
                    }
                    if !photo.is_empty() {
                        m.insert("photo".into(), Value::Object(photo));
                    }
                }
                MediaKind::Video {
                    width,
                    height,
                    duration_ms,
                } => {
                    m.insert(
                        "video".into(),
                        json!({"width": width, "height": height, "duration": duration_ms}),
                    );
                }
                MediaKind::Other => {}
            }
            let explicit = opts.select.as_ref().is_some_and(|_| opts.wants(DOWNLOAD_URL_KEY));
            if (!opts.in_delta && opts.select.is_none()) || explicit {
                if let Some(url) = issue_download_url(state, item) {
                    m.insert(DOWNLOAD_URL_KEY.into(), json!(url));
                }
            }
        }
    }
    let mut v = Value::Object(m);
    if let Some(sel) = &opts.select {
        apply_select(&mut v, sel);
    }
    v
}

/// The form of a deleted item in delta (Personal: no cTag, no size).
pub fn deleted_json(d: &Drive, item: &Item) -> Value {
    let mut v = json!({
        "id": d.id_of(item.no),
        "name": item.name,
        "deleted": {},
        "parentReference": parent_reference(d, item, false),
    });
    let parent = match (&item.state, item.former_parent) {
        // A live item reported as deleted moved out of the scope: name its old parent.
        (ItemState::Live, Some(p)) => Some(p),
        _ => None,
    };
    if let Some(p) = parent {
        v["parentReference"]["id"] = json!(d.id_of(p));
    }
    if item.is_folder() {
        v["folder"] = json!({"childCount": 0});
    } else {
        v["file"] = json!({});
    }
    v
}

/// Keeps only the selected top-level properties.
pub fn apply_select(v: &mut Value, select: &[String]) {
    if let Value::Object(m) = v {
        m.retain(|k, _| {
            select
                .iter()
                .any(|s| s == k || (k == DOWNLOAD_URL_KEY && s == "content.downloadUrl") || k == "thumbnails")
        });
    }
}

/// The drive resource with its quota.
pub fn drive_json(d: &Drive) -> Value {
    let q = d.quota();
    json!({
        "id": d.drive_id,
        "driveType": "personal",
        "name": "OneDrive",
        "owner": user(d),
        "quota": {"total": q.total, "used": q.used, "remaining": q.remaining, "deleted": q.deleted, "state": q.state},
        "webUrl": format!("https://onedrive.live.com/?cid={}", d.drive_id),
    })
}
