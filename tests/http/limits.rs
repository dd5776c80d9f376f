//! Body caps, malformed input and the shape of errors.

use axum::http::StatusCode;
use base64::Engine;
use bytes::Bytes;
use md5::Digest;
use serde_json::json;

use crate::support::{ORG, RequestBuilder, Resp, TestApp, lock_info, state};

const WS: &str = "prod";
const CAP: usize = 1024;

on_both_databases! {
    max_body_size = CAP as u64;
    a_state_over_the_cap_with_content_length_is_413,
    a_chunked_state_over_the_cap_is_413,
    a_state_exactly_at_the_cap_is_accepted,
    an_api_upload_over_the_cap_is_413,
    a_lock_body_over_its_cap_is_413,
    an_api_json_body_over_its_cap_is_413,
    malformed_json_is_400,
    bad_org_and_workspace_names_are_400,
    a_mismatched_content_md5_is_400_and_nothing_is_stored,
    a_matching_content_md5_is_accepted,
    errors_are_json_with_a_list_of_messages,
    a_method_the_management_api_does_not_serve_is_a_json_405,
}

/// A valid state document of exactly `len` bytes.
fn state_of_len(len: usize) -> String {
    let mut body = state("lin", 1);
    body.pop(); // the final newline
    body.pop(); // the closing brace
    let filler = len - body.len() - ",\"pad\":\"\"}".len();
    body.push_str(&format!(",\"pad\":\"{}\"}}", "x".repeat(filler)));
    assert_eq!(body.len(), len);
    body
}

#[track_caller]
fn assert_json_error(resp: &Resp, status: StatusCode) {
    resp.assert_status(status);
    let content_type = resp.headers.get("content-type");
    assert_eq!(
        content_type.and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{status}: {}",
        resp.text()
    );
    let errors = resp.json()["errors"].as_array().unwrap().clone();
    assert!(!errors.is_empty(), "{status}: empty errors");
    assert!(
        errors
            .iter()
            .all(|e| e.as_str().is_some_and(|s| !s.is_empty())),
        "{errors:?}"
    );
}

async fn nothing_stored(app: &TestApp) {
    app.get_state(WS, &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
}

async fn a_state_over_the_cap_with_content_length_is_413(app: TestApp) {
    let resp = app
        .write_state(WS, state_of_len(CAP + 1), None, &app.write_token)
        .await;

    assert_json_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
    nothing_stored(&app).await;
}

async fn a_chunked_state_over_the_cap_is_413(app: TestApp) {
    let body = Bytes::from(state_of_len(CAP * 3));
    let chunks: Vec<Bytes> = body.chunks(300).map(Bytes::copy_from_slice).collect();
    let request = app
        .state_request("POST", WS, &app.write_token)
        .chunked(chunks);

    let resp = app.send(request.build()).await;

    assert_json_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
    nothing_stored(&app).await;
}

async fn a_state_exactly_at_the_cap_is_accepted(app: TestApp) {
    let body = state_of_len(CAP);
    let chunks = vec![Bytes::from(body.clone())];
    let chunked = app
        .state_request("POST", WS, &app.write_token)
        .chunked(chunks);

    app.send(chunked.build())
        .await
        .assert_status(StatusCode::OK);

    let got = app.get_state(WS, &app.read_token).await;
    assert_eq!(got.body.as_ref(), body.as_bytes());
}

async fn an_api_upload_over_the_cap_is_413(app: TestApp) {
    let request = RequestBuilder::new("POST", &TestApp::ws_api(WS, "/state-versions"))
        .bearer(&app.admin_token)
        .body(state_of_len(CAP + 1));

    let resp = app.send(request.build()).await;

    assert_json_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
    nothing_stored(&app).await;
}

async fn a_lock_body_over_its_cap_is_413(app: TestApp) {
    let huge = format!(r#"{{"ID":"l1","Info":"{}"}}"#, "i".repeat(70 * 1024));

    let resp = app.unlock(WS, huge.clone(), &app.write_token).await;
    assert_json_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
    let lock = app.state_request("LOCK", WS, &app.write_token).body(huge);
    let resp = app.send(lock.build()).await;

    assert_json_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
    app.write_state(WS, state("lin", 1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn an_api_json_body_over_its_cap_is_413(app: TestApp) {
    let name = "n".repeat(2 * 1024 * 1024);
    let resp = app
        .api(
            "POST",
            &format!("/api/v1/orgs/{ORG}/tokens"),
            &app.admin_token,
            Some(json!({ "name": name, "role": "read" })),
        )
        .await;

    assert_json_error(&resp, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn malformed_json_is_400(app: TestApp) {
    for body in [
        "{\"serial\": 1,",
        "[1,2]",
        "",
        "   ",
        "{\"serial\":\"7\"}",
        "{\"serial\":-1}",
    ] {
        let resp = app.write_state(WS, body, None, &app.write_token).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body:?}: {}",
            resp.text()
        );
    }
    for body in ["not json", "{\"ID\":\"\"}", "{\"Who\":\"x\"}"] {
        let lock = app.state_request("LOCK", WS, &app.write_token).body(body);
        let resp = app.send(lock.build()).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body:?}: {}",
            resp.text()
        );
    }
    let tokens = format!("/api/v1/orgs/{ORG}/tokens");
    let bad_api = [
        json!({ "name": "x", "role": "owner" }),
        json!({ "name": "x", "role": "read", "scopes": [] }),
        json!({ "role": "read" }),
    ];
    for body in bad_api {
        let resp = app
            .api("POST", &tokens, &app.admin_token, Some(body.clone()))
            .await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text()
        );
    }
    let broken = RequestBuilder::new("POST", &tokens)
        .bearer(&app.admin_token)
        .header("content-type", "application/json")
        .body("{\"name\":");
    app.send(broken.build())
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    nothing_stored(&app).await;
}

async fn bad_org_and_workspace_names_are_400(app: TestApp) {
    let long = "w".repeat(91);
    let state_paths = [
        format!("/state/{ORG}/-leading-dash"),
        format!("/state/{ORG}/with%20space"),
        format!("/state/{ORG}/a%2Fb"),
        format!("/state/{ORG}/{long}"),
        "/state/ac%21me/prod".to_string(),
        format!("/state/{ORG}/.hidden/lock"),
    ];
    for path in state_paths {
        let resp = app
            .send(
                RequestBuilder::new("GET", &path)
                    .basic(&app.admin_token)
                    .build(),
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            resp.text()
        );
    }
    let api_paths = [
        "/api/v1/orgs/_acme/workspaces".to_string(),
        format!("/api/v1/orgs/{ORG}/workspaces/{long}"),
        format!("/api/v1/orgs/{ORG}/workspaces/%C3%A9t%C3%A9/state-versions"),
    ];
    for path in api_paths {
        let resp = app.api("GET", &path, &app.admin_token, None).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            resp.text()
        );
    }
}

fn md5_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes).as_slice())
}

