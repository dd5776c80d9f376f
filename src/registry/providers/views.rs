//! Wire types of the provider registry: the protocol's answers and the key API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::store;

/// A registered key as the management API shows it.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub fingerprint: String,
    pub ascii_armor: String,
    /// `uploaded`, or `terrace` for the namespace's server-side signing key.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<store::KeyRow> for KeyView {
    fn from(row: store::KeyRow) -> Self {
        KeyView {
            key_id: row.key_id,
            fingerprint: row.fingerprint,
            ascii_armor: row.ascii_armor,
            source: row.source,
            created_at: row.created_at,
            created_by: row.created_by,
        }
    }
}

/// `GET …/versions`: `{"versions": [{"version", "protocols", "platforms"}]}`.
#[derive(Debug, Serialize)]
pub struct VersionList {
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Serialize)]
pub struct VersionEntry {
    pub version: String,
    pub protocols: Vec<String>,
    pub platforms: Vec<PlatformEntry>,
}

#[derive(Debug, Serialize)]
pub struct PlatformEntry {
    pub os: String,
    pub arch: String,
}

/// `GET …/{version}/download/{os}/{arch}`, exactly as Terraform reads it.
#[derive(Debug, Serialize)]
pub struct Download {
    pub protocols: Vec<String>,
    pub os: String,
    pub arch: String,
    pub filename: String,
    pub download_url: String,
    pub shasums_url: String,
    pub shasums_signature_url: String,
    pub shasum: String,
    pub signing_keys: SigningKeys,
}

#[derive(Debug, Serialize)]
pub struct SigningKeys {
    pub gpg_public_keys: Vec<GpgPublicKey>,
}

#[derive(Debug, Serialize)]
pub struct GpgPublicKey {
    pub key_id: String,
    pub ascii_armor: String,
    /// Must stay empty: Terraform checks a non-empty one against HashiCorp's partner key.
    pub trust_signature: String,
    pub source: String,
    pub source_url: Option<String>,
}

/// A hosted package as the network mirror lists it.
pub struct MirrorArchive {
    pub key: String,
    pub filename: String,
    pub blob_id: String,
    pub hashes: Vec<String>,
}
