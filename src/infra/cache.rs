//! Short-lived read caches for the hot read paths (token lookups, namespace settings,
//! version lists), and their invalidation across replicas.
//!
//! A change made through this process invalidates at once. On PostgreSQL every change is also
//! announced with `NOTIFY`, and each replica's listener applies it, so other replicas drop the
//! entry within milliseconds; while a replica's listener is not connected it serves nothing
//! from cache. On SQLite (one process) the TTL bounds how long a change made by another
//! process, such as the CLI, takes to show.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::infra::db::Db;
use crate::infra::metrics::{CacheCounters, CacheLookups};

/// TTL when nothing announces changes from other processes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2);

/// TTL when replicas announce their changes: only a safety net for a lost notification.
pub const NOTIFIED_TTL: Duration = Duration::from_secs(60);

/// The PostgreSQL channel changes are announced on.
const CHANNEL: &str = "terrace_cache";

/// A bounded map whose entries expire.
pub struct TtlCache<K, V> {
    inner: quick_cache::sync::Cache<K, (V, Instant)>,
    ttl: Duration,
    /// Bumped by every invalidation, so a value read from the database before an
    /// invalidation is not cached after it.
    generation: AtomicU64,
    enabled: AtomicBool,
    /// Hits and misses (`terrace_cache_lookups_total`); lookups while disabled are not counted.
    counters: CacheCounters,
}

/// The cache's generation when a load began; see [`TtlCache::insert`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            inner: quick_cache::sync::Cache::new(capacity.max(1)),
            ttl,
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(!ttl.is_zero()),
            counters: CacheCounters::default(),
        }
    }

    /// The cached value, if it is younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let Some((value, at)) = self.inner.get(key) else {
            self.counters.record(false);
            return None;
        };
        if at.elapsed() < self.ttl {
            self.counters.record(true);
            Some(value)
        } else {
            self.inner.remove(key);
            self.counters.record(false);
            None
        }
    }

    /// Take before reading the database; pass to `insert` with what was read.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Caches `value` unless an invalidation happened since `ticket` was taken: the value may
    /// predate that change.
    pub fn insert(&self, ticket: Ticket, key: K, value: V) {
        if !self.enabled.load(Ordering::Acquire)
            || self.generation.load(Ordering::Acquire) != ticket.0
        {
            return;
        }
        self.inner.insert(key.clone(), (value, Instant::now()));
        // Checked again after inserting: an invalidation racing with the insert either removes
        // the entry itself or has bumped the generation by now.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            self.inner.remove(&key);
        }
    }

    pub fn remove(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.remove(key);
    }

    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.clear();
    }

    /// Turns caching off (clearing it) or back on.
    fn set_enabled(&self, enabled: bool) {
        self.enabled
            .store(enabled && !self.ttl.is_zero(), Ordering::Release);
        self.clear();
    }
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TtlCache(ttl: {:?})", self.ttl)
    }
}

/// What every registered cache answers to, whatever its key and value types.
trait Member: Send + Sync {
    /// Drops the entry whose key serialises to `key`, or everything when the key does not fit.
    fn drop_key(&self, key: &serde_json::Value);
    fn clear(&self);
    fn set_enabled(&self, enabled: bool);
}

impl<K, V> Member for TtlCache<K, V>
where
    K: Eq + Hash + Clone + DeserializeOwned + Send + Sync,
    V: Clone + Send + Sync,
{
    fn drop_key(&self, key: &serde_json::Value) {
        match K::deserialize(key) {
            Ok(key) => self.remove(&key),
            Err(_) => TtlCache::clear(self),
        }
    }

    fn clear(&self) {
        TtlCache::clear(self);
    }

    fn set_enabled(&self, enabled: bool) {
        TtlCache::set_enabled(self, enabled);
    }
}

/// The caches of this replica, each registered by name by the feature that owns it, and their
/// invalidation across replicas.
pub struct Caches {
    ttl: Duration,
    members: std::sync::RwLock<Vec<(&'static str, std::sync::Arc<dyn Member>)>>,
    /// Whether entries are served; false while a replica's listener is disconnected.
    live: AtomicBool,
    /// Where the members count their hits and misses.
    lookups: CacheLookups,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Caches(ttl: {:?})", self.ttl)
    }
}

/// One change that makes cached entries wrong, as announced to the other replicas: the
/// cache's name and the entry's key (every entry when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    pub cache: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<serde_json::Value>,
}

impl Invalidation {
    /// Every entry of `cache`.
    pub fn all(cache: &str) -> Invalidation {
        Invalidation {
            cache: cache.to_string(),
            key: None,
        }
    }

    /// The entry of `cache` under `key`.
    pub fn key(cache: &str, key: &impl Serialize) -> Invalidation {
        Invalidation {
            cache: cache.to_string(),
            key: serde_json::to_value(key).ok(),
        }
    }
}

impl Caches {
    pub fn new(ttl: Duration) -> Caches {
        Caches {
            ttl,
            members: std::sync::RwLock::default(),
            live: AtomicBool::new(true),
            lookups: CacheLookups::default(),
        }
    }

    /// Counts the members' hits and misses in `lookups` (the metrics' family).
    pub fn counted(mut self, lookups: CacheLookups) -> Caches {
        self.lookups = lookups;
        self
    }

