//! Item and drive handlers: get an item (OAD api/driveitem_get.md), list children with paging (…_list_children.md),
//! create a folder (…_post_children.md), update/move (…_update.md, …_move.md), delete (…_delete.md), restore
//! (GDC driveitem-restore.md), and the drive with its quota (api/drive_get.md).

use super::addressing::{resolve, GraphRequest, Query, Target};
use super::api_thumbnails::{self, ThumbSource};
use super::drive::{Conflict, Drive, ItemNo, ItemPatch, ROOT_NO};
use super::errors::{GraphError, GraphResult};
use super::names::fold;
use super::render::{drive_json, item_json, parse_select, RenderOpts};
use super::state::EmulatorState;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

/// Default and largest page of children (OAD; OneDrive/onedrive-api-docs#170, #319).
pub const DEFAULT_PAGE: usize = 200;
pub const MAX_PAGE: usize = 1000;
/// Largest children page when `$expand` is used (graph-api.md §4: microsoftgraph/microsoft-graph-docs PR #21506).
pub const MAX_EXPAND_PAGE: usize = 100;
/// Items of a page whose thumbnails are rendered at once for `$expand=thumbnails`.
const RENDERS_AT_ONCE: usize = 4;

/// What `$expand` asked for.
#[derive(Clone, Debug, Default)]
pub struct Expand {
    /// `Some(select)` when thumbnails are expanded; the inner `$select` of `thumbnails(...)` if any.
    pub thumbnails: Option<Option<String>>,
    pub children: bool,
    /// `children($expand=thumbnails)`.
    pub children_thumbnails: bool,
}

impl Expand {
    pub fn parse(v: Option<&str>) -> Self {
        let mut e = Expand::default();
        let Some(v) = v else { return e };
        let mut depth = 0;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in v.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&v[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&v[start..]);
        for p in parts {
            let p = p.trim();
            let (name, inner) = match p.split_once('(') {
                Some((n, rest)) => (n.trim(), Some(rest.trim_end_matches(')'))),
                None => (p, None),
            };
            let inner_select = inner.and_then(|i| {
                i.split(';').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    matches!(k.trim(), "$select" | "select").then(|| v.trim().to_string())
                })
            });
            match name {
                "thumbnails" => e.thumbnails = Some(inner_select),
                "children" => {
                    e.children = true;
                    e.children_thumbnails = inner.is_some_and(|i| {
                        i.split(';').any(|kv| {
                            kv.split_once('=').is_some_and(|(k, v)| {
                                matches!(k.trim(), "$expand" | "expand") && v.contains("thumbnails")
                            })
                        })
                    });
                }
                _ => {}
            }
        }
        e
    }
}

pub(crate) async fn read_json(body: Body) -> GraphResult<Value> {
    let bytes = axum::body::to_bytes(body, 4 * 1024 * 1024)
        .await
        .map_err(|_| GraphError::invalid("Request body too large or unreadable"))?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| GraphError::invalid(format!("Invalid JSON body: {e}")))
}

pub(crate) fn parse_time(v: &Value) -> GraphResult<Option<DateTime<Utc>>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| GraphError::invalid(format!("Invalid date '{s}'"))),
        _ => Err(GraphError::invalid("Invalid date")),
    }
}

/// `fileSystemInfo` and `description` of a request body, into a patch.
pub(crate) fn patch_times(body: &Value, patch: &mut ItemPatch) -> GraphResult<()> {
    if let Some(fsi) = body.get("fileSystemInfo") {
        patch.fs_created = parse_time(fsi.get("createdDateTime").unwrap_or(&Value::Null))?;
        patch.fs_modified = parse_time(fsi.get("lastModifiedDateTime").unwrap_or(&Value::Null))?;
    }
    if let Some(d) = body.get("description").and_then(Value::as_str) {
        patch.description = Some(d.to_string());
    }
    Ok(())
}

