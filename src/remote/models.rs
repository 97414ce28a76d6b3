//! Typed Microsoft Graph (OneDrive v1.0) resources as the service sends them: drive and quota, driveItem with
//! its facets, thumbnailSet, collection pages (children, delta), upload sessions and the error body.
//!
//! Parsing is lenient: every field the service may omit is an `Option`, unknown fields are ignored, so a
//! response from a newer service version or another implementation still parses. Field names follow the
//! documentation (`resources/driveitem.md` and the facet pages) exactly.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /me/drive`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drive {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<IdentitySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// `quota` of a drive (bytes). `remaining` can be negative when over quota.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<i64>,
    /// `normal`, `nearing`, `critical` or `exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Quota {
    pub fn is_exceeded(&self) -> bool {
        self.state.as_deref() == Some("exceeded")
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Identity>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A file or folder (`resources/driveitem.md`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriveItem {
    pub id: String,
    /// Absent on Business deletes in delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// Content tag: changes with content only (and for folders, with any descendant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_date_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<IdentitySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<IdentitySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_reference: Option<ItemReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<FolderFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<PhotoFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<GeoCoordinates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedFacet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system_info: Option<FileSystemInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_folder: Option<SpecialFolder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_item: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malware: Option<serde_json::Value>,
    /// Pre-authenticated, short-lived download URL. Never log it.
    #[serde(
        rename = "@microsoft.graph.downloadUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub download_url: Option<String>,
    /// Present when requested with `$expand=thumbnails`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<Vec<ThumbnailSet>>,
}

impl DriveItem {
    pub fn is_folder(&self) -> bool {
        self.folder.is_some() || self.root.is_some()
    }
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }
    pub fn is_deleted(&self) -> bool {
        self.deleted.is_some()
    }
    pub fn quick_xor_hash(&self) -> Option<&str> {
        self.file.as_ref()?.hashes.as_ref()?.quick_xor_hash.as_deref()
    }
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_reference.as_ref()?.id.as_deref()
    }
    /// The client-settable modification time when present, else the server's.
    pub fn modified(&self) -> Option<DateTime<Utc>> {
        self.file_system_info
            .as_ref()
            .and_then(|f| f.last_modified_date_time)
            .or(self.last_modified_date_time)
    }
    /// Photo or video: the items a gallery has thumbnails for.
    pub fn is_media(&self) -> bool {
        if self.image.is_some() || self.photo.is_some() || self.video.is_some() {
            return true;
        }
        match self.file.as_ref().and_then(|f| f.mime_type.as_deref()) {
            Some(m) => m.starts_with("image/") || m.starts_with("video/"),
            None => false,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ItemReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Never set in delta responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileFacet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Hashes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_metadata: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hashes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_xor_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32_hash: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FolderFacet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageFacet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhotoFacet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_date_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_make: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_number: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_numerator: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_denominator: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub focal_length: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VideoFacet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<i64>,
    /// Milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub four_c_c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_channels: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_bits_per_sample: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_samples_per_second: Option<i64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeoCoordinates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeletedFacet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileSystemInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_date_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_date_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpecialFolder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One set of thumbnails for an item (`resources/thumbnailSet.md`). Set `"0"` is the usual one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThumbnailSet {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small: Option<Thumbnail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<Thumbnail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large: Option<Thumbnail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Thumbnail>,
    /// Custom sizes requested with `?select=c300x400` come back under their own key.
    #[serde(flatten)]
    pub custom: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Thumbnail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    /// Thumbnail URLs are cache-safe but still pre-authenticated: never log them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_item_id: Option<String>,
}

/// A page of a collection (`children`, `delta`, `thumbnails`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default, skip_serializing_if = "Option::is_none")]
    pub delta_link: Option<String>,
}

/// `createUploadSession` response and the status of an upload session.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    /// Pre-authenticated: never log it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date_time: Option<DateTime<Utc>>,
    /// Ranges such as `"0-"`, `"26-"` or `"77829-99999"`.
    #[serde(default)]
    pub next_expected_ranges: Vec<String>,
}

impl UploadSession {
    /// The first byte the service still expects, from the first of `nextExpectedRanges`.
    pub fn next_expected_offset(&self) -> Option<u64> {
        self.next_expected_ranges
            .iter()
            .filter_map(|r| r.split('-').next()?.trim().parse::<u64>().ok())
            .min()
    }
}

/// `{"error": {...}}` as Graph sends it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorResponse {
    pub error: GraphErrorBody,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// Live responses spell it `innerError`, documentation examples `innererror`.
    #[serde(default, alias = "innererror", skip_serializing_if = "Option::is_none")]
    pub inner_error: Option<Box<InnerError>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InnerError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(rename = "request-id", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, alias = "innererror", skip_serializing_if = "Option::is_none")]
    pub inner_error: Option<Box<InnerError>>,
}

