//! Management API for workspaces, state versions and locks (`/api/v1/orgs/{org}/workspaces`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::management::{self, Settings};
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::Result;
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::PageRequest;
use crate::server::body::read_state_body;
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
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

fn names(org: &str, workspace: &str) -> Result<(OrgName, WorkspaceName)> {
    Ok((OrgName::parse(org)?, WorkspaceName::parse(workspace)?))
}

async fn list_workspaces(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let list = management::list_workspaces(&app, &principal, &org, page.validate()?).await?;
    Ok(Json(list).into_response())
}

async fn show_workspace(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    Ok(Json(management::workspace(&app, &principal, &org, &ws).await?).into_response())
}

async fn update_workspace(
    State(app): State<AppState>,
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
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let list = management::list_versions(&app, &principal, &org, &ws, page.validate()?).await?;
    Ok(Json(list).into_response())
}

async fn upload_version(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let body = read_state_body(&headers, body, app.max_body_size).await?;
    let lock_id = params.id.as_deref().filter(|id| !id.is_empty());
    let version = management::upload(&app, &principal, &org, &ws, body, lock_id).await?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

async fn download_version(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<VersionPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let bytes = management::read_version(&app, &principal, &org, &ws, p.serial).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

async fn delete_versions(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(path): ApiPath<VersionPath>,
) -> Result<Response> {
    let (org, ws) = names(&path.org, &path.workspace)?;
    let deleted =
        super::deletion::delete_versions(&app, &principal, &org, &ws, path.serial).await?;
    Ok(Json(deleted).into_response())
}

async fn rollback(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<VersionPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    let version = management::rollback(&app, &principal, &org, &ws, p.serial).await?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

async fn show_lock(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    Ok(Json(management::lock_holder(&app, &principal, &org, &ws).await?).into_response())
}

async fn force_unlock(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(p): ApiPath<WsPath>,
) -> Result<Response> {
    let (org, ws) = names(&p.org, &p.workspace)?;
    management::force_unlock(&app, &principal, &org, &ws).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
