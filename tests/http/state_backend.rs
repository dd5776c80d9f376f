//! Terraform's http backend protocol, one status code at a time.

use axum::http::StatusCode;

use crate::support::{TestApp, basic_auth, lock_info, raw_http, state};

const WS: &str = "prod";

on_every_backend! {
    a_large_state_is_stored_in_parts_and_read_back_whole,
    reading_a_workspace_without_state_is_404,
    a_written_state_is_returned_byte_for_byte,
    lock_on_a_free_workspace_is_200,
    a_second_lock_with_another_id_is_423_with_the_holders_exact_body,
    locking_again_with_the_holders_id_is_200,
    writing_while_locked_without_an_id_is_423,
    writing_while_locked_with_another_id_is_423,
    writing_while_locked_with_the_holders_id_is_200,
    unlock_with_the_holders_body_releases_the_lock,
    unlock_with_an_empty_body_force_releases_the_lock,
    unlock_with_an_empty_chunked_body_force_releases_the_lock,
    unlock_with_another_id_is_423_and_keeps_the_lock,
    unlock_when_not_locked_is_200,
    the_lock_address_locks_with_post_and_unlocks_with_delete,
    the_lock_address_refuses_a_second_holder_with_423,
    put_is_accepted_as_the_update_method,
    unknown_methods_are_405,
    a_write_under_a_lock_id_that_is_not_held_is_409,
    concurrent_locks_grant_exactly_one_holder,
    states_larger_than_the_json_api_limit_are_stored_whole,
    readyz_checks_every_store_the_backend_uses,
    a_write_whose_client_went_away_is_completed_not_cut_short,
}

