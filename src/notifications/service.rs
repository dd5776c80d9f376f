//! Notification rules: who may manage subscriptions (org admins), what a subscription may
//! name, which subscriptions an event reaches, and the outbox entries it makes. No HTTP types.

use std::collections::BTreeMap;

use globset::Glob;

use super::store::{self, NewEvent, NewSecret, NotificationRow};
use super::views::{self, Format, NewNotification, NotificationUpdate};
use super::{Ctx, Event, KINDS, TEST_KIND};
use crate::error::{Error, Result};
use crate::identity::auth::Principal;
use crate::infra::AppState;
use crate::infra::blob::{BlobKey, BlobKind, PlainBuffer};
use crate::infra::notes::note_operation;
use crate::names::OrgName;
use crate::pagination::{Page, Paginated};

const MAX_NAME: usize = 64;
const MAX_URL: usize = 2048;
const MAX_EVENTS: usize = 50;
const MAX_GLOB: usize = 200;

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "a notification name has 1 to {MAX_NAME} lowercase letters, digits, `-` or `_`, starting with a letter or digit"
        )))
    }
}

/// Whether the event kind or pattern `wanted` (`run:applied`, `run:*`, `*`) covers `kind`.
fn covers(wanted: &str, kind: &str) -> bool {
    match wanted.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => wanted == kind,
    }
}

fn check_events(events: &[String], problems: &mut Vec<String>) {
    if events.is_empty() {
        problems.push("events: name at least one event".into());
    }
    if events.len() > MAX_EVENTS {
        problems.push(format!("events: at most {MAX_EVENTS}"));
    }
    for (i, wanted) in events.iter().enumerate() {
        if !KINDS.iter().any(|k| covers(wanted, k)) {
            problems.push(format!(
                "events[{i}]: {wanted:?} is not an event (one of {}, or a pattern such as run:*)",
                KINDS.join(", ")
            ));
        }
    }
}

fn check_glob(glob: &str, problems: &mut Vec<String>) {
    if glob.is_empty() || glob.len() > MAX_GLOB {
        problems.push(format!("workspace: a glob of 1 to {MAX_GLOB} characters"));
    } else if let Err(e) = Glob::new(glob) {
        problems.push(format!("workspace: {e}"));
    }
}

async fn check_url(app: &Ctx, url: &str, problems: &mut Vec<String>) {
    if url.len() > MAX_URL {
        problems.push(format!("url: at most {MAX_URL} characters"));
        return;
    }
    if let Err(why) = super::guard::check(url, app.settings.allow_private).await {
        problems.push(format!("url: {why}"));
    }
}

fn view(row: NotificationRow, secret: Option<String>) -> views::Notification {
    views::Notification {
        events: serde_json::from_str(&row.events).unwrap_or_default(),
        format: Format::parse(&row.format).unwrap_or(Format::Generic),
        name: row.name,
        url: row.url,
        workspace: row.workspace,
        enabled: row.enabled,
        created_at: row.created_at,
        created_by: row.created_by,
        updated_at: row.updated_at,
        secret,
    }
}

/// A new secret, stored encrypted (a `secrets` blob, re-wrapped by `terrace keys rotate`
/// like every blob); the caller records its row.
async fn store_secret(app: &Ctx, org_id: i64) -> Result<(String, crate::infra::blob::StoredBlob)> {
    let secret = super::sign::new_secret()?;
    let blob = app
        .blobs
        .put(
            BlobKey::new(BlobKind::Secret, org_id),
            PlainBuffer::from_plaintext(secret.as_bytes()),
        )
        .await?;
    Ok((secret, blob))
}

