//! The module registry protocol (`modules.v1`, what `terraform init` calls) and the public
//! registry's optional browse endpoints, all under `/v1/modules/`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::address::{ModuleAddress, ModuleName, ModuleVersion, System};
use super::service::{self, ListRequest};
use crate::error::{Error, Result};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::identity::auth::Principal;
use crate::names::OrgName;
use crate::pagination::PageRequest;
use crate::registry::Ctx;

pub fn routes() -> Router<Ctx> {
    let module = "/v1/modules/{namespace}/{name}/{system}";
    Router::new()
        .route("/v1/modules", get(list_modules))
        .route("/v1/modules/", get(list_modules))
        .route("/v1/modules/search", get(search_modules))
        .route("/v1/modules/{namespace}", get(list_namespace))
        .route("/v1/modules/{namespace}/{name}", get(list_module_systems))
        .route(module, get(latest_details))
        .route(&format!("{module}/versions"), get(list_module_versions))
        .route(&format!("{module}/download"), get(download_latest))
        .route(&format!("{module}/{{version}}"), get(version_details))
        .route(
            &format!("{module}/{{version}}/download"),
            get(download_module),
        )
}

#[derive(Deserialize)]
struct ModulePath {
    namespace: String,
    name: String,
    system: String,
}

impl ModulePath {
    fn address(&self) -> Result<ModuleAddress> {
        ModuleAddress::lookup(&self.namespace, &self.name, &self.system)
    }
}

#[derive(Deserialize)]
struct VersionPath {
    namespace: String,
    name: String,
    system: String,
    version: String,
}

impl VersionPath {
    fn address(&self) -> Result<(ModuleAddress, ModuleVersion)> {
        let addr = ModuleAddress::lookup(&self.namespace, &self.name, &self.system)?;
        Ok((addr, ModuleVersion::parse(&self.version)?))
    }
}

/// Query parameters of the list and search endpoints.
#[derive(Debug, Default, Deserialize)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    /// The public registry calls the system "provider".
    provider: Option<String>,
    verified: Option<String>,
    q: Option<String>,
    namespace: Option<String>,
}

impl ListParams {
    /// The filter parameters (not the page) re-encoded, for the `meta` links.
    fn filters_query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("q", &self.q),
            ("namespace", &self.namespace),
            ("provider", &self.provider),
            ("verified", &self.verified),
        ] {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        query.finish()
    }

    fn system(&self) -> Result<Option<String>> {
        self.provider
            .as_deref()
            .map(|p| System::lookup(p).map(|s| s.as_str().to_string()))
            .transpose()
    }

    fn verified_only(&self) -> bool {
        self.verified.as_deref() == Some("true")
    }
}

async fn list(
    app: &Ctx,
    principal: &Principal,
    params: &ListParams,
    namespace: Option<&OrgName>,
    name: Option<&str>,
    path: &str,
) -> Result<Response> {
    let page = PageRequest {
        limit: params.limit,
        offset: params.offset,
        cursor: None,
    }
    .validate()?;
    let system = params.system()?;
    let request = ListRequest {
        namespace,
        name,
        system: system.as_deref(),
        query: params.q.as_deref().filter(|q| !q.trim().is_empty()),
        verified_only: params.verified_only(),
    };
    let list =
        service::list_modules(app, principal, request, page, path, &params.filters_query()).await?;
    Ok(axum::Json(list).into_response())
}

async fn list_modules(
    State(app): State<Ctx>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let namespace = params
        .namespace
        .as_deref()
        .map(OrgName::parse)
        .transpose()?;
    list(
        &app,
        &principal,
        &params,
        namespace.as_ref(),
        None,
        "/v1/modules",
    )
    .await
}

async fn search_modules(
    State(app): State<Ctx>,
    principal: Principal,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    if params.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(Error::invalid("search needs a query: ?q=…"));
    }
    let namespace = params
        .namespace
        .as_deref()
        .map(OrgName::parse)
        .transpose()?;
    let path = "/v1/modules/search";
    list(&app, &principal, &params, namespace.as_ref(), None, path).await
}

async fn list_namespace(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(namespace): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let ns = OrgName::parse(&namespace)?;
    let path = format!("/v1/modules/{ns}");
    list(&app, &principal, &params, Some(&ns), None, &path).await
}

/// The latest version of every system a module name is published for.
async fn list_module_systems(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response> {
    let ns = OrgName::parse(&namespace)?;
    let name = ModuleName::lookup(&name)?;
    let path = format!("/v1/modules/{ns}/{}", name.as_str());
    list(
        &app,
        &principal,
        &params,
        Some(&ns),
        Some(name.as_str()),
        &path,
    )
    .await
}

/// `GET …/versions`: 404 when the module does not exist (Terraform says "Module not found").
async fn list_module_versions(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<ModulePath>,
) -> Result<Response> {
    let addr = path.address()?;
    let json = service::list_module_versions(&app, &principal, &addr).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// `GET …/{version}/download`: 204 with `X-Terraform-Get`, which every Terraform and
/// OpenTofu version accepts. Terraform asks for go-version's normalized form of the version
/// it chose, which is the canonical form stored.
async fn download_module(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<VersionPath>,
    headers: HeaderMap,
) -> Result<Response> {
    let (addr, version) = path.address()?;
    let base_url = app.base_url(&headers);
    let url = service::download_module(&app, &principal, &addr, &version, &base_url).await?;
    let value = HeaderValue::from_str(&url)
        .map_err(|e| Error::Internal(anyhow::anyhow!("download URL is not a header value: {e}")))?;
    Ok((StatusCode::NO_CONTENT, [("x-terraform-get", value)]).into_response())
}

/// `GET …/{system}/download`: a redirect to the latest version's download.
async fn download_latest(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<ModulePath>,
) -> Result<Response> {
    let addr = path.address()?;
    let version = service::latest_version(&app, &principal, &addr).await?;
    let location = format!("/v1/modules/{addr}/{version}/download");
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

async fn latest_details(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<ModulePath>,
) -> Result<Response> {
    let addr = path.address()?;
    let detail = service::module_details(&app, &principal, &addr, None).await?;
    Ok(axum::Json(detail).into_response())
}

async fn version_details(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(path): ApiPath<VersionPath>,
) -> Result<Response> {
    let (addr, version) = path.address()?;
    let detail = service::module_details(&app, &principal, &addr, Some(&version)).await?;
    Ok(axum::Json(detail).into_response())
}
