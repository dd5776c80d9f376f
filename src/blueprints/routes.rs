//! The blueprints API: `/api/v1/orgs/{org}/blueprints…`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::Ctx;
use super::service::{self, ListRequest};
use super::views::{BlueprintUpdate, NewBlueprint, Status};
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::auth::Principal;
use crate::names::{BlueprintName, OrgName};
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    let one = "/api/v1/orgs/{org}/blueprints/{name}";
    Router::new()
        .route(
            "/api/v1/orgs/{org}/blueprints",
            get(list_blueprints).post(create_blueprint),
        )
        .route(
            one,
            get(show_blueprint)
                .patch(update_blueprint)
                .delete(delete_blueprint),
        )
        .route(&format!("{one}/schema"), get(show_schema))
}

fn names(org: &str, name: &str) -> Result<(OrgName, BlueprintName)> {
    Ok((OrgName::parse(org)?, BlueprintName::parse(name)?))
}

async fn create_blueprint(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewBlueprint>,
) -> Result<Response> {
    let (org, name) = names(&org, &request.name)?;
    let base_url = app.base_url(&headers);
    let view = service::create(&app, &principal, &org, &name, request, &base_url).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    category: Option<String>,
    tag: Option<String>,
    status: Option<String>,
    q: Option<String>,
}

async fn list_blueprints(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let page = PageRequest {
        limit: params.limit,
        offset: params.offset,
        cursor: None,
    }
    .validate()?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s)
                .ok_or_else(|| Error::invalid("status must be draft, published or deprecated"))
        })
        .transpose()?;
    fn nonempty(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let request = ListRequest {
        category: nonempty(&params.category),
        tag: nonempty(&params.tag),
        status,
        query: nonempty(&params.q),
    };
    let base_url = app.base_url(&headers);
    let list = service::list(&app, &principal, &org, request, page, &base_url).await?;
    Ok(Json(list).into_response())
}

async fn show_blueprint(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    let (org, name) = names(&org, &name)?;
    let base_url = app.base_url(&headers);
    Ok(Json(service::show(&app, &principal, &org, &name, &base_url).await?).into_response())
}

async fn show_schema(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, name) = names(&org, &name)?;
    Ok(Json(service::input_schema(&app, &principal, &org, &name).await?).into_response())
}

async fn update_blueprint(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<BlueprintUpdate>,
) -> Result<Response> {
    let (org, name) = names(&org, &name)?;
    let base_url = app.base_url(&headers);
    let view = service::update(&app, &principal, &org, &name, patch, &base_url).await?;
    Ok(Json(view).into_response())
}

async fn delete_blueprint(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let (org, name) = names(&org, &name)?;
    service::delete(&app, &principal, &org, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
