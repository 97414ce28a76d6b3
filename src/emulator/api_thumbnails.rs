//! Thumbnails (OAD api/driveitem_list_thumbnails.md, resources/thumbnailSet.md): the set list, one size, its
//! `/content` redirect, custom `c{W}x{H}[_Crop]` sizes, `$expand=thumbnails`, and the thumbnail bytes on the
//! content host. Rendered JPEGs are cached per (item, cTag version, size); no thumbnail → `{"value": []}`.

use super::addressing::{resolve, GraphRequest, Target};
use super::blob::Blob;
use super::drive::{Drive, Item, ItemNo};
use super::errors::{GraphError, GraphResult};
use super::media;
use super::state::EmulatorState;
use super::thumb_cache::Rendered;
use axum::extract::{Path, Query as AxumQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Largest spooled upload read whole to render a thumbnail.
const RENDER_LIMIT: u64 = 64 * 1024 * 1024;

/// What rendering an item's thumbnails needs, taken under the drive lock.
#[derive(Clone, Debug)]
pub struct ThumbSource {
    pub no: ItemNo,
    pub ctag_ver: u64,
    pub blob: Option<Blob>,
    pub mime: String,
    pub disabled: bool,
}

impl ThumbSource {
    pub fn of(_d: &Drive, item: &Item) -> Self {
        let file = item.file();
        ThumbSource {
            no: item.no,
            ctag_ver: item.ctag_ver,
            blob: file.map(|f| f.blob.clone()),
            mime: file.map(|f| f.mime.clone()).unwrap_or_default(),
            disabled: item.no_thumbnail,
        }
    }
}

/// One requested size.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeSpec {
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub crop: bool,
}

/// A named or custom size: `small` (96), `medium` (176), `large` (800) longest edge, `…Square` cropped,
/// `c300x400` (fit) and `c300x400_Crop`.
pub fn parse_spec(name: &str) -> Option<SizeSpec> {
    let named = |w, crop| {
        Some(SizeSpec {
            key: name.to_string(),
            width: w,
            height: w,
            crop,
        })
    };
    match name {
        "small" => named(96, false),
        "medium" => named(176, false),
        "large" => named(800, false),
        "smallSquare" => named(96, true),
        "mediumSquare" => named(176, true),
        "largeSquare" => named(800, true),
        _ => {
            let rest = name.strip_prefix('c')?;
            let (dims, crop) = match rest.len().checked_sub(5).map(|i| rest.split_at(i)) {
                Some((d, suffix)) if suffix.eq_ignore_ascii_case("_crop") => (d, true),
                _ => (rest, false),
            };
            let (w, h) = dims.split_once('x')?;
            let (w, h): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
            if w == 0 || h == 0 || w > 10_000 || h > 10_000 {
                return None;
            }
            Some(SizeSpec {
                key: name.to_string(),
                width: w,
                height: h,
                crop,
            })
        }
    }
}

fn selection(select: Option<&str>) -> Vec<SizeSpec> {
    let sel: Vec<SizeSpec> = select
        .map(|s| s.split(',').filter_map(|n| parse_spec(n.trim())).collect())
        .unwrap_or_default();
    if sel.is_empty() {
        ["small", "medium", "large"]
            .iter()
            .filter_map(|n| parse_spec(n))
            .collect()
    } else {
        sel
    }
}