/// Creates a subscription (org admin); the answer carries its secret, shown this once.
pub async fn create(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    req: NewNotification,
) -> Result<views::Notification> {
    check_name(&req.name)?;
    let org_id = crate::identity::orgs::resolve_admin(&app.db, principal, org).await?;
    note_operation("notification:create", format!("notification:{}", req.name));
    let mut problems = Vec::new();
    check_events(&req.events, &mut problems);
    if let Some(glob) = &req.workspace {
        check_glob(glob, &mut problems);
    }
    check_url(app, &req.url, &mut problems).await;
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    let events = serde_json::to_string(&req.events).map_err(anyhow::Error::from)?;
    let (secret, blob) = store_secret(app, org_id).await?;
    let sha256 = crate::infra::crypto::sha256_hex(secret.as_bytes());
    let actor = principal.actor();
    let inserted = {
        let _turn = app.write_turn().await;
        store::insert(
            &app.db,
            store::NewNotification {
                org_id,
                name: &req.name,
                url: &req.url,
                events: &events,
                workspace: req.workspace.as_deref(),
                format: req.format.unwrap_or(Format::Generic).as_str(),
                enabled: req.enabled.unwrap_or(true),
                created_by: &actor,
            },
            NewSecret {
                blob: &blob,
                size: secret.len() as i64,
                sha256: &sha256,
            },
        )
        .await
    };
    if let Err(err) = inserted {
        app.blobs.discard_unless_committed(&blob, &err).await;
        return Err(err.or_conflict(|| format!("notification {} already exists", req.name)));
    }
    let row = store::find(&app.db, org_id, &req.name)
        .await?
        .ok_or(Error::NotFound("notification"))?;
    Ok(view(row, Some(secret)))
}

/// The subscription `name` of `org`, for an org admin (404 otherwise).
async fn visible(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
) -> Result<NotificationRow> {
    let org_id = crate::identity::orgs::resolve_admin(&app.db, principal, org).await?;
    check_name(name).map_err(|_| Error::NotFound("notification"))?;
    store::find(&app.db, org_id, name)
        .await?
        .ok_or(Error::NotFound("notification"))
}

pub async fn list(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<views::Notification>> {
    let org_id = crate::identity::orgs::resolve_admin(&app.db, principal, org).await?;
    let rows = store::list(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(
        rows.into_iter().map(|r| view(r, None)).collect(),
        page,
    ))
}

pub async fn show(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
) -> Result<views::Notification> {
    Ok(view(visible(app, principal, org, name).await?, None))
}

pub async fn update(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    patch: NotificationUpdate,
) -> Result<views::Notification> {
    let mut row = visible(app, principal, org, name).await?;
    note_operation("notification:update", format!("notification:{name}"));
    let mut problems = Vec::new();
    if let Some(events) = &patch.events {
        check_events(events, &mut problems);
        row.events = serde_json::to_string(events).map_err(anyhow::Error::from)?;
    }
    if let Some(workspace) = patch.workspace {
        if let Some(glob) = &workspace {
            check_glob(glob, &mut problems);
        }
        row.workspace = workspace;
    }
    if let Some(url) = patch.url {
        check_url(app, &url, &mut problems).await;
        row.url = url;
    }
    if let Some(format) = patch.format {
        row.format = format.as_str().to_string();
    }
    if let Some(enabled) = patch.enabled {
        row.enabled = enabled;
    }
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    let rotated = match patch.rotate_secret {
        Some(true) => Some(store_secret(app, row.org_id).await?),
        _ => None,
    };
    let sha256 = rotated
        .as_ref()
        .map(|(secret, _)| crate::infra::crypto::sha256_hex(secret.as_bytes()));
    let new_secret = rotated
        .as_ref()
        .zip(sha256.as_deref())
        .map(|((secret, blob), sha256)| NewSecret {
            blob,
            size: secret.len() as i64,
            sha256,
        });
    let updated = {
        let _turn = app.write_turn().await;
        store::update(&app.db, &row, new_secret).await
    };
    match updated {
        Ok(Some(old)) => {
            if let Some(blob) = store::blob(&app.db, &old).await? {
                app.blobs.discard(&blob).await;
            }
        }
        Ok(None) => {}
        Err(err) => {
            if let Some((_, blob)) = &rotated {
                app.blobs.discard_unless_committed(blob, &err).await;
            }
            return Err(err);
        }
    }
    let row = store::find(&app.db, row.org_id, &row.name)
        .await?
        .ok_or(Error::NotFound("notification"))?;
    Ok(view(row, rotated.map(|(secret, _)| secret)))
}

pub async fn delete(app: &Ctx, principal: &Principal, org: &OrgName, name: &str) -> Result<()> {
    let row = visible(app, principal, org, name).await?;
    note_operation("notification:delete", format!("notification:{name}"));
    let blob = store::blob(&app.db, &row.secret_blob).await?;
    {
        let _turn = app.write_turn().await;
        store::delete(&app.db, &row).await?;
    }
    if let Some(blob) = blob {
        app.blobs.discard(&blob).await;
    }
    Ok(())
}

/// Queues a `notification:test` event to this subscription alone, whatever its filters.
pub async fn test(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
) -> Result<views::TestQueued> {
    let row = visible(app, principal, org, name).await?;
    note_operation("notification:test", format!("notification:{name}"));
    let delivery = new_delivery_id();
    let payload = serde_json::json!({
        "message": format!("Test notification from Terrace for {name}"),
        "requested_by": principal.actor(),
    });
    let payload = payload.to_string();
    {
        let _turn = app.write_turn().await;
        store::record_event(
            &app.db,
            NewEvent {
                org_id: row.org_id,
                kind: TEST_KIND,
                workspace: None,
                payload: &payload,
                dedupe_key: None,
            },
            &[(row.id, delivery.clone())],
        )
        .await?;
    }
    super::wake().notify_waiters();
    Ok(views::TestQueued { delivery })
}

/// A subscription's deliveries, newest first, each with its attempts.
pub async fn deliveries(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    page: Page,
) -> Result<Paginated<views::Delivery>> {
    let row = visible(app, principal, org, name).await?;
    let rows = store::deliveries(&app.db, row.id, page.fetch_limit(), page.offset).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut log: BTreeMap<String, Vec<views::Attempt>> = BTreeMap::new();
    for a in store::attempts(&app.db, &ids).await? {
        log.entry(a.delivery_id).or_default().push(views::Attempt {
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
            next_attempt_at: a.next_attempt_at,
        });
    }
    let data = rows
        .into_iter()
        .map(|r| views::Delivery {
            log: log.remove(&r.id).unwrap_or_default(),
            next_attempt_at: (r.finished_at.is_none()).then_some(r.next_attempt_at),
            id: r.id,
            event: r.kind,
            workspace: r.workspace,
            status: r.status,
            attempts: r.attempts,
            created_at: r.created_at,
            finished_at: r.finished_at,
            last_status: r.last_status,
            last_error: r.last_error,
        })
        .collect();
    Ok(Paginated::new(data, page))
}

/// A Standard Webhooks message id.
fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// Whether subscription `row` wants `event`.
fn wants(row: &NotificationRow, event: &Event) -> bool {
    let events: Vec<String> = serde_json::from_str(&row.events).unwrap_or_default();
    if !events.iter().any(|w| covers(w, event.kind)) {
        return false;
    }
    match (&row.workspace, &event.workspace) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(glob), Some(ws)) => Glob::new(glob)
            .map(|g| g.compile_matcher().is_match(ws))
            .unwrap_or(false),
    }
}

