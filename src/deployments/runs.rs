//! The run state machine: queued → planning → planned → applying → applied, or
//! planned_and_finished, errored, canceled, discarded. One unfinished run per workspace uses
//! it at a time (the oldest); the others wait with a queue position.

use chrono::Utc;
use serde_json::{Value, json};

use super::Ctx;
use super::store::{self, Change, RunRow};
use super::views;
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource};
use crate::infra::notes::note_operation;
use crate::infra::queue;
use crate::names::OrgName;
use crate::pagination::{Page, Paginated};

pub const QUEUED: &str = "queued";
pub const PLANNING: &str = "planning";
pub const PLANNED: &str = "planned";
/// A budget gate stopped the run after planning: an admin's override lets it go on.
pub const POLICY_OVERRIDE: &str = "policy_override";
pub const APPLYING: &str = "applying";
pub const APPLIED: &str = "applied";
pub const NO_CHANGES: &str = "planned_and_finished";
pub const ERRORED: &str = "errored";
pub const CANCELED: &str = "canceled";
pub const DISCARDED: &str = "discarded";

/// The queue kind of an org's runs; runners of that org claim by it, in-process runners
/// claim every org's by the prefix `run:`.
pub fn job_kind(org_id: i64) -> String {
    format!("run:{org_id}:")
}

/// What a job of the queue asks for.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct JobPayload {
    pub run: i64,
    /// `plan` or `apply`.
    pub phase: String,
}

/// Queues a job for `run`'s next phase, unless it already has one; wakes waiting runners.
pub(super) async fn enqueue(app: &Ctx, run: &RunRow, phase: &str) -> Result<()> {
    let payload = serde_json::to_string(&JobPayload {
        run: run.id,
        phase: phase.to_string(),
    })
    .map_err(anyhow::Error::from)?;
    let job = queue::enqueue(&app.db, &job_kind(run.org_id), &payload, Utc::now()).await?;
    if !store::attach_job(&app.db, run.id, job).await? {
        queue::withdraw(&app.db, job, "run already has a job").await?;
    }
    app.wake.notify_waiters();
    Ok(())
}

/// Lets the workspace's oldest unfinished run start, if it waits.
pub(super) async fn advance(app: &Ctx, workspace_id: i64) -> Result<()> {
    if let Some(head) = store::head_run(&app.db, workspace_id).await?
        && head.status == QUEUED
        && head.job_id.is_none()
    {
        enqueue(app, &head, "plan").await?;
    }
    Ok(())
}

/// Ends a run for good: its job, its token, and the turn of the next run.
pub(super) async fn finished(app: &Ctx, run: &RunRow, error: Option<&str>) -> Result<()> {
    if let Some(job) = run.job_id {
        queue::withdraw(&app.db, job, error.unwrap_or("finished")).await?;
    }
    if let Some(token) = run.token_id {
        crate::identity::orgs::revoke_job_token(&app.state.identity, run.org_id, token).await?;
    }
    advance(app, run.workspace_id).await
}

/// A run the caller may see, with the org's id.
pub(super) async fn visible_run(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    id: i64,
    action: Action,
) -> Result<(RunRow, String)> {
    // Authorize on the org first so an unknown org and an unseen run answer alike.
    let org_id = crate::identity::orgs::resolve(
        &app.db,
        principal,
        Action::OrgRead,
        Resource::Org(org.as_str()),
    )
    .await
    .map_err(|e| match e {
        Error::Forbidden => Error::NotFound("run"),
        e => e,
    })?;
    let run = store::run(&app.db, org_id, id)
        .await?
        .ok_or(Error::NotFound("run"))?;
    let deployment = store::deployment_by_id(&app.db, run.deployment_id)
        .await?
        .ok_or(Error::NotFound("run"))?;
    crate::identity::auth::authorize(
        principal,
        action,
        Resource::Workspace {
            org: org.as_str(),
            workspace: &deployment.name,
        },
    )?;
    Ok((run, deployment.name))
}

pub async fn show(app: &Ctx, principal: &Principal, org: &OrgName, id: i64) -> Result<views::Run> {
    let (run, name) = visible_run(app, principal, org, id, Action::StateRead).await?;
    view(app, run, name).await
}

