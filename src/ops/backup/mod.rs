//! `terrace backup` and `terrace restore`: a consistent, restorable snapshot of one
//! installation, taken while the server runs.
//!
//! A backup lives in a local directory or under a prefix of an object store (S3, Azure Blob,
//! GCS) and holds
//! - `metadata/<table>.jsonl`: every row of every table, one JSON object per line, columns by
//!   name (bytes as base64, times as RFC 3339), read inside one read-only transaction;
//! - `objects/<object_key>`: the encrypted objects of the blobs in that snapshot, byte for byte
//!   (their data keys are wrapped in the `blobs` rows, so nothing is decrypted);
//! - `manifest.json`, written last: format, origin, row counts, blob totals and the ids of the
//!   master keys the data needs. Master keys themselves are never written.
//!
//! Objects are immutable and written before the rows that name them commit, so copying the
//! objects of the snapshot's blobs after reading the metadata is consistent. A blob deleted in
//! between (module version delete: row and object gone) is recorded in `missing_objects` and
//! skipped; an object missing while its row still exists fails the backup.
//!
//! Every file is written once and never overwritten, the manifest last: a target without a
//! manifest is an unfinished backup, and restore refuses it.

mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail, ensure};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::infra::blob::{BlobStore, PART_SIZE};
use crate::infra::db::Db;
use tables::{Kind, Plan, TABLES, Table};

/// Identifies a Terrace backup manifest.
pub const FORMAT: &str = "terrace-backup";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub created_at: String,
    /// `sqlite` or `postgres`: where the backup was taken.
    pub database: String,
    /// The latest applied migration of the origin; restore needs the same schema.
    pub schema_version: i64,
    /// Rows per table, in restore order.
    pub tables: Vec<TableCount>,
    pub blobs: BlobTotals,
    /// Master key ids the data needs (blob data keys and login-token signing keys). The keys
    /// themselves are never part of a backup.
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobTotals {
    /// Blobs whose objects were copied.
    pub count: u64,
    /// Bytes of those (encrypted) objects.
    pub bytes: u64,
    /// Blob ids whose objects had gone from the store when they were copied (deleted after
    /// the metadata snapshot); their rows are in the backup, their objects are not.
    pub missing_objects: Vec<String>,
}

/// Where a backup is written or read: a local directory (a path or a `file://` URL) or a
/// prefix in an object store (`s3://bucket/prefix`, `az://container/prefix`,
/// `gs://bucket/prefix`).
#[derive(Debug, Clone)]
pub struct Location(Place);

#[derive(Debug, Clone)]
enum Place {
    Dir(PathBuf),
    Remote {
        /// For messages: the URL without query or credentials.
        url: String,
        store: Arc<dyn ObjectStore>,
    },
}

