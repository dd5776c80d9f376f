//! SQL: the blob row behind a link.

use crate::error::Result;
use crate::infra::blob::StoredBlob;
use crate::infra::crypto::Envelope;
use crate::infra::db::{Db, on_pool};

#[derive(sqlx::FromRow)]
struct BlobRow {
    id: String,
    object_key: String,
    key_id: String,
    wrapped_key: Vec<u8>,
}

pub async fn find_blob(db: &Db, id: &str) -> Result<Option<StoredBlob>> {
    const SQL: &str = "SELECT id, object_key, key_id, wrapped_key FROM blobs WHERE id = $1";
    let row =
        on_pool!(db, p => sqlx::query_as::<_, BlobRow>(SQL).bind(id).fetch_optional(p).await)?;
    Ok(row.map(|row| StoredBlob {
        id: row.id,
        object_key: row.object_key,
        envelope: Envelope {
            key_id: row.key_id,
            wrapped_key: row.wrapped_key,
        },
    }))
}
