//! What runs tell subscribers: a `run:*` notification event at each step of the state
//! machine. Raising an event never fails the run: an error is logged.

use serde_json::{Value, json};

use super::Ctx;
use super::runs::{APPLIED, CANCELED, DISCARDED, ERRORED, NO_CHANGES, PLANNED, POLICY_OVERRIDE};
use super::store;

/// The events a run that reached `status` raises (a finished plan with changes awaiting
/// confirmation also needs attention; a successful end is also `run:completed`).
fn kinds(status: &str, waits_for_confirmation: bool) -> &'static [&'static str] {
    match status {
        PLANNED if waits_for_confirmation => &["run:planned", "run:needs_attention"],
        PLANNED => &["run:planned"],
        NO_CHANGES => &["run:planned", "run:completed"],
        APPLIED => &["run:applied", "run:completed"],
        ERRORED => &["run:errored"],
        CANCELED => &["run:canceled"],
        DISCARDED => &["run:discarded"],
        super::runs::QUEUED => &["run:created"],
        super::runs::PLANNING => &["run:planning"],
        super::runs::APPLYING => &["run:applying"],
        // A run stopped for an admin's decision (a budget gate) needs attention.
        POLICY_OVERRIDE => &["run:needs_attention"],
        _ => &[],
    }
}

/// Raises the events of run `id` having reached `status` (passed in: the run may already
/// have moved on, e.g. an auto-applied plan claimed for its apply at once).
pub(super) async fn announce(app: &Ctx, id: i64, status: &str) {
    if let Err(e) = raise(app, id, status).await {
        tracing::warn!(run = id, error = %e, "raising run notifications failed");
    }
}

async fn raise(app: &Ctx, id: i64, status: &str) -> crate::error::Result<()> {
    let Some(mut run) = store::run_by_id(&app.db, id).await? else {
        return Ok(());
    };
    // A plan stopped by a gate meanwhile raises its own `run:needs_attention`.
    let gated = run.status == POLICY_OVERRIDE;
    run.status = status.to_string();
    let Some(deployment) = store::deployment_by_id(&app.db, run.deployment_id).await? else {
        return Ok(());
    };
    let config: Value = serde_json::from_str(&run.config).unwrap_or_default();
    let org = config["org"].as_str().unwrap_or_default().to_string();
    let base = config["url"].as_str().unwrap_or_default();
    let waits = run.status == PLANNED && !gated && !run.auto_apply && run.confirmed_by.is_none();
    let plan: Value = run
        .plan_summary
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let counts = match &plan {
        Value::Null => Value::Null,
        p => {
            json!({"add": p["add"], "change": p["change"], "destroy": p["destroy"], "import": p["import"]})
        }
    };
    for kind in kinds(&run.status, waits) {
        let message = match *kind {
            "run:needs_attention" if run.status == POLICY_OVERRIDE => format!(
                "Run {} of {org}/{} was stopped at policy_override{} and needs an admin's override",
                run.id,
                deployment.name,
                run.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            "run:needs_attention" => format!(
                "Run {} of {org}/{} is {} and needs attention (confirm or discard it)",
                run.id, deployment.name, run.status
            ),
            _ => format!(
                "Run {} ({}) of {org}/{}: {}{}",
                run.id,
                run.operation,
                deployment.name,
                run.status.replace('_', " "),
                run.reason
                    .as_deref()
                    .filter(|r| *r != run.status)
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        };
        let payload = json!({
            "message": message,
            "run": {
                "id": run.id,
                "status": run.status,
                "operation": run.operation,
                "reason": run.reason,
                "deployment": deployment.name,
                "version": run.version,
                "auto_apply": run.auto_apply,
                "has_changes": run.has_changes,
                "plan": counts,
                "created_by": run.created_by,
                "confirmed_by": run.confirmed_by,
                "created_at": run.created_at,
                "url": format!("{base}/api/v1/orgs/{org}/runs/{}", run.id),
            },
        });
        crate::notifications::emit(
            app,
            crate::notifications::Event {
                org_id: run.org_id,
                kind,
                workspace: Some(deployment.name.clone()),
                payload,
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_raises_its_events() {
        assert_eq!(
            kinds(PLANNED, true),
            &["run:planned", "run:needs_attention"]
        );
        assert_eq!(kinds(PLANNED, false), &["run:planned"]);
        assert_eq!(kinds(APPLIED, false), &["run:applied", "run:completed"]);
        assert_eq!(kinds(POLICY_OVERRIDE, false), &["run:needs_attention"]);
    }
}