async fn a_write_whose_client_went_away_is_completed_not_cut_short(app: TestApp) {
    use tower::ServiceExt;
    let filler = "x".repeat(4 * 1024 * 1024);
    let body = format!(
        r#"{{"version":4,"serial":1,"lineage":"gone","outputs":{{}},"resources":[],"pad":"{filler}"}}"#
    );
    let request = app
        .state_request("POST", "gone", &app.write_token)
        .body(body.clone())
        .build();
    // The client hangs up a moment after sending, long before a 4 MiB write is done.
    let in_flight = app.router.clone().oneshot(request);
    let cut = tokio::time::timeout(std::time::Duration::from_millis(1), in_flight).await;
    assert!(
        cut.is_err(),
        "the write finished before the client went away"
    );

    let start = std::time::Instant::now();
    loop {
        let read = app.get_state("gone", &app.read_token).await;
        if read.status == StatusCode::OK {
            assert!(read.body == body.as_bytes(), "the whole body was recorded");
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the abandoned write was never recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn readyz_checks_every_store_the_backend_uses(app: TestApp) {
    let resp = app
        .send(crate::support::RequestBuilder::new("GET", "/readyz").build())
        .await;
    resp.assert_status(StatusCode::OK);
    let mut expected = serde_json::json!({ "database": "ok", "blob_store": "ok" });
    if app.backend.has_lock_table() {
        expected["locks"] = "ok".into();
    }
    assert_eq!(resp.json(), expected);
}

async fn reading_a_workspace_without_state_is_404(app: TestApp) {
    app.get_state(WS, &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    // A workspace that exists (it was locked) but has no state yet is also "no state".
    app.lock(WS, "l1", &app.write_token).await;
    app.get_state(WS, &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn a_written_state_is_returned_byte_for_byte(app: TestApp) {
    let body = "{\"version\":4,  \"serial\":1,\t\"lineage\":\"l1\",\r\n\"outputs\":{\"html\":{\"value\":\"\\u003cb\\u003e \\\"x\\\"\",\"type\":\"string\"}},\"resources\":[]}   \n\t  ";

    app.write_state(WS, body, None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let got = app.get_state(WS, &app.read_token).await;

    got.assert_status(StatusCode::OK);
    assert_eq!(got.body.as_ref(), body.as_bytes());
    assert_eq!(got.headers["content-type"], "application/json");
}

async fn lock_on_a_free_workspace_is_200(app: TestApp) {
    let resp = app.lock(WS, "l1", &app.write_token).await;

    resp.assert_status(StatusCode::OK);
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "l1");
}

async fn a_second_lock_with_another_id_is_423_with_the_holders_exact_body(app: TestApp) {
    app.lock(WS, "first", &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    let resp = app.lock(WS, "second", &app.admin_token).await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("first").as_bytes());
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "first");
}

async fn locking_again_with_the_holders_id_is_200(app: TestApp) {
    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    app.lock(WS, "l1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "l1");
}

async fn writing_while_locked_without_an_id_is_423(app: TestApp) {
    app.lock(WS, "l1", &app.write_token).await;

    let resp = app
        .write_state(WS, state("lin", 1), None, &app.write_token)
        .await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("l1").as_bytes());
    app.get_state(WS, &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn writing_while_locked_with_another_id_is_423(app: TestApp) {
    app.lock(WS, "l1", &app.write_token).await;

    let resp = app
        .write_state(WS, state("lin", 1), Some("l2"), &app.write_token)
        .await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("l1").as_bytes());
    app.get_state(WS, &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn writing_while_locked_with_the_holders_id_is_200(app: TestApp) {
    app.lock(WS, "l1", &app.write_token).await;

    app.write_state(WS, state("lin", 1), Some("l1"), &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    let got = app.get_state(WS, &app.read_token).await;
    assert_eq!(got.body.as_ref(), state("lin", 1).as_bytes());
}

async fn unlock_with_the_holders_body_releases_the_lock(app: TestApp) {
    app.lock(WS, "l1", &app.write_token).await;

    app.unlock(WS, lock_info("l1"), &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    assert!(app.lock_holder(WS).await.is_none());
    app.lock(WS, "l2", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn unlock_with_an_empty_body_force_releases_the_lock(app: TestApp) {
    app.lock(WS, "l1", &app.write_token).await;

    app.unlock(WS, "", &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    assert!(app.lock_holder(WS).await.is_none());
}

async fn unlock_with_an_empty_chunked_body_force_releases_the_lock(app: TestApp) {
    app.lock(WS, "l1", &app.write_token).await;
    let addr = app.serve().await;
    let request = format!(
        "UNLOCK /state/acme/{WS} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
        basic_auth(&app.write_token)
    );

    let (status, response) = raw_http(addr, request.as_bytes()).await;

    assert_eq!(status, 200, "{response}");
    assert!(app.lock_holder(WS).await.is_none());
}

async fn unlock_with_another_id_is_423_and_keeps_the_lock(app: TestApp) {
    app.lock(WS, "holder", &app.write_token).await;

    let resp = app.unlock(WS, lock_info("stale"), &app.write_token).await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("holder").as_bytes());
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "holder");
}

async fn unlock_when_not_locked_is_200(app: TestApp) {
    // Neither on a workspace that was never seen…
    app.unlock("never-seen", lock_info("l1"), &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    // …nor on one whose lock was already released (a retried UNLOCK).
    app.lock(WS, "l1", &app.write_token).await;
    app.unlock(WS, lock_info("l1"), &app.write_token).await;
    app.unlock(WS, lock_info("l1"), &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    app.unlock(WS, "", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn the_lock_address_locks_with_post_and_unlocks_with_delete(app: TestApp) {
    let lock_path = format!("{WS}/lock");
    let lock = app
        .state_request("POST", &lock_path, &app.write_token)
        .body(lock_info("gl"));
    app.send(lock.build()).await.assert_status(StatusCode::OK);
    assert_eq!(app.lock_holder(WS).await.unwrap()["id"], "gl");

    let unlock = app
        .state_request("DELETE", &lock_path, &app.write_token)
        .body(lock_info("gl"));
    app.send(unlock.build()).await.assert_status(StatusCode::OK);
    assert!(app.lock_holder(WS).await.is_none());
}

async fn the_lock_address_refuses_a_second_holder_with_423(app: TestApp) {
    app.lock(WS, "first", &app.write_token).await;

    let lock = app
        .state_request("POST", &format!("{WS}/lock"), &app.write_token)
        .body(lock_info("second"));
    let resp = app.send(lock.build()).await;

    resp.assert_status(StatusCode::LOCKED);
    assert_eq!(resp.body.as_ref(), lock_info("first").as_bytes());
}

async fn put_is_accepted_as_the_update_method(app: TestApp) {
    let put = app
        .state_request("PUT", WS, &app.write_token)
        .body(state("lin", 1));

    app.send(put.build()).await.assert_status(StatusCode::OK);

    let got = app.get_state(WS, &app.read_token).await;
    assert_eq!(got.body.as_ref(), state("lin", 1).as_bytes());
}

async fn unknown_methods_are_405(app: TestApp) {
    for method in ["PATCH", "PURGE", "OPTIONS"] {
        let request = app.state_request(method, WS, &app.admin_token).build();
        let resp = app.send(request).await;
        assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let request = app
        .state_request("GET", &format!("{WS}/lock"), &app.admin_token)
        .build();
    app.send(request)
        .await
        .assert_status(StatusCode::METHOD_NOT_ALLOWED);
}

async fn a_write_under_a_lock_id_that_is_not_held_is_409(app: TestApp) {
    // The writer's lock was force-released: its view of the state may be stale.
    app.lock(WS, "l1", &app.write_token).await;
    app.unlock(WS, "", &app.admin_token).await;

    let resp = app
        .write_state(WS, state("lin", 1), Some("l1"), &app.write_token)
        .await;

    resp.assert_status(StatusCode::CONFLICT);
    app.get_state(WS, &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn concurrent_locks_grant_exactly_one_holder(app: TestApp) {
    let ids: Vec<String> = (0..8).map(|i| format!("racer-{i}")).collect();
    let attempts = ids.iter().map(|id| app.lock(WS, id, &app.write_token));

    let responses = futures::future::join_all(attempts).await;

    let winners: Vec<&String> = ids
        .iter()
        .zip(&responses)
        .filter(|(_, r)| r.status == StatusCode::OK)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    for resp in responses.iter().filter(|r| r.status != StatusCode::OK) {
        resp.assert_status(StatusCode::LOCKED);
        assert_eq!(resp.body.as_ref(), lock_info(winners[0]).as_bytes());
    }
    assert_eq!(
        app.lock_holder(WS).await.unwrap()["id"],
        winners[0].as_str()
    );
}

/// Real states often exceed the management API's 1 MiB JSON cap; only the state cap applies.
async fn states_larger_than_the_json_api_limit_are_stored_whole(app: TestApp) {
    let big = |serial: i64| {
        let pad = "0123456789abcdef".repeat(3 * 1024 * 1024 / 16);
        format!("{{\"version\":4,\"serial\":{serial},\"lineage\":\"lin\",\"pad\":\"{pad}\"}}")
    };
    app.write_state(WS, big(1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(
        app.get_state(WS, &app.read_token).await.body,
        big(1).as_bytes()
    );

    let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(big(2))
        .chunks(64 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let chunked = app
        .state_request("POST", WS, &app.write_token)
        .chunked(chunks);
    app.send(chunked.build())
        .await
        .assert_status(StatusCode::OK);

    assert_eq!(
        app.get_state(WS, &app.read_token).await.body,
        big(2).as_bytes()
    );
}

/// Larger than a part of a multipart upload (8 MiB) on the cloud stores.
async fn a_large_state_is_stored_in_parts_and_read_back_whole(app: TestApp) {
    let filler = "x".repeat(12 * 1024 * 1024);
    let body = format!(
        r#"{{"version":4,"serial":1,"lineage":"big","outputs":{{}},"resources":[],"pad":"{filler}"}}"#
    );
    app.write_state("big", body.clone(), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let read = app.get_state("big", &app.read_token).await;
    read.assert_status(StatusCode::OK);
    assert_eq!(read.body.len(), body.len());
    assert!(
        read.body == body.as_bytes(),
        "the bytes come back unchanged"
    );
}
