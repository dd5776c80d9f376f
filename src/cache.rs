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

use serde::{Deserialize, Serialize};

use crate::db::Db;

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
        }
    }

    /// The cached value, if it is younger than the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let (value, at) = self.inner.get(key)?;
        if at.elapsed() < self.ttl {
            Some(value)
        } else {
            self.inner.remove(key);
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

/// The caches every replica keeps.
#[derive(Debug)]
pub struct Caches {
    /// Valid tokens by hash, so hot paths skip the token query.
    pub tokens: TtlCache<Vec<u8>, crate::app::CachedToken>,
    /// Registry namespaces by name (`None`: no such namespace).
    pub namespaces: TtlCache<String, Option<crate::registry::namespace::Namespace>>,
    /// Sorted module versions by (org id, name, system), for the protocol's hottest read.
    pub module_versions: TtlCache<(i64, String, String), Vec<String>>,
    /// Workspace ids by (org id, name). Workspaces are never renamed or deleted, so nothing
    /// invalidates these.
    pub workspace_ids: TtlCache<(i64, String), i64>,
}

/// One change that makes cached entries wrong, as announced to the other replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "drop", rename_all = "snake_case")]
pub enum Invalidation {
    /// A token, team or policy changed: any cached token's rights may be wrong.
    Tokens,
    Namespace {
        name: String,
    },
    ModuleVersions {
        key: (i64, String, String),
    },
}

impl Caches {
    pub fn new(ttl: Duration) -> Caches {
        Caches {
            tokens: TtlCache::new(10_000, ttl),
            namespaces: TtlCache::new(1_000, ttl),
            module_versions: TtlCache::new(10_000, ttl),
            workspace_ids: TtlCache::new(100_000, ttl),
        }
    }

    /// Drops what `change` makes wrong, in this process only.
    pub fn apply(&self, change: &Invalidation) {
        match change {
            Invalidation::Tokens => self.tokens.clear(),
            Invalidation::Namespace { name } => self.namespaces.remove(name),
            Invalidation::ModuleVersions { key } => self.module_versions.remove(key),
        }
    }

    /// Whether entries are being served: false while a replica's listener is disconnected.
    pub fn live(&self) -> bool {
        self.tokens.enabled.load(Ordering::Acquire)
    }

    /// Drops everything, in this process only.
    pub fn clear_all(&self) {
        self.tokens.clear();
        self.namespaces.clear();
        self.module_versions.clear();
        self.workspace_ids.clear();
    }

    fn set_enabled(&self, enabled: bool) {
        self.tokens.set_enabled(enabled);
        self.namespaces.set_enabled(enabled);
        self.module_versions.set_enabled(enabled);
        self.workspace_ids.set_enabled(enabled);
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
pub fn spawn_listener(db: &Db, caches: std::sync::Arc<Caches>) {
    let Db::Postgres(pool) = db else {
        return;
    };
    caches.set_enabled(false);
    let pool = pool.clone();
    tokio::spawn(async move {
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
    });
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
    fn invalidations_round_trip_as_json() {
        for change in [
            Invalidation::Tokens,
            Invalidation::Namespace {
                name: "acme".into(),
            },
            Invalidation::ModuleVersions {
                key: (7, "vpc".into(), "aws".into()),
            },
        ] {
            let text = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Invalidation>(&text).unwrap(), change);
        }
    }
}
