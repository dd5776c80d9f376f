//! Lock leases: stale locks in the API and `/metrics`, renewal by the holder, and takeover
//! when the workspace allows it.

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use terrace::infra::db::Db;

use terrace::state::locks::Locks;

use crate::support::{RequestBuilder, TestApp, lock_info, state};

const WS: &str = "prod";

macro_rules! on_every_lock_backend {
    ($($name:ident),+ $(,)?) => {
        on_both_databases!($($name),+);
        on_both_databases!(@backend postgres_dynamo, PostgresDynamo, $crate::support::TestApp::new; $($name),+);
        on_both_databases!(@backend postgres_azure_table, PostgresAzureTable, $crate::support::TestApp::new; $($name),+);
    };
}

on_every_lock_backend! {
    without_a_lease_a_lock_is_never_stale,
    a_lock_past_its_lease_is_stale_in_the_api_and_metrics,
    a_lease_of_one_second_runs_out_in_real_time,
    a_write_or_relock_with_the_holders_id_renews_the_lease,
    with_expire_stale_locks_a_new_lock_takes_over_a_stale_one,
    without_expire_stale_locks_a_stale_lock_still_conflicts_with_the_holders_body,
    bad_lease_settings_are_400_and_non_admins_are_403,
    two_concurrent_takeovers_of_a_stale_lock_have_one_winner,
}

/// Pretends the holder last wrote or renewed `ago` ago.
async fn backdate_lock(app: &TestApp, ago: Duration) {
    const SQL: &str = "UPDATE state_locks SET renewed_at = $1";
    let then = Utc::now() - ago;
    if let Locks::AzureTable(locks) = &app.state.state.locks {
        locks.set_renewed_at(then).await.unwrap();
        return;
    }
    if let Locks::DynamoDb(locks) = &app.state.state.locks {
        use aws_sdk_dynamodb::types::AttributeValue;
        let items = locks
            .client()
            .scan()
            .table_name(locks.table())
            .send()
            .await
            .unwrap();
        for item in items.items() {
            locks
                .client()
                .update_item()
                .table_name(locks.table())
                .key("LockID", item["LockID"].clone())
                .update_expression("SET RenewedAt = :then")
                .expression_attribute_values(
                    ":then",
                    AttributeValue::N(then.timestamp_millis().to_string()),
                )
                .send()
                .await
                .unwrap();
        }
        return;
    }
    match app.db() {
        Db::Sqlite(p) => sqlx::query(SQL).bind(then).execute(p).await.map(|_| ()),
        Db::Postgres(p) => sqlx::query(SQL).bind(then).execute(p).await.map(|_| ()),
    }
    .unwrap();
}

async fn patch(app: &TestApp, settings: Value, token: &str) -> crate::support::Resp {
    app.api("PATCH", &TestApp::ws_api(WS, ""), token, Some(settings))
        .await
}

async fn show(app: &TestApp) -> Value {
    let resp = app
        .api("GET", &TestApp::ws_api(WS, ""), &app.read_token, None)
        .await;
    resp.assert_status(StatusCode::OK);
    resp.json()
}

async fn listed(app: &TestApp) -> Value {
    let resp = app
        .api("GET", "/api/v1/orgs/acme/workspaces", &app.read_token, None)
        .await;
    resp.assert_status(StatusCode::OK);
    let list = resp.json()["data"].as_array().unwrap().clone();
    list.into_iter().find(|w| w["name"] == WS).unwrap()
}

async fn stale_locks_metric(app: &TestApp) -> f64 {
    let resp = app
        .send(RequestBuilder::new("GET", "/metrics").build())
        .await;
    resp.assert_status(StatusCode::OK);
    resp.text()
        .lines()
        .find_map(|line| line.strip_prefix("terrace_stale_locks "))
        .unwrap_or_else(|| panic!("no terrace_stale_locks in {}", resp.text()))
        .parse()
        .unwrap()
}

async fn without_a_lease_a_lock_is_never_stale(app: TestApp) {
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    backdate_lock(&app, Duration::days(30)).await;

    let holder = app.lock_holder(WS).await.unwrap();
    assert_eq!(holder["stale"], false);
    assert_eq!(holder["lease_expires_at"], Value::Null);
    assert!(holder["renewed_at"].is_string());
    let ws = show(&app).await;
    assert_eq!(ws["lock_lease"], Value::Null);
    assert_eq!(ws["expire_stale_locks"], false);
    assert_eq!(ws["lock"]["stale"], false);
    assert_eq!(ws["lock"]["ID"], "l1");
    assert_eq!(stale_locks_metric(&app).await, 0.0);
    // A stale-looking lock without a lease is still held.
    app.lock(WS, "l2", &app.admin_token)
        .await
        .assert_status(StatusCode::LOCKED);
}

