//! Deployments and runs in process (real router, real database, real blob store): the run
//! state machine driven through the runner protocol by hand (claim, heartbeat, finish), one
//! active run per workspace with queue positions, what lease expiry does to a lost plan and a
//! lost apply, who may do what (the `plan` role, runner tokens, job tokens), and on
//! PostgreSQL two replicas draining 50 queued runs with each run claimed exactly once.

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use terrace::identity::auth::Role;
use terrace::infra::db::Db;

use crate::support::{ORG, OTHER_ORG, RequestBuilder, Resp, TestApp, create_token};

on_both_databases! {
    runs_move_through_their_states_one_at_a_time_per_workspace,
    a_lost_plan_is_queued_again_and_a_lost_apply_errors_and_flags_divergence,
    roles_runner_tokens_and_job_tokens_are_scoped,
    run_actions_are_in_the_audit_trail_with_who_did_them,
    logs_are_kept_and_stream_live_as_server_sent_events,
}

const DEPLOYMENTS: &str = "/api/v1/orgs/acme/deployments";

fn runs(id: i64, tail: &str) -> String {
    format!("/api/v1/orgs/acme/runs/{id}{tail}")
}

fn targz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, text.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Publishes `acme/web/null` 1.0.0 and its blueprint `web` (auto-apply allowed).
pub(crate) async fn blueprint(app: &TestApp) {
    let archive = targz(&[
        (
            "main.tf",
            "variable \"env\" {\n  type = string\n  validation {\n    condition     = contains([\"dev\", \"prod\"], var.env)\n    error_message = \"dev or prod.\"\n  }\n}\n\noutput \"url\" {\n  value = \"https://${var.env}.example.com\"\n}\n",
        ),
        ("README.md", "# Web\n"),
    ]);
    let resp = app
        .send(
            RequestBuilder::new("PUT", "/api/v1/modules/acme/web/null/1.0.0")
                .bearer(&app.write_token)
                .body(archive)
                .build(),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    app.api(
        "POST",
        "/api/v1/orgs/acme/blueprints",
        &app.admin_token,
        Some(
            json!({"name": "web", "module": "acme/web/null", "status": "published",
                    "auto_apply": true}),
        ),
    )
    .await
    .assert_status(StatusCode::CREATED);
}

pub(crate) async fn deploy(app: &TestApp, name: &str) -> i64 {
    let resp = app
        .api(
            "POST",
            DEPLOYMENTS,
            &app.write_token,
            Some(json!({"name": name, "blueprint": "web", "inputs": {"env": "dev"}})),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    resp.json()["current_run"]["id"].as_i64().unwrap()
}

async fn run(app: &TestApp, id: i64) -> Value {
    let resp = app.api("GET", &runs(id, ""), &app.read_token, None).await;
    resp.assert_status(StatusCode::OK);
    resp.json()
}

/// A claim over the runner protocol, not waiting; `None` when nothing is claimable.
pub(crate) async fn claim(app: &TestApp, token: &str) -> Option<Value> {
    let resp = app
        .api(
            "POST",
            "/api/v1/runner/claim",
            token,
            Some(json!({"runner": "hand", "wait_ms": 0})),
        )
        .await;
    match resp.status {
        StatusCode::OK => Some(resp.json()),
        StatusCode::NO_CONTENT => None,
        other => panic!("claim answered {other}: {}", resp.text()),
    }
}

async fn runner_call(app: &TestApp, token: &str, claim: &Value, tail: &str, body: Value) -> Resp {
    let id = claim["run_id"].as_i64().unwrap();
    app.send(
        RequestBuilder::new("POST", &format!("/api/v1/runner/runs/{id}/{tail}"))
            .bearer(token)
            .header("terrace-lease", claim["lease"].as_str().unwrap())
            .header("content-type", "application/json")
            .body(body.to_string())
            .build(),
    )
    .await
}

async fn heartbeat(app: &TestApp, token: &str, claim: &Value) -> Resp {
    runner_call(app, token, claim, "heartbeat", json!({})).await
}

/// Finishes a plan phase as planned, with changes and a saved plan of `plan` bytes.
pub(crate) async fn finish_planned(app: &TestApp, token: &str, claim: &Value, changes: bool) {
    let plan_file = base64::engine::general_purpose::STANDARD.encode(b"saved plan");
    runner_call(
        app,
        token,
        claim,
        "finish",
        json!({"status": "planned", "has_changes": changes, "plan_file": plan_file,
               "plan_json": {"resource_changes": [], "output_changes":
                   {"url": {"actions": [if changes {"create"} else {"no-op"}]}}}}),
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
}

pub(crate) async fn finish(app: &TestApp, token: &str, claim: &Value, status: &str) -> Resp {
    runner_call(app, token, claim, "finish", json!({"status": status})).await
}

/// Makes every held lease of the work queue run out now.
async fn expire_leases(db: &Db) {
    let past = chrono::Utc::now() - chrono::Duration::seconds(60);
    const SQL: &str = "UPDATE jobs SET leased_until = $1 WHERE leased_until IS NOT NULL";
    match db {
        Db::Sqlite(p) => sqlx::query(SQL).bind(past).execute(p).await.map(|_| ()),
        Db::Postgres(p) => sqlx::query(SQL).bind(past).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

pub(crate) async fn runner_token(app: &TestApp, org: &str) -> String {
    create_token(app.db(), org, "runner", Role::Runner, None).await
}

/// `terrace_runs_queued` and `terrace_run_queue_oldest_seconds` from `/metrics`.
async fn queue_gauges(app: &TestApp) -> (i64, f64) {
    let metrics = app
        .send(RequestBuilder::new("GET", "/metrics").build())
        .await
        .text();
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    (
        value("terrace_runs_queued") as i64,
        value("terrace_run_queue_oldest_seconds"),
    )
}

async fn runs_move_through_their_states_one_at_a_time_per_workspace(app: TestApp) {
    blueprint(&app).await;
    let runner = runner_token(&app, ORG).await;
    let plan_token = create_token(app.db(), ORG, "planner", Role::Plan, None).await;

    let first = deploy(&app, "web").await;
    let r = run(&app, first).await;
    assert_eq!(r["status"], "queued", "{r}");
    assert_eq!(r["queue_position"], 0, "{r}");
    // Nothing to confirm, discard yet.
    for action in ["/apply", "/discard"] {
        app.api("POST", &runs(first, action), &app.write_token, None)
            .await
            .assert_status(StatusCode::CONFLICT);
    }

    // A second run of the same workspace waits behind the first.
    let resp = app
        .api(
            "PATCH",
            &format!("{DEPLOYMENTS}/web"),
            &app.write_token,
            Some(json!({"inputs": {"env": "prod"}})),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let second = resp.json()["current_run"]["id"].as_i64().unwrap();
    assert_ne!(second, first);
    assert_eq!(run(&app, second).await["queue_position"], 1);
    // Both wait: the run queue gauges say so on every scrape.
    let (queued, waited) = queue_gauges(&app).await;
    assert_eq!(queued, 2);
    assert!(waited > 0.0, "the oldest queued run has waited {waited} s");

    let c = claim(&app, &runner)
        .await
        .expect("the first run is claimable");
    assert_eq!(c["run_id"], first);
    assert_eq!(c["phase"], "plan");
    assert_eq!(run(&app, first).await["status"], "planning");
    assert_eq!(
        queue_gauges(&app).await.0,
        1,
        "the claimed run left the queue"
    );
    assert!(
        claim(&app, &runner).await.is_none(),
        "one active run per workspace"
    );
    heartbeat(&app, &runner, &c)
        .await
        .assert_status(StatusCode::OK);
    finish_planned(&app, &runner, &c, true).await;
    let r = run(&app, first).await;
    assert_eq!(r["status"], "planned", "{r}");
    assert_eq!(r["has_changes"], true, "{r}");
    // Finishing twice is refused: the claim is spent.
    finish(&app, &runner, &c, "planned")
        .await
        .assert_status(StatusCode::CONFLICT);

    // The plan role may not confirm; write may.
    let resp = app
        .api("POST", &runs(first, "/apply"), &plan_token, None)
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    app.api("POST", &runs(first, "/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    app.api("POST", &runs(first, "/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::CONFLICT);
    let c = claim(&app, &runner).await.expect("the apply is claimable");
    assert_eq!(c["run_id"], first);
    assert_eq!(c["phase"], "apply");
    assert_eq!(
        c["plan_file"],
        base64::engine::general_purpose::STANDARD.encode(b"saved plan"),
        "the saved plan is what gets applied"
    );
    assert_eq!(run(&app, first).await["status"], "applying");

    // Cancel while applying reaches the runner: first an interrupt, then a kill.
    app.api("POST", &runs(first, "/cancel"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    let beat = heartbeat(&app, &runner, &c).await;
    beat.assert_status(StatusCode::OK);
    assert_eq!(beat.json(), json!({"cancel": true, "force": false}));
    app.api("POST", &runs(first, "/cancel"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(
        heartbeat(&app, &runner, &c).await.json(),
        json!({"cancel": true, "force": true})
    );
    finish(&app, &runner, &c, "canceled")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(run(&app, first).await["status"], "canceled");
    for action in ["/apply", "/discard", "/cancel"] {
        app.api("POST", &runs(first, action), &app.write_token, None)
            .await
            .assert_status(StatusCode::CONFLICT);
    }

    // The second run's turn: planned, then discarded.
    let r = run(&app, second).await;
    assert_eq!(r["queue_position"], 0, "{r}");
    let c = claim(&app, &runner).await.expect("the second run is next");
    assert_eq!(c["run_id"], second);
    finish_planned(&app, &runner, &c, true).await;
    let resp = app
        .api("POST", &runs(second, "/discard"), &plan_token, None)
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    app.api("POST", &runs(second, "/discard"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(run(&app, second).await["status"], "discarded");
    for action in ["/apply", "/discard", "/cancel"] {
        app.api("POST", &runs(second, action), &app.write_token, None)
            .await
            .assert_status(StatusCode::CONFLICT);
    }

    // The plan role may queue a plan; a queued run cancels at once.
    let resp = app
        .api(
            "POST",
            &format!("{DEPLOYMENTS}/web/runs"),
            &plan_token,
            None,
        )
        .await;
    assert!(resp.status.is_success(), "{} {}", resp.status, resp.text());
    let third = resp.json()["id"].as_i64().unwrap();
    assert_eq!(run(&app, third).await["status"], "queued");
    app.api("POST", &runs(third, "/cancel"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(run(&app, third).await["status"], "canceled");
    assert!(
        claim(&app, &runner).await.is_none(),
        "a canceled run is not claimed"
    );

    // No changes: planned_and_finished, nothing to confirm.
    let resp = app
        .api(
            "POST",
            &format!("{DEPLOYMENTS}/web/runs"),
            &app.write_token,
            None,
        )
        .await;
    let fourth = resp.json()["id"].as_i64().unwrap();
    let c = claim(&app, &runner).await.expect("the fourth run");
    assert_eq!(c["run_id"], fourth);
    finish_planned(&app, &runner, &c, false).await;
    assert_eq!(run(&app, fourth).await["status"], "planned_and_finished");
    app.api("POST", &runs(fourth, "/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::CONFLICT);
}

async fn a_lost_plan_is_queued_again_and_a_lost_apply_errors_and_flags_divergence(app: TestApp) {
    blueprint(&app).await;
    let runner = runner_token(&app, ORG).await;
    let ctx = &app.state.deployments;
    let id = deploy(&app, "web").await;

    // Lost while planning: queued again, and the next claim finishes it.
    let lost = claim(&app, &runner).await.unwrap();
    expire_leases(app.db()).await;
    terrace::deployments::protocol::expire_lost_runs(ctx)
        .await
        .unwrap();
    let r = run(&app, id).await;
    assert_eq!(r["status"], "queued", "{r}");
    assert!(
        r["reason"].as_str().unwrap_or_default().contains("lost"),
        "{r}"
    );
    heartbeat(&app, &runner, &lost)
        .await
        .assert_status(StatusCode::CONFLICT);
    let again = claim(&app, &runner)
        .await
        .expect("the lost plan is claimable again");
    assert_eq!(again["run_id"], id);
    assert_ne!(again["lease"], lost["lease"]);
    finish(&app, &runner, &lost, "planned")
        .await
        .assert_status(StatusCode::CONFLICT);
    finish_planned(&app, &runner, &again, true).await;
    assert_eq!(run(&app, id).await["status"], "planned");

    // Lost while applying: errored, never applied again, the deployment flagged.
    app.api("POST", &runs(id, "/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    let applying = claim(&app, &runner).await.unwrap();
    assert_eq!(applying["phase"], "apply");
    expire_leases(app.db()).await;
    terrace::deployments::protocol::expire_lost_runs(ctx)
        .await
        .unwrap();
    let r = run(&app, id).await;
    assert_eq!(r["status"], "errored", "{r}");
    assert_eq!(r["reason"], "runner lost during apply", "{r}");
    assert!(
        claim(&app, &runner).await.is_none(),
        "a lost apply is not retried"
    );
    let dep = app
        .api("GET", &format!("{DEPLOYMENTS}/web"), &app.read_token, None)
        .await
        .json();
    assert_eq!(dep["diverged"], true, "{dep}");

    // Same when another runner claims the expired apply before the sweep sees it.
    let resp = app
        .api(
            "POST",
            &format!("{DEPLOYMENTS}/web/runs"),
            &app.write_token,
            None,
        )
        .await;
    let next = resp.json()["id"].as_i64().unwrap();
    let c = claim(&app, &runner).await.unwrap();
    finish_planned(&app, &runner, &c, true).await;
    app.api("POST", &runs(next, "/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    claim(&app, &runner).await.unwrap();
    expire_leases(app.db()).await;
    assert!(claim(&app, &runner).await.is_none());
    let r = run(&app, next).await;
    assert_eq!(r["status"], "errored", "{r}");
    assert_eq!(r["reason"], "runner lost during apply", "{r}");
}

async fn roles_runner_tokens_and_job_tokens_are_scoped(app: TestApp) {
    blueprint(&app).await;
    let runner = runner_token(&app, ORG).await;
    let other_runner = runner_token(&app, OTHER_ORG).await;
    let plan_token = create_token(app.db(), ORG, "planner", Role::Plan, None).await;

    // The plan role cannot create deployments; reading ones cannot queue plans.
    let resp = app
        .api(
            "POST",
            DEPLOYMENTS,
            &plan_token,
            Some(json!({"name": "nope", "blueprint": "web", "inputs": {"env": "dev"}})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    deploy(&app, "web").await;
    deploy(&app, "api").await;
    let resp = app
        .api(
            "POST",
            &format!("{DEPLOYMENTS}/web/runs"),
            &app.read_token,
            None,
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());

    // A runner token only claims: no deployments, no state, no creating.
    let resp = app.api("GET", DEPLOYMENTS, &runner, None).await;
    assert!(
        matches!(resp.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        resp.status,
        resp.text()
    );
    let resp = app
        .api(
            "POST",
            DEPLOYMENTS,
            &runner,
            Some(json!({"name": "x", "blueprint": "web", "inputs": {"env": "dev"}})),
        )
        .await;
    assert!(
        matches!(resp.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        resp.status,
        resp.text()
    );
    let resp = app.get_state("web", &runner).await;
    assert!(
        matches!(resp.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        resp.status,
        resp.text()
    );
    // Other tokens cannot claim; another org's runner sees none of acme's runs.
    let resp = app
        .api(
            "POST",
            "/api/v1/runner/claim",
            &app.admin_token,
            Some(json!({"runner": "x", "wait_ms": 0})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    assert!(claim(&app, &other_runner).await.is_none());

    // A claim's job token reaches its own workspace's state and nothing else.
    let c = claim(&app, &runner).await.unwrap();
    let own = c["workspace"].as_str().unwrap().to_string();
    let other = if own == "web" { "api" } else { "web" };
    let job = c["job_token"].as_str().unwrap().to_string();
    let resp = app
        .write_state(&own, crate::support::state("lineage-1", 1), None, &job)
        .await;
    assert!(resp.status.is_success(), "{} {}", resp.status, resp.text());
    let resp = app.get_state(&own, &job).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let resp = app.get_state(other, &job).await;
    assert!(
        matches!(resp.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        resp.status,
        resp.text()
    );
    let resp = app
        .write_state(other, crate::support::state("lineage-2", 1), None, &job)
        .await;
    assert!(
        matches!(resp.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        resp.status,
        resp.text()
    );
    let resp = app.api("GET", DEPLOYMENTS, &job, None).await;
    assert!(
        matches!(resp.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{} {}",
        resp.status,
        resp.text()
    );
    // The state version written with a job token records the run.
    let versions = app.versions(&own).await;
    let newest = &versions[0];
    assert_eq!(newest["source"], "run", "{newest}");
    assert_eq!(newest["run_id"], c["run_id"], "{newest}");
    // A job token cannot claim; once the run ends it is revoked.
    let resp = app
        .api(
            "POST",
            "/api/v1/runner/claim",
            &job,
            Some(json!({"runner": "x", "wait_ms": 0})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    finish(&app, &runner, &c, "errored")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let resp = app.get_state(&own, &job).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
}

/// The id of `name`'s token in acme, as the token list shows it.
async fn token_id(app: &TestApp, name: &str) -> i64 {
    let resp = app
        .api("GET", "/api/v1/orgs/acme/tokens", &app.admin_token, None)
        .await;
    resp.assert_status(StatusCode::OK);
    resp.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no token {name}"))["id"]
        .as_i64()
        .unwrap()
}

/// Each action on a deployment or a run is one audit event naming the action, the run or
/// deployment, and who did it — not the reads the handler made to build its answer.
async fn run_actions_are_in_the_audit_trail_with_who_did_them(app: TestApp) {
    blueprint(&app).await;
    let runner = runner_token(&app, ORG).await;
    let writer = format!("token:writer#{}", token_id(&app, "writer").await);

    // Applied after confirmation.
    let applied = deploy(&app, "audited").await;
    let c = claim(&app, &runner).await.expect("the plan is claimable");
    finish_planned(&app, &runner, &c, true).await;
    app.api("POST", &runs(applied, "/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    let c = claim(&app, &runner).await.expect("the apply is claimable");
    finish(&app, &runner, &c, "applied")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // A new plan, discarded; another, canceled while it waits.
    let resp = app
        .api(
            "POST",
            &format!("{DEPLOYMENTS}/audited/runs"),
            &app.write_token,
            None,
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    let discarded = resp.json()["id"].as_i64().unwrap();
    let c = claim(&app, &runner)
        .await
        .expect("the second plan is claimable");
    finish_planned(&app, &runner, &c, true).await;
    app.api("POST", &runs(discarded, "/discard"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    let resp = app
        .api(
            "POST",
            &format!("{DEPLOYMENTS}/audited/runs"),
            &app.write_token,
            None,
        )
        .await;
    let canceled = resp.json()["id"].as_i64().unwrap();
    app.api("POST", &runs(canceled, "/cancel"), &app.admin_token, None)
        .await
        .assert_status(StatusCode::OK);
    // A reader may not confirm: on record as refused.
    app.api("POST", &runs(canceled, "/apply"), &app.read_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.api(
        "DELETE",
        &format!("{DEPLOYMENTS}/audited"),
        &app.write_token,
        None,
    )
    .await
    .assert_status(StatusCode::ACCEPTED);

    app.state.audit.flush().await;
    let resp = app
        .api(
            "GET",
            "/api/v1/orgs/acme/audit-events?limit=100",
            &app.admin_token,
            None,
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let events = resp.json()["data"].as_array().unwrap().clone();
    let find = |action: &str, resource: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["resource"] == resource)
            .unwrap_or_else(|| panic!("no {action} on {resource} in {events:#?}"))
            .clone()
    };
    let admin = find("run:cancel", &format!("run:{canceled}"))["actor"].clone();
    assert!(
        admin.as_str().unwrap().starts_with("token:admin#"),
        "{admin}"
    );
    for (action, resource, outcome) in [
        (
            "deployment:create",
            "deployment:audited".to_string(),
            "success",
        ),
        ("run:apply", format!("run:{applied}"), "success"),
        ("run:plan", "deployment:audited".to_string(), "success"),
        ("run:discard", format!("run:{discarded}"), "success"),
        (
            "deployment:destroy",
            "deployment:audited".to_string(),
            "success",
        ),
    ] {
        let e = find(action, &resource);
        assert_eq!(e["actor"], writer, "{e}");
        assert_eq!(e["outcome"], outcome, "{e}");
    }
    let refused = events
        .iter()
        .find(|e| e["outcome"] == "denied")
        .unwrap_or_else(|| panic!("the reader's refused apply is missing: {events:#?}"));
    assert!(
        refused["actor"]
            .as_str()
            .unwrap()
            .starts_with("token:reader#"),
        "{refused}"
    );
    // The runner's side is on record too, as the runner.
    assert!(
        events.iter().any(|e| e["action"] == "run:claim"
            && e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("token:runner#"))),
        "{events:#?}"
    );
}

/// Log chunks a runner uploads are kept after the run, read from any offset, and followed
/// live with `Accept: text/event-stream` until an `end` event when the run stops.
async fn logs_are_kept_and_stream_live_as_server_sent_events(app: TestApp) {
    blueprint(&app).await;
    let runner = runner_token(&app, ORG).await;
    let id = deploy(&app, "logged").await;
    let c = claim(&app, &runner).await.expect("the plan is claimable");
    let upload = |offset: usize, text: &'static str| {
        let c = c.clone();
        let runner = runner.clone();
        let app = &app;
        async move {
            app.send(
                RequestBuilder::new(
                    "PUT",
                    &format!("/api/v1/runner/runs/{id}/logs?offset={offset}"),
                )
                .bearer(&runner)
                .header("terrace-lease", c["lease"].as_str().unwrap())
                .body(text)
                .build(),
            )
            .await
        }
    };
    upload(0, "Initializing...\n")
        .await
        .assert_status(StatusCode::NO_CONTENT);

    // Follow the log live while the run goes on.
    let router = app.router.clone();
    let token = app.read_token.clone();
    let follower = tokio::spawn(async move {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let request = RequestBuilder::new("GET", &runs(id, "/logs"))
            .bearer(&token)
            .header("accept", "text/event-stream")
            .build();
        let resp = router.oneshot(request).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    upload(16, "Plan: 1 to add\n")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // A chunk resent at an offset already covered (a retry) is not spliced in twice; one past
    // the end is refused.
    upload(3, "garbage")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(upload(99, "gap").await.status, StatusCode::CONFLICT);
    finish_planned(&app, &runner, &c, false).await;
    let streamed = tokio::time::timeout(std::time::Duration::from_secs(20), follower)
        .await
        .expect("the stream ends when the run stops")
        .unwrap();
    assert!(streamed.contains("data: Initializing..."), "{streamed}");
    assert!(streamed.contains("data: Plan: 1 to add"), "{streamed}");
    assert!(streamed.contains("event: end"), "{streamed}");
    assert!(!streamed.contains("garbage"), "{streamed}");

    // Kept after the run, readable from an offset, with the next offset to ask for.
    let resp = app
        .api("GET", &runs(id, "/logs"), &app.read_token, None)
        .await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.text(), "Initializing...\nPlan: 1 to add\n");
    let resp = app
        .api("GET", &runs(id, "/logs?offset=16"), &app.read_token, None)
        .await;
    assert_eq!(resp.text(), "Plan: 1 to add\n");
    assert_eq!(resp.headers["terrace-next-offset"], "31");
    // Another org's token sees no such run.
    let other = create_token(app.db(), OTHER_ORG, "other", Role::Admin, None).await;
    app.api("GET", &runs(id, "/logs"), &other, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

/// Two replicas on one PostgreSQL database, one runner each, 50 queued runs: every run is
/// claimed exactly once.
#[tokio::test]
async fn postgres_two_runners_drain_fifty_runs_each_exactly_once() {
    let Some(app) = TestApp::new(crate::support::Backend::Postgres).await else {
        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
        return;
    };
    blueprint(&app).await;
    let runner = runner_token(&app, ORG).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(deploy(&app, &format!("web-{n}")).await);
    }
    let replica = app.replica();
    let apps = [app, replica];
    let mut tasks = Vec::new();
    for a in apps.iter() {
        let router = a.router.clone();
        let token = runner.clone();
        tasks.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let claim_req = RequestBuilder::new("POST", "/api/v1/runner/claim")
                    .bearer(&token)
                    .header("content-type", "application/json")
                    .body(json!({"runner": "r", "wait_ms": 0}).to_string())
                    .build();
                let resp = send(&router, claim_req).await;
                if resp.0 == StatusCode::NO_CONTENT {
                    break;
                }
                assert_eq!(resp.0, StatusCode::OK, "{}", resp.1);
                let c: Value = serde_json::from_str(&resp.1).unwrap();
                let id = c["run_id"].as_i64().unwrap();
                claimed.push(id);
                let finish_req =
                    RequestBuilder::new("POST", &format!("/api/v1/runner/runs/{id}/finish"))
                        .bearer(&token)
                        .header("terrace-lease", c["lease"].as_str().unwrap())
                        .header("content-type", "application/json")
                        .body(json!({"status": "planned", "has_changes": false}).to_string())
                        .build();
                let resp = send(&router, finish_req).await;
                assert_eq!(resp.0, StatusCode::NO_CONTENT, "{}", resp.1);
            }
            claimed
        }));
    }
    let mut counts: HashMap<i64, usize> = HashMap::new();
    let mut per_runner = Vec::new();
    for task in tasks {
        let claimed = task.await.unwrap();
        per_runner.push(claimed.len());
        for id in claimed {
            *counts.entry(id).or_default() += 1;
        }
    }
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "run {id} claims: {counts:?}");
    }
    assert_eq!(counts.len(), 50, "{counts:?}");
    assert_eq!(per_runner.iter().sum::<usize>(), 50, "{per_runner:?}");
    for id in ids {
        assert_eq!(run(&apps[0], id).await["status"], "planned_and_finished");
    }
}

async fn send(
    router: &axum::Router,
    request: axum::http::Request<axum::body::Body>,
) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let resp = router.clone().oneshot(request).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
