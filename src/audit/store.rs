//! SQL for the audit trail: batched inserts and the filtered, newest-first listing.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AuditEvent;
use crate::error::Result;
use crate::infra::db::{Db, on_pool};

/// Inserts `events` with one statement (one round trip and one commit per batch).
pub async fn insert(db: &Db, events: &[AuditEvent]) -> sqlx::Result<()> {
    const SQL: &str = "INSERT INTO audit_events (org_id, occurred_at, actor, token_id, action, \
                       resource, outcome, status, source, request_id) ";
    if events.is_empty() {
        return Ok(());
    }
    on_pool!(db, p => {
        let mut insert = sqlx::QueryBuilder::new(SQL);
        insert.push_values(events, |mut row, e| {
            row.push_bind(e.org_id)
                .push_bind(e.occurred_at)
                .push_bind(e.actor.clone())
                .push_bind(e.token_id.clone())
                .push_bind(e.action.clone())
                .push_bind(e.resource.clone())
                .push_bind(e.outcome)
                .push_bind(i32::from(e.status))
                .push_bind(e.source.clone())
                .push_bind(e.request_id.clone());
        });
        insert.build().execute(p).await.map(|_| ())
    })
}

/// An event as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub token_id: Option<String>,
    pub action: String,
    pub resource: String,
    pub outcome: String,
    pub status: i32,
    pub source: Option<String>,
    pub request_id: Option<String>,
}

/// Listing filters; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Matches resources starting with this text.
    pub resource_prefix: Option<String>,
    pub outcome: Option<String>,
    /// Inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
}

/// An org's events, newest first, walking the `(org_id, id)` index.
pub async fn list(
    db: &Db,
    org_id: i64,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<Vec<EventRow>> {
    // Prefix match without LIKE: SQLite's LIKE ignores case and both need escaping.
    const SQL: &str = "SELECT id, occurred_at, actor, token_id, action, resource, outcome, \
                       status, source, request_id FROM audit_events \
                       WHERE org_id = $1 \
                       AND ($2 IS NULL OR actor = $2) \
                       AND ($3 IS NULL OR action = $3) \
                       AND ($4 IS NULL OR substr(resource, 1, length($4)) = $4) \
                       AND ($5 IS NULL OR outcome = $5) \
                       AND ($6 IS NULL OR occurred_at >= $6) \
                       AND ($7 IS NULL OR occurred_at < $7) \
                       ORDER BY id DESC LIMIT $8 OFFSET $9";
    Ok(on_pool!(db, p => sqlx::query_as::<_, EventRow>(SQL)
        .bind(org_id)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(&filter.resource_prefix)
        .bind(&filter.outcome)
        .bind(filter.since)
        .bind(filter.until)
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)?)
}
