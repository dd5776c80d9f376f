//! The rules of single sign-on through an OpenID Connect issuer: starting a sign-in (a
//! single-use `state`, with a PKCE verifier and a `nonce` derived from it and the master key,
//! so no secret is stored), the callback (state bound to the browser, the code exchange, the
//! ID token's checks), users created at first sign-in and linked by issuer and subject, the
//! IdP's groups applied to teams, and resuming a `terraform login` with the same code as a
//! password sign-in would give.

use base64::Engine;
use chrono::Utc;
use subtle::ConstantTimeEq;

use super::oidc::{Identity, OidcError};
use super::service::{AuthzParams, Submitted, check_request, grant_code, session_for};
use super::store::{self, NewSsoLogin};
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::token;
use crate::identity::teams;
use crate::identity::users::store::{self as user_store, NewUser};
use crate::infra::notes::{note_access, note_actor, note_event};
use crate::names::UserName;

/// How long the issuer's page may take before the sign-in must start again.
const SSO_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// Used and expired sign-ins are kept this long, so a late replay is still refused as one.
const SSO_RETENTION: chrono::Duration = chrono::Duration::days(1);

/// What `GET /oauth/sso/start` answers.
#[derive(Debug)]
pub enum Started {
    /// Single sign-on is not configured, or the login.v1 request is unusable.
    Refused(String),
    /// The issuer cannot be used now; local administrators can still sign in.
    Unavailable(String),
    /// Too many sign-ins started from this address; retry after this many seconds.
    Limited(u64),
    /// To the issuer; `state` goes into a cookie that binds the callback to this browser.
    Redirect { url: String, state: String },
}

