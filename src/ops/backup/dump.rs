//! Writing a backup: every table's rows from one snapshot, then the objects of the blobs in
//! it, then the manifest.
//!
//! Objects are immutable and written before the rows that name them commit, so copying the
//! objects of the snapshot's blobs after reading the metadata is consistent. A blob deleted in
//! between (module version delete: row and object gone) is recorded in `missing_objects` and
//! skipped; an object missing while its row still exists fails the backup.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, anyhow, ensure};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use serde_json::{Map, Value};

use super::location::{Location, sync_dir};
use super::schema::{Kind, Schema, Table};
use super::values::Driver;
use super::{
    BlobTotals, FORMAT, FORMAT_VERSION, MANIFEST, Manifest, TableCount, metadata_file,
    metadata_location, object_location,
};
use crate::infra::blob::RawObjects;
use crate::infra::db::Db;

/// Writes a backup of `db` and `blobs` to `to`: a directory that must be empty or not exist,
/// or an object-store prefix that must hold no object.
pub async fn backup(db: &Db, blobs: &RawObjects, to: &Location) -> anyhow::Result<Manifest> {
    // A schema the backup cannot copy whole is refused before anything is written.
    let schema = Schema::read(db).await?;
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

    let snapshot = match db {
        Db::Sqlite(pool) => {
            // A deferred transaction: its first read pins one WAL snapshot for all the others.
            let mut tx = pool.begin().await?;
            let snapshot = dump_tables::<sqlx::Sqlite>(&mut tx, &schema, &metadata_dir).await?;
            tx.rollback().await?;
            snapshot
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let snapshot = dump_tables::<sqlx::Postgres>(&mut tx, &schema, &metadata_dir).await?;
            tx.rollback().await?;
            snapshot
        }
    };
    if target.dir.is_some() {
        sync_dir(&metadata_dir)?;
    } else {
        for entry in &snapshot.counts {
            let file = metadata_file(&metadata_dir, &entry.table);
            target
                .upload(&metadata_location(&entry.table), &file)
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
                target
                    .put(&location, bytes)
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
    target
        .put(&ObjectPath::from(MANIFEST), Bytes::from(text))
        .await
        .with_context(|| format!("writing {MANIFEST} to {to}"))?;
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

/// Dumps every table through `conn`, a transaction holding one snapshot; rows stream from it
/// straight into the files.
async fn dump_tables<D: Driver>(
    conn: &mut D::Connection,
    schema: &Schema,
    dir: &Path,
) -> anyhow::Result<Snapshot>
where
    for<'c> &'c mut D::Connection: sqlx::Executor<'c, Database = D>,
    D::Arguments: sqlx::IntoArguments<D>,
{
    let version = sqlx::query::<D>("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut *conn)
        .await?;
    let mut snapshot = Snapshot {
        schema_version: D::cell(&version, 0, Kind::Int64)?.as_i64().unwrap_or(0),
        counts: Vec::new(),
        objects: Vec::new(),
        key_ids: BTreeSet::new(),
    };
    for table in &schema.tables {
        let path = metadata_file(dir, &table.name);
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        let mut rows = sqlx::query::<D>(sqlx::AssertSqlSafe(table.select_sql())).fetch(&mut *conn);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await? {
            let mut object = Map::new();
            for (index, column) in table.columns.iter().enumerate() {
                let value = D::cell(&row, index, column.kind)
                    .with_context(|| format!("reading {}.{}", table.name, column.name))?;
                object.insert(column.name.clone(), value);
            }
            note_row(table, &object, &mut snapshot)?;
            serde_json::to_writer(&mut out, &object)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        drop(rows);
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        snapshot.counts.push(TableCount {
            table: table.name.clone(),
            rows: count,
        });
    }
    Ok(snapshot)
}

/// Remembers the objects and master keys a dumped row needs: the two things a backup copies
/// or names beyond rows.
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
    match table.name.as_str() {
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
