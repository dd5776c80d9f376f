//! The server side of the runner protocol: a long-poll claim over the work queue, a lease
//! renewed by heartbeats (whose answer carries cancel requests), log chunks at offsets, and
//! the finish call. In-process runners call these functions directly as `Principal::System`;
//! `terrace runner` reaches them over HTTP with a runner token.

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use serde_json::{Map, Value};

use super::Ctx;
use super::runs::{
    self, APPLIED, APPLYING, CANCELED, ERRORED, JobPayload, NO_CHANGES, PLANNED, PLANNING, QUEUED,
};
use super::store::{self, Change, NewBlob, RunRow};
use super::views::{Claim, ClaimRequest, Finish, HeartbeatReply};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource, Role, authorize};
use crate::infra::blob::{BlobKey, BlobKind, PlainBuffer};
use crate::infra::queue;

/// How long a claim holds when nothing is queued.
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// A run's lease; heartbeats renew it.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often runners heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a job token lives (it is revoked when the run ends).
const JOB_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(12);

/// The queue-kind prefix `principal` may claim from: every org for the server's own runners,
/// its org for a runner token.
fn claim_scope(principal: &Principal) -> Result<(String, Option<i64>)> {
    if matches!(principal, Principal::System) {
        return Ok(("run:".into(), None));
    }
    let caller = principal.caller().ok_or(Error::Unauthenticated)?;
    let grant = caller
        .grants
        .iter()
        .find(|g| g.role == Some(Role::Runner))
        .ok_or(Error::Forbidden)?;
    authorize(principal, Action::RunClaim, Resource::Org(&grant.org_name))?;
    Ok((runs::job_kind(grant.org_id), Some(grant.org_id)))
}

/// Waits up to `wait` (at most 25 s) for a run to claim.
pub async fn claim(app: &Ctx, principal: &Principal, req: &ClaimRequest) -> Result<Option<Claim>> {
    let (prefix, _) = claim_scope(principal)?;
    let runner: String = req.runner.chars().take(100).collect();
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Across replicas nobody wakes this one: look again every second on PostgreSQL.
    let recheck = match app.db {
        crate::infra::db::Db::Postgres(_) => Duration::from_secs(1),
        crate::infra::db::Db::Sqlite(_) => Duration::from_secs(5),
    };
    loop {
        let notified = app.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let lease = uuid::Uuid::new_v4().to_string();
        let job = {
            let _turn = app.write_turn().await;
            queue::claim_prefixed(&app.db, &prefix, &lease, LEASE).await?
        };
        if let Some(job) = job {
            if let Some(claim) = start(app, job, &runner, &lease).await? {
                return Ok(Some(claim));
            }
            continue;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep((deadline - now).min(recheck)) => {}
        }
    }
}

