//! The orphan sweep: objects in the blob store that no `blobs` row refers to.
//!
//! An object is written before its row commits, so a crash or a refused upload in between
//! leaves it behind. Only objects older than a grace period are deleted: a younger one may
//! belong to a write whose row is about to commit.

use chrono::{Duration, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::blob::BlobStore;
use crate::db::{Db, on_pool};
use crate::error::Result;

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

/// Deletes unreferenced objects older than `grace` (with `dry_run`, only reports them).
pub async fn sweep(
    db: &Db,
    blobs: &BlobStore,
    grace: Duration,
    dry_run: bool,
) -> Result<SweepReport> {
    const REFERENCED: &str = "SELECT 1 FROM blobs WHERE object_key = $1";
    let cutoff = Utc::now() - grace;
    let mut report = SweepReport::default();
    let mut objects = std::pin::pin!(blobs.list_objects());
    while let Some(item) = objects.next().await {
        let (object_key, modified) = item?;
        report.objects += 1;
        let referenced: Option<(i32,)> = on_pool!(db, p => sqlx::query_as(REFERENCED)
            .bind(&object_key).fetch_optional(p).await)?;
        if referenced.is_some() {
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
    Ok(report)
}

/// Sweeps every `interval` in the background (each replica may; deletes are idempotent).
pub fn spawn(
    db: Db,
    blobs: BlobStore,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match sweep(&db, &blobs, DEFAULT_GRACE, false).await {
                Ok(report) if report.orphans > 0 => tracing::info!(
                    deleted = report.deleted.len(),
                    kept_young = report.kept_young,
                    "orphan sweep"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "orphan sweep failed; will retry"),
            }
        }
    })
}
