//! The management side of the state backend: workspace listings and settings, version
//! history, rollback, admin upload and force-unlock. No HTTP and no SQL here.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::Ctx;
use super::document;
use super::lock::{self, LockInfo};
use super::service::{Source, check_lock, commit, record, store_body, workspace_id, ws_resource};
use super::store::{self, Decision, VersionRow};
pub use super::views::{LockHolder, Settings, StateVersion, WorkspaceSummary};
use crate::error::{Error, Result};
use crate::http::body::{BodyReader, ReceivedBody};
use crate::identity::auth::{Action, Principal, Resource};
use crate::identity::orgs;
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::{Page, Paginated};

fn lease_text(seconds: Option<i64>) -> Option<String> {
    let seconds = u64::try_from(seconds?).ok()?;
    Some(humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string())
}

/// The lock info JSON with the lease fields added (Terraform's own keys are capitalised, so
/// these cannot collide).
fn lock_view(
    info: &[u8],
    renewed_at: Option<DateTime<Utc>>,
    lease_seconds: Option<i64>,
) -> Option<serde_json::Value> {
    let mut value: serde_json::Value = serde_json::from_slice(info).ok()?;
    if let (Some(object), Some(renewed_at)) = (value.as_object_mut(), renewed_at) {
        let expires = lock::lease_expires_at(renewed_at, lease_seconds);
        object.insert("renewed_at".into(), serde_json::json!(renewed_at));
        object.insert("lease_expires_at".into(), serde_json::json!(expires));
        object.insert(
            "stale".into(),
            serde_json::json!(lock::is_stale(renewed_at, lease_seconds, Utc::now())),
        );
    }
    Some(value)
}

/// The org's workspaces by name.
pub async fn list_workspaces(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<WorkspaceSummary>> {
    let org_id = orgs::resolve(
        &app.db,
        principal,
        Action::OrgRead,
        Resource::Org(org.as_str()),
    )
    .await?;
    let mut rows = store::list_workspaces(
        &app.db,
        org_id,
        page.fetch_limit(),
        page.offset,
        page.after_text(),
    )
    .await?;
    app.locks.fill_page(&mut rows).await?;
    Ok(
        Paginated::keyed(rows, page, |row| row.name.clone()).map(|row| WorkspaceSummary {
            name: row.name,
            serial: row.serial,
            size: row.size,
            versions: row.version_count,
            updated_at: row.updated_at,
            updated_by: row.updated_by,
            lineage_protection: row.lineage_protection,
            lock_lease: lease_text(row.lock_lease_seconds),
            expire_stale_locks: row.expire_stale_locks,
            retain_versions: row.retain_versions,
            retain_days: row.retain_days,
            lock: row
                .lock_info
                .and_then(|info| lock_view(&info, row.lock_renewed_at, row.lock_lease_seconds)),
        }),
    )
}

/// One workspace.
pub async fn workspace(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<WorkspaceSummary> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateRead, ws_resource(org, ws)).await?;
    let row = store::find_workspace(&app.db, org_id, ws.as_str())
        .await?
        .ok_or(Error::NotFound("workspace"))?;
    let current = store::current_version(&app.db, org_id, ws.as_str()).await?;
    let lock = app.locks.find(row.id).await?;
    Ok(WorkspaceSummary {
        name: row.name,
        serial: current.as_ref().and_then(|c| c.serial),
        size: current.as_ref().map(|c| c.size),
        versions: row.version_count,
        updated_at: row.updated_at,
        updated_by: current.as_ref().map(|c| c.created_by.clone()),
        lineage_protection: row.lineage_protection,
        lock_lease: lease_text(row.lock_lease_seconds),
        expire_stale_locks: row.expire_stale_locks,
        retain_versions: row.retain_versions,
        retain_days: row.retain_days,
        lock: lock.and_then(|l| lock_view(&l.info, Some(l.renewed_at), row.lock_lease_seconds)),
    })
}

