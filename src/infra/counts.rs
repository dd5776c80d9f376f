//! Download counts without a database write on the download path: downloads bump an
//! in-memory counter, and a background task adds the totals to the rows every
//! [`FLUSH_INTERVAL`]. A crash loses at most one interval of counts.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::Result;

/// How often pending counts are written to the database.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Counts not yet written, by the row they belong to.
#[derive(Debug)]
pub struct PendingCounts<K> {
    pending: Mutex<HashMap<K, u64>>,
}

impl<K> Default for PendingCounts<K> {
    fn default() -> Self {
        PendingCounts {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq> PendingCounts<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, u64>> {
        // The map holds plain counters; a panic elsewhere cannot leave it inconsistent.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one download.
    pub fn record(&self, key: K) {
        *self.lock().entry(key).or_insert(0) += 1;
    }

    /// Hands every pending count to `write`; counts that could not be written are kept for
    /// the next flush, and the first error is returned.
    pub async fn flush<F, Fut>(&self, mut write: F) -> Result<()>
    where
        F: FnMut(K, i64) -> Fut,
        Fut: Future<Output = (K, Result<()>)>,
    {
        let batch: Vec<(K, u64)> = self.lock().drain().collect();
        let mut failure = None;
        let mut unwritten = Vec::new();
        for (key, count) in batch {
            if failure.is_some() {
                unwritten.push((key, count));
                continue;
            }
            let (key, written) = write(key, i64::try_from(count).unwrap_or(i64::MAX)).await;
            if let Err(err) = written {
                failure = Some(err);
                unwritten.push((key, count));
            }
        }
        if !unwritten.is_empty() {
            let mut pending = self.lock();
            for (key, count) in unwritten {
                *pending.entry(key).or_insert(0) += count;
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[tokio::test]
    async fn failed_writes_are_kept_for_the_next_flush() {
        let counts = PendingCounts::default();
        counts.record("a");
        counts.record("a");

        let failed = counts
            .flush(|k, _| async move { (k, Err(Error::NotFound("row"))) })
            .await;
        assert!(failed.is_err());

        let mut seen = Vec::new();
        counts
            .flush(|k, n| {
                seen.push((k, n));
                async move { (k, Ok(())) }
            })
            .await
            .unwrap();
        assert_eq!(seen, vec![("a", 2)]);
    }
}
