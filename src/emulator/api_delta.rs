//! Delta (OAD api/driveitem_delta.md): `GET …/root/delta` and folder-scoped `…/items/{id}/delta`. No token is a
//! full enumeration, `token=latest` an empty page with a fresh deltaLink, a deltaLink token the changes since
//! it. Pages of ≤ 200 (or `$top`) chained by `@odata.nextLink`; the last carries `@odata.deltaLink`. Tokens are
//! `{epoch}.{journal sequence}`; invalidated tokens answer 410 `resyncRequired` with a restart `Location`.

use super::addressing::{resolve, GraphRequest, Target};
use super::delta_cursor::DeltaCursor;
use super::drive::ItemNo;
use super::errors::{GraphError, GraphResult};
use super::render::{deleted_json, item_json, parse_select, RenderOpts};
use super::state::EmulatorState;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_PAGE: usize = 200;
pub const MAX_PAGE: usize = 1000;

enum Token {
    Start,
    Latest,
    Since { epoch: u64, seq: u64 },
    Page { epoch: u64, cursor: String, offset: usize },
}

fn parse_token(t: Option<&str>) -> Option<Token> {
    let Some(t) = t else { return Some(Token::Start) };
    if t == "latest" {
        return Some(Token::Latest);
    }
    let parts: Vec<&str> = t.split('.').collect();
    match parts.as_slice() {
        ["p", epoch, cursor, offset] => Some(Token::Page {
            epoch: epoch.parse().ok()?,
            cursor: cursor.to_string(),
            offset: offset.parse().ok()?,
        }),
        [epoch, seq] => Some(Token::Since {
            epoch: epoch.parse().ok()?,
            seq: seq.parse().ok()?,
        }),
        _ => None,
    }
}

pub fn delta(state: &Arc<EmulatorState>, req: &GraphRequest, target: &Target) -> GraphResult<Response> {
    let top = match req.query.odata("top") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| GraphError::invalid(format!("Invalid $top '{t}'")))?
            .clamp(1, MAX_PAGE),
        None => DEFAULT_PAGE,
    };
    let opts = RenderOpts {
        select: parse_select(req.query.odata("select")),
        in_delta: true,
    };
    let raw_token = req
        .query
        .get("token")
        .or_else(|| req.query.odata("deltatoken"))
        .or_else(|| req.query.odata("skiptoken"));
    let base_query = req.query.without(&["token", "deltatoken", "skiptoken"]);
    let link = |token: &str| {
        let q = if base_query.is_empty() {
            format!("token={token}")
        } else {
            format!("{base_query}&token={token}")
        };
        req.url_with_query(state, &q)
    };
    let restart = req.url_with_query(state, &base_query);

    let mut d = state.drive.lock();
    let scope = resolve(&mut d, target)?;
    d.live_folder(scope)?;
    let token = parse_token(raw_token).ok_or_else(|| GraphError::invalid("Invalid delta token"))?;
    let (cursor_id, cursor, offset) = match token {
        Token::Latest => {
            let dl = link(&format!("{}.{}", d.epoch, d.current_seq()));
            return Ok(Json(json!({"value": [], "@odata.deltaLink": dl})).into_response());
        }
        Token::Start => (None, new_cursor(&d, scope, None), 0),
        Token::Since { epoch, seq } => {
            if epoch != d.epoch || seq > d.current_seq() || seq < valid_from(state, scope) {
                return Err(GraphError::resync(restart));
            }
            let mut cursor = new_cursor(&d, scope, Some(seq));
            drop_deletion_if_asked(state, &mut cursor);
            (None, cursor, 0)
        }
        Token::Page { epoch, cursor, offset } => {
            let found = state.delta_cursors.lock().get(&cursor).cloned();
            let valid_from = valid_from(state, scope);
            match found.filter(|c| c.epoch == epoch && epoch == d.epoch && c.scope == scope && c.upto >= valid_from) {
                Some(c) => (Some(cursor), c, offset),
                None => return Err(GraphError::resync(restart)),
            }
        }
    };
    let end = (offset + top).min(cursor.entries.len());
    let mut values: Vec<Value> = Vec::with_capacity(end.saturating_sub(offset));
    for e in cursor.entries.get(offset..end).unwrap_or(&[]) {
        let Some(item) = d.item(e.no) else { continue };
        // Rendered in the state of now: an item deleted and restored since the round began is live again.
        if item.is_live() && d.is_within(e.no, scope) {
            values.push(item_json(state, &d, item, &opts));
        } else {
            values.push(deleted_json(&d, item));
        }
    }
    let mut body = json!({"value": values});
    if end < cursor.entries.len() {
        let id = cursor_id.unwrap_or_else(|| {
            let id = format!("{:016x}", rand::random::<u64>());
            let mut cursors = state.delta_cursors.lock();
            if cursors.len() > 256 {
                cursors.retain(|_, c| c.created.elapsed() < Duration::from_secs(3600));
            }
            cursors.insert(id.clone(), cursor.clone());
            id
        });
        body["@odata.nextLink"] = json!(link(&format!("p.{}.{id}.{end}", d.epoch)));
    } else {
        body["@odata.deltaLink"] = json!(link(&format!("{}.{}", d.epoch, cursor.upto)));
    }
    Ok(Json(body).into_response())
}

fn new_cursor(d: &super::drive::Drive, scope: ItemNo, since: Option<u64>) -> DeltaCursor {
    DeltaCursor {
        entries: Arc::new(d.delta_entries(scope, since)),
        upto: d.current_seq(),
        epoch: d.epoch,
        scope,
        created: Instant::now(),
    }
}

/// The `drop_next_delta_deletion` control: leaves the round's first deletion out (once).
fn drop_deletion_if_asked(state: &EmulatorState, cursor: &mut DeltaCursor) {
    let Some(pos) = cursor.entries.iter().position(|e| e.deleted) else {
        return;
    };
    let mut settings = state.settings.lock();
    if std::mem::take(&mut settings.drop_next_delta_deletion) {
        let mut entries = (*cursor.entries).clone();
        entries.remove(pos);
        cursor.entries = Arc::new(entries);
        tracing::debug!("delta round: one deletion left out, as asked");
    }
}

/// The first journal number of the tokens of `scope` that are still valid (0 unless invalidated).
fn valid_from(state: &EmulatorState, scope: ItemNo) -> u64 {
    state.settings.lock().delta_valid_from.get(&scope).copied().unwrap_or(0)
}

/// Makes the tokens and page links issued so far for `scope` answer 410 (a control): the journal moves one
/// number on, and tokens of the scope from before that number are refused.
pub fn invalidate_scope(state: &EmulatorState, d: &mut super::drive::Drive, scope: ItemNo) {
    let mark = d.next_seq();
    state.settings.lock().delta_valid_from.insert(scope, mark);
}

/// Makes every issued delta token and page link answer 410 (a control).
pub fn invalidate_tokens(state: &EmulatorState) {
    state.drive.lock().epoch += 1;
    state.delta_cursors.lock().clear();
}