impl Location {
    /// A local directory.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Location(Place::Dir(path.into()))
    }

    /// A path or URL; object stores take their settings from the environment (`AWS_*`,
    /// `AZURE_*`, `GOOGLE_*`), as `storage_url` does.
    pub fn parse(path_or_url: &str) -> anyhow::Result<Self> {
        Self::parse_with_options(path_or_url, std::env::vars())
    }

    /// Like [`Location::parse`] with explicit `object_store` options (such as `aws_endpoint`)
    /// instead of the environment.
    pub fn parse_with_options<K: AsRef<str>, V: Into<String>>(
        path_or_url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> anyhow::Result<Self> {
        // Only `scheme://…` is a URL: a plain path may well contain a colon.
        if !path_or_url.contains("://") {
            return Ok(Self::dir(path_or_url));
        }
        let mut url = url::Url::parse(path_or_url)
            .with_context(|| format!("invalid backup URL {path_or_url}"))?;
        match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| anyhow!("{path_or_url} is not a local directory URL"))?;
                Ok(Self::dir(dir))
            }
            "memory" => bail!("a backup in memory:// would vanish with this process"),
            _ => {
                let store = crate::infra::blob::store_from_url(&url, options)?;
                url.set_query(None);
                url.set_fragment(None);
                // Only URLs without a host refuse these, and they have nothing to strip.
                let _ = url.set_password(None);
                let _ = url.set_username("");
                Ok(Location(Place::Remote {
                    url: url.to_string(),
                    store,
                }))
            }
        }
    }

    /// Opens an existing backup.
    fn open(&self) -> anyhow::Result<Target> {
        match &self.0 {
            Place::Dir(dir) => {
                ensure!(dir.is_dir(), "{} is not a directory", dir.display());
                let store = LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening backup directory {}", dir.display()))?;
                Ok(Target {
                    store: Arc::new(store),
                    dir: Some(dir.clone()),
                })
            }
            Place::Remote { store, .. } => Ok(Target {
                store: store.clone(),
                dir: None,
            }),
        }
    }

    /// Opens the location for a new backup: a local directory must be empty or not exist
    /// (it is created), a prefix must hold no object.
    async fn create(&self) -> anyhow::Result<Target> {
        match &self.0 {
            Place::Dir(dir) => {
                prepare_target(dir)?;
                // fsync files and their directories: a finished backup survives a crash.
                let store = LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening backup directory {}", dir.display()))?
                    .with_fsync(true);
                Ok(Target {
                    store: Arc::new(store),
                    dir: Some(dir.clone()),
                })
            }
            Place::Remote { url, store } => {
                if let Some(first) = store.list(None).next().await {
                    first.with_context(|| format!("listing {url}"))?;
                    bail!("{url} is not empty; back up into a new or empty prefix");
                }
                Ok(Target {
                    store: store.clone(),
                    dir: None,
                })
            }
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Place::Dir(dir) => write!(f, "{}", dir.display()),
            Place::Remote { url, .. } => f.write_str(url),
        }
    }
}

/// An opened backup: the store rooted at it, and its directory when it is local (metadata
/// files are then written and read in place rather than staged in a temporary directory).
struct Target {
    store: Arc<dyn ObjectStore>,
    dir: Option<PathBuf>,
}

