//! Team management API: `/api/v1/orgs/{org}/teams…` (org admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::TeamUpdate;
use crate::error::Result;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::Ctx;
use crate::identity::auth::{Principal, Role};
use crate::names::{OrgName, TeamName, UserName};
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    let team = "/api/v1/orgs/{org}/teams/{team}";
    Router::new()
        .route(
            "/api/v1/orgs/{org}/teams",
            get(list_teams).post(create_team),
        )
        .route(
            team,
            get(show_team)
                .put(put_team)
                .patch(update_team)
                .delete(delete_team),
        )
        .route(&format!("{team}/members"), get(list_members))
        .route(
            &format!("{team}/members/{{user}}"),
            put(add_member).delete(remove_member),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    name: String,
    #[serde(default)]
    role: Option<Role>,
}

fn team_names(org: &str, team: &str) -> Result<(OrgName, TeamName)> {
    Ok((OrgName::parse(org)?, TeamName::parse(team)?))
}

async fn create_team(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<CreateTeam>,
) -> Result<Response> {
    let (org, name) = team_names(&org, &request.name)?;
    let team = super::create_team(&app, &principal, &org, &name, request.role).await?;
    Ok((StatusCode::CREATED, Json(team)).into_response())
}

async fn list_teams(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(super::list_teams(&app, &principal, &org, page.validate()?).await?).into_response())
}

async fn show_team(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    Ok(Json(super::show_team(&app, &principal, &org, &team).await?).into_response())
}

async fn update_team(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiJson(update): ApiJson<TeamUpdate>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    Ok(Json(super::update_team(&app, &principal, &org, &team, update).await?).into_response())
}

/// `PUT …/teams/{team}`: creates the team if needed and sets `role` and `idp_groups`.
async fn put_team(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiJson(update): ApiJson<TeamUpdate>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    Ok(Json(super::put_team(&app, &principal, &org, &team, update).await?).into_response())
}

async fn delete_team(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    super::delete_team(&app, &principal, &org, &team).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_members(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    let page = page.validate()?;
    Ok(Json(super::list_members(&app, &principal, &org, &team, page).await?).into_response())
}

async fn add_member(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team, user)): ApiPath<(String, String, String)>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    let user = UserName::parse(&user)?;
    super::add_member(&app, &principal, &org, &team, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_member(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, team, user)): ApiPath<(String, String, String)>,
) -> Result<Response> {
    let (org, team) = team_names(&org, &team)?;
    let user = UserName::parse(&user)?;
    super::remove_member(&app, &principal, &org, &team, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
