//! `/oauth/authorize` (browser pages) and `/oauth/token` (the CLI's code exchange).

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::codes::{self, NewCode, Redeemed};
use super::{CLIENT_ID, LoginSettings, PeerAddr, pages};
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::{jwt, password, token};
use crate::identity::users::{self, store};
use crate::infra::db::on_pool;

const CSRF_COOKIE: &str = "terrace_csrf";
const SESSION_COOKIE: &str = "terrace_session";
/// How long a browser stays signed in to the login pages.
const SESSION_TTL: chrono::Duration = chrono::Duration::hours(8);

/// The authorization request, as query parameters or repeated in the forms.
#[derive(Clone, Debug, Default, Deserialize)]
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
fn check_params(
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

/// RFC 7636: 43-128 unreserved characters.
fn is_pkce_string(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            cookie::Cookie::split_parse(v)
                .filter_map(|c| c.ok())
                .map(|c| (c.name().to_string(), c.value().to_string()))
                .collect::<Vec<_>>()
        })
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

pub(super) fn set_cookie(app: &Ctx, name: &str, value: &str, max_age: chrono::Duration) -> String {
    let secure = app.tls
        || app
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https:"));
    cookie::Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age.num_seconds()))
        .build()
        .to_string()
}

/// The signed-in user of this browser, if the session cookie is valid and the user enabled.
async fn session_user(app: &Ctx, headers: &HeaderMap) -> Option<store::UserRow> {
    let value = cookie(headers, SESSION_COOKIE)?;
    let claims = jwt::verify(app, &value, jwt::BROWSER_AUDIENCE).await.ok()?;
    let id: i64 = claims.sub.parse().ok()?;
    let user = store::find_user_by_id(&app.db, id).await.ok()??;
    (user.disabled_at.is_none() && user.password_hash.is_some()).then_some(user)
}

/// The CSRF cookie's value, or a new one and the header that sets it.
/// The double-submit check: the form's token equals the cookie this site set.
pub(super) fn csrf_ok(headers: &HeaderMap, submitted: &str) -> bool {
    cookie(headers, CSRF_COOKIE)
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(submitted.as_bytes())))
}

pub(super) fn csrf_token(app: &Ctx, headers: &HeaderMap) -> Result<(String, Vec<String>)> {
    match cookie(headers, CSRF_COOKIE) {
        Some(existing) => Ok((existing, Vec::new())),
        None => {
            let fresh = token::random_secret()?;
            let header = set_cookie(app, CSRF_COOKIE, &fresh, SESSION_TTL);
            Ok((fresh, vec![header]))
        }
    }
}

fn bad_request(message: &str) -> Response {
    pages::error(StatusCode::BAD_REQUEST, "Cannot sign in", message)
}

/// `GET /oauth/authorize`: the login form, or the consent page for a signed-in browser.
pub async fn authorize_page(
    State(app): State<Ctx>,
    headers: HeaderMap,
    Query(params): Query<AuthzParams>,
) -> Result<Response> {
    if let Err(message) = check_params(&params, &app.login.settings) {
        return Ok(bad_request(message));
    }
    let (csrf, cookies) = csrf_token(&app, &headers)?;
    Ok(match session_user(&app, &headers).await {
        Some(user) => pages::consent(&params, &csrf, &user.name, &cookies),
        None => pages::login_form(StatusCode::OK, &params, &csrf, None, &cookies),
    })
}

#[derive(Debug, Deserialize)]
pub struct AuthorizeForm {
    /// The request again, from the form's hidden fields.
    #[serde(flatten)]
    params: AuthzParams,
    #[serde(default)]
    csrf: String,
    username: Option<String>,
    password: Option<String>,
    decision: Option<String>,
}