impl Target {
    /// Remote stores take large files in parts; a request per part stays within the
    /// store's request timeout.
    fn multipart(&self) -> bool {
        self.dir.is_none()
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Writes a backup of `db` and `blobs` to `to`: a directory that must be empty or not exist,
/// or an object-store prefix that must hold no object.
pub async fn backup(db: &Db, blobs: &BlobStore, to: &Location) -> anyhow::Result<Manifest> {
    let target = to.create().await?;
    // A local backup's metadata is written in place; for an object store it is staged in a
    // temporary directory (rows stream to disk, not memory) and uploaded once the snapshot's
    // transaction has ended.
    let staging;
    let metadata_dir = match &target.dir {
        Some(dir) => dir.join("metadata"),
        None => {
            staging = tempfile::tempdir().context("creating a staging directory")?;
            staging.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&metadata_dir)
        .with_context(|| format!("creating {}", metadata_dir.display()))?;

    let snapshot = dump_metadata(db, &metadata_dir).await?;
    if target.dir.is_some() {
        sync_dir(&metadata_dir)?;
    } else {
        for entry in &snapshot.counts {
            let file = metadata_dir.join(format!("{}.jsonl", entry.table));
            upload_file(&target, &metadata_location(&entry.table), &file)
                .await
                .with_context(|| format!("uploading the {} rows to {to}", entry.table))?;
        }
    }

    let mut totals = BlobTotals::default();
    for (blob_id, object_key) in &snapshot.objects {
        let location = object_location(object_key)?;
        match blobs.raw_get(object_key).await? {
            Some(bytes) => {
                let len = bytes.len() as u64;
                put_new(&target, &location, bytes)
                    .await
                    .with_context(|| format!("writing {location} to {to}"))?;
                totals.count += 1;
                totals.bytes += len;
            }
            None => {
                // Gone with its row (a module version deleted since the snapshot) is fine;
                // gone while its row remains is a damaged store, and no backup to trust.
                const SQL: &str = "SELECT COUNT(*) FROM blobs WHERE id = $1";
                let rows = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, i64>(SQL)
                    .bind(blob_id).fetch_one(p).await)?;
                ensure!(
                    rows == 0,
                    "the object {object_key} of blob {blob_id} is missing from the blob store \
                     (run `terrace verify`); the backup is incomplete and has no manifest"
                );
                tracing::warn!(
                    blob_id,
                    object_key,
                    "object deleted since the snapshot; skipped"
                );
                totals.missing_objects.push(blob_id.clone());
            }
        }
    }

    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        database: db.backend().into(),
        schema_version: snapshot.schema_version,
        tables: snapshot.counts,
        blobs: totals,
        key_ids: snapshot.key_ids.into_iter().collect(),
    };
    let mut text = serde_json::to_vec_pretty(&manifest)?;
    text.push(b'\n');
    put_new(&target, &ObjectPath::from(MANIFEST), Bytes::from(text))
        .await
        .with_context(|| format!("writing {MANIFEST} to {to}"))?;
    Ok(manifest)
}

const MANIFEST: &str = "manifest.json";

/// Reads a backup's manifest, checking its format.
pub async fn read_manifest(from: &Location) -> anyhow::Result<Manifest> {
    manifest_of(&from.open()?, from).await
}

async fn manifest_of(source: &Target, from: &Location) -> anyhow::Result<Manifest> {
    let text = match source.store.get(&ObjectPath::from(MANIFEST)).await {
        Ok(found) => found.bytes().await,
        Err(object_store::Error::NotFound { .. }) => {
            bail!("{from} has no {MANIFEST}: not a backup, or an unfinished one")
        }
        Err(e) => Err(e),
    }
    .with_context(|| format!("reading {MANIFEST} of {from}"))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{MANIFEST} of {from} is not a backup manifest"))?;
    ensure!(
        manifest.format == FORMAT,
        "{MANIFEST} of {from} is not a Terrace backup manifest"
    );
    ensure!(
        manifest.format_version == FORMAT_VERSION,
        "backup format version {} is not supported (this build reads {FORMAT_VERSION})",
        manifest.format_version
    );
    Ok(manifest)
}

/// Restores the backup in `from` onto an empty installation: `db` (migrated) and `blobs`,
/// whose keyring must know every master key id the backup needs.
pub async fn restore(db: &Db, blobs: &BlobStore, from: &Location) -> anyhow::Result<Manifest> {
    let source = from.open()?;
    let manifest = manifest_of(&source, from).await?;
    db.migrate()
        .await
        .context("migrating the target database")?;

    let schema_version = schema_version(db).await?;
    ensure!(
        manifest.schema_version == schema_version,
        "the backup has schema version {} but this installation has {schema_version}; \
         restore with the Terrace release that took the backup",
        manifest.schema_version
    );
    let missing: Vec<&str> = manifest
        .key_ids
        .iter()
        .map(String::as_str)
        .filter(|id| !blobs.keys().knows(id))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the configured keyring lacks master key id(s) {} that this backup needs; configure \
             the original key(s) (TERRACE_ENCRYPTION_KEY, TERRACE_PREVIOUS_ENCRYPTION_KEYS or \
             the key file) and run restore again",
            missing.join(", ")
        );
    }
    ensure_empty(db).await?;
    let plans = check_schema(db).await?;
    for entry in &manifest.tables {
        ensure!(
            plans.iter().any(|p| p.table.name == entry.table),
            "the backup holds table {} that this build does not know",
            entry.table
        );
    }

    // A local backup's metadata is read in place; an object store's is downloaded first
    // (only tables checked above, so names stay inside the staging directory).
    let staging;
    let metadata_dir = match &source.dir {
        Some(dir) => dir.join("metadata"),
        None => {
            staging = tempfile::tempdir().context("creating a staging directory")?;
            for entry in &manifest.tables {
                let file = staging.path().join(format!("{}.jsonl", entry.table));
                download(&source, &metadata_location(&entry.table), &file)
                    .await
                    .with_context(|| format!("downloading the {} rows from {from}", entry.table))?;
            }
            staging.path().to_path_buf()
        }
    };
    let skipped: BTreeSet<&str> = manifest
        .blobs
        .missing_objects
        .iter()
        .map(String::as_str)
        .collect();
    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            insert_all!(&mut *tx, &metadata_dir, &plans, &manifest);
            put_objects(blobs, &metadata_dir, &source, &skipped).await?;
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            insert_all!(&mut *tx, &metadata_dir, &plans, &manifest);
            for table in TABLES.iter().filter(|t| t.identity) {
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', 'id'), \
                     COALESCE(MAX(id), 0) + 1, false) FROM {0}",
                    table.name
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
            }
            put_objects(blobs, &metadata_dir, &source, &skipped).await?;
            tx.commit().await?;
        }
    }
    Ok(manifest)
}

