//! Authentication and the role matrix, seen from the outside.

use axum::http::StatusCode;
use serde_json::json;
use terrace::identity::auth::Role;

use crate::support::{ORG, RequestBuilder, Resp, TestApp, create_token, lock_info, state};

const WS: &str = "prod";
/// Appears in acme's state only; no response to another org may contain it.
const SECRET: &str = "acme-db-password-0xC0FFEE";

on_both_databases! {
    requests_without_a_token_are_401_with_a_challenge,
    an_unknown_or_malformed_token_is_401,
    a_revoked_token_is_401,
    an_expired_token_is_401,
    a_read_token_reads_but_cannot_lock_or_write,
    a_write_token_cannot_use_admin_actions,
    an_admin_token_may_use_admin_actions,
    another_orgs_token_finds_nothing_of_acme,
    a_created_token_secret_is_shown_once_and_never_listed,
}

fn secret_state(serial: i64) -> String {
    json!({
        "version": 4,
        "serial": serial,
        "lineage": "lin",
        "outputs": { "password": { "value": SECRET, "type": "string", "sensitive": true } },
        "resources": [],
    })
    .to_string()
}

async fn seed(app: &TestApp) {
    for serial in 1..=2 {
        app.write_state(WS, secret_state(serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
}

async fn create_via_api(app: &TestApp, name: &str, role: &str) -> (i64, String) {
    let resp = app
        .api(
            "POST",
            &format!("/api/v1/orgs/{ORG}/tokens"),
            &app.admin_token,
            Some(json!({ "name": name, "role": role })),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    (
        body["id"].as_i64().unwrap(),
        body["token"].as_str().unwrap().to_string(),
    )
}

#[track_caller]
fn assert_unauthenticated(resp: &Resp) {
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let challenge = resp.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("Basic"), "{challenge}");
}

async fn requests_without_a_token_are_401_with_a_challenge(app: TestApp) {
    seed(&app).await;
    let anonymous = [
        RequestBuilder::new("GET", &format!("/state/{ORG}/{WS}")),
        RequestBuilder::new("POST", &format!("/state/{ORG}/{WS}")).body(secret_state(3)),
        RequestBuilder::new("LOCK", &format!("/state/{ORG}/{WS}")).body(lock_info("x")),
        RequestBuilder::new("GET", &TestApp::ws_api(WS, "/state-versions")),
        RequestBuilder::new("GET", &format!("/api/v1/orgs/{ORG}/tokens")),
    ];
    for request in anonymous {
        let resp = app.send(request.build()).await;
        assert_unauthenticated(&resp);
        assert!(!resp.text().contains(SECRET));
    }
}

async fn an_unknown_or_malformed_token_is_401(app: TestApp) {
    let path = format!("/state/{ORG}/{WS}");
    let headers = [
        "Bearer trc_not-a-real-token".to_string(),
        crate::support::basic_auth("trc_not-a-real-token"),
        "Basic !!!not-base64".to_string(),
        "Bearer ".to_string(),
        format!("Token {}", app.read_token),
    ];
    for value in headers {
        let request = RequestBuilder::new("GET", &path).header("authorization", &value);
        assert_unauthenticated(&app.send(request.build()).await);
    }
}

async fn a_revoked_token_is_401(app: TestApp) {
    seed(&app).await;
    let (id, token) = create_via_api(&app, "ci", "read").await;
    app.get_state(WS, &token)
        .await
        .assert_status(StatusCode::OK);

    let path = format!("/api/v1/orgs/{ORG}/tokens/{id}");
    app.api("DELETE", &path, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);

    assert_unauthenticated(&app.get_state(WS, &token).await);
    let listed = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/tokens"),
            &app.admin_token,
            None,
        )
        .await
        .json();
    let entry = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
        .clone();
    assert!(entry["revoked_at"].is_string(), "{entry}");
}

async fn an_expired_token_is_401(app: TestApp) {
    seed(&app).await;
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let expired = create_token(app.db(), ORG, "old", Role::Admin, Some(past)).await;
    let valid = create_token(app.db(), ORG, "new", Role::Admin, Some(future)).await;

    assert_unauthenticated(&app.get_state(WS, &expired).await);
    app.get_state(WS, &valid)
        .await
        .assert_status(StatusCode::OK);
}

async fn a_read_token_reads_but_cannot_lock_or_write(app: TestApp) {
    seed(&app).await;
    let read = &app.read_token;

    app.get_state(WS, read).await.assert_status(StatusCode::OK);
    app.api("GET", &TestApp::ws_api(WS, "/state-versions"), read, None)
        .await
        .assert_status(StatusCode::OK);
    app.lock(WS, "r", read)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.write_state(WS, secret_state(3), None, read)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.unlock(WS, "", read)
        .await
        .assert_status(StatusCode::FORBIDDEN);

    assert!(app.lock_holder(WS).await.is_none());
    assert_eq!(app.versions(WS).await.len(), 2);
}

async fn a_write_token_cannot_use_admin_actions(app: TestApp) {
    seed(&app).await;
    app.lock(WS, "held", &app.write_token).await;
    let write = &app.write_token;
    let denied = [
        (
            "POST",
            TestApp::ws_api(WS, "/state-versions/1/rollback"),
            None,
        ),
        (
            "PATCH",
            TestApp::ws_api(WS, ""),
            Some(json!({ "lineage_protection": false })),
        ),
        ("DELETE", TestApp::ws_api(WS, "/lock"), None),
        ("GET", format!("/api/v1/orgs/{ORG}/tokens"), None),
        (
            "POST",
            format!("/api/v1/orgs/{ORG}/tokens"),
            Some(json!({ "name": "x", "role": "admin" })),
        ),
    ];
    for (method, path, body) in denied {
        let resp = app.api(method, &path, write, body).await;
        assert_eq!(
            resp.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            resp.text()
        );
    }
    let upload = RequestBuilder::new("POST", &TestApp::ws_api(WS, "/state-versions"))
        .bearer(write)
        .body(secret_state(9));
    app.send(upload.build())
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let delete = app.state_request("DELETE", WS, write);
    app.send(delete.build())
        .await
        .assert_status(StatusCode::FORBIDDEN);

    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "held");
    assert_eq!(app.versions(WS).await.len(), 2);
}

async fn an_admin_token_may_use_admin_actions(app: TestApp) {
    seed(&app).await;
    app.lock(WS, "held", &app.write_token).await;
    let admin = &app.admin_token;

    app.api("DELETE", &TestApp::ws_api(WS, "/lock"), admin, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert!(app.lock_holder(WS).await.is_none());
    app.api(
        "POST",
        &TestApp::ws_api(WS, "/state-versions/1/rollback"),
        admin,
        None,
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.api(
        "PATCH",
        &TestApp::ws_api(WS, ""),
        admin,
        Some(json!({ "lineage_protection": false })),
    )
    .await
    .assert_status(StatusCode::OK);
    app.api("GET", &format!("/api/v1/orgs/{ORG}/tokens"), admin, None)
        .await
        .assert_status(StatusCode::OK);
    // Admins can do everything writers can.
    app.write_state(WS, secret_state(10), None, admin)
        .await
        .assert_status(StatusCode::OK);
}

async fn another_orgs_token_finds_nothing_of_acme(app: TestApp) {
    seed(&app).await;
    app.lock(WS, "held", &app.write_token).await;
    let other = &app.other_token;
    let mut responses = vec![
        app.get_state(WS, other).await,
        app.write_state(WS, secret_state(3), None, other).await,
        app.lock(WS, "intruder", other).await,
        app.unlock(WS, "", other).await,
    ];
    let api_paths = [
        format!("/api/v1/orgs/{ORG}/workspaces"),
        TestApp::ws_api(WS, ""),
        TestApp::ws_api(WS, "/state-versions"),
        TestApp::ws_api(WS, "/state-versions/1"),
        TestApp::ws_api(WS, "/lock"),
        format!("/api/v1/orgs/{ORG}/tokens"),
    ];
    for path in &api_paths {
        responses.push(app.api("GET", path, other, None).await);
    }
    responses.push(
        app.api(
            "POST",
            &TestApp::ws_api(WS, "/state-versions/1/rollback"),
            other,
            None,
        )
        .await,
    );

    // Revoking acme's tokens: neither through acme's URL nor by id through its own org.
    let (id, victim) = create_via_api(&app, "victim", "read").await;
    for org in [ORG, crate::support::OTHER_ORG] {
        let path = format!("/api/v1/orgs/{org}/tokens/{id}");
        responses.push(app.api("DELETE", &path, other, None).await);
    }

    for resp in &responses {
        resp.assert_status(StatusCode::NOT_FOUND);
        let text = resp.text();
        assert!(
            !text.contains(SECRET) && !text.contains("alice@laptop"),
            "{text}"
        );
    }
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "held");
    assert_eq!(app.versions(WS).await.len(), 2);
    app.get_state(WS, &victim)
        .await
        .assert_status(StatusCode::OK);
}

async fn a_created_token_secret_is_shown_once_and_never_listed(app: TestApp) {
    seed(&app).await;
    let (id, secret) = create_via_api(&app, "pipeline", "write").await;
    assert!(secret.starts_with("trc_"), "{secret}");

    let listed = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/tokens"),
            &app.admin_token,
            None,
        )
        .await;

    listed.assert_status(StatusCode::OK);
    assert!(!listed.text().contains(&secret));
    let entries = listed.json()["data"].as_array().unwrap().clone();
    let entry = entries.iter().find(|t| t["id"] == id).unwrap();
    assert_eq!(entry["name"], "pipeline");
    assert_eq!(entry["role"], "write");
    assert!(
        entry.get("token").is_none() && entry.get("token_hash").is_none(),
        "{entry}"
    );
    // The secret works, with the role it was given.
    app.write_state(WS, state("lin", 3), None, &secret)
        .await
        .assert_status(StatusCode::OK);
}
