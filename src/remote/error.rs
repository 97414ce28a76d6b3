//! [`GraphError`]: every way a Graph (or pre-authenticated download/upload host) request can fail, mapped from
//! HTTP status plus the error body's codes (`models::ErrorResponse`, inner codes included). Matching is on codes,
//! never on messages. Messages never contain tokens or pre-authenticated URLs.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, CONTENT_RANGE, LOCATION};
use reqwest::StatusCode;
use thiserror::Error;

use super::auth::AuthError;
use super::models::ErrorResponse;

/// The codes of a Graph error body, outermost first (`["invalidRange", "fragmentOverlap"]`). Empty when the
/// body was not a Graph error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCodes(pub Vec<String>);

impl ErrorCodes {
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }
    pub fn contains(&self, code: &str) -> bool {
        self.0.iter().any(|c| c == code)
    }
}

impl fmt::Display for ErrorCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&self.0.join("/"))
        }
    }
}

/// Codes that mean "the name or path is not acceptable" (400).
const INVALID_NAME_CODES: &[&str] = &[
    "invalidPath",
    "pathIsTooLong",
    "pathTooDeep",
    "nameContainsInvalidCharacters",
    "invalidName",
    "fileNameContainsInvalidCharacters",
    "fileNameIsTooLong",
];

#[derive(Debug, Error)]
pub enum GraphError {
    #[error("not found ({codes})")]
    NotFound { codes: ErrorCodes },
    /// 409: `nameAlreadyExists`, a missing parent, or a name conflict at upload commit.
    #[error("conflict ({codes})")]
    Conflict { codes: ErrorCodes },
    /// 412: the `If-Match` tag no longer matches (`resourceModified`, sometimes `notAllowed`).
    #[error("precondition failed: the item changed on OneDrive ({codes})")]
    PreconditionFailed { codes: ErrorCodes },
    /// 507 `quotaLimitReached`.
    #[error("OneDrive is full ({codes})")]
    QuotaExceeded { codes: ErrorCodes },
    /// 429/503/509 that outlasted the retry policy. `until` is when the service said to come back.
    #[error("throttled by OneDrive{}", until.map(|u| format!(" until {}", u.to_rfc3339())).unwrap_or_default())]
    Throttled { until: Option<DateTime<Utc>> },
    /// 410 on delta: restart enumeration from `location` (a new nextLink), if the service gave one.
    #[error("delta resync required ({codes})")]
    ResyncRequired {
        location: Option<String>,
        codes: ErrorCodes,
    },
    /// 416. `total` is the size from `Content-Range: bytes */total` when sent.
    #[error("range not satisfiable{} ({codes})", total.map(|t| format!(" (size {t})")).unwrap_or_default())]
    RangeNotSatisfiable { total: Option<u64>, codes: ErrorCodes },
    /// 401 after one refresh and one retry (or on a pre-authenticated URL).
    #[error("unauthorized ({codes})")]
    Unauthorized { codes: ErrorCodes },
    /// The token source could not produce or refresh a token.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 400 with `invalidPath`, `pathIsTooLong`, `pathTooDeep`, … : the name or path is unacceptable.
    #[error("name or path rejected by OneDrive: {code}")]
    InvalidName { code: String },
    /// 404 on an upload session URL: the session expired or was cancelled; start a new one.
    #[error("upload session no longer exists")]
    UploadSessionGone,
    #[error("OneDrive answered {status} ({codes}): {message}")]
    Service {
        status: u16,
        codes: ErrorCodes,
        message: String,
    },
    /// Connection failures and timeouts (after retries).
    #[error("network error: {0}")]
    Network(String),
    /// A response that does not parse or contradicts the request (bad JSON, a wrong Content-Range).
    #[error("unexpected response: {0}")]
    Decode(String),
    #[error("downloaded bytes do not match OneDrive's quickXorHash (expected {expected}, got {actual})")]
    HashMismatch { expected: String, actual: String },
    /// A body that ended before its announced length.
    #[error("transfer ended early: expected {expected} bytes, got {received}")]
    Truncated { expected: u64, received: u64 },
    /// A caller error detected before sending (bad fragment size, reading the upload source failed, …).
    #[error("{0}")]
    Invalid(String),
}