impl GraphErrorBody {
    /// Every code in the chain, outermost first (inner codes such as `fragmentOverlap` are the precise ones).
    pub fn codes(&self) -> Vec<&str> {
        let mut out = vec![self.code.as_str()];
        let mut next = self.inner_error.as_deref();
        while let Some(inner) = next {
            if let Some(c) = inner.code.as_deref() {
                out.push(c);
            }
            next = inner.inner_error.as_deref();
        }
        out
    }
    pub fn has_code(&self, code: &str) -> bool {
        self.codes().contains(&code)
    }
}

/// `@microsoft.graph.conflictBehavior`: what the service does when the name is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConflictBehavior {
    Fail,
    Replace,
    Rename,
}

impl ConflictBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictBehavior::Fail => "fail",
            ConflictBehavior::Replace => "replace",
            ConflictBehavior::Rename => "rename",
        }
    }
}

/// A rename / move / timestamp change (`PATCH /items/{id}`); `None` fields are left alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemPatch {
    pub name: Option<String>,
    /// Move under this folder (a real id, never the alias `root`).
    pub parent_id: Option<String>,
    pub file_system_info: Option<FileSystemInfo>,
}

impl ItemPatch {
    /// The JSON body Graph expects.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        if let Some(name) = &self.name {
            body.insert("name".into(), name.clone().into());
        }
        if let Some(parent) = &self.parent_id {
            body.insert("parentReference".into(), serde_json::json!({ "id": parent }));
        }
        if let Some(fsi) = &self.file_system_info {
            body.insert("fileSystemInfo".into(), serde_json::to_value(fsi).unwrap_or_default());
        }
        serde_json::Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_driveitem() {
        let json = r#"{
          "id": "66D53BE8A5056ECA!1234", "name": "20240315_142233.jpg",
          "eTag": "\"{66D53BE8-A505-6ECA-0000-000000001234},3\"", "cTag": "\"c:{66D53BE8},2\"",
          "size": 3456789, "lastModifiedDateTime": "2024-03-15T14:22:35Z",
          "parentReference": {"driveId": "66d53be8a5056eca", "driveType": "personal", "id": "66D53BE8A5056ECA!103", "path": "/drive/root:/Pictures/Samsung Gallery/DCIM/Camera"},
          "file": {"mimeType": "image/jpeg", "hashes": {"quickXorHash": "O9tHLAghgSvYohKFyMMxnNCHaHg="}},
          "image": {"width": 4000, "height": 3000},
          "photo": {"takenDateTime": "2024-03-15T14:22:33Z", "cameraMake": "samsung", "cameraModel": "SM-S921B", "iso": 50},
          "fileSystemInfo": {"createdDateTime": "2024-03-15T14:22:33Z", "lastModifiedDateTime": "2024-03-15T14:22:33Z"},
          "@microsoft.graph.downloadUrl": "https://example/dl?x", "someFutureField": {"a": 1}
        }"#;
        let item: DriveItem = serde_json::from_str(json).unwrap();
        assert!(item.is_file() && item.is_media() && !item.is_folder());
        assert_eq!(item.quick_xor_hash(), Some("O9tHLAghgSvYohKFyMMxnNCHaHg="));
        assert_eq!(item.parent_id(), Some("66D53BE8A5056ECA!103"));
        assert_eq!(item.modified().unwrap().to_rfc3339(), "2024-03-15T14:22:33+00:00");
    }

    #[test]
    fn parses_deleted_delta_entry_without_name_or_size() {
        let item: DriveItem =
            serde_json::from_str(r#"{"id":"A!5","deleted":{},"parentReference":{"id":"A!4"}}"#).unwrap();
        assert!(item.is_deleted());
        assert_eq!(item.name, None);
    }

    #[test]
    fn error_codes_nest_in_either_spelling() {
        let e: ErrorResponse = serde_json::from_str(
            r#"{"error":{"code":"invalidRange","message":"x","innererror":{"code":"fragmentOverlap","innerError":{"code":"deeper"}}}}"#,
        )
        .unwrap();
        assert_eq!(e.error.codes(), vec!["invalidRange", "fragmentOverlap", "deeper"]);
    }

    #[test]
    fn next_expected_offset_takes_the_lowest_start() {
        let s = UploadSession {
            next_expected_ranges: vec!["77829-99999".into(), "26-".into()],
            ..Default::default()
        };
        assert_eq!(s.next_expected_offset(), Some(26));
    }
}
