//! [`RefreshingTokenSource`]: the [`TokenSource`] the Graph client uses. It serves the stored access token while
//! it has more than two minutes left, else refreshes it (`grant_type=refresh_token`) and persists the result,
//! always keeping the newest refresh token (the old one when the response has none). Concurrent callers share
//! one refresh (a tokio mutex held across it). After a Graph 401 it refreshes once, unless the token already
//! changed. The token file is re-read before each refresh, so a `galleryfs login` or a refresh made by another
//! process is picked up.

use super::identity::{identity_client, map_request_error, scopes, tokens_from_response, IdentityClient};
use super::token_store::{StoredTokens, TokenStore};
use super::{AuthError, TokenSource};
use crate::remote::Endpoints;
use async_trait::async_trait;
use oauth2::RefreshToken;
use std::path::Path;
use std::time::Duration;
use tokio::sync::Mutex;

/// An access token with less than this left is refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);

pub struct RefreshingTokenSource {
    account: String,
    store: TokenStore,
    client: IdentityClient,
    http: reqwest::Client,
    /// The tokens in use; `None` until first read from the file.
    current: Mutex<Option<StoredTokens>>,
}

impl RefreshingTokenSource {
    /// A source for `account` whose tokens live in `store`, refreshed at `endpoints`.
    pub fn new(
        account: impl Into<String>,
        endpoints: &Endpoints,
        store: TokenStore,
        http: reqwest::Client,
    ) -> Result<Self, AuthError> {
        Ok(Self {
            account: account.into(),
            store,
            client: identity_client(endpoints)?,
            http,
            current: Mutex::new(None),
        })
    }

    /// The source of `account` as `login` left it (its tokens in `token_file`).
    pub fn for_account(account: &str, token_file: &Path, endpoints: &Endpoints) -> Result<Self, AuthError> {
        Self::new(
            account,
            endpoints,
            TokenStore::new(token_file.to_path_buf()),
            super::identity::http_client()?,
        )
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    fn not_signed_in(&self) -> AuthError {
        AuthError::NotSignedIn {
            account: Some(self.account.clone()),
        }
    }

    /// The tokens on file (mode checked on every read); `NotSignedIn` when there is no file.
    fn read_file(&self) -> Result<StoredTokens, AuthError> {
        self.store.load()?.ok_or_else(|| self.not_signed_in())
    }

    /// Replaces the `stale` access token, the mutex held: adopts the file's tokens when another process (or a
    /// new `login`) already wrote a different, fresh one; else refreshes with the file's refresh token (the
    /// newest known), persists and returns the new access token.
    async fn renew_locked(&self, slot: &mut Option<StoredTokens>, stale: &str) -> Result<String, AuthError> {
        let on_file = self.read_file()?;
        if on_file.access_token != stale && on_file.valid_for(REFRESH_MARGIN) {
            let token = on_file.access_token.clone();
            *slot = Some(on_file);
            return Ok(token);
        }
        let Some(refresh) = on_file.refresh_token.clone() else {
            return Err(AuthError::SignInAgain {
                account: Some(self.account.clone()),
                reason: "no refresh token was stored".into(),
            });
        };
        tracing::info!(account = %self.account, "refreshing the access token");
        let response = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
            .add_scopes(scopes())
            .request_async(&self.http)
            .await
            .map_err(|e| {
                let err = map_request_error(e, Some(&self.account));
                tracing::warn!(account = %self.account, error = %err, "token refresh failed");
                err
            })?;
        let fresh = tokens_from_response(&response, Some(&refresh), Some(&on_file.scope));
        if let Err(e) = self.store.save(&fresh) {
            // The old refresh token stays valid (the platform does not revoke on use); keep serving.
            tracing::error!(account = %self.account, error = %e, "cannot save the refreshed tokens");
        }
        let token = fresh.access_token.clone();
        *slot = Some(fresh);
        Ok(token)
    }
}

#[async_trait]
impl TokenSource for RefreshingTokenSource {
    async fn access_token(&self) -> Result<String, AuthError> {
        let mut slot = self.current.lock().await;
        let current = match slot.as_ref() {
            Some(t) => t.clone(),
            None => self.read_file()?,
        };
        if current.valid_for(REFRESH_MARGIN) {
            let token = current.access_token.clone();
            *slot = Some(current);
            return Ok(token);
        }
        self.renew_locked(&mut slot, &current.access_token).await
    }

    async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, AuthError> {
        let mut slot = self.current.lock().await;
        if let Some(t) = slot.as_ref() {
            if t.access_token != rejected && t.valid_for(REFRESH_MARGIN) {
                // Someone refreshed while the rejected request was in flight.
                return Ok(t.access_token.clone());
            }
        }
        self.renew_locked(&mut slot, rejected).await
    }
}