/// What the metadata dump found.
struct Snapshot {
    schema_version: i64,
    counts: Vec<TableCount>,
    /// (blob id, object key) of every blob row.
    objects: Vec<(String, String)>,
    key_ids: BTreeSet<String>,
}

/// Dumps every table inside one read-only transaction (one snapshot for all tables); rows
/// stream from the open transaction straight into the files.
async fn dump_metadata(db: &Db, dir: &Path) -> anyhow::Result<Snapshot> {
    let plans = check_schema(db).await?;
    let mut snapshot = Snapshot {
        schema_version: 0,
        counts: Vec::new(),
        objects: Vec::new(),
        key_ids: BTreeSet::new(),
    };
    match db {
        Db::Sqlite(pool) => {
            // A deferred transaction: its first read pins one WAL snapshot for all the others.
            let mut tx = pool.begin().await?;
            dump_all!(&mut *tx, dir, plans, snapshot);
            tx.rollback().await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            dump_all!(&mut *tx, dir, plans, snapshot);
            tx.rollback().await?;
        }
    }
    Ok(snapshot)
}

/// Dumps all tables through `$conn` (a `&mut` connection of either database) into `$dir`,
/// filling `$snapshot`. A macro because rows of the two drivers are different types.
macro_rules! dump_all {
    ($conn:expr, $dir:expr, $plans:expr, $snapshot:expr) => {{
        use futures::TryStreamExt;
        use sqlx::Row;
        $snapshot.schema_version =
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one($conn)
                .await?
                .unwrap_or(0);
        for plan in &$plans {
            let table = plan.table;
            let path = $dir.join(format!("{}.jsonl", table.name));
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let sql = plan.select_sql();
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch($conn);
            let mut count = 0u64;
            while let Some(row) = rows.try_next().await? {
                let mut object = Map::new();
                for (index, (column, kind)) in plan.columns.iter().enumerate() {
                    let value = match kind {
                        Kind::Int => json_opt(row.try_get::<Option<i64>, _>(index)?),
                        Kind::Int32 => json_opt(row.try_get::<Option<i32>, _>(index)?),
                        Kind::Bool => json_opt(row.try_get::<Option<bool>, _>(index)?),
                        Kind::Text => json_opt(row.try_get::<Option<String>, _>(index)?),
                        Kind::Bytes => json_opt(
                            row.try_get::<Option<Vec<u8>>, _>(index)?
                                .map(|b| b64().encode(b)),
                        ),
                        Kind::Time => json_opt(
                            row.try_get::<Option<DateTime<Utc>>, _>(index)?
                                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                        ),
                    };
                    object.insert((*column).to_string(), value);
                }
                note_row(table, &object, &mut $snapshot)?;
                serde_json::to_writer(&mut out, &object)?;
                out.write_all(b"\n")?;
                count += 1;
            }
            drop(rows);
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            $snapshot.counts.push(TableCount {
                table: table.name.to_string(),
                rows: count,
            });
        }
    }};
}
use dump_all;

