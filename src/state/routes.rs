//! Terraform's `http` backend protocol: GET, POST/PUT, DELETE, LOCK and UNLOCK on one URL,
//! and POST/DELETE on `…/lock` for clients configured GitLab-style.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;

use super::lock::MAX_LOCK_BODY;
use super::service;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::names::{OrgName, WorkspaceName};
use crate::server::body::{read_small_body, read_state_body};
use crate::server::extract::{ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    // LOCK and UNLOCK are extension methods, so both paths take any method and dispatch here.
    Router::new()
        .route("/state/{org}/{workspace}", any(state_endpoint))
        .route("/state/{org}/{workspace}/lock", any(lock_endpoint))
}

#[derive(Debug, Deserialize)]
struct WriteParams {
    /// Terraform appends `?ID=<lock id>` to writes made under a lock.
    #[serde(rename = "ID")]
    id: Option<String>,
}

fn names(org: &str, workspace: &str) -> Result<(OrgName, WorkspaceName)> {
    Ok((OrgName::parse(org)?, WorkspaceName::parse(workspace)?))
}

async fn state_endpoint(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath((org, workspace)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<WriteParams>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (org, ws) = names(&org, &workspace)?;
    match method.as_str() {
        "GET" | "HEAD" => read_state(&app, &principal, &org, &ws).await,
        // update_method is configurable; POST is the default and PUT is common.
        "POST" | "PUT" => {
            let body = read_state_body(&headers, body, app.max_body_size).await?;
            let lock_id = params.id.as_deref().filter(|id| !id.is_empty());
            service::write_state(&app, &principal, &org, &ws, body, lock_id).await?;
            Ok(StatusCode::OK.into_response())
        }
        "DELETE" => {
            service::delete_state(&app, &principal, &org, &ws).await?;
            Ok(StatusCode::OK.into_response())
        }
        "LOCK" => lock(&app, &principal, &org, &ws, &headers, body).await,
        "UNLOCK" => unlock(&app, &principal, &org, &ws, &headers, body).await,
        _ => Err(Error::MethodNotAllowed),
    }
}

async fn lock_endpoint(
    State(app): State<AppState>,
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
    app: &AppState,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Response> {
    match service::read_state(app, principal, org, ws).await? {
        Some(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response()),
        // Terraform reads 404 as "no state yet".
        None => Err(Error::NotFound("state")),
    }
}

// Terraform accepts only 200 for LOCK and UNLOCK (201 and 204 count as failures).
async fn lock(
    app: &AppState,
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
    app: &AppState,
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
