//! Policy management API: `/api/v1/orgs/{org}/policies…` (org admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::AttachTarget;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::Ctx;
use crate::identity::auth::Principal;
use crate::names::{OrgName, PolicyName, TeamName, UserName};
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    let policy = "/api/v1/orgs/{org}/policies/{policy}";
    Router::new()
        .route(
            "/api/v1/orgs/{org}/policies",
            get(list_policies).post(create_policy),
        )
        .route(
            policy,
            get(show_policy).put(replace_policy).delete(delete_policy),
        )
        .route(
            &format!("{policy}/attachments"),
            get(list_attachments).post(attach),
        )
        .route(&format!("{policy}/attachments/{{id}}"), delete(detach))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePolicy {
    name: String,
    document: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplacePolicy {
    document: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attach {
    team: Option<String>,
    user: Option<String>,
    token: Option<i64>,
}

impl Attach {
    fn target(self) -> Result<AttachTarget> {
        match (self.team, self.user, self.token) {
            (Some(team), None, None) => Ok(AttachTarget::Team(TeamName::parse(&team)?)),
            (None, Some(user), None) => Ok(AttachTarget::User(UserName::parse(&user)?)),
            (None, None, Some(token)) => Ok(AttachTarget::Token(token)),
            _ => Err(Error::invalid(
                "give exactly one of \"team\", \"user\" or \"token\" to attach the policy to",
            )),
        }
    }
}

fn policy_names(org: &str, policy: &str) -> Result<(OrgName, PolicyName)> {
    Ok((OrgName::parse(org)?, PolicyName::parse(policy)?))
}

async fn create_policy(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<CreatePolicy>,
) -> Result<Response> {
    let (org, name) = policy_names(&org, &request.name)?;
    let created = super::create_policy(&app, &principal, &org, &name, &request.document).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list_policies(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let page = page.validate()?;
    Ok(Json(super::list_policies(&app, &principal, &org, page).await?).into_response())
}

async fn show_policy(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, policy)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, policy) = policy_names(&org, &policy)?;
    Ok(Json(super::show_policy(&app, &principal, &org, &policy).await?).into_response())
}

async fn replace_policy(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, policy)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<ReplacePolicy>,
) -> Result<Response> {
    let (org, policy) = policy_names(&org, &policy)?;
    let view = super::replace_document(&app, &principal, &org, &policy, &request.document).await?;
    Ok(Json(view).into_response())
}

async fn delete_policy(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, policy)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, policy) = policy_names(&org, &policy)?;
    super::delete_policy(&app, &principal, &org, &policy).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn attach(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, policy)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<Attach>,
) -> Result<Response> {
    let (org, policy) = policy_names(&org, &policy)?;
    let target = request.target()?;
    let attached = super::attach(&app, &principal, &org, &policy, target).await?;
    Ok((StatusCode::CREATED, Json(attached)).into_response())
}

async fn list_attachments(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, policy)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let (org, policy) = policy_names(&org, &policy)?;
    let page = page.validate()?;
    let list = super::list_attachments(&app, &principal, &org, &policy, page).await?;
    Ok(Json(list).into_response())
}

async fn detach(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, policy, id)): ApiPath<(String, String, i64)>,
) -> Result<Response> {
    let (org, policy) = policy_names(&org, &policy)?;
    super::detach(&app, &principal, &org, &policy, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
