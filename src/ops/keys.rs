//! Master-key rotation: re-wraps every data key under the current master key, row by row,
//! while the server keeps serving (objects are never rewritten).

use crate::error::Result;
use crate::infra::crypto::{Envelope, Keyring};
use crate::infra::db::{Db, on_pool};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::crypto::{HEADER_LEN, generate_key};

    async fn rotation_rewraps_every_blob_and_keeps_it_readable(db: Db) {
        let old = generate_key().unwrap();
        let new = generate_key().unwrap();
        let before = Keyring::from_base64(&old, &[]).unwrap();
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(b"secret state");
        let envelope = before.seal(&mut buf, b"blob-1").unwrap();
        const INSERT: &str = "INSERT INTO blobs (id, object_key, size, sha256, key_id, wrapped_key, \
            created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        on_pool!(&db, p => sqlx::query(INSERT)
            .bind("blob-1").bind("state/1/blob-1").bind(12_i64).bind("x")
            .bind(&envelope.key_id).bind(&envelope.wrapped_key).bind(chrono::Utc::now())
            .execute(p).await.map(|_| ()))
        .unwrap();

        let during = Keyring::from_base64(&new, &[old]).unwrap();
        assert_eq!(rotate(&db, &during).await.unwrap(), 1);
        assert_eq!(rotate(&db, &during).await.unwrap(), 0);

        let usage = key_usage(&db).await.unwrap();
        assert_eq!(usage, vec![(during.current_id().to_string(), 1)]);
        let row = on_pool!(&db, p => sqlx::query_as::<_, BlobKeyRow>(
            "SELECT id, key_id, wrapped_key FROM blobs").fetch_one(p).await)
        .unwrap();
        let after = Keyring::from_base64(&new, &[]).unwrap();
        let rewrapped = Envelope {
            key_id: row.key_id,
            wrapped_key: row.wrapped_key,
        };
        let range = after.open(&rewrapped, &mut buf, b"blob-1").unwrap();
        assert_eq!(&buf[range], b"secret state");
    }

    #[tokio::test]
    async fn rotation_on_sqlite() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        rotation_rewraps_every_blob_and_keeps_it_readable(db).await;
    }

    #[tokio::test]
    async fn rotation_on_postgres() {
        if let Some(db) = crate::infra::db::testing::postgres().await {
            rotation_rewraps_every_blob_and_keeps_it_readable(db).await;
        }
    }
}
