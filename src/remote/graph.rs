//! [`GraphClient`]: the OneDrive v1.0 metadata operations (drive and quota, items by id or path, special
//! folders, children with paging, thumbnails, delete, rename/move, create folder, restore). Delta lives in
//! `delta.rs`, downloads in `download.rs`, uploads in `upload.rs`; all share this client and its pipeline.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, IF_MATCH, LOCATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::auth::TokenSource;
use super::endpoints::Endpoints;
use super::error::GraphError;
use super::http::{ApiRequest, FullResponse, Pipeline, RetryPolicy, UrlKind};
use super::models::{ConflictBehavior, Drive, DriveItem, ItemPatch, Page, Thumbnail, ThumbnailSet};
use super::paths::{child_resource, encode_segment, item_resource, root_path_resource};

/// Page size asked of children listings (the documented maximum; the service may send fewer).
pub const CHILDREN_PAGE_SIZE: u32 = 1000;

/// The properties a children listing asks for (`$select`): every one the models read, without the download URL
/// (minted per file by the service, short-lived, a secret, and fetched when a file is read) and the
/// descriptive ones nothing uses (`webUrl`, `description`, `createdBy`, `lastModifiedBy`). Smaller pages, less
/// work for the service.
pub const CHILDREN_SELECT: &str = "id,name,eTag,cTag,size,createdDateTime,lastModifiedDateTime,parentReference,file,\
folder,image,photo,video,location,deleted,fileSystemInfo,root,specialFolder,package,remoteItem,malware";

/// Where a children listing continues: the first page of a folder, or a stored `@odata.nextLink`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildrenCursor {
    Folder(String),
    /// First page with `$expand=thumbnails($select=SIZES)` (OneDrive Personal; Business refuses it): the folder
    /// id and the comma-separated thumbnail sizes. The service picks the page size (at most 100 with `$expand`).
    FolderWithThumbnails(String, String),
    NextLink(String),
}

/// A thumbnail to fetch: a thumbnail URL from a listing (pre-authenticated), or item + set + size
/// (`GET /items/{id}/thumbnails/{set}/{size}/content`, which redirects to the pre-authenticated URL).
#[derive(Clone, Copy, Debug)]
pub enum ThumbnailRef<'a> {
    Url(&'a str),
    Set {
        item_id: &'a str,
        set_id: &'a str,
        size: &'a str,
    },
}

/// The Graph client. Cheap to clone; clones share the pipeline (and so the throttle gate).
#[derive(Clone)]
pub struct GraphClient {
    pub(crate) endpoints: Arc<Endpoints>,
    pub(crate) http: Pipeline,
}

