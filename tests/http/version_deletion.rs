//! An admin deletes an old state version (say, one that leaked a secret); the current
//! version is protected and the audit trail records the deletion.

use axum::http::StatusCode;

use crate::support::{TestApp, state};

async fn an_admin_deletes_an_old_version_and_its_object(app: TestApp) {
    for serial in 1..=3 {
        app.write_state("prod", state("l", serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
    assert_eq!(app.blob_files().len(), 3);
    let path = TestApp::ws_api("prod", "/state-versions/2");
    app.api("DELETE", &path, &app.write_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.api("DELETE", &path, &app.other_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);

    let deleted = app.api("DELETE", &path, &app.admin_token, None).await;
    deleted.assert_status(StatusCode::OK);
    assert_eq!(deleted.json()["versions"], serde_json::json!([2]));
    app.api("GET", &path, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.api("DELETE", &path, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    assert_eq!(
        app.blob_files().len(),
        2,
        "the encrypted object is gone too"
    );
    let versions: Vec<i64> = app
        .versions("prod")
        .await
        .iter()
        .map(|v| v["serial"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![3, 1]);

    // The current state is never deleted.
    let current = TestApp::ws_api("prod", "/state-versions/3");
    app.api("DELETE", &current, &app.admin_token, None)
        .await
        .assert_status(StatusCode::CONFLICT);
    let read = app.get_state("prod", &app.read_token).await;
    read.assert_status(StatusCode::OK);
    assert_eq!(read.text(), state("l", 3));
    // New versions still get fresh numbers after the gap.
    app.write_state("prod", state("l", 4), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let newest = &app.versions("prod").await[0];
    assert_eq!(newest["version"], 4);

    app.state.audit.flush().await;
    let events = app
        .api(
            "GET",
            "/api/v1/orgs/acme/audit-events?action=state:admin&outcome=success",
            &app.admin_token,
            None,
        )
        .await;
    events.assert_status(StatusCode::OK);
    let recorded = events.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"] == "workspace:prod" && e["status"] == 200);
    assert!(recorded, "{}", events.text());
    let verified = terrace::ops::verify::verify(app.db(), &app.state.blobs)
        .await
        .unwrap();
    assert!(verified.problems.is_empty(), "{:?}", verified.problems);
}

async fn a_retention_policy_keeps_the_newest_versions(app: TestApp) {
    for serial in 1..=5 {
        app.write_state("prod", state("l", serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
    let settings = TestApp::ws_api("prod", "");
    let patch = |body: serde_json::Value| app.api("PATCH", &settings, &app.admin_token, Some(body));
    patch(serde_json::json!({"retain_versions": 0}))
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    app.api(
        "PATCH",
        &settings,
        &app.write_token,
        Some(serde_json::json!({"retain_versions": 2})),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    assert_eq!(
        app.versions("prod").await.len(),
        5,
        "a refused change deletes nothing"
    );

    let changed = patch(serde_json::json!({"retain_versions": 2, "retain_days": null})).await;
    changed.assert_status(StatusCode::OK);
    assert_eq!(changed.json()["retain_versions"], 2);
    let serials: Vec<i64> = app
        .versions("prod")
        .await
        .iter()
        .map(|v| v["serial"].as_i64().unwrap())
        .collect();
    assert_eq!(serials, vec![5, 4]);
    assert_eq!(app.blob_files().len(), 2);
    // Every day-young version is kept when a day limit applies too.
    app.write_state("prod", state("l", 6), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    patch(serde_json::json!({"retain_versions": 1, "retain_days": 30}))
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(app.versions("prod").await.len(), 3);
    let read = app.get_state("prod", &app.read_token).await;
    assert_eq!(read.text(), state("l", 6));
}

on_both_databases!(
    an_admin_deletes_an_old_version_and_its_object,
    a_retention_policy_keeps_the_newest_versions,
);
