//! SQL of the registry's namespace settings.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

/// A namespace's settings row: `(public, server_signing)`, when one was ever saved.
pub async fn find_settings(db: &Db, org_id: i64) -> Result<Option<(bool, bool)>> {
    const SQL: &str = "SELECT public, server_signing FROM registry_namespaces WHERE org_id = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (bool, bool)>(SQL)
        .bind(org_id).fetch_optional(p).await)?)
}

pub async fn save_settings(
    db: &Db,
    org_id: i64,
    public: bool,
    server_signing: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    const SQL: &str = "INSERT INTO registry_namespaces (org_id, public, server_signing, updated_at) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO UPDATE SET public = $2, \
        server_signing = $3, updated_at = $4";
    on_pool!(db, p => sqlx::query(SQL)
        .bind(org_id).bind(public).bind(server_signing).bind(now)
        .execute(p).await.map(|_| ()))?;
    Ok(())
}
