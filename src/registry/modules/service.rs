//! Module registry rules: who may publish, read and delete; archive checks before anything
//! is stored; which version is latest; what the protocol answers. No HTTP types here.

use std::sync::Arc;

use chrono::Utc;

use super::address::{ModuleAddress, ModuleVersion};
use super::archive;
use super::counts;
use super::metadata::ModuleMetadata;
use super::store::{self, ListFilter, NewVersion, VersionRow};
use super::views::{ModuleDetail, ModuleList, ModuleView, PublishedView, SortedVersions};
use crate::error::{Error, Result};
use crate::http::body::ReceivedBody;
use crate::identity::auth::{Action, Principal};
use crate::infra::blob::{BlobKey, BlobKind};
use crate::infra::cache::Invalidation;
use crate::names::OrgName;
use crate::pagination::Page;
use crate::registry::Ctx;
use crate::registry::namespace::{self, Namespace};

/// The largest archive this server accepts: the module cap, or the body cap when lower.
pub fn archive_limit(app: &Ctx) -> u64 {
    archive::MAX_ARCHIVE_SIZE.min(app.max_body_size)
}

/// Authorizes a publish and refuses an existing version before the body is read.
pub async fn prepare_publish(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: &ModuleVersion,
) -> Result<Namespace> {
    let ns = namespace::resolve_item(
        app,
        principal,
        Action::RegistryPublish,
        addr.namespace.as_str(),
        module_item(addr),
    )
    .await?;
    if find(app, &ns, addr, version).await?.is_some() {
        return Err(already_exists(version));
    }
    Ok(ns)
}

fn already_exists(version: &ModuleVersion) -> Error {
    Error::conflict(format!(
        "version {version} already exists; versions are immutable, publish a new one"
    ))
}

async fn find(
    app: &Ctx,
    ns: &Namespace,
    addr: &ModuleAddress,
    version: &ModuleVersion,
) -> Result<Option<VersionRow>> {
    store::find_version(
        &app.db,
        ns.org_id,
        addr.name.as_str(),
        addr.system.as_str(),
        &version.to_string(),
    )
    .await
}

/// Checks the archive, extracts its metadata, stores it encrypted and records the version.
pub async fn publish_module_version(
    app: &Ctx,
    principal: &Principal,
    ns: &Namespace,
    addr: &ModuleAddress,
    version: &ModuleVersion,
    body: ReceivedBody,
) -> Result<PublishedView> {
    let ReceivedBody { buf, sha256 } = body;
    // Decompression and parsing are CPU work: keep them off the async workers.
    let (buf, metadata) = tokio::task::spawn_blocking(move || {
        let files = archive::inspect(buf.plaintext())?;
        Ok::<_, Error>((buf, ModuleMetadata::extract(&files)))
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("archive inspection panicked: {e}")))??;
    let size = buf.len() as i64;
    let metadata_json = serde_json::to_string(&metadata)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("module metadata")))?;
    let blob = app
        .blobs
        .put(BlobKey::new(BlobKind::Module, ns.org_id), buf)
        .await?;
    let created_by = principal.actor();
    let version_text = version.to_string();
    let inserted = store::insert_version(
        &app.db,
        NewVersion {
            org_id: ns.org_id,
            name: addr.name.as_str(),
            system: addr.system.as_str(),
            version: &version_text,
            blob: &blob,
            sha256: &sha256,
            size,
            description: &metadata.description(),
            metadata: &metadata_json,
            created_by: &created_by,
        },
        Utc::now(),
    )
    .await;
    if let Err(err) = inserted {
        app.blobs.discard_unless_committed(&blob, &err).await;
        return Err(match err {
            Error::Conflict(_) => already_exists(version),
            other => other,
        });
    }
    app.invalidate(Invalidation::key(
        crate::registry::MODULE_VERSION_CACHE,
        &versions_key(ns, addr),
    ))
    .await;
    let row = find(app, ns, addr, version)
        .await?
        .ok_or(Error::NotFound("module version"))?;
    tracing::info!(module = %addr, version = %version, "module version published");
    Ok(PublishedView {
        module: ModuleView::from_version(&row),
        sha256: row.sha256,
        size: row.size,
        root: metadata.root,
        submodules: metadata.submodules,
    })
}

