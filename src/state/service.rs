//! The state backend's rules: who may read and write, lock ownership, lineage and serial
//! protection, immutable versions. No HTTP and no SQL here.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;

use super::Ctx;
use super::document::{self, StateMeta};
use super::lock::{self, LockInfo};
use super::locks::WriteCheck;
use super::store::{self, Decision, NewVersion, WriteSnapshot};
use crate::error::{Error, Result};
use crate::http::body::{BodyReader, ReceivedBody};
use crate::identity::auth::{Action, Principal, Resource};
use crate::identity::orgs;
use crate::infra::blob::{BlobKey, BlobUpload, Plain, StoredBlob};
use crate::names::{OrgName, WorkspaceName};

/// Where a write came from, recorded with the version.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    Terraform,
    /// Terraform run by one of Terrace's runners, with the run's job token.
    Run(i64),
    Upload,
    Rollback,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Terraform => "terraform",
            Source::Run(_) => "run",
            Source::Upload => "upload",
            Source::Rollback => "rollback",
        }
    }
}

pub(super) fn ws_resource<'a>(org: &'a OrgName, ws: &'a WorkspaceName) -> Resource<'a> {
    Resource::Workspace {
        org: org.as_str(),
        workspace: ws.as_str(),
    }
}

pub(super) async fn workspace_id(app: &Ctx, org_id: i64, ws: &WorkspaceName) -> Result<i64> {
    find_workspace_id(app, org_id, ws)
        .await?
        .ok_or(Error::NotFound("workspace"))
}

/// The id of workspace `ws`, if it exists. Workspaces are never renamed or deleted, so an id
/// once found is cached without invalidation.
async fn find_workspace_id(app: &Ctx, org_id: i64, ws: &WorkspaceName) -> Result<Option<i64>> {
    let key = (org_id, ws.as_str().to_string());
    if let Some(id) = app.workspace_ids.get(&key) {
        return Ok(Some(id));
    }
    let ticket = app.workspace_ids.ticket();
    let found = Box::pin(store::find_workspace(&app.db, org_id, ws.as_str())).await?;
    if let Some(row) = &found {
        app.workspace_ids.insert(ticket, key, row.id);
    }
    Ok(found.map(|row| row.id))
}

/// The id of workspace `ws`, creating the workspace on first use.
async fn ensure_workspace_id(app: &Ctx, org_id: i64, ws: &WorkspaceName) -> Result<i64> {
    if let Some(id) = find_workspace_id(app, org_id, ws).await? {
        return Ok(id);
    }
    Ok(
        store::ensure_workspace(&app.db, org_id, ws.as_str(), Utc::now())
            .await?
            .id,
    )
}

/// Creates workspace `ws` for a caller allowed to write its state; 409 when it exists.
pub async fn create_workspace(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<i64> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateWrite, ws_resource(org, ws)).await?;
    let _turn = app.write_turn().await;
    store::insert_workspace(&app.db, org_id, ws.as_str(), Utc::now()).await
}