fn signature(state: &EmulatorState, no: ItemNo, ver: u64, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{}|{no}|{ver}|{key}", state.secret));
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn url(state: &EmulatorState, no: ItemNo, ver: u64, key: &str) -> String {
    format!(
        "{}/thumbnails/{no}/{ver}/{key}?sig={}",
        state.content_url,
        signature(state, no, ver, key)
    )
}

async fn render(state: &Arc<EmulatorState>, src: &ThumbSource, spec: &SizeSpec) -> Option<Rendered> {
    if src.disabled {
        return None;
    }
    let key = (src.no, src.ctag_ver, spec.key.clone());
    if let Some(hit) = state.thumbs.map.lock().get(&key) {
        return hit.clone();
    }
    let blob = src.blob.clone()?;
    let (mime, spec2) = (src.mime.clone(), spec.clone());
    let out = tokio::task::spawn_blocking(move || {
        let content = blob.as_content(RENDER_LIMIT)?;
        media::render_thumbnail(&content, &mime, spec2.width, spec2.height, spec2.crop)
            .map(|(jpeg, width, height)| Rendered { jpeg, width, height })
    })
    .await
    .ok()
    .flatten();
    state.thumbs.map.lock().insert(key, out.clone());
    out
}

fn thumb_json(state: &EmulatorState, src: &ThumbSource, spec: &SizeSpec, r: &Rendered) -> Value {
    json!({"width": r.width, "height": r.height, "url": url(state, src.no, src.ctag_ver, &spec.key)})
}

/// The thumbnail sets of an item: `[]` when it has none, else one set `"0"` with the selected sizes.
pub async fn sets_for(state: &Arc<EmulatorState>, src: ThumbSource, select: Option<&str>) -> Vec<Value> {
    if src.disabled || src.blob.is_none() {
        return Vec::new();
    }
    let mut set = json!({"id": "0"});
    for spec in selection(select) {
        // A synthetic file's thumbnail size is known without drawing it: drawn when its URL is fetched.
        let known = match &src.blob {
            Some(Blob::Media(content)) => {
                media::synthetic_thumbnail_size(content, &src.mime, spec.width, spec.height, spec.crop)
            }
            _ => None,
        };
        if let Some((width, height)) = known {
            set[spec.key.as_str()] =
                json!({"width": width, "height": height, "url": url(state, src.no, src.ctag_ver, &spec.key)});
            continue;
        }
        match render(state, &src, &spec).await {
            Some(r) => set[spec.key.as_str()] = thumb_json(state, &src, &spec, &r),
            None => return Vec::new(),
        }
    }
    vec![set]
}

/// `GET …/thumbnails[/{set}[/{size}[/content]]]`.
pub async fn get(
    state: &Arc<EmulatorState>,
    req: &GraphRequest,
    target: &Target,
    more: &[&str],
) -> GraphResult<Response> {
    let src = {
        let mut d = state.drive.lock();
        let no = resolve(&mut d, target)?;
        ThumbSource::of(&d, d.live(no)?)
    };
    let select = req.query.odata("select");
    match more {
        [] => Ok(Json(json!({"value": sets_for(state, src, select).await})).into_response()),
        [set] => {
            let sets = sets_for(state, src, select).await;
            match sets.into_iter().find(|s| s["id"] == *set) {
                Some(s) => Ok(Json(s).into_response()),
                None => Err(GraphError::not_found(format!("thumbnail set '{set}'"))),
            }
        }
        [set, size] | [set, size, "content"] => {
            let spec =
                parse_spec(size).ok_or_else(|| GraphError::invalid(format!("Invalid thumbnail size '{size}'")))?;
            if *set != "0" {
                return Err(GraphError::not_found(format!("thumbnail set '{set}'")));
            }
            let r = render(state, &src, &spec)
                .await
                .ok_or_else(|| GraphError::not_found("thumbnail"))?;
            if more.len() == 3 {
                let location = url(state, src.no, src.ctag_ver, &spec.key);
                Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
            } else {
                Ok(Json(thumb_json(state, &src, &spec, &r)).into_response())
            }
        }
        _ => Err(GraphError::invalid("Invalid thumbnail address")),
    }
}

#[derive(serde::Deserialize)]
pub struct SigQuery {
    sig: Option<String>,
}

/// Content host: `GET /thumbnails/{item}/{version}/{size}?sig=…` → the JPEG.
pub async fn serve(
    State(state): State<Arc<EmulatorState>>,
    Path((no, ver, key)): Path<(ItemNo, u64, String)>,
    AxumQuery(q): AxumQuery<SigQuery>,
) -> Response {
    if q.sig.as_deref() != Some(signature(&state, no, ver, &key).as_str()) {
        return GraphError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Invalid thumbnail URL").into_response();
    }
    let Some(spec) = parse_spec(&key) else {
        return GraphError::not_found("thumbnail").into_response();
    };
    let src = {
        let d = state.drive.lock();
        match d.item(no).filter(|i| i.is_live() && i.ctag_ver == ver) {
            Some(item) => ThumbSource::of(&d, item),
            None => return GraphError::not_found("thumbnail").into_response(),
        }
    };
    match render(&state, &src, &spec).await {
        Some(r) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "public, max-age=31536000"),
            ],
            r.jpeg,
        )
            .into_response(),
        None => GraphError::not_found("thumbnail").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_specs() {
        assert_eq!(parse_spec("medium").unwrap().width, 176);
        assert!(parse_spec("largeSquare").unwrap().crop);
        let c = parse_spec("c256x256_Crop").unwrap();
        assert_eq!((c.width, c.height, c.crop), (256, 256, true));
        let c = parse_spec("c300x400").unwrap();
        assert_eq!((c.width, c.height, c.crop), (300, 400, false));
        assert!(parse_spec("c0x5").is_none() && parse_spec("huge").is_none() && parse_spec("cx").is_none());
        assert_eq!(selection(None).len(), 3);
        assert_eq!(selection(Some("c256x256,bogus"))[0].key, "c256x256");
    }
}
