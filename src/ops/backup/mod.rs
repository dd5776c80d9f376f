//! `terrace backup` and `terrace restore`: a consistent, restorable snapshot of one
//! installation, taken while the server runs.
//!
//! A backup lives in a local directory or under a prefix of an object store (S3, Azure Blob,
//! GCS) and holds
//! - `metadata/<table>.jsonl`: every row of every table, one JSON object per line, columns by
//!   name (bytes as base64, times as RFC 3339), read inside one read-only transaction;
//! - `objects/<object_key>`: the encrypted objects of the blobs in that snapshot, byte for byte
//!   (their data keys are wrapped in the `blobs` rows, so nothing is decrypted);
//! - `manifest.json`, written last: format, origin, row counts, blob totals and the ids of the
//!   master keys the data needs. Master keys themselves are never written.
//!
//! The tables and their columns come from the database's catalogue (`schema.rs`), so the
//! migrations stay the only description of the schema.
//!
//! Every file is written once and never overwritten, the manifest last: a target without a
//! manifest is an unfinished backup, and restore refuses it.

mod dump;
mod location;
mod restore;
mod schema;
mod values;

use anyhow::{Context, bail, ensure};
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

pub use dump::backup;
pub use location::Location;
pub use restore::restore;

/// Identifies a Terrace backup manifest.
pub const FORMAT: &str = "terrace-backup";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub created_at: String,
    /// `sqlite` or `postgres`: where the backup was taken.
    pub database: String,
    /// The latest applied migration of the origin; restore needs the same schema.
    pub schema_version: i64,
    /// Rows per table, in an order that satisfies foreign keys on insert.
    pub tables: Vec<TableCount>,
    pub blobs: BlobTotals,
    /// Master key ids the data needs (blob data keys and login-token signing keys). The keys
    /// themselves are never part of a backup.
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobTotals {
    /// Blobs whose objects were copied.
    pub count: u64,
    /// Bytes of those (encrypted) objects.
    pub bytes: u64,
    /// Blob ids whose objects had gone from the store when they were copied (deleted after
    /// the metadata snapshot); their rows are in the backup, their objects are not.
    pub missing_objects: Vec<String>,
}

const MANIFEST: &str = "manifest.json";

/// Reads a backup's manifest, checking its format.
pub async fn read_manifest(from: &Location) -> anyhow::Result<Manifest> {
    manifest_of(&from.open()?, from).await
}

async fn manifest_of(source: &location::Target, from: &Location) -> anyhow::Result<Manifest> {
    let Some(text) = source
        .get(&ObjectPath::from(MANIFEST))
        .await
        .with_context(|| format!("reading {MANIFEST} of {from}"))?
    else {
        bail!("{from} has no {MANIFEST}: not a backup, or an unfinished one")
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{MANIFEST} of {from} is not a backup manifest"))?;
    ensure!(
        manifest.format == FORMAT,
        "{MANIFEST} of {from} is not a Terrace backup manifest"
    );
    ensure!(
        manifest.format_version == FORMAT_VERSION,
        "backup format version {} is not supported (this build reads {FORMAT_VERSION})",
        manifest.format_version
    );
    Ok(manifest)
}

/// `metadata/<table>.jsonl` (the catalogue reader admits only plain table names).
fn metadata_location(table: &str) -> ObjectPath {
    ObjectPath::from(format!("metadata/{table}.jsonl"))
}

/// The local file of a table's rows in a metadata directory.
fn metadata_file(dir: &std::path::Path, table: &str) -> std::path::PathBuf {
    dir.join(format!("{table}.jsonl"))
}

/// `objects/<object_key>`, refusing keys that would leave the `objects/` directory.
fn object_location(object_key: &str) -> anyhow::Result<ObjectPath> {
    for part in object_key.split('/') {
        ensure!(
            !part.is_empty() && part != "." && part != ".." && !part.contains('\\'),
            "unexpected object key {object_key:?}"
        );
    }
    Ok(ObjectPath::from(format!("objects/{object_key}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_stay_inside_the_objects_directory() {
        assert_eq!(
            object_location("state/1/abc").unwrap().as_ref(),
            "objects/state/1/abc"
        );
        for bad in [
            "../x",
            "state/../../x",
            "/abs",
            "a//b",
            "a/./b",
            "",
            "a\\..\\b",
        ] {
            assert!(object_location(bad).is_err(), "{bad}");
        }
    }
}
