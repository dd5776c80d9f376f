//! Browser sessions and CSRF protection, shared by the login pages and the web UI.
//!
//! A session is a signed JWT (browser audience) in an HTTP-only, same-site cookie; forms carry
//! a double-submit CSRF token that must equal the `terrace_csrf` cookie this site set.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::error::Result;
use crate::identity::Ctx;
use crate::identity::auth::{Principal, jwt, token, user_caller};
use crate::identity::users::store as user_store;

pub const CSRF_COOKIE: &str = "terrace_csrf";
pub const SESSION_COOKIE: &str = "terrace_session";

/// How long a browser stays signed in.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::hours(8);
/// The session and CSRF cookies a browser sent, by value.
#[derive(Clone, Copy, Debug, Default)]
pub struct BrowserCookies<'a> {
    pub csrf: Option<&'a str>,
    pub session: Option<&'a str>,
}

/// The CSRF token a form carries: the browser's, or a new one it must be given as a cookie.
#[derive(Debug)]
pub struct CsrfToken {
    pub value: String,
    pub fresh: bool,
}

pub fn csrf_token(cookies: BrowserCookies<'_>) -> Result<CsrfToken> {
    Ok(match cookies.csrf {
        Some(existing) => CsrfToken {
            value: existing.to_string(),
            fresh: false,
        },
        None => CsrfToken {
            value: token::random_secret()?,
            fresh: true,
        },
    })
}

/// The double-submit check: the form's token equals the cookie this site set.
pub fn csrf_ok(cookies: BrowserCookies<'_>, submitted: &str) -> bool {
    cookies
        .csrf
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(submitted.as_bytes())))
}

/// The signed-in user of this browser, if the session is valid and the user enabled.
pub async fn session_user(app: &Ctx, cookies: BrowserCookies<'_>) -> Option<user_store::UserRow> {
    session(app, cookies).await.map(|(user, _)| user)
}

/// The session's user and the session's id.
async fn session(app: &Ctx, cookies: BrowserCookies<'_>) -> Option<(user_store::UserRow, String)> {
    let claims = jwt::verify(app, cookies.session?, jwt::BROWSER_AUDIENCE)
        .await
        .ok()?;
    let id: i64 = claims.sub.parse().ok()?;
    let user = user_store::find_user_by_id(&app.db, id).await.ok()??;
    // A session exists only after a sign-in (password or single sign-on).
    user.disabled_at.is_none().then_some((user, claims.jti))
}

/// The signed-in user of this browser as a caller, their rights read afresh (so role changes
/// and disabling take effect at once); `None` without a valid session.
pub async fn principal(app: &Ctx, cookies: BrowserCookies<'_>) -> Result<Option<Principal>> {
    let Some((user, session_id)) = session(app, cookies).await else {
        return Ok(None);
    };
    let caller = user_caller(app, user.id, user.name, session_id).await?;
    Ok(Some(Principal::Caller(Arc::new(caller))))
}

/// A browser session for a user who just signed in.
pub async fn session_for(app: &Ctx, user_id: i64, name: &str) -> Result<String> {
    jwt::mint(
        app,
        jwt::BROWSER_AUDIENCE,
        user_id,
        name,
        &uuid::Uuid::new_v4().to_string(),
        SESSION_TTL,
    )
    .await
}

/// A cookie's value; an empty one counts as absent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// The session and CSRF cookies of a request, read once per handler.
pub struct Cookies {
    pub csrf: Option<String>,
    pub session: Option<String>,
}

impl Cookies {
    pub fn read(headers: &HeaderMap) -> Cookies {
        Cookies {
            csrf: cookie(headers, CSRF_COOKIE),
            session: cookie(headers, SESSION_COOKIE),
        }
    }

    pub fn values(&self) -> BrowserCookies<'_> {
        BrowserCookies {
            csrf: self.csrf.as_deref(),
            session: self.session.as_deref(),
        }
    }
}

/// Whether browsers reach this server over HTTPS (so its cookies must be `Secure`).
pub fn over_https(app: &Ctx) -> bool {
    app.tls
        || app
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https:"))
}

/// The headers every HTML page carries: never cached, never framed, no referrer (a login
/// page's URL carries the authorization request), no content sniffing, and the page's
/// content security policy.
pub fn page_headers(headers: &mut HeaderMap, csp: &'static str) {
    use axum::http::HeaderValue;
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
}

/// A `Set-Cookie` value; `Secure` whenever browsers reach this server over HTTPS.
pub fn set_cookie(app: &Ctx, name: &str, value: &str, max_age: chrono::Duration) -> String {
    cookie::Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(over_https(app))
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age.num_seconds()))
        .build()
        .to_string()
}

/// The `Set-Cookie` a new CSRF token needs, if it is new.
pub fn csrf_cookie(app: &Ctx, csrf: &CsrfToken) -> Vec<String> {
    if csrf.fresh {
        vec![set_cookie(app, CSRF_COOKIE, &csrf.value, SESSION_TTL)]
    } else {
        Vec::new()
    }
}
