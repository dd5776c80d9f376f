//! Network mirror rules: which archives exist for an origin address, who may read and upload
//! them. No HTTP types here.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Serialize;

use super::store::{self, Address, NewArchive};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource, authorize};
use crate::infra::blob::{BlobKey, BlobKind, PlainBuffer};
use crate::names::OrgName;
use crate::registry::Ctx;
use crate::registry::providers::address::{
    Platform, ProviderType, ProviderVersion, is_label, package_filename,
};
use crate::registry::providers::{package, service as hosted};

/// Blob scope of mirrored archives (they belong to the instance, not to an org).
const MIRROR_SCOPE: i64 = 0;

/// A validated origin address: `hostname/namespace/type`, lowercase.
#[derive(Debug, Clone)]
pub struct Origin {
    pub hostname: String,
    pub namespace: String,
    pub kind: ProviderType,
}

impl Origin {
    pub fn parse(hostname: &str, namespace: &str, kind: &str) -> Result<Origin> {
        let hostname = hostname.to_ascii_lowercase();
        let (host, port) = match hostname.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostname.as_str(), None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|label| is_label(label) && !label.ends_with('-'));
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if !host_ok || !port_ok {
            return Err(Error::invalid(format!("invalid hostname {hostname:?}")));
        }
        let namespace = namespace.to_ascii_lowercase();
        if !is_label(&namespace) {
            return Err(Error::invalid(format!("invalid namespace {namespace:?}")));
        }
        Ok(Origin {
            hostname,
            namespace,
            kind: ProviderType::parse(kind)?,
        })
    }

    fn address(&self) -> Address<'_> {
        Address {
            hostname: &self.hostname,
            namespace: &self.namespace,
            name: self.kind.as_str(),
        }
    }
}

/// Reading mirrored archives needs a token of any org (any role): the mirror serves public
/// providers to the whole instance, but not to anonymous callers.
fn require_reader(app: &Ctx, principal: &Principal) -> Result<()> {
    let owner = app.mirror_org.as_deref();
    authorize(principal, Action::MirrorRead, Resource::Mirror { owner })
}

/// Uploading needs an admin token of the `mirror_org`: what the mirror serves, every org
/// installs.
pub fn require_uploader(app: &Ctx, principal: &Principal) -> Result<()> {
    let owner = app.mirror_org.as_deref();
    authorize(principal, Action::MirrorUpload, Resource::Mirror { owner })
}

/// `index.json`'s versions. `own_host` says whether the origin is this server, whose hosted
/// providers are served with the namespace's own read rules.
pub async fn versions(
    app: &Ctx,
    principal: &Principal,
    origin: &Origin,
    own_host: bool,
) -> Result<Vec<String>> {
    if own_host {
        let ns = OrgName::parse(&origin.namespace)?;
        return hosted::mirror_versions(app, principal, &ns, &origin.kind).await;
    }
    require_reader(app, principal)?;
    let mut versions = store::versions(&app.db, &origin.address()).await?;
    if versions.is_empty() {
        return Err(Error::NotFound("provider"));
    }
    versions.sort_by_key(|v| semver::Version::parse(v).ok());
    Ok(versions)
}

/// One archive in a `{version}.json`.
#[derive(Debug, Clone)]
pub struct Archive {
    pub filename: String,
    pub blob_id: String,
    pub hashes: Vec<String>,
}

/// `{version}.json`'s archives by `os_arch`.
pub async fn archives(
    app: &Ctx,
    principal: &Principal,
    origin: &Origin,
    own_host: bool,
    version: &str,
) -> Result<BTreeMap<String, Archive>> {
    if own_host {
        let ns = OrgName::parse(&origin.namespace)?;
        let list = hosted::mirror_archives(app, principal, &ns, &origin.kind, version).await?;
        return Ok(list
            .into_iter()
            .map(|a| {
                let archive = Archive {
                    filename: a.filename,
                    blob_id: a.blob_id,
                    hashes: a.hashes,
                };
                (a.key, archive)
            })
            .collect());
    }
    require_reader(app, principal)?;
    let version = ProviderVersion::parse(version).map_err(|_| Error::NotFound("version"))?;
    let rows = store::archives(&app.db, &origin.address(), &version.to_string()).await?;
    if rows.is_empty() {
        return Err(Error::NotFound("provider version"));
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let archive = Archive {
                filename: row.filename,
                blob_id: row.blob_id,
                hashes: vec![row.h1, format!("zh:{}", row.sha256)],
            };
            (format!("{}_{}", row.os, row.arch), archive)
        })
        .collect())
}

/// What an upload stored (or found already stored).
#[derive(Debug, Serialize)]
pub struct Uploaded {
    pub hostname: String,
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub os: String,
    pub arch: String,
    pub filename: String,
    pub hashes: Vec<String>,
    /// False when the identical archive was already mirrored (the upload changed nothing).
    pub created: bool,
}

/// Stores a provider archive for `origin` at `version` and `platform`. Uploading the same
/// bytes again is a no-op; different bytes for a mirrored platform are a conflict.
pub async fn upload(
    app: &Ctx,
    principal: &Principal,
    origin: &Origin,
    version: &str,
    platform: &str,
    buf: PlainBuffer,
) -> Result<Uploaded> {
    require_uploader(app, principal)?;
    let version = ProviderVersion::parse(version)?;
    let platform = Platform::parse_pair(platform)?;
    let filename = package_filename(&origin.kind, &version, &platform);
    let result = |row: &store::ArchiveRow, created| Uploaded {
        hostname: origin.hostname.clone(),
        namespace: origin.namespace.clone(),
        kind: origin.kind.as_str().to_string(),
        version: version.to_string(),
        os: platform.os.clone(),
        arch: platform.arch.clone(),
        filename: row.filename.clone(),
        hashes: vec![row.h1.clone(), format!("zh:{}", row.sha256)],
        created,
    };
    let kind = origin.kind.as_str().to_string();
    let name = filename.clone();
    let (buf, info) = tokio::task::spawn_blocking(move || {
        let info = package::inspect(&name, buf.plaintext(), &kind);
        (buf, info)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("package check: {e}")))?;
    let info = info?;
    let address = origin.address();
    let version_text = version.to_string();
    let existing = store::find_archive(
        &app.db,
        &address,
        &version_text,
        &platform.os,
        &platform.arch,
    );
    if let Some(row) = existing.await? {
        if row.sha256 == info.sha256 {
            return Ok(result(&row, false));
        }
        return Err(Error::conflict(format!(
            "{filename} is already mirrored with different contents (SHA-256 {})",
            row.sha256
        )));
    }
    let size = buf.len() as i64;
    let blob = app
        .blobs
        .put(BlobKey::new(BlobKind::Mirror, MIRROR_SCOPE), buf)
        .await?;
    let new = NewArchive {
        address,
        version: &version_text,
        os: &platform.os,
        arch: &platform.arch,
        filename: &filename,
        sha256: &info.sha256,
        h1: &info.h1,
        size,
        blob: &blob,
        created_by: &principal.actor(),
    };
    if let Err(err) = store::insert_archive(&app.db, &new, Utc::now()).await {
        app.blobs.discard_unless_committed(&blob, &err).await;
        return Err(err);
    }
    let row = store::ArchiveRow {
        os: platform.os.clone(),
        arch: platform.arch.clone(),
        filename: filename.clone(),
        sha256: info.sha256,
        h1: info.h1,
        blob_id: blob.id.clone(),
    };
    Ok(result(&row, true))
}
