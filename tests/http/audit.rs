//! The audit trail: what is recorded, with which fields, and who may read it.

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use terrace::infra::db::Db;

use crate::support::{ORG, RequestBuilder, TestApp, basic_auth, lock_info, raw_http, state};

on_both_databases! {
    a_state_write_and_read_are_recorded,
    reads_that_return_no_state_bytes_and_probes_are_not_recorded,
    a_denied_write_is_recorded_as_denied,
    a_request_that_never_reaches_authorization_falls_back_to_method_and_path,
    the_list_is_admin_only,
    filters_narrow_the_list,
    pages_are_newest_first,
    bad_list_parameters_are_400,
    audit_events_are_append_only,
    the_served_app_records_the_peer_and_flushes_on_shutdown,
}

const EVENTS: &str = "/api/v1/orgs/acme/audit-events";

/// The id of `name`'s token in acme, as the token list shows it.
async fn token_id(app: &TestApp, name: &str) -> i64 {
    let resp = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/tokens"),
            &app.admin_token,
            None,
        )
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

/// Waits for the trail to be written, then lists it with the admin token.
async fn list(app: &TestApp, query: &str) -> Value {
    app.state.audit.flush().await;
    let resp = app
        .api("GET", &format!("{EVENTS}{query}"), &app.admin_token, None)
        .await;
    resp.assert_status(StatusCode::OK);
    resp.json()
}

async fn events(app: &TestApp, query: &str) -> Vec<Value> {
    list(app, query).await["data"].as_array().unwrap().clone()
}

fn brief(event: &Value) -> (String, String, String) {
    (
        event["action"].as_str().unwrap().to_string(),
        event["resource"].as_str().unwrap().to_string(),
        event["outcome"].as_str().unwrap().to_string(),
    )
}

fn briefs(events: &[Value]) -> Vec<(String, String, String)> {
    events.iter().map(brief).collect()
}

fn b(action: &str, resource: &str, outcome: &str) -> (String, String, String) {
    (action.into(), resource.into(), outcome.into())
}

async fn a_state_write_and_read_are_recorded(app: TestApp) {
    let writer = token_id(&app, "writer").await;
    let reader = token_id(&app, "reader").await;
    app.lock("prod", "secret-lock-id", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let write = app
        .state_request("POST", "prod?ID=secret-lock-id", &app.write_token)
        .header("x-request-id", "req-write-1")
        .body(state("lin", 1));
    let written = app.send(write.build()).await;
    written.assert_status(StatusCode::OK);
    assert_eq!(written.headers["x-request-id"], "req-write-1");
    let read = app.get_state("prod", &app.read_token).await;
    read.assert_status(StatusCode::OK);
    let read_id = read.headers["x-request-id"].to_str().unwrap().to_string();
    let version = app
        .api(
            "GET",
            &TestApp::ws_api("prod", "/state-versions/1"),
            &app.read_token,
            None,
        )
        .await;
    version.assert_status(StatusCode::OK);

    let events = events(&app, "").await;

    assert_eq!(
        briefs(&events),
        [
            b("state:read", "workspace:prod", "success"),
            b("state:read", "workspace:prod", "success"),
            b("state:write", "workspace:prod", "success"),
            b("state:lock", "workspace:prod", "success"),
        ]
    );
    let w = &events[2];
    let keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "occurred_at",
            "actor",
            "token_id",
            "action",
            "resource",
            "outcome",
            "status",
            "source",
            "request_id"
        ]
    );
    assert_eq!(w["actor"], format!("token:writer#{writer}"));
    assert_eq!(w["token_id"], writer.to_string());
    assert_eq!(w["status"], 200);
    assert_eq!(w["request_id"], "req-write-1");
    // In-process requests have no peer.
    assert_eq!(w["source"], Value::Null);
    let at: DateTime<Utc> = w["occurred_at"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - at).num_seconds().abs() < 60, "{at}");
    let r = &events[1];
    assert_eq!(r["actor"], format!("token:reader#{reader}"));
    assert_eq!(r["token_id"], reader.to_string());
    assert_eq!(r["request_id"], read_id.as_str());
    assert_eq!(events[0]["actor"], format!("token:reader#{reader}"));
    assert_eq!(events[3]["actor"], format!("token:writer#{writer}"));
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("secret-lock-id")
    );
}

