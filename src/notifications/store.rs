//! SQL of notifications, their events and the delivery outbox with its attempt log.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::infra::blob::{StoredBlob, insert_blob_row};
use crate::infra::crypto::Envelope;
use crate::infra::db::{Db, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub url: String,
    pub events: String,
    pub workspace: Option<String>,
    pub format: String,
    pub enabled: bool,
    pub secret_blob: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, org_id, name, url, events, workspace, format, enabled, secret_blob, \
    created_at, created_by, updated_at";

/// A freshly stored secret to record with the row that refers to it.
pub struct NewSecret<'a> {
    pub blob: &'a StoredBlob,
    pub size: i64,
    pub sha256: &'a str,
}

pub struct NewNotification<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub url: &'a str,
    pub events: &'a str,
    pub workspace: Option<&'a str>,
    pub format: &'a str,
    pub enabled: bool,
    pub created_by: &'a str,
}

/// Inserts a subscription and its secret's blob row in one transaction.
pub async fn insert(db: &Db, new: NewNotification<'_>, secret: NewSecret<'_>) -> Result<()> {
    const SQL: &str = "INSERT INTO notifications (org_id, name, url, events, workspace, format, \
        enabled, secret_blob, created_at, created_by, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9)";
    let now = Utc::now();
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        insert_blob_row!(&mut *tx, secret.blob, secret.size, secret.sha256, now).await?;
        sqlx::query(SQL)
            .bind(new.org_id).bind(new.name).bind(new.url).bind(new.events)
            .bind(new.workspace).bind(new.format).bind(new.enabled).bind(&secret.blob.id)
            .bind(now).bind(new.created_by)
            .execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}

pub async fn find(db: &Db, org_id: i64, name: &str) -> Result<Option<NotificationRow>> {
    let sql = format!("SELECT {COLUMNS} FROM notifications WHERE org_id = $1 AND name = $2");
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(sql.clone()))
        .bind(org_id).bind(name).fetch_optional(p).await)?,
    )
}

pub async fn list(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<NotificationRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE org_id = $1 ORDER BY name LIMIT $2 OFFSET $3"
    );
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(sql.clone()))
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?,
    )
}

/// The enabled subscriptions of an org, for matching an event against.
pub async fn enabled(db: &Db, org_id: i64) -> Result<Vec<NotificationRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE org_id = $1 AND enabled = TRUE ORDER BY id"
    );
    Ok(
        on_pool!(db, p => sqlx::query_as::<_, NotificationRow>(sqlx::AssertSqlSafe(sql.clone()))
        .bind(org_id).fetch_all(p).await)?,
    )
}

/// Writes a subscription's changeable fields; with `secret`, a new secret replaces the old
/// one, whose blob id is answered so that its object can be removed.
pub async fn update(
    db: &Db,
    row: &NotificationRow,
    secret: Option<NewSecret<'_>>,
) -> Result<Option<String>> {
    const SQL: &str = "UPDATE notifications SET url = $1, events = $2, workspace = $3, \
        format = $4, enabled = $5, secret_blob = $6, updated_at = $7 WHERE id = $8";
    const DELETE_BLOB: &str = "DELETE FROM blobs WHERE id = $1";
    let now = Utc::now();
    let new_blob = secret.as_ref().map(|s| s.blob.id.clone());
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        if let Some(s) = &secret {
            insert_blob_row!(&mut *tx, s.blob, s.size, s.sha256, now).await?;
        }
        sqlx::query(SQL)
            .bind(&row.url).bind(&row.events).bind(&row.workspace).bind(&row.format)
            .bind(row.enabled).bind(new_blob.as_ref().unwrap_or(&row.secret_blob))
            .bind(now).bind(row.id)
            .execute(&mut *tx).await?;
        if new_blob.is_some() {
            sqlx::query(DELETE_BLOB).bind(&row.secret_blob).execute(&mut *tx).await?;
        }
        tx.commit().await
    })?;
    Ok(new_blob.map(|_| row.secret_blob.clone()))
}

