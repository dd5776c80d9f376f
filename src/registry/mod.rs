//! Private registry: remote service discovery, the module and provider registry protocols and
//! the provider network mirror. Namespaces are orgs.

pub mod mirror;
pub mod modules;
pub mod namespace;
pub mod providers;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};

use crate::app::AppState;
use crate::auth::{Action, Principal};
use crate::error::Result;
use crate::names::OrgName;
use crate::server::extract::{ApiJson, ApiPath};

/// Starts the task that writes download counts every [`crate::counts::FLUSH_INTERVAL`].
pub fn spawn_download_flusher(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(crate::counts::FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(err) = modules::flush_downloads(&app).await {
                tracing::warn!(error = %err, "could not flush module download counts; will retry");
            }
            if let Err(err) = providers::flush_download_counts(&app).await {
                tracing::warn!(error = %err, "could not flush provider download counts; will retry");
            }
        }
    })
}

pub fn routes() -> Router<AppState> {
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
async fn discovery(State(app): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "modules.v1": "/v1/modules/",
        "providers.v1": "/v1/providers/",
        "login.v1": app.login.settings.discovery(),
    }))
}

async fn show_namespace(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    let ns = namespace::resolve(&app, &principal, Action::RegistryRead, org.as_str()).await?;
    Ok(Json(ns).into_response())
}

async fn update_namespace(
    State(app): State<AppState>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(changes): ApiJson<namespace::NamespaceSettings>,
) -> Result<Response> {
    let org = OrgName::parse(&org)?;
    Ok(Json(namespace::update(&app, &principal, org.as_str(), changes).await?).into_response())
}
