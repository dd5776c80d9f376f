//! Master-key rotation: re-wraps every data key under the current master key, row by row,
//! while the server keeps serving (objects are never rewritten).

use super::store;
use crate::error::Result;
use crate::infra::crypto::{Envelope, Keyring};
use crate::infra::db::Db;

/// Re-wraps all data keys not yet under the current master key; returns how many changed.
pub async fn rotate(db: &Db, keys: &Keyring) -> Result<u64> {
    let current = keys.current_id().to_string();
    let mut done = 0;
    loop {
        let rows = store::keys_to_rewrap(db, &current).await?;
        if rows.is_empty() {
            return Ok(done);
        }
        for row in rows {
            let envelope = Envelope {
                key_id: row.key_id.clone(),
                wrapped_key: row.wrapped_key,
            };
            let rewrapped = keys.rewrap(&envelope, row.id.as_bytes())?;
            store::save_rewrapped(
                db,
                &row.id,
                &row.key_id,
                &rewrapped.key_id,
                &rewrapped.wrapped_key,
            )
            .await?;
            done += 1;
        }
    }
}

pub use super::store::key_usage;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::crypto::{HEADER_LEN, generate_key};
    use crate::infra::db::on_pool;
    use store::BlobKeyRow;

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