/// Deletes a subscription (its deliveries go with it) and its secret's blob row.
pub async fn delete(db: &Db, row: &NotificationRow) -> Result<()> {
    const SQL: &str = "DELETE FROM notifications WHERE id = $1";
    const DELETE_BLOB: &str = "DELETE FROM blobs WHERE id = $1";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        sqlx::query(SQL).bind(row.id).execute(&mut *tx).await?;
        sqlx::query(DELETE_BLOB).bind(&row.secret_blob).execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}

/// The stored blob with id `id`.
pub async fn blob(db: &Db, id: &str) -> Result<Option<StoredBlob>> {
    const SQL: &str = "SELECT object_key, key_id, wrapped_key FROM blobs WHERE id = $1";
    let row: Option<(String, String, Vec<u8>)> =
        on_pool!(db, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await)?;
    Ok(row.map(|(object_key, key_id, wrapped_key)| StoredBlob {
        id: id.to_string(),
        object_key,
        envelope: Envelope {
            key_id,
            wrapped_key,
        },
    }))
}

pub struct NewEvent<'a> {
    pub org_id: i64,
    pub kind: &'a str,
    pub workspace: Option<&'a str>,
    pub payload: &'a str,
    pub dedupe_key: Option<&'a str>,
}

/// Records an event and a pending delivery (id from `delivery_ids`) to each of `targets`, in
/// one transaction. False when an event with the same dedupe key exists (nothing is written).
pub async fn record_event(db: &Db, event: NewEvent<'_>, targets: &[(i64, String)]) -> Result<bool> {
    const EVENT: &str = "INSERT INTO notification_events (org_id, kind, workspace, payload, \
        dedupe_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (dedupe_key) DO NOTHING RETURNING id";
    const DELIVERY: &str = "INSERT INTO notification_deliveries (id, notification_id, event_id, \
        status, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4)";
    let now = Utc::now();
    let recorded = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        let id: Option<(i64,)> = sqlx::query_as(EVENT)
            .bind(event.org_id).bind(event.kind).bind(event.workspace).bind(event.payload)
            .bind(event.dedupe_key).bind(now)
            .fetch_optional(&mut *tx).await?;
        let Some((event_id,)) = id else {
            return Ok(false);
        };
        for (notification, delivery) in targets {
            sqlx::query(DELIVERY)
                .bind(delivery).bind(notification).bind(event_id).bind(now)
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok::<bool, sqlx::Error>(true)
    })?;
    Ok(recorded)
}

/// A claimed delivery with everything needed to make it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub notification: String,
    pub url: String,
    pub format: String,
    pub secret_blob: String,
    pub org: String,
    pub kind: String,
    pub workspace: Option<String>,
    pub payload: String,
    pub event_at: DateTime<Utc>,
}

