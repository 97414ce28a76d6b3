//! The `/v1.0` front door: bearer check, the request's addressing form parsed ([`super::addressing`]), and
//! dispatch to the handlers of each resource.

use super::addressing::{delta_function_token, parse_path, Base, GraphRequest, Query, Resource};
use super::errors::{GraphError, GraphResult};
use super::state::EmulatorState;
use super::{api_content, api_delta, api_items, api_thumbnails, api_upload};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use std::sync::Arc;

pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/v1.0", any(graph))
        .route("/v1.0/{*rest}", any(graph))
        .with_state(state)
}

async fn graph(
    State(state): State<Arc<EmulatorState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(e) = state.identity.check_bearer(auth) {
        return e.into_response();
    }
    let path = uri.path().strip_prefix("/v1.0").unwrap_or("").to_string();
    let req = GraphRequest {
        method,
        path,
        query: Query::parse(uri.query()),
        headers,
    };
    match dispatch(&state, req, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "graph error");
            e.into_response()
        }
    }
}

async fn dispatch(state: &Arc<EmulatorState>, mut req: GraphRequest, body: Body) -> GraphResult<Response> {
    let resource = parse_path(&req.path, &state.drive.lock().drive_id)?;
    let m = req.method.clone();
    match resource {
        Resource::Me if m == Method::GET => Ok(api_items::get_me(state)),
        Resource::Drives if m == Method::GET => Ok(api_items::list_drives(state)),
        Resource::Drive if m == Method::GET => Ok(api_items::get_drive(state, &req)),
        Resource::Me | Resource::Drives | Resource::Drive => Err(GraphError::method_not_allowed()),
        Resource::Item { target, mut rest } => {
            // The function form `delta(token='…')` of the documentation's examples.
            if let Some(token) = rest.last().and_then(|l| delta_function_token(l)) {
                req.query.0.push(("token".into(), token));
                *rest.last_mut().expect("non-empty") = "delta".into();
            }
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            match (&m, rest.as_slice()) {
                (&Method::GET, []) => api_items::get_item(state, &req, &target).await,
                (&Method::PATCH, []) => api_items::patch_item(state, &req, &target, body).await,
                (&Method::PUT, []) => api_upload::commit_from_source(state, &req, &target, body).await,
                (&Method::DELETE, []) => api_items::delete_item(state, &req, &target),
                (&Method::GET, ["children"]) => api_items::list_children(state, &req, &target).await,
                (&Method::POST, ["children"]) => api_items::create_child(state, &target, body).await,
                (&Method::GET, ["content"]) => api_content::redirect_to_content(state, &req, &target),
                (&Method::PUT, ["content"]) => api_upload::simple_upload(state, &req, &target, body).await,
                (&Method::POST, ["createUploadSession"]) => {
                    api_upload::create_session(state, &req, &target, body).await
                }
                (&Method::GET, ["delta"]) => api_delta::delta(state, &req, &target),
                (&Method::GET, ["thumbnails", more @ ..]) => api_thumbnails::get(state, &req, &target, more).await,
                (&Method::POST, ["restore"]) => api_items::restore_item(state, &target, body).await,
                (&Method::GET, ["subscriptions", "socketIo"]) if target.base == Base::Root && target.path.is_none() => {
                    super::socketio::get_endpoint(state)
                }
                (&Method::POST, ["copy"]) => api_items::copy_item(state, &req, &target, body).await,
                (&Method::POST, ["permanentDelete" | "invite" | "createLink" | "checkin" | "checkout"])
                | (_, ["versions" | "permissions" | "preview" | "subscriptions", ..]) => Err(
                    GraphError::not_supported(format!("'{}' is not supported by this emulator", rest.join("/"))),
                ),
                (_, [] | ["children" | "content" | "createUploadSession" | "delta" | "restore"]) => {
                    Err(GraphError::method_not_allowed())
                }
                _ => Err(GraphError::invalid(format!(
                    "Resource not found for the segment '{}'",
                    rest.join("/")
                ))),
            }
        }
    }
}
