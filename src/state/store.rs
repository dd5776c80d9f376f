//! SQL for workspaces, state versions and locks. Every statement runs on both databases.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::infra::blob::{StoredBlob, insert_blob_row};
use crate::infra::crypto::Envelope;
use crate::infra::db::{Db, DurableCommits, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub id: i64,
    pub name: String,
    pub lineage_protection: bool,
    pub version_count: i64,
    pub updated_at: DateTime<Utc>,
    /// `None`: locks never go stale.
    pub lock_lease_seconds: Option<i64>,
    pub expire_stale_locks: bool,
    pub retain_versions: Option<i64>,
    pub retain_days: Option<i64>,
}

/// A state version together with where its bytes are.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub id: i64,
    pub version: i64,
    pub serial: Option<i64>,
    pub lineage: Option<String>,
    pub sha256: String,
    pub size: i64,
    pub source: String,
    pub run_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub blob_id: String,
    pub object_key: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

impl VersionRow {
    pub fn blob(&self) -> StoredBlob {
        StoredBlob {
            id: self.blob_id.clone(),
            object_key: self.object_key.clone(),
            envelope: Envelope {
                key_id: self.key_id.clone(),
                wrapped_key: self.wrapped_key.clone(),
            },
        }
    }
}

/// One row of the workspace listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceSummaryRow {
    pub id: i64,
    pub name: String,
    pub lineage_protection: bool,
    pub version_count: i64,
    pub serial: Option<i64>,
    pub size: Option<i64>,
    pub updated_at: DateTime<Utc>,
    /// Who wrote the current version.
    pub updated_by: Option<String>,
    pub lock_info: Option<Vec<u8>>,
    pub lock_renewed_at: Option<DateTime<Utc>>,
    pub lock_lease_seconds: Option<i64>,
    pub expire_stale_locks: bool,
    pub retain_versions: Option<i64>,
    pub retain_days: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LockRow {
    pub lock_id: String,
    pub info: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// Acquisition, or the holder's latest write or re-LOCK.
    pub renewed_at: DateTime<Utc>,
}

/// What a write decision looks at, read inside the write transaction.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WriteSnapshot {
    pub lineage_protection: bool,
    pub version_count: i64,
    pub current_serial: Option<i64>,
    pub current_lineage: Option<String>,
    pub current_sha256: Option<String>,
    pub lock_id: Option<String>,
    pub lock_info: Option<Vec<u8>>,
}

impl WriteSnapshot {
    /// The snapshot with the lock as held elsewhere (DynamoDB) instead of in `state_locks`.
    pub fn with_lock(&self, holder: Option<&LockRow>) -> WriteSnapshot {
        WriteSnapshot {
            lock_id: holder.map(|h| h.lock_id.clone()),
            lock_info: holder.map(|h| h.info.clone()),
            ..self.clone()
        }
    }
}

/// The outcome of a write decision.
pub enum Decision {
    /// Record a new version.
    Insert,
    /// The same bytes are already the current version (a retried write).
    AlreadyCurrent,
}

/// A version about to be recorded.
pub struct NewVersion<'a> {
    pub workspace_id: i64,
    pub serial: Option<i64>,
    pub lineage: Option<&'a str>,
    pub sha256: &'a str,
    pub size: i64,
    pub blob: &'a StoredBlob,
    pub source: &'a str,
    /// The run whose Terraform wrote the version.
    pub run_id: Option<i64>,
    pub created_by: &'a str,
    /// The lock ID whose lease the write renews, in the same transaction.
    pub renews_lock: Option<&'a str>,
}

const VERSION_COLUMNS: &str = "v.id, v.version, v.serial, v.lineage, v.sha256, v.size, v.source, \
    v.run_id, v.created_at, v.created_by, b.id AS blob_id, b.object_key, b.key_id, b.wrapped_key";

const WORKSPACE_COLUMNS: &str = "w.id, w.name, w.lineage_protection, w.version_count, w.updated_at, \
    w.lock_lease_seconds, w.expire_stale_locks, w.retain_versions, w.retain_days";

