//! Restoring a backup onto an empty installation: everything that can be checked is checked
//! first, then the objects are stored, then every row is inserted in one transaction, which
//! therefore never waits on the network.
//!
//! A restore that fails after the objects leaves objects no row names: the sweep removes them
//! after its grace period, and a second restore accepts them as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, anyhow, bail, ensure};
use serde_json::{Map, Value};

use super::location::{Location, Target};
use super::schema::{Schema, quote, schema_version};
use super::values::{Driver, param};
use super::{Manifest, manifest_of, metadata_file, metadata_location, object_location};
use crate::infra::blob::BlobStore;
use crate::infra::db::Db;

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
    let schema = Schema::read(db).await?;
    ensure_empty(db, &schema).await?;
    // The same schema version has the same tables; anything else is a damaged backup.
    let rows: BTreeMap<&str, u64> = manifest
        .tables
        .iter()
        .map(|t| (t.table.as_str(), t.rows))
        .collect();
    for table in rows.keys() {
        ensure!(
            schema.table(table).is_some(),
            "the backup holds table {table} that this installation does not have"
        );
    }
    for table in &schema.tables {
        ensure!(
            rows.contains_key(table.name.as_str()),
            "the backup lacks table {}",
            table.name
        );
    }

    // A local backup's metadata is read in place; an object store's is downloaded first
    // (only tables checked above, so names stay inside the staging directory).
    let staging;
    let metadata_dir = match &source.dir {
        Some(dir) => dir.join("metadata"),
        None => {
            staging = tempfile::tempdir().context("creating a staging directory")?;
            for table in &schema.tables {
                let file = metadata_file(staging.path(), &table.name);
                source
                    .download(&metadata_location(&table.name), &file)
                    .await
                    .with_context(|| format!("downloading the {} rows from {from}", table.name))?;
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
    if schema.table("blobs").is_some() {
        put_objects(blobs, &metadata_dir, &source, &skipped).await?;
    }

    match db {
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            insert_rows::<sqlx::Sqlite>(&mut tx, &schema, &metadata_dir, &rows).await?;
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            insert_rows::<sqlx::Postgres>(&mut tx, &schema, &metadata_dir, &rows).await?;
            // Rows came with their ids: the sequences continue after them. (SQLite moves
            // AUTOINCREMENT past explicit ids by itself.)
            for table in &schema.tables {
                for column in &table.sequenced {
                    let sql = format!(
                        "SELECT setval(pg_get_serial_sequence($1, $2), \
                         COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                        quote(column),
                        quote(&table.name)
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&table.name)
                        .bind(column)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| {
                            format!("moving the sequence of {}.{column}", table.name)
                        })?;
                }
            }
            tx.commit().await?;
        }
    }
    Ok(manifest)
}

/// Refuses a target that already holds data.
async fn ensure_empty(db: &Db, schema: &Schema) -> anyhow::Result<()> {
    for table in &schema.tables {
        // Whether there is a row, without counting a large table's.
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {} LIMIT 1) AS probe",
            quote(&table.name)
        );
        let found = crate::infra::db::on_pool!(db, p => sqlx::query_scalar::<_, i64>(
            sqlx::AssertSqlSafe(sql.clone())).fetch_one(p).await)?;
        ensure!(
            found == 0,
            "the target installation is not empty ({} has rows); restore only onto a fresh \
             database and blob store",
            table.name
        );
    }
    Ok(())
}

/// Stores the objects of every blob row in the backup (those not recorded as missing).
async fn put_objects(
    blobs: &BlobStore,
    metadata_dir: &Path,
    source: &Target,
    skipped: &BTreeSet<&str>,
) -> anyhow::Result<()> {
    let path = metadata_file(metadata_dir, "blobs");
    for line in open_lines(&path)? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Map<String, Value> = serde_json::from_str(&line)
            .with_context(|| format!("{} is not JSON lines", path.display()))?;
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
        let bytes = source
            .get(&location)
            .await
            .with_context(|| format!("reading object of blob {id} ({location})"))?
            .ok_or_else(|| anyhow!("the backup lacks the object of blob {id} ({location})"))?;
        blobs
            .raw_put(object_key, bytes)
            .await
            .with_context(|| format!("storing object {object_key}"))?;
    }
    Ok(())
}

/// Inserts every table's rows, in the schema's order (referenced tables first), checking row
/// counts against the manifest.
async fn insert_rows<D: Driver>(
    conn: &mut D::Connection,
    schema: &Schema,
    dir: &Path,
    rows: &BTreeMap<&str, u64>,
) -> anyhow::Result<()>
where
    for<'c> &'c mut D::Connection: sqlx::Executor<'c, Database = D>,
    D::Arguments: sqlx::IntoArguments<D>,
{
    for table in &schema.tables {
        let sql = table.insert_sql();
        let path = metadata_file(dir, &table.name);
        let mut count = 0u64;
        for line in open_lines(&path)? {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let line_no = count + 1;
            let object: Map<String, Value> = serde_json::from_str(&line)
                .with_context(|| format!("{}: line {line_no}", path.display()))?;
            if let Some(column) = object.keys().find(|k| table.column(k).is_none()) {
                bail!(
                    "the backup has column {}.{column} that this database lacks",
                    table.name
                );
            }
            let mut query = sqlx::query::<D>(sqlx::AssertSqlSafe(sql.clone()));
            for column in &table.columns {
                let value = object.get(&column.name).unwrap_or(&Value::Null);
                let value = param(column.kind, value)
                    .with_context(|| format!("{}.{} in line {line_no}", table.name, column.name))?;
                query = D::bind(query, value);
            }
            query
                .execute(&mut *conn)
                .await
                .with_context(|| format!("restoring {} line {line_no}", table.name))?;
            count += 1;
        }
        let expected = rows.get(table.name.as_str()).copied().unwrap_or_default();
        ensure!(
            count == expected,
            "{} has {count} rows but the manifest says {expected}",
            path.display()
        );
    }
    Ok(())
}

fn open_lines(path: &Path) -> anyhow::Result<std::io::Lines<std::io::BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file).lines())
}