/// `@microsoft.graph.conflictBehavior` from the body or the query, else `default`.
pub(crate) fn conflict_of(body: Option<&Value>, query: Option<&Query>, default: Conflict) -> GraphResult<Conflict> {
    const KEY: &str = "@microsoft.graph.conflictBehavior";
    let v = body
        .and_then(|b| b.get(KEY))
        .and_then(Value::as_str)
        .or_else(|| query.and_then(|q| q.get(KEY)));
    v.map(Conflict::parse).transpose().map(|c| c.unwrap_or(default))
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

/// Items rendered under the lock, with what thumbnail expansion needs afterwards.
fn render_many(
    state: &EmulatorState,
    d: &Drive,
    nos: &[ItemNo],
    opts: &RenderOpts,
    thumbs: bool,
) -> (Vec<Value>, Vec<ThumbSource>) {
    let mut values = Vec::with_capacity(nos.len());
    let mut sources = Vec::new();
    for no in nos {
        if let Some(item) = d.item(*no) {
            values.push(item_json(state, d, item, opts));
            if thumbs {
                sources.push(ThumbSource::of(d, item));
            }
        }
    }
    (values, sources)
}

async fn add_thumbnails(
    state: &Arc<EmulatorState>,
    values: &mut [Value],
    sources: Vec<ThumbSource>,
    select: Option<&str>,
) {
    use futures::stream::{self, StreamExt};
    // Rendering is CPU work on the blocking pool: a few items at once, in page order.
    let sets: Vec<Vec<Value>> = stream::iter(sources)
        .map(|src| api_thumbnails::sets_for(state, src, select))
        .buffered(RENDERS_AT_ONCE)
        .collect()
        .await;
    for (v, sets) in values.iter_mut().zip(sets) {
        v["thumbnails"] = Value::Array(sets);
    }
}

pub async fn get_item(state: &Arc<EmulatorState>, req: &GraphRequest, target: &Target) -> GraphResult<Response> {
    let opts = RenderOpts {
        select: parse_select(req.query.odata("select")),
        in_delta: false,
    };
    let expand = Expand::parse(req.query.odata("expand"));
    let (mut v, source, mut children) = {
        let mut d = state.drive.lock();
        let no = resolve(&mut d, target)?;
        let item = d.live(no)?;
        if req
            .header(header::IF_NONE_MATCH)
            .is_some_and(|t| d.tag_matches(item, t))
        {
            return Ok(not_modified());
        }
        let v = item_json(state, &d, item, &opts);
        let source = expand.thumbnails.is_some().then(|| ThumbSource::of(&d, item));
        let children = expand.children.then(|| {
            let (page, _) = d.children_page(no, None, DEFAULT_PAGE);
            render_many(state, &d, &page, &RenderOpts::default(), expand.children_thumbnails)
        });
        (v, source, children)
    };
    if let (Some(src), Some(sel)) = (source, &expand.thumbnails) {
        v["thumbnails"] = Value::Array(api_thumbnails::sets_for(state, src, sel.as_deref()).await);
    }
    if let Some((mut values, sources)) = children.take() {
        if expand.children_thumbnails {
            add_thumbnails(state, &mut values, sources, None).await;
        }
        v["children"] = Value::Array(values);
    }
    Ok(Json(v).into_response())
}

pub async fn list_children(state: &Arc<EmulatorState>, req: &GraphRequest, target: &Target) -> GraphResult<Response> {
    let opts = RenderOpts {
        select: parse_select(req.query.odata("select")),
        in_delta: false,
    };
    let expand = Expand::parse(req.query.odata("expand"));
    let top = match req.query.odata("top") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| GraphError::invalid(format!("Invalid $top '{t}'")))?
            .clamp(1, MAX_PAGE),
        None => DEFAULT_PAGE,
    };
    let top = if req.query.odata("expand").is_some() {
        top.min(MAX_EXPAND_PAGE)
    } else {
        top
    };
    let after = match req.query.odata("skiptoken") {
        Some(t) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| GraphError::invalid("Invalid $skiptoken"))?,
        ),
        None => None,
    };
    let (mut values, sources, next) = {
        let mut d = state.drive.lock();
        let no = resolve(&mut d, target)?;
        let folder = d.live(no)?;
        if req
            .header(header::IF_NONE_MATCH)
            .is_some_and(|t| d.tag_matches(folder, t))
        {
            return Ok(not_modified());
        }
        if !folder.is_folder() {
            return Ok(Json(json!({"value": []})).into_response());
        }
        let (page, more) = d.children_page(no, after.as_deref(), top);
        let next = match (more, page.last().and_then(|n| d.item(*n))) {
            (true, Some(last)) => {
                let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fold(&last.name));
                let mut q = req.query.without(&["skiptoken"]);
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str(&format!("$skiptoken={token}"));
                Some(req.url_with_query(state, &q))
            }
            _ => None,
        };
        let (values, sources) = render_many(state, &d, &page, &opts, expand.thumbnails.is_some());
        (values, sources, next)
    };
    if let Some(sel) = &expand.thumbnails {
        add_thumbnails(state, &mut values, sources, sel.as_deref()).await;
    }
    let mut body = json!({"value": values});
    if let Some(n) = next {
        body["@odata.nextLink"] = json!(n);
    }
    Ok(Json(body).into_response())
}