/// Changes workspace settings (admin).
pub async fn update_settings(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    settings: Settings,
) -> Result<WorkspaceSummary> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let id = workspace_id(app, org_id, ws).await?;
    // Validate everything before changing anything.
    let new_lease = match &settings.lock_lease {
        Some(Some(text)) => Some(Some(lock::parse_lease(text)?)),
        Some(None) => Some(None),
        None => None,
    };
    for (name, value, max) in [
        ("retain_versions", settings.retain_versions, 1_000_000),
        ("retain_days", settings.retain_days, 36_500),
    ] {
        if let Some(Some(n)) = value
            && !(1..=max).contains(&n)
        {
            return Err(Error::invalid(format!(
                "{name} must be between 1 and {max}, or null for no limit"
            )));
        }
    }
    if let Some(on) = settings.lineage_protection {
        store::set_lineage_protection(&app.db, id, on, Utc::now()).await?;
        tracing::warn!(on, by = %principal.actor(), "lineage protection changed");
    }
    if new_lease.is_some() || settings.expire_stale_locks.is_some() {
        let current = store::find_workspace(&app.db, org_id, ws.as_str())
            .await?
            .ok_or(Error::NotFound("workspace"))?;
        let lease = new_lease.unwrap_or(current.lock_lease_seconds);
        let expire = settings
            .expire_stale_locks
            .unwrap_or(current.expire_stale_locks);
        store::set_lock_lease(&app.db, id, lease, expire, Utc::now()).await?;
        tracing::warn!(lease_seconds = ?lease, expire, by = %principal.actor(), "lock lease changed");
    }
    if settings.retain_versions.is_some() || settings.retain_days.is_some() {
        let current = store::find_workspace(&app.db, org_id, ws.as_str())
            .await?
            .ok_or(Error::NotFound("workspace"))?;
        let versions = settings.retain_versions.unwrap_or(current.retain_versions);
        let days = settings.retain_days.unwrap_or(current.retain_days);
        store::set_retention(&app.db, id, versions, days, Utc::now()).await?;
        tracing::warn!(?versions, ?days, by = %principal.actor(), "retention changed");
        super::deletion::apply_retention(app, id, versions, days).await?;
    }
    workspace(app, principal, org, ws).await
}

/// Versions newest first.
pub async fn list_versions(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    page: Page,
) -> Result<Paginated<StateVersion>> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateRead, ws_resource(org, ws)).await?;
    let id = workspace_id(app, org_id, ws).await?;
    let rows = store::list_versions(
        &app.db,
        id,
        page.fetch_limit(),
        page.offset,
        page.after_number()?,
    )
    .await?;
    Ok(Paginated::keyed(rows, page, |row| row.version.to_string()).map(StateVersion::from))
}

async fn find_version(
    app: &Ctx,
    org_id: i64,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<(i64, VersionRow)> {
    let id = workspace_id(app, org_id, ws).await?;
    let row = store::version_by_serial(&app.db, id, serial)
        .await?
        .ok_or(Error::NotFound("state version"))?;
    Ok((id, row))
}

/// The bytes of the newest version with `serial`.
pub async fn read_version(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<Bytes> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateRead, ws_resource(org, ws)).await?;
    let (_, row) = find_version(app, org_id, ws, serial).await?;
    let bytes = app.blobs.get(&row.blob()).await?;
    app.metrics.state_sent_bytes.inc_by(bytes.len() as u64);
    Ok(bytes)
}

/// What changed from version `from` to version `to` (by serial), sensitive values masked.
pub async fn diff(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    from: i64,
    to: i64,
) -> Result<super::diff::StateDiff> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateRead, ws_resource(org, ws)).await?;
    let (_, before) = find_version(app, org_id, ws, from).await?;
    let (_, after) = find_version(app, org_id, ws, to).await?;
    // Both documents are parsed whole, which takes several times their size in memory.
    if before.size.max(after.size) > super::diff::MAX_BYTES {
        return Err(Error::Unprocessable(vec![
            "versions above 32 MiB are not compared here; download them instead".into(),
        ]));
    }
    let (before, after) = (before.blob(), after.blob());
    let (before, after) = tokio::try_join!(app.blobs.get(&before), app.blobs.get(&after))?;
    // Parsing two large documents is CPU work; keep it off the request threads.
    tokio::task::spawn_blocking(move || super::diff::diff(&before, &after))
        .await
        .map_err(|e| Error::Internal(e.into()))?
}