impl GraphError {
    /// Maps a non-success response. `body` is the (possibly empty or non-JSON) response body.
    pub fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let parsed: Option<ErrorResponse> = serde_json::from_slice(body).ok();
        let codes = ErrorCodes(
            parsed
                .as_ref()
                .map(|e| {
                    e.error
                        .codes()
                        .into_iter()
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        );
        let message = parsed.as_ref().map(|e| e.error.message.clone()).unwrap_or_default();
        match status.as_u16() {
            401 => GraphError::Unauthorized { codes },
            404 => GraphError::NotFound { codes },
            409 => GraphError::Conflict { codes },
            410 => {
                let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).map(String::from);
                let resync = codes
                    .0
                    .iter()
                    .any(|c| c.starts_with("resync") || c == "syncStateNotFound");
                if location.is_some() || resync {
                    GraphError::ResyncRequired { location, codes }
                } else {
                    GraphError::Service {
                        status: 410,
                        codes,
                        message,
                    }
                }
            }
            412 => GraphError::PreconditionFailed { codes },
            416 => GraphError::RangeNotSatisfiable {
                total: headers
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_unsatisfied_range_total),
                codes,
            },
            507 => GraphError::QuotaExceeded { codes },
            400 => match codes.0.iter().find(|c| INVALID_NAME_CODES.contains(&c.as_str())) {
                Some(code) => GraphError::InvalidName { code: code.clone() },
                None => GraphError::Service {
                    status: 400,
                    codes,
                    message,
                },
            },
            s => GraphError::Service {
                status: s,
                codes,
                message,
            },
        }
    }

    /// The HTTP status this error came from, when it came from one.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            GraphError::NotFound { .. } | GraphError::UploadSessionGone => 404,
            GraphError::Conflict { .. } => 409,
            GraphError::PreconditionFailed { .. } => 412,
            GraphError::QuotaExceeded { .. } => 507,
            GraphError::ResyncRequired { .. } => 410,
            GraphError::RangeNotSatisfiable { .. } => 416,
            GraphError::Unauthorized { .. } => 401,
            GraphError::InvalidName { .. } => 400,
            GraphError::Service { status, .. } => *status,
            _ => return None,
        })
    }

    /// The outermost Graph error code, when the body carried one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            GraphError::InvalidName { code } => Some(code),
            _ => self.codes()?.first(),
        }
    }

    /// True when any code in the body's chain (outer or inner) equals `code`.
    pub fn has_code(&self, code: &str) -> bool {
        match self {
            GraphError::InvalidName { code: c } => c == code,
            _ => self.codes().is_some_and(|c| c.contains(code)),
        }
    }

    fn codes(&self) -> Option<&ErrorCodes> {
        match self {
            GraphError::NotFound { codes }
            | GraphError::Conflict { codes }
            | GraphError::PreconditionFailed { codes }
            | GraphError::QuotaExceeded { codes }
            | GraphError::ResyncRequired { codes, .. }
            | GraphError::RangeNotSatisfiable { codes, .. }
            | GraphError::Unauthorized { codes }
            | GraphError::Service { codes, .. } => Some(codes),
            _ => None,
        }
    }

    /// Worth trying again later (the pipeline already retried these a bounded number of times).
    pub fn is_retryable(&self) -> bool {
        match self {
            GraphError::Throttled { .. } | GraphError::Network(_) => true,
            GraphError::Service { status, .. } => matches!(status, 500 | 502 | 503 | 504 | 509),
            _ => false,
        }
    }

    /// OneDrive refuses writes for now (403 `serviceReadOnly`): map to EROFS, try again later.
    pub fn is_read_only(&self) -> bool {
        self.status() == Some(403) && self.has_code("serviceReadOnly")
    }

    /// A pre-authenticated URL that stopped working (expired or revoked): fetch a fresh one.
    pub fn is_stale_url(&self) -> bool {
        matches!(self.status(), Some(401 | 403 | 404 | 410))
    }
}

