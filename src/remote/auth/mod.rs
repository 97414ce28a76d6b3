//! Sign-in with the Microsoft identity platform (the `oauth2` crate): device-code flow (default), authorization
//! code + PKCE with a loopback redirect (`--browser`), refresh with rotation, and the per-account token file
//! (mode 0600; a looser file is refused).
//!
//! The Graph client only sees [`TokenSource`]: "give me a valid access token" and "that one was rejected".
//!
//! Submodules: [`identity`] (the oauth2 client, the identity platform's error body, error mapping),
//! [`device_code`], [`browser`], [`token_store`] (the token file) and [`session`] (the refreshing source).

pub mod browser;
pub mod device_code;
pub mod identity;
pub mod session;
pub mod token_store;

pub use browser::{sign_in_with_browser, BrowserSignIn};
pub use device_code::{sign_in_with_device_code, DevicePrompt};
pub use identity::{http_client, IdentityErrorResponse};
pub use session::RefreshingTokenSource;
pub use token_store::{StoredTokens, TokenStore};

use async_trait::async_trait;
use thiserror::Error;

/// What the Graph client asks of sign-in.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A currently valid access token, refreshed first if it is about to expire.
    async fn access_token(&self) -> Result<String, AuthError>;
    /// Graph answered 401 to `rejected`: refresh now (once) unless a newer token already replaced it.
    async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, AuthError>;
}

/// A fixed token (tests, and the emulator's pre-approved sessions).
pub struct StaticToken(pub String);

#[async_trait]
impl TokenSource for StaticToken {
    async fn access_token(&self) -> Result<String, AuthError> {
        Ok(self.0.clone())
    }
    async fn refresh_after_rejection(&self, _rejected: &str) -> Result<String, AuthError> {
        Err(AuthError::SignInAgain {
            account: None,
            reason: "a fixed token cannot be refreshed".into(),
        })
    }
}

#[derive(Debug, Error)]
pub enum AuthError {
    /// `invalid_grant` and friends: only an interactive sign-in helps.
    #[error("sign in again: galleryfs login{}{}", account.as_deref().map(|a| format!(" --account {a}")).unwrap_or_default(), if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    SignInAgain { account: Option<String>, reason: String },
    #[error("not signed in: run galleryfs login{}", account.as_deref().map(|a| format!(" --account {a}")).unwrap_or_default())]
    NotSignedIn { account: Option<String> },
    #[error("token file {path} has mode {mode:04o}, readable by group or others; refusing it. Fix: chmod 600 {path}")]
    InsecureTokenFile { path: String, mode: u32 },
    #[error("identity platform error {code}: {description}")]
    Service { code: String, description: String },
    #[error("cannot reach the identity platform: {0}")]
    Network(String),
    #[error("token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    /// The user said no (device code `authorization_declined`, browser `access_denied`).
    #[error("sign-in was declined{}", if description.is_empty() { String::new() } else { format!(": {description}") })]
    Declined { description: String },
    /// The device code's `expires_in` passed (or the service said `expired_token`).
    #[error("the code expired; run login again")]
    CodeExpired,
    /// The token endpoint did not recognise the device code (`bad_verification_code`).
    #[error("the identity platform did not recognise the device code (bad_verification_code); run login again")]
    BadVerificationCode,
    /// The browser flow failed locally: loopback listener, `state` mismatch, no redirect in time.
    #[error("browser sign-in failed: {0}")]
    Browser(String),
    #[error("{0}")]
    Other(String),
}

impl AuthError {
    /// True when the failure is transient (network or service busy): keep the tokens and work offline.
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Network(_))
    }
}
