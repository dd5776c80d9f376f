//! Short-lived read caches for the hot read paths (token lookups, namespace settings,
//! version lists). Entries expire after a TTL, so a change made through another replica shows
//! within it; changes made through this process invalidate at once.

use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long an entry may be served without asking the database again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2);

/// A bounded map whose entries expire.
pub struct TtlCache<K, V> {
    inner: quick_cache::sync::Cache<K, (V, Instant)>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            inner: quick_cache::sync::Cache::new(capacity),
            ttl,
        }
    }

    /// The cached value, if it is younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        let (value, at) = self.inner.get(key)?;
        if at.elapsed() < self.ttl {
            Some(value)
        } else {
            self.inner.remove(key);
            None
        }
    }

    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, (value, Instant::now()));
    }

    pub fn remove(&self, key: &K) {
        self.inner.remove(key);
    }

    pub fn clear(&self) {
        self.inner.clear();
    }
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TtlCache(ttl: {:?})", self.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = TtlCache::new(10, Duration::from_millis(0));
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), None);

        let cache = TtlCache::new(10, Duration::from_secs(60));
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.remove(&"a");
        assert_eq!(cache.get(&"a"), None);
    }
}