/// The outputs of the current state (`{"name": {"value", "type", "sensitive"}}`), for a
/// caller allowed at least to read outputs; `None` without state.
pub async fn current_outputs(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Option<serde_json::Value>> {
    let Some(bytes) = read_state(app, principal, org, ws).await? else {
        return Ok(None);
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(doc.get("outputs").cloned())
}

/// The current state's bytes, exactly as written; `None` when the workspace has no state.
#[tracing::instrument(skip_all, fields(org = %org, workspace = %ws))]
pub async fn read_state(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Option<Bytes>> {
    let Some((current, whole)) = readable_current(app, principal, org, ws).await? else {
        return Ok(None);
    };
    let bytes = app.blobs.get(&current).await?;
    let bytes = if whole { bytes } else { outputs_only(&bytes)? };
    app.metrics.state_sent_bytes.inc_by(bytes.len() as u64);
    Ok(Some(bytes))
}

/// The current state for sending to Terraform: a large one as a stream decrypted as it goes
/// out, so concurrent reads of large states cost constant memory each.
#[tracing::instrument(skip_all, fields(org = %org, workspace = %ws))]
pub async fn send_state(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Option<Plain>> {
    let Some((current, whole)) = readable_current(app, principal, org, ws).await? else {
        return Ok(None);
    };
    let plain = if whole {
        app.blobs.read(&current).await?
    } else {
        Plain::Whole(outputs_only(&app.blobs.get(&current).await?)?)
    };
    let len = match &plain {
        Plain::Whole(bytes) => bytes.len() as u64,
        Plain::Stream { len, .. } => *len,
    };
    app.metrics.state_sent_bytes.inc_by(len);
    Ok(Some(plain))
}

/// Where the current state is, if the caller may read it, and whether whole: callers allowed
/// only outputs (`terraform_remote_state` consumers) get a filtered copy.
async fn readable_current(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Option<(Arc<StoredBlob>, bool)>> {
    let resource = ws_resource(org, ws);
    let (org_id, whole) = match orgs::resolve(&app.db, principal, Action::StateRead, resource).await
    {
        Ok(org_id) => (org_id, true),
        Err(Error::Forbidden) => {
            let org_id =
                orgs::resolve(&app.db, principal, Action::StateReadOutputs, resource).await?;
            (org_id, false)
        }
        Err(e) => return Err(e),
    };
    Ok(current_blob(app, org_id, ws)
        .await?
        .map(|current| (current, whole)))
}

fn outputs_only(bytes: &[u8]) -> Result<Bytes> {
    super::document::outputs_only(bytes)
        .map(Bytes::from)
        .ok_or(Error::Forbidden)
}

/// Where the current state of `ws` is stored; `None` when it has none (or does not exist).
/// From the cache when there is one (SQLite): then a warm read costs no query at all.
async fn current_blob(
    app: &Ctx,
    org_id: i64,
    ws: &WorkspaceName,
) -> Result<Option<Arc<StoredBlob>>> {
    let Some(cache) = &app.current_blobs else {
        let current = Box::pin(store::current_version(&app.db, org_id, ws.as_str())).await?;
        return Ok(current.map(|row| Arc::new(row.blob())));
    };
    let Some(workspace_id) = find_workspace_id(app, org_id, ws).await? else {
        return Ok(None);
    };
    if let Some(cached) = cache.get(&workspace_id) {
        return Ok(cached);
    }
    let ticket = cache.ticket();
    // Boxed: the query's future is large, and only a miss needs it.
    let current = Box::pin(store::current_version_of(&app.db, workspace_id))
        .await?
        .map(|row| Arc::new(row.blob()));
    cache.insert(ticket, workspace_id, current.clone());
    Ok(current)
}

/// The current state of `workspace_id` may have changed (or did): forget where it was.
/// Called after the change, whatever its outcome, and before answering.
fn forget_current(app: &Ctx, workspace_id: i64) {
    if let Some(cache) = &app.current_blobs {
        cache.remove(&workspace_id);
    }
}

/// A state body on its way in: read, encrypted and sent to the blob store chunk by chunk
/// while its serial and lineage are read, so a write of any size costs constant memory.
/// Nothing refers to the blob until it is recorded.
struct StateWrite<'a> {
    upload: BlobUpload<'a>,
    inspector: document::Inspector,
    size: u64,
}

/// A body stored in the blob store and not yet recorded.
pub(super) struct Stored {
    blob: StoredBlob,
    size: i64,
    sha256: String,
    meta: StateMeta,
    started: std::time::Instant,
}

impl Stored {
    pub(super) fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Reads `body` into a new blob of `workspace_id`. A refused or broken-off body leaves
/// nothing behind.
pub(super) async fn store_body(
    app: &Ctx,
    workspace_id: i64,
    mut body: BodyReader,
) -> Result<Stored> {
    let started = std::time::Instant::now();
    let mut write = StateWrite {
        upload: app
            .blobs
            .start_put(BlobKey::new_state_version(workspace_id))?,
        inspector: document::Inspector::new(),
        size: 0,
    };
    let read = async {
        while let Some(chunk) = body.next().await? {
            write.inspector.feed(&chunk)?;
            write.size += chunk.len() as u64;
            write.upload.write(&chunk).await?;
        }
        Ok(())
    }
    .await;
    let meta = read
        .and_then(|()| body.finish())
        .and_then(|sha256| Ok((sha256, write.inspector.finish()?)));
    let (sha256, meta) = match meta {
        Ok(done) => done,
        Err(e) => {
            write.upload.abort().await;
            return Err(e);
        }
    };
    Ok(Stored {
        blob: write.upload.finish().await?,
        size: write.size as i64,
        sha256,
        meta,
        started,
    })
}

/// Records a write from Terraform: lock ownership, then lineage and serial protection. A lock
/// held under another ID refuses the write before any of the body is read.
#[tracing::instrument(skip_all, fields(org = %org, workspace = %ws))]
pub async fn write_state(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    body: BodyReader,
    lock_id: Option<&str>,
) -> Result<Option<i64>> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateWrite, ws_resource(org, ws)).await?;
    let workspace_id = ensure_workspace_id(app, org_id, ws).await?;
    if let Some(holder) = app.locks.find(workspace_id).await?
        && lock_id != Some(holder.lock_id.as_str())
    {
        return Err(Error::Locked(holder.info_bytes()));
    }
    let stored = store_body(app, workspace_id, body).await?;
    let (meta, sha256) = (stored.meta.clone(), stored.sha256.clone());
    let decide = |snap: &WriteSnapshot| {
        check_lock(snap, lock_id)?;
        check_history(snap, &meta, &sha256)
    };
    let source = principal.run_id().map_or(Source::Terraform, Source::Run);
    record(
        app,
        principal,
        workspace_id,
        stored,
        (source, lock_id),
        decide,
    )
    .await
}

/// Encrypts and stores a body held in memory (a rollback's), then records it if `decide`
/// agrees.
pub(super) async fn commit(
    app: &Ctx,
    principal: &Principal,
    workspace_id: i64,
    body: ReceivedBody,
    meta: StateMeta,
    source: (Source, Option<&str>),
    decide: impl FnOnce(&WriteSnapshot) -> Result<Decision>,
) -> Result<Option<i64>> {
    let started = std::time::Instant::now();
    let size = body.buf.len() as i64;
    let blob = app
        .blobs
        .put(BlobKey::new_state_version(workspace_id), body.buf)
        .await?;
    let stored = Stored {
        blob,
        size,
        sha256: body.sha256,
        meta,
        started,
    };
    record(app, principal, workspace_id, stored, source, decide).await
}

/// Records a stored body as a new version if `decide` agrees, and discards the blob
/// otherwise. A write carrying the holder's `lock_id` shows the holder is alive, which
/// renews its lease.
pub(super) async fn record(
    app: &Ctx,
    principal: &Principal,
    workspace_id: i64,
    stored: Stored,
    (source, lock_id): (Source, Option<&str>),
    decide: impl FnOnce(&WriteSnapshot) -> Result<Decision>,
) -> Result<Option<i64>> {
    let Stored {
        blob,
        size,
        sha256,
        meta,
        started,
    } = stored;
    let actor = principal.actor();
    let new = NewVersion {
        workspace_id,
        serial: meta.serial,
        lineage: meta.lineage.as_deref(),
        sha256: &sha256,
        size,
        blob: &blob,
        source: source.as_str(),
        run_id: match source {
            Source::Run(id) => Some(id),
            _ => None,
        },
        created_by: &actor,
        // A database lock is renewed in the write's own transaction: no extra commit.
        renews_lock: lock_id.filter(|_| app.locks.renews_in_write()),
    };
    let renews_in_transaction = new.renews_lock.is_some();
    // Database locks are read inside the write transaction. A DynamoDB lock cannot be: its
    // holder is read (strongly consistent) just before, as late as possible. A lock taken or
    // force-released in the milliseconds between that read and the commit goes unseen: the
    // guarantee Terraform's own S3 + DynamoDB backend gives.
    let outside = match app.locks.holder_for_write(workspace_id).await {
        Ok(outside) => outside,
        Err(e) => {
            app.blobs.discard(&blob).await;
            return Err(e);
        }
    };
    let decide = |snap: &WriteSnapshot| match &outside {
        WriteCheck::InTransaction => decide(snap),
        WriteCheck::Holder(holder) => decide(&snap.with_lock(holder.as_ref())),
    };
    let turn = app.write_turn().await;
    let recorded = store::record_version(&app.db, new, Utc::now(), decide).await;
    drop(turn);
    forget_current(app, workspace_id);
    let recorded = match recorded {
        Ok(Some(version)) => {
            app.metrics.state_received_bytes.inc_by(size as u64);
            app.metrics.state_versions_written.inc();
            app.metrics
                .state_write_duration
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(version, serial = ?meta.serial, size, "state version recorded");
            Ok(Some(version))
        }
        Ok(None) => {
            app.blobs.discard(&blob).await;
            Ok(None)
        }
        Err(err) => {
            app.blobs.discard_unless_committed(&blob, &err).await;
            Err(err)
        }
    }?;
    // Otherwise (DynamoDB, or the bytes were already current) renew on its own.
    if let Some(id) = lock_id
        && !(renews_in_transaction && recorded.is_some())
    {
        let _turn = app.write_turn().await;
        app.locks.renew(workspace_id, id, Utc::now()).await?;
    }
    Ok(recorded)
}

/// While locked, only the holder's ID may write; an ID that holds nothing means the lock
/// was force-released under the writer, whose view of the state may be stale.
pub(super) fn check_lock(snap: &WriteSnapshot, lock_id: Option<&str>) -> Result<()> {
    match (&snap.lock_id, lock_id) {
        (Some(holder), Some(id)) if holder == id => Ok(()),
        (Some(_), _) => Err(Error::Locked(Bytes::from(
            snap.lock_info.clone().unwrap_or_default(),
        ))),
        (None, Some(id)) => Err(Error::conflict(format!(
            "lock {id} is not held (it was released or force-unlocked); refusing a write that may be based on stale state"
        ))),
        (None, None) => Ok(()),
    }
}

/// Lineage and serial protection (design.md): no foreign lineage, no lower serial, no other
/// bytes under the current serial. Identical bytes are a retried write.
pub(super) fn check_history(
    snap: &WriteSnapshot,
    meta: &StateMeta,
    sha256: &str,
) -> Result<Decision> {
    if snap.current_sha256.as_deref() == Some(sha256) {
        return Ok(Decision::AlreadyCurrent);
    }
    if !snap.lineage_protection {
        return Ok(Decision::Insert);
    }
    if let (Some(current), Some(new)) = (&snap.current_lineage, &meta.lineage)
        && current != new
    {
        return Err(Error::conflict(format!(
            "state lineage {new} differs from the workspace's lineage {current}; \
             an admin can turn off lineage protection or upload through the API"
        )));
    }
    if let (Some(current), Some(new)) = (snap.current_serial, meta.serial) {
        if new < current {
            return Err(Error::conflict(format!(
                "state serial {new} is lower than the current serial {current}"
            )));
        }
        if new == current {
            return Err(Error::conflict(format!(
                "state serial {new} is already stored with different content"
            )));
        }
    }
    Ok(Decision::Insert)
}

/// Takes the lock for `info`'s ID, creating the workspace on first use. Idempotent for the
/// holder, because Terraform retries LOCK with the same body.
#[tracing::instrument(skip_all, fields(org = %org, workspace = %ws))]
pub async fn acquire_lock(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    body: &[u8],
) -> Result<()> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateLock, ws_resource(org, ws)).await?;
    let info = LockInfo::parse(body)?;
    let workspace = store::ensure_workspace(&app.db, org_id, ws.as_str(), Utc::now()).await?;
    // LOCK reads the row for its lease settings, which may change; its id never does.
    app.workspace_ids.insert(
        app.workspace_ids.ticket(),
        (org_id, ws.as_str().to_string()),
        workspace.id,
    );
    let actor = principal.actor();
    let now = Utc::now();
    // Only a workspace that opted in lets a stale lock be taken over; the statement itself
    // checks staleness, this is just the cut-off it compares against.
    let stale_before = match workspace.lock_lease_seconds {
        Some(lease) if workspace.expire_stale_locks => {
            now.checked_sub_signed(chrono::Duration::seconds(lease))
        }
        _ => None,
    };
    // Read only for the log line below; the takeover decision is made by the lock backend.
    let previous = match stale_before {
        Some(_) => app.locks.find(workspace.id).await?,
        None => None,
    };
    let turn = app.write_turn().await;
    let holder = app
        .locks
        .acquire(workspace.id, &info.id, body, &actor, now, stale_before)
        .await?;
    drop(turn);
    match holder {
        None => {
            if let Some(old) = previous.filter(|old| old.lock_id != info.id) {
                let old_who = LockInfo::parse(&old.info)
                    .map(|i| i.who)
                    .unwrap_or_default();
                tracing::warn!(
                    lock_id = %info.id,
                    stale_lock_id = %old.lock_id,
                    stale_who = %old_who,
                    stale_renewed_at = %old.renewed_at,
                    "stale lock expired and replaced"
                );
            }
            tracing::info!(lock_id = %info.id, operation = %info.operation, "locked");
            Ok(())
        }
        Some(holder) if holder.lock_id == info.id => Ok(()),
        Some(holder) => {
            app.metrics.lock_conflicts.inc();
            Err(Error::Locked(holder.info_bytes()))
        }
    }
}

/// How many locks are stale right now (for `/metrics`).
pub async fn stale_lock_count(app: &Ctx) -> Result<i64> {
    let now = Utc::now();
    let leased = app.locks.leased(&app.db).await?;
    Ok(leased
        .into_iter()
        .filter(|(renewed_at, lease)| lock::is_stale(*renewed_at, Some(*lease), now))
        .count() as i64)
}

/// Raises `lock:stale` for every lock whose lease ran out, once per holder and renewal (a
/// lock renewed and stale again is announced again). Run by a singleton job.
pub async fn announce_stale_locks(app: &Ctx) -> Result<()> {
    for stale in app.locks.stale(&app.db, Utc::now()).await? {
        let lock = &stale.lock;
        let info = LockInfo::parse(&lock.info).ok();
        let who = info.as_ref().map(|i| i.who.clone()).unwrap_or_default();
        let operation = info.map(|i| i.operation).unwrap_or_default();
        let expired_at = lock::lease_expires_at(lock.renewed_at, Some(stale.lease_seconds));
        let payload = serde_json::json!({
            "message": format!(
                "The state lock of {}/{} is stale: held by {} ({}) since {}, not renewed within its lease of {} s",
                stale.org, stale.workspace, if who.is_empty() { &lock.created_by } else { &who },
                operation, lock.created_at.to_rfc3339(), stale.lease_seconds
            ),
            "workspace": stale.workspace,
            "lock": {
                "id": lock.lock_id,
                "who": who,
                "operation": operation,
                "created_at": lock.created_at,
                "created_by": lock.created_by,
                "renewed_at": lock.renewed_at,
                "lease_seconds": stale.lease_seconds,
                "lease_expired_at": expired_at,
            },
        });
        let key = format!(
            "lock:stale:{}:{}:{}",
            stale.workspace_id,
            lock.lock_id,
            lock.renewed_at.timestamp_micros()
        );
        let event = crate::notifications::Event {
            org_id: stale.org_id,
            kind: "lock:stale",
            workspace: Some(stale.workspace.clone()),
            payload,
        };
        if let Err(e) = crate::notifications::emit_once(app, event, &key).await {
            tracing::warn!(error = %e, workspace = %stale.workspace, "raising lock:stale failed");
        }
    }
    Ok(())
}

/// Releases a lock. An empty body is `terraform force-unlock` (Terraform sends no ID) and
/// releases any holder; otherwise only the holder's ID releases it.
#[tracing::instrument(skip_all, fields(org = %org, workspace = %ws))]
pub async fn release_lock(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    body: &[u8],
) -> Result<()> {
    let org_id = orgs::resolve(&app.db, principal, Action::StateLock, ws_resource(org, ws)).await?;
    let Some(workspace_id) = find_workspace_id(app, org_id, ws).await? else {
        return Ok(());
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        if app.locks.release(workspace_id, None).await? {
            tracing::warn!(by = %principal.actor(), "lock force-released");
        }
        return Ok(());
    }
    let info = LockInfo::parse(body)?;
    let turn = app.write_turn().await;
    let released = app.locks.release(workspace_id, Some(&info.id)).await?;
    drop(turn);
    if released {
        return Ok(());
    }
    match app.locks.find(workspace_id).await? {
        // Someone else holds it now (ours was force-released): leave theirs alone.
        Some(holder) => Err(Error::Locked(holder.info_bytes())),
        // Already released: a retried UNLOCK.
        None => Ok(()),
    }
}

/// Releases `workspace_id`'s lock if a token named `token_name` took it: a run's job token,
/// whose Terraform was lost with its runner and will never unlock. Answers whether it did.
pub async fn release_lock_of_token(app: &Ctx, workspace_id: i64, token_name: &str) -> Result<bool> {
    let Some(holder) = app.locks.find(workspace_id).await? else {
        return Ok(false);
    };
    let ours = format!("token:{token_name}#");
    if !holder.created_by.starts_with(&ours) {
        return Ok(false);
    }
    let turn = app.write_turn().await;
    let released = app
        .locks
        .release(workspace_id, Some(&holder.lock_id))
        .await?;
    drop(turn);
    if released {
        tracing::warn!(lock_id = %holder.lock_id, by = %holder.created_by, "lock of a lost run released");
    }
    Ok(released)
}

/// Detaches the current state (Terraform's DELETE). Versions are kept.
pub async fn delete_state(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<()> {
    let org_id =
        orgs::resolve(&app.db, principal, Action::StateAdmin, ws_resource(org, ws)).await?;
    let id = workspace_id(app, org_id, ws).await?;
    if let Some(holder) = app.locks.find(id).await? {
        return Err(Error::Locked(holder.info_bytes()));
    }
    let cleared = store::clear_current(&app.db, id, Utc::now()).await;
    forget_current(app, id);
    cleared
}
