//! The HTTP face of the emulated identity platform: `/{tenant}/oauth2/v2.0/devicecode`, `/token`, `/authorize`
//! (ENTRA v2-oauth2-device-code.md, v2-oauth2-auth-code-flow.md) and the `/link` page where a person enters a
//! user code. Request parsing and validation live here; grant rules live in [`super::store`].

use super::store::{normalise_user_code, split_scope};
use super::token_error::TokenError;
use super::Identity;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) fn router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/link", get(link_page).post(link_decision))
        .with_state(identity)
}

/// Tenants the platform knows: the aliases and any GUID (ENTRA: `common`, `consumers`, `organizations`, or a
/// tenant GUID). Friendly domain names are not in this emulator's directory.
pub fn tenant_is_known(tenant: &str) -> bool {
    matches!(tenant, "common" | "consumers" | "organizations") || uuid::Uuid::try_parse(tenant).is_ok()
}

/// Form fields of a body or query (the last value wins, as with most servers).
fn form_fields(raw: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// `scheme://host[:port]` of this request, from its Host header (absolute URIs and HTTP/2 authority too).
fn origin(headers: &HeaderMap, uri: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

async fn device_code(
    State(identity): State<Arc<Identity>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    if !tenant_is_known(&tenant) {
        return TokenError::invalid_tenant(&tenant).into_response();
    }
    let fields = form_fields(&body);
    let mut store = identity.store.lock();
    let client_id = match store.check_client(field(&fields, "client_id")) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Some(scope) = field(&fields, "scope") else {
        return TokenError::missing_parameter("scope").into_response();
    };
    if split_scope(scope).is_empty() {
        return TokenError::invalid_scope(scope).into_response();
    }
    let (device_code, user_code, expires_in, interval) = store.start_device_code(&client_id, &tenant, scope);
    drop(store);
    tracing::info!(target: "emulator::identity", "device-code sign-in started");
    let verification_uri = format!("{}/link", origin(&headers, &uri));
    Json(serde_json::json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": verification_uri,
        "expires_in": expires_in,
        "interval": interval,
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to \
             authenticate."
        ),
    }))
    .into_response()
}

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// `Authorization: Basic base64(client_id:client_secret)` (RFC 6749 §2.3.1, accepted by the platform) as
/// `(client_id, secret)`, both form-urlencoded inside.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

async fn token(
    State(identity): State<Arc<Identity>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !tenant_is_known(&tenant) {
        return TokenError::invalid_tenant(&tenant).into_response();
    }
    let mut fields = form_fields(&body);
    let basic = basic_credentials(&headers);
    if let Some((id, _)) = &basic {
        fields.entry("client_id".to_string()).or_insert_with(|| id.clone());
    }
    let mut store = identity.store.lock();
    let client_id = match store.check_client(field(&fields, "client_id")) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    // Client authentication (ENTRA reference-error-codes.md): a secret in the body or a Basic header;
    // client assertions (certificates) are not supported by the emulator and count as a wrong secret.
    let presented = field(&fields, "client_secret")
        .map(str::to_string)
        .or_else(|| basic.map(|(_, secret)| secret).filter(|s| !s.is_empty()))
        .or_else(|| field(&fields, "client_assertion").map(|_| String::new()));
    if let Err(e) = store.check_client_secret(&client_id, presented.as_deref()) {
        return e.into_response();
    }
    let Some(grant_type) = field(&fields, "grant_type") else {
        return TokenError::missing_parameter("grant_type").into_response();
    };
    let result = match grant_type {
        DEVICE_CODE_GRANT => match field(&fields, "device_code") {
            None => Err(TokenError::missing_parameter("device_code")),
            Some(code) => store.poll_device_code(&client_id, &tenant, code),
        },
        "authorization_code" => match field(&fields, "code") {
            None => Err(TokenError::missing_parameter("code")),
            Some(code) => store.redeem_auth_code(
                &client_id,
                code,
                field(&fields, "redirect_uri"),
                field(&fields, "code_verifier"),
            ),
        },
        "refresh_token" => match field(&fields, "refresh_token") {
            None => Err(TokenError::missing_parameter("refresh_token")),
            Some(token) => store.redeem_refresh_token(&client_id, token, field(&fields, "scope")),
        },
        other => Err(TokenError::unsupported_grant_type(other)),
    };
    drop(store);
    match result {
        Ok(tokens) => {
            tracing::info!(target: "emulator::identity", grant_type, "tokens issued");
            (
                [
                    (header::CACHE_CONTROL, "no-store, no-cache"),
                    (header::PRAGMA, "no-cache"),
                ],
                Json(tokens),
            )
                .into_response()
        }
        Err(e) => {
            tracing::debug!(target: "emulator::identity", grant_type, error = e.error, code = e.aadsts, "token request refused");
            e.into_response()
        }
    }
}