/// Deletes a version (registry admin). Its archive is removed from the blob store.
pub async fn delete_module_version(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: &ModuleVersion,
) -> Result<()> {
    let ns = namespace::resolve_item(
        app,
        principal,
        Action::RegistryAdmin,
        addr.namespace.as_str(),
        module_item(addr),
    )
    .await?;
    let blob = store::delete_version(
        &app.db,
        ns.org_id,
        addr.name.as_str(),
        addr.system.as_str(),
        &version.to_string(),
        Utc::now(),
    )
    .await?
    .ok_or(Error::NotFound("module version"))?;
    app.invalidate(Invalidation::key(
        crate::registry::MODULE_VERSION_CACHE,
        &versions_key(&ns, addr),
    ))
    .await;
    app.blobs.discard(&blob).await;
    tracing::info!(module = %addr, version = %version, actor = %principal.actor(), "module version deleted");
    Ok(())
}

async fn readable(app: &Ctx, principal: &Principal, addr: &ModuleAddress) -> Result<Namespace> {
    namespace::resolve_item(
        app,
        principal,
        Action::RegistryRead,
        addr.namespace.as_str(),
        module_item(addr),
    )
    .await
}

fn module_item(addr: &ModuleAddress) -> namespace::Item<'_> {
    namespace::Item::Module {
        name: addr.name.as_str(),
        system: addr.system.as_str(),
    }
}

fn versions_key(ns: &Namespace, addr: &ModuleAddress) -> (i64, String, String) {
    (
        ns.org_id,
        addr.name.as_str().to_string(),
        addr.system.as_str().to_string(),
    )
}

/// Every version of a module, oldest first (unparsable strings cannot be stored). Cached
/// briefly: this is what every `terraform init` asks first.
async fn sorted_versions(
    app: &Ctx,
    ns: &Namespace,
    addr: &ModuleAddress,
) -> Result<Arc<SortedVersions>> {
    let key = versions_key(ns, addr);
    if let Some(versions) = app.module_versions.get(&key) {
        return Ok(versions);
    }
    let ticket = app.module_versions.ticket();
    // Boxed: the query's future is large, and only a miss needs it.
    let versions = Arc::new(SortedVersions::new(
        Box::pin(load_sorted_versions(app, ns, addr)).await?,
        addr.to_string(),
    ));
    app.module_versions.insert(ticket, key, versions.clone());
    Ok(versions)
}

async fn load_sorted_versions(
    app: &Ctx,
    ns: &Namespace,
    addr: &ModuleAddress,
) -> Result<Vec<String>> {
    let listed = store::list_versions(&app.db, ns.org_id, addr.name.as_str(), addr.system.as_str())
        .await?
        .ok_or(Error::NotFound("module"))?;
    let mut versions: Vec<ModuleVersion> = listed
        .iter()
        .filter_map(|v| ModuleVersion::parse(v).ok())
        .collect();
    versions.sort();
    Ok(versions.iter().map(ToString::to_string).collect())
}

/// Every published version of a module the caller may read, oldest first.
pub async fn module_versions(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
) -> Result<Vec<String>> {
    let ns = readable(app, principal, addr).await?;
    Ok(sorted_versions(app, &ns, addr).await?.list.clone())
}

/// The root configuration of a published version, for features that read more of a module
/// than the registry's metadata keeps (blueprints derive input schemas from it).
#[derive(Debug, Clone, Default)]
pub struct ModuleConfig {
    /// `(file name, text)` of the root's `.tf` files.
    pub tf_files: Vec<(String, String)>,
    /// `(file name, text)` of the root's `.tf.json` files.
    pub tf_json_files: Vec<(String, String)>,
    /// The root `README.md`, empty when there is none.
    pub readme: String,
}

