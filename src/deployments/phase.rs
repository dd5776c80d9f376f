//! The cost phase of a run, seen from deployments: after a plan with changes, a check
//! registered when the application is built (the costs feature, which sits above this one)
//! estimates the plan and may stop the run at `policy_override` (a budget gate). An admin's
//! override lets such a run go on to `planned`; auto-apply never passes a stopped gate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::Ctx;
use super::runs::{self, PLANNED, POLICY_OVERRIDE};
use super::store::{self, Change};
use super::views;
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal};
use crate::infra::notes::note_operation;
use crate::names::OrgName;

/// A run whose plan has changes.
#[derive(Debug, Clone, Copy)]
pub struct Planned<'a> {
    pub run_id: i64,
    pub org_id: i64,
    pub workspace_id: i64,
    pub workspace: &'a str,
    /// `terraform show -json` of the saved plan.
    pub plan_json: &'a Value,
}

/// What the check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Stop at `policy_override`, for this reason.
    Stop(String),
}

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Gate>> + Send + 'a>>;

/// A check run after every plan with changes.
pub trait PlanCheck: Send + Sync + std::fmt::Debug {
    fn check<'a>(&'a self, planned: Planned<'a>) -> CheckFuture<'a>;
}

/// Registers the check (once, when the application is built).
pub fn set_plan_check(app: &Ctx, check: Arc<dyn PlanCheck>) {
    if app.plan_check.set(check).is_err() {
        tracing::warn!("a plan check was already registered");
    }
}

/// Runs the registered check; a check that fails stops the run too, so that a gate is never
/// passed by accident.
pub(super) async fn check(app: &Ctx, planned: Planned<'_>) -> Gate {
    let Some(check) = app.plan_check.get() else {
        return Gate::Pass;
    };
    match check.check(planned).await {
        Ok(gate) => gate,
        Err(e) => {
            tracing::warn!(run = planned.run_id, error = %e, "the cost check failed");
            Gate::Stop(format!("the cost check failed: {e}"))
        }
    }
}

/// Moves a planned run to `policy_override` with `reason`.
pub(super) async fn stop(app: &Ctx, run_id: i64, reason: &str) -> Result<()> {
    let change = Change {
        reason: Some(Some(reason)),
        ..Change::default()
    };
    if store::transition(&app.db, run_id, &[PLANNED], POLICY_OVERRIDE, change).await? {
        super::events::announce(app, run_id, POLICY_OVERRIDE).await;
    }
    Ok(())
}

/// An admin lets a run stopped by a gate go on: it waits at `planned` for confirmation.
pub async fn override_gate(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    id: i64,
) -> Result<views::Run> {
    let (run, _) = runs::visible_run(app, principal, org, id, Action::StateAdmin).await?;
    note_operation("run:override", format!("run:{id}"));
    if run.status != POLICY_OVERRIDE {
        return Err(Error::conflict(format!(
            "run {id} is {}; only a run stopped at policy_override can be overridden",
            run.status
        )));
    }
    let reason = format!("budget gate overridden by {}", principal.actor());
    let change = Change {
        reason: Some(Some(&reason)),
        ..Change::default()
    };
    if !store::transition(&app.db, id, &[POLICY_OVERRIDE], PLANNED, change).await? {
        return Err(Error::conflict("the run changed; reload it"));
    }
    runs::show(app, principal, org, id).await
}

/// The blueprint of each deployment's workspace in the org `org_id`: (workspace id, name).
pub async fn blueprints_by_workspace(app: &Ctx, org_id: i64) -> Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let rows = store::list_deployments(&app.db, org_id, 1000, offset).await?;
        let n = rows.len();
        out.extend(rows.into_iter().map(|d| (d.workspace_id, d.blueprint)));
        if n < 1000 {
            return Ok(out);
        }
        offset += 1000;
    }
}