/// Inserts every table's rows from `$dir` through `$conn`, checking row counts against the
/// manifest.
macro_rules! insert_all {
    ($conn:expr, $dir:expr, $plans:expr, $manifest:expr) => {{
        for entry in &$manifest.tables {
            let Some(plan) = $plans.iter().find(|p| p.table.name == entry.table) else {
                bail!("unknown table {}", entry.table);
            };
            let table = plan.table;
            let sql = plan.insert_sql();
            let path = $dir.join(format!("{}.jsonl", table.name));
            let mut count = 0u64;
            for line in open_lines(&path)? {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let object: Map<String, Value> = serde_json::from_str(&line)
                    .with_context(|| format!("{}: line {}", path.display(), count + 1))?;
                if let Some(column) = object
                    .keys()
                    .find(|k| !plan.columns.iter().any(|(c, _)| c == k))
                {
                    bail!(
                        "the backup has column {}.{column} that this database lacks",
                        table.name
                    );
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for (column, kind) in &plan.columns {
                    let value = object.get(*column).unwrap_or(&Value::Null);
                    let what = || format!("{}.{column} in line {}", table.name, count + 1);
                    query = match kind {
                        Kind::Int => query.bind(opt_i64(value).with_context(what)?),
                        Kind::Int32 => query.bind(
                            opt_i64(value)
                                .with_context(what)?
                                .map(i32::try_from)
                                .transpose()
                                .with_context(what)?,
                        ),
                        Kind::Bool => query.bind(opt_bool(value).with_context(what)?),
                        Kind::Text => query.bind(opt_str(value).with_context(what)?),
                        Kind::Bytes => query.bind(
                            opt_str(value)
                                .with_context(what)?
                                .map(|s| b64().decode(s))
                                .transpose()
                                .with_context(what)?,
                        ),
                        Kind::Time => query.bind(
                            opt_str(value)
                                .with_context(what)?
                                .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.to_utc()))
                                .transpose()
                                .with_context(what)?,
                        ),
                    };
                }
                query
                    .execute($conn)
                    .await
                    .with_context(|| format!("restoring {} line {}", table.name, count + 1))?;
                count += 1;
            }
            ensure!(
                count == entry.rows,
                "{} has {count} rows but the manifest says {}",
                path.display(),
                entry.rows
            );
        }
    }};
}
use insert_all;

fn json_opt<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, Into::into)
}

fn opt_i64(value: &Value) -> anyhow::Result<Option<i64>> {
    match value {
        Value::Null => Ok(None),
        v => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| anyhow!("not an integer")),
    }
}

fn opt_bool(value: &Value) -> anyhow::Result<Option<bool>> {
    match value {
        Value::Null => Ok(None),
        v => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| anyhow!("not a boolean")),
    }
}

fn opt_str(value: &Value) -> anyhow::Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(anyhow!("not a string")),
    }
}

/// Remembers the blobs and key ids a dumped row needs.
fn note_row(
    table: &Table,
    row: &Map<String, Value>,
    snapshot: &mut Snapshot,
) -> anyhow::Result<()> {
    let text = |column: &str| {
        row.get(column)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}.{column} is not text", table.name))
    };
    match table.name {
        "blobs" => {
            snapshot.objects.push((text("id")?, text("object_key")?));
            snapshot.key_ids.insert(text("key_id")?);
        }
        "login_keys" => {
            snapshot.key_ids.insert(text("master_key_id")?);
        }
        _ => {}
    }
    Ok(())
}

/// Puts the objects of every blob row in the backup (those not recorded as missing).
async fn put_objects(
    blobs: &BlobStore,
    metadata_dir: &Path,
    source: &Target,
    skipped: &BTreeSet<&str>,
) -> anyhow::Result<()> {
    let path = metadata_dir.join("blobs.jsonl");
    for line in open_lines(&path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: BTreeMap<String, Value> = serde_json::from_str(&line)?;
        let field = |name: &str| {
            row.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("a blobs row without {name}"))
        };
        let (id, object_key) = (field("id")?, field("object_key")?);
        if skipped.contains(id) {
            continue;
        }
        let location = object_location(object_key)?;
        let bytes = async { source.store.get(&location).await?.bytes().await }
            .await
            .with_context(|| format!("reading object of blob {id} ({location})"))?;
        blobs
            .raw_put(object_key, bytes)
            .await
            .with_context(|| format!("storing object {object_key}"))?;
    }
    Ok(())
}

