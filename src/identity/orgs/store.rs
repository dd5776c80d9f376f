//! SQL for organisations.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::db::{Db, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRow {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_org(db: &Db, name: &str, now: DateTime<Utc>) -> Result<OrgRow> {
    const SQL: &str =
        "INSERT INTO orgs (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at";
    Ok(on_pool!(db, p => sqlx::query_as::<_, OrgRow>(SQL).bind(name).bind(now).fetch_one(p).await)?)
}

pub async fn find_org(db: &Db, name: &str) -> Result<Option<OrgRow>> {
    const SQL: &str = "SELECT id, name, created_at FROM orgs WHERE name = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, OrgRow>(SQL).bind(name).fetch_optional(p).await)?)
}

/// Every org: (id, name).
pub async fn all_orgs(db: &Db) -> Result<Vec<(i64, String)>> {
    const SQL: &str = "SELECT id, name FROM orgs ORDER BY id";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (i64, String)>(SQL).fetch_all(p).await)?)
}