async fn a_lock_past_its_lease_is_stale_in_the_api_and_metrics(app: TestApp) {
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let resp = patch(&app, json!({ "lock_lease": "2h" }), &app.admin_token).await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["lock_lease"], "2h");
    let holder = app.lock_holder(WS).await.unwrap();
    assert_eq!(holder["stale"], false);
    assert!(holder["lease_expires_at"].is_string());
    assert_eq!(stale_locks_metric(&app).await, 0.0);

    backdate_lock(&app, Duration::hours(3)).await;

    assert_eq!(app.lock_holder(WS).await.unwrap()["stale"], true);
    assert_eq!(show(&app).await["lock"]["stale"], true);
    let row = listed(&app).await;
    assert_eq!(row["lock"]["stale"], true);
    assert_eq!(row["lock_lease"], "2h");
    assert_eq!(stale_locks_metric(&app).await, 1.0);

    // Clearing the lease makes the same lock fresh again.
    patch(&app, json!({ "lock_lease": null }), &app.admin_token)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(app.lock_holder(WS).await.unwrap()["stale"], false);
    assert_eq!(stale_locks_metric(&app).await, 0.0);
}

async fn a_lease_of_one_second_runs_out_in_real_time(app: TestApp) {
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    patch(&app, json!({ "lock_lease": "1s" }), &app.admin_token)
        .await
        .assert_status(StatusCode::OK);
    // Re-LOCK renews, so the second starts now.
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;

    assert_eq!(app.lock_holder(WS).await.unwrap()["stale"], true);
    assert_eq!(stale_locks_metric(&app).await, 1.0);
}

async fn a_write_or_relock_with_the_holders_id_renews_the_lease(app: TestApp) {
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    patch(&app, json!({ "lock_lease": "1h" }), &app.admin_token)
        .await
        .assert_status(StatusCode::OK);
    backdate_lock(&app, Duration::hours(2)).await;
    assert_eq!(app.lock_holder(WS).await.unwrap()["stale"], true);

    app.write_state(WS, state("lin", 1), Some("l1"), &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    let holder = app.lock_holder(WS).await.unwrap();
    assert_eq!(holder["stale"], false);
    assert_eq!(holder["id"], "l1");
    assert_eq!(stale_locks_metric(&app).await, 0.0);

    backdate_lock(&app, Duration::hours(2)).await;
    let created_at = app.lock_holder(WS).await.unwrap()["created_at"].clone();
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let holder = app.lock_holder(WS).await.unwrap();
    assert_eq!(holder["stale"], false);
    // Renewal keeps the original acquisition time.
    assert_eq!(holder["created_at"], created_at);
    // So does an admin upload through the API carrying the holder's ID.
    backdate_lock(&app, Duration::hours(2)).await;
    let upload = RequestBuilder::new("POST", &TestApp::ws_api(WS, "/state-versions?ID=l1"))
        .bearer(&app.admin_token)
        .body(state("lin", 2));
    app.send(upload.build())
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(app.lock_holder(WS).await.unwrap()["stale"], false);
}

async fn with_expire_stale_locks_a_new_lock_takes_over_a_stale_one(app: TestApp) {
    app.lock(WS, "old", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let resp = patch(
        &app,
        json!({ "lock_lease": "1h", "expire_stale_locks": true }),
        &app.admin_token,
    )
    .await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["expire_stale_locks"], true);
    // Not stale yet: the holder keeps it.
    let resp = app.lock(WS, "new", &app.admin_token).await;
    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("old").as_bytes());

    backdate_lock(&app, Duration::hours(2)).await;
    app.lock(WS, "new", &app.admin_token)
        .await
        .assert_status(StatusCode::OK);

    let holder = app.lock_holder(WS).await.unwrap();
    assert_eq!(holder["id"], "new");
    assert_eq!(holder["stale"], false);
    assert_eq!(stale_locks_metric(&app).await, 0.0);
    // The old holder lost its lock, like a force-unlock.
    app.write_state(WS, state("lin", 1), Some("old"), &app.write_token)
        .await
        .assert_status(StatusCode::LOCKED);
    app.unlock(WS, lock_info("old"), &app.write_token)
        .await
        .assert_status(StatusCode::LOCKED);
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "new");
    // After the new holder releases, a write under the lost ID is refused as stale.
    app.unlock(WS, lock_info("new"), &app.admin_token)
        .await
        .assert_status(StatusCode::OK);
    app.write_state(WS, state("lin", 1), Some("old"), &app.write_token)
        .await
        .assert_status(StatusCode::CONFLICT);
}

async fn without_expire_stale_locks_a_stale_lock_still_conflicts_with_the_holders_body(
    app: TestApp,
) {
    app.lock(WS, "old", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    patch(&app, json!({ "lock_lease": "1h" }), &app.admin_token)
        .await
        .assert_status(StatusCode::OK);
    backdate_lock(&app, Duration::hours(2)).await;

    let resp = app.lock(WS, "new", &app.admin_token).await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("old").as_bytes());
    let holder = app.lock_holder(WS).await.unwrap();
    assert_eq!(holder["id"], "old");
    assert_eq!(holder["stale"], true);
}

