//! HTTP only: remote service discovery and the namespace settings API; each protocol's
//! routes live with its slice.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};

use super::{Ctx, mirror, modules, namespace, providers};
use crate::error::Result;
use crate::http::extract::{ApiJson, ApiPath};
use crate::identity::auth::{Action, Principal};
use crate::names::OrgName;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/.well-known/terraform.json", get(discovery))
        .route(
            "/api/v1/orgs/{org}/registry",
            patch(update_namespace).get(show_namespace),
        )
        .merge(modules::routes())
        .merge(providers::routes())
        .merge(mirror::routes())
}

/// Remote service discovery. Paths need the leading `/` (or they resolve under
/// `/.well-known/`) and the trailing `/` (the provider client does not add it).
async fn discovery(State(app): State<Ctx>) -> impl IntoResponse {
    Json(serde_json::json!({
        "modules.v1": "/v1/modules/",
        "providers.v1": "/v1/providers/",
        "login.v1": app.identity.login.settings.discovery(),
    }))
}

async fn show_namespace(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let ns = namespace::resolve(&app, &principal, Action::RegistryRead, org.as_str()).await?;
    Ok(Json(ns).into_response())
}

async fn update_namespace(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(changes): ApiJson<namespace::NamespaceSettings>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(namespace::update(&app, &principal, org.as_str(), changes).await?).into_response())
}
