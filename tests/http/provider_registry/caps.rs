//! Size caps on release files: a package over the body cap is 413 and leaves nothing behind;
//! packages over the 1 MiB JSON body limit are still accepted up to the cap.

use axum::http::StatusCode;

use super::{Part, TYPE, add_key, package_name, publish_parts, sign, sums_name, zip_with};
use crate::support::{TestApp, sha256_hex};

const CAP: u64 = 4 * 1024 * 1024;

on_both_databases! {
    max_body_size = CAP;
    a_package_over_the_cap_is_413_and_nothing_is_stored,
    a_package_larger_than_the_json_limit_is_accepted,
}

/// Bytes that do not compress, so the zip is about as large as `len`.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn release_parts(zip: Vec<u8>) -> Vec<Part> {
    let name = package_name("1.0.0", "linux_amd64");
    let sums = format!("{}  {name}\n", sha256_hex(&zip)).into_bytes();
    vec![
        Part::file(&name, zip),
        Part::file(&sums_name("1.0.0"), sums.clone()),
        Part::file(
            &format!("{}.sig", sums_name("1.0.0")),
            sign(super::SIGNING_SECRET, &sums),
        ),
    ]
}

fn package_of(len: usize) -> Vec<u8> {
    let exe = format!("terraform-provider-{TYPE}_v1.0.0");
    zip_with(&[(&exe, &noise(len))])
}

async fn a_package_over_the_cap_is_413_and_nothing_is_stored(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let before = app.blob_files();
    let parts = release_parts(package_of(CAP as usize + 1024));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    resp.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.blob_files(), before);
}

async fn a_package_larger_than_the_json_limit_is_accepted(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let parts = release_parts(package_of(2 * 1024 * 1024));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    resp.assert_status(StatusCode::CREATED);
}
