//! The caller, from `Authorization: Basic` (password = token; Terraform's http backend can
//! send nothing else) or `Authorization: Bearer`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use chrono::Utc;

use super::{Role, store, token};
use crate::app::{AppState, CachedToken};
use crate::error::{Error, Result};

/// Who is making a request.
#[derive(Clone, Debug)]
pub enum Principal {
    /// No credentials were sent.
    Anonymous,
    /// An API token of one org.
    Token(TokenPrincipal),
    /// The CLI and background jobs acting on the database directly.
    System,
}

#[derive(Clone, Debug)]
pub struct TokenPrincipal {
    pub token_id: i64,
    pub org_id: i64,
    pub org_name: String,
    pub role: Role,
    pub name: String,
}

impl Principal {
    /// How this principal is recorded as the author of a change.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::System => "system".into(),
            Principal::Token(t) => format!("token:{}#{}", t.name, t.token_id),
        }
    }

    /// Resolves a presented token secret (cached for a moment; revocation through this
    /// process clears the cache at once).
    pub async fn from_token(app: &AppState, secret: &str) -> Result<Principal> {
        let hash = token::hash(secret);
        if let Some(cached) = app.tokens.get(&hash) {
            if cached.expires_at.is_some_and(|at| at <= Utc::now()) {
                return Err(Error::Unauthenticated);
            }
            return Ok(cached.principal);
        }
        let row = store::find_token_by_hash(&app.db, &hash)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if !token::hashes_match(&row.token_hash, &hash) || row.revoked_at.is_some() {
            return Err(Error::Unauthenticated);
        }
        if row.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(Error::Unauthenticated);
        }
        let role = row.role.parse().map_err(|_| Error::Unauthenticated)?;
        let principal = Principal::Token(TokenPrincipal {
            token_id: row.id,
            org_id: row.org_id,
            org_name: row.org_name,
            role,
            name: row.name,
        });
        app.tokens.insert(
            hash,
            CachedToken {
                principal: principal.clone(),
                expires_at: row.expires_at,
            },
        );
        Ok(principal)
    }
}

/// Extracts the token secret from an `Authorization` header value.
fn presented_secret(value: &str) -> Result<String> {
    let (scheme, rest) = value.split_once(' ').ok_or(Error::Unauthenticated)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| Error::Unauthenticated)?;
        let text = String::from_utf8(decoded).map_err(|_| Error::Unauthenticated)?;
        // The username is free; the password (which may itself contain ':') is the token.
        let (_, password) = text.split_once(':').ok_or(Error::Unauthenticated)?;
        return Ok(password.to_string());
    }
    Err(Error::Unauthenticated)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Principal::Anonymous);
        };
        let value = value.to_str().map_err(|_| Error::Unauthenticated)?;
        let secret = presented_secret(value)?;
        if secret.is_empty() {
            return Err(Error::Unauthenticated);
        }
        Principal::from_token(app, &secret).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_uses_the_password_even_with_colons() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("terraform:trc_a:b")
        );
        assert_eq!(presented_secret(&header).unwrap(), "trc_a:b");
    }

    #[test]
    fn bearer_tokens_are_taken_as_they_are() {
        assert_eq!(presented_secret("Bearer trc_x").unwrap(), "trc_x");
        assert!(presented_secret("Digest abc").is_err());
    }
}
