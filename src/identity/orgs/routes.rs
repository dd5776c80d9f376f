//! Token management API (`/api/v1/orgs/{org}/tokens`), admin only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};

use serde::Deserialize;

use crate::error::Result;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::Ctx;
use crate::identity::auth::{Principal, Role};
use crate::names::OrgName;
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
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

async fn create_token(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<CreateTokenRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let expires_at = super::expiry_from(request.expires_in.as_deref())?;
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
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(super::list_tokens(&app, &principal, &org, page.validate()?).await?).into_response())
}

async fn revoke_token(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, id)): ApiPath<(String, i64)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    super::revoke_token(&app, &principal, &org, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
