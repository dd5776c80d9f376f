//! SQL for modules and module versions. Every statement runs on both databases; listings are
//! ordered on the primary key and join the denormalised latest version, so a page costs
//! O(page).

use chrono::{DateTime, Utc};

use super::address::{ModuleVersion, latest};
use crate::error::{Error, Result};
use crate::infra::blob::StoredBlob;
use crate::infra::crypto::Envelope;
use crate::infra::db::{Db, on_pool};

/// A version together with its module.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub namespace: String,
    pub name: String,
    pub system: String,
    pub module_downloads: i64,
    pub version: String,
    pub sha256: String,
    pub size: i64,
    pub description: String,
    pub metadata: String,
    pub created_at: DateTime<Utc>,
    pub blob_id: String,
}

/// A module with its latest version, as listings show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleSummaryRow {
    pub namespace: String,
    pub name: String,
    pub system: String,
    pub downloads: i64,
    pub version: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

/// A version about to be recorded.
pub struct NewVersion<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub system: &'a str,
    pub version: &'a str,
    pub blob: &'a StoredBlob,
    pub sha256: &'a str,
    pub size: i64,
    pub description: &'a str,
    pub metadata: &'a str,
    pub created_by: &'a str,
}

/// Which modules a listing may show and how it narrows them.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Every module (the system principal); otherwise only `caller_orgs` and public ones.
    pub everything: bool,
    pub caller_orgs: Vec<i64>,
    pub org_id: Option<i64>,
    pub name: Option<String>,
    pub system: Option<String>,
    /// A lowercase `LIKE` pattern matched against namespace, name and description.
    pub pattern: Option<String>,
}

const VERSION_COLUMNS: &str = "o.name AS namespace, m.name, m.system, \
    m.downloads AS module_downloads, v.version, v.sha256, v.size, v.description, v.metadata, \
    v.created_at, v.blob_id";

/// One version of a module, by canonical version string.
pub async fn find_version(
    db: &Db,
    org_id: i64,
    name: &str,
    system: &str,
    version: &str,
) -> Result<Option<VersionRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM modules m JOIN orgs o ON o.id = m.org_id \
          JOIN module_versions v ON v.module_id = m.id \
          WHERE m.org_id = $1 AND m.name = $2 AND m.system = $3 AND v.version = $4"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, VersionRow>(SQL)
        .bind(org_id).bind(name).bind(system).bind(version).fetch_optional(p).await)?)
}

/// The stored archive of one version.
pub async fn find_version_blob(
    db: &Db,
    org_id: i64,
    name: &str,
    system: &str,
    version: &str,
) -> Result<Option<StoredBlob>> {
    const SQL: &str = "SELECT b.id, b.object_key, b.key_id, b.wrapped_key \
        FROM modules m JOIN module_versions v ON v.module_id = m.id \
        JOIN blobs b ON b.id = v.blob_id \
        WHERE m.org_id = $1 AND m.name = $2 AND m.system = $3 AND v.version = $4";
    let found: Option<(String, String, String, Vec<u8>)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(org_id).bind(name).bind(system).bind(version).fetch_optional(p).await)?;
    Ok(
        found.map(|(id, object_key, key_id, wrapped_key)| StoredBlob {
            id,
            object_key,
            envelope: Envelope {
                key_id,
                wrapped_key,
            },
        }),
    )
}

/// The latest version of a module.
pub async fn find_latest(
    db: &Db,
    org_id: i64,
    name: &str,
    system: &str,
) -> Result<Option<VersionRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM modules m JOIN orgs o ON o.id = m.org_id \
          JOIN module_versions v ON v.id = m.latest_version_id \
          WHERE m.org_id = $1 AND m.name = $2 AND m.system = $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, VersionRow>(SQL)
        .bind(org_id).bind(name).bind(system).fetch_optional(p).await)?)
}

/// Every version string of a module (in no particular order), or `None` when there is no
/// such module.
pub async fn list_versions(
    db: &Db,
    org_id: i64,
    name: &str,
    system: &str,
) -> Result<Option<Vec<String>>> {
    const SQL: &str = "SELECT m.id, v.version FROM modules m \
        LEFT JOIN module_versions v ON v.module_id = m.id \
        WHERE m.org_id = $1 AND m.name = $2 AND m.system = $3";
    let rows: Vec<(i64, Option<String>)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(org_id).bind(name).bind(system).fetch_all(p).await)?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(rows.into_iter().filter_map(|(_, v)| v).collect()))
}