/// Redirect URIs a public desktop client may use: loopback `http` on any port (the port is ignored when
/// matching, ENTRA reply-url.md) and the native-client page.
pub fn redirect_uri_is_allowed(redirect_uri: &str) -> bool {
    if redirect_uri == "https://login.microsoftonline.com/common/oauth2/nativeclient" {
        return true;
    }
    match url::Url::parse(redirect_uri) {
        Ok(u) => {
            u.scheme() == "http"
                && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
                && u.fragment().is_none()
        }
        Err(_) => false,
    }
}

/// An error the `/authorize` endpoint cannot send back to the app (untrusted redirect): shown as a page.
fn authorize_error_page(error: TokenError) -> Response {
    let body = format!(
        "<!doctype html><html><head><title>Sign in error</title></head><body><h1>Sorry, but we're having trouble \
         signing you in.</h1><p>AADSTS{}: {}</p></body></html>",
        error.aadsts,
        html_escape(&error.description)
    );
    (StatusCode::BAD_REQUEST, Html(body)).into_response()
}

/// How `/authorize` answers (`response_mode`): `query` (default for `code`), `fragment` or `form_post`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

fn redirect_with(redirect_uri: &str, mode: ResponseMode, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return authorize_error_page(TokenError::missing_parameter("redirect_uri")),
    };
    match mode {
        ResponseMode::Query => {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in params {
                pairs.append_pair(k, v);
            }
        }
        ResponseMode::Fragment => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            url.set_fragment(Some(&fragment));
        }
        ResponseMode::FormPost => {
            // A page that posts the answer to the redirect URI at once, as the platform does.
            let inputs: String = params
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                        html_escape(k),
                        html_escape(v)
                    )
                })
                .collect();
            let page = format!(
                "<!doctype html><html><head><title>Working...</title></head><body onload=\"document.forms[0].submit()\">\
                 <form method=\"POST\" action=\"{}\">{inputs}<noscript><button>Continue</button></noscript></form>\
                 </body></html>",
                html_escape(url.as_str())
            );
            return Html(page).into_response();
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.as_str().to_string())]).into_response()
}