    /// A new cache named `name` with this replica's TTL, invalidated by announcements for it.
    pub fn register<K, V>(
        &self,
        name: &'static str,
        capacity: usize,
    ) -> std::sync::Arc<TtlCache<K, V>>
    where
        K: Eq + Hash + Clone + DeserializeOwned + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let mut cache = TtlCache::new(capacity, self.ttl);
        cache.counters = CacheCounters::new(&self.lookups, name);
        let cache = std::sync::Arc::new(cache);
        if !self.live() {
            cache.set_enabled(false);
        }
        self.members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, cache.clone()));
        cache
    }

    fn each(&self, mut f: impl FnMut(&'static str, &dyn Member)) {
        let members = self
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, member) in members.iter() {
            f(name, member.as_ref());
        }
    }

    /// Drops what `change` makes wrong, in this process only.
    pub fn apply(&self, change: &Invalidation) {
        self.each(|name, member| {
            if name == change.cache {
                match &change.key {
                    Some(key) => member.drop_key(key),
                    None => member.clear(),
                }
            }
        });
    }

    /// Whether entries are being served: false while a replica's listener is disconnected.
    pub fn live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Drops everything, in this process only.
    pub fn clear_all(&self) {
        self.each(|_, member| member.clear());
    }

    fn set_enabled(&self, enabled: bool) {
        self.live.store(enabled, Ordering::Release);
        self.each(|_, member| member.set_enabled(enabled));
    }

    /// Drops what `change` makes wrong here and, on PostgreSQL, on every other replica.
    /// Call after the change is committed, so a replica that reloads sees it.
    pub async fn invalidate(&self, db: &Db, change: Invalidation) {
        self.apply(&change);
        let Db::Postgres(pool) = db else {
            return;
        };
        let Ok(payload) = serde_json::to_string(&change) else {
            return;
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(pool)
            .await;
        if let Err(e) = sent {
            // Other replicas catch up within the TTL.
            tracing::warn!(error = %e, "announcing a cache invalidation failed");
        }
    }
}

/// The TTL for `db`: long where changes are announced, short where they are not.
pub fn ttl_for(db: &Db, configured: Option<Duration>) -> Duration {
    configured.unwrap_or(match db {
        Db::Postgres(_) => NOTIFIED_TTL,
        Db::Sqlite(_) => DEFAULT_TTL,
    })
}

/// On PostgreSQL, applies the invalidations other replicas announce, for as long as the
/// process runs. Caching stays off until the listener is connected and whenever it is not,
/// because announcements sent meanwhile are lost.
pub fn listener(
    db: &Db,
    caches: std::sync::Arc<Caches>,
) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let Db::Postgres(pool) = db else {
        return None;
    };
    caches.set_enabled(false);
    let pool = pool.clone();
    Some(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            match listen(&pool, &caches).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "cache invalidation listener disconnected");
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            caches.set_enabled(false);
            tokio::time::sleep(delay).await;
        }
    })
}

/// Listens until the connection is lost.
async fn listen(pool: &sqlx::PgPool, caches: &Caches) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything may have changed while nobody was listening.
    caches.set_enabled(true);
    tracing::debug!("cache invalidation listener connected");
    // `try_recv` answers `None` when the connection drops; reconnecting here, rather than
    // letting it reconnect silently, lets caching resume only once listening again.
    while let Some(notification) = listener.try_recv().await? {
        match serde_json::from_str::<Invalidation>(notification.payload()) {
            Ok(change) => caches.apply(&change),
            Err(_) => caches.clear_all(),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = TtlCache::new(10, Duration::from_millis(1));
        cache.insert(cache.ticket(), "a", 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get(&"a"), None);

        let cache = TtlCache::new(10, Duration::from_secs(60));
        cache.insert(cache.ticket(), "a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.remove(&"a");
        assert_eq!(cache.get(&"a"), None);
    }

    #[test]
    fn a_value_loaded_before_an_invalidation_is_not_cached() {
        let cache = TtlCache::new(10, Duration::from_secs(60));
        let ticket = cache.ticket();
        cache.remove(&"other");
        cache.insert(ticket, "a", 1);
        assert_eq!(cache.get(&"a"), None);
        cache.insert(cache.ticket(), "a", 2);
        assert_eq!(cache.get(&"a"), Some(2));
    }

    #[test]
    fn a_zero_ttl_or_a_disabled_cache_caches_nothing() {
        let cache = TtlCache::new(10, Duration::ZERO);
        cache.insert(cache.ticket(), "a", 1);
        assert_eq!(cache.get(&"a"), None);

        let cache = TtlCache::new(10, Duration::from_secs(60));
        cache.set_enabled(false);
        cache.insert(cache.ticket(), "a", 1);
        assert_eq!(cache.get(&"a"), None);
        cache.set_enabled(true);
        cache.insert(cache.ticket(), "a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
    }

    #[test]
    fn an_invalidation_drops_the_named_key_of_the_named_cache() {
        let caches = Caches::new(Duration::from_secs(60));
        let versions = caches.register::<(i64, String, String), u32>("module_versions", 10);
        let names = caches.register::<String, u32>("namespaces", 10);
        let key = (7, "vpc".to_string(), "aws".to_string());
        versions.insert(versions.ticket(), key.clone(), 1);
        names.insert(names.ticket(), "acme".into(), 2);
        // Announced by another replica as JSON.
        let text = serde_json::to_string(&Invalidation::key("module_versions", &(7, "vpc", "aws")))
            .unwrap();
        caches.apply(&serde_json::from_str(&text).unwrap());
        assert_eq!(versions.get(&key), None);
        assert_eq!(names.get(&"acme".to_string()), Some(2));
        caches.apply(&Invalidation::all("namespaces"));
        assert_eq!(names.get(&"acme".to_string()), None);
    }

    #[test]
    fn invalidations_round_trip_as_json() {
        for change in [
            Invalidation::all("tokens"),
            Invalidation::key("namespaces", &"acme"),
            Invalidation::key("module_versions", &(7, "vpc", "aws")),
        ] {
            let text = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Invalidation>(&text).unwrap(), change);
        }
    }
}
