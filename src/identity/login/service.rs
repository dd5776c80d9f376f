//! The rules of `terraform login`: which authorization requests are accepted, the CSRF and
//! session checks of the browser pages, sign-in with attempt limits, authorization codes and
//! their exchange for a login token, and invitations.
//!
//! Cookies arrive as their values and leave as decisions (a fresh CSRF token, a new session);
//! `routes` turns them into headers.

use std::net::IpAddr;

use chrono::Utc;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::pkce::{is_pkce_string, verifier_matches};
use super::store::{self, NewCode};
use super::{CLIENT_ID, LoginSettings};
use crate::config::LocalPasswords;
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::{password, token};
pub use crate::identity::browser::{
    BrowserCookies, CsrfToken, SESSION_TTL, csrf_ok, csrf_token, session_for, session_user,
};
use crate::identity::users::{self, store as user_store};
use crate::infra::notes::{note_access, note_actor};

/// Terraform redeems its code right after the redirect; a minute is plenty.
const CODE_TTL: chrono::Duration = chrono::Duration::seconds(60);
/// Expired codes are kept this long so that a late replay is still recognised as one.
const CODE_RETENTION: chrono::Duration = chrono::Duration::days(1);

/// The authorization request, as query parameters or repeated in the forms.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
pub struct AuthzParams {
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: String,
    #[serde(default)]
    pub response_type: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub code_challenge: String,
    #[serde(default)]
    pub code_challenge_method: String,
}

/// Why an authorization request is refused; shown on a page, never sent to the redirect URI
/// (which may not be trustworthy).
pub(super) fn check_request(
    params: &AuthzParams,
    settings: &LoginSettings,
) -> std::result::Result<(), &'static str> {
    check_redirect_uri(&params.redirect_uri, settings)?;
    if params.client_id != CLIENT_ID {
        return Err("unknown client_id");
    }
    if params.response_type != "code" {
        return Err("response_type must be code");
    }
    if params.code_challenge_method != "S256" {
        return Err("code_challenge_method must be S256 (PKCE)");
    }
    if !is_pkce_string(&params.code_challenge) {
        return Err("code_challenge must be 43-128 characters of base64url");
    }
    if params.state.len() > 1024 {
        return Err("state is too long");
    }
    Ok(())
}

/// Only Terraform's loopback listener may receive codes: `http://localhost:P/login` or
/// `http://127.0.0.1:P/login` with P in the advertised range.
fn check_redirect_uri(
    uri: &str,
    settings: &LoginSettings,
) -> std::result::Result<(), &'static str> {
    const REFUSED: &str = "redirect_uri must be http://localhost:PORT/login or \
                           http://127.0.0.1:PORT/login with PORT in the advertised range";
    let url = url::Url::parse(uri).map_err(|_| REFUSED)?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost")) | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
    );
    let port_ok = url
        .port()
        .is_some_and(|p| (settings.ports.0..=settings.ports.1).contains(&p));
    let clean = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if url.scheme() == "http" && loopback && port_ok && url.path() == "/login" && clean {
        Ok(())
    } else {
        Err(REFUSED)
    }
}

/// Where the browser goes back to Terraform's listener: the redirect URI with `pairs` and the
/// request's `state`.
fn client_redirect(
    params: &AuthzParams,
    pairs: &[(&str, &str)],
) -> std::result::Result<String, &'static str> {
    // `check_request` already parsed this URI; failing here means it was skipped.
    let mut url = url::Url::parse(&params.redirect_uri).map_err(|_| "invalid redirect_uri")?;
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key, value);
        }
        query.append_pair("state", &params.state);
    }
    Ok(url.into())
}

/// What the sign-in page offers besides the password form.
#[derive(Debug, Clone)]
pub struct SignInOptions {
    /// "Sign in with …" (the issuer's name) when single sign-on is configured.
    pub sso: Option<String>,
    /// Whether the password form is shown.
    pub passwords: bool,
}

pub fn sign_in_options(app: &Ctx) -> SignInOptions {
    SignInOptions {
        sso: app.login.oidc.as_ref().map(|o| o.label()),
        passwords: app.login.settings.local_passwords != LocalPasswords::Off,
    }
}