/// `POST …/children`: a new folder.
pub async fn create_child(state: &Arc<EmulatorState>, target: &Target, body: Body) -> GraphResult<Response> {
    let body = read_json(body).await?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::invalid("A name is required"))?;
    if body.get("folder").is_none() {
        return Err(GraphError::invalid(
            "Only folders can be created with POST children; upload files with PUT",
        ));
    }
    let conflict = conflict_of(Some(&body), None, Conflict::Fail)?;
    let mut patch = ItemPatch::default();
    patch_times(&body, &mut patch)?;
    let mut d = state.drive.lock();
    let parent = super::addressing::resolve_for_write(&mut d, target)?;
    let now = Utc::now();
    let no = d.create_folder(parent, name, conflict, now)?;
    if patch.fs_created.is_some() || patch.fs_modified.is_some() || patch.description.is_some() {
        d.update(no, &patch, now)?;
    }
    let v = item_json(state, &d, d.live(no)?, &RenderOpts::default());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn check_if_match(d: &Drive, no: ItemNo, req: &GraphRequest) -> GraphResult<()> {
    if let Some(tag) = req.header(header::IF_MATCH) {
        if !d.tag_matches(d.live(no)?, tag) {
            return Err(GraphError::modified());
        }
    }
    Ok(())
}

/// `PATCH /items/{id}`: rename, move, `fileSystemInfo`, `description`.
pub async fn patch_item(
    state: &Arc<EmulatorState>,
    req: &GraphRequest,
    target: &Target,
    body: Body,
) -> GraphResult<Response> {
    let body = read_json(body).await?;
    if !body.is_object() {
        return Err(GraphError::invalid("The body must be a JSON object"));
    }
    let mut patch = ItemPatch::default();
    patch_times(&body, &mut patch)?;
    if let Some(n) = body.get("name") {
        patch.name = Some(
            n.as_str()
                .ok_or_else(|| GraphError::invalid("name must be a string"))?
                .to_string(),
        );
    }
    let mut d = state.drive.lock();
    let no = resolve(&mut d, target)?;
    check_if_match(&d, no, req)?;
    if let Some(pr) = body.get("parentReference").filter(|v| !v.is_null()) {
        if let Some(drive) = pr.get("driveId").and_then(Value::as_str) {
            if !drive.eq_ignore_ascii_case(&d.drive_id) {
                return Err(GraphError::invalid("Moving items between drives is not supported"));
            }
        }
        if let Some(id) = pr.get("id").and_then(Value::as_str) {
            patch.parent = Some(d.live_by_id(id)?);
        } else if let Some(path) = pr.get("path").and_then(Value::as_str) {
            let rel = path.trim_start_matches("/drive/root:").trim_start_matches(':');
            let segs: Vec<String> = rel.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
            patch.parent = Some(d.resolve_path(ROOT_NO, &segs)?);
        }
    }
    d.update(no, &patch, Utc::now())?;
    let v = item_json(state, &d, d.live(no)?, &RenderOpts::default());
    Ok(Json(v).into_response())
}

