//! Download counts without a database write on the download path: the download endpoint
//! bumps an in-memory counter per package, and a background task adds the totals to the
//! package rows every [`FLUSH_INTERVAL`]. A crash loses at most one interval of counts.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::store;
use crate::app::AppState;
use crate::error::Result;

/// How often pending counts are written to the database.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Pending counts by (app, package id). Keyed by app so that several apps in one process (the
/// tests) never flush each other's counts into the wrong database.
type Pending = HashMap<(usize, i64), u64>;

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

/// Counts one download of a package.
pub fn record(app: &AppState, package_id: i64) {
    *pending().entry((app_key(app), package_id)).or_insert(0) += 1;
}

/// Writes this app's pending counts to its database; what could not be written is kept.
pub async fn flush(app: &AppState) -> Result<()> {
    let key = app_key(app);
    let batch: Vec<(i64, u64)> = {
        let mut pending = pending();
        let mine: Vec<(usize, i64)> = pending.keys().filter(|k| k.0 == key).copied().collect();
        mine.into_iter()
            .filter_map(|k| pending.remove(&k).map(|n| (k.1, n)))
            .collect()
    };
    let mut failure = None;
    let mut unwritten = Vec::new();
    for (package_id, count) in batch {
        if failure.is_none() {
            let n = i64::try_from(count).unwrap_or(i64::MAX);
            match store::add_downloads(&app.db, package_id, n).await {
                Ok(()) => continue,
                Err(err) => failure = Some(err),
            }
        }
        unwritten.push((package_id, count));
    }
    if !unwritten.is_empty() {
        let mut pending = pending();
        for (package_id, count) in unwritten {
            *pending.entry((key, package_id)).or_insert(0) += count;
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Starts the task that flushes provider download counts every [`FLUSH_INTERVAL`].
pub fn spawn_flusher(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(err) = flush(&app).await {
                tracing::warn!(error = %err, "could not flush provider download counts; will retry");
            }
        }
    })
}