/// Reads one version's archive back and returns its root configuration (read access).
pub async fn module_config(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: &ModuleVersion,
) -> Result<ModuleConfig> {
    let ns = readable(app, principal, addr).await?;
    let blob = store::find_version_blob(
        &app.db,
        ns.org_id,
        addr.name.as_str(),
        addr.system.as_str(),
        &version.to_string(),
    )
    .await?
    .ok_or(Error::NotFound("module version"))?;
    let archive = app.blobs.get(&blob).await?;
    // The archive was checked at publish time; reading it again is CPU work all the same.
    let mut files = tokio::task::spawn_blocking(move || archive::inspect(&archive))
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("archive inspection panicked: {e}")))??;
    let root = files.dirs.remove("").unwrap_or_default();
    Ok(ModuleConfig {
        tf_files: root.tf_files,
        tf_json_files: root.tf_json_files,
        readme: root.readme.unwrap_or_default(),
    })
}

/// The protocol's versions list, as JSON (`views::VersionsResponse`).
pub async fn list_module_versions(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
) -> Result<String> {
    let ns = readable(app, principal, addr).await?;
    let versions = sorted_versions(app, &ns, addr).await?;
    Ok(versions.protocol_json(&addr.to_string()))
}

/// A signed, expiring archive URL for one version. The path ends in `.tar.gz` so that
/// go-getter recognises an archive (it looks at the path, not the query).
pub async fn download_module(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: &ModuleVersion,
    base_url: &str,
) -> Result<String> {
    let ns = readable(app, principal, addr).await?;
    let row = find(app, &ns, addr, version)
        .await?
        .ok_or(Error::NotFound("module version"))?;
    counts::record(app, &row.blob_id);
    let filename = format!("{}-{}-{}.tar.gz", row.name, row.system, row.version);
    Ok(crate::downloads::signed_url(
        app,
        base_url,
        &row.blob_id,
        &filename,
    ))
}

/// Details of one version, or of the latest when `version` is `None`.
pub async fn module_details(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: Option<&ModuleVersion>,
) -> Result<ModuleDetail> {
    let ns = readable(app, principal, addr).await?;
    let row = match version {
        Some(version) => find(app, &ns, addr, version).await?,
        None => {
            store::find_latest(&app.db, ns.org_id, addr.name.as_str(), addr.system.as_str()).await?
        }
    };
    let row = row.ok_or(Error::NotFound("module version"))?;
    let providers = store::list_systems(&app.db, ns.org_id, addr.name.as_str()).await?;
    let versions = sorted_versions(app, &ns, addr).await?;
    Ok(ModuleDetail::new(&row, providers, versions.list.clone()))
}

/// The latest version of a module (for the `…/{system}/download` redirect).
pub async fn latest_version(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
) -> Result<String> {
    let ns = readable(app, principal, addr).await?;
    let row = store::find_latest(&app.db, ns.org_id, addr.name.as_str(), addr.system.as_str())
        .await?
        .ok_or(Error::NotFound("module"))?;
    Ok(row.version)
}

/// What a list or search asks for, besides the page.
#[derive(Debug, Default)]
pub struct ListRequest<'a> {
    pub namespace: Option<&'a OrgName>,
    pub name: Option<&'a str>,
    pub system: Option<&'a str>,
    pub query: Option<&'a str>,
    /// `verified=true`: Terrace verifies nothing, so such a listing is empty.
    pub verified_only: bool,
}

/// A page of the modules the caller may see (their org's and public ones), latest version
/// each. `path` and `query` build the `meta` links.
pub async fn list_modules(
    app: &Ctx,
    principal: &Principal,
    request: ListRequest<'_>,
    page: Page,
    path: &str,
    query: &str,
) -> Result<ModuleList> {
    let mut filter = ListFilter {
        everything: matches!(principal, Principal::System),
        caller_orgs: principal.org_ids_allowing(Action::RegistryRead, "namespace"),
        name: request.name.map(str::to_string),
        system: request.system.map(str::to_string),
        pattern: request.query.map(like_pattern),
        ..ListFilter::default()
    };
    if let Some(namespace) = request.namespace {
        let ns =
            namespace::resolve(app, principal, Action::RegistryRead, namespace.as_str()).await?;
        filter.org_id = Some(ns.org_id);
    }
    let rows = if request.verified_only {
        Vec::new()
    } else {
        store::list_modules(&app.db, &filter, page.fetch_limit(), page.offset).await?
    };
    Ok(ModuleList::new(rows, page, path, query))
}

/// `%text%` for `LIKE … ESCAPE '\'`, lowercase, with the wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(like_pattern(" VPC "), "%vpc%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