/// The version a rollback to `serial` would restore, for a caller who may roll back (what a
/// confirmation shows).
pub async fn rollback_target(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<StateVersion> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let (_, row) = find_version(app, org_id, ws, serial).await?;
    Ok(StateVersion::from(row))
}

/// Writes the content of version `serial` as a new version with the next serial, so that
/// Terraform, which only moves forward, accepts it as the newest state.
pub async fn rollback(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<StateVersion> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let (id, row) = find_version(app, org_id, ws, serial).await?;
    let old = app.blobs.get(&row.blob()).await?;
    let current = store::current_version(&app.db, org_id, ws.as_str()).await?;
    let next_serial = current
        .and_then(|c| c.serial)
        .unwrap_or(serial)
        .max(serial)
        .checked_add(1)
        .ok_or_else(|| Error::Conflict("the serial cannot go past its largest value".into()))?;
    let content = match row.serial {
        Some(_) => document::with_serial(&old, next_serial)?,
        None => old.to_vec(),
    };
    let body = ReceivedBody::from_bytes(&content);
    let meta = document::inspect(body.buf.plaintext())?;
    let version = commit(
        app,
        principal,
        id,
        body,
        meta,
        (Source::Rollback, None),
        |snap| {
            check_lock(snap, None)?;
            Ok(Decision::Insert)
        },
    )
    .await?;
    tracing::warn!(from_serial = serial, ?version, by = %principal.actor(), "state rolled back");
    latest(app, org_id, ws).await
}

/// Stores a body as the newest version without lineage or serial checks (admin escape hatch).
pub async fn upload(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    body: BodyReader,
    lock_id: Option<&str>,
) -> Result<StateVersion> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let workspace = store::ensure_workspace(&app.db, org_id, ws.as_str(), Utc::now()).await?;
    let stored = store_body(app, workspace.id, body).await?;
    let sha256 = stored.sha256().to_string();
    record(
        app,
        principal,
        workspace.id,
        stored,
        (Source::Upload, lock_id),
        |snap| {
            check_lock(snap, lock_id)?;
            if snap.current_sha256.as_deref() == Some(sha256.as_str()) {
                return Ok(Decision::AlreadyCurrent);
            }
            Ok(Decision::Insert)
        },
    )
    .await?;
    latest(app, org_id, ws).await
}

async fn latest(app: &Ctx, org_id: i64, ws: &WorkspaceName) -> Result<StateVersion> {
    store::current_version(&app.db, org_id, ws.as_str())
        .await?
        .map(StateVersion::from)
        .ok_or(Error::NotFound("state version"))
}

/// The current lock holder, if any.
pub async fn lock_holder(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<LockHolder> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateRead, ws_resource(org, ws)).await?;
    let workspace = store::find_workspace(&app.db, org_id, ws.as_str())
        .await?
        .ok_or(Error::NotFound("workspace"))?;
    let row = app
        .locks
        .find(workspace.id)
        .await?
        .ok_or(Error::NotFound("lock"))?;
    let lease = workspace.lock_lease_seconds;
    let info = LockInfo::parse(&row.info).ok();
    let raw = serde_json::from_slice(&row.info).unwrap_or(serde_json::Value::Null);
    Ok(LockHolder {
        info: raw,
        id: row.lock_id,
        who: info.as_ref().map(|i| i.who.clone()).unwrap_or_default(),
        operation: info.map(|i| i.operation).unwrap_or_default(),
        created_at: row.created_at,
        created_by: row.created_by,
        renewed_at: row.renewed_at,
        lease_expires_at: lock::lease_expires_at(row.renewed_at, lease),
        stale: lock::is_stale(row.renewed_at, lease, Utc::now()),
    })
}

/// Releases any lock (admin, through the API).
pub async fn force_unlock(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<()> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let id = workspace_id(app, org_id, ws).await?;
    if app.locks.release(id, None).await? {
        tracing::warn!(by = %principal.actor(), "lock force-released through the API");
        Ok(())
    } else {
        Err(Error::NotFound("lock"))
    }
}
