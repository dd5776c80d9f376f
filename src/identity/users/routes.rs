//! User management API: `/api/v1/orgs/{org}/users…` (org admins) and `/api/v1/user…` (the
//! calling user).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::service::{self as users, MemberUpdate};
use crate::error::Result;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::Ctx;
use crate::identity::auth::{Principal, Role};
use crate::names::{OrgName, UserName};
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    let user = "/api/v1/orgs/{org}/users/{user}";
    Router::new()
        .route(
            "/api/v1/orgs/{org}/users",
            get(list_members).post(add_member),
        )
        .route(
            user,
            get(show_member).patch(update_member).delete(remove_member),
        )
        .route(&format!("{user}/tokens"), get(list_member_tokens))
        .route(
            &format!("{user}/tokens/{{id}}"),
            delete(revoke_member_token),
        )
        .route("/api/v1/user", get(me))
        .route("/api/v1/user/password", put(change_password))
        .route("/api/v1/user/tokens", get(list_own_tokens))
        .route("/api/v1/user/tokens/{id}", delete(revoke_own_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    name: String,
    role: Role,
    /// Omitted: the answer carries an invitation link instead.
    password: Option<String>,
}

async fn add_member(
    State(app): State<Ctx>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<AddMember>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let name = UserName::parse(&request.name)?;
    let created = users::add_member(
        &app.db,
        &principal,
        &org,
        &name,
        request.role,
        request.password.as_deref(),
        &app.base_url(&headers),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_members(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(users::list_members(&app, &principal, &org, page.validate()?).await?).into_response())
}

fn member_names(org: &str, user: &str) -> Result<(OrgName, UserName)> {
    Ok((OrgName::parse(org)?, UserName::parse(user)?))
}

async fn show_member(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, user)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, user) = member_names(&org, &user)?;
    Ok(Json(users::show_member(&app, &principal, &org, &user).await?).into_response())
}

async fn update_member(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, user)): ApiPath<(String, String)>,
    ApiJson(update): ApiJson<MemberUpdate>,
) -> Result<Response> {
    let (org, user) = member_names(&org, &user)?;
    Ok(Json(users::update_member(&app, &principal, &org, &user, update).await?).into_response())
}

async fn remove_member(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, user)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, user) = member_names(&org, &user)?;
    users::remove_member(&app, &principal, &org, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_member_tokens(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, user)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let (org, user) = member_names(&org, &user)?;
    let page = page.validate()?;
    Ok(Json(users::list_member_tokens(&app, &principal, &org, &user, page).await?).into_response())
}

async fn revoke_member_token(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, user, id)): ApiPath<(String, String, String)>,
) -> Result<Response> {
    let (org, user) = member_names(&org, &user)?;
    users::revoke_member_token(&app, &principal, &org, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(principal: Principal) -> Result<Response> {
    Ok(Json(users::me(&principal)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(app): State<Ctx>,
    principal: Principal,
    ApiJson(request): ApiJson<PasswordChange>,
) -> Result<Response> {
    users::change_password(
        &app,
        &principal,
        &request.current_password,
        &request.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_own_tokens(
    State(app): State<Ctx>,
    principal: Principal,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    Ok(Json(users::list_own_tokens(&app, &principal, page.validate()?).await?).into_response())
}

async fn revoke_own_token(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    users::revoke_own_token(&app, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
