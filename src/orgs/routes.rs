//! Token management API (`/api/v1/orgs/{org}/tokens`), admin only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::names::OrgName;
use crate::pagination::PageRequest;
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/orgs/{org}/tokens",
            get(list_tokens).post(create_token),
        )
        .route("/api/v1/orgs/{org}/tokens/{id}", delete(revoke_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    name: String,
    role: Role,
    team: Option<String>,
    scopes: Option<Vec<String>>,
    /// A duration such as `30d` or `12h`.
    expires_in: Option<String>,
}

/// Parses `30d`, `12h`, `90m` into a deadline from now.
pub fn expiry_from(text: Option<&str>) -> Result<Option<chrono::DateTime<Utc>>> {
    let Some(text) = text else { return Ok(None) };
    let duration = humantime::parse_duration(text)
        .map_err(|_| Error::invalid("expires_in must be a duration such as 30d or 12h"))?;
    let duration = chrono::Duration::from_std(duration)
        .map_err(|_| Error::invalid("expires_in is too long"))?;
    Utc::now()
        .checked_add_signed(duration)
        .map(Some)
        .ok_or_else(|| Error::invalid("expires_in is too long"))
}

async fn create_token(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let expires_at = expiry_from(request.expires_in.as_deref())?;
    let spec = super::TokenSpec {
        team: request.team.as_deref(),
        scopes: request.scopes,
        expires_at,
        ..super::TokenSpec::new(&request.name, request.role)
    };
    let created = super::create_token(&app.db, &principal, &org, spec).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_tokens(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(super::list_tokens(&app, &principal, &org, page.validate()?).await?).into_response())
}

async fn revoke_token(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    super::revoke_token(&app, &principal, &org, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