/// Creates the workspace if it does not exist yet and returns it.
pub async fn ensure_workspace(
    db: &Db,
    org_id: i64,
    name: &str,
    now: DateTime<Utc>,
) -> Result<WorkspaceRow> {
    const INSERT: &str = "INSERT INTO workspaces (org_id, name, created_at, updated_at) \
                          VALUES ($1, $2, $3, $3) ON CONFLICT (org_id, name) DO NOTHING";
    // Read first: the insert takes SQLite's write lock even when it does nothing.
    if let Some(row) = find_workspace(db, org_id, name).await? {
        return Ok(row);
    }
    on_pool!(db, p => sqlx::query(INSERT).bind(org_id).bind(name).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
    find_workspace(db, org_id, name)
        .await?
        .ok_or(Error::NotFound("workspace"))
}

/// Creates workspace `name`; a conflict (409) when it exists.
pub async fn insert_workspace(db: &Db, org_id: i64, name: &str, now: DateTime<Utc>) -> Result<i64> {
    const INSERT: &str = "INSERT INTO workspaces (org_id, name, created_at, updated_at) \
                          VALUES ($1, $2, $3, $3) RETURNING id";
    let row: (i64,) = on_pool!(db, p => sqlx::query_as(INSERT).bind(org_id).bind(name).bind(now).fetch_one(p).await)
        .map_err(|e| Error::from(e).or_conflict(|| format!("workspace {name} already exists")))?;
    Ok(row.0)
}

pub async fn find_workspace(db: &Db, org_id: i64, name: &str) -> Result<Option<WorkspaceRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        WORKSPACE_COLUMNS,
        " FROM workspaces w WHERE w.org_id = $1 AND w.name = $2"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, WorkspaceRow>(SQL)
        .bind(org_id).bind(name).fetch_optional(p).await)?)
}

/// The current version of a workspace, in one indexed query.
pub async fn current_version(db: &Db, org_id: i64, workspace: &str) -> Result<Option<VersionRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM workspaces w JOIN state_versions v ON v.id = w.current_version_id \
          JOIN blobs b ON b.id = v.blob_id WHERE w.org_id = $1 AND w.name = $2"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, VersionRow>(SQL)
        .bind(org_id).bind(workspace).fetch_optional(p).await)?)
}

/// The current version of a workspace by its id, in one indexed query.
pub async fn current_version_of(db: &Db, workspace_id: i64) -> Result<Option<VersionRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM workspaces w JOIN state_versions v ON v.id = w.current_version_id \
          JOIN blobs b ON b.id = v.blob_id WHERE w.id = $1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, VersionRow>(SQL)
        .bind(workspace_id).fetch_optional(p).await)?)
}

/// The newest version with `serial`.
pub async fn version_by_serial(
    db: &Db,
    workspace_id: i64,
    serial: i64,
) -> Result<Option<VersionRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM state_versions v JOIN blobs b ON b.id = v.blob_id \
          WHERE v.workspace_id = $1 AND v.serial = $2 ORDER BY v.version DESC LIMIT 1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, VersionRow>(SQL)
        .bind(workspace_id).bind(serial).fetch_optional(p).await)?)
}

/// Versions newest first, below version `before` when given (a cursor).
pub async fn list_versions(
    db: &Db,
    workspace_id: i64,
    limit: i64,
    offset: i64,
    before: Option<i64>,
) -> Result<Vec<VersionRow>> {
    // Two texts: with `$4 IS NULL OR …` SQLite cannot seek to the cursor and walks every
    // newer version first, so a deep page cost as many rows as lie before it.
    const FIRST: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM state_versions v JOIN blobs b ON b.id = v.blob_id \
          WHERE v.workspace_id = $1 \
          ORDER BY v.version DESC LIMIT $2 OFFSET $3"
    );
    const AFTER: &str = const_format::concatcp!(
        "SELECT ",
        VERSION_COLUMNS,
        " FROM state_versions v JOIN blobs b ON b.id = v.blob_id \
          WHERE v.workspace_id = $1 AND v.version < $4 \
          ORDER BY v.version DESC LIMIT $2 OFFSET $3"
    );
    Ok(match before {
        None => on_pool!(db, p => sqlx::query_as::<_, VersionRow>(FIRST)
            .bind(workspace_id).bind(limit).bind(offset).fetch_all(p).await)?,
        Some(before) => on_pool!(db, p => sqlx::query_as::<_, VersionRow>(AFTER)
            .bind(workspace_id).bind(limit).bind(offset).bind(before).fetch_all(p).await)?,
    })
}

