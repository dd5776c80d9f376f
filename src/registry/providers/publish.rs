//! Publishing a provider release: goreleaser's artifacts arrive one by one, packages go to
//! the blob store as they arrive (one in memory at a time), and [`Publish::finish`] checks
//! the set as a whole before anything becomes visible.
//!
//! Checks: every zip matches its SHA256SUMS line and every line names an uploaded file; the
//! detached signature over SHA256SUMS verifies against a key registered for the namespace (or
//! Terrace signs, when the namespace lets it); SHA256SUMS reaches Terraform in a form it can
//! read. Any refusal removes the blobs already stored.

use chrono::Utc;
use serde::Serialize;

use super::address::{Artifact, Platform, ProviderType, ProviderVersion, parse_protocols};
use super::package::{PackageInfo, inspect};
use super::sums::Shasums;
use super::{keys, signing, store};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal};
use crate::infra::blob::{BlobKey, BlobKind, PlainBuffer, StoredBlob};
use crate::infra::crypto::sha256_hex;
use crate::names::OrgName;
use crate::registry::Ctx;
use crate::registry::namespace::{self, Namespace};

/// Most package zips one release may have.
pub const MAX_PACKAGES: usize = 64;
/// Largest SHA256SUMS or manifest accepted.
pub const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// Protocols assumed when neither the request nor a manifest names any.
const DEFAULT_PROTOCOLS: &str = "5.0";

struct StagedPackage {
    platform: Platform,
    filename: String,
    size: i64,
    info: PackageInfo,
    blob: StoredBlob,
}

/// A release being received.
pub struct Publish {
    app: Ctx,
    ns: Namespace,
    kind: ProviderType,
    version: ProviderVersion,
    actor: String,
    protocols: Option<Vec<String>>,
    packages: Vec<StagedPackage>,
    shasums: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
    manifest: Option<Vec<u8>>,
}

/// What was published.
#[derive(Debug, Serialize)]
pub struct Published {
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub protocols: Vec<String>,
    pub platforms: Vec<PublishedPackage>,
    /// Key ID of the signature Terraform will check.
    pub signed_by: String,
    /// Whether Terrace made that signature.
    pub server_signed: bool,
}

#[derive(Debug, Serialize)]
pub struct PublishedPackage {
    pub os: String,
    pub arch: String,
    pub filename: String,
    pub shasum: String,
}

impl Publish {
    /// Authorizes a publish of `namespace/type` `version` and refuses an existing version early.
    pub async fn begin(
        app: &Ctx,
        principal: &Principal,
        org: &OrgName,
        kind: &ProviderType,
        version: &str,
    ) -> Result<Publish> {
        let ns = namespace::resolve_item(
            app,
            principal,
            Action::RegistryPublish,
            org.as_str(),
            namespace::Item::Provider {
                name: kind.as_str(),
            },
        )
        .await?;
        let version = ProviderVersion::parse(version)?;
        if store::version_exists(&app.db, ns.org_id, kind.as_str(), &version.to_string()).await? {
            return Err(Error::conflict(format!(
                "version {version} of provider {}/{} already exists",
                ns.name,
                kind.as_str()
            )));
        }
        Ok(Publish {
            app: app.clone(),
            ns,
            kind: kind.clone(),
            version,
            actor: principal.actor(),
            protocols: None,
            packages: Vec::new(),
            shasums: None,
            signature: None,
            manifest: None,
        })
    }

    /// Recognises an uploaded file by name, refusing unknown names and duplicates.
    pub fn recognise(&self, filename: &str) -> Result<Artifact> {
        let artifact = Artifact::recognise(filename, &self.kind, &self.version)?;
        let duplicate = match &artifact {
            Artifact::Package(p) => self.packages.iter().any(|s| &s.platform == p),
            Artifact::Shasums => self.shasums.is_some(),
            Artifact::Signature => self.signature.is_some(),
            Artifact::Manifest => self.manifest.is_some(),
        };
        if duplicate {
            return Err(Error::invalid(format!("{filename} was uploaded twice")));
        }
        if matches!(artifact, Artifact::Package(_)) && self.packages.len() >= MAX_PACKAGES {
            return Err(Error::invalid(format!(
                "a release may have at most {MAX_PACKAGES} packages"
            )));
        }
        Ok(artifact)
    }

    /// The size cap for `artifact`.
    pub fn limit(&self, artifact: &Artifact) -> u64 {
        match artifact {
            Artifact::Package(_) => self.app.max_body_size,
            Artifact::Signature => keys::MAX_SIGNATURE_SIZE as u64,
            Artifact::Shasums | Artifact::Manifest => MAX_SMALL_FILE,
        }
    }