/// Claims up to `limit` due deliveries for `holder` until `until`: concurrent claimers skip
/// each other's rows on PostgreSQL; on SQLite the caller holds the writer's turn.
pub async fn claim(
    db: &Db,
    holder: &str,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Claimed>> {
    let lock = if matches!(db, Db::Postgres(_)) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let claim = format!(
        "UPDATE notification_deliveries SET leased_until = $1, lease_holder = $2, \
         attempts = attempts + 1 WHERE id IN (SELECT id FROM notification_deliveries \
         WHERE finished_at IS NULL AND next_attempt_at <= $3 \
         AND (leased_until IS NULL OR leased_until <= $3) \
         ORDER BY next_attempt_at LIMIT $4{lock}) RETURNING id"
    );
    const LOAD: &str = "SELECT d.id, d.attempts, d.created_at, n.name AS notification, n.url, \
        n.format, n.secret_blob, o.name AS org, e.kind, e.workspace, e.payload, \
        e.created_at AS event_at \
        FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id \
        JOIN notification_events e ON e.id = d.event_id JOIN orgs o ON o.id = n.org_id \
        WHERE d.id = $1 AND d.lease_holder = $2";
    let now = Utc::now();
    let ids: Vec<(String,)> = on_pool!(db, p => sqlx::query_as(sqlx::AssertSqlSafe(claim.clone()))
        .bind(until).bind(holder).bind(now).bind(limit).fetch_all(p).await)?;
    let mut out = Vec::with_capacity(ids.len());
    for (id,) in ids {
        let row = on_pool!(db, p => sqlx::query_as::<_, Claimed>(LOAD)
            .bind(&id).bind(holder).fetch_optional(p).await)?;
        out.extend(row);
    }
    Ok(out)
}

/// How one attempt ended.
pub struct Outcome<'a> {
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<&'a str>,
    /// `delivered`, `failed` (for good) or `pending` (retried at `next_attempt_at`).
    pub status: &'a str,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Logs an attempt and moves its delivery on, if `holder` still holds it. False when the
/// lease was lost (another replica took the delivery over): nothing is written.
pub async fn record_attempt(
    db: &Db,
    delivery: &str,
    holder: &str,
    outcome: Outcome<'_>,
) -> Result<bool> {
    const UPDATE: &str = "UPDATE notification_deliveries SET status = $1, last_status = $2, \
        last_error = $3, next_attempt_at = COALESCE($4, next_attempt_at), leased_until = NULL, \
        lease_holder = NULL, finished_at = $5 WHERE id = $6 AND lease_holder = $7 \
        AND finished_at IS NULL";
    const ATTEMPT: &str = "INSERT INTO notification_attempts (delivery_id, attempt, started_at, \
        duration_ms, status_code, error, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
        ON CONFLICT (delivery_id, attempt) DO NOTHING";
    let finished = (outcome.status != "pending").then(Utc::now);
    let done = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        let done = sqlx::query(UPDATE)
            .bind(outcome.status).bind(outcome.status_code).bind(outcome.error)
            .bind(outcome.next_attempt_at).bind(finished).bind(delivery).bind(holder)
            .execute(&mut *tx).await?.rows_affected();
        if done == 1 {
            sqlx::query(ATTEMPT)
                .bind(delivery).bind(outcome.attempt).bind(outcome.started_at)
                .bind(outcome.duration_ms).bind(outcome.status_code).bind(outcome.error)
                .bind(outcome.next_attempt_at)
                .execute(&mut *tx).await?;
            tx.commit().await?;
        }
        Ok::<u64, sqlx::Error>(done)
    })?;
    Ok(done == 1)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub kind: String,
    pub workspace: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// A subscription's deliveries, newest first.