/// Starts the claimed job's phase, or drops a job that has nothing left to do.
async fn start(app: &Ctx, job: queue::Job, runner: &str, lease: &str) -> Result<Option<Claim>> {
    let Ok(payload) = serde_json::from_str::<JobPayload>(&job.payload) else {
        queue::withdraw(&app.db, job.id, "unreadable payload").await?;
        return Ok(None);
    };
    let Some(run) = store::run_by_id(&app.db, payload.run).await? else {
        queue::withdraw(&app.db, job.id, "run gone").await?;
        return Ok(None);
    };
    if run.job_id != Some(job.id) || run.finished_at.is_some() {
        queue::withdraw(&app.db, job.id, "stale job").await?;
        return Ok(None);
    }
    let (from, to): (&[&'static str], &'static str) =
        match (payload.phase.as_str(), run.status.as_str()) {
            ("plan", QUEUED | PLANNING) => (&[QUEUED, PLANNING], PLANNING),
            ("apply", PLANNED) => (&[PLANNED], APPLYING),
            ("apply", APPLYING) => {
                // Its runner was lost mid-apply and the lease ran out before the check did.
                lost_during_apply(app, &run).await?;
                return Ok(None);
            }
            _ => {
                queue::withdraw(&app.db, job.id, "run not in a claimable state").await?;
                return Ok(None);
            }
        };
    let deployment = store::deployment_by_id(&app.db, run.deployment_id)
        .await?
        .ok_or(Error::NotFound("deployment"))?;
    if run.status == PLANNING {
        // Its runner was lost mid-plan and the lease ran out before the check did.
        release_lost_lock(app, &run).await?;
    }
    if let Some(old) = run.token_id {
        crate::identity::orgs::revoke_job_token(&app.state.identity, run.org_id, old).await?;
    }
    let (token_id, token) = crate::identity::orgs::create_job_token(
        &app.db,
        run.org_id,
        run.id,
        &deployment.name,
        Utc::now() + JOB_TOKEN_TTL,
    )
    .await?;
    let change = Change {
        lease: Some(Some(lease)),
        runner: Some(runner),
        token_id: Some(Some(token_id)),
        reason: Some(None),
        started: true,
        ..Change::default()
    };
    if !store::transition(&app.db, run.id, from, to, change).await? {
        crate::identity::orgs::revoke_job_token(&app.state.identity, run.org_id, token_id).await?;
        return Ok(None);
    }
    tracing::info!(run = run.id, phase = %payload.phase, runner, "run claimed");
    super::events::announce(app, run.id, to).await;
    let config: Value = serde_json::from_str(&run.config).map_err(anyhow::Error::from)?;
    let mut files: std::collections::BTreeMap<String, String> =
        serde_json::from_value(config["files"].clone()).unwrap_or_default();
    let mut vars: Map<String, Value> =
        serde_json::from_value(config["inputs"].clone()).unwrap_or_default();
    vars.extend(super::service::secrets(app, run.secrets_blob.as_deref()).await?);
    files.insert(
        "terraform.tfvars.json".into(),
        serde_json::to_string(&vars).map_err(anyhow::Error::from)?,
    );
    let plan_file = match (&run.plan_blob, to) {
        (Some(id), APPLYING) => {
            let blob = store::blob(&app.db, id).await?;
            Some(base64::engine::general_purpose::STANDARD.encode(app.blobs.get(&blob).await?))
        }
        _ => None,
    };
    let url = config["url"].as_str().unwrap_or_default().to_string();
    Ok(Some(Claim {
        run_id: run.id,
        lease: lease.to_string(),
        phase: payload.phase,
        operation: run.operation,
        org: config["org"].as_str().unwrap_or_default().to_string(),
        workspace: deployment.name,
        files,
        job_token: token,
        host: super::generate::host(&url).to_string(),
        mirror_url: app.mirror_url.as_ref().map(|m| format!("{url}{m}")),
        url,
        plan_file,
        log_offset: run.log_size,
        heartbeat_seconds: HEARTBEAT.as_secs(),
    }))
}

/// The run `id` as held by `lease`, for a principal that may claim its org's runs.
async fn held(app: &Ctx, principal: &Principal, id: i64, lease: &str) -> Result<RunRow> {
    let (_, org) = claim_scope(principal)?;
    let run = store::run_by_id(&app.db, id)
        .await?
        .filter(|r| org.is_none_or(|o| o == r.org_id))
        .ok_or(Error::NotFound("run"))?;
    if run.lease.as_deref() != Some(lease) || run.finished_at.is_some() {
        return Err(Error::conflict("this runner no longer holds the run"));
    }
    Ok(run)
}

/// Renews the lease; the answer says whether to stop Terraform.
pub async fn heartbeat(
    app: &Ctx,
    principal: &Principal,
    id: i64,
    lease: &str,
) -> Result<HeartbeatReply> {
    let run = held(app, principal, id, lease).await?;
    let renewed = match run.job_id {
        Some(job) => queue::renew(&app.db, job, lease, LEASE).await?,
        None => false,
    };
    if !renewed {
        return Err(Error::conflict("the run's lease was lost"));
    }
    Ok(HeartbeatReply {
        cancel: run.cancel_requests >= 1,
        force: run.cancel_requests >= 2,
    })
}

/// Stores a log chunk at `offset` (idempotent); answers the log's size.
pub async fn append_log(
    app: &Ctx,
    principal: &Principal,
    id: i64,
    lease: &str,
    offset: i64,
    data: &[u8],
) -> Result<i64> {
    held(app, principal, id, lease).await?;
    let _turn = app.write_turn().await;
    store::append_log(&app.db, id, offset, data).await
}

/// Records how the claimed phase ended and moves the run on.
pub async fn finish(
    app: &Ctx,
    principal: &Principal,
    id: i64,
    lease: &str,
    done: Finish,
) -> Result<()> {
    let run = held(app, principal, id, lease).await?;
    let release = |job: Option<i64>| async move {
        if let Some(job) = job {
            queue::finish_held(&app.db, job, lease, None).await?;
        }
        Ok::<(), Error>(())
    };
    match (run.status.as_str(), done.status.as_str()) {
        (PLANNING, "planned") => {
            let plan_json = done.plan_json.unwrap_or(Value::Null);
            let summary = runs::summarize(&plan_json).to_string();
            let has_changes = done.has_changes.unwrap_or(true);
            let plan = match &done.plan_file {
                Some(b64) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| Error::invalid("plan_file must be base64"))?;
                    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
                    let blob = app
                        .blobs
                        .put(
                            BlobKey::new(BlobKind::Secret, run.org_id),
                            PlainBuffer::from_plaintext(&bytes),
                        )
                        .await?;
                    Some((blob, bytes.len() as i64, sha))
                }
                None => None,
            };
            let (to, finished) = if has_changes {
                (PLANNED, false)
            } else {
                (NO_CHANGES, true)
            };
            let _turn = app.write_turn().await;
            let recorded = store::record_plan(
                &app.db,
                id,
                lease,
                plan.as_ref().map(|(blob, size, sha)| NewBlob {
                    blob,
                    size: *size,
                    sha256: sha,
                }),
                &summary,
                has_changes,
                to,
                finished,
            )
            .await?;
            drop(_turn);
            if !recorded {
                if let Some((blob, _, _)) = &plan {
                    app.blobs.discard(blob).await;
                }
                return Err(Error::conflict("the run changed meanwhile"));
            }
            release(run.job_id).await?;
            let run_id = run.id;
            if finished {
                if run.operation == "destroy" {
                    super::service::archive(app, run.deployment_id).await?;
                }
                runs::finished(
                    app,
                    &RunRow {
                        job_id: None,
                        ..run
                    },
                    None,
                )
                .await?;
            } else {
                store::transition(
                    &app.db,
                    id,
                    &[PLANNED],
                    PLANNED,
                    Change {
                        job_id: Some(None),
                        lease: Some(None),
                        ..Change::default()
                    },
                )
                .await?;
                let gate = super::phase::check(
                    app,
                    super::phase::Planned {
                        run_id: run.id,
                        org_id: run.org_id,
                        workspace_id: run.workspace_id,
                        workspace: &deployment_name(app, &run).await?,
                        plan_json: &plan_json,
                    },
                )
                .await;
                if let super::phase::Gate::Stop(reason) = gate {
                    super::phase::stop(app, run.id, &reason).await?;
                } else if run.auto_apply {
                    runs::confirm(
                        app,
                        &RunRow {
                            job_id: None,
                            status: PLANNED.into(),
                            ..run
                        },
                        "auto-apply",
                    )
                    .await?;
                }
            }
            super::events::announce(app, run_id, to).await;
        }
        (APPLYING, "applied") => {
            let change = Change {
                lease: Some(None),
                finished: true,
                ..Change::default()
            };
            if !store::transition(&app.db, id, &[APPLYING], APPLIED, change).await? {
                return Err(Error::conflict("the run changed meanwhile"));
            }
            super::events::announce(app, id, APPLIED).await;
            release(run.job_id).await?;
            if run.operation == "destroy" {
                super::service::archive(app, run.deployment_id).await?;
            }
            runs::finished(
                app,
                &RunRow {
                    job_id: None,
                    ..run
                },
                None,
            )
            .await?;
        }
        (PLANNING | APPLYING, status @ ("errored" | "canceled")) => {
            let to = if status == "errored" {
                ERRORED
            } else {
                CANCELED
            };
            let reason = done.error.as_deref().unwrap_or(status);
            let change = Change {
                reason: Some(Some(reason)),
                lease: Some(None),
                finished: true,
                ..Change::default()
            };
            if !store::transition(&app.db, id, &[PLANNING, APPLYING], to, change).await? {
                return Err(Error::conflict("the run changed meanwhile"));
            }
            super::events::announce(app, id, to).await;
            release(run.job_id).await?;
            if run.operation == "destroy" {
                // The deployment stays; destroying may be tried again.
                super::service::reactivate(app, run.deployment_id).await?;
            }
            runs::finished(
                app,
                &RunRow {
                    job_id: None,
                    ..run
                },
                Some(reason),
            )
            .await?;
        }
        (from, to) => {
            return Err(Error::conflict(format!(
                "a {from} run cannot finish as {to}"
            )));
        }
    }
    Ok(())
}

