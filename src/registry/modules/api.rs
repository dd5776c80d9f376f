//! Publishing API: `PUT` a `.tar.gz` to `/api/v1/modules/{namespace}/{name}/{system}/{version}`
//! (write role) and `DELETE` a version (admin).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde::Deserialize;

use super::address::{ModuleAddress, ModuleVersion};
use super::service;
use crate::error::Result;
use crate::http::body::read_state_body;
use crate::http::extract::ApiPath;
use crate::identity::auth::Principal;
use crate::registry::Ctx;

pub fn routes() -> Router<Ctx> {
    Router::new().route(
        "/api/v1/modules/{namespace}/{name}/{system}/{version}",
        put(publish_module_version).delete(delete_module_version),
    )
}

#[derive(Deserialize)]
struct VersionPath {
    namespace: String,
    name: String,
    system: String,
    version: String,
}

impl VersionPath {
    fn parse(&self) -> Result<(ModuleAddress, ModuleVersion)> {
        let addr = ModuleAddress::for_publish(&self.namespace, &self.name, &self.system)?;
        Ok((addr, ModuleVersion::parse(&self.version)?))
    }
}

async fn publish_module_version(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<VersionPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let (addr, version) = path.parse()?;
    // Authorize and refuse a duplicate before reading up to the cap.
    let ns = service::prepare_publish(&app, &principal, &addr, &version).await?;
    let body = read_state_body(&headers, body, service::archive_limit(&app)).await?;
    let published =
        service::publish_module_version(&app, &principal, &ns, &addr, &version, body).await?;
    Ok((StatusCode::CREATED, axum::Json(published)).into_response())
}

async fn delete_module_version(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<VersionPath>,
) -> Result<Response> {
    let addr = ModuleAddress::lookup(&path.namespace, &path.name, &path.system)?;
    let version = ModuleVersion::parse(&path.version)?;
    service::delete_module_version(&app, &principal, &addr, &version).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
