//! Shared infrastructure: the metadata database, the encrypted blob store, keys, caches,
//! metrics, telemetry and per-request notes, and [`AppState`], which holds them for every
//! feature. Nothing here knows a feature.

pub mod aws;
pub mod blob;
pub mod cache;
pub mod counts;
pub mod crypto;
pub mod db;
pub mod keyring;
pub mod kms;
pub mod metrics;
pub mod notes;
pub mod queue;
pub mod telemetry;

use std::sync::Arc;

use blob::BlobStore;
use cache::{Caches, Invalidation};
use db::Db;
use metrics::Metrics;

/// The infrastructure every feature shares, cheap to clone (one reference count: every
/// request clones it a few times, through the feature contexts that carry it). Features keep
/// their own state in their own context types, which carry this one. Fields are read (and,
/// while the application is being built, set) through `Deref`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
#[derive(Clone, Debug)]
pub struct Shared {
    pub db: Db,
    pub blobs: BlobStore,
    pub metrics: Arc<Metrics>,
    /// Read caches, invalidated across replicas.
    pub caches: Arc<Caches>,
    pub max_body_size: u64,
    /// Externally visible base URL without a trailing `/`, when configured.
    pub public_url: Option<String>,
    /// Whether this process serves HTTPS (for building absolute URLs without `public_url`).
    pub tls: bool,
    /// SQLite admits one writer at a time and makes the others sleep and retry; queueing the
    /// hot writers here instead keeps concurrent lock cycles fast and their latency flat.
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Setting a field while the application is built (copy-on-write once clones exist).
impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }
}

impl AppState {
    pub fn new(db: Db, blobs: BlobStore, max_body_size: u64) -> AppState {
        let sqlite_writer = matches!(db, Db::Sqlite(_)).then(Arc::default);
        let metrics = Arc::new(Metrics::new());
        AppState(Arc::new(Shared {
            caches: Arc::new(
                Caches::new(cache::ttl_for(&db, None)).counted(metrics.cache_lookups.clone()),
            ),
            sqlite_writer,
            db,
            blobs: blobs.counted(&metrics),
            metrics,
            max_body_size,
            public_url: None,
            tls: false,
        }))
    }

    /// Drops cached entries `change` makes wrong, on every replica. Call after committing.
    pub async fn invalidate(&self, change: Invalidation) {
        self.caches.invalidate(&self.db, change).await;
    }

    /// Waits for this process's turn to write when the database is SQLite.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// The queue of SQLite writers, for writers that run off the request path.
    pub fn sqlite_writer(&self) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.sqlite_writer.clone()
    }

    /// The base URL clients reach us at: `public_url`, else scheme and `Host` of the request.
    pub fn base_url(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
            .unwrap_or("localhost");
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}
