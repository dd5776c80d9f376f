//! The pages' routes: sessions from cookies, forms with their CSRF token, errors as pages.

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Ctx;
use super::service;
use super::views::{self, Layout};
use crate::error::Error;
use crate::http::extract::PeerAddr;
use crate::identity::auth::Principal;
use crate::identity::browser::{self, Cookies, CsrfToken, SESSION_COOKIE, csrf_cookie, set_cookie};
use crate::identity::login::{self, SignIn};
use crate::names::{OrgName, WorkspaceName};
use crate::registry::modules::{ModuleAddress, ModuleVersion};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/", get(home))
        .route("/ui", get(|| async { Redirect::to("/") }))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/sign-out", post(sign_out))
        .route("/ui/orgs/{org}/workspaces", get(workspaces))
        .route("/ui/orgs/{org}/workspaces/{ws}", get(workspace))
        .route("/ui/orgs/{org}/workspaces/{ws}/diff", get(diff))
        .route("/ui/orgs/{org}/workspaces/{ws}/unlock", post(unlock))
        .route(
            "/ui/orgs/{org}/workspaces/{ws}/versions/{serial}/download",
            get(download),
        )
        .route(
            "/ui/orgs/{org}/workspaces/{ws}/versions/{serial}/rollback",
            get(rollback_page).post(rollback),
        )
        .route("/ui/modules", get(modules))
        .route("/ui/modules/{namespace}/{name}/{system}", get(module))
}

/// An error as a page: what the API says in JSON, said in words.
struct PageError {
    error: Error,
    layout: Layout,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let (title, message) = match &self.error {
            Error::NotFound(what) => (
                "Not found".to_string(),
                format!("There is no such {what}, or you may not see it."),
            ),
            Error::Internal(_) | Error::Unavailable(_) => {
                // The details are in the log, with the request id.
                tracing::error!(error = %self.error, "a page failed");
                (
                    "Something went wrong".to_string(),
                    "The server could not answer. Try again in a moment.".to_string(),
                )
            }
            Error::Forbidden => (
                "Not allowed".to_string(),
                "You may not do this here; an administrator of the organization may.".to_string(),
            ),
            Error::Unprocessable(messages) => ("That did not work".to_string(), messages.join(" ")),
            other => ("That did not work".to_string(), other.to_string()),
        };
        let page = views::ErrorPage {
            layout: self.layout,
            title,
            message,
        };
        views::render(status, &page, &[])
    }
}

/// The signed-in viewer of a page, with the CSRF token its forms carry. A browser without a
/// session is sent to the sign-in page, and back here after it.
struct Viewer {
    principal: Principal,
    name: String,
    csrf: CsrfToken,
}

impl Viewer {
    fn layout(&self) -> Layout {
        Layout {
            user: Some(self.name.clone()),
            csrf: self.csrf.value.clone(),
        }
    }

    fn fail(&self, error: Error) -> PageError {
        PageError {
            error,
            layout: self.layout(),
        }
    }

    /// The double-submit check of a form: its token is this browser's CSRF cookie.
    fn check(&self, form: &CsrfForm) -> Result<(), PageError> {
        let cookies = browser::BrowserCookies {
            csrf: (!self.csrf.fresh).then_some(self.csrf.value.as_str()),
            session: None,
        };
        if !browser::csrf_ok(cookies, &form.csrf) {
            return Err(self.fail(Error::invalid(
                "the form has expired; go back, reload the page and try again",
            )));
        }
        Ok(())
    }
}

impl FromRequestParts<Ctx> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Ctx) -> Result<Self, Self::Rejection> {
        let cookies = Cookies::read(&parts.headers);
        let csrf = browser::csrf_token(cookies.values()).map_err(|e| {
            PageError {
                error: e,
                layout: anonymous(String::new()),
            }
            .into_response()
        })?;
        let principal = browser::principal(app.identity(), cookies.values())
            .await
            .map_err(|e| {
                PageError {
                    error: e,
                    layout: anonymous(csrf.value.clone()),
                }
                .into_response()
            })?;
        let Some(principal) = principal else {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let to = format!(
                "/ui/sign-in?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            return Err(Redirect::to(&to).into_response());
        };
        crate::infra::notes::note_actor(principal.actor(), principal.token_id());
        let name = principal.actor().trim_start_matches("user:").to_string();
        Ok(Viewer {
            principal,
            name,
            csrf,
        })
    }
}

fn anonymous(csrf: String) -> Layout {
    Layout { user: None, csrf }
}

/// Only a path on this site: no scheme, no host, no `//`, no backslash, no whitespace or
/// control characters (browsers drop tabs and newlines, so `/\t/host` would become `//host`):
/// an open redirect otherwise.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.chars().all(|c| c.is_ascii_graphic() && c != '\\') =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

async fn style() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        views::STYLE,
    )
        .into_response()
}

async fn home(State(app): State<Ctx>, viewer: Viewer) -> Response {
    let page = views::Home {
        orgs: service::orgs(&viewer.principal),
        layout: viewer.layout(),
    };
    views::render(StatusCode::OK, &page, &csrf_cookie_of(&app, &viewer))
}

