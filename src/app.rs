//! `AppState` and the composition root: the only place where concrete backends are chosen.

use std::sync::Arc;

use anyhow::Context;

use crate::blob::BlobStore;
use crate::cache::{Caches, Invalidation};
use crate::config::Config;
use crate::counts::PendingCounts;
use crate::crypto::Keyring;
use crate::db::Db;
use crate::metrics::Metrics;

/// Everything a handler needs, cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub blobs: BlobStore,
    /// Where state locks live: the database (default) or DynamoDB.
    pub locks: crate::state::locks::Locks,
    pub metrics: Arc<Metrics>,
    pub max_body_size: u64,
    /// Externally visible base URL without a trailing `/`, when configured.
    pub public_url: Option<String>,
    /// The org whose admins manage the provider mirror.
    pub mirror_org: Option<String>,
    /// Whether this process serves HTTPS (for building absolute URLs without `public_url`).
    pub tls: bool,
    /// Tokens, namespaces and module version lists, invalidated across replicas.
    pub caches: Arc<Caches>,
    /// Module downloads not yet written, by version blob id.
    pub module_downloads: Arc<PendingCounts<String>>,
    /// Provider downloads not yet written, by package id.
    pub provider_downloads: Arc<PendingCounts<i64>>,
    /// Signing keys of login tokens.
    pub login_keys: Arc<crate::auth::jwt::LoginKeys>,
    /// `terraform login` settings and attempt limits.
    pub login: Arc<crate::login::LoginState>,
    /// The audit trail's writer.
    pub audit: crate::audit::AuditSink,
    /// SQLite admits one writer at a time and makes the others sleep and retry; queueing the
    /// hot writers here instead keeps concurrent lock cycles fast and their latency flat.
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A token that was valid when cached, and when it stops being valid.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub principal: crate::auth::Principal,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl AppState {
    /// Connects, migrates and opens the blob store described by `config`.
    pub async fn from_config(config: &Config) -> anyhow::Result<AppState> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let keys = Arc::new(load_keyring(config)?);
        let db = Db::connect(&config.database_url())
            .await
            .context("connecting to the database")?;
        db.migrate().await.context("migrating the database")?;
        let blobs =
            BlobStore::from_url(&config.storage_url()?, keys)?.with_cache(config.cache_size);
        let mut app = AppState::new(db, blobs, config.max_body_size);
        app.locks = crate::state::locks::Locks::connect(&config.locks()?);
        app.caches = Arc::new(Caches::new(crate::cache::ttl_for(
            &app.db,
            config.cache_ttl()?,
        )));
        app.public_url = config
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string());
        app.tls = config.tls_cert.is_some() || config.dev_tls;
        app.mirror_org = config.mirror_org.clone();
        app.login = Arc::new(crate::login::LoginState::new(
            crate::login::LoginSettings::from_config(config)?,
        ));
        Ok(app)
    }

    pub fn new(db: Db, blobs: BlobStore, max_body_size: u64) -> AppState {
        let sqlite_writer = matches!(db, Db::Sqlite(_)).then(Arc::default);
        let ttl = crate::cache::ttl_for(&db, None);
        AppState {
            audit: crate::audit::AuditSink::with_write_lock(db.clone(), sqlite_writer.clone()),
            sqlite_writer,
            login_keys: Arc::default(),
            login: Arc::new(crate::login::LoginState::new(
                crate::login::LoginSettings::default(),
            )),
            db,
            blobs,
            locks: crate::state::locks::Locks::Database,
            metrics: Arc::new(Metrics::new()),
            max_body_size,
            public_url: None,
            mirror_org: None,
            tls: false,
            caches: Arc::new(Caches::new(ttl)),
            module_downloads: Arc::default(),
            provider_downloads: Arc::default(),
        }
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

/// The configured master keys, or the key file in the data dir (generated on first start).
pub fn load_keyring(config: &Config) -> anyhow::Result<Keyring> {
    if let Some((current, previous)) = config.encryption_keys() {
        return Keyring::from_base64(&current, &previous).context("TERRACE_ENCRYPTION_KEY");
    }
    let path = config.key_file();
    if !path.exists() {
        write_new_key_file(&path)?;
        tracing::warn!(
            path = %path.display(),
            "generated a new master encryption key; back it up: without it no state can be read"
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let current = lines
        .next()
        .with_context(|| format!("key file {} is empty", path.display()))?;
    let mut previous: Vec<String> = lines.map(str::to_string).collect();
    previous.extend(config.previous_keys());
    Keyring::from_base64(current, &previous).with_context(|| format!("key file {}", path.display()))
}

/// Writes a fresh key file readable by the owner only.
pub fn write_new_key_file(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = crate::crypto::generate_key()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    Ok(())
}