/// Records `event` with a delivery to every enabled subscription of its org that wants it
/// (nothing when none does, unless `dedupe_key` must be remembered), and wakes the worker.
pub(super) async fn record(
    state: &AppState,
    event: &Event,
    dedupe_key: Option<&str>,
) -> Result<()> {
    let targets: Vec<(i64, String)> = store::enabled(&state.db, event.org_id)
        .await?
        .iter()
        .filter(|row| wants(row, event))
        .map(|row| (row.id, new_delivery_id()))
        .collect();
    if targets.is_empty() && dedupe_key.is_none() {
        tracing::debug!(
            kind = event.kind,
            org_id = event.org_id,
            "no subscription wants the event"
        );
        return Ok(());
    }
    let payload = event.payload.to_string();
    let recorded = {
        let _turn = state.write_turn().await;
        store::record_event(
            &state.db,
            NewEvent {
                org_id: event.org_id,
                kind: event.kind,
                workspace: event.workspace.as_deref(),
                payload: &payload,
                dedupe_key,
            },
            &targets,
        )
        .await?
    };
    if recorded && !targets.is_empty() {
        tracing::info!(
            kind = event.kind,
            org_id = event.org_id,
            deliveries = targets.len(),
            "notification event queued"
        );
        super::wake().notify_waiters();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_cover_kinds() {
        assert!(covers("run:*", "run:applied"));
        assert!(covers("*", "lock:stale"));
        assert!(covers("lock:stale", "lock:stale"));
        assert!(!covers("run:*", "lock:stale"));
        let mut problems = Vec::new();
        check_events(&["run:*".into(), "budget:threshold".into()], &mut problems);
        assert!(problems.is_empty());
        check_events(&["run:exploded".into()], &mut problems);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ops-alerts_1").is_ok());
        assert!(check_name("Ops").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("").is_err());
    }
}
