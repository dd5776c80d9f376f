//! SQL of the operations: the `blobs` table seen whole (which objects are referenced, pages
//! to verify, data keys to re-wrap, key usage).

use std::collections::HashSet;

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

/// Which of `keys` a `blobs` row refers to: one indexed query for the whole batch.
pub async fn referenced(db: &Db, keys: &[&str]) -> Result<HashSet<String>> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    // Only generated placeholders go into the text; the keys are bound.
    let sql = format!(
        "SELECT object_key FROM blobs WHERE object_key IN ({})",
        placeholders.join(", ")
    );
    let rows: Vec<(String,)> = on_pool!(db, p => {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
        for key in keys {
            query = query.bind(*key);
        }
        query.fetch_all(p).await
    })?;
    Ok(rows.into_iter().map(|(key,)| key).collect())
}

/// A blob to verify, with the state version using it, if any.
#[derive(sqlx::FromRow)]
pub struct VerifyRow {
    pub id: String,
    pub object_key: String,
    pub size: i64,
    pub sha256: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
    pub state_version: Option<String>,
}

/// The next page of blobs after id `after`, in id order (the table's key).
pub async fn blobs_after(db: &Db, after: &str) -> Result<Vec<VerifyRow>> {
    const PAGE: &str = "SELECT b.id, b.object_key, b.size, b.sha256, b.key_id, b.wrapped_key, \
        (SELECT o.name || '/' || w.name || ' v' || CAST(v.version AS TEXT) \
           FROM state_versions v JOIN workspaces w ON w.id = v.workspace_id \
           JOIN orgs o ON o.id = w.org_id WHERE v.blob_id = b.id LIMIT 1) AS state_version \
        FROM blobs b WHERE b.id > $1 ORDER BY b.id LIMIT 200";
    Ok(on_pool!(db, p => sqlx::query_as::<_, VerifyRow>(PAGE).bind(after).fetch_all(p).await)?)
}

#[derive(sqlx::FromRow)]
pub struct BlobKeyRow {
    pub id: String,
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

/// Up to 500 blobs whose data key is not wrapped by `current`.
pub async fn keys_to_rewrap(db: &Db, current: &str) -> Result<Vec<BlobKeyRow>> {
    const BATCH: &str = "SELECT id, key_id, wrapped_key FROM blobs WHERE key_id <> $1 \
                         ORDER BY id LIMIT 500";
    Ok(on_pool!(db, p => sqlx::query_as::<_, BlobKeyRow>(BATCH).bind(current).fetch_all(p).await)?)
}

/// Stores a re-wrapped data key, guarded by the old key id, so a concurrent rotation never
/// overwrites a newer wrap.
pub async fn save_rewrapped(
    db: &Db,
    id: &str,
    old_key_id: &str,
    key_id: &str,
    wrapped_key: &[u8],
) -> Result<()> {
    const UPDATE: &str =
        "UPDATE blobs SET key_id = $1, wrapped_key = $2 WHERE id = $3 AND key_id = $4";
    on_pool!(db, p => sqlx::query(UPDATE)
        .bind(key_id).bind(wrapped_key).bind(id).bind(old_key_id)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}

/// How many blobs each master key wraps (what a backup must keep keys for).
pub async fn key_usage(db: &Db) -> Result<Vec<(String, i64)>> {
    const SQL: &str = "SELECT key_id, COUNT(*) FROM blobs GROUP BY key_id ORDER BY key_id";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (String, i64)>(SQL).fetch_all(p).await)?)
}