async fn reads_that_return_no_state_bytes_and_probes_are_not_recorded(app: TestApp) {
    app.write_state("prod", state("lin", 1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    for path in [
        "/api/v1/orgs/acme/workspaces",
        "/api/v1/orgs/acme/workspaces/prod",
        "/api/v1/orgs/acme/workspaces/prod/state-versions",
    ] {
        app.api("GET", path, &app.read_token, None)
            .await
            .assert_status(StatusCode::OK);
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        app.send(RequestBuilder::new("GET", path).build()).await;
    }
    app.send(app.state_request("HEAD", "prod", &app.read_token).build())
        .await;

    let events = events(&app, "").await;

    assert_eq!(
        briefs(&events),
        [b("state:write", "workspace:prod", "success")]
    );
}

async fn a_denied_write_is_recorded_as_denied(app: TestApp) {
    let reader = token_id(&app, "reader").await;

    app.write_state("prod", state("lin", 1), None, &app.read_token)
        .await
        .assert_status(StatusCode::FORBIDDEN);

    let events = events(&app, "").await;
    assert_eq!(
        briefs(&events),
        [b("state:write", "workspace:prod", "denied")]
    );
    assert_eq!(events[0]["actor"], format!("token:reader#{reader}"));
    assert_eq!(events[0]["status"], 403);
}

/// Rows of events that belong to no org (never listed by the API).
async fn orgless_events(db: &Db) -> Vec<(String, String, String, i32, String)> {
    const SQL: &str = "SELECT actor, action, resource, status, outcome FROM audit_events \
                       WHERE org_id IS NULL ORDER BY id";
    match db {
        Db::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
    }
}

async fn a_request_that_never_reaches_authorization_falls_back_to_method_and_path(app: TestApp) {
    app.write_state("prod", state("lin", 1), Some("sig"), "trc_not-a-token")
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    app.send(RequestBuilder::new("DELETE", "/state/acme/prod").build())
        .await;
    app.state.audit.flush().await;

    assert_eq!(
        orgless_events(app.db()).await,
        [
            (
                "anonymous".to_string(),
                "http:post".to_string(),
                "/state/acme/prod".to_string(),
                401,
                "denied".to_string()
            ),
            (
                "anonymous".to_string(),
                "state:admin".to_string(),
                "workspace:prod".to_string(),
                401,
                "denied".to_string()
            ),
        ]
    );
    // Not in acme's trail: nothing proves these requests concerned acme.
    assert!(events(&app, "").await.is_empty());
}

async fn the_list_is_admin_only(app: TestApp) {
    for (token, status) in [
        (app.read_token.as_str(), StatusCode::FORBIDDEN),
        (app.write_token.as_str(), StatusCode::FORBIDDEN),
        (app.other_token.as_str(), StatusCode::NOT_FOUND),
        ("", StatusCode::UNAUTHORIZED),
    ] {
        let request = if token.is_empty() {
            RequestBuilder::new("GET", EVENTS)
        } else {
            RequestBuilder::new("GET", EVENTS).bearer(token)
        };
        app.send(request.build()).await.assert_status(status);
    }
    app.api(
        "GET",
        "/api/v1/orgs/other/audit-events",
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
    app.api(
        "GET",
        "/api/v1/orgs/other/audit-events",
        &app.other_token,
        None,
    )
    .await
    .assert_status(StatusCode::OK);
}

/// Four events: writes to `alpha` and `alpha-2`, a read of `alpha`, a denied write to `beta`.
async fn seed(app: &TestApp) {
    app.write_state("alpha", state("a", 1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    app.write_state("alpha-2", state("a2", 1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    app.get_state("alpha", &app.read_token)
        .await
        .assert_status(StatusCode::OK);
    app.write_state("beta", state("b", 1), None, &app.read_token)
        .await
        .assert_status(StatusCode::FORBIDDEN);
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn filters_narrow_the_list(app: TestApp) {
    let writer = token_id(&app, "writer").await;
    seed(&app).await;
    app.state.audit.flush().await;
    // Stored times may be cut to microseconds: keep the two rounds apart.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.lock("alpha", "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    let by_actor = events(&app, &format!("?actor=token:writer%23{writer}")).await;
    assert_eq!(
        briefs(&by_actor),
        [
            b("state:lock", "workspace:alpha", "success"),
            b("state:write", "workspace:alpha-2", "success"),
            b("state:write", "workspace:alpha", "success"),
        ]
    );
    let by_action = events(&app, "?action=state:write").await;
    assert_eq!(by_action.len(), 3);
    let by_prefix = events(&app, "?resource=workspace:alpha").await;
    assert_eq!(by_prefix.len(), 4);
    let exact = events(&app, "?resource=workspace:alpha-").await;
    assert_eq!(
        briefs(&exact),
        [b("state:write", "workspace:alpha-2", "success")]
    );
    let denied = events(&app, "?outcome=denied").await;
    assert_eq!(
        briefs(&denied),
        [b("state:write", "workspace:beta", "denied")]
    );
    let combined = events(
        &app,
        "?action=state:write&outcome=success&resource=workspace:beta",
    )
    .await;
    assert!(combined.is_empty());
    let later = events(&app, &format!("?since={}", rfc3339(between))).await;
    assert_eq!(
        briefs(&later),
        [b("state:lock", "workspace:alpha", "success")]
    );
    let earlier = events(&app, &format!("?until={}", rfc3339(between))).await;
    assert_eq!(earlier.len(), 4);
    let offset = events(
        &app,
        &format!(
            "?since={}",
            between.format("%Y-%m-%dT%H:%M:%S%.6f%%2B00:00")
        ),
    )
    .await;
    assert_eq!(offset.len(), 1);
    let empty = events(&app, "?actor=&outcome=").await;
    assert_eq!(empty.len(), 5);
}

async fn pages_are_newest_first(app: TestApp) {
    seed(&app).await;
    let all = events(&app, "").await;
    assert_eq!(all.len(), 4);

    let first = list(&app, "?limit=3").await;
    let second = list(&app, "?limit=3&offset=3").await;

    assert_eq!(first["meta"]["limit"], 3);
    assert_eq!(first["meta"]["offset"], 0);
    assert_eq!(first["meta"]["next_offset"], 3);
    assert_eq!(second["meta"]["next_offset"], Value::Null);
    let paged: Vec<Value> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(paged, all);
    let filtered = list(&app, "?action=state:write&limit=2&offset=1").await;
    assert_eq!(
        briefs(filtered["data"].as_array().unwrap()),
        [
            b("state:write", "workspace:alpha-2", "success"),
            b("state:write", "workspace:alpha", "success"),
        ]
    );
    assert_eq!(filtered["meta"]["next_offset"], Value::Null);
}

async fn bad_list_parameters_are_400(app: TestApp) {
    for query in [
        "?who=alice",
        "?limit=0",
        "?limit=1001",
        "?offset=-1",
        "?limit=ten",
        "?since=yesterday",
        "?until=2026-01-02",
        "?outcome=maybe",
    ] {
        let resp = app
            .api("GET", &format!("{EVENTS}{query}"), &app.admin_token, None)
            .await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        assert!(resp.json()["errors"][0].is_string(), "{query}");
    }
}

async fn audit_events_are_append_only(app: TestApp) {
    seed(&app).await;
    app.state.audit.flush().await;

    for sql in [
        "UPDATE audit_events SET actor = 'nobody'",
        "UPDATE audit_events SET outcome = 'success' WHERE outcome = 'denied'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE outcome = 'denied'",
    ] {
        let result = match app.db() {
            Db::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        };
        let err = result.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let events = events(&app, "").await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["outcome"], "denied");
    assert!(events.iter().all(|e| e["actor"] != "nobody"));
}

async fn the_served_app_records_the_peer_and_flushes_on_shutdown(app: TestApp) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(terrace::app::serve(
        listener,
        app.state.clone(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let body = lock_info("peer");
    let request = format!(
        "LOCK /state/acme/prod HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\
         X-Forwarded-For: 203.0.113.9\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        basic_auth(&app.write_token),
        body.len()
    );
    let (status, response) = raw_http(addr, request.as_bytes()).await;
    assert_eq!(status, 200, "{response}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // `serve` flushed on its way out: the event is in the table already.
    let query = "SELECT source FROM audit_events WHERE action = 'state:lock'";
    let sources: Vec<(Option<String>,)> = match app.db() {
        Db::Sqlite(p) => sqlx::query_as(query).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as(query).fetch_all(p).await.unwrap(),
    };
    assert_eq!(sources, [(Some("127.0.0.1".to_string()),)]);
}
