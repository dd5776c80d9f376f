//! What the login flow answers with: the few HTML pages (every interpolated value is escaped)
//! and the token endpoint's JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use html_escape::encode_double_quoted_attribute as attr;
use html_escape::encode_text as text;
use serde::Serialize;

use super::service::{AuthzParams, SignInOptions};

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;\
padding:0 1rem;color:#1f2328}h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}\
input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#b42318}.muted{color:#59636e}";

/// A page with headers that keep it out of frames and caches and its forms on this site
/// (plus the loopback redirect that finishes `terraform login`).
pub fn page(status: StatusCode, title: &str, body: &str, cookies: &[String]) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{} · Terrace</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        text(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    crate::identity::browser::page_headers(
        headers,
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
         form-action 'self' http://localhost:* http://127.0.0.1:*",
    );
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p>",
        text(title),
        text(message)
    );
    page(status, title, &body, &[])
}

fn hidden_fields(params: &AuthzParams, csrf: &str) -> String {
    let fields = [
        ("client_id", params.client_id.as_str()),
        ("redirect_uri", params.redirect_uri.as_str()),
        ("response_type", params.response_type.as_str()),
        ("state", params.state.as_str()),
        ("code_challenge", params.code_challenge.as_str()),
        (
            "code_challenge_method",
            params.code_challenge_method.as_str(),
        ),
        ("csrf", csrf),
    ];
    fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                attr(value)
            )
        })
        .collect()
}

/// The link that starts a single sign-on for this login.v1 request.
fn sso_link(params: &AuthzParams, label: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &params.client_id)
        .append_pair("redirect_uri", &params.redirect_uri)
        .append_pair("response_type", &params.response_type)
        .append_pair("state", &params.state)
        .append_pair("code_challenge", &params.code_challenge)
        .append_pair("code_challenge_method", &params.code_challenge_method)
        .finish();
    format!(
        "<p><a class=\"sso\" href=\"/oauth/sso/start?{}\">Sign in with {}</a></p>",
        attr(&query),
        text(label)
    )
}

pub fn login_form(
    status: StatusCode,
    params: &AuthzParams,
    csrf: &str,
    error: Option<&str>,
    cookies: &[String],
    options: &SignInOptions,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", text(e)))
        .unwrap_or_default();
    let sso = options
        .sso
        .as_deref()
        .map(|label| sso_link(params, label))
        .unwrap_or_default();
    if !options.passwords {
        let body = format!(
            "<h1>Sign in to Terrace</h1>\
             <p class=\"muted\">Terraform on your computer is asking for an API token.</p>\
             {error}{sso}"
        );
        return page(status, "Sign in", &body, cookies);
    }
    let body = format!(
        "<h1>Sign in to Terrace</h1>\
         <p class=\"muted\">Terraform on your computer is asking for an API token.</p>{error}{sso}\
         <form method=\"post\" action=\"/oauth/authorize\">{}\
         <label for=\"username\">User name</label>\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in and authorize Terraform</button></form>",
        hidden_fields(params, csrf)
    );
    page(status, "Sign in", &body, cookies)
}

pub fn consent(params: &AuthzParams, csrf: &str, user: &str, cookies: &[String]) -> Response {
    let body = format!(
        "<h1>Authorize Terraform</h1>\
         <p>Signed in as <strong>{}</strong>. Terraform on your computer is asking for an API \
         token with your permissions.</p>\
         <form method=\"post\" action=\"/oauth/authorize\">{}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Authorize</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button></form>",
        text(user),
        hidden_fields(params, csrf)
    );
    page(StatusCode::OK, "Authorize Terraform", &body, cookies)
}

pub fn invite_form(
    status: StatusCode,
    user: &str,
    csrf: &str,
    error: Option<&str>,
    cookies: &[String],
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", text(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Welcome to Terrace</h1><p>Choose a password for <strong>{}</strong>.</p>{error}\
         <form method=\"post\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"password\">Password (at least {} characters)</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"confirm\">Repeat it</label>\
         <input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Set password</button></form>",
        text(user),
        attr(csrf),
        crate::identity::auth::password::MIN_LEN
    );
    page(status, "Set your password", &body, cookies)
}

/// A single sign-on that ended here (no `terraform login` to continue).
pub fn signed_in(user: &str, cookies: &[String]) -> Response {
    let body = format!(
        "<h1>Signed in</h1><p>You are signed in to Terrace as <strong>{}</strong>.</p>",
        text(user)
    );
    page(StatusCode::OK, "Signed in", &body, cookies)
}

pub fn invite_done(user: &str) -> Response {
    let body = format!(
        "<h1>Password set</h1><p>You can now sign in as <strong>{}</strong>, for example with \
         <code>terraform login</code>.</p>",
        text(user)
    );
    page(StatusCode::OK, "Password set", &body, &[])
}
