//! Provider download counts (see `crate::infra::counts`), keyed by package id.

use super::store;
use crate::error::Result;
use crate::registry::Ctx;

/// Counts one download of a package.
pub fn record(app: &Ctx, package_id: i64) {
    app.provider_downloads.record(package_id);
}

/// Adds pending counts to the package rows.
pub async fn flush(app: &Ctx) -> Result<()> {
    app.provider_downloads
        .flush(|package_id, n| async move {
            let written = store::add_downloads(&app.db, package_id, n).await;
            (package_id, written)
        })
        .await
}
