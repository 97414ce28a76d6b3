//! Graph error responses of the emulator: the documented status codes and the
//! `{"error":{"code","message","innerError":{"code"?,"date","request-id"}}}` body (graph-api.md §10).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One Graph error: status, top-level code, optional inner code, message and extra headers.
#[derive(Clone, Debug)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub inner: Option<&'static str>,
    pub message: String,
    pub location: Option<String>,
    pub content_range: Option<String>,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            inner: None,
            message: message.into(),
            location: None,
            content_range: None,
        }
    }

    pub fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "itemNotFound", format!("Item not found: {what}"))
    }

    pub fn name_exists(name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "nameAlreadyExists",
            format!("An item with the name '{name}' already exists in the folder"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }

    pub fn modified() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "resourceModified",
            "ETag does not match current item's value",
        )
        .with_inner("entityTagDoesNotMatch")
    }

    pub fn quota() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "quotaLimitReached",
            "Insufficient Space Available",
        )
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "notSupported", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalidRequest",
            "The HTTP method is not allowed for this resource",
        )
    }

    pub fn resync(location: String) -> Self {
        let mut e = Self::new(
            StatusCode::GONE,
            "resyncRequired",
            "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
        );
        e.location = Some(location);
        // The documented codes (OAD api/driveitem_delta.md) under the observed top-level `resyncRequired`.
        e.with_inner("resyncChangesApplyDifferences")
    }

    pub fn upload_session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "itemNotFound",
            "The upload session was not found",
        )
        .with_inner("uploadSessionNotFound")
    }

    /// The JSON body as Graph sends it.
    pub fn body(&self) -> serde_json::Value {
        let mut inner = json!({
            "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "request-id": uuid::Uuid::new_v4().to_string(),
            "client-request-id": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(code) = self.inner {
            inner["code"] = json!(code);
        }
        json!({"error": {"code": self.code, "message": self.message, "innerError": inner}})
    }
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for GraphError {}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(loc) = &self.location {
            if let Ok(v) = HeaderValue::from_str(loc) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
        if let Some(cr) = &self.content_range {
            if let Ok(v) = HeaderValue::from_str(cr) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        resp
    }
}

pub type GraphResult<T> = Result<T, GraphError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_documented_shape() {
        let b = GraphError::modified().body();
        assert_eq!(b["error"]["code"], "resourceModified");
        assert_eq!(b["error"]["innerError"]["code"], "entityTagDoesNotMatch");
        assert!(b["error"]["innerError"]["request-id"].as_str().unwrap().len() > 10);
        assert!(b["error"]["innerError"]["date"].is_string());
    }
}
