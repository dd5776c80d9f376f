//! `terrace verify`: every blob the database knows is in the blob store, decrypts with a
//! configured master key, and has the size and SHA-256 recorded when it was written.

use serde::Serialize;

use crate::error::Result;
use crate::infra::blob::{BlobStore, StoredBlob};
use crate::infra::crypto::Envelope;
use crate::infra::db::Db;

/// One blob that failed a check.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub blob_id: String,
    pub object_key: String,
    /// What uses the blob: `state acme/prod v3`, `module version`, …
    pub used_by: String,
    pub problem: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checked: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// Checks every blob, in pages ordered by id (the table's key).
pub async fn verify(db: &Db, blobs: &BlobStore) -> Result<Report> {
    let mut report = Report::default();
    let mut after = String::new();
    loop {
        let rows = super::store::blobs_after(db, &after).await?;
        let Some(last) = rows.last() else {
            return Ok(report);
        };
        after = last.id.clone();
        for row in rows {
            report.checked += 1;
            let blob = StoredBlob {
                id: row.id.clone(),
                object_key: row.object_key.clone(),
                envelope: Envelope {
                    key_id: row.key_id,
                    wrapped_key: row.wrapped_key,
                },
            };
            let problem = match blobs.check(&blob).await {
                Err(fault) => Some(fault.to_string()),
                Ok(plain) => {
                    report.bytes += plain.len() as u64;
                    let sha = crate::infra::crypto::sha256_hex(&plain);
                    if plain.len() as i64 != row.size || sha != row.sha256 {
                        Some("content does not match the recorded size and SHA-256".into())
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                report.problems.push(Problem {
                    blob_id: row.id,
                    object_key: row.object_key,
                    used_by: row
                        .state_version
                        .map(|v| format!("state {v}"))
                        .unwrap_or_else(|| "registry".into()),
                    problem,
                });
            }
        }
    }
}
