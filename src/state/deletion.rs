//! Deleting old state versions: by an admin (a version that leaked a secret), and by a
//! workspace's retention policy. The current version is never deleted: Terraform's next read
//! must find what it last wrote.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Ctx;
use super::service::{workspace_id, ws_resource};
use super::store::{self, Candidate, candidates};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal};
use crate::identity::orgs;
use crate::infra::blob::StoredBlob;
use crate::infra::crypto::Envelope;
use crate::names::{OrgName, WorkspaceName};

#[derive(Debug, Serialize)]
pub struct Deleted {
    /// Version numbers removed; later versions keep their numbers.
    pub versions: Vec<i64>,
}

/// Deletes every version of `ws` with `serial` (admin), with their encrypted objects.
pub async fn delete_versions(
    app: &Ctx,
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
    app: &Ctx,
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
async fn remove_versions(app: &Ctx, workspace: i64, versions: &[i64]) -> Result<Vec<i64>> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let _turn = app.write_turn().await;
    let mut doomed = Vec::new();
    for version in versions {
        doomed.extend(store::delete_version(&app.db, workspace, *version).await?);
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

/// Applies every workspace's retention policy once (a periodic job).
pub async fn apply_all_retention(app: &Ctx) -> Result<()> {
    for (workspace, versions, days) in store::retention_policies(&app.db).await? {
        if let Err(e) = apply_retention(app, workspace, versions, days).await {
            tracing::warn!(error = %e, workspace, "retention failed; will retry");
        }
    }
    Ok(())
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