    /// Sets the `protocols` field (`5.0`, or a comma-separated list).
    pub fn set_protocols(&mut self, text: &str) -> Result<()> {
        self.protocols = Some(parse_protocols(text)?);
        Ok(())
    }

    /// Checks a package zip and stores it.
    pub async fn add_package(
        &mut self,
        filename: &str,
        platform: Platform,
        buf: PlainBuffer,
    ) -> Result<()> {
        let name = filename.to_string();
        let kind = self.kind.as_str().to_string();
        let (buf, info) = tokio::task::spawn_blocking(move || {
            let info = inspect(&name, buf.plaintext(), &kind);
            (buf, info)
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("package check: {e}")))?;
        let info = info?;
        let size = buf.len() as i64;
        let key = BlobKey::new(BlobKind::Provider, self.ns.org_id);
        let blob = self.app.blobs.put(key, buf).await?;
        self.packages.push(StagedPackage {
            platform,
            filename: filename.to_string(),
            size,
            info,
            blob,
        });
        Ok(())
    }

    /// Keeps SHA256SUMS, its signature or the manifest.
    pub fn add_small(&mut self, artifact: Artifact, bytes: Vec<u8>) {
        match artifact {
            Artifact::Shasums => self.shasums = Some(bytes),
            Artifact::Signature => self.signature = Some(bytes),
            Artifact::Manifest => self.manifest = Some(bytes),
            Artifact::Package(_) => {}
        }
    }

    /// Removes what was stored for a release that will not be published.
    pub async fn abort(self) {
        for package in &self.packages {
            self.app.blobs.discard(&package.blob).await;
        }
    }

    /// Checks the release as a whole and records it; on refusal every stored blob is removed
    /// (kept when the database may have recorded the release after all: the sweep removes
    /// them if it did not).
    pub async fn finish(self) -> Result<Published> {
        let mut extra = Vec::new();
        let result = self.finish_inner(&mut extra).await;
        match &result {
            Err(err) if err.may_have_committed() => {
                tracing::warn!("keeping the blobs of a release that may have been recorded");
            }
            Err(_) => {
                for blob in &extra {
                    self.app.blobs.discard(blob).await;
                }
                self.abort().await;
            }
            Ok(_) => {}
        }
        result
    }

    async fn finish_inner(&self, stored: &mut Vec<StoredBlob>) -> Result<Published> {
        let sums_name = super::address::shasums_filename(&self.kind, &self.version);
        let original = self
            .shasums
            .as_deref()
            .ok_or_else(|| Error::invalid(format!("the release has no {sums_name} file")))?;
        if self.packages.is_empty() {
            return Err(Error::invalid("the release has no package zips"));
        }
        let sums = Shasums::parse(original)?;
        self.check_sums(&sums)?;
        let protocols = self.protocols()?;

        let (stored_sums, signature, signed_by, server_signed) =
            self.signed_shasums(original, &sums).await?;
        let sums_sha = sha256_hex(&stored_sums);
        let sig_sha = sha256_hex(&signature);
        let (sums_len, sig_len) = (stored_sums.len() as i64, signature.len() as i64);
        let org = self.ns.org_id;
        let sums_blob = self
            .put(BlobKey::new(BlobKind::Provider, org), &stored_sums)
            .await?;
        stored.push(sums_blob.clone());
        let sig_blob = self
            .put(BlobKey::new(BlobKind::Provider, org), &signature)
            .await?;
        stored.push(sig_blob.clone());

        let version = self.version.to_string();
        let protocols_text = protocols.join(",");
        let release = store::NewRelease {
            org_id: org,
            name: self.kind.as_str(),
            version: &version,
            protocols: &protocols_text,
            shasums: store::NewBlob {
                blob: &sums_blob,
                size: sums_len,
                sha256: &sums_sha,
            },
            signature: store::NewBlob {
                blob: &sig_blob,
                size: sig_len,
                sha256: &sig_sha,
            },
            signed_by: &signed_by,
            packages: self
                .packages
                .iter()
                .map(|p| store::NewPackage {
                    os: &p.platform.os,
                    arch: &p.platform.arch,
                    filename: &p.filename,
                    sha256: &p.info.sha256,
                    h1: &p.info.h1,
                    file: store::NewBlob {
                        blob: &p.blob,
                        size: p.size,
                        sha256: &p.info.sha256,
                    },
                })
                .collect(),
            created_by: &self.actor,
        };
        store::record_release(&self.app.db, &release, Utc::now()).await?;
        let mut platforms: Vec<PublishedPackage> = self
            .packages
            .iter()
            .map(|p| PublishedPackage {
                os: p.platform.os.clone(),
                arch: p.platform.arch.clone(),
                filename: p.filename.clone(),
                shasum: p.info.sha256.clone(),
            })
            .collect();
        platforms.sort_by(|a, b| (&a.os, &a.arch).cmp(&(&b.os, &b.arch)));
        Ok(Published {
            namespace: self.ns.name.clone(),
            kind: self.kind.as_str().to_string(),
            version,
            protocols,
            platforms,
            signed_by,
            server_signed,
        })
    }

