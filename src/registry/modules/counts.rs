//! Module download counts (see `crate::infra::counts`), keyed by the version's blob id.

use super::store;
use crate::error::Result;
use crate::registry::Ctx;

/// Counts one download of the version stored as `blob_id`.
pub fn record(app: &Ctx, blob_id: &str) {
    app.module_downloads.record(blob_id.to_string());
}

/// Adds pending counts to the version and module rows.
pub async fn flush(app: &Ctx) -> Result<()> {
    app.module_downloads
        .flush(|blob_id, n| async move {
            let written = store::add_downloads(&app.db, &blob_id, n).await.map(|_| ());
            (blob_id, written)
        })
        .await
}