/// A fresh CSRF token is set as a cookie with the page whose forms carry it.
fn csrf_cookie_of(app: &Ctx, viewer: &Viewer) -> Vec<String> {
    csrf_cookie(app.identity(), &viewer.csrf)
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_page(
    State(app): State<Ctx>,
    headers: axum::http::HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    let cookies = Cookies::read(&headers);
    let csrf = match browser::csrf_token(cookies.values()) {
        Ok(csrf) => csrf,
        Err(error) => {
            return PageError {
                error,
                layout: anonymous(String::new()),
            }
            .into_response();
        }
    };
    let page = views::SignIn {
        layout: anonymous(csrf.value.clone()),
        next: local_path(query.next.as_deref()),
        error: None,
        passwords: login::sign_in_options(app.identity()).passwords,
    };
    views::render(StatusCode::OK, &page, &csrf_cookie(app.identity(), &csrf))
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn sign_in(
    State(app): State<Ctx>,
    headers: axum::http::HeaderMap,
    PeerAddr(peer): PeerAddr,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let cookies = Cookies::read(&headers);
    let identity = app.identity();
    let again = |status: StatusCode, message: &str, csrf: &str, next: String| {
        let page = views::SignIn {
            layout: anonymous(csrf.to_string()),
            next,
            error: Some(message.to_string()),
            passwords: login::sign_in_options(identity).passwords,
        };
        views::render(status, &page, &[])
    };
    let Some(csrf) = cookies.csrf.clone() else {
        // No cookie yet: a new form, with one.
        return Redirect::to("/ui/sign-in").into_response();
    };
    let Ok(Form(form)) = form else {
        return again(
            StatusCode::BAD_REQUEST,
            "The form was not readable.",
            &csrf,
            "/".into(),
        );
    };
    let next = local_path(form.next.as_deref());
    if !browser::csrf_ok(cookies.values(), &form.csrf) {
        return again(
            StatusCode::BAD_REQUEST,
            "The form has expired. Please sign in again.",
            &csrf,
            next,
        );
    }
    match login::password_sign_in(identity, &form.username, &form.password, peer).await {
        Ok(SignIn::SignedIn { session, .. }) => {
            let cookie = set_cookie(identity, SESSION_COOKIE, &session, browser::SESSION_TTL);
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Ok(SignIn::InvalidCredentials) => again(
            StatusCode::UNAUTHORIZED,
            "The user name or password is wrong.",
            &csrf,
            next,
        ),
        Ok(SignIn::Limited(secs)) => again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many attempts. Try again in {secs} seconds."),
            &csrf,
            next,
        ),
        Ok(SignIn::PasswordsOff) => again(
            StatusCode::FORBIDDEN,
            "Password sign-in is turned off for this account.",
            &csrf,
            next,
        ),
        Err(error) => PageError {
            error,
            layout: anonymous(csrf),
        }
        .into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(State(app): State<Ctx>, viewer: Viewer, Form(form): Form<CsrfForm>) -> Response {
    if let Err(e) = viewer.check(&form) {
        return e.into_response();
    }
    let cookie = set_cookie(app.identity(), SESSION_COOKIE, "", chrono::Duration::zero());
    let mut response = Redirect::to("/ui/sign-in").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
}

fn org_name(viewer: &Viewer, org: &str) -> Result<OrgName, PageError> {
    OrgName::parse(org).map_err(|_| viewer.fail(Error::NotFound("organization")))
}

fn names(viewer: &Viewer, org: &str, ws: &str) -> Result<(OrgName, WorkspaceName), PageError> {
    let org = org_name(viewer, org)?;
    let ws = WorkspaceName::parse(ws).map_err(|_| viewer.fail(Error::NotFound("workspace")))?;
    Ok((org, ws))
}

async fn workspaces(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path(org): Path<String>,
    Query(query): Query<CursorQuery>,
) -> Result<Response, PageError> {
    let org = org_name(&viewer, &org)?;
    let page = service::workspaces(&app, &viewer.principal, &org, query.cursor)
        .await
        .map_err(|e| viewer.fail(e))?;
    let page = views::Workspaces::new(viewer.layout(), org.to_string(), page);
    Ok(views::render(
        StatusCode::OK,
        &page,
        &csrf_cookie_of(&app, &viewer),
    ))
}

async fn workspace(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path((org, ws)): Path<(String, String)>,
    Query(query): Query<CursorQuery>,
) -> Result<Response, PageError> {
    let (org, ws) = names(&viewer, &org, &ws)?;
    let page = service::workspace(&app, &viewer.principal, &org, &ws, query.cursor)
        .await
        .map_err(|e| viewer.fail(e))?;
    let cost = service::cost_history(&app, &viewer.principal, &org, &ws)
        .await
        .map_err(|e| viewer.fail(e))?;
    let page = views::Workspace::new(viewer.layout(), org.to_string(), page, cost);
    Ok(views::render(
        StatusCode::OK,
        &page,
        &csrf_cookie_of(&app, &viewer),
    ))
}

#[derive(Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
}

async fn diff(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path((org, ws)): Path<(String, String)>,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let (org, ws) = names(&viewer, &org, &ws)?;
    let Ok(Query(query)) = query else {
        return Err(viewer.fail(Error::invalid("choose two serials to compare")));
    };
    let diff = service::diff(&app, &viewer.principal, &org, &ws, query.from, query.to)
        .await
        .map_err(|e| viewer.fail(e))?;
    let page = views::Diff::new(
        viewer.layout(),
        org.to_string(),
        ws.to_string(),
        (query.from, query.to),
        diff,
    );
    Ok(views::render(
        StatusCode::OK,
        &page,
        &csrf_cookie_of(&app, &viewer),
    ))
}

async fn download(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path((org, ws, serial)): Path<(String, String, i64)>,
) -> Result<Response, PageError> {
    let (org, ws) = names(&viewer, &org, &ws)?;
    let bytes = service::download(&app, &viewer.principal, &org, &ws, serial)
        .await
        .map_err(|e| viewer.fail(e))?;
    let disposition = format!("attachment; filename=\"{ws}-{serial}.tfstate\"");
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

async fn unlock(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path((org, ws)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let (org, ws) = names(&viewer, &org, &ws)?;
    viewer.check(&form)?;
    service::force_unlock(&app, &viewer.principal, &org, &ws)
        .await
        .map_err(|e| viewer.fail(e))?;
    Ok(Redirect::to(&format!("/ui/orgs/{org}/workspaces/{ws}")).into_response())
}

async fn rollback_page(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path((org, ws, serial)): Path<(String, String, i64)>,
) -> Result<Response, PageError> {
    let (org, ws) = names(&viewer, &org, &ws)?;
    // Only someone who may roll back is asked to confirm, and only for a version that exists.
    service::rollback_target(&app, &viewer.principal, &org, &ws, serial)
        .await
        .map_err(|e| viewer.fail(e))?;
    let back = format!("/ui/orgs/{org}/workspaces/{ws}");
    let confirm = views::Confirm {
        layout: viewer.layout(),
        title: format!("Roll {ws} back to serial {serial}?"),
        message: format!(
            "The content of serial {serial} becomes the newest version, with the next serial. \
             Every version stays in the history; the next terraform apply starts from this one."
        ),
        action: format!("{back}/versions/{serial}/rollback"),
        button: "Roll back".into(),
        back,
    };
    Ok(views::render(
        StatusCode::OK,
        &confirm,
        &csrf_cookie_of(&app, &viewer),
    ))
}

async fn rollback(
    State(app): State<Ctx>,
    viewer: Viewer,
    Path((org, ws, serial)): Path<(String, String, i64)>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let (org, ws) = names(&viewer, &org, &ws)?;
    viewer.check(&form)?;
    service::rollback(&app, &viewer.principal, &org, &ws, serial)
        .await
        .map_err(|e| viewer.fail(e))?;
    Ok(Redirect::to(&format!("/ui/orgs/{org}/workspaces/{ws}")).into_response())
}

#[derive(Deserialize)]
struct ModulesQuery {
    q: Option<String>,
    offset: Option<i64>,
}

async fn modules(
    State(app): State<Ctx>,
    viewer: Viewer,
    query: Result<Query<ModulesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Ok(Query(query)) = query else {
        return Err(viewer.fail(Error::invalid("the page number is not a number")));
    };
    let list = service::modules(&app, &viewer.principal, query.q.as_deref(), query.offset)
        .await
        .map_err(|e| viewer.fail(e))?;
    let page = views::Modules::new(viewer.layout(), query.q.unwrap_or_default(), list);
    Ok(views::render(
        StatusCode::OK,
        &page,
        &csrf_cookie_of(&app, &viewer),
    ))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<String>,
}

async fn module(
    State(app): State<Ctx>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    Path((namespace, name, system)): Path<(String, String, String)>,
    Query(query): Query<VersionQuery>,
) -> Result<Response, PageError> {
    let addr = ModuleAddress::lookup(&namespace, &name, &system)
        .map_err(|_| viewer.fail(Error::NotFound("module")))?;
    let version = match query.version.as_deref().filter(|v| !v.is_empty()) {
        Some(text) => Some(ModuleVersion::parse(text).map_err(|e| viewer.fail(e))?),
        None => None,
    };
    let detail = service::module(&app, &viewer.principal, &addr, version.as_ref())
        .await
        .map_err(|e| viewer.fail(e))?;
    // Terraform's module source names the registry host, without a scheme.
    let base = app.state.base_url(&headers);
    let host = base.split_once("://").map_or(base.as_str(), |(_, h)| h);
    let page = views::Module::new(viewer.layout(), host, detail);
    Ok(views::render(
        StatusCode::OK,
        &page,
        &csrf_cookie_of(&app, &viewer),
    ))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_paths_on_this_site_are_followed_after_sign_in() {
        for ok in ["/", "/ui/orgs/acme/workspaces?cursor=abc"] {
            assert_eq!(local_path(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/x",
            "https://x",
            "x",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
