//! HTTP only. Terraform's `http` backend protocol: GET, POST/PUT, DELETE, LOCK and UNLOCK on
//! one URL, and POST/DELETE on `…/lock` for clients configured GitLab-style; and the
//! management API for workspaces, state versions and locks (`/api/v1/orgs/{org}/workspaces`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::lock::MAX_LOCK_BODY;
use super::management::{self, Settings};
use super::{Ctx, service};
use crate::error::{Error, Result};
use crate::http::body::{BodyReader, read_small_body};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::auth::Principal;
use crate::infra::blob::Plain;
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    // LOCK and UNLOCK are extension methods, so both paths take any method and dispatch here.
    Router::new()
        .route("/state/{org}/{workspace}", any(state_endpoint))
        .route("/state/{org}/{workspace}/lock", any(lock_endpoint))
        .merge(api_routes())
}

fn names(org: &str, workspace: &str) -> Result<(OrgName, WorkspaceName)> {
    Ok((OrgName::parse(org)?, WorkspaceName::parse(workspace)?))
}

#[derive(Debug, Deserialize)]
struct WriteParams {
    /// Terraform appends `?ID=<lock id>` to writes made under a lock.
    #[serde(rename = "ID")]
    id: Option<String>,
}

async fn state_endpoint(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, workspace)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<WriteParams>,
    request: Request,
) -> Result<Response> {
    let (org, ws) = names(&org, &workspace)?;
    // The request taken whole: its headers are moved, not copied, and reads never look at them.
    let (
        Parts {
            method, headers, ..
        },
        body,
    ) = request.into_parts();
    // Every branch but the read is boxed: this future, moved a few times per request, stays
    // as small as a read needs instead of as large as the largest write.
    match method.as_str() {
        "GET" | "HEAD" => read_state(&app, &principal, &org, &ws).await,
        // update_method is configurable; POST is the default and PUT is common.
        "POST" | "PUT" => {
            Box::pin(async {
                let body = BodyReader::new(&headers, body, app.max_body_size)?;
                let lock_id = params.id.as_deref().filter(|id| !id.is_empty());
                service::write_state(&app, &principal, &org, &ws, body, lock_id).await?;
                Ok(StatusCode::OK.into_response())
            })
            .await
        }
        "DELETE" => {
            Box::pin(service::delete_state(&app, &principal, &org, &ws)).await?;
            Ok(StatusCode::OK.into_response())
        }
        "LOCK" => Box::pin(lock(&app, &principal, &org, &ws, &headers, body)).await,
        "UNLOCK" => Box::pin(unlock(&app, &principal, &org, &ws, &headers, body)).await,
        _ => Err(Error::MethodNotAllowed),
    }
}

async fn lock_endpoint(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, workspace)): ApiPath<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (org, ws) = names(&org, &workspace)?;
    match method.as_str() {
        "POST" | "LOCK" => lock(&app, &principal, &org, &ws, &headers, body).await,
        "DELETE" | "UNLOCK" => unlock(&app, &principal, &org, &ws, &headers, body).await,
        _ => Err(Error::MethodNotAllowed),
    }
}

async fn read_state(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Response> {
    match service::send_state(app, principal, org, ws).await? {
        Some(Plain::Whole(bytes)) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
        }
        Some(Plain::Stream { len, chunks }) => Ok((
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::CONTENT_LENGTH, len.to_string()),
            ],
            Body::from_stream(chunks),
        )
            .into_response()),
        // Terraform reads 404 as "no state yet".
        None => Err(Error::NotFound("state")),
    }
}

// Terraform accepts only 200 for LOCK and UNLOCK (201 and 204 count as failures).
async fn lock(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let body = read_small_body(headers, body, MAX_LOCK_BODY).await?;
    service::acquire_lock(app, principal, org, ws, &body).await?;
    Ok(StatusCode::OK.into_response())
}

async fn unlock(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let body = read_small_body(headers, body, MAX_LOCK_BODY).await?;
    service::release_lock(app, principal, org, ws, &body).await?;
    Ok(StatusCode::OK.into_response())
}

// Management API.

fn api_routes() -> Router<Ctx> {
    let ws = "/api/v1/orgs/{org}/workspaces/{workspace}";
    Router::new()
        .route("/api/v1/orgs/{org}/workspaces", get(list_workspaces))
        .route(ws, get(show_workspace).patch(update_workspace))
        .route(
            &format!("{ws}/state-versions"),
            get(list_versions).post(upload_version),
        )
        .route(
            &format!("{ws}/state-versions/{{serial}}"),
            get(download_version).delete(delete_versions),
        )
        .route(
            &format!("{ws}/state-versions/{{serial}}/rollback"),
            post(rollback),
        )
        .route(&format!("{ws}/lock"), get(show_lock).delete(force_unlock))
}

#[derive(Deserialize)]
struct WsPath {
    org: String,
    workspace: String,
}

#[derive(Deserialize)]
struct VersionPath {
    org: String,
    workspace: String,
    serial: i64,
}

#[derive(Deserialize)]
struct UploadParams {
    #[serde(rename = "ID")]
    id: Option<String>,
}

async fn list_workspaces(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let list = management::list_workspaces(&app, &principal, &org, page.validate_keyed()?).await?;
    Ok(Json(list).into_response())
}

async fn show_workspace(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    Ok(Json(management::workspace(&app, &principal, &org, &ws).await?).into_response())
}

async fn update_workspace(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
    ApiJson(settings): ApiJson<Settings>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    Ok(
        Json(management::update_settings(&app, &principal, &org, &ws, settings).await?)
            .into_response(),
    )
}

async fn list_versions(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let list =
        management::list_versions(&app, &principal, &org, &ws, page.validate_keyed()?).await?;
    Ok(Json(list).into_response())
}

async fn upload_version(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let body = BodyReader::new(&headers, body, app.max_body_size)?;
    let lock_id = params.id.as_deref().filter(|id| !id.is_empty());
    let version = management::upload(&app, &principal, &org, &ws, body, lock_id).await?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

async fn download_version(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<VersionPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let bytes = management::read_version(&app, &principal, &org, &ws, p.serial).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

async fn delete_versions(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<VersionPath>,
) -> Result<Response> {
    let (org, ws) = names(&path.org, &path.workspace)?;
    let deleted =
        super::deletion::delete_versions(&app, &principal, &org, &ws, path.serial).await?;
    Ok(Json(deleted).into_response())
}

async fn rollback(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<VersionPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let version = management::rollback(&app, &principal, &org, &ws, p.serial).await?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

async fn show_lock(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    Ok(Json(management::lock_holder(&app, &principal, &org, &ws).await?).into_response())
}

async fn force_unlock(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    management::force_unlock(&app, &principal, &org, &ws).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