fn open_lines(path: &Path) -> anyhow::Result<std::io::Lines<std::io::BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file).lines())
}

/// `metadata/<table>.jsonl`.
fn metadata_location(table: &str) -> ObjectPath {
    ObjectPath::from(format!("metadata/{table}.jsonl"))
}

/// `objects/<object_key>`, refusing keys that would leave the `objects/` directory.
fn object_location(object_key: &str) -> anyhow::Result<ObjectPath> {
    for part in object_key.split('/') {
        ensure!(
            !part.is_empty() && part != "." && part != ".." && !part.contains('\\'),
            "unexpected object key {object_key:?}"
        );
    }
    Ok(ObjectPath::from(format!("objects/{object_key}")))
}

/// Writes a new object, never over an existing one (a second backup racing into the same
/// target fails rather than mixing); large ones go to remote stores in parts.
async fn put_new(target: &Target, location: &ObjectPath, bytes: Bytes) -> anyhow::Result<()> {
    if target.multipart() && bytes.len() > PART_SIZE {
        let upload = target.store.put_multipart(location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(bytes);
        writer.finish().await?;
    } else {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        target
            .store
            .put_opts(location, PutPayload::from(bytes), options)
            .await?;
    }
    Ok(())
}

/// Uploads a staged file; a large one goes in parts, read as they are sent, so it is never
/// held in memory whole.
async fn upload_file(target: &Target, location: &ObjectPath, file: &Path) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let len = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if !target.multipart() || len <= PART_SIZE as u64 {
        let bytes = tokio::fs::read(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        return put_new(target, location, Bytes::from(bytes)).await;
    }
    let upload = target.store.put_multipart(location).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let sent = async {
        let mut input = tokio::fs::File::open(file).await?;
        let mut buf = vec![0; 1024 * 1024];
        loop {
            let read = input.read(&mut buf).await?;
            if read == 0 {
                return anyhow::Ok(());
            }
            // Two parts in flight at most: memory stays bounded whatever the file's size.
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..read]);
        }
    }
    .await;
    match sent {
        Ok(()) => {
            writer.finish().await?;
            Ok(())
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "could not abort a multipart upload");
            }
            Err(e)
        }
    }
}

/// Downloads an object into a new local file, chunk by chunk.
async fn download(source: &Target, location: &ObjectPath, file: &Path) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut chunks = source.store.get(location).await?.into_stream();
    let mut out = tokio::fs::File::create(file)
        .await
        .with_context(|| format!("creating {}", file.display()))?;
    while let Some(chunk) = chunks.try_next().await? {
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    Ok(())
}

/// Makes a directory's entries durable (the files themselves were synced when written).
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `to` must not exist or be an empty directory.
fn prepare_target(to: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            ensure!(
                entries.next().is_none(),
                "{} is not empty; back up into a new or empty directory",
                to.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))
        }
        Err(e) => Err(e).with_context(|| format!("{} is not a usable directory", to.display())),
    }
}

async fn schema_version(db: &Db) -> anyhow::Result<i64> {
    const SQL: &str = "SELECT MAX(version) FROM _sqlx_migrations";
    let version = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, Option<i64>>(SQL)
        .fetch_one(p).await)?;
    Ok(version.unwrap_or(0))
}

/// Refuses a target that already holds data.
async fn ensure_empty(db: &Db) -> anyhow::Result<()> {
    for table in ["orgs", "users", "blobs"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let count = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, i64>(
            sqlx::AssertSqlSafe(sql.clone())).fetch_one(p).await)?;
        ensure!(
            count == 0,
            "the target installation is not empty ({table} has {count} rows); restore only \
             onto a fresh database and blob store"
        );
    }
    Ok(())
}