/// What `GET /oauth/authorize` shows.
#[derive(Debug)]
pub enum AuthorizePage {
    Refused(&'static str),
    SignIn {
        csrf: CsrfToken,
    },
    /// The browser is signed in: it only has to allow or deny.
    Consent {
        csrf: CsrfToken,
        user: String,
    },
}

pub async fn authorize_page(
    app: &Ctx,
    params: &AuthzParams,
    cookies: BrowserCookies<'_>,
) -> Result<AuthorizePage> {
    if let Err(message) = check_request(params, &app.login.settings) {
        return Ok(AuthorizePage::Refused(message));
    }
    let csrf = csrf_token(cookies)?;
    Ok(match session_user(app, cookies).await {
        Some(user) => AuthorizePage::Consent {
            csrf,
            user: user.name,
        },
        None => AuthorizePage::SignIn { csrf },
    })
}

/// A submitted sign-in form or consent decision.
#[derive(Debug)]
pub struct Submission {
    pub params: AuthzParams,
    pub csrf: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub decision: Option<String>,
}

/// The answer to a [`Submission`].
#[derive(Debug)]
pub enum Submitted {
    /// The request or form is unusable; the reason is shown on a page.
    Refused(&'static str),
    /// The form's CSRF token is not this browser's.
    FormExpired,
    /// A consent decision from a browser whose session ended.
    SessionExpired,
    /// Too many attempts for the user name or address; retry after this many seconds.
    Limited(u64),
    InvalidCredentials,
    /// Password sign-in is turned off (for everyone, or for users who are no admin).
    PasswordsOff,
    /// Back to Terraform's listener, with a code or `error=access_denied`; `session` is a
    /// browser session to start.
    Redirect {
        url: String,
        session: Option<String>,
    },
}

pub async fn submit(
    app: &Ctx,
    form: &Submission,
    cookies: BrowserCookies<'_>,
    peer: Option<IpAddr>,
) -> Result<Submitted> {
    let params = &form.params;
    if let Err(message) = check_request(params, &app.login.settings) {
        return Ok(Submitted::Refused(message));
    }
    if !csrf_ok(cookies, &form.csrf) {
        return Ok(Submitted::FormExpired);
    }
    if let Some(decision) = &form.decision {
        let Some(user) = session_user(app, cookies).await else {
            return Ok(Submitted::SessionExpired);
        };
        note_actor(format!("user:{}", user.name), None);
        note_access("user:authorize", format!("user:{}", user.name), None);
        if decision != "allow" {
            return Ok(redirect(params, &[("error", "access_denied")], None));
        }
        return grant_code(app, params, user.id, None).await;
    }
    let (Some(username), Some(password)) = (&form.username, &form.password) else {
        return Ok(Submitted::Refused("user name and password are required"));
    };
    Ok(
        match password_sign_in(app, username, password, peer).await? {
            SignIn::PasswordsOff => Submitted::PasswordsOff,
            SignIn::Limited(secs) => Submitted::Limited(secs),
            SignIn::InvalidCredentials => Submitted::InvalidCredentials,
            SignIn::SignedIn { user_id, session } => {
                grant_code(app, params, user_id, Some(session)).await?
            }
        },
    )
}

/// The outcome of a password sign-in.
#[derive(Debug)]
pub enum SignIn {
    /// Password sign-in is turned off (for everyone, or for users who are no admin).
    PasswordsOff,
    /// Too many attempts for the user name or address; retry after this many seconds.
    Limited(u64),
    InvalidCredentials,
    /// A browser session to start.
    SignedIn {
        user_id: i64,
        session: String,
    },
}

/// Checks a user name and password under the attempt limits and the password policy, for the
/// login pages and the web UI alike.
pub async fn password_sign_in(
    app: &Ctx,
    username: &str,
    password: &str,
    peer: Option<IpAddr>,
) -> Result<SignIn> {
    let policy = app.login.settings.local_passwords;
    if policy == LocalPasswords::Off {
        return Ok(SignIn::PasswordsOff);
    }
    let username = username.trim().to_lowercase();
    note_actor(format!("user:{username}"), None);
    note_access("user:login", format!("user:{username}"), None);
    if let Err(Error::TooManyRequests(secs)) = app.login.limits.attempt(&username, peer) {
        return Ok(SignIn::Limited(secs));
    }
    let user = user_store::find_user(&app.db, &username).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // Unknown users verify against a dummy hash: same answer, same time.
    let valid = password::verify_async(password.to_string(), stored).await;
    let user = match user {
        Some(user) if valid && user.disabled_at.is_none() => user,
        _ => return Ok(SignIn::InvalidCredentials),
    };
    // Break-glass: with `admins`, a password still works for org admins (the identity
    // provider may be down), for nobody else.
    if policy == LocalPasswords::Admins && !store::is_admin_somewhere(&app.db, user.id).await? {
        return Ok(SignIn::PasswordsOff);
    }
    let session = session_for(app, user.id, &user.name).await?;
    Ok(SignIn::SignedIn {
        user_id: user.id,
        session,
    })
}

fn redirect(params: &AuthzParams, pairs: &[(&str, &str)], session: Option<String>) -> Submitted {
    match client_redirect(params, pairs) {
        Ok(url) => Submitted::Redirect { url, session },
        Err(message) => Submitted::Refused(message),
    }
}

/// Issues a code (stored hashed, single use, bound to the client, redirect URI and PKCE
/// challenge) and sends the browser back to Terraform with it.
pub(super) async fn grant_code(
    app: &Ctx,
    params: &AuthzParams,
    user_id: i64,
    session: Option<String>,
) -> Result<Submitted> {
    let now = Utc::now();
    store::delete_codes_expired_before(&app.db, now - CODE_RETENTION).await?;
    let code = token::random_secret()?;
    store::insert_code(
        &app.db,
        NewCode {
            code_hash: &token::hash(&code),
            user_id,
            client_id: &params.client_id,
            redirect_uri: &params.redirect_uri,
            code_challenge: &params.code_challenge,
            expires_at: now + CODE_TTL,
        },
    )
    .await?;
    Ok(redirect(params, &[("code", &code)], session))
}

/// The token endpoint's form.
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
}

/// A login token for the Terraform CLI.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
}

