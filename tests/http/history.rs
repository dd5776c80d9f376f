//! Lineage and serial protection, immutable versions, rollback and admin upload.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, sha256_hex, state};

const WS: &str = "net";

on_every_backend! {
    a_foreign_lineage_is_409,
    a_lower_serial_is_409,
    the_same_serial_with_other_bytes_is_409,
    the_same_serial_with_the_same_bytes_is_200_without_a_new_version,
    a_body_without_serial_or_lineage_is_stored_opaque_byte_for_byte,
    without_lineage_protection_a_foreign_lineage_is_accepted,
    versions_are_listed_newest_first_with_their_metadata,
    versions_are_paginated_and_page_limits_are_checked,
    a_version_is_downloaded_by_serial_as_the_raw_bytes,
    rollback_writes_the_old_content_as_the_next_serial,
    rollback_is_refused_while_the_workspace_is_locked,
    rollback_past_the_largest_serial_or_of_unrewritable_json_is_409,
    an_admin_upload_bypasses_lineage_and_serial_checks,
    concurrent_writers_of_one_serial_commit_exactly_one,
    the_workspace_listing_shows_serial_versions_and_lock,
}

/// A state whose content differs by `marker`, so two documents with one serial differ.
fn state_with(lineage: &str, serial: i64, marker: &str) -> String {
    json!({
        "version": 4,
        "serial": serial,
        "lineage": lineage,
        "outputs": { "marker": { "value": marker, "type": "string" } },
        "resources": [],
    })
    .to_string()
}

async fn write_ok(app: &TestApp, body: &str) {
    app.write_state(WS, body.to_string(), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn current(app: &TestApp) -> bytes::Bytes {
    let resp = app.get_state(WS, &app.read_token).await;
    resp.assert_status(StatusCode::OK);
    resp.body
}

async fn a_foreign_lineage_is_409(app: TestApp) {
    write_ok(&app, &state("lineage-a", 1)).await;
    let objects = app.blob_files().len();

    let resp = app
        .write_state(WS, state("lineage-b", 2), None, &app.write_token)
        .await;

    resp.assert_status(StatusCode::CONFLICT);
    assert_eq!(current(&app).await, state("lineage-a", 1).as_bytes());
    assert_eq!(app.versions(WS).await.len(), 1);
    assert_eq!(
        app.blob_files().len(),
        objects,
        "a refused write left an object"
    );
}

async fn a_lower_serial_is_409(app: TestApp) {
    write_ok(&app, &state("lin", 5)).await;

    let resp = app
        .write_state(WS, state("lin", 4), None, &app.write_token)
        .await;

    resp.assert_status(StatusCode::CONFLICT);
    assert_eq!(current(&app).await, state("lin", 5).as_bytes());
}

async fn the_same_serial_with_other_bytes_is_409(app: TestApp) {
    write_ok(&app, &state_with("lin", 3, "first")).await;

    let resp = app
        .write_state(WS, state_with("lin", 3, "second"), None, &app.write_token)
        .await;

    resp.assert_status(StatusCode::CONFLICT);
    assert_eq!(
        current(&app).await,
        state_with("lin", 3, "first").as_bytes()
    );
}

async fn the_same_serial_with_the_same_bytes_is_200_without_a_new_version(app: TestApp) {
    write_ok(&app, &state("lin", 3)).await;
    let objects = app.blob_files().len();

    write_ok(&app, &state("lin", 3)).await;

    assert_eq!(app.versions(WS).await.len(), 1);
    assert_eq!(
        app.blob_files().len(),
        objects,
        "a retried write left an object"
    );
}

async fn a_body_without_serial_or_lineage_is_stored_opaque_byte_for_byte(app: TestApp) {
    let first = r#"{"meta":{"key_provider.pbkdf2.main":"eyJzYWx0Ijoi"},"encrypted_data":"QUJDRA==","encryption_version":"v0"}"#;
    let second = "{\"meta\":{},\n \"encrypted_data\":\"RUZHSA==\",\"encryption_version\":\"v0\"}\n";
    write_ok(&app, first).await;
    assert_eq!(current(&app).await, first.as_bytes());

    write_ok(&app, second).await;

    assert_eq!(current(&app).await, second.as_bytes());
    let versions = app.versions(WS).await;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["serial"], Value::Null);
    assert_eq!(versions[0]["lineage"], Value::Null);
}

async fn without_lineage_protection_a_foreign_lineage_is_accepted(app: TestApp) {
    write_ok(&app, &state("lineage-a", 7)).await;
    let patch = app
        .api(
            "PATCH",
            &TestApp::ws_api(WS, ""),
            &app.admin_token,
            Some(json!({ "lineage_protection": false })),
        )
        .await;
    patch.assert_status(StatusCode::OK);
    assert_eq!(patch.json()["lineage_protection"], false);

    write_ok(&app, &state("lineage-b", 1)).await;

    assert_eq!(current(&app).await, state("lineage-b", 1).as_bytes());
}

async fn versions_are_listed_newest_first_with_their_metadata(app: TestApp) {
    let bodies: Vec<String> = (1..=3).map(|serial| state("lin", serial)).collect();
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    for body in &bodies {
        write_ok(&app, body).await;
    }

    let versions = app.versions(WS).await;

    assert_eq!(versions.len(), 3);
    for (entry, serial) in versions.iter().zip([3, 2, 1]) {
        let body = &bodies[serial as usize - 1];
        assert_eq!(entry["serial"], serial);
        assert_eq!(entry["version"], serial);
        assert_eq!(entry["lineage"], "lin");
        assert_eq!(entry["sha256"], sha256_hex(body.as_bytes()));
        assert_eq!(entry["size"], body.len());
        assert_eq!(entry["source"], "terraform");
        let created_by = entry["created_by"].as_str().unwrap();
        assert!(created_by.starts_with("token:writer#"), "{created_by}");
        let created_at = entry["created_at"].as_str().unwrap();
        let created_at = chrono::DateTime::parse_from_rfc3339(created_at).unwrap();
        assert!(created_at >= before && created_at <= chrono::Utc::now());
    }
}

async fn versions_are_paginated_and_page_limits_are_checked(app: TestApp) {
    for serial in 1..=5 {
        write_ok(&app, &state("lin", serial)).await;
    }
    let page = |query: &'static str| {
        let app = &app;
        async move {
            let path = TestApp::ws_api(WS, &format!("/state-versions?{query}"));
            app.api("GET", &path, &app.read_token, None).await
        }
    };

    let first = page("limit=2").await.json();
    let serials: Vec<&Value> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["serial"])
        .collect();
    assert_eq!(serials, [&json!(5), &json!(4)]);
    assert_eq!(first["meta"]["next_offset"], 2);

    let middle = page("limit=2&offset=2").await.json();
    assert_eq!(middle["data"][0]["serial"], 3);
    assert_eq!(middle["meta"]["next_offset"], 4);

    let last = page("limit=2&offset=4").await.json();
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    assert_eq!(last["data"][0]["serial"], 1);
    assert_eq!(last["meta"]["next_offset"], Value::Null);

    for bad in ["limit=0", "limit=1001", "offset=-1", "limit=ten"] {
        let resp = page(bad).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            resp.text()
        );
    }
}

