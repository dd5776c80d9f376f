//! SQL for the audit trail: batched inserts and the filtered, newest-first listing.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AuditEvent;
use crate::error::Result;
use crate::infra::db::{Db, on_pool};

/// Rows per insert statement at most.
const MAX_ROWS: usize = 256;

/// Inserts `events` in one transaction (one commit per batch), in statements of a power of
/// two rows each (at most [`MAX_ROWS`]), largest first. Every statement is then one of a few
/// texts, built once and prepared once per connection; a statement for every batch size
/// would be built and parsed afresh for nearly every batch.
pub async fn insert(db: &Db, events: &[AuditEvent]) -> sqlx::Result<()> {
    let numbered = matches!(db, Db::Postgres(_));
    macro_rules! insert_rows {
        ($executor:expr, $rows:expr) => {{
            let mut insert = sqlx::query(insert_sql($rows.len(), numbered));
            for e in $rows {
                insert = insert
                    .bind(e.org_id)
                    .bind(e.occurred_at)
                    .bind(&e.actor)
                    .bind(&e.token_id)
                    .bind(&e.action)
                    .bind(&e.resource)
                    .bind(e.outcome)
                    .bind(i32::from(e.status))
                    .bind(&e.source)
                    .bind(&e.request_id);
            }
            insert.execute($executor).await.map(|_| ())
        }};
    }
    if events.is_empty() {
        return Ok(());
    }
    on_pool!(db, p => {
        if events.len().is_power_of_two() && events.len() <= MAX_ROWS {
            insert_rows!(p, events)
        } else {
            let mut tx = p.begin().await?;
            for rows in power_of_two_chunks(events) {
                insert_rows!(&mut *tx, rows)?;
            }
            tx.commit().await
        }
    })
}

/// The insert statement for `rows` rows, a power of two up to [`MAX_ROWS`]. Placeholders are
/// `$1, $2, …` on PostgreSQL (`numbered`) and `?` on SQLite, the same in order: the SQLite
/// driver looks each numbered placeholder up by name when binding, which costs time in
/// proportion to the statement's length for every one of its thousands of values.
fn insert_sql(rows: usize, numbered: bool) -> &'static str {
    const COLUMNS: usize = 10;
    static TEXTS: [std::sync::OnceLock<Vec<String>>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let texts = TEXTS[usize::from(numbered)].get_or_init(|| {
        (0..=MAX_ROWS.ilog2())
            .map(|k| {
                let mut sql = String::from(
                    "INSERT INTO audit_events (org_id, occurred_at, actor, token_id, action, \
                     resource, outcome, status, source, request_id) VALUES ",
                );
                for row in 0..1usize << k {
                    sql.push_str(if row == 0 { "(" } else { ", (" });
                    for column in 0..COLUMNS {
                        if column > 0 {
                            sql.push_str(", ");
                        }
                        if numbered {
                            sql.push_str(&format!("${}", row * COLUMNS + column + 1));
                        } else {
                            sql.push('?');
                        }
                    }
                    sql.push(')');
                }
                sql
            })
            .collect()
    });
    &texts[rows.ilog2() as usize]
}

/// `items` in consecutive runs of a power of two each, largest first (the binary digits of
/// its length).
fn power_of_two_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, tail) = rest.split_at((1 << rest.len().ilog2()).min(MAX_ROWS));
        rest = tail;
        Some(chunk)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_powers_of_two() {
        let items: Vec<u32> = (0..203).collect();
        let sizes: Vec<usize> = power_of_two_chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [128, 64, 8, 2, 1]);
        let joined: Vec<u32> = power_of_two_chunks(&items).flatten().copied().collect();
        assert_eq!(joined, items);
        assert_eq!(power_of_two_chunks::<u32>(&[]).count(), 0);
        let many: Vec<u32> = (0..600).collect();
        let sizes: Vec<usize> = power_of_two_chunks(&many).map(<[u32]>::len).collect();
        assert_eq!(sizes, [256, 256, 64, 16, 8]);
    }

    #[test]
    fn statements_have_ten_placeholders_a_row() {
        assert!(insert_sql(1, true).ends_with("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"));
        let sql = insert_sql(4, true);
        assert!(sql.ends_with("($31, $32, $33, $34, $35, $36, $37, $38, $39, $40)"));
        assert_eq!(sql.matches('(').count(), 1 + 4);
        assert_eq!(
            insert_sql(MAX_ROWS, true).matches('$').count(),
            10 * MAX_ROWS
        );
        let sql = insert_sql(2, false);
        assert!(
            sql.ends_with("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
        assert_eq!(
            insert_sql(MAX_ROWS, false).matches('?').count(),
            10 * MAX_ROWS
        );
    }
}
