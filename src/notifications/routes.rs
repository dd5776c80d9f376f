//! The notifications API: `/api/v1/orgs/{org}/notifications…` (org admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::Ctx;
use super::service;
use super::views::{NewNotification, NotificationUpdate};
use crate::error::Result;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::auth::Principal;
use crate::names::OrgName;
use crate::pagination::PageRequest;

pub fn routes() -> Router<Ctx> {
    let one = "/api/v1/orgs/{org}/notifications/{name}";
    Router::new()
        .route(
            "/api/v1/orgs/{org}/notifications",
            get(list_notifications).post(create_notification),
        )
        .route(
            one,
            get(show_notification)
                .patch(update_notification)
                .delete(delete_notification),
        )
        .route(&format!("{one}/test"), post(test_notification))
        .route(&format!("{one}/deliveries"), get(list_deliveries))
}

async fn create_notification(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<NewNotification>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let view = service::create(&app, &principal, &org, request).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_notifications(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let list = service::list(&app, &principal, &org, page.validate()?).await?;
    Ok(Json(list).into_response())
}

async fn show_notification(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(service::show(&app, &principal, &org, &name).await?).into_response())
}

async fn update_notification(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
    ApiJson(patch): ApiJson<NotificationUpdate>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let view = service::update(&app, &principal, &org, &name, patch).await?;
    Ok(Json(view).into_response())
}

async fn delete_notification(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    service::delete(&app, &principal, &org, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn test_notification(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let queued = service::test(&app, &principal, &org, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

async fn list_deliveries(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, name)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let list = service::deliveries(&app, &principal, &org, &name, page.validate()?).await?;
    Ok(Json(list).into_response())
}