async fn bad_lease_settings_are_400_and_non_admins_are_403(app: TestApp) {
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    for bad in [
        json!({ "lock_lease": "soon" }),
        json!({ "lock_lease": "0s" }),
        json!({ "lock_lease": "500ms" }),
        json!({ "lock_lease": "400d" }),
        json!({ "lock_lease": 60 }),
        json!({ "expire_stale_locks": "yes" }),
        json!({ "expire_stale_locks": null, "lock_lease": "soon" }),
    ] {
        patch(&app, bad.clone(), &app.admin_token)
            .await
            .assert_status(StatusCode::BAD_REQUEST);
    }
    // A bad lease changes nothing else in the same request.
    patch(
        &app,
        json!({ "lineage_protection": false, "lock_lease": "soon" }),
        &app.admin_token,
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(show(&app).await["lineage_protection"], true);

    for token in [&app.write_token, &app.read_token] {
        patch(&app, json!({ "lock_lease": "1h" }), token)
            .await
            .assert_status(StatusCode::FORBIDDEN);
    }
    let ws = show(&app).await;
    assert_eq!(ws["lock_lease"], Value::Null);
    assert_eq!(ws["expire_stale_locks"], false);
}

async fn two_concurrent_takeovers_of_a_stale_lock_have_one_winner(app: TestApp) {
    app.lock(WS, "old", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    patch(
        &app,
        json!({ "lock_lease": "1h", "expire_stale_locks": true }),
        &app.admin_token,
    )
    .await
    .assert_status(StatusCode::OK);
    for round in 0..5 {
        backdate_lock(&app, Duration::hours(2)).await;
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let (resp_a, resp_b) = tokio::join!(
            app.lock(WS, &a, &app.write_token),
            app.lock(WS, &b, &app.admin_token)
        );
        let (winner, loser) = match (resp_a.status, resp_b.status) {
            (StatusCode::OK, StatusCode::LOCKED) => (a, resp_b),
            (StatusCode::LOCKED, StatusCode::OK) => (b, resp_a),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        // The loser is told who won, in Terraform's format.
        assert_eq!(loser.body.as_ref(), lock_info(&winner).as_bytes());
        assert_eq!(app.lock_holder(WS).await.unwrap()["id"], winner.as_str());
    }
}

/// DynamoDB trouble is the client's cue to retry (503 with Retry-After), never a 500.
#[tokio::test]
async fn an_unreachable_dynamodb_answers_503_with_retry_after() {
    use terrace::config::LockSettings;
    let mut app = TestApp::new(crate::support::Backend::Sqlite).await.unwrap();
    let env = terrace::config::AwsEnv {
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..Default::default()
    };
    // Nothing listens on port 1.
    let url = "dynamodb://locks?region=us-east-1&endpoint=http://127.0.0.1:1";
    let settings = LockSettings::parse(Some(url), &env).unwrap();
    app.state.state.locks = Locks::connect(&settings, app.db().clone());
    app.router = terrace::app::router(&app.state);

    for resp in [
        app.lock(WS, "l1", &app.write_token).await,
        app.unlock(WS, lock_info("l1"), &app.write_token).await,
        app.write_state(WS, state("lin", 1), None, &app.write_token)
            .await,
    ] {
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers.contains_key("retry-after"));
    }
    // The refused write left no version behind.
    assert!(app.versions(WS).await.is_empty());
    // And the readiness probe names the lock store.
    let ready = app
        .send(RequestBuilder::new("GET", "/readyz").build())
        .await;
    ready.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["locks"], "unavailable");
    assert_eq!(ready.json()["database"], "ok");
}

/// Table service trouble is a 503 with Retry-After too, and the probe names the lock store.
#[tokio::test]
async fn an_unreachable_azure_table_answers_503_with_retry_after() {
    use terrace::config::{AzureEnv, AzureTableSettings, LockSettings};
    let mut app = TestApp::new(crate::support::Backend::Sqlite).await.unwrap();
    let env = AzureEnv {
        use_emulator: true,
        ..Default::default()
    };
    // Nothing listens on port 1.
    let url = "azuretable://devstoreaccount1/locks?endpoint=http://127.0.0.1:1/devstoreaccount1";
    let settings = LockSettings::AzureTable(AzureTableSettings::parse(url, &env).unwrap());
    app.state.state.locks = Locks::connect(&settings, app.db().clone());
    app.router = terrace::app::router(&app.state);

    for resp in [
        app.lock(WS, "l1", &app.write_token).await,
        app.unlock(WS, lock_info("l1"), &app.write_token).await,
        app.write_state(WS, state("lin", 1), None, &app.write_token)
            .await,
    ] {
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers.contains_key("retry-after"));
    }
    assert!(app.versions(WS).await.is_empty());
    let ready = app
        .send(RequestBuilder::new("GET", "/readyz").build())
        .await;
    ready.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["locks"], "unavailable");
}
