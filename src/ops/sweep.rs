//! The orphan sweep: objects in the blob store that no `blobs` row refers to.
//!
//! An object is written before its row commits, so a crash or a refused upload in between
//! leaves it behind. Only objects older than a grace period are deleted: a younger one may
//! belong to a write whose row is about to commit.

use chrono::{Duration, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::error::Result;
use crate::infra::blob::BlobStore;
use crate::infra::db::Db;

/// How old an unreferenced object must be before the sweep removes it, unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::hours(24);

#[derive(Debug, Default, Serialize)]
pub struct SweepReport {
    pub objects: u64,
    pub orphans: u64,
    /// Orphans younger than the grace period, left for a later sweep.
    pub kept_young: u64,
    pub deleted: Vec<String>,
}

/// Objects looked up in one query.
const BATCH: usize = 200;

/// Deletes unreferenced objects older than `grace` (with `dry_run`, only reports them).
pub async fn sweep(
    db: &Db,
    blobs: &BlobStore,
    grace: Duration,
    dry_run: bool,
) -> Result<SweepReport> {
    let cutoff = Utc::now() - grace;
    let mut report = SweepReport::default();
    let mut objects = std::pin::pin!(blobs.list_objects().chunks(BATCH));
    while let Some(chunk) = objects.next().await {
        let chunk = chunk.into_iter().collect::<Result<Vec<_>>>()?;
        report.objects += chunk.len() as u64;
        let keys: Vec<&str> = chunk.iter().map(|(key, _)| key.as_str()).collect();
        let referenced = super::store::referenced(db, &keys).await?;
        for (object_key, modified) in chunk {
            if referenced.contains(&object_key) {
                continue;
            }
            report.orphans += 1;
            if modified > cutoff {
                report.kept_young += 1;
                continue;
            }
            if !dry_run {
                blobs.delete_object(&object_key).await?;
                tracing::info!(object = %object_key, "deleted an orphaned object");
            }
            report.deleted.push(object_key);
        }
    }
    Ok(report)
}

/// One sweep with the default grace period, logged (the periodic job).
pub async fn sweep_and_log(db: &Db, blobs: &BlobStore) -> Result<()> {
    let report = sweep(db, blobs, DEFAULT_GRACE, false).await?;
    if report.orphans > 0 {
        tracing::info!(
            deleted = report.deleted.len(),
            kept_young = report.kept_young,
            "orphan sweep finished"
        );
    }
    Ok(())
}