fn derived(app: &Ctx, master_key_id: &str, purpose: &str, state: &str) -> Result<String> {
    let secret = app
        .blobs
        .keys()
        .derive_secret(master_key_id, b"oidc-sign-in")
        .map_err(Error::Internal)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let tag = ring::hmac::sign(&key, format!("{purpose}\0{state}").as_bytes());
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Where the issuer sends the browser back, under `base_url` (`public_url`, else the
/// request's own scheme and host).
fn redirect_uri(base_url: &str) -> String {
    format!("{}/oauth/sso/callback", base_url.trim_end_matches('/'))
}

/// Starts a sign-in at the issuer, to resume `resume` (a `terraform login`) afterwards.
pub async fn start(
    app: &Ctx,
    resume: Option<&AuthzParams>,
    base_url: &str,
    peer: Option<std::net::IpAddr>,
) -> Result<Started> {
    let Some(oidc) = app.login.oidc.as_ref() else {
        return Ok(Started::Refused("single sign-on is not configured".into()));
    };
    // Each start stores a row: anonymous callers share the sign-in limit per address.
    if let Err(Error::TooManyRequests(secs)) = app.login.limits.attempt_address(peer) {
        return Ok(Started::Limited(secs));
    }
    if let Some(params) = resume
        && let Err(message) = check_request(params, &app.login.settings)
    {
        return Ok(Started::Refused(message.into()));
    }
    let metadata = match oidc.metadata().await {
        Ok(metadata) => metadata,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on unavailable");
            return Ok(Started::Unavailable(e.to_string()));
        }
    };
    let now = Utc::now();
    store::delete_sso_logins_expired_before(&app.db, now - SSO_RETENTION).await?;
    let state = token::random_secret()?;
    let master_key_id = app.blobs.keys().current_id().to_string();
    let resume = resume
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Internal(e.into()))?;
    store::insert_sso_login(
        &app.db,
        NewSsoLogin {
            state_hash: &token::hash(&state),
            master_key_id: &master_key_id,
            resume: resume.as_deref(),
            expires_at: now + SSO_TTL,
        },
    )
    .await?;
    let verifier = derived(app, &master_key_id, "pkce", &state)?;
    let nonce = derived(app, &master_key_id, "nonce", &state)?;
    let challenge = {
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    };
    let mut url = url::Url::parse(&metadata.authorization_endpoint).map_err(|_| {
        Error::Internal(anyhow::anyhow!(
            "the issuer's authorization endpoint is not a URL"
        ))
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &oidc.settings.client_id)
        .append_pair("redirect_uri", &redirect_uri(base_url))
        .append_pair("scope", &oidc.settings.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(Started::Redirect {
        url: url.into(),
        state,
    })
}

/// The issuer's redirect back, as query parameters.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What the callback answers.
#[derive(Debug)]
pub enum Finished {
    /// The callback is not one Terrace can accept (state, replay, issuer error).
    Refused(String),
    /// The issuer or its ID token failed.
    Failed(String),
    /// The issuer cannot be reached now.
    Unavailable(String),
    /// Signed in as `user` with a browser `session`; `next` continues a `terraform login`.
    SignedIn {
        user: String,
        session: String,
        next: Option<Submitted>,
    },
}

/// Finishes a sign-in: `cookie_state` is the state this browser was given at the start.
pub async fn callback(
    app: &Ctx,
    params: &CallbackParams,
    cookie_state: Option<&str>,
    base_url: &str,
) -> Result<Finished> {
    let Some(oidc) = app.login.oidc.as_ref() else {
        return Ok(Finished::Refused("single sign-on is not configured".into()));
    };
    note_access(
        "user:sso-login",
        format!("issuer:{}", oidc.settings.issuer),
        None,
    );
    if let Some(error) = &params.error {
        let detail = params.error_description.as_deref().unwrap_or("");
        return Ok(Finished::Refused(format!(
            "the identity provider did not sign you in ({error}) {detail}"
        )));
    }
    let (Some(code), Some(state)) = (&params.code, &params.state) else {
        return Ok(Finished::Refused("the callback lacks code or state".into()));
    };
    // The state must be the one this browser started with: otherwise someone else's sign-in
    // (or a forged one) would be finished in this browser.
    let bound = cookie_state.is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
    if !bound {
        return Ok(Finished::Refused(
            "the state does not match this browser's sign-in; start again".into(),
        ));
    }
    let now = Utc::now();
    let Some(row) = store::claim_sso_login(&app.db, &token::hash(state), now).await? else {
        return Ok(Finished::Refused(
            "this sign-in is unknown or was already used; start again".into(),
        ));
    };
    if row.expires_at <= now {
        return Ok(Finished::Refused(
            "this sign-in has expired; start again".into(),
        ));
    }
    let verifier = derived(app, &row.master_key_id, "pkce", state)?;
    let nonce = derived(app, &row.master_key_id, "nonce", state)?;
    let verified = match oidc
        .exchange(code, &verifier, &redirect_uri(base_url))
        .await
    {
        Ok(id_token) => oidc.verify(&id_token, &nonce).await,
        Err(e) => Err(e),
    };
    let identity = match verified {
        Ok(identity) => identity,
        Err(e @ OidcError::Unreachable(..)) => return Ok(Finished::Unavailable(e.to_string())),
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on refused");
            return Ok(Finished::Failed(e.to_string()));
        }
    };
    let Some((user_id, name)) = link_user(app, &identity).await? else {
        return Ok(Finished::Failed("this user is disabled in Terrace".into()));
    };
    note_actor(format!("user:{name}"), None);
    note_access("user:sso-login", format!("user:{name}"), None);
    teams::apply_idp_groups(app, user_id, &identity.groups).await?;
    let session = session_for(app, user_id, &name).await?;
    let next = match row.resume {
        Some(json) => {
            let params: AuthzParams =
                serde_json::from_str(&json).map_err(|e| Error::Internal(e.into()))?;
            Some(grant_code(app, &params, user_id, None).await?)
        }
        None => None,
    };
    Ok(Finished::SignedIn {
        user: name,
        session,
        next,
    })
}

/// The user linked to the identity, created on first sign-in; `None` if disabled.
async fn link_user(app: &Ctx, identity: &Identity) -> Result<Option<(i64, String)>> {
    let now = Utc::now();
    if let Some(user_id) =
        store::find_identity(&app.db, &identity.issuer, &identity.subject).await?
    {
        store::touch_identity(
            &app.db,
            &identity.issuer,
            &identity.subject,
            identity.email.as_deref(),
            now,
        )
        .await?;
        let user = user_store::find_user_by_id(&app.db, user_id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        return Ok(user.disabled_at.is_none().then_some((user.id, user.name)));
    }
    // A new person: a user of their own, never an existing one with the same name or
    // e-mail address (names are not proof of identity; issuer and subject are).
    let base = [
        identity.preferred_username.as_deref(),
        identity.email.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(|n| UserName::parse(n).ok())
    .map(|n| n.as_str().to_string())
    .unwrap_or_else(|| {
        let digest = crate::infra::crypto::sha256_hex(
            format!("{}\0{}", identity.issuer, identity.subject).as_bytes(),
        );
        format!("sso-{}", &digest[..12])
    });
    for attempt in 0..20 {
        let name = match attempt {
            0 => base.clone(),
            n if n < 10 => format!("{base}-{}", n + 1),
            _ => format!("{base}-{}", hex::encode(token::random_bytes::<3>()?)),
        };
        if UserName::parse(&name).is_err() {
            continue;
        }
        let created = user_store::insert_user(
            &app.db,
            NewUser {
                name: &name,
                password_hash: None,
                invite_hash: None,
                invite_expires_at: None,
            },
            now,
        )
        .await;
        let user_id = match created.map_err(|e| e.or_conflict(String::new)) {
            Ok(id) => id,
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        };
        if let Err(e) = store::insert_identity(
            &app.db,
            &identity.issuer,
            &identity.subject,
            user_id,
            identity.email.as_deref(),
            now,
        )
        .await
        {
            // Another replica linked this subject first: use its user.
            user_store::delete_user(&app.db, user_id).await?;
            return match e.or_conflict(String::new) {
                Error::Conflict(_) => Box::pin(link_user(app, identity)).await,
                e => Err(e),
            };
        }
        note_event("user:create-jit", format!("user:{name}"), None);
        return Ok(Some((user_id, name)));
    }
    Err(Error::Internal(anyhow::anyhow!(
        "no free user name for a new single sign-on user"
    )))
}