/// `DELETE /items/{id}`: to the recycle bin.
pub fn delete_item(state: &Arc<EmulatorState>, req: &GraphRequest, target: &Target) -> GraphResult<Response> {
    let mut d = state.drive.lock();
    let no = resolve(&mut d, target)?;
    check_if_match(&d, no, req)?;
    d.delete(no, Utc::now())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /items/{id}/restore` (Personal only): `{parentReference?: {id}, name?}`.
pub async fn restore_item(state: &Arc<EmulatorState>, target: &Target, body: Body) -> GraphResult<Response> {
    let body = read_json(body).await?;
    let mut d = state.drive.lock();
    let no = match (&target.base, &target.path) {
        (super::addressing::Base::Id(id), None) => d.parse_id(id).ok_or_else(|| GraphError::not_found(id))?,
        _ => return Err(GraphError::invalid("Restore addresses the deleted item by id")),
    };
    let parent = match body
        .get("parentReference")
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
    {
        Some(id) => Some(d.live_by_id(id)?),
        None => None,
    };
    let name = body.get("name").and_then(Value::as_str).map(str::to_string);
    d.restore(no, parent, name.as_deref(), Utc::now())?;
    let v = item_json(state, &d, d.live(no)?, &RenderOpts::default());
    Ok(Json(v).into_response())
}

/// `POST /items/{id}/copy` (OAD api/driveitem_copy.md): done at once; 202 with a monitor URL on the content host
/// whose status (concepts/long-running-actions.md) is already `completed` with the copy's `resourceId`.
pub async fn copy_item(
    state: &Arc<EmulatorState>,
    req: &GraphRequest,
    target: &Target,
    body: Body,
) -> GraphResult<Response> {
    let body = read_json(body).await?;
    let conflict = conflict_of(Some(&body), Some(&req.query), Conflict::Fail)?;
    let name = body.get("name").and_then(Value::as_str).map(str::to_string);
    let copy_id = {
        let mut d = state.drive.lock();
        let src = resolve(&mut d, target)?;
        let pr = body.get("parentReference").filter(|v| !v.is_null());
        if let Some(drive) = pr.and_then(|p| p.get("driveId")).and_then(Value::as_str) {
            if !drive.eq_ignore_ascii_case(&d.drive_id) {
                return Err(GraphError::not_supported(
                    "Copying to another drive is not supported by this emulator",
                ));
            }
        }
        let parent = match (
            pr.and_then(|p| p.get("id")).and_then(Value::as_str),
            pr.and_then(|p| p.get("path")).and_then(Value::as_str),
        ) {
            (Some(id), _) => d.live_by_id(id)?,
            (None, Some(path)) => {
                let rel = path.trim_start_matches("/drive/root:").trim_start_matches(':');
                let segs: Vec<String> = rel.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
                d.resolve_path(ROOT_NO, &segs)?
            }
            (None, None) => d
                .live(src)?
                .parent
                .ok_or_else(|| GraphError::invalid("The root cannot be copied"))?,
        };
        let copy = d.copy_item(src, parent, name.as_deref(), conflict, Utc::now())?;
        d.id_of(copy)
    };
    let token = format!("{:032x}", rand::random::<u128>());
    state.monitors.lock().insert(token.clone(), copy_id);
    let location = format!("{}/monitor/{token}", state.content_url);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)]).into_response())
}

/// Content host: `GET /monitor/{token}` → 303 with the completed job status (no authentication needed).
pub async fn monitor(
    axum::extract::State(state): axum::extract::State<Arc<EmulatorState>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match state.monitors.lock().get(&token) {
        Some(id) => (
            StatusCode::SEE_OTHER,
            Json(
                json!({"operation": "ItemCopy", "percentageComplete": 100.0, "resourceId": id, "status": "completed"}),
            ),
        )
            .into_response(),
        None => GraphError::not_found("monitor").into_response(),
    }
}

pub fn get_drive(state: &Arc<EmulatorState>, req: &GraphRequest) -> Response {
    let mut v = drive_json(&state.drive.lock());
    if let Some(sel) = parse_select(req.query.odata("select")) {
        super::render::apply_select(&mut v, &sel);
    }
    Json(v).into_response()
}

pub fn list_drives(state: &Arc<EmulatorState>) -> Response {
    Json(json!({"value": [drive_json(&state.drive.lock())]})).into_response()
}

pub fn get_me(state: &Arc<EmulatorState>) -> Response {
    let id = state.drive.lock().drive_id.clone();
    Json(json!({"id": id, "displayName": "Emulator User", "userPrincipalName": "emulator.user@outlook.com"}))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_parses_nested_select() {
        let e = Expand::parse(Some("thumbnails($select=medium,c256x256),children"));
        assert_eq!(e.thumbnails, Some(Some("medium,c256x256".into())));
        assert!(e.children);
        let e = Expand::parse(Some("children(expand=thumbnails)"));
        assert!(e.children && e.children_thumbnails && e.thumbnails.is_none());
        let e = Expand::parse(Some("thumbnails"));
        assert_eq!(e.thumbnails, Some(None));
        assert!(!Expand::parse(None).children);
    }
}