async fn a_version_is_downloaded_by_serial_as_the_raw_bytes(app: TestApp) {
    let old = "{\"serial\": 1, \"lineage\": \"lin\",   \"note\": \"\\u003c old \\u003e\"}  ";
    write_ok(&app, old).await;
    write_ok(&app, &state("lin", 2)).await;

    let resp = app
        .api(
            "GET",
            &TestApp::ws_api(WS, "/state-versions/1"),
            &app.read_token,
            None,
        )
        .await;

    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.body.as_ref(), old.as_bytes());
    app.api(
        "GET",
        &TestApp::ws_api(WS, "/state-versions/9"),
        &app.read_token,
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn rollback_writes_the_old_content_as_the_next_serial(app: TestApp) {
    for serial in 1..=3 {
        write_ok(&app, &state_with("lin", serial, &format!("m{serial}"))).await;
    }

    let resp = app
        .api(
            "POST",
            &TestApp::ws_api(WS, "/state-versions/1/rollback"),
            &app.admin_token,
            None,
        )
        .await;

    resp.assert_status(StatusCode::CREATED);
    let version = resp.json();
    assert_eq!(version["serial"], 4);
    assert_eq!(version["lineage"], "lin");
    assert_eq!(version["source"], "rollback");
    let restored: Value = serde_json::from_slice(&current(&app).await).unwrap();
    let mut expected: Value = serde_json::from_str(&state_with("lin", 1, "m1")).unwrap();
    expected["serial"] = json!(4);
    assert_eq!(restored, expected);
    assert_eq!(app.versions(WS).await.len(), 4);
    // Terraform carries on from the rolled-back state.
    write_ok(&app, &state_with("lin", 5, "m1")).await;
}

async fn rollback_is_refused_while_the_workspace_is_locked(app: TestApp) {
    write_ok(&app, &state_with("lin", 1, "a")).await;
    write_ok(&app, &state_with("lin", 2, "b")).await;
    app.lock(WS, "busy", &app.write_token).await;

    let resp = app
        .api(
            "POST",
            &TestApp::ws_api(WS, "/state-versions/1/rollback"),
            &app.admin_token,
            None,
        )
        .await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(current(&app).await, state_with("lin", 2, "b").as_bytes());
}

async fn rollback_past_the_largest_serial_or_of_unrewritable_json_is_409(app: TestApp) {
    let rollback = |from: i64| {
        let app = &app;
        async move {
            app.api(
                "POST",
                &TestApp::ws_api(WS, &format!("/state-versions/{from}/rollback")),
                &app.admin_token,
                None,
            )
            .await
        }
    };
    // Version 1 holds a number JSON cannot carry through a rewrite.
    let huge = r#"{"version":4,"serial":1,"lineage":"lin","outputs":{},"resources":[{"n":1e400}]}"#;
    write_ok(&app, huge).await;
    write_ok(&app, &state_with("lin", 2, "two")).await;
    rollback(1).await.assert_status(StatusCode::CONFLICT);
    // No serial comes after the largest one.
    let last = state_with("lin", i64::MAX, "end");
    write_ok(&app, &last).await;
    rollback(i64::MAX).await.assert_status(StatusCode::CONFLICT);

    assert_eq!(current(&app).await, last.as_bytes());
    assert_eq!(app.versions(WS).await.len(), 3);
}

async fn an_admin_upload_bypasses_lineage_and_serial_checks(app: TestApp) {
    write_ok(&app, &state("lineage-a", 9)).await;
    let upload = state("lineage-b", 1);
    let request =
        crate::support::RequestBuilder::new("POST", &TestApp::ws_api(WS, "/state-versions"))
            .bearer(&app.admin_token)
            .body(upload.clone());

    let resp = app.send(request.build()).await;

    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["source"], "upload");
    assert_eq!(resp.json()["lineage"], "lineage-b");
    assert_eq!(current(&app).await, upload.as_bytes());
    // The uploaded lineage is now the workspace's.
    write_ok(&app, &state("lineage-b", 2)).await;
}

