//! Deleting old state versions: by an admin (a version that leaked a secret), and by a
//! workspace's retention policy. The current version is never deleted: Terraform's next read
//! must find what it last wrote.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::service::{workspace_id, ws_resource};
use crate::app::AppState;
use crate::auth::{Action, Principal};
use crate::blob::StoredBlob;
use crate::crypto::Envelope;
use crate::db::{Db, on_pool};
use crate::error::{Error, Result};
use crate::names::{OrgName, WorkspaceName};
use crate::orgs;

#[derive(Debug, Serialize)]
pub struct Deleted {
    /// Version numbers removed; later versions keep their numbers.
    pub versions: Vec<i64>,
}

#[derive(sqlx::FromRow)]
struct Doomed {
    id: i64,
    version: i64,
    blob_id: String,
    object_key: String,
    key_id: String,
    wrapped_key: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    version: i64,
    created_at: DateTime<Utc>,
    is_current: bool,
}

/// The workspace's versions, newest first, with the serial's when one is given.
async fn candidates(db: &Db, workspace: i64, serial: Option<i64>) -> Result<Vec<Candidate>> {
    const SQL: &str = "SELECT v.version, v.created_at, \
        (w.current_version_id = v.id) AS is_current FROM state_versions v \
        JOIN workspaces w ON w.id = v.workspace_id \
        WHERE v.workspace_id = $1 AND ($2 IS NULL OR v.serial = $2) ORDER BY v.version DESC";
    Ok(on_pool!(db, p => sqlx::query_as(SQL).bind(workspace).bind(serial).fetch_all(p).await)?)
}

/// Deletes every version of `ws` with `serial` (admin), with their encrypted objects.
pub async fn delete_versions(
    app: &AppState,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<Deleted> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let workspace = workspace_id(app, org_id, ws).await?;
    let found = candidates(&app.db, workspace, Some(serial)).await?;
    if found.is_empty() {
        return Err(Error::NotFound("state version"));
    }
    if found.iter().any(|v| v.is_current) {
        return Err(Error::conflict(
            "that serial is the current state; roll back or write a newer version first",
        ));
    }
    let wanted: Vec<i64> = found.iter().map(|v| v.version).collect();
    let versions = remove_versions(app, workspace, &wanted).await?;
    tracing::warn!(?versions, serial, by = %principal.actor(), "state versions deleted");
    Ok(Deleted { versions })
}

/// Versions outside the policy: neither among the newest `keep_versions`, nor younger than
/// `keep_days`, nor current. With no limit at all, nothing goes.
fn outside_policy(
    newest_first: &[Candidate],
    keep_versions: Option<i64>,
    keep_days: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<i64> {
    if keep_versions.is_none() && keep_days.is_none() {
        return Vec::new();
    }
    newest_first
        .iter()
        .enumerate()
        .filter(|(rank, v)| {
            let recent_enough = keep_versions.is_some_and(|n| (*rank as i64) < n);
            let young_enough =
                keep_days.is_some_and(|d| v.created_at > now - chrono::Duration::days(d));
            !(v.is_current || recent_enough || young_enough)
        })
        .map(|(_, v)| v.version)
        .collect()
}

/// Deletes the versions of one workspace that its retention policy no longer keeps;
/// returns their numbers.
pub async fn apply_retention(
    app: &AppState,
    workspace: i64,
    keep_versions: Option<i64>,
    keep_days: Option<i64>,
) -> Result<Vec<i64>> {
    let all = candidates(&app.db, workspace, None).await?;
    let versions = outside_policy(&all, keep_versions, keep_days, Utc::now());
    let removed = remove_versions(app, workspace, &versions).await?;
    if !removed.is_empty() {
        tracing::info!(workspace, versions = ?removed, "state versions removed by the retention policy");
    }
    Ok(removed)
}

/// Removes version and blob rows, one short transaction per version that re-checks the
/// version is not (or no longer) current, then the objects; returns what was removed.
async fn remove_versions(app: &AppState, workspace: i64, versions: &[i64]) -> Result<Vec<i64>> {
    const DOOMED: &str = "SELECT v.id, v.version, b.id AS blob_id, b.object_key, b.key_id, \
        b.wrapped_key FROM state_versions v JOIN workspaces w ON w.id = v.workspace_id \
        JOIN blobs b ON b.id = v.blob_id WHERE v.workspace_id = $1 AND v.version = $2 \
        AND w.current_version_id <> v.id";
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let db = &app.db;
    let _turn = app.write_turn().await;
    let mut doomed = Vec::new();
    for version in versions {
        let removed: Vec<Doomed> = on_pool!(db, p => {
            let mut tx = p.begin().await?;
            let rows: Vec<Doomed> = sqlx::query_as(DOOMED)
                .bind(workspace)
                .bind(version)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                sqlx::query("DELETE FROM state_versions WHERE id = $1")
                    .bind(row.id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM blobs WHERE id = $1")
                    .bind(&row.blob_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        })?;
        doomed.extend(removed);
    }
    // The rows are gone; an object left behind by a failure here is the sweep's.
    for row in &doomed {
        app.blobs
            .discard(&StoredBlob {
                id: row.blob_id.clone(),
                object_key: row.object_key.clone(),
                envelope: Envelope {
                    key_id: row.key_id.clone(),
                    wrapped_key: row.wrapped_key.clone(),
                },
            })
            .await;
    }
    Ok(doomed.iter().map(|r| r.version).collect())
}

/// A workspace's id and retention limits.
type Policy = (i64, Option<i64>, Option<i64>);

/// Applies every workspace's retention policy every `interval`.
pub fn spawn_retention(
    app: AppState,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    const POLICIES: &str = "SELECT id, retain_versions, retain_days FROM workspaces \
        WHERE retain_versions IS NOT NULL OR retain_days IS NOT NULL ORDER BY id";
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let db = &app.db;
            let policies: std::result::Result<Vec<Policy>, _> =
                on_pool!(db, p => sqlx::query_as(POLICIES).fetch_all(p).await);
            let policies = match policies {
                Ok(policies) => policies,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: cannot list policies; will retry");
                    continue;
                }
            };
            for (workspace, versions, days) in policies {
                if let Err(e) = apply_retention(&app, workspace, versions, days).await {
                    tracing::warn!(error = %e, workspace, "retention failed; will retry");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_stays_if_any_rule_keeps_it() {
        let now = Utc::now();
        let v = |version, days_old, is_current| Candidate {
            version,
            created_at: now - chrono::Duration::days(days_old),
            is_current,
        };
        let history = [
            v(5, 0, true),
            v(4, 1, false),
            v(3, 10, false),
            v(2, 40, false),
            v(1, 90, false),
        ];
        assert!(outside_policy(&history, None, None, now).is_empty());
        assert_eq!(outside_policy(&history, Some(2), None, now), vec![3, 2, 1]);
        assert_eq!(outside_policy(&history, None, Some(30), now), vec![2, 1]);
        assert_eq!(outside_policy(&history, Some(1), Some(30), now), vec![2, 1]);
        // The current version is kept even when every rule would drop it.
        let stale = [v(2, 50, true), v(1, 90, false)];
        assert_eq!(outside_policy(&stale, None, Some(30), now), vec![1]);
    }
}
