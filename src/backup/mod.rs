//! `terrace backup` and `terrace restore`: a consistent, restorable snapshot of one
//! installation, taken while the server runs.
//!
//! A backup directory holds
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

mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail, ensure};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::blob::BlobStore;
use crate::db::Db;
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

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Writes a backup of `db` and `blobs` into `to`, which must be empty or not exist.
pub async fn backup(db: &Db, blobs: &BlobStore, to: &Path) -> anyhow::Result<Manifest> {
    prepare_target(to)?;
    let metadata_dir = to.join("metadata");
    std::fs::create_dir_all(&metadata_dir)
        .with_context(|| format!("creating {}", metadata_dir.display()))?;

    let snapshot = dump_metadata(db, &metadata_dir).await?;

    let mut totals = BlobTotals::default();
    let objects_dir = to.join("objects");
    for (blob_id, object_key) in &snapshot.objects {
        let target = object_path(&objects_dir, object_key)?;
        match blobs.raw_get(object_key).await? {
            Some(bytes) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                write_synced(&target, &bytes)?;
                totals.count += 1;
                totals.bytes += bytes.len() as u64;
            }
            None => {
                // Gone with its row (a module version deleted since the snapshot) is fine;
                // gone while its row remains is a damaged store, and no backup to trust.
                const SQL: &str = "SELECT COUNT(*) FROM blobs WHERE id = $1";
                let rows = crate::db::on_pool!(db, p => sqlx::query_scalar::<_, i64>(SQL)
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
    write_synced(&to.join("manifest.json"), &text)?;
    Ok(manifest)
}

/// Reads a backup's manifest, checking its format.
pub fn read_manifest(from: &Path) -> anyhow::Result<Manifest> {
    let path = from.join("manifest.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (an unfinished backup has no manifest)",
            path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    ensure!(
        manifest.format == FORMAT,
        "{} is not a Terrace backup manifest",
        path.display()
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
pub async fn restore(db: &Db, blobs: &BlobStore, from: &Path) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(from)?;
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

    let metadata_dir = from.join("metadata");
    let objects_dir = from.join("objects");
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
            put_objects(blobs, &metadata_dir, &objects_dir, &skipped).await?;
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
            put_objects(blobs, &metadata_dir, &objects_dir, &skipped).await?;
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
    objects_dir: &Path,
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
        let file = object_path(objects_dir, object_key)?;
        let bytes = std::fs::read(&file)
            .with_context(|| format!("reading object of blob {id} ({})", file.display()))?;
        blobs
            .raw_put(object_key, bytes::Bytes::from(bytes))
            .await
            .with_context(|| format!("storing object {object_key}"))?;
    }
    Ok(())
}

fn open_lines(path: &Path) -> anyhow::Result<std::io::Lines<std::io::BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file).lines())
}

/// `objects/<object_key>`, refusing keys that would leave the directory.
fn object_path(objects_dir: &Path, object_key: &str) -> anyhow::Result<PathBuf> {
    let mut path = objects_dir.to_path_buf();
    for part in object_key.split('/') {
        ensure!(
            !part.is_empty() && part != "." && part != ".." && !part.contains('\\'),
            "unexpected object key {object_key:?}"
        );
        path.push(part);
    }
    Ok(path)
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
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
    let version = crate::db::on_pool!(db, p => sqlx::query_scalar::<_, Option<i64>>(SQL)
        .fetch_one(p).await)?;
    Ok(version.unwrap_or(0))
}

/// Refuses a target that already holds data.
async fn ensure_empty(db: &Db) -> anyhow::Result<()> {
    for table in ["orgs", "users", "blobs"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let count = crate::db::on_pool!(db, p => sqlx::query_scalar::<_, i64>(
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
    let found = crate::db::on_pool!(db, p => sqlx::query_scalar::<_, String>(tables_sql)
        .fetch_all(p).await)?;
    for name in &found {
        ensure!(
            TABLES.iter().any(|t| t.name == name),
            "table {name} is not covered by this build's backup"
        );
    }
    let mut plans = Vec::new();
    for table in TABLES {
        let live = crate::db::on_pool!(db, p => sqlx::query_scalar::<_, String>(columns_sql)
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
        let dir = Path::new("/backup/objects");
        assert_eq!(
            object_path(dir, "state/1/abc").unwrap(),
            Path::new("/backup/objects/state/1/abc")
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
            assert!(object_path(dir, bad).is_err(), "{bad}");
        }
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