async fn concurrent_writers_of_one_serial_commit_exactly_one(app: TestApp) {
    write_ok(&app, &state("lin", 1)).await;
    let bodies: Vec<String> = (0..8)
        .map(|i| state_with("lin", 2, &format!("writer-{i}")))
        .collect();
    let writes = bodies
        .iter()
        .map(|body| app.write_state(WS, body.clone(), None, &app.write_token));

    let responses = futures::future::join_all(writes).await;

    let winners: Vec<&String> = bodies
        .iter()
        .zip(&responses)
        .filter(|(_, r)| r.status == StatusCode::OK)
        .map(|(body, _)| body)
        .collect();
    assert_eq!(winners.len(), 1, "{responses:?}");
    for resp in responses.iter().filter(|r| r.status != StatusCode::OK) {
        resp.assert_status(StatusCode::CONFLICT);
    }
    assert_eq!(current(&app).await, winners[0].as_bytes());
    let versions = app.versions(WS).await;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["sha256"], sha256_hex(winners[0].as_bytes()));
}

async fn the_workspace_listing_shows_serial_versions_and_lock(app: TestApp) {
    for serial in 1..=3 {
        write_ok(&app, &state("lin", serial)).await;
    }
    app.lock(WS, "holder", &app.write_token).await;
    app.lock("empty", "other", &app.write_token).await;

    let path = format!("/api/v1/orgs/{}/workspaces", crate::support::ORG);
    let resp = app.api("GET", &path, &app.read_token, None).await;

    resp.assert_status(StatusCode::OK);
    let list = resp.json();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["empty", WS]);
    let ws = &list["data"][1];
    assert_eq!(ws["serial"], 3);
    assert_eq!(ws["versions"], 3);
    assert_eq!(ws["size"], state("lin", 3).len());
    assert_eq!(ws["lineage_protection"], true);
    assert_eq!(ws["lock"]["ID"], "holder");
    let empty = &list["data"][0];
    assert_eq!(empty["serial"], Value::Null);
    assert_eq!(empty["versions"], 0);
    let one = app
        .api("GET", &TestApp::ws_api(WS, ""), &app.read_token, None)
        .await;
    assert_eq!(one.json(), *ws);
}
