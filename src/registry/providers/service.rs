//! Provider registry rules: GPG key management and the two reads of the provider registry
//! protocol. Publishing lives in `publish`. No HTTP types here.

use std::collections::BTreeMap;

use chrono::Utc;

use super::address::{ProviderType, ProviderVersion, shasums_filename};
pub use super::views::{
    Download, GpgPublicKey, KeyView, MirrorArchive, PlatformEntry, SigningKeys, VersionEntry,
    VersionList,
};
use super::{counts, keys, store};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal};
use crate::names::OrgName;
use crate::pagination::{Page, Paginated};
use crate::registry::Ctx;
use crate::registry::namespace::{self, Namespace};

async fn resolve(
    app: &Ctx,
    principal: &Principal,
    action: Action,
    ns: &OrgName,
) -> Result<Namespace> {
    namespace::resolve(app, principal, action, ns.as_str()).await
}

/// Authorizes reading provider `kind`.
async fn resolve_provider(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    kind: &ProviderType,
) -> Result<Namespace> {
    let item = namespace::Item::Provider {
        name: kind.as_str(),
    };
    namespace::resolve_item(app, principal, Action::RegistryRead, ns.as_str(), item).await
}

/// Registers an ASCII-armored public key for the namespace (registry admin).
pub async fn add_key(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    ascii_armor: &str,
) -> Result<KeyView> {
    let ns = resolve(app, principal, Action::RegistryAdmin, ns).await?;
    let key = keys::parse_public_key(ascii_armor)?;
    let armor = ascii_armor.trim().to_string() + "\n";
    let new = store::NewKey {
        org_id: ns.org_id,
        key_id: &key.key_id,
        fingerprint: &key.fingerprint,
        ascii_armor: &armor,
        source: "uploaded",
        created_by: &principal.actor(),
    };
    Ok(store::insert_key(&app.db, &new, Utc::now()).await?.into())
}

/// The namespace's keys, one page.
pub async fn list_keys(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    page: Page,
) -> Result<Paginated<KeyView>> {
    let ns = resolve(app, principal, Action::RegistryRead, ns).await?;
    let rows = store::list_keys(&app.db, ns.org_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(KeyView::from))
}

/// Removes a key. Versions signed by it can no longer be installed until re-signed, which is
/// how a leaked key is revoked. Removing the server signing key makes Terrace generate a new
/// one on next use.
pub async fn delete_key(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    key_id: &str,
) -> Result<()> {
    let ns = resolve(app, principal, Action::RegistryAdmin, ns).await?;
    let key_id = key_id.to_ascii_uppercase();
    if store::delete_key(&app.db, ns.org_id, &key_id).await? {
        Ok(())
    } else {
        Err(Error::NotFound("gpg key"))
    }
}

fn split_protocols(text: &str) -> Vec<String> {
    text.split(',').map(str::to_string).collect()
}

/// Every version of a provider, oldest first, with protocols and platforms.
pub async fn list_versions(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    kind: &ProviderType,
) -> Result<VersionList> {
    let ns = resolve_provider(app, principal, ns, kind).await?;
    let rows = store::list_platforms(&app.db, ns.org_id, kind.as_str())
        .await?
        .ok_or(Error::NotFound("provider"))?;
    let mut by_version: BTreeMap<semver::Version, VersionEntry> = BTreeMap::new();
    for row in rows {
        let Ok(parsed) = semver::Version::parse(&row.version) else {
            continue;
        };
        let entry = by_version.entry(parsed).or_insert_with(|| VersionEntry {
            version: row.version.clone(),
            protocols: split_protocols(&row.protocols),
            platforms: Vec::new(),
        });
        entry.platforms.push(PlatformEntry {
            os: row.os,
            arch: row.arch,
        });
    }
    Ok(VersionList {
        versions: by_version.into_values().collect(),
    })
}

/// Where a package is and how Terraform checks it. Links are signed (Terraform sends no
/// credentials on these downloads) and absolute under `base_url`.
pub async fn find_download(
    app: &Ctx,
    principal: &Principal,
    address: (&OrgName, &ProviderType, &str),
    os: &str,
    arch: &str,
    base_url: &str,
) -> Result<Download> {
    let (ns, kind, version) = address;
    let not_found = || Error::NotFound("provider package");
    let ns = resolve_provider(app, principal, ns, kind).await?;
    let version = ProviderVersion::parse(version).map_err(|_| not_found())?;
    let package = store::find_package(
        &app.db,
        ns.org_id,
        kind.as_str(),
        &version.to_string(),
        os,
        arch,
    )
    .await?
    .ok_or_else(not_found)?;
    let gpg_public_keys = store::all_keys(&app.db, ns.org_id)
        .await?
        .into_iter()
        // Registration admits RSA keys only; re-checked so nothing else can reach Terraform.
        .filter(|row| keys::parse_public_key(&row.ascii_armor).is_ok())
        .map(|row| GpgPublicKey {
            key_id: row.key_id,
            ascii_armor: row.ascii_armor,
            trust_signature: String::new(),
            source: "Terrace".into(),
            source_url: None,
        })
        .collect();
    counts::record(app, package.package_id);
    let sums = shasums_filename(kind, &version);
    let link =
        |blob_id: &str, name: &str| crate::downloads::signed_url(app, base_url, blob_id, name);
    Ok(Download {
        protocols: split_protocols(&package.protocols),
        download_url: link(&package.blob_id, &package.filename),
        shasums_url: link(&package.shasums_blob_id, &sums),
        shasums_signature_url: link(&package.signature_blob_id, &format!("{sums}.sig")),
        os: package.os,
        arch: package.arch,
        filename: package.filename,
        shasum: package.sha256,
        signing_keys: SigningKeys { gpg_public_keys },
    })
}

/// Versions of a hosted provider, for the mirror's `index.json`.
pub async fn mirror_versions(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    kind: &ProviderType,
) -> Result<Vec<String>> {
    let list = list_versions(app, principal, ns, kind).await?;
    Ok(list.versions.into_iter().map(|v| v.version).collect())
}

/// Archives of one hosted version, for the mirror's `{version}.json`.
pub async fn mirror_archives(
    app: &Ctx,
    principal: &Principal,
    ns: &OrgName,
    kind: &ProviderType,
    version: &str,
) -> Result<Vec<MirrorArchive>> {
    let not_found = || Error::NotFound("provider version");
    let ns = resolve_provider(app, principal, ns, kind).await?;
    let version = ProviderVersion::parse(version).map_err(|_| not_found())?;
    let rows =
        store::version_packages(&app.db, ns.org_id, kind.as_str(), &version.to_string()).await?;
    if rows.is_empty() {
        return Err(not_found());
    }
    Ok(rows
        .into_iter()
        .map(|row| MirrorArchive {
            key: format!("{}_{}", row.os, row.arch),
            hashes: vec![row.h1, format!("zh:{}", row.sha256)],
            filename: row.filename,
            blob_id: row.blob_id,
        })
        .collect())
}
