//! HTTP for the provider network mirror protocol (`/v1/mirror/…`) and mirror uploads
//! (`PUT /api/v1/mirror/…`).
//!
//! Terraform resolves archive URLs against the JSON's URL and sends no credentials when it
//! downloads them, so they are absolute signed links. Every JSON answer is `application/json`
//! (Terraform refuses any other media type).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::service::{self, Origin};
use crate::error::{Error, Result};
use crate::http::body::read_state_body;
use crate::http::extract::ApiPath;
use crate::identity::auth::Principal;
use crate::registry::Ctx;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route(
            "/v1/mirror/{hostname}/{namespace}/{type}/{file}",
            get(mirror_document),
        )
        .route(
            "/api/v1/mirror/{hostname}/{namespace}/{type}/{version}/{platform}",
            put(upload),
        )
}

#[derive(Deserialize)]
struct DocumentPath {
    hostname: String,
    namespace: String,
    #[serde(rename = "type")]
    kind: String,
    file: String,
}

#[derive(Deserialize)]
struct UploadPath {
    hostname: String,
    namespace: String,
    #[serde(rename = "type")]
    kind: String,
    version: String,
    platform: String,
}

#[derive(Serialize)]
struct Index {
    versions: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct VersionDocument {
    archives: BTreeMap<String, ArchiveEntry>,
}

#[derive(Serialize)]
struct ArchiveEntry {
    url: String,
    hashes: Vec<String>,
}

/// The host part of `base_url`, without a default port, as Terraform normalises hostnames.
fn own_host(base_url: &str) -> String {
    let (scheme, rest) = base_url.split_once("://").unwrap_or(("https", base_url));
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    host.strip_suffix(default_port)
        .map(str::to_string)
        .unwrap_or(host)
}

async fn mirror_document(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<DocumentPath>,
    headers: HeaderMap,
) -> Result<Response> {
    let origin = Origin::parse(&p.hostname, &p.namespace, &p.kind)
        .map_err(|_| Error::NotFound("provider"))?;
    let base_url = app.base_url(&headers);
    let own = origin.hostname == own_host(&base_url);
    if p.file == "index.json" {
        let versions = service::versions(&app, &principal, &origin, own).await?;
        let versions = versions
            .into_iter()
            .map(|v| (v, serde_json::Map::new()))
            .collect();
        return Ok(Json(Index { versions }).into_response());
    }
    let version = p
        .file
        .strip_suffix(".json")
        .ok_or(Error::NotFound("mirror document"))?;
    let archives = service::archives(&app, &principal, &origin, own, version).await?;
    let archives = archives
        .into_iter()
        .map(|(key, archive)| {
            let url =
                crate::downloads::signed_url(&app, &base_url, &archive.blob_id, &archive.filename);
            let entry = ArchiveEntry {
                url,
                hashes: archive.hashes,
            };
            (key, entry)
        })
        .collect();
    Ok(Json(VersionDocument { archives }).into_response())
}

async fn upload(
    State(app): State<Ctx>,
    principal: Principal,
    ApiPath(p): ApiPath<UploadPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    // Refuse before reading what may be hundreds of megabytes.
    service::require_uploader(&app, &principal)?;
    let origin = Origin::parse(&p.hostname, &p.namespace, &p.kind)?;
    let received = read_state_body(&headers, body, app.max_body_size).await?;
    let uploaded = service::upload(
        &app,
        &principal,
        &origin,
        &p.version,
        &p.platform,
        received.buf,
    )
    .await?;
    let status = if uploaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(uploaded)).into_response())
}

#[cfg(test)]
mod tests {
    use super::own_host;

    #[test]
    fn own_host_drops_scheme_path_and_default_ports() {
        assert_eq!(
            own_host("https://Terrace.example.com"),
            "terrace.example.com"
        );
        assert_eq!(
            own_host("https://terrace.example.com:443"),
            "terrace.example.com"
        );
        assert_eq!(own_host("https://127.0.0.1:8443"), "127.0.0.1:8443");
        assert_eq!(own_host("http://h:80/base"), "h");
    }
}