async fn authorize(
    State(identity): State<Arc<Identity>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !tenant_is_known(&tenant) {
        return authorize_error_page(TokenError::invalid_tenant(&tenant));
    }
    let q = form_fields(query.unwrap_or_default().as_bytes());
    let mut store = identity.store.lock();
    let client_id = match store.check_client(field(&q, "client_id")) {
        Ok(id) => id,
        Err(e) => return authorize_error_page(e),
    };
    let Some(redirect_uri) = field(&q, "redirect_uri") else {
        return authorize_error_page(TokenError::missing_parameter("redirect_uri"));
    };
    if !redirect_uri_is_allowed(redirect_uri) {
        let mut e = TokenError::redirect_uri_mismatch();
        e.description = format!(
            "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured \
             for the application '{client_id}'."
        );
        return authorize_error_page(e);
    }
    let state = field(&q, "state");
    let mode = match field(&q, "response_mode") {
        Some("fragment") => ResponseMode::Fragment,
        Some("form_post") => ResponseMode::FormPost,
        _ => ResponseMode::Query,
    };
    let with_state = |mut params: Vec<(&'static str, String)>| {
        if let Some(s) = state {
            params.push(("state", s.to_string()));
        }
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect_with(redirect_uri, mode, &refs)
    };
    let redirect_error = |error: &'static str, aadsts: u32, description: &str| {
        with_state(vec![
            ("error", error.to_string()),
            ("error_description", format!("AADSTS{aadsts}: {description}")),
        ])
    };
    if field(&q, "response_type") != Some("code") {
        return redirect_error(
            "unsupported_response_type",
            70005,
            "The app requested an unsupported response type; this client may only use 'code'.",
        );
    }
    let Some(scope) = field(&q, "scope") else {
        return redirect_error(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let challenge = match (field(&q, "code_challenge"), field(&q, "code_challenge_method")) {
        (None, _) => None,
        (Some(c), None) => Some((c.to_string(), "plain".to_string())),
        (Some(c), Some(m)) if m == "S256" || m == "plain" => Some((c.to_string(), m.to_string())),
        (Some(_), Some(_)) => {
            return redirect_error(
                "invalid_request",
                501491,
                "Invalid code_challenge_method: only 'S256' and 'plain' are supported.",
            )
        }
    };
    if store.settings.deny_authorize {
        return redirect_error(
            "access_denied",
            65004,
            "The user declined to consent to access the app.",
        );
    }
    let code = store.issue_auth_code(&client_id, redirect_uri, scope, challenge);
    drop(store);
    tracing::info!(target: "emulator::identity", "authorization code issued");
    with_state(vec![("code", code)])
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn link_form(message: &str, prefill: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>Enter code</title></head><body><h1>Enter code</h1>\
         <p>{}</p><form method=\"post\" action=\"/link\">\
         <input name=\"user_code\" value=\"{}\" autofocus> \
         <button name=\"decision\" value=\"approve\">Sign in and allow</button> \
         <button name=\"decision\" value=\"decline\">Decline</button></form></body></html>",
        html_escape(message),
        html_escape(prefill)
    ))
}

async fn link_page(RawQuery(query): RawQuery) -> Html<String> {
    let q = form_fields(query.unwrap_or_default().as_bytes());
    let prefill = field(&q, "otc").or(field(&q, "user_code")).unwrap_or_default();
    link_form(
        "Enter the code shown by the app you want to sign in to (emulated Microsoft account).",
        prefill,
    )
}

async fn link_decision(State(identity): State<Arc<Identity>>, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let user_code = field(&fields, "user_code").unwrap_or_default();
    let approve = field(&fields, "decision") != Some("decline");
    if identity.store.lock().decide_user_code(user_code, approve) {
        let done = if approve {
            "You have signed in. You can close this window."
        } else {
            "You declined the sign-in. You can close this window."
        };
        Html(format!("<!doctype html><html><body><h1>{done}</h1></body></html>")).into_response()
    } else {
        let shown = normalise_user_code(user_code);
        let message = if shown.is_empty() {
            "Enter a code."
        } else {
            "That code didn't work. Check the code and try again."
        };
        (StatusCode::BAD_REQUEST, link_form(message, "")).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_and_redirects_follow_the_docs() {
        assert!(tenant_is_known("consumers"));
        assert!(tenant_is_known("9188040d-6c67-4c5b-b112-36a304b66dad"));
        assert!(!tenant_is_known("contoso"));
        assert!(redirect_uri_is_allowed("http://localhost:53682/"));
        assert!(redirect_uri_is_allowed("http://127.0.0.1:1234/callback"));
        assert!(!redirect_uri_is_allowed("https://evil.example/cb"));
        assert!(!redirect_uri_is_allowed("http://192.168.1.2:80/"));
    }
}