/// `bytes */1234` → 1234.
fn parse_unsatisfied_range_total(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes")?
        .trim()
        .strip_prefix("*/")?
        .trim()
        .parse()
        .ok()
}

/// How long `Retry-After` asks to wait: delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn maps_statuses_and_codes() {
        let h = HeaderMap::new();
        let body = br#"{"error":{"code":"nameAlreadyExists","message":"Name already exists"}}"#;
        let e = GraphError::from_response(StatusCode::CONFLICT, &h, body);
        assert!(matches!(e, GraphError::Conflict { .. }));
        assert_eq!(e.error_code(), Some("nameAlreadyExists"));

        let body = br#"{"error":{"code":"invalidRequest","message":"x","innerError":{"code":"pathIsTooLong"}}}"#;
        let e = GraphError::from_response(StatusCode::BAD_REQUEST, &h, body);
        assert!(
            matches!(&e, GraphError::InvalidName { code } if code == "pathIsTooLong"),
            "{e:?}"
        );

        let body = br#"{"error":{"code":"invalidRequest","message":"bad"}}"#;
        let e = GraphError::from_response(StatusCode::BAD_REQUEST, &h, body);
        assert!(matches!(e, GraphError::Service { status: 400, .. }));
        assert!(!e.is_retryable());

        let e = GraphError::from_response(StatusCode::INSUFFICIENT_STORAGE, &h, b"not json");
        assert!(matches!(e, GraphError::QuotaExceeded { .. }));
        assert_eq!(e.error_code(), None);

        let e = GraphError::from_response(StatusCode::BAD_GATEWAY, &h, b"");
        assert!(e.is_retryable());

        let body = br#"{"error":{"code":"accessDenied","message":"Database Is Read Only","innerError":{"code":"serviceReadOnly"}}}"#;
        let e = GraphError::from_response(StatusCode::FORBIDDEN, &h, body);
        assert!(e.is_read_only() && !e.is_retryable());
        let body = br#"{"error":{"code":"accessDenied","message":"x"}}"#;
        assert!(!GraphError::from_response(StatusCode::FORBIDDEN, &h, body).is_read_only());
    }

    #[test]
    fn gone_is_resync_only_with_location_or_resync_code() {
        let mut h = HeaderMap::new();
        let e = GraphError::from_response(StatusCode::GONE, &h, b"");
        assert!(matches!(e, GraphError::Service { status: 410, .. }));
        assert!(e.is_stale_url());
        h.insert(LOCATION, HeaderValue::from_static("https://graph/delta?token=x"));
        let e = GraphError::from_response(StatusCode::GONE, &h, b"");
        assert!(
            matches!(e, GraphError::ResyncRequired { location: Some(l), .. } if l == "https://graph/delta?token=x")
        );
        let body = br#"{"error":{"code":"resyncRequired","message":"Resync required."}}"#;
        let e = GraphError::from_response(StatusCode::GONE, &HeaderMap::new(), body);
        assert!(matches!(e, GraphError::ResyncRequired { location: None, .. }));
    }

    #[test]
    fn range_total_and_inner_codes() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes */1234"));
        let body = br#"{"error":{"code":"invalidRange","message":"x","innererror":{"code":"fragmentOverlap"}}}"#;
        let e = GraphError::from_response(StatusCode::RANGE_NOT_SATISFIABLE, &h, body);
        assert!(matches!(e, GraphError::RangeNotSatisfiable { total: Some(1234), .. }));
        assert!(e.has_code("fragmentOverlap"));
        assert_eq!(e.error_code(), Some("invalidRange"));
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