/// The columns of every table that the database has. Refuses a database with tables or
/// columns this build does not know (a row copy that silently dropped them would not be
/// restorable).
async fn check_schema(db: &Db) -> anyhow::Result<Vec<Plan>> {
    let (tables_sql, columns_sql) = match db {
        Db::Sqlite(_) => (
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
            "SELECT name FROM pragma_table_info($1)",
        ),
        Db::Postgres(_) => (
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> '_sqlx_migrations'",
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        ),
    };
    let found = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, String>(tables_sql)
        .fetch_all(p).await)?;
    for name in &found {
        ensure!(
            TABLES.iter().any(|t| t.name == name),
            "table {name} is not covered by this build's backup"
        );
    }
    let mut plans = Vec::new();
    for table in TABLES {
        let live = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, String>(columns_sql)
            .bind(table.name).fetch_all(p).await)?;
        ensure!(!live.is_empty(), "table {} is missing", table.name);
        for column in &live {
            ensure!(
                table.columns.iter().any(|(c, _)| c == column),
                "column {}.{column} is not covered by this build's backup",
                table.name
            );
        }
        let columns = table
            .columns
            .iter()
            .filter(|(c, _)| live.iter().any(|l| l == c))
            .copied()
            .collect();
        plans.push(Plan { table, columns });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_stay_inside_the_objects_directory() {
        assert_eq!(
            object_location("state/1/abc").unwrap().as_ref(),
            "objects/state/1/abc"
        );
        for bad in [
            "../x",
            "state/../../x",
            "/abs",
            "a//b",
            "a/./b",
            "",
            "a\\..\\b",
        ] {
            assert!(object_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_and_urls_name_their_location() {
        let none: [(&str, &str); 0] = [];
        let local = |s: &str| match Location::parse_with_options(s, none).unwrap().0 {
            Place::Dir(dir) => dir,
            Place::Remote { url, .. } => panic!("{s} parsed as remote {url}"),
        };
        assert_eq!(local("backups/2026-01-02"), Path::new("backups/2026-01-02"));
        assert_eq!(local("/srv/backup"), Path::new("/srv/backup"));
        assert_eq!(local("file:///srv/backup"), Path::new("/srv/backup"));
        assert_eq!(local("c:backup"), Path::new("c:backup"));

        let s3 = [
            ("aws_region", "eu-west-1"),
            ("aws_endpoint", "http://127.0.0.1:9"),
        ];
        let remote = Location::parse_with_options("s3://bucket/nightly?x=1", s3).unwrap();
        assert!(matches!(remote.0, Place::Remote { .. }));
        assert_eq!(remote.to_string(), "s3://bucket/nightly");

        for bad in ["memory://", "ftp://host/x", "file://host/x"] {
            assert!(Location::parse_with_options(bad, none).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_large_staged_file_goes_up_in_parts_and_comes_back_whole() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let target = Target {
            store: store.clone(),
            dir: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up.jsonl");
        let content: Vec<u8> = (0..2 * PART_SIZE + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&file, &content).unwrap();
        let location = metadata_location("big");
        upload_file(&target, &location, &file).await.unwrap();
        let stored = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert!(stored == content.as_slice());
        let down = dir.path().join("down.jsonl");
        download(&target, &location, &down).await.unwrap();
        assert!(std::fs::read(&down).unwrap() == content);
        // Written once: a second upload to the same place fails.
        let small = dir.path().join("small.jsonl");
        std::fs::write(&small, b"{}\n").unwrap();
        upload_file(&target, &metadata_location("small"), &small)
            .await
            .unwrap();
        assert!(
            upload_file(&target, &metadata_location("small"), &small)
                .await
                .is_err()
        );
    }

    #[test]
    fn every_table_has_a_stable_order_and_matching_insert() {
        for table in TABLES {
            let plan = Plan {
                table,
                columns: table.columns.to_vec(),
            };
            assert!(plan.select_sql().contains(" ORDER BY "), "{}", table.name);
            let params = table.columns.len();
            assert!(
                plan.insert_sql().ends_with(&format!("${params})")),
                "{}",
                table.name
            );
        }
    }
}