/// `POST /oauth/authorize`: a submitted login form or consent decision.
pub async fn authorize_submit(
    State(app): State<Ctx>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: std::result::Result<Form<AuthorizeForm>, FormRejection>,
) -> Result<Response> {
    let Ok(Form(form)) = form else {
        return Ok(bad_request("the form could not be read"));
    };
    let params = form.params;
    if let Err(message) = check_params(&params, &app.login.settings) {
        return Ok(bad_request(message));
    }
    if !csrf_ok(&headers, &form.csrf) {
        return Ok(pages::error(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form was not sent from this page or has expired. Go back, reload the page \
             and try again.",
        ));
    }
    if let Some(decision) = form.decision {
        let Some(user) = session_user(&app, &headers).await else {
            return Ok(pages::login_form(
                StatusCode::UNAUTHORIZED,
                &params,
                &form.csrf,
                Some("Your session has expired. Sign in again."),
                &[],
            ));
        };
        crate::infra::notes::note_actor(format!("user:{}", user.name), None);
        crate::infra::notes::note_access("user:authorize", format!("user:{}", user.name), None);
        if decision != "allow" {
            return Ok(redirect_to_client(&params, &[("error", "access_denied")]));
        }
        return grant_code(&app, &params, user.id, Vec::new()).await;
    }
    let (Some(username), Some(password)) = (form.username, form.password) else {
        return Ok(bad_request("user name and password are required"));
    };
    let username = username.trim().to_lowercase();
    crate::infra::notes::note_actor(format!("user:{username}"), None);
    crate::infra::notes::note_access("user:login", format!("user:{username}"), None);
    if let Err(Error::TooManyRequests(secs)) = app.login.limits.attempt(&username, peer) {
        let mut response = pages::login_form(
            StatusCode::TOO_MANY_REQUESTS,
            &params,
            &form.csrf,
            Some(&format!(
                "Too many sign-in attempts. Try again in {secs} seconds."
            )),
            &[],
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(response);
    }
    let user = store::find_user(&app.db, &username).await?;
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // Unknown users verify against a dummy hash: same answer, same time.
    let valid = password::verify_async(password, stored).await;
    let user = match user {
        Some(user) if valid && user.disabled_at.is_none() => user,
        _ => {
            return Ok(pages::login_form(
                StatusCode::UNAUTHORIZED,
                &params,
                &form.csrf,
                Some("Invalid user name or password."),
                &[],
            ));
        }
    };
    let session = jwt::mint(
        &app,
        jwt::BROWSER_AUDIENCE,
        user.id,
        &user.name,
        &uuid::Uuid::new_v4().to_string(),
        SESSION_TTL,
    )
    .await?;
    let cookies = vec![set_cookie(&app, SESSION_COOKIE, &session, SESSION_TTL)];
    grant_code(&app, &params, user.id, cookies).await
}

/// Issues a code and sends the browser back to Terraform's listener with it.
async fn grant_code(
    app: &Ctx,
    params: &AuthzParams,
    user_id: i64,
    cookies: Vec<String>,
) -> Result<Response> {
    codes::sweep(&app.db).await?;
    let code = codes::issue(
        &app.db,
        NewCode {
            user_id,
            client_id: &params.client_id,
            redirect_uri: &params.redirect_uri,
            code_challenge: &params.code_challenge,
        },
    )
    .await?;
    let mut response = redirect_to_client(params, &[("code", &code)]);
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

fn redirect_to_client(params: &AuthzParams, pairs: &[(&str, &str)]) -> Response {
    // `check_params` already parsed this URI.
    let Ok(mut url) = url::Url::parse(&params.redirect_uri) else {
        return bad_request("invalid redirect_uri");
    };
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key, value);
        }
        query.append_pair("state", &params.state);
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
}

fn invalid_grant(description: &'static str) -> Error {
    Error::OAuth("invalid_grant", description)
}

/// `POST /oauth/token`: exchanges a code and its PKCE verifier for a login token.
pub async fn token(
    State(app): State<Ctx>,
    form: std::result::Result<Form<TokenForm>, FormRejection>,
) -> Result<Response> {
    let Ok(Form(form)) = form else {
        return Err(Error::OAuth(
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        ));
    };
    if form.grant_type.as_deref() != Some("authorization_code") {
        return Err(Error::OAuth(
            "unsupported_grant_type",
            "only grant_type=authorization_code is supported",
        ));
    }
    let (Some(code), Some(verifier), Some(client_id), Some(redirect_uri)) = (
        form.code,
        form.code_verifier,
        form.client_id,
        form.redirect_uri,
    ) else {
        return Err(Error::OAuth(
            "invalid_request",
            "code, code_verifier, client_id and redirect_uri are required",
        ));
    };
    let row = match codes::redeem(&app.db, &code).await? {
        Redeemed::Fresh(row) => row,
        Redeemed::Replayed(jti) => {
            // RFC 6749 §4.1.2: a replayed code may mean it leaked; revoke what it produced.
            if let Some(jti) = jti {
                revoke_jti(&app, &jti).await?;
            }
            return Err(invalid_grant(
                "the authorization code was already used; the token issued for it is revoked",
            ));
        }
        Redeemed::Unknown => return Err(invalid_grant("unknown authorization code")),
    };
    if row.expires_at <= Utc::now() {
        return Err(invalid_grant("the authorization code has expired"));
    }
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
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    if !bool::from(challenge.as_bytes().ct_eq(row.code_challenge.as_bytes())) {
        return Err(invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    let user = store::find_user_by_id(&app.db, row.user_id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or(invalid_grant("the user can no longer sign in"))?;
    crate::infra::notes::note_actor(format!("user:{}", user.name), None);
    crate::infra::notes::note_access("user:token", format!("user:{}", user.name), None);
    let ttl = chrono::Duration::from_std(app.login.settings.token_ttl)
        .map_err(|e| Error::Internal(e.into()))?;
    let (jti, access_token) =
        users::issue_login_token_with_id(&app, user.id, &user.name, "terraform login", ttl).await?;
    codes::record_token(&app.db, &code, &jti).await?;
    let body = serde_json::json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl.num_seconds(),
    });
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response())
}

async fn revoke_jti(app: &Ctx, jti: &str) -> Result<()> {
    const SQL: &str =
        "UPDATE user_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL";
    let db = &app.db;
    on_pool!(db, p => sqlx::query(SQL).bind(Utc::now()).bind(jti).execute(p).await.map(|_| ()))?;
    Ok(())
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
    fn pkce_strings_follow_rfc_7636() {
        assert!(is_pkce_string(&"a".repeat(43)));
        assert!(!is_pkce_string(&"a".repeat(42)));
        assert!(!is_pkce_string(&"a".repeat(129)));
        assert!(!is_pkce_string(&format!("{}+", "a".repeat(43))));
    }
}