/// The systems a module name is published for in one namespace.
pub async fn list_systems(db: &Db, org_id: i64, name: &str) -> Result<Vec<String>> {
    const SQL: &str = "SELECT system FROM modules WHERE org_id = $1 AND name = $2 \
        AND latest_version_id IS NOT NULL ORDER BY system";
    let rows: Vec<(String,)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(org_id).bind(name).fetch_all(p).await)?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// `,1,2,`: a list of ids one SQL text can test on both databases.
fn org_list(ids: &[i64]) -> String {
    let mut list = String::from(",");
    for id in ids {
        list.push_str(&format!("{id},"));
    }
    list
}

/// Modules with their latest version, oldest module first.
pub async fn list_modules(
    db: &Db,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<ModuleSummaryRow>> {
    const SQL: &str = "SELECT o.name AS namespace, m.name, m.system, m.downloads, v.version, \
        v.description, v.created_at FROM modules m JOIN orgs o ON o.id = m.org_id \
        JOIN module_versions v ON v.id = m.latest_version_id \
        LEFT JOIN registry_namespaces ns ON ns.org_id = m.org_id \
        WHERE ($1 OR $2 LIKE '%,' || CAST(m.org_id AS TEXT) || ',%' OR COALESCE(ns.public, FALSE)) \
        AND ($3 IS NULL OR m.org_id = $3) AND ($4 IS NULL OR m.name = $4) \
        AND ($5 IS NULL OR m.system = $5) \
        AND ($6 IS NULL OR m.name LIKE $6 ESCAPE '\\' OR LOWER(o.name) LIKE $6 ESCAPE '\\' \
             OR LOWER(v.description) LIKE $6 ESCAPE '\\') \
        ORDER BY m.id LIMIT $7 OFFSET $8";
    Ok(on_pool!(db, p => sqlx::query_as::<_, ModuleSummaryRow>(SQL)
        .bind(filter.everything)
        .bind(org_list(&filter.caller_orgs))
        .bind(filter.org_id)
        .bind(filter.name.as_deref())
        .bind(filter.system.as_deref())
        .bind(filter.pattern.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)?)
}

/// Points `latest_version_id` at the latest remaining version, or removes a module that has
/// none left. Runs inside the caller's transaction.
macro_rules! refresh_latest {
    ($tx:expr, $module_id:expr, $now:expr) => {{
        const VERSIONS: &str = "SELECT id, version FROM module_versions WHERE module_id = $1";
        const SET_LATEST: &str =
            "UPDATE modules SET latest_version_id = $1, updated_at = $2 WHERE id = $3";
        const DELETE_MODULE: &str = "DELETE FROM modules WHERE id = $1";
        let rows: Vec<(i64, String)> = sqlx::query_as(VERSIONS)
            .bind($module_id)
            .fetch_all(&mut *$tx)
            .await?;
        let parsed: Vec<(ModuleVersion, i64)> = rows
            .into_iter()
            .filter_map(|(id, v)| ModuleVersion::parse(&v).ok().map(|v| (v, id)))
            .collect();
        match latest(parsed.iter().map(|(v, id)| (v, *id))) {
            Some(id) => {
                sqlx::query(SET_LATEST)
                    .bind(id)
                    .bind($now)
                    .bind($module_id)
                    .execute(&mut *$tx)
                    .await?;
            }
            None => {
                sqlx::query(DELETE_MODULE)
                    .bind($module_id)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}

/// Records a version (its blob row, its module row if new) in one transaction. A version
/// that already exists is a conflict.
pub async fn insert_version(db: &Db, new: NewVersion<'_>, now: DateTime<Utc>) -> Result<()> {
    // The upsert comes first so the transaction holds SQLite's write lock (and PostgreSQL's
    // row lock on the module) from its first statement: concurrent publishes of one module
    // are serialised and the latest version computed below is current.
    const UPSERT_MODULE: &str = "INSERT INTO modules (org_id, name, system, created_at, updated_at) \
        VALUES ($1, $2, $3, $4, $4) ON CONFLICT (org_id, name, system) \
        DO UPDATE SET updated_at = $4 RETURNING id";
    const INSERT_VERSION: &str = "INSERT INTO module_versions (module_id, version, blob_id, \
        sha256, size, description, metadata, created_at, created_by) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

    // An async block, so that `?` stops here and a unique violation can become a 409.
    let result: std::result::Result<(), sqlx::Error> = on_pool!(db, p => async {
        let mut tx = p.begin().await?;
        let (module_id,): (i64,) = sqlx::query_as(UPSERT_MODULE)
            .bind(new.org_id)
            .bind(new.name)
            .bind(new.system)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        crate::infra::blob::insert_blob_row!(&mut *tx, new.blob, new.size, new.sha256, now).await?;
        sqlx::query(INSERT_VERSION)
            .bind(module_id)
            .bind(new.version)
            .bind(&new.blob.id)
            .bind(new.sha256)
            .bind(new.size)
            .bind(new.description)
            .bind(new.metadata)
            .bind(now)
            .bind(new.created_by)
            .execute(&mut *tx)
            .await?;
        refresh_latest!(tx, module_id, now);
        tx.commit().await
    }.await);
    result.map_err(|e| {
        Error::from(e).or_conflict(|| format!("version {} already exists", new.version))
    })
}

/// Deletes a version and its blob row; returns the blob so its object can be removed.
pub async fn delete_version(
    db: &Db,
    org_id: i64,
    name: &str,
    system: &str,
    version: &str,
    now: DateTime<Utc>,
) -> Result<Option<StoredBlob>> {
    // Touching the module first takes the write lock, as in `insert_version`.
    const TOUCH: &str =
        "UPDATE modules SET updated_at = $1 WHERE org_id = $2 AND name = $3 AND system = $4";
    const FIND: &str = "SELECT v.id, v.module_id, b.id, b.object_key, b.key_id, b.wrapped_key \
        FROM modules m JOIN module_versions v ON v.module_id = m.id \
        JOIN blobs b ON b.id = v.blob_id \
        WHERE m.org_id = $1 AND m.name = $2 AND m.system = $3 AND v.version = $4";
    const DELETE_VERSION: &str = "DELETE FROM module_versions WHERE id = $1";
    const DELETE_BLOB: &str = "DELETE FROM blobs WHERE id = $1";
    type Found = (i64, i64, String, String, String, Vec<u8>);

    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(TOUCH).bind(now).bind(org_id).bind(name).bind(system)
            .execute(&mut *tx).await?;
        let found: Option<Found> = sqlx::query_as(FIND)
            .bind(org_id).bind(name).bind(system).bind(version)
            .fetch_optional(&mut *tx).await?;
        let Some((version_id, module_id, blob_id, object_key, key_id, wrapped_key)) = found else {
            tx.rollback().await?;
            return Ok(None);
        };
        // The latest pointer must move before the row it points at goes away.
        sqlx::query("UPDATE modules SET latest_version_id = NULL WHERE id = $1")
            .bind(module_id).execute(&mut *tx).await?;
        sqlx::query(DELETE_VERSION).bind(version_id).execute(&mut *tx).await?;
        sqlx::query(DELETE_BLOB).bind(&blob_id).execute(&mut *tx).await?;
        refresh_latest!(tx, module_id, now);
        tx.commit().await?;
        Ok(Some(StoredBlob {
            id: blob_id,
            object_key,
            envelope: Envelope { key_id, wrapped_key },
        }))
    })
}

/// Adds flushed download counts to a version and its module. False when no version has
/// that blob (it was deleted, or it belongs to another database in this process).
pub async fn add_downloads(db: &Db, blob_id: &str, count: i64) -> Result<bool> {
    const VERSION: &str = "UPDATE module_versions SET downloads = downloads + $1 \
        WHERE blob_id = $2 RETURNING module_id";
    const MODULE: &str = "UPDATE modules SET downloads = downloads + $1 WHERE id = $2";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        let module: Option<(i64,)> = sqlx::query_as(VERSION)
            .bind(count).bind(blob_id).fetch_optional(&mut *tx).await?;
        let Some((module_id,)) = module else {
            tx.rollback().await?;
            return Ok(false);
        };
        sqlx::query(MODULE).bind(count).bind(module_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}
