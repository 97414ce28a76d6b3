//! Browser sign-in (`login --browser`): authorization code + PKCE (S256) with a loopback redirect
//! `http://localhost:<ephemeral port>` (ENTRA v2-oauth2-auth-code-flow.md; the port is ignored when the
//! platform matches a `http://localhost` registration). A one-shot HTTP listener on 127.0.0.1 takes the redirect,
//! checks `state`, and the code is redeemed with the `code_verifier` and the identical `redirect_uri`.

use super::identity::{identity_client, map_request_error, scopes, tokens_from_response, IdentityClient};
use super::token_store::StoredTokens;
use super::AuthError;
use crate::remote::Endpoints;
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// How long `login --browser` waits for the redirect.
pub const DEFAULT_REDIRECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest request head the loopback listener reads.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// An authorization request in progress: the URL to open, and the listener waiting for the redirect.
pub struct BrowserSignIn {
    client: IdentityClient,
    /// 127.0.0.1:port, and [::1]:port when that port is free there too (browsers may resolve `localhost` to
    /// either).
    listeners: Vec<TcpListener>,
    redirect_uri: String,
    authorize_url: Url,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
}

/// What came back on the redirect.
enum Redirect {
    Code(String),
    Denied { error: String, description: String },
}

impl BrowserSignIn {
    /// Binds the loopback listener and builds the authorize URL (S256 challenge, random `state`,
    /// `response_mode=query`).
    pub async fn start(endpoints: &Endpoints) -> Result<Self, AuthError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| AuthError::Browser(format!("cannot listen on 127.0.0.1 for the redirect: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| AuthError::Browser(format!("loopback listener: {e}")))?
            .port();
        let mut listeners = vec![listener];
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            listeners.push(v6);
        }
        let redirect_uri = format!("http://localhost:{port}");
        let client = identity_client(endpoints)?.set_redirect_uri(
            RedirectUrl::new(redirect_uri.clone()).map_err(|e| AuthError::Browser(format!("redirect URI: {e}")))?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (authorize_url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes())
            .add_extra_param("response_mode", "query")
            .set_pkce_challenge(challenge)
            .url();
        Ok(Self {
            client,
            listeners,
            redirect_uri,
            authorize_url,
            state,
            verifier,
        })
    }

    /// The URL the user opens (carries no secret: the challenge is a hash, `state` is single-use).
    pub fn authorize_url(&self) -> &Url {
        &self.authorize_url
    }

    /// `http://localhost:<port>`.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits (at most `timeout`) for the browser's redirect, checks `state`, then redeems the code.
    pub async fn finish(self, http: &reqwest::Client, timeout: Duration) -> Result<StoredTokens, AuthError> {
        let redirect = tokio::time::timeout(timeout, accept_redirect(self.listeners, self.state.secret()))
            .await
            .map_err(|_| {
                AuthError::Browser(format!(
                    "no redirect reached {} within {} s; run login again",
                    self.redirect_uri,
                    timeout.as_secs()
                ))
            })??;
        let code = match redirect {
            Redirect::Code(code) => code,
            Redirect::Denied { error, description } if error == "access_denied" => {
                return Err(AuthError::Declined { description })
            }
            Redirect::Denied { error, description } => {
                return Err(AuthError::Service {
                    code: error,
                    description,
                })
            }
        };
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(self.verifier)
            .add_extra_param("scope", crate::remote::endpoints::SCOPES.join(" "))
            .request_async(http)
            .await
            .map_err(|e| map_request_error(e, None))?;
        Ok(tokens_from_response(&response, None, None))
    }
}

/// Accepts connections on `listeners` until one carries the redirect (`code`/`state` or `error`); anything else
/// (favicon, probes, a browser's idle pre-connections) gets a 404 or is dropped. Connections are served
/// concurrently so a silent one cannot hold up the real redirect. A `state` mismatch answers the browser and
/// fails the flow. The listeners are closed on return.
async fn accept_redirect(listeners: Vec<TcpListener>, expected_state: &str) -> Result<Redirect, AuthError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Redirect, AuthError>>(4);
    let expected: std::sync::Arc<str> = expected_state.into();
    let mut accept_loops = tokio::task::JoinSet::new();
    for listener in listeners {
        let (tx, expected) = (tx.clone(), expected.clone());
        accept_loops.spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        let _ = tx
                            .send(Err(AuthError::Browser(format!("loopback listener: {e}"))))
                            .await;
                        return;
                    }
                };
                let (tx, expected) = (tx.clone(), expected.clone());
                tokio::spawn(async move {
                    if let Some(outcome) = handle_connection(stream, &expected).await {
                        let _ = tx.send(outcome).await;
                    }
                });
            }
        });
    }
    drop(tx);
    let outcome = rx
        .recv()
        .await
        .unwrap_or_else(|| Err(AuthError::Browser("loopback listener closed".into())));
    accept_loops.abort_all();
    outcome
}

