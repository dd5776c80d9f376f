//! `/oauth/authorize` (browser pages), `/oauth/token` (the CLI's code exchange) and
//! `/invite/{secret}`: reading forms and cookies, answering with pages, redirects and JSON.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::service::{
    self as login, Accepted, AuthorizePage, AuthzParams, PasswordChoice, Submission, Submitted,
    TokenRequest,
};
use super::sso::{self, CallbackParams, Finished, Started};
use super::views::{self, TokenResponse};
use crate::error::{Error, Result};
use crate::http::extract::{ApiPath, PeerAddr};
use crate::identity::Ctx;
use crate::identity::browser::{Cookies, SESSION_COOKIE, cookie, csrf_cookie, set_cookie};

/// The `state` of a single sign-on in progress, binding the callback to this browser.
const SSO_COOKIE: &str = "terrace_sso_state";

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route(
            "/oauth/authorize",
            get(authorize_page).post(authorize_submit),
        )
        .route("/oauth/token", post(token))
        .route("/oauth/sso/start", get(sso_start))
        .route("/oauth/sso/callback", get(sso_callback))
        .route("/invite/{secret}", get(invite_page).post(invite_submit))
}

fn bad_request(message: &str) -> Response {
    views::error(StatusCode::BAD_REQUEST, "Cannot sign in", message)
}