/// Workspaces of an org by name, after name `after` when given (a cursor), with their
/// current version and lock.
pub async fn list_workspaces(
    db: &Db,
    org_id: i64,
    limit: i64,
    offset: i64,
    after: Option<&str>,
) -> Result<Vec<WorkspaceSummaryRow>> {
    const SQL: &str = "SELECT w.id, w.name, w.lineage_protection, w.version_count, v.serial, \
        v.size, w.updated_at, v.created_by AS updated_by, l.info AS lock_info, l.renewed_at AS lock_renewed_at, \
        w.lock_lease_seconds, w.expire_stale_locks, w.retain_versions, w.retain_days \
        FROM workspaces w \
        LEFT JOIN state_versions v ON v.id = w.current_version_id \
        LEFT JOIN state_locks l ON l.workspace_id = w.id \
        WHERE w.org_id = $1 AND ($4 IS NULL OR w.name > $4) \
        ORDER BY w.name LIMIT $2 OFFSET $3";
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, WorkspaceSummaryRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).bind(after).fetch_all(p).await)?,
    )
}

pub async fn set_lineage_protection(
    db: &Db,
    workspace_id: i64,
    on: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str =
        "UPDATE workspaces SET lineage_protection = $1, updated_at = $2 WHERE id = $3";
    on_pool!(db, p => sqlx::query(SQL).bind(on).bind(now).bind(workspace_id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets the lock lease (`None`: no lease) and whether stale locks may be taken over.
pub async fn set_retention(
    db: &Db,
    workspace_id: i64,
    versions: Option<i64>,
    days: Option<i64>,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "UPDATE workspaces SET retain_versions = $1, retain_days = $2, \
                       updated_at = $3 WHERE id = $4";
    on_pool!(db, p => sqlx::query(SQL).bind(versions).bind(days).bind(now)
        .bind(workspace_id).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn set_lock_lease(
    db: &Db,
    workspace_id: i64,
    lease_seconds: Option<i64>,
    expire_stale_locks: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "UPDATE workspaces SET lock_lease_seconds = $1, expire_stale_locks = $2, \
                       updated_at = $3 WHERE id = $4";
    on_pool!(db, p => sqlx::query(SQL).bind(lease_seconds).bind(expire_stale_locks).bind(now)
        .bind(workspace_id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Detaches the current version (versions themselves are kept).
pub async fn clear_current(db: &Db, workspace_id: i64, now: DateTime<Utc>) -> Result<()> {
    const SQL: &str =
        "UPDATE workspaces SET current_version_id = NULL, updated_at = $1 WHERE id = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(now).bind(workspace_id).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records a version and makes it current in one transaction, if `decide` agrees with what it
/// sees inside that transaction. Returns the version number, or `None` when the bytes were
/// already current.
pub async fn record_version(
    db: &Db,
    new: NewVersion<'_>,
    now: DateTime<Utc>,
    decide: impl FnOnce(&WriteSnapshot) -> Result<Decision>,
) -> Result<Option<i64>> {
    // Touching the row first takes its write lock (PostgreSQL row lock, SQLite write lock), so
    // concurrent writers to one workspace are serialised and the snapshot below is current.
    const TOUCH: &str = "UPDATE workspaces SET updated_at = $1 WHERE id = $2";
    const SNAPSHOT: &str = "SELECT w.lineage_protection, w.version_count, \
        v.serial AS current_serial, v.lineage AS current_lineage, v.sha256 AS current_sha256, \
        l.lock_id, l.info AS lock_info \
        FROM workspaces w LEFT JOIN state_versions v ON v.id = w.current_version_id \
        LEFT JOIN state_locks l ON l.workspace_id = w.id WHERE w.id = $1";
    const INSERT_VERSION: &str = "INSERT INTO state_versions (workspace_id, version, serial, lineage, \
        sha256, size, blob_id, source, created_at, created_by, run_id) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
    const MAKE_CURRENT: &str = "UPDATE workspaces SET current_version_id = $1, version_count = $2, \
        updated_at = $3 WHERE id = $4";

    on_pool!(db, p => {
        let mut conn = p.acquire().await?;
        // An acknowledged version must survive a power loss, not only a crash.
        (*conn).durable_commits(true).await?;
        let result: Result<Option<i64>> = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::query(TOUCH).bind(now).bind(new.workspace_id).execute(&mut *tx).await?;
            let snapshot = sqlx::query_as::<_, WriteSnapshot>(SNAPSHOT)
                .bind(new.workspace_id)
                .fetch_one(&mut *tx)
                .await?;
            match decide(&snapshot)? {
                Decision::AlreadyCurrent => {
                    tx.rollback().await?;
                    Ok(None)
                }
                Decision::Insert => {
                    let version = snapshot.version_count + 1;
                    insert_blob_row!(&mut *tx, new.blob, new.size, new.sha256, now).await?;
                    let (id,): (i64,) = sqlx::query_as(INSERT_VERSION)
                        .bind(new.workspace_id)
                        .bind(version)
                        .bind(new.serial)
                        .bind(new.lineage)
                        .bind(new.sha256)
                        .bind(new.size)
                        .bind(&new.blob.id)
                        .bind(new.source)
                        .bind(now)
                        .bind(new.created_by)
                        .bind(new.run_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(MAKE_CURRENT)
                        .bind(id)
                        .bind(version)
                        .bind(now)
                        .bind(new.workspace_id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(lock_id) = new.renews_lock {
                        sqlx::query(RENEW_LOCK)
                            .bind(now)
                            .bind(new.workspace_id)
                            .bind(lock_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(Some(version))
                }
            }
        }
        .await;
        (*conn).durable_commits(false).await?;
        result
    })
}

/// Takes the lock if it is free, renews it if `lock_id` already holds it, and replaces a
/// holder not renewed since `stale_before`. Returns the holder when someone else keeps it.
/// One statement, so two replicas cannot both take over the same stale lock.
pub async fn insert_lock(
    db: &Db,
    workspace_id: i64,
    lock_id: &str,
    info: &[u8],
    created_by: &str,
    now: DateTime<Utc>,
    stale_before: Option<DateTime<Utc>>,
) -> Result<Option<LockRow>> {
    // A renewal keeps the holder's original info and creation; a takeover replaces them.
    const SQL: &str = "INSERT INTO state_locks \
        (workspace_id, lock_id, info, created_at, created_by, renewed_at) \
        VALUES ($1, $2, $3, $4, $5, $4) ON CONFLICT (workspace_id) DO UPDATE SET \
        info = CASE WHEN state_locks.lock_id = excluded.lock_id \
            THEN state_locks.info ELSE excluded.info END, \
        created_at = CASE WHEN state_locks.lock_id = excluded.lock_id \
            THEN state_locks.created_at ELSE excluded.created_at END, \
        created_by = CASE WHEN state_locks.lock_id = excluded.lock_id \
            THEN state_locks.created_by ELSE excluded.created_by END, \
        lock_id = excluded.lock_id, renewed_at = excluded.renewed_at \
        WHERE state_locks.lock_id = excluded.lock_id OR state_locks.renewed_at < $6";
    let done = on_pool!(db, p => sqlx::query(SQL)
        .bind(workspace_id).bind(lock_id).bind(info).bind(now).bind(created_by).bind(stale_before)
        .execute(p).await.map(|r| r.rows_affected()))?;
    if done == 1 {
        return Ok(None);
    }
    match find_lock(db, workspace_id).await? {
        Some(holder) => Ok(Some(holder)),
        // Released between our insert and our read: try once more.
        None => {
            Box::pin(insert_lock(
                db,
                workspace_id,
                lock_id,
                info,
                created_by,
                now,
                stale_before,
            ))
            .await
        }
    }
}

pub async fn find_lock(db: &Db, workspace_id: i64) -> Result<Option<LockRow>> {
    const SQL: &str = "SELECT lock_id, info, created_at, created_by, renewed_at \
                       FROM state_locks WHERE workspace_id = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, LockRow>(SQL)
        .bind(workspace_id).fetch_optional(p).await)?)
}

const RENEW_LOCK: &str =
    "UPDATE state_locks SET renewed_at = $1 WHERE workspace_id = $2 AND lock_id = $3";

/// Marks the lock as renewed when `lock_id` still holds it (a write under the lock).
pub async fn renew_lock(
    db: &Db,
    workspace_id: i64,
    lock_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    on_pool!(db, p => sqlx::query(RENEW_LOCK).bind(now).bind(workspace_id).bind(lock_id)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// When each lock under a lease was last renewed, with its lease in seconds.
pub async fn leased_locks(db: &Db) -> Result<Vec<(DateTime<Utc>, i64)>> {
    const SQL: &str = "SELECT l.renewed_at, w.lock_lease_seconds FROM state_locks l \
        JOIN workspaces w ON w.id = l.workspace_id WHERE w.lock_lease_seconds IS NOT NULL";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (DateTime<Utc>, i64)>(SQL).fetch_all(p).await)?)
}

/// The lock lease of those of `workspace_ids` that have one.
pub async fn lock_leases(db: &Db, workspace_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
    let mut leases = Vec::new();
    for chunk in workspace_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Only generated placeholders go into the text; the ids are bound.
        let sql = format!(
            "SELECT id, lock_lease_seconds FROM workspaces \
             WHERE lock_lease_seconds IS NOT NULL AND id IN ({})",
            placeholders.join(", ")
        );
        let rows: Vec<(i64, i64)> = on_pool!(db, p => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in chunk {
                query = query.bind(*id);
            }
            query.fetch_all(p).await
        })?;
        leases.extend(rows);
    }
    Ok(leases)
}

/// Releases the lock if `lock_id` holds it (any holder when `None`). True when a row went away.
pub async fn delete_lock(db: &Db, workspace_id: i64, lock_id: Option<&str>) -> Result<bool> {
    const BY_ID: &str = "DELETE FROM state_locks WHERE workspace_id = $1 AND lock_id = $2";
    const ANY: &str = "DELETE FROM state_locks WHERE workspace_id = $1";
    let done = match lock_id {
        Some(id) => {
            on_pool!(db, p => sqlx::query(BY_ID).bind(workspace_id).bind(id).execute(p).await.map(|r| r.rows_affected()))?
        }
        None => {
            on_pool!(db, p => sqlx::query(ANY).bind(workspace_id).execute(p).await.map(|r| r.rows_affected()))?
        }
    };
    Ok(done > 0)
}

impl LockRow {
    pub fn info_bytes(&self) -> Bytes {
        Bytes::from(self.info.clone())
    }
}

// Version deletion and retention.

#[derive(sqlx::FromRow)]
pub struct Doomed {
    pub id: i64,
    pub version: i64,
    pub blob_id: String,
    pub object_key: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

#[derive(sqlx::FromRow)]
pub struct Candidate {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub is_current: bool,
}

/// The workspace's versions, newest first, with the serial's when one is given.
pub async fn candidates(db: &Db, workspace: i64, serial: Option<i64>) -> Result<Vec<Candidate>> {
    const SQL: &str = "SELECT v.version, v.created_at, \
        (w.current_version_id = v.id) AS is_current FROM state_versions v \
        JOIN workspaces w ON w.id = v.workspace_id \
        WHERE v.workspace_id = $1 AND ($2 IS NULL OR v.serial = $2) ORDER BY v.version DESC";
    Ok(on_pool!(db, p => sqlx::query_as(SQL).bind(workspace).bind(serial).fetch_all(p).await)?)
}

/// Deletes the version rows (and their blob rows) of `workspace` numbered `version` unless it
/// is current, in one short transaction; returns what went, for the objects to follow.
pub async fn delete_version(db: &Db, workspace: i64, version: i64) -> Result<Vec<Doomed>> {
    const DOOMED: &str = "SELECT v.id, v.version, b.id AS blob_id, b.object_key, b.key_id, \
        b.wrapped_key FROM state_versions v JOIN workspaces w ON w.id = v.workspace_id \
        JOIN blobs b ON b.id = v.blob_id WHERE v.workspace_id = $1 AND v.version = $2 \
        AND w.current_version_id <> v.id";
    Ok(on_pool!(db, p => {
        let mut tx = p.begin().await?;
        let rows: Vec<Doomed> = sqlx::query_as(DOOMED)
            .bind(workspace)
            .bind(version)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            sqlx::query("DELETE FROM state_versions WHERE id = $1")
                .bind(row.id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM blobs WHERE id = $1")
                .bind(&row.blob_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    })?)
}

/// A workspace's id and retention limits.
pub type Policy = (i64, Option<i64>, Option<i64>);

/// Every workspace with a retention policy.
pub async fn retention_policies(db: &Db) -> Result<Vec<Policy>> {
    const SQL: &str = "SELECT id, retain_versions, retain_days FROM workspaces \
        WHERE retain_versions IS NOT NULL OR retain_days IS NOT NULL ORDER BY id";
    Ok(on_pool!(db, p => sqlx::query_as(SQL).fetch_all(p).await)?)
}

/// A workspace whose lock is under a lease: where it is, its lease and its holder.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeasedLock {
    pub workspace_id: i64,
    pub org_id: i64,
    pub org: String,
    pub workspace: String,
    pub lease_seconds: i64,
    #[sqlx(flatten)]
    pub lock: LockRow,
}

/// Every database lock of a workspace with a lock lease.
pub async fn leased_lock_rows(db: &Db) -> Result<Vec<LeasedLock>> {
    const SQL: &str = "SELECT w.id AS workspace_id, w.org_id, o.name AS org, w.name AS workspace, \
        w.lock_lease_seconds AS lease_seconds, l.lock_id, l.info, l.created_at, l.created_by, \
        l.renewed_at FROM state_locks l JOIN workspaces w ON w.id = l.workspace_id \
        JOIN orgs o ON o.id = w.org_id WHERE w.lock_lease_seconds IS NOT NULL";
    Ok(on_pool!(db, p => sqlx::query_as::<_, LeasedLock>(SQL).fetch_all(p).await)?)
}

/// Org id, org name and name of those of `workspace_ids` that exist.
pub async fn workspace_names(
    db: &Db,
    workspace_ids: &[i64],
) -> Result<Vec<(i64, i64, String, String)>> {
    let mut names = Vec::new();
    for chunk in workspace_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Only generated placeholders go into the text; the ids are bound.
        let sql = format!(
            "SELECT w.id, w.org_id, o.name, w.name FROM workspaces w \
             JOIN orgs o ON o.id = w.org_id WHERE w.id IN ({})",
            placeholders.join(", ")
        );
        let rows: Vec<(i64, i64, String, String)> = on_pool!(db, p => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for id in chunk {
                query = query.bind(*id);
            }
            query.fetch_all(p).await
        })?;
        names.extend(rows);
    }
    Ok(names)
}

/// A state version as features reading the history see it (`feed`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedRow {
    pub id: i64,
    pub org_id: i64,
    pub workspace_id: i64,
    pub workspace: String,
    pub created_at: DateTime<Utc>,
    pub size: i64,
    pub blob_id: String,
    pub object_key: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

/// Versions with an id above `after_id` (of `org_id`, when given), oldest first; with
/// `current_only`, only the versions that are their workspace's current one.
pub async fn versions_after(
    db: &Db,
    after_id: i64,
    org_id: Option<i64>,
    current_only: bool,
    limit: i64,
) -> Result<Vec<FeedRow>> {
    const SQL: &str = "SELECT v.id, w.org_id, v.workspace_id, w.name AS workspace, v.created_at, \
        v.size, b.id AS blob_id, b.object_key, b.key_id, b.wrapped_key \
        FROM state_versions v JOIN workspaces w ON w.id = v.workspace_id \
        JOIN blobs b ON b.id = v.blob_id \
        WHERE v.id > $1 AND ($2 IS NULL OR w.org_id = $2) \
          AND (NOT $3 OR w.current_version_id = v.id) \
        ORDER BY v.id LIMIT $4";
    Ok(on_pool!(db, p => sqlx::query_as::<_, FeedRow>(SQL)
        .bind(after_id).bind(org_id).bind(current_only).bind(limit).fetch_all(p).await)?)
}

/// Every workspace of an org: (id, name).
pub async fn org_workspace_names(db: &Db, org_id: i64) -> Result<Vec<(i64, String)>> {
    const SQL: &str = "SELECT id, name FROM workspaces WHERE org_id = $1 ORDER BY name";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (i64, String)>(SQL)
        .bind(org_id).fetch_all(p).await)?)
}
