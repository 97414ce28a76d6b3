//! The device-code flow (ENTRA v2-oauth2-device-code.md, RFC 8628): ask `/devicecode` for a code (through
//! `oauth2`), show the user where to enter it, then poll `/token` honouring `interval`.
//!
//! The poll loop is ours rather than oauth2's: oauth2 ends the flow on any HTTP 5xx or `temporarily_unavailable`
//! and knows nothing of Microsoft's `authorization_declined` / `bad_verification_code`. Here:
//! `authorization_pending` → poll again; `slow_down` → interval + 5 s; `authorization_declined` (or
//! `access_denied`) → [`AuthError::Declined`]; `expired_token` or `expires_in` passed → [`AuthError::CodeExpired`];
//! `bad_verification_code` → [`AuthError::BadVerificationCode`]; network errors, 5xx and `temporarily_unavailable`
//! → back off (double, at most 60 s) and keep polling until the code expires.

use super::identity::{
    describe_reqwest_error, identity_client, map_error_response, map_request_error, scopes, tokens_from_response,
    IdentityErrorResponse,
};
use super::token_store::StoredTokens;
use super::AuthError;
use crate::remote::Endpoints;
use oauth2::basic::BasicTokenResponse;
use oauth2::{DeviceAuthorizationResponse, ExtraDeviceAuthorizationFields};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.5: on `slow_down` the interval grows by 5 seconds for this and all later requests.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Ceiling of the back-off after transport errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Microsoft's extra field in the device authorization response: a ready-made instruction for the user.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DeviceMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ExtraDeviceAuthorizationFields for DeviceMessage {}

/// What the user must be told: where to go and which code to enter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePrompt {
    pub verification_uri: String,
    pub user_code: String,
    /// The service's own instruction (`message`), when it sent one.
    pub message: Option<String>,
    pub expires_in: Duration,
    pub interval: Duration,
}

impl DevicePrompt {
    /// The text `login` prints to stderr.
    pub fn instructions(&self) -> String {
        let mut s = format!(
            "To sign in, open {} in a browser and enter the code {}\n(the code expires in {} minutes)",
            self.verification_uri,
            self.user_code,
            self.expires_in.as_secs().div_ceil(60)
        );
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            s.push('\n');
            s.push_str(m);
        }
        s
    }
}

/// Runs the whole device-code flow: `show` is called once with the prompt, then this polls until the user
/// approves (tokens returned), declines, or the code expires. Never logs the device code or tokens.
pub async fn sign_in_with_device_code(
    endpoints: &Endpoints,
    http: &reqwest::Client,
    show: impl FnOnce(&DevicePrompt),
) -> Result<StoredTokens, AuthError> {
    let client = identity_client(endpoints)?;
    let details: DeviceAuthorizationResponse<DeviceMessage> = client
        .exchange_device_code()
        .add_scopes(scopes())
        .request_async(http)
        .await
        .map_err(|e| map_request_error(e, None))?;
    let prompt = DevicePrompt {
        verification_uri: details.verification_uri().to_string(),
        user_code: details.user_code().secret().clone(),
        message: details.extra_fields().message.clone(),
        expires_in: details.expires_in(),
        interval: details.interval(),
    };
    show(&prompt);
    poll_for_tokens(
        endpoints,
        http,
        details.device_code().secret(),
        prompt.interval,
        prompt.expires_in,
    )
    .await
}

/// Polls the token endpoint with `device_code` every `interval` (at least 1 s) until done or `expires_in` passed.
pub async fn poll_for_tokens(
    endpoints: &Endpoints,
    http: &reqwest::Client,
    device_code: &str,
    interval: Duration,
    expires_in: Duration,
) -> Result<StoredTokens, AuthError> {
    let token_url = endpoints.identity_url("token");
    let deadline = Instant::now() + expires_in;
    let mut interval = interval.max(Duration::from_secs(1));
    let mut backoff: Option<Duration> = None;
    loop {
        let wait = backoff.unwrap_or(interval);
        if Instant::now() + wait > deadline {
            return Err(AuthError::CodeExpired);
        }
        tokio::time::sleep(wait).await;
        let sent = http
            .post(&token_url)
            .form(&[
                ("grant_type", DEVICE_CODE_GRANT),
                ("client_id", endpoints.client_id.as_str()),
                ("device_code", device_code),
            ])
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let next = next_backoff(backoff, interval);
                tracing::warn!(error = %describe_reqwest_error(e), retry_in_secs = next.as_secs(), "device-code poll failed");
                backoff = Some(next);
                continue;
            }
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let next = next_backoff(backoff, interval);
                tracing::warn!(error = %describe_reqwest_error(e), retry_in_secs = next.as_secs(), "device-code poll failed");
                backoff = Some(next);
                continue;
            }
        };
        if status.is_success() {
            let tokens: BasicTokenResponse = serde_json::from_slice(&body).map_err(|e| AuthError::Service {
                code: "invalid_response".into(),
                description: format!("unreadable token response (line {}, column {})", e.line(), e.column()),
            })?;
            return Ok(tokens_from_response(&tokens, None, None));
        }
        let error: Option<IdentityErrorResponse> = serde_json::from_slice(&body).ok();
        match error.as_ref().map(|e| e.error.as_str()) {
            Some("authorization_pending") => backoff = None,
            Some("slow_down") => {
                backoff = None;
                interval += SLOW_DOWN_STEP;
                tracing::debug!(
                    interval_secs = interval.as_secs(),
                    "identity platform asked to slow down"
                );
            }
            Some("authorization_declined") | Some("access_denied") => {
                return Err(AuthError::Declined {
                    description: error.map(|e| e.short_description()).unwrap_or_default(),
                })
            }
            Some("expired_token") => return Err(AuthError::CodeExpired),
            Some("bad_verification_code") => return Err(AuthError::BadVerificationCode),
            Some("temporarily_unavailable") | Some("server_error") => {
                backoff = Some(next_backoff(backoff, interval));
            }
            Some(_) => return Err(map_error_response(error.as_ref().expect("matched Some"), None)),
            None if status.is_server_error() || status.as_u16() == 429 => {
                let next = next_backoff(backoff, interval);
                tracing::warn!(%status, retry_in_secs = next.as_secs(), "device-code poll: service busy");
                backoff = Some(next);
            }
            None => {
                return Err(AuthError::Service {
                    code: format!("http {}", status.as_u16()),
                    description: "the token endpoint answered without an OAuth error body".into(),
                })
            }
        }
    }
}

fn next_backoff(current: Option<Duration>, interval: Duration) -> Duration {
    match current {
        Some(b) => (b * 2).min(MAX_BACKOFF),
        None => (interval * 2).min(MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let i = Duration::from_secs(5);
        assert_eq!(next_backoff(None, i), Duration::from_secs(10));
        assert_eq!(next_backoff(Some(Duration::from_secs(40)), i), MAX_BACKOFF);
    }

    #[test]
    fn instructions_name_url_code_and_message() {
        let p = DevicePrompt {
            verification_uri: "https://microsoft.com/devicelogin".into(),
            user_code: "FJ8X2ZLAP".into(),
            message: Some("To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code FJ8X2ZLAP to authenticate.".into()),
            expires_in: Duration::from_secs(900),
            interval: Duration::from_secs(5),
        };
        let text = p.instructions();
        assert!(text.contains("https://microsoft.com/devicelogin"));
        assert!(text.contains("FJ8X2ZLAP"));
        assert!(text.contains("15 minutes"));
        assert!(text.contains("to authenticate."));
    }
}