    async fn put(&self, key: BlobKey, bytes: &[u8]) -> Result<StoredBlob> {
        self.app
            .blobs
            .put(key, PlainBuffer::from_plaintext(bytes))
            .await
    }

    /// Every zip matches its line; every line names an uploaded file.
    fn check_sums(&self, sums: &Shasums) -> Result<()> {
        for package in &self.packages {
            let listed = sums.hash_of(&package.filename).ok_or_else(|| {
                Error::invalid(format!("SHA256SUMS has no line for {}", package.filename))
            })?;
            if listed != package.info.sha256 {
                return Err(Error::invalid(format!(
                    "{} does not match SHA256SUMS: the file's SHA-256 is {}, SHA256SUMS says {listed}",
                    package.filename, package.info.sha256
                )));
            }
        }
        let manifest_name = format!(
            "terraform-provider-{}_{}_manifest.json",
            self.kind.as_str(),
            self.version
        );
        for name in sums.filenames() {
            if self.packages.iter().any(|p| p.filename == name) {
                continue;
            }
            if name == manifest_name
                && let Some(manifest) = &self.manifest
            {
                let actual = sha256_hex(manifest);
                if sums.hash_of(name) != Some(actual.as_str()) {
                    return Err(Error::invalid(format!(
                        "{name} does not match SHA256SUMS: the file's SHA-256 is {actual}"
                    )));
                }
                continue;
            }
            return Err(Error::invalid(format!(
                "SHA256SUMS lists {name}, which was not uploaded; upload every file it lists"
            )));
        }
        Ok(())
    }

    /// The `protocols` field, else the manifest's `protocol_versions`, else 5.0.
    fn protocols(&self) -> Result<Vec<String>> {
        if let Some(protocols) = &self.protocols {
            return Ok(protocols.clone());
        }
        if let Some(manifest) = &self.manifest {
            let value: serde_json::Value = serde_json::from_slice(manifest)
                .map_err(|_| Error::invalid("the manifest is not JSON"))?;
            if let Some(list) = value["metadata"]["protocol_versions"].as_array() {
                let text: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
                return parse_protocols(&text.join(","));
            }
        }
        parse_protocols(DEFAULT_PROTOCOLS)
    }

    /// Chooses the SHA256SUMS bytes to serve and their signature: the uploaded pair when
    /// Terraform can read it, else the canonical form signed by Terrace (if allowed).
    /// Returns (bytes, signature, signer key ID, signed by Terrace).
    async fn signed_shasums(
        &self,
        original: &[u8],
        sums: &Shasums,
    ) -> Result<(Vec<u8>, Vec<u8>, String, bool)> {
        let problems = sums.unusable_lines();
        match &self.signature {
            Some(signature) => {
                let rows = store::all_keys(&self.app.db, self.ns.org_id).await?;
                let keys: Vec<_> = rows
                    .iter()
                    .filter_map(|row| keys::parse_stored(&row.ascii_armor))
                    .collect();
                let signer = keys::verify_detached(signature, original, &keys)?;
                if problems.is_empty() {
                    return Ok((original.to_vec(), signature.clone(), signer, false));
                }
                if !self.ns.server_signing {
                    return Err(Error::invalid(format!(
                        "SHA256SUMS cannot be served as signed: {}. Rewriting it would break \
                         the signature; regenerate it with `sha256sum` (no -b) and sign again, \
                         or enable server-side signing for the namespace",
                        problems.join("; ")
                    )));
                }
                self.server_sign(sums).await
            }
            None if self.ns.server_signing => self.server_sign(sums).await,
            None => Err(Error::invalid(format!(
                "the release has no {}.sig: upload a binary detached signature \
                 (gpg --detach-sign) by a registered key, or enable server-side signing with \
                 PATCH /api/v1/orgs/{}/registry {{\"server_signing\": true}}",
                super::address::shasums_filename(&self.kind, &self.version),
                self.ns.name
            ))),
        }
    }

    async fn server_sign(&self, sums: &Shasums) -> Result<(Vec<u8>, Vec<u8>, String, bool)> {
        let key = signing::namespace_key(&self.app, &self.ns).await?;
        let canonical = sums.canonical().to_vec();
        let signature = signing::sign_detached(&key, &canonical)?;
        let key_id = keys::key_id_hex(&pgp::types::KeyDetails::legacy_key_id(&key.primary_key));
        Ok((canonical, signature, key_id, true))
    }
}