/// Serves one connection; `Some` when it carried the redirect.
async fn handle_connection(mut stream: TcpStream, expected_state: &str) -> Option<Result<Redirect, AuthError>> {
    let target = read_request_target(&mut stream).await?;
    let Ok(url) = Url::parse(&format!("http://localhost{target}")) else {
        respond(&mut stream, 400, "Bad request.").await;
        return None;
    };
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let (code, error) = (param("code"), param("error"));
    if code.is_none() && error.is_none() {
        respond(&mut stream, 404, "Not found.").await;
        return None;
    }
    // An error without `state` can only end the flow, so it is believed; a code needs the matching state.
    let state = param("state");
    let state_ok = state.as_deref() == Some(expected_state) || (code.is_none() && state.is_none());
    if !state_ok {
        respond(
            &mut stream,
            400,
            "Sign-in failed: the answer does not match this sign-in (state). Run galleryfs login again.",
        )
        .await;
        return Some(Err(AuthError::Browser(
            "the redirect's state does not match the request (possible forgery); run login again".into(),
        )));
    }
    if let Some(error) = error {
        let description = param("error_description").unwrap_or_default();
        respond(
            &mut stream,
            200,
            "Sign-in was not completed. You can close this window.",
        )
        .await;
        return Some(Ok(Redirect::Denied { error, description }));
    }
    respond(&mut stream, 200, "Signed in to galleryfs. You can close this window.").await;
    code.map(|c| Ok(Redirect::Code(c)))
}

/// Reads the request head and returns the target of a `GET` request line.
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = std::str::from_utf8(&head).ok()?.lines().next()?.to_string();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Some(target.to_string()),
        _ => None,
    }
}

async fn respond(stream: &mut TcpStream, status: u16, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>galleryfs</title></head><body><p>{text}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Tries to open `url` with `xdg-open` when it is on PATH; returns whether it was started.
pub fn try_open_browser(url: &Url) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    let Some(opener) = std::env::split_paths(&path)
        .map(|d| d.join("xdg-open"))
        .find(|p| p.is_file())
    else {
        return false;
    };
    std::process::Command::new(opener)
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// The whole browser flow: `show` gets the authorize URL (print it, try to open it), then this waits for the
/// redirect and redeems the code.
pub async fn sign_in_with_browser(
    endpoints: &Endpoints,
    http: &reqwest::Client,
    show: impl FnOnce(&Url),
    timeout: Duration,
) -> Result<StoredTokens, AuthError> {
    let sign_in = BrowserSignIn::start(endpoints).await?;
    show(sign_in.authorize_url());
    sign_in.finish(http, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn listener_ignores_favicon_and_checks_state() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move { accept_redirect(vec![listener], "good").await });
        assert!(get(port, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        assert!(get(port, "/?code=abc&state=bad").await.starts_with("HTTP/1.1 400"));
        match task.await.unwrap() {
            Err(AuthError::Browser(m)) => assert!(m.contains("state"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted a forged state"),
        }
    }

    #[tokio::test]
    async fn silent_connection_does_not_hold_up_the_redirect() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move { accept_redirect(vec![listener], "s").await });
        // A browser pre-connection that never sends a request.
        let _idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let started = std::time::Instant::now();
        assert!(get(port, "/?code=C&state=s").await.starts_with("HTTP/1.1 200"));
        assert!(matches!(task.await.unwrap(), Ok(Redirect::Code(c)) if c == "C"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn redirect_on_ipv6_loopback_is_taken_too() {
        let v4 = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let Ok(v6) = TcpListener::bind(("::1", port)).await else {
            eprintln!("no IPv6 loopback here: skipping the [::1] redirect test");
            return;
        };
        let task = tokio::spawn(async move { accept_redirect(vec![v4, v6], "s6").await });
        let mut s = TcpStream::connect(("::1", port)).await.unwrap();
        s.write_all(b"GET /?code=V6&state=s6 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(matches!(task.await.unwrap(), Ok(Redirect::Code(c)) if c == "V6"));
    }

    #[tokio::test]
    async fn listener_returns_code_or_denial() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move { accept_redirect(vec![listener], "s1").await });
        assert!(get(port, "/?code=C0DE&state=s1").await.starts_with("HTTP/1.1 200"));
        assert!(matches!(task.await.unwrap(), Ok(Redirect::Code(c)) if c == "C0DE"));

        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move { accept_redirect(vec![listener], "s2").await });
        get(
            port,
            "/?error=access_denied&error_description=the+user+canceled+the+authentication&state=s2",
        )
        .await;
        match task.await.unwrap() {
            Ok(Redirect::Denied { error, description }) => {
                assert_eq!(error, "access_denied");
                assert_eq!(description, "the user canceled the authentication");
            }
            _ => panic!("expected a denial"),
        }
    }
}
