//! Download counts without a database write on the download path: the download endpoint
//! bumps an in-memory counter, and a background task adds the totals to the version and
//! module rows every [`FLUSH_INTERVAL`]. A crash loses at most one interval of counts.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use crate::app::AppState;
use crate::error::Result;

use super::store;

/// How often pending counts are written to the database.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Pending counts by (app, blob id). Keyed by app so that several apps in one process (the
/// tests) never flush each other's counts into the wrong database.
type Pending = HashMap<(usize, String), u64>;

static PENDING: LazyLock<Mutex<Pending>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Identifies one `AppState` and its clones: they share one metrics registry.
fn app_key(app: &AppState) -> usize {
    Arc::as_ptr(&app.metrics) as usize
}

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    // The map holds plain counters; a panic elsewhere cannot leave it inconsistent.
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts one download of the version stored as `blob_id`.
pub fn record(app: &AppState, blob_id: &str) {
    *pending()
        .entry((app_key(app), blob_id.to_string()))
        .or_insert(0) += 1;
}

/// Writes this app's pending counts to its database. Counts that could not be written are
/// kept for the next flush; counts of deleted versions are dropped.
pub async fn flush(app: &AppState) -> Result<()> {
    let key = app_key(app);
    let batch: Vec<(String, u64)> = {
        let mut pending = pending();
        let mine: Vec<(usize, String)> = pending.keys().filter(|k| k.0 == key).cloned().collect();
        mine.into_iter()
            .filter_map(|k| pending.remove(&k).map(|n| (k.1, n)))
            .collect()
    };
    let mut failed = None;
    let mut unwritten = Vec::new();
    for (blob_id, count) in batch {
        if failed.is_some() {
            unwritten.push((blob_id, count));
            continue;
        }
        let n = i64::try_from(count).unwrap_or(i64::MAX);
        if let Err(err) = store::add_downloads(&app.db, &blob_id, n).await {
            failed = Some(err);
            unwritten.push((blob_id, count));
        }
    }
    if !unwritten.is_empty() {
        let mut pending = pending();
        for (blob_id, count) in unwritten {
            *pending.entry((key, blob_id)).or_insert(0) += count;
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Starts the task that flushes download counts every [`FLUSH_INTERVAL`].
pub fn spawn_flusher(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(err) = flush(&app).await {
                tracing::warn!(error = %err, "could not flush module download counts; will retry");
            }
        }
    })
}
