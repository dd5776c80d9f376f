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

use std::ops::Deref;
use std::sync::Arc;

use crate::error::Result;
use crate::http::extract::{ApiJson, ApiPath};
use crate::identity::auth::{Action, Principal};
use crate::infra::AppState;
use crate::infra::cache::TtlCache;
use crate::infra::counts::PendingCounts;
use crate::names::OrgName;

/// The registry's state: identity (to authenticate), its caches, download counts not yet
/// written, and the mirror's owner.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub identity: crate::identity::Ctx,
    /// Registry namespaces by name (`None`: no such namespace).
    pub namespaces: Arc<TtlCache<String, Option<namespace::Namespace>>>,
    /// Sorted module versions by (org id, name, system), for the protocol's hottest read.
    pub module_versions: Arc<TtlCache<(i64, String, String), Arc<modules::SortedVersions>>>,
    /// Module downloads not yet written, by version blob id.
    pub module_downloads: Arc<PendingCounts<String>>,
    /// Provider downloads not yet written, by package id.
    pub provider_downloads: Arc<PendingCounts<i64>>,
    /// The org whose admins manage the provider mirror.
    pub mirror_org: Option<String>,
}

/// Cache names, for invalidations.
pub const NAMESPACE_CACHE: &str = "namespaces";
pub const MODULE_VERSION_CACHE: &str = "module_versions";

impl Ctx {
    pub fn new(identity: &crate::identity::Ctx, mirror_org: Option<String>) -> Ctx {
        Ctx {
            namespaces: identity.caches.register(NAMESPACE_CACHE, 1_000),
            module_versions: identity.caches.register(MODULE_VERSION_CACHE, 10_000),
            module_downloads: Arc::default(),
            provider_downloads: Arc::default(),
            identity: identity.clone(),
            mirror_org,
        }
    }
}

impl Deref for Ctx {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.identity.app
    }
}

impl crate::identity::HasIdentity for Ctx {
    fn identity(&self) -> &crate::identity::Ctx {
        &self.identity
    }
}

/// Writes the download counts gathered since the last call (a periodic job).
pub async fn flush_download_counts(app: &Ctx) -> Result<()> {
    let modules = modules::flush_downloads(app).await;
    let providers = providers::flush_download_counts(app).await;
    modules.and(providers)
}

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