pub async fn deliveries(
    db: &Db,
    notification_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<DeliveryRow>> {
    const SQL: &str = "SELECT d.id, e.kind, e.workspace, d.status, d.attempts, d.created_at, \
        d.next_attempt_at, d.finished_at, d.last_status, d.last_error \
        FROM notification_deliveries d JOIN notification_events e ON e.id = d.event_id \
        WHERE d.notification_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2 OFFSET $3";
    Ok(on_pool!(db, p => sqlx::query_as::<_, DeliveryRow>(SQL)
        .bind(notification_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: String,
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The attempts of the deliveries of a subscription whose ids are `ids`.
pub async fn attempts(db: &Db, ids: &[String]) -> Result<Vec<AttemptRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    // Only generated placeholders go into the text; the ids are bound.
    let sql = format!(
        "SELECT delivery_id, attempt, started_at, duration_ms, status_code, error, \
         next_attempt_at FROM notification_attempts WHERE delivery_id IN ({}) \
         ORDER BY delivery_id, attempt",
        placeholders.join(", ")
    );
    let rows = on_pool!(db, p => {
        let mut query = sqlx::query_as::<_, AttemptRow>(sqlx::AssertSqlSafe(sql.clone()));
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(p).await
    })?;
    Ok(rows)
}

/// Deletes events raised before `before` whose deliveries have all ended (their deliveries and
/// attempts go with them); events that must fire once are kept until `keys_before`.
pub async fn prune(db: &Db, before: DateTime<Utc>, keys_before: DateTime<Utc>) -> Result<u64> {
    const SQL: &str = "DELETE FROM notification_events WHERE created_at < $1 \
        AND (dedupe_key IS NULL OR created_at < $2) \
        AND NOT EXISTS (SELECT 1 FROM notification_deliveries d \
            WHERE d.event_id = notification_events.id AND d.finished_at IS NULL)";
    Ok(
        on_pool!(db, p => sqlx::query(SQL).bind(before).bind(keys_before)
        .execute(p).await.map(|r| r.rows_affected()))?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn prune_keeps_pending_and_fire_once_events(db: Db) {
        let org = crate::names::OrgName::parse("acme").unwrap();
        let org_id = crate::identity::orgs::create_org(&db, &org).await.unwrap();
        let blob = StoredBlob {
            id: "secret-1".into(),
            object_key: "secrets/1/secret-1".into(),
            envelope: Envelope {
                key_id: "k".into(),
                wrapped_key: vec![0; 4],
            },
        };
        let new = NewNotification {
            org_id,
            name: "ops",
            url: "https://example.com/",
            events: "[\"*\"]",
            workspace: None,
            format: "generic",
            enabled: true,
            created_by: "test",
        };
        let secret = NewSecret {
            blob: &blob,
            size: 1,
            sha256: "x",
        };
        insert(&db, new, secret).await.unwrap();
        let id = find(&db, org_id, "ops").await.unwrap().unwrap().id;
        let event = |key| NewEvent {
            org_id,
            kind: "lock:stale",
            workspace: None,
            payload: "{}",
            dedupe_key: key,
        };
        assert!(
            record_event(&db, event(None), &[(id, "msg_a".into())])
                .await
                .unwrap()
        );
        assert!(record_event(&db, event(None), &[]).await.unwrap());
        assert!(record_event(&db, event(Some("once")), &[]).await.unwrap());
        // The same key again is not recorded.
        assert!(
            !record_event(&db, event(Some("once")), &[(id, "msg_b".into())])
                .await
                .unwrap()
        );
        let later = Utc::now() + chrono::Duration::seconds(5);
        let earlier = Utc::now() - chrono::Duration::days(1);
        // The pending delivery's event and the fire-once event stay.
        assert_eq!(prune(&db, later, earlier).await.unwrap(), 1);
        // Once delivered, its event goes; the fire-once event goes after its own period.
        let until = Utc::now() + chrono::Duration::seconds(60);
        let claimed = claim(&db, "me", until, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let outcome = Outcome {
            attempt: 1,
            started_at: Utc::now(),
            duration_ms: 1,
            status_code: Some(200),
            error: None,
            status: "delivered",
            next_attempt_at: None,
        };
        assert!(
            !record_attempt(&db, "msg_a", "other", outcome_copy(&outcome))
                .await
                .unwrap()
        );
        assert!(record_attempt(&db, "msg_a", "me", outcome).await.unwrap());
        assert_eq!(prune(&db, later, earlier).await.unwrap(), 1);
        assert_eq!(prune(&db, later, later).await.unwrap(), 1);
    }

    fn outcome_copy<'a>(o: &Outcome<'a>) -> Outcome<'a> {
        Outcome {
            attempt: o.attempt,
            started_at: o.started_at,
            duration_ms: o.duration_ms,
            status_code: o.status_code,
            error: o.error,
            status: o.status,
            next_attempt_at: o.next_attempt_at,
        }
    }

    #[tokio::test]
    async fn prune_on_sqlite() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        prune_keeps_pending_and_fire_once_events(db).await;
    }

    #[tokio::test]
    async fn prune_on_postgres() {
        if let Some(db) = crate::infra::db::testing::postgres().await {
            prune_keeps_pending_and_fire_once_events(db).await;
        }
    }
}