fn invalid_grant(description: &'static str) -> Error {
    Error::OAuth("invalid_grant", description)
}

/// Exchanges a code and its PKCE verifier for a login token.
pub async fn exchange(app: &Ctx, request: TokenRequest) -> Result<IssuedToken> {
    if request.grant_type.as_deref() != Some("authorization_code") {
        return Err(Error::OAuth(
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported",
        ));
    }
    let (Some(code), Some(verifier), Some(client_id), Some(redirect_uri)) = (
        request.code,
        request.code_verifier,
        request.client_id,
        request.redirect_uri,
    ) else {
        return Err(Error::OAuth(
            "invalid_request",
            "code, code_verifier, client_id and redirect_uri are required",
        ));
    };
    let code_hash = token::hash(&code);
    let Some(row) = store::claim_code(&app.db, &code_hash, Utc::now()).await? else {
        return Err(match store::code_token(&app.db, &code_hash).await? {
            Some(jti) => {
                // RFC 6749 §4.1.2: a replayed code may mean it leaked; revoke what it produced.
                if let Some(jti) = jti {
                    store::revoke_user_token_by_jti(&app.db, &jti, Utc::now()).await?;
                }
                invalid_grant(
                    "the authorization code was already used; the token issued for it is revoked",
                )
            }
            None => invalid_grant("unknown authorization code"),
        });
    };
    if row.expires_at <= Utc::now() {
        return Err(invalid_grant("the authorization code has expired"));
    }
    // Both compared in full, so the answer's timing does not say which one differs.
    let bound = bool::from(row.client_id.as_bytes().ct_eq(client_id.as_bytes()))
        & bool::from(row.redirect_uri.as_bytes().ct_eq(redirect_uri.as_bytes()));
    if !bound {
        return Err(invalid_grant(
            "client_id or redirect_uri differ from the authorization request",
        ));
    }
    if !is_pkce_string(&verifier) {
        return Err(invalid_grant("code_verifier must be 43-128 characters"));
    }
    if !verifier_matches(&verifier, &row.code_challenge) {
        return Err(invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    let user = user_store::find_user_by_id(&app.db, row.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or(invalid_grant("the user can no longer sign in"))?;
    note_actor(format!("user:{}", user.name), None);
    note_access("user:token", format!("user:{}", user.name), None);
    let ttl = chrono::Duration::from_std(app.login.settings.token_ttl)
        .map_err(|e| Error::Internal(e.into()))?;
    let (jti, access_token) =
        users::issue_login_token_with_id(app, user.id, &user.name, "terraform login", ttl).await?;
    // Remembered so that a replay of this code can revoke the token.
    store::set_code_token(&app.db, &code_hash, &jti).await?;
    Ok(IssuedToken {
        access_token,
        expires_in: ttl.num_seconds(),
    })
}

/// A user created without a password, holding a live invitation.
#[derive(Debug)]
pub struct Invitee {
    pub user_id: i64,
    pub name: String,
}

/// The invitee for the secret of an invitation link, unless it is unknown, used or expired.
pub async fn invitation(app: &Ctx, secret: &str) -> Result<Option<Invitee>> {
    let user = user_store::find_user_by_invite(&app.db, &token::hash(secret)).await?;
    Ok(user
        .filter(|u| {
            u.password_hash.is_none() && u.invite_expires_at.is_some_and(|at| at > Utc::now())
        })
        .map(|u| Invitee {
            user_id: u.id,
            name: u.name,
        }))
}

/// The invitation form: the chosen password, twice.
#[derive(Debug)]
pub struct PasswordChoice {
    pub csrf: String,
    pub password: String,
    pub confirm: String,
}

#[derive(Debug)]
pub enum Accepted {
    /// The form's CSRF token is not this browser's.
    FormExpired,
    /// The password was not accepted, for this reason.
    Rejected(String),
    PasswordSet,
}

/// Sets the invitee's first password, which ends the invitation.
pub async fn accept_invitation(
    app: &Ctx,
    invitee: &Invitee,
    choice: &PasswordChoice,
    cookies: BrowserCookies<'_>,
) -> Result<Accepted> {
    if !csrf_ok(cookies, &choice.csrf) {
        return Ok(Accepted::FormExpired);
    }
    note_actor(format!("user:{}", invitee.name), None);
    note_access(
        "user:accept-invitation",
        format!("user:{}", invitee.name),
        None,
    );
    if choice.password != choice.confirm {
        return Ok(Accepted::Rejected("The two passwords differ.".to_string()));
    }
    if let Err(e) = password::validate(&choice.password) {
        return Ok(Accepted::Rejected(e.to_string()));
    }
    let hash = password::hash_async(choice.password.clone()).await?;
    user_store::set_password(&app.db, invitee.user_id, &hash).await?;
    Ok(Accepted::PasswordSet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_login_redirects_in_the_port_range_are_accepted() {
        let settings = LoginSettings {
            ports: (10000, 10010),
            ..LoginSettings::default()
        };
        for good in [
            "http://localhost:10000/login",
            "http://127.0.0.1:10009/login",
            "http://localhost:10010/login",
        ] {
            assert!(check_redirect_uri(good, &settings).is_ok(), "{good}");
        }
        for bad in [
            "https://localhost:10000/login",
            "http://localhost:9999/login",
            "http://localhost/login",
            "http://evil.example:10000/login",
            "http://localhost.evil.example:10000/login",
            "http://127.0.0.2:10000/login",
            "http://[::1]:10000/login",
            "http://localhost:10000/other",
            "http://localhost:10000/login?x=1",
            "http://user@localhost:10000/login",
            "not a url",
        ] {
            assert!(check_redirect_uri(bad, &settings).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_redirect_carries_the_pairs_and_the_state() {
        let params = AuthzParams {
            redirect_uri: "http://localhost:10000/login".into(),
            state: "a b&c".into(),
            ..AuthzParams::default()
        };
        assert_eq!(
            client_redirect(&params, &[("code", "x")]).as_deref(),
            Ok("http://localhost:10000/login?code=x&state=a+b%26c")
        );
    }

    #[test]
    fn csrf_needs_the_cookie_and_an_equal_form_token() {
        let with = |csrf| BrowserCookies {
            csrf,
            session: None,
        };
        assert!(csrf_ok(with(Some("t0k")), "t0k"));
        assert!(!csrf_ok(with(Some("t0k")), "t0K"));
        assert!(!csrf_ok(with(None), ""));
        assert!(csrf_token(with(None)).is_ok_and(|t| t.fresh && !t.value.is_empty()));
        assert!(csrf_token(with(Some("t0k"))).is_ok_and(|t| !t.fresh && t.value == "t0k"));
    }
}
