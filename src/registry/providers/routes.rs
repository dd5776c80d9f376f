//! HTTP for providers: the provider registry protocol (`/v1/providers/…`), publishing
//! (`POST /api/v1/providers/{namespace}/{type}/{version}`, multipart) and GPG key management
//! (`/api/v1/orgs/{org}/gpg-keys`).

use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::address::{Artifact, ProviderType};
use super::publish::Publish;
use super::service;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::identity::auth::Principal;
use crate::infra::blob::PlainBuffer;
use crate::names::OrgName;
use crate::pagination::PageRequest;
use crate::registry::Ctx;

/// Largest accepted `protocols` form field.
const MAX_FIELD_SIZE: usize = 256;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route(
            "/v1/providers/{namespace}/{type}/versions",
            get(list_versions),
        )
        .route(
            "/v1/providers/{namespace}/{type}/{version}/download/{os}/{arch}",
            get(find_download),
        )
        .route(
            "/api/v1/providers/{namespace}/{type}/{version}",
            // Package zips are far larger than the JSON body limit; each part has its own cap.
            post(publish).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/orgs/{org}/gpg-keys", get(list_keys).post(add_key))
        .route("/api/v1/orgs/{org}/gpg-keys/{key_id}", delete(delete_key))
}

/// The names of a protocol read, checked here once. A type that cannot exist is simply not
/// found (`missing`), like one that does not.
fn read_names(ns: &str, kind: &str, missing: &'static str) -> Result<(OrgName, ProviderType)> {
    let ns = OrgName::parse(ns)?;
    let kind = ProviderType::parse(kind).map_err(|_| Error::NotFound(missing))?;
    Ok((ns, kind))
}

#[derive(Deserialize)]
struct ProviderPath {
    namespace: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct VersionPath {
    namespace: String,
    #[serde(rename = "type")]
    kind: String,
    version: String,
}

#[derive(Deserialize)]
struct DownloadPath {
    namespace: String,
    #[serde(rename = "type")]
    kind: String,
    version: String,
    os: String,
    arch: String,
}

async fn list_versions(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<ProviderPath>,
) -> Result<Response> {
    let (ns, kind) = read_names(&p.namespace, &p.kind, "provider")?;
    let list = service::list_versions(&app, &principal, &ns, &kind).await?;
    Ok(Json(list).into_response())
}

async fn find_download(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<DownloadPath>,
    headers: HeaderMap,
) -> Result<Response> {
    let base_url = app.base_url(&headers);
    let (ns, kind) = read_names(&p.namespace, &p.kind, "provider package")?;
    let address = (&ns, &kind, p.version.as_str());
    let download =
        service::find_download(&app, &principal, address, &p.os, &p.arch, &base_url).await?;
    Ok(Json(download).into_response())
}

async fn publish(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<VersionPath>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    // Authorization and the version check come before anything about the body.
    let (ns, kind) = (OrgName::parse(&p.namespace)?, ProviderType::parse(&p.kind)?);
    // The version is checked once the caller is authorized, so a stranger learns nothing.
    let mut release = Publish::begin(&app, &principal, &ns, &kind, &p.version).await?;
    let mut multipart = multipart.map_err(|_| {
        Error::invalid("expected a multipart/form-data body with one part per release file")
    })?;
    if let Err(err) = receive(&mut release, &mut multipart).await {
        release.abort().await;
        return Err(err);
    }
    let published = release.finish().await?;
    Ok((StatusCode::CREATED, Json(published)).into_response())
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> Error {
    Error::invalid(format!(
        "could not read the multipart body: {}",
        err.body_text()
    ))
}

/// Reads every part into the release: files by their file name, plus the `protocols` field.
async fn receive(release: &mut Publish, multipart: &mut Multipart) -> Result<()> {
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let field_name = field.name().unwrap_or_default().to_string();
        let filename = field
            .file_name()
            .map(|name| name.rsplit(['/', '\\']).next().unwrap_or(name).to_string());
        let Some(filename) = filename.or_else(|| {
            field_name
                .starts_with("terraform-provider-")
                .then(|| field_name.clone())
        }) else {
            if field_name == "protocols" {
                let text = read_small(&mut field, MAX_FIELD_SIZE as u64, "protocols").await?;
                let text = String::from_utf8(text)
                    .map_err(|_| Error::invalid("protocols must be text such as 5.0"))?;
                release.set_protocols(&text)?;
                continue;
            }
            return Err(Error::invalid(format!(
                "unexpected form field {field_name:?}: send each release file as a file part \
                 named as goreleaser names it, plus an optional protocols field"
            )));
        };
        let artifact = release.recognise(&filename)?;
        let limit = release.limit(&artifact);
        match artifact {
            Artifact::Package(platform) => {
                let mut buf = PlainBuffer::with_capacity(0);
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if (buf.len() + chunk.len()) as u64 > limit {
                        return Err(Error::TooLarge(limit));
                    }
                    buf.extend(&chunk);
                }
                release.add_package(&filename, platform, buf).await?;
            }
            other => {
                let bytes = read_small(&mut field, limit, &filename).await?;
                release.add_small(other, bytes);
            }
        }
    }
    Ok(())
}

async fn read_small(field: &mut Field<'_>, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(Error::invalid(format!(
                "{what} is larger than the limit of {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKeyRequest {
    ascii_armor: String,
}

async fn add_key(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<AddKeyRequest>,
) -> Result<Response> {
    let key = service::add_key(
        &app,
        &principal,
        &OrgName::parse(&org)?,
        &request.ascii_armor,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

async fn list_keys(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageRequest>,
) -> Result<Response> {
    let keys =
        service::list_keys(&app, &principal, &OrgName::parse(&org)?, page.validate()?).await?;
    Ok(Json(keys).into_response())
}

async fn delete_key(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath((org, key_id)): ApiPath<(String, String)>,
) -> Result<Response> {
    service::delete_key(&app, &principal, &OrgName::parse(&org)?, &key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
