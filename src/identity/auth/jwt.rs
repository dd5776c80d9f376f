//! Login tokens and browser sessions: HS256 JWTs.
//!
//! Signing keys are derived from the master key and a random key id kept in `login_keys`,
//! so replicas agree on them and nothing secret is stored. Rotation adds a key; the old ones
//! keep verifying until they are retired.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::store;
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::infra::crypto::Keyring;
use crate::infra::db::Db;

const ISSUER: &str = "terrace";
/// Audience of tokens handed to the Terraform CLI and API clients.
pub const API_AUDIENCE: &str = "terrace-api";
/// Audience of the browser session cookie on the login pages.
pub const BROWSER_AUDIENCE: &str = "terrace-browser";
/// How often an unknown key id may trigger a reload (another replica may have rotated).
const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How long loaded keys are trusted: a rotation or retirement by `terrace keys rotate-login`
/// reaches every running server within this time.
const MAX_KEY_AGE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user's id.
    pub sub: String,
    /// The user's name, for display only: rights are looked up by id on every request.
    pub name: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Default)]
struct KeySet {
    current: Option<String>,
    secrets: HashMap<String, [u8; 32]>,
    loaded_at: Option<Instant>,
}

/// The signing keys, loaded from the database on first use.
#[derive(Default)]
pub struct LoginKeys {
    keys: tokio::sync::RwLock<KeySet>,
}

impl std::fmt::Debug for LoginKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginKeys")
    }
}

/// Adds a new signing key; with `retire_others`, every earlier key (and every token it
/// signed) stops working.
pub async fn rotate(db: &Db, keyring: &Keyring, retire_others: bool) -> Result<String> {
    let kid = hex::encode(crate::identity::auth::token::random_bytes::<12>()?);
    let now = Utc::now();
    if retire_others {
        store::retire_login_keys(db, now).await?;
    }
    store::insert_login_key(db, &kid, keyring.current_id(), now).await?;
    Ok(kid)
}

impl LoginKeys {
    /// Forgets the loaded keys, so the next use reads them again (after a rotation here).
    pub async fn forget(&self) {
        *self.keys.write().await = KeySet::default();
    }

    async fn reload(&self, db: &Db, keyring: &Keyring) -> Result<()> {
        let mut rows = store::active_login_keys(db).await?;
        if rows.is_empty() {
            rotate(db, keyring, false).await?;
            rows = store::active_login_keys(db).await?;
        }
        let mut set = KeySet {
            current: None,
            secrets: HashMap::new(),
            loaded_at: Some(Instant::now()),
        };
        for row in rows {
            // A key whose master key is no longer configured cannot verify anything.
            let Ok(secret) = keyring.derive_secret(&row.master_key_id, row.kid.as_bytes()) else {
                continue;
            };
            if set.current.is_none() && row.master_key_id == keyring.current_id() {
                set.current = Some(row.kid.clone());
            }
            set.secrets.insert(row.kid, secret);
        }
        if set.current.is_none() {
            // Every key predates the current master key: start a new one.
            rotate(db, keyring, false).await?;
            return Box::pin(self.reload(db, keyring)).await;
        }
        *self.keys.write().await = set;
        Ok(())
    }

    async fn signing_key(&self, db: &Db, keyring: &Keyring) -> Result<(String, [u8; 32])> {
        {
            let keys = self.keys.read().await;
            let fresh = keys.loaded_at.is_some_and(|at| at.elapsed() < MAX_KEY_AGE);
            if let Some(kid) = keys.current.as_ref().filter(|_| fresh)
                && let Some(secret) = keys.secrets.get(kid)
            {
                return Ok((kid.clone(), *secret));
            }
        }
        self.reload(db, keyring).await?;
        let keys = self.keys.read().await;
        keys.current
            .as_ref()
            .and_then(|kid| keys.secrets.get(kid).map(|s| (kid.clone(), *s)))
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no login signing key")))
    }

    async fn verifying_key(&self, db: &Db, keyring: &Keyring, kid: &str) -> Result<[u8; 32]> {
        let may_reload = {
            let keys = self.keys.read().await;
            let age = keys.loaded_at.map(|at| at.elapsed());
            if let Some(secret) = keys.secrets.get(kid)
                && age.is_some_and(|age| age < MAX_KEY_AGE)
            {
                return Ok(*secret);
            }
            age.is_none_or(|age| age >= RELOAD_INTERVAL)
        };
        if may_reload {
            self.reload(db, keyring).await?;
        }
        self.keys
            .read()
            .await
            .secrets
            .get(kid)
            .copied()
            .ok_or(Error::Unauthenticated)
    }
}

/// Signs a token for user `user_id` valid for `ttl`.
pub async fn mint(
    app: &Ctx,
    audience: &str,
    user_id: i64,
    name: &str,
    jti: &str,
    ttl: chrono::Duration,
) -> Result<String> {
    let (kid, secret) = app
        .login_keys
        .signing_key(&app.db, app.blobs.keys())
        .await?;
    let now = Utc::now();
    let claims = Claims {
        iss: ISSUER.into(),
        aud: audience.into(),
        sub: user_id.to_string(),
        name: name.into(),
        jti: jti.into(),
        iat: now.timestamp(),
        exp: (now + ttl).timestamp(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret))
        .map_err(|e| Error::Internal(anyhow::anyhow!("signing a token: {e}")))
}

/// Whether `token` is shaped like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Checks signature, algorithm (HS256 only: `none` and others are refused), issuer, audience
/// and expiry. Revocation is the caller's business.
pub async fn verify(app: &Ctx, token: &str, audience: &str) -> Result<Claims> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Unauthenticated)?;
    if header.alg != Algorithm::HS256 {
        return Err(Error::Unauthenticated);
    }
    let kid = header.kid.ok_or(Error::Unauthenticated)?;
    let secret = app
        .login_keys
        .verifying_key(&app.db, app.blobs.keys(), &kid)
        .await?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&secret), &validation)
        .map(|data| data.claims)
        .map_err(|_| Error::Unauthenticated)
}
