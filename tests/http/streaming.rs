//! State bodies stream in and out: large states, header keys that come late, and bodies
//! refused part-way, on every storage backend.

use axum::http::StatusCode;
use bytes::Bytes;

use crate::support::{TestApp, sha256_hex};

on_every_backend! {
    a_large_state_streams_in_and_back_out_unchanged,
    serial_and_lineage_that_come_last_are_still_read,
    a_body_that_breaks_off_part_way_leaves_nothing_stored,
    a_state_with_a_bad_serial_far_into_the_body_is_refused,
}

/// A Terraform-shaped state of about `len` bytes, its header keys first or last.
fn big_state(lineage: &str, serial: i64, len: usize, header_last: bool) -> String {
    let resource = r#"{"mode":"managed","type":"null_resource","name":"n","instances":[{"attributes":{"id":"0123456789abcdef"}}]}"#;
    let count = len / (resource.len() + 1) + 1;
    let resources = vec![resource; count].join(",");
    let header = format!(r#""serial":{serial},"lineage":"{lineage}""#);
    if header_last {
        format!(r#"{{"version":4,"outputs":{{}},"resources":[{resources}],{header}}}"#)
    } else {
        format!(
            r#"{{"version":4,"terraform_version":"1.0.3",{header},"outputs":{{}},"resources":[{resources}]}}"#
        )
    }
}

fn chunks(body: &str, size: usize) -> Vec<Bytes> {
    body.as_bytes()
        .chunks(size)
        .map(Bytes::copy_from_slice)
        .collect()
}

async fn a_large_state_streams_in_and_back_out_unchanged(app: TestApp) {
    // Over one part of a remote store (8 MiB), so remote stores take it in parts too.
    let body = big_state("big", 1, 9 << 20, false);
    let request = app
        .state_request("POST", "big", &app.write_token)
        .chunked(chunks(&body, 100_003));
    app.send(request.build())
        .await
        .assert_status(StatusCode::OK);

    let got = app.get_state("big", &app.read_token).await;
    got.assert_status(StatusCode::OK);
    assert_eq!(got.body.len(), body.len());
    assert!(got.body == body.as_bytes(), "the state came back changed");
    let length = got.headers.get("content-length").unwrap().to_str().unwrap();
    assert_eq!(length, body.len().to_string());

    let versions = app.versions("big").await;
    assert_eq!(versions[0]["serial"], 1);
    assert_eq!(versions[0]["size"], body.len() as u64);
    assert_eq!(versions[0]["sha256"], sha256_hex(body.as_bytes()));

    // The next serial is accepted, a lower one refused: the header was read from the stream.
    let next = big_state("big", 2, 2 << 20, false);
    app.write_state("big", next, None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let lower = big_state("big", 1, 2 << 20, false);
    app.write_state("big", lower, None, &app.write_token)
        .await
        .assert_status(StatusCode::CONFLICT);
}

async fn serial_and_lineage_that_come_last_are_still_read(app: TestApp) {
    let body = big_state("late", 7, 3 << 20, true);
    let request = app
        .state_request("POST", "late", &app.write_token)
        .chunked(chunks(&body, 65_536));
    app.send(request.build())
        .await
        .assert_status(StatusCode::OK);

    let versions = app.versions("late").await;
    assert_eq!(versions[0]["serial"], 7);
    assert_eq!(versions[0]["lineage"], "late");
    let foreign = big_state("other", 8, 1 << 10, true);
    app.write_state("late", foreign, None, &app.write_token)
        .await
        .assert_status(StatusCode::CONFLICT);
}

async fn a_body_that_breaks_off_part_way_leaves_nothing_stored(app: TestApp) {
    // Not JSON once it is several parts in: refused only at the end of the body.
    let mut body = big_state("cut", 1, 4 << 20, true);
    body.truncate(body.len() - 100);
    let request = app
        .state_request("POST", "cut", &app.write_token)
        .chunked(chunks(&body, 250_000));
    let resp = app.send(request.build()).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(resp.text().contains("not a valid JSON"), "{}", resp.text());

    app.get_state("cut", &app.read_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
}

async fn a_state_with_a_bad_serial_far_into_the_body_is_refused(app: TestApp) {
    let body = big_state("bad", 1, 3 << 20, true).replace(r#""serial":1"#, r#""serial":"1""#);
    let request = app
        .state_request("POST", "bad", &app.write_token)
        .chunked(chunks(&body, 131_072));
    let resp = app.send(request.build()).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(resp.text().contains("serial"), "{}", resp.text());
    assert!(app.blob_files().is_empty(), "{:?}", app.blob_files());
}