/// The name of the deployment (its workspace) a run belongs to.
async fn deployment_name(app: &Ctx, run: &RunRow) -> Result<String> {
    Ok(store::deployment_by_id(&app.db, run.deployment_id)
        .await?
        .map(|d| d.name)
        .unwrap_or_default())
}

/// The state lock a lost run's Terraform took (with the run's job token) is never unlocked
/// by it: release it, so the run's next try, or the next run, can lock.
async fn release_lost_lock(app: &Ctx, run: &RunRow) -> Result<()> {
    let token = format!("{}{}", crate::identity::auth::JOB_TOKEN_PREFIX, run.id);
    crate::state::service::release_lock_of_token(&app.state, run.workspace_id, &token).await?;
    Ok(())
}

/// A run whose runner vanished while applying: errored, and the deployment flagged, since
/// the real infrastructure may be half changed. Never applied again on its own.
async fn lost_during_apply(app: &Ctx, run: &RunRow) -> Result<()> {
    let change = Change {
        reason: Some(Some("runner lost during apply")),
        lease: Some(None),
        finished: true,
        ..Change::default()
    };
    if store::transition(&app.db, run.id, &[APPLYING], ERRORED, change).await? {
        release_lost_lock(app, run).await?;
        tracing::warn!(
            run = run.id,
            "runner lost during apply; deployment flagged as diverged"
        );
        store::set_diverged(&app.db, run.deployment_id, true).await?;
        runs::finished(app, run, Some("runner lost during apply")).await?;
        super::events::announce(app, run.id, ERRORED).await;
    }
    Ok(())
}

/// Runs whose runner stopped heartbeating: a plan goes back to the queue (its job is
/// claimable again), an apply is errored and its deployment flagged diverged. Run by a
/// singleton job.
pub async fn expire_lost_runs(app: &Ctx) -> Result<()> {
    for (job, holder) in queue::expired(&app.db, "run:").await? {
        let Some(run) = store::run_by_job(&app.db, job).await? else {
            continue;
        };
        if run.lease.as_deref() != Some(holder.as_str()) {
            continue;
        }
        match run.status.as_str() {
            PLANNING => {
                let change = Change {
                    reason: Some(Some("runner lost during plan; queued again")),
                    lease: Some(None),
                    ..Change::default()
                };
                if store::transition(&app.db, run.id, &[PLANNING], QUEUED, change).await? {
                    release_lost_lock(app, &run).await?;
                    tracing::warn!(run = run.id, "runner lost during plan; queued again");
                    app.wake.notify_waiters();
                }
            }
            APPLYING => lost_during_apply(app, &run).await?,
            _ => {}
        }
    }
    Ok(())
}