pub async fn list(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    deployment: &str,
    page: Page,
) -> Result<Paginated<views::Run>> {
    let dep = super::service::visible(app, principal, org, deployment, Action::StateRead).await?;
    let rows = store::list_runs(&app.db, dep.id, page.fetch_limit(), page.offset).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(view(app, row, dep.name.clone()).await?);
    }
    Ok(Paginated::new(out, page))
}

pub(super) async fn view(app: &Ctx, run: RunRow, deployment: String) -> Result<views::Run> {
    let queue_position = if run.status == QUEUED {
        Some(store::runs_ahead(&app.db, run.workspace_id, run.id).await?)
    } else {
        None
    };
    let reason = match (&run.reason, run.status.as_str()) {
        (None, QUEUED) => app.waiting_reason(),
        (reason, _) => reason.clone(),
    };
    Ok(views::Run {
        id: run.id,
        deployment,
        operation: run.operation,
        status: run.status,
        reason,
        queue_position,
        version: run.version,
        auto_apply: run.auto_apply,
        plan: run
            .plan_summary
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok()),
        has_changes: run.has_changes,
        confirmed_by: run.confirmed_by,
        runner: run.runner,
        log_size: run.log_size,
        created_at: run.created_at,
        created_by: run.created_by,
        started_at: run.started_at,
        finished_at: run.finished_at,
    })
}

/// Confirms a planned run: it is applied from its saved plan.
pub async fn apply(app: &Ctx, principal: &Principal, org: &OrgName, id: i64) -> Result<views::Run> {
    let (run, name) = visible_run(app, principal, org, id, Action::StateWrite).await?;
    note_operation("run:apply", format!("run:{id}"));
    if run.status != PLANNED || run.confirmed_by.is_some() {
        return Err(Error::conflict(format!(
            "run {id} is {}; only a planned run awaiting confirmation can be applied",
            run.status
        )));
    }
    confirm(app, &run, &principal.actor()).await?;
    show_after(app, run.id, name).await
}

pub(super) async fn confirm(app: &Ctx, run: &RunRow, by: &str) -> Result<()> {
    let change = Change {
        confirmed_by: Some(by),
        job_id: Some(None),
        ..Change::default()
    };
    if !store::transition(&app.db, run.id, &[PLANNED], PLANNED, change).await? {
        return Err(Error::conflict("the run changed; reload it"));
    }
    enqueue(app, run, "apply").await
}

pub async fn discard(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    id: i64,
) -> Result<views::Run> {
    let (run, name) = visible_run(app, principal, org, id, Action::StateWrite).await?;
    note_operation("run:discard", format!("run:{id}"));
    if !(run.status == PLANNED || run.status == POLICY_OVERRIDE) || run.confirmed_by.is_some() {
        return Err(Error::conflict(format!(
            "run {id} is {}; only a planned run awaiting confirmation can be discarded",
            run.status
        )));
    }
    let change = Change {
        reason: Some(Some("discarded")),
        finished: true,
        ..Change::default()
    };
    if !store::transition(&app.db, id, &[PLANNED, POLICY_OVERRIDE], DISCARDED, change).await? {
        return Err(Error::conflict("the run changed; reload it"));
    }
    finished(app, &run, None).await?;
    super::events::announce(app, id, DISCARDED).await;
    show_after(app, id, name).await
}

/// Cancels a run: at once while it waits; through its runner (SIGINT, then a kill on a
/// second cancel or after a grace period) while Terraform runs.
pub async fn cancel(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    id: i64,
) -> Result<views::Run> {
    let (run, name) = visible_run(app, principal, org, id, Action::StateWrite).await?;
    note_operation("run:cancel", format!("run:{id}"));
    match run.status.as_str() {
        QUEUED | PLANNED | POLICY_OVERRIDE => {
            let change = Change {
                reason: Some(Some("canceled")),
                finished: true,
                ..Change::default()
            };
            if !store::transition(
                &app.db,
                id,
                &[QUEUED, PLANNED, POLICY_OVERRIDE],
                CANCELED,
                change,
            )
            .await?
            {
                return Err(Error::conflict("the run changed; reload it"));
            }
            finished(app, &run, None).await?;
            super::events::announce(app, id, CANCELED).await;
        }
        PLANNING | APPLYING => {
            store::request_cancel(&app.db, id).await?;
        }
        other => {
            return Err(Error::conflict(format!(
                "run {id} is {other} and cannot be canceled"
            )));
        }
    }
    show_after(app, id, name).await
}