impl GraphClient {
    pub fn new(endpoints: Endpoints, tokens: Arc<dyn TokenSource>, policy: RetryPolicy) -> Result<Self, GraphError> {
        let endpoints = endpoints
            .validated()
            .map_err(|e| GraphError::Invalid(format!("endpoints: {e}")))?;
        let http = Pipeline::new(&endpoints.graph_url, tokens, policy)?;
        Ok(Self {
            endpoints: Arc::new(endpoints),
            http,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The process is shutting down: see [`Pipeline::close`]. Clones share this.
    pub fn close(&self) {
        self.http.close();
    }

    /// When the service-imposed pause ends, if one is in force (for `galleryfs status`).
    pub fn throttled_until(&self) -> Option<DateTime<Utc>> {
        self.http.throttled_until()
    }

    /// How many throttling answers this client (and its clones) received so far.
    pub fn throttle_answers(&self) -> u64 {
        self.http.gate().answers()
    }

    /// `{graph}{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        self.endpoints.graph(path)
    }

    pub(crate) fn graph_request(&self, method: Method, path: &str) -> ApiRequest {
        ApiRequest::new(method, self.url(path), UrlKind::Graph)
    }

    pub(crate) async fn call_json<T: DeserializeOwned>(&self, req: &ApiRequest) -> Result<T, GraphError> {
        let resp = self.http.send_full(req).await?;
        decode_json(&resp)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GraphError> {
        self.call_json(&self.graph_request(Method::GET, path)).await
    }

    /// `GET /me/drive` (id, driveType, owner, quota).
    pub async fn drive(&self) -> Result<Drive, GraphError> {
        self.get_json("/me/drive").await
    }

    /// `GET /me/drive/items/{id}`.
    pub async fn item(&self, id: &str) -> Result<DriveItem, GraphError> {
        self.get_json(&item_resource(id)).await
    }

    /// `GET /me/drive/root:/{path}:` (drive-root relative; `""` or `/` is the root itself).
    pub async fn item_by_path(&self, path: &str) -> Result<DriveItem, GraphError> {
        self.get_json(&root_path_resource(path)).await
    }

    /// `GET /me/drive/special/{name}` (`photos`, `cameraroll`, `documents`, …).
    pub async fn special_folder(&self, name: &str) -> Result<DriveItem, GraphError> {
        self.get_json(&format!("/me/drive/special/{}", encode_segment(name)))
            .await
    }

    /// `GET /me/drive/special/{special}:/{name}:`: the child `name` of a special folder, by path relative to it
    /// (concepts/addressing-driveitems.md), in one request whatever the folder holds.
    pub async fn special_folder_child(&self, special: &str, name: &str) -> Result<DriveItem, GraphError> {
        self.get_json(&format!(
            "/me/drive/special/{}:/{}:",
            encode_segment(special),
            encode_segment(name)
        ))
        .await
    }

    /// The child of `parent_id` called `name` (matched case-insensitively by the service); `None` when absent.
    pub async fn child_by_name(&self, parent_id: &str, name: &str) -> Result<Option<DriveItem>, GraphError> {
        match self.get_json(&child_resource(parent_id, name)).await {
            Ok(item) => Ok(Some(item)),
            Err(GraphError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of a folder's children. Follow `next_link` with [`ChildrenCursor::NextLink`] until absent.
    pub async fn children_page(&self, cursor: &ChildrenCursor) -> Result<Page<DriveItem>, GraphError> {
        let req = match cursor {
            ChildrenCursor::Folder(id) => self.graph_request(
                Method::GET,
                &format!(
                    "{}/children?$top={CHILDREN_PAGE_SIZE}&$select={CHILDREN_SELECT}",
                    item_resource(id)
                ),
            ),
            ChildrenCursor::FolderWithThumbnails(id, sizes) => self.graph_request(
                Method::GET,
                &format!(
                    "{}/children?$top={CHILDREN_PAGE_SIZE}&$select={CHILDREN_SELECT}&$expand=thumbnails($select={sizes})",
                    item_resource(id)
                ),
            ),
            ChildrenCursor::NextLink(link) => ApiRequest::new(Method::GET, link.clone(), UrlKind::Graph),
        };
        self.call_json(&req).await
    }

    /// All children of a folder, following every `@odata.nextLink` verbatim.
    pub async fn children(&self, id: &str) -> Result<Vec<DriveItem>, GraphError> {
        self.all_children(ChildrenCursor::Folder(id.to_string())).await
    }

    /// All children with their thumbnail sets (`DriveItem::thumbnails`, only the `sizes` asked for, e.g.
    /// `c128x128,c256x256`) in one listing: far fewer requests than one `thumbnails(id)` per item
    /// (api/driveitem_list_thumbnails.md, "Getting thumbnails while listing DriveItems"). OneDrive Personal only;
    /// Business answers 400: fall back to [`children`].
    ///
    /// [`children`]: Self::children
    pub async fn children_with_thumbnails(&self, id: &str, sizes: &str) -> Result<Vec<DriveItem>, GraphError> {
        if sizes.is_empty() || !sizes.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ',') {
            return Err(GraphError::Invalid(format!("bad thumbnail sizes {sizes:?}")));
        }
        self.all_children(ChildrenCursor::FolderWithThumbnails(id.to_string(), sizes.to_string()))
            .await
    }

    async fn all_children(&self, first: ChildrenCursor) -> Result<Vec<DriveItem>, GraphError> {
        let mut out = Vec::new();
        let mut cursor = first;
        loop {
            let page = self.children_page(&cursor).await?;
            out.extend(page.value);
            match page.next_link {
                Some(next) if cursor == ChildrenCursor::NextLink(next.clone()) => {
                    return Err(GraphError::Decode(
                        "children listing returned the same @odata.nextLink twice; refusing to loop".into(),
                    ))
                }
                Some(next) => cursor = ChildrenCursor::NextLink(next),
                None => return Ok(out),
            }
        }
    }

    /// `GET /items/{id}/thumbnails`: every thumbnail set (empty when the service has none).
    pub async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, GraphError> {
        let page: Page<ThumbnailSet> = self.get_json(&format!("{}/thumbnails", item_resource(id))).await?;
        Ok(page.value)
    }

    /// A custom size such as `c256x256` or `c300x400_Crop` (`?select=` form; the path form 500s on Graph).
    /// `None` when the item has no thumbnail.
    pub async fn thumbnail_custom(&self, id: &str, size: &str) -> Result<Option<Thumbnail>, GraphError> {
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(GraphError::Invalid(format!("bad thumbnail size {size:?}")));
        }
        let page: Page<ThumbnailSet> = self
            .get_json(&format!("{}/thumbnails?select={size}", item_resource(id)))
            .await?;
        for set in page.value {
            if let Some(v) = set.custom.get(size) {
                let thumb: Thumbnail =
                    serde_json::from_value(v.clone()).map_err(|e| GraphError::Decode(format!("thumbnail: {e}")))?;
                return Ok(Some(thumb));
            }
        }
        Ok(None)
    }

    /// The image bytes of a thumbnail. Thumbnail URLs are pre-authenticated: no bearer token is sent to them.
    pub async fn thumbnail_content(&self, thumb: ThumbnailRef<'_>) -> Result<Bytes, GraphError> {
        let url = match thumb {
            ThumbnailRef::Url(url) => url.to_string(),
            ThumbnailRef::Set { item_id, set_id, size } => {
                let path = format!(
                    "{}/thumbnails/{}/{}/content",
                    item_resource(item_id),
                    encode_segment(set_id),
                    encode_segment(size)
                );
                let req = self.graph_request(Method::GET, &path);
                let resp = self.http.send_full(&req).await?;
                match redirect_location(&req.url, resp.status, &resp.headers) {
                    Some(loc) => loc,
                    None if resp.status == StatusCode::OK => return Ok(resp.body),
                    None => return Err(unexpected_status(&resp, "thumbnail content")),
                }
            }
        };
        let resp = self
            .http
            .send_full(&ApiRequest::new(Method::GET, url, UrlKind::PreAuthenticated))
            .await?;
        if resp.status != StatusCode::OK {
            return Err(unexpected_status(&resp, "thumbnail download"));
        }
        Ok(resp.body)
    }

    /// `DELETE /items/{id}` (to the recycle bin). `if_match` → 412 `PreconditionFailed` when stale.
    pub async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), GraphError> {
        let mut req = self.graph_request(Method::DELETE, &item_resource(id));
        if let Some(tag) = if_match {
            req = req.header(IF_MATCH, tag)?;
        }
        self.http.send_full(&req).await?;
        Ok(())
    }

    /// `PATCH /items/{id}`: rename, move and/or set `fileSystemInfo`.
    pub async fn update(&self, id: &str, patch: &ItemPatch, if_match: Option<&str>) -> Result<DriveItem, GraphError> {
        let mut req = self
            .graph_request(Method::PATCH, &item_resource(id))
            .json_body(&patch.to_json());
        if let Some(tag) = if_match {
            req = req.header(IF_MATCH, tag)?;
        }
        self.call_json(&req).await
    }

    /// `POST /items/{parent}/children` with `{"name", "folder": {}, "@microsoft.graph.conflictBehavior"}`.
    pub async fn create_folder(
        &self,
        parent_id: &str,
        name: &str,
        conflict: ConflictBehavior,
    ) -> Result<DriveItem, GraphError> {
        let body = json!({
            "name": name,
            "folder": {},
            "@microsoft.graph.conflictBehavior": conflict.as_str(),
        });
        let req = self
            .graph_request(Method::POST, &format!("{}/children", item_resource(parent_id)))
            .json_body(&body);
        self.call_json(&req).await
    }

    /// `POST /items/{id}/restore` from the recycle bin (OneDrive Personal only), optionally elsewhere/renamed.
    pub async fn restore(
        &self,
        id: &str,
        parent_id: Option<&str>,
        name: Option<&str>,
    ) -> Result<DriveItem, GraphError> {
        let mut body = serde_json::Map::new();
        if let Some(p) = parent_id {
            body.insert("parentReference".into(), json!({ "id": p }));
        }
        if let Some(n) = name {
            body.insert("name".into(), n.into());
        }
        let req = self
            .graph_request(Method::POST, &format!("{}/restore", item_resource(id)))
            .json_body(&serde_json::Value::Object(body));
        self.call_json(&req).await
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(resp: &FullResponse) -> Result<T, GraphError> {
    serde_json::from_slice(&resp.body).map_err(|e| {
        GraphError::Decode(format!(
            "{} response is not the expected JSON: {e}",
            resp.status.as_u16()
        ))
    })
}

/// The `Location` of a redirect answer to a request for `request_url`, made absolute (a relative
/// `Location` is resolved against the request URL).
pub(crate) fn redirect_location(request_url: &str, status: StatusCode, headers: &HeaderMap) -> Option<String> {
    if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let loc = headers.get(LOCATION)?.to_str().ok()?;
    match url::Url::parse(loc) {
        Ok(abs) => Some(abs.to_string()),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            url::Url::parse(request_url).ok()?.join(loc).ok().map(|u| u.to_string())
        }
        Err(_) => None,
    }
}

pub(crate) fn unexpected_status(resp: &FullResponse, what: &str) -> GraphError {
    GraphError::Decode(format!("{what}: unexpected status {}", resp.status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn redirect_locations_are_made_absolute() {
        let mut h = HeaderMap::new();
        let req = "http://127.0.0.1:9/v1.0/me/drive/items/A!1/content";
        assert_eq!(redirect_location(req, StatusCode::FOUND, &h), None);
        h.insert(LOCATION, HeaderValue::from_static("https://dl.example/x?sig=1"));
        assert_eq!(
            redirect_location(req, StatusCode::FOUND, &h).as_deref(),
            Some("https://dl.example/x?sig=1")
        );
        assert_eq!(redirect_location(req, StatusCode::OK, &h), None);
        h.insert(LOCATION, HeaderValue::from_static("/dl/A!1?sig=1"));
        assert_eq!(
            redirect_location(req, StatusCode::TEMPORARY_REDIRECT, &h).as_deref(),
            Some("http://127.0.0.1:9/dl/A!1?sig=1")
        );
    }
}