async fn a_mismatched_content_md5_is_400_and_nothing_is_stored(app: TestApp) {
    let body = state("lin", 1);
    let headers = [
        md5_base64(b"something else"),
        "not base64!".into(),
        "AAAA".into(),
    ];
    for md5 in headers {
        let request = app
            .state_request("POST", WS, &app.write_token)
            .header("content-md5", &md5)
            .body(body.clone());
        let resp = app.send(request.build()).await;
        assert_json_error(&resp, StatusCode::BAD_REQUEST);
    }
    nothing_stored(&app).await;
}

async fn a_matching_content_md5_is_accepted(app: TestApp) {
    let body = state("lin", 1);
    let request = app
        .state_request("POST", WS, &app.write_token)
        .header("content-md5", &md5_base64(body.as_bytes()))
        .body(body.clone());

    app.send(request.build())
        .await
        .assert_status(StatusCode::OK);

    let got = app.get_state(WS, &app.read_token).await;
    assert_eq!(got.body.as_ref(), body.as_bytes());
}

async fn errors_are_json_with_a_list_of_messages(app: TestApp) {
    app.write_state(WS, state("lin", 2), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let cases = [
        (
            StatusCode::BAD_REQUEST,
            app.write_state(WS, "{", None, &app.write_token).await,
        ),
        (
            StatusCode::UNAUTHORIZED,
            app.get_state(WS, "trc_wrong").await,
        ),
        (
            StatusCode::FORBIDDEN,
            app.lock(WS, "l", &app.read_token).await,
        ),
        (
            StatusCode::NOT_FOUND,
            app.get_state("empty", &app.read_token).await,
        ),
        (
            StatusCode::NOT_FOUND,
            app.api("GET", "/api/v1/nothing-here", &app.admin_token, None)
                .await,
        ),
        (
            StatusCode::NOT_FOUND,
            app.get_state(WS, &app.other_token).await,
        ),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            app.send(app.state_request("PATCH", WS, &app.admin_token).build())
                .await,
        ),
        (
            StatusCode::CONFLICT,
            app.write_state(WS, state("lin", 1), None, &app.write_token)
                .await,
        ),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            app.write_state(WS, state_of_len(CAP + 1), None, &app.write_token)
                .await,
        ),
    ];
    for (status, resp) in &cases {
        assert_json_error(resp, *status);
    }
    // A 423 carries the holder's lock info instead, because Terraform parses it.
    app.lock(WS, "holder", &app.write_token).await;
    let locked = app.lock(WS, "other", &app.write_token).await;
    locked.assert_status(StatusCode::LOCKED);
    assert_eq!(locked.body.as_ref(), lock_info("holder").as_bytes());
}

async fn a_method_the_management_api_does_not_serve_is_a_json_405(app: TestApp) {
    let paths = [
        TestApp::ws_api(WS, "/lock"),
        TestApp::ws_api(WS, "/state-versions"),
        format!("/api/v1/orgs/{ORG}/tokens"),
    ];
    for path in paths {
        let request = RequestBuilder::new("PUT", &path).bearer(&app.admin_token);
        let resp = app.send(request.build()).await;
        assert_json_error(&resp, StatusCode::METHOD_NOT_ALLOWED);
    }
}