/// `GET /oauth/authorize`: the login form, or the consent page for a signed-in browser.
async fn authorize_page(
    State(app): State<Ctx>,
    headers: HeaderMap,
    Query(params): Query<AuthzParams>,
) -> Result<Response> {
    let cookies = Cookies::read(&headers);
    Ok(
        match login::authorize_page(&app, &params, cookies.values()).await? {
            AuthorizePage::Refused(message) => bad_request(message),
            AuthorizePage::SignIn { csrf } => views::login_form(
                StatusCode::OK,
                &params,
                &csrf.value,
                None,
                &csrf_cookie(&app, &csrf),
                &login::sign_in_options(&app),
            ),
            AuthorizePage::Consent { csrf, user } => {
                views::consent(&params, &csrf.value, &user, &csrf_cookie(&app, &csrf))
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct AuthorizeForm {
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
async fn authorize_submit(
    State(app): State<Ctx>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    form: std::result::Result<Form<AuthorizeForm>, FormRejection>,
) -> Result<Response> {
    let Ok(Form(form)) = form else {
        return Ok(bad_request("the form could not be read"));
    };
    let submission = Submission {
        params: form.params,
        csrf: form.csrf,
        username: form.username,
        password: form.password,
        decision: form.decision,
    };
    let cookies = Cookies::read(&headers);
    let options = login::sign_in_options(&app);
    let again = |status, message: &str| {
        views::login_form(
            status,
            &submission.params,
            &submission.csrf,
            Some(message),
            &[],
            &options,
        )
    };
    Ok(
        match login::submit(&app, &submission, cookies.values(), peer).await? {
            Submitted::Refused(message) => bad_request(message),
            Submitted::FormExpired => views::error(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from this page or has expired. Go back, reload the \
                 page and try again.",
            ),
            Submitted::SessionExpired => again(
                StatusCode::UNAUTHORIZED,
                "Your session has expired. Sign in again.",
            ),
            Submitted::Limited(secs) => {
                let mut response = again(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("Too many sign-in attempts. Try again in {secs} seconds."),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
            Submitted::InvalidCredentials => {
                again(StatusCode::UNAUTHORIZED, "Invalid user name or password.")
            }
            Submitted::PasswordsOff => again(
                StatusCode::FORBIDDEN,
                "Password sign-in is turned off here. Use single sign-on.",
            ),
            Submitted::Redirect { url, session } => redirect_with_session(&app, &url, session),
        },
    )
}

fn redirect_with_session(app: &Ctx, url: &str, session: Option<String>) -> Response {
    let mut response = Redirect::to(url).into_response();
    if let Some(session) = session {
        let value = set_cookie(app, SESSION_COOKIE, &session, login::SESSION_TTL);
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The single sign-on cookie: `Lax`, because the issuer's redirect back is a cross-site
/// navigation, which `Strict` cookies do not follow; scoped to the callback's path.
fn sso_cookie(app: &Ctx, value: &str, max_age: chrono::Duration) -> String {
    cookie::Cookie::build((SSO_COOKIE, value))
        .path("/oauth/sso")
        .http_only(true)
        .secure(crate::identity::browser::over_https(app))
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age.num_seconds()))
        .build()
        .to_string()
}

fn sso_unavailable(message: &str) -> Response {
    views::error(
        StatusCode::BAD_GATEWAY,
        "Single sign-on is unavailable",
        &format!(
            "{message}. Try again later; administrators can still sign in with their Terrace \
             password."
        ),
    )
}

/// `GET /oauth/sso/start`: to the identity provider. With login.v1 parameters (from the
/// "Sign in with …" link of `/oauth/authorize`), the sign-in ends in `terraform login`'s code.
async fn sso_start(
    State(app): State<Ctx>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Query(params): Query<AuthzParams>,
) -> Result<Response> {
    let resume = (!params.redirect_uri.is_empty()).then_some(&params);
    Ok(
        match sso::start(&app, resume, &app.base_url(&headers), peer).await? {
            Started::Refused(message) => bad_request(&message),
            Started::Limited(secs) => {
                let mut response = views::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many sign-in attempts",
                    &format!("Try again in {secs} seconds."),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                response
            }
            Started::Unavailable(message) => sso_unavailable(&message),
            Started::Redirect { url, state } => {
                let mut response = Redirect::to(&url).into_response();
                let cookie = sso_cookie(&app, &state, chrono::Duration::minutes(10));
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
                response
            }
        },
    )
}

/// `GET /oauth/sso/callback`: the identity provider sends the browser back with a code.
async fn sso_callback(
    State(app): State<Ctx>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Result<Response> {
    let state = cookie(&headers, SSO_COOKIE);
    let base_url = app.base_url(&headers);
    let mut response = match sso::callback(&app, &params, state.as_deref(), &base_url).await? {
        Finished::Refused(message) => bad_request(&message),
        Finished::Failed(message) => {
            views::error(StatusCode::UNAUTHORIZED, "Cannot sign in", &message)
        }
        Finished::Unavailable(message) => sso_unavailable(&message),
        Finished::SignedIn {
            user,
            session,
            next,
        } => match next {
            Some(Submitted::Redirect { url, .. }) => {
                redirect_with_session(&app, &url, Some(session))
            }
            Some(_) => bad_request("the terraform login request can no longer be continued"),
            None => {
                let value = set_cookie(&app, SESSION_COOKIE, &session, login::SESSION_TTL);
                views::signed_in(&user, &[value])
            }
        },
    };
    // A state is good once: forget it whatever happened.
    let clear = sso_cookie(&app, "", chrono::Duration::zero());
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
}

/// `POST /oauth/token`: exchanges a code and its PKCE verifier for a login token.
async fn token(
    State(app): State<Ctx>,
    form: std::result::Result<Form<TokenForm>, FormRejection>,
) -> Result<Response> {
    let Ok(Form(form)) = form else {
        return Err(Error::OAuth(
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        ));
    };
    let issued = login::exchange(
        &app,
        TokenRequest {
            grant_type: form.grant_type,
            code: form.code,
            code_verifier: form.code_verifier,
            client_id: form.client_id,
            redirect_uri: form.redirect_uri,
        },
    )
    .await?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(TokenResponse {
            access_token: issued.access_token,
            token_type: "bearer",
            expires_in: issued.expires_in,
        }),
    )
        .into_response())
}

fn invitation_not_found() -> Response {
    views::error(
        StatusCode::NOT_FOUND,
        "Invitation not found",
        "This invitation link is unknown, already used or expired. Ask an administrator for a \
         new one.",
    )
}

/// `GET /invite/{secret}`: the form where an invited user chooses a password.
async fn invite_page(
    State(app): State<Ctx>,
    headers: HeaderMap,
    ApiPath(secret): ApiPath<String>,
) -> Result<Response> {
    let Some(invitee) = login::invitation(&app, &secret).await? else {
        return Ok(invitation_not_found());
    };
    let csrf = login::csrf_token(Cookies::read(&headers).values())?;
    Ok(views::invite_form(
        StatusCode::OK,
        &invitee.name,
        &csrf.value,
        None,
        &csrf_cookie(&app, &csrf),
    ))
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /invite/{secret}`: the chosen password.
async fn invite_submit(
    State(app): State<Ctx>,
    headers: HeaderMap,
    ApiPath(secret): ApiPath<String>,
    form: std::result::Result<Form<InviteForm>, FormRejection>,
) -> Result<Response> {
    // An unknown link answers the same whatever was posted to it.
    let Some(invitee) = login::invitation(&app, &secret).await? else {
        return Ok(invitation_not_found());
    };
    let Ok(Form(form)) = form else {
        return Ok(views::error(
            StatusCode::BAD_REQUEST,
            "Cannot set password",
            "the form could not be read",
        ));
    };
    let choice = PasswordChoice {
        csrf: form.csrf,
        password: form.password,
        confirm: form.confirm,
    };
    let cookies = Cookies::read(&headers);
    Ok(
        match login::accept_invitation(&app, &invitee, &choice, cookies.values()).await? {
            Accepted::FormExpired => views::error(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from this page or has expired. Reload it and try again.",
            ),
            Accepted::Rejected(problem) => views::invite_form(
                StatusCode::BAD_REQUEST,
                &invitee.name,
                &choice.csrf,
                Some(&problem),
                &[],
            ),
            Accepted::PasswordSet => views::invite_done(&invitee.name),
        },
    )
}
