//! Provider download counts (see `crate::counts`), keyed by package id.

use super::store;
use crate::app::AppState;
use crate::error::Result;

/// Counts one download of a package.
pub fn record(app: &AppState, package_id: i64) {
    app.provider_downloads.record(package_id);
}

/// Adds pending counts to the package rows.
pub async fn flush(app: &AppState) -> Result<()> {
    app.provider_downloads
        .flush(|package_id, n| async move {
            let written = store::add_downloads(&app.db, package_id, n).await;
            (package_id, written)
        })
        .await
}