async fn show_after(app: &Ctx, id: i64, name: String) -> Result<views::Run> {
    let run = store::run_by_id(&app.db, id)
        .await?
        .ok_or(Error::NotFound("run"))?;
    view(app, run, name).await
}

/// The log from `offset`: the bytes, the next offset, and whether the run has finished.
pub async fn log(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    id: i64,
    offset: i64,
) -> Result<(Vec<u8>, i64, bool)> {
    let (run, _) = visible_run(app, principal, org, id, Action::StateRead).await?;
    read_log(app, &run, offset).await
}

/// The log of `run` from `offset` (up to 1 MiB at a time).
pub(super) async fn read_log(app: &Ctx, run: &RunRow, offset: i64) -> Result<(Vec<u8>, i64, bool)> {
    let offset = offset.max(0);
    let chunks = store::read_log(&app.db, run.id, offset, 1 << 20).await?;
    let mut out = Vec::new();
    let mut next = offset;
    for (start, data) in chunks {
        let end = start + data.len() as i64;
        if end <= next || start > next {
            continue;
        }
        let skip = usize::try_from(next - start).unwrap_or(0);
        out.extend_from_slice(&data[skip..]);
        next = end;
    }
    let done = store::run_by_id(&app.db, run.id).await?.is_some_and(|r| {
        r.finished_at.is_some() || r.status == PLANNED || r.status == POLICY_OVERRIDE
    });
    Ok((out, next, done))
}

/// The plan summary kept with a run: counts by action and the resource changes, from
/// `terraform show -json` of the saved plan.
pub fn summarize(plan: &Value) -> Value {
    let mut counts = json!({"add": 0, "change": 0, "destroy": 0, "import": 0});
    let mut changes = Vec::new();
    for rc in plan["resource_changes"].as_array().into_iter().flatten() {
        let actions: Vec<&str> = rc["change"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut bump = |key: &str| {
            if let Some(n) = counts[key].as_i64() {
                counts[key] = json!(n + 1);
            }
        };
        match actions.as_slice() {
            ["create"] => bump("add"),
            ["update"] => bump("change"),
            ["delete"] => bump("destroy"),
            ["delete", "create"] | ["create", "delete"] => {
                bump("add");
                bump("destroy");
            }
            _ => {}
        }
        if rc["change"]["importing"].is_object() {
            bump("import");
        }
        if actions != ["no-op"] && actions != ["read"] {
            changes.push(json!({
                "address": rc["address"],
                "type": rc["type"],
                "actions": actions,
            }));
        }
    }
    let outputs: Vec<Value> = plan["output_changes"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, c)| c["actions"] != json!(["no-op"]))
        .map(|(name, c)| json!({"name": name, "actions": c["actions"]}))
        .collect();
    json!({
        "add": counts["add"],
        "change": counts["change"],
        "destroy": counts["destroy"],
        "import": counts["import"],
        "resource_changes": changes,
        "output_changes": outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_actions_from_plan_json() {
        let plan = json!({
            "resource_changes": [
                {"address": "a.x", "type": "a", "change": {"actions": ["create"]}},
                {"address": "a.y", "type": "a", "change": {"actions": ["delete", "create"]}},
                {"address": "a.z", "type": "a", "change": {"actions": ["no-op"]}},
                {"address": "a.w", "type": "a", "change": {"actions": ["update"]}},
            ],
            "output_changes": {"o": {"actions": ["create"]}, "p": {"actions": ["no-op"]}}
        });
        let s = summarize(&plan);
        assert_eq!(
            (&s["add"], &s["change"], &s["destroy"]),
            (&json!(2), &json!(1), &json!(1))
        );
        assert_eq!(s["resource_changes"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            s["output_changes"],
            json!([{"name": "o", "actions": ["create"]}])
        );
    }
}
