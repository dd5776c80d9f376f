//! Master-key rotation: re-wraps every data key under the current master key, row by row,
//! while the server keeps serving (objects are never rewritten).

use crate::crypto::{Envelope, Keyring};
use crate::db::{Db, on_pool};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct BlobKeyRow {
    id: String,
    key_id: String,
    wrapped_key: Vec<u8>,
}

/// Re-wraps all data keys not yet under the current master key; returns how many changed.
pub async fn rotate(db: &Db, keys: &Keyring) -> Result<u64> {
    const BATCH: &str = "SELECT id, key_id, wrapped_key FROM blobs WHERE key_id <> $1 \
                         ORDER BY id LIMIT 500";
    // Guarded by the old key id, so a concurrent rotation never overwrites a newer wrap.
    const UPDATE: &str =
        "UPDATE blobs SET key_id = $1, wrapped_key = $2 WHERE id = $3 AND key_id = $4";
    let current = keys.current_id().to_string();
    let mut done = 0;
    loop {
        let rows = on_pool!(db, p => sqlx::query_as::<_, BlobKeyRow>(BATCH)
            .bind(&current).fetch_all(p).await)?;
        if rows.is_empty() {
            return Ok(done);
        }
        for row in rows {
            let envelope = Envelope {
                key_id: row.key_id.clone(),
                wrapped_key: row.wrapped_key,
            };
            let rewrapped = keys.rewrap(&envelope, row.id.as_bytes())?;
            on_pool!(db, p => sqlx::query(UPDATE)
                .bind(&rewrapped.key_id)
                .bind(&rewrapped.wrapped_key)
                .bind(&row.id)
                .bind(&row.key_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))?;
            done += 1;
        }
    }
}

/// How many blobs each master key wraps (what a backup must keep keys for).
pub async fn key_usage(db: &Db) -> Result<Vec<(String, i64)>> {
    const SQL: &str = "SELECT key_id, COUNT(*) FROM blobs GROUP BY key_id ORDER BY key_id";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (String, i64)>(SQL).fetch_all(p).await)?)
}
