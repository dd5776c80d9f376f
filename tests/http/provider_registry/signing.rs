//! Server-side signing: with the namespace setting on, Terrace signs SHA256SUMS with a key it
//! generates on first use, and lists that key like any other.

use axum::http::StatusCode;
use serde_json::json;

use super::{Release, SIGNING_SECRET, TYPE, follow, get, publish, sign, verifies};
use crate::support::{ORG, TestApp};

on_both_databases! {
    terrace_signs_releases_when_the_namespace_lets_it,
}

async fn enable(app: &TestApp) {
    let resp = app
        .api(
            "PATCH",
            &format!("/api/v1/orgs/{ORG}/registry"),
            &app.admin_token,
            Some(json!({ "server_signing": true })),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["server_signing"], true);
}

// One scenario, so that the (slow in debug builds) RSA key generation happens once per
// database.
async fn terrace_signs_releases_when_the_namespace_lets_it(app: TestApp) {
    enable(&app).await;
    let release = Release::unsigned("1.0.0", &["linux_amd64"]);
    let resp = publish(&app, &release).await;
    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    assert_eq!(body["server_signed"], true);
    let key_id = body["signed_by"].as_str().unwrap().to_string();
    assert_eq!(key_id.len(), 16);

    // The generated key is registered as one of the namespace's keys.
    let keys = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/gpg-keys"),
            &app.read_token,
            None,
        )
        .await
        .json();
    assert_eq!(keys["data"][0]["key_id"], key_id.as_str());
    assert_eq!(keys["data"][0]["source"], "terrace");

    // Terraform's view: the listed key verifies the served SHA256SUMS.
    let path = format!("/v1/providers/{ORG}/{TYPE}/1.0.0/download/linux/amd64");
    let download = get(&app, &path, Some(&app.read_token)).await.json();
    let listed = &download["signing_keys"]["gpg_public_keys"];
    assert_eq!(listed[0]["key_id"], key_id.as_str());
    let armor = listed[0]["ascii_armor"].as_str().unwrap();
    let sums = follow(&app, download["shasums_url"].as_str().unwrap())
        .await
        .body;
    let sig = follow(&app, download["shasums_signature_url"].as_str().unwrap())
        .await
        .body;
    assert_eq!(&sums[..], &release.sums[..]);
    assert!(verifies(armor, &sums, &sig));

    // A user-signed SHA256SUMS Terraform cannot read is rewritten and signed by Terrace; the
    // same key is used again.
    super::add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let base = Release::unsigned("1.1.0", &["linux_amd64"]);
    let starred = String::from_utf8(base.sums.clone())
        .unwrap()
        .replace("  ", " *");
    let mut release = base.with_sums(starred.clone().into_bytes());
    release.sig = Some(sign(SIGNING_SECRET, starred.as_bytes()));
    let resp = publish(&app, &release).await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["server_signed"], true);
    assert_eq!(resp.json()["signed_by"], key_id.as_str());
    let path = format!("/v1/providers/{ORG}/{TYPE}/1.1.0/download/linux/amd64");
    let download = get(&app, &path, Some(&app.read_token)).await.json();
    let sums = follow(&app, download["shasums_url"].as_str().unwrap())
        .await
        .body;
    assert!(!sums.contains(&b'*'));
    assert_eq!(String::from_utf8_lossy(&sums), starred.replace(" *", "  "));

    // Deleting the generated key revokes it; the next release gets a fresh key.
    let delete = format!("/api/v1/orgs/{ORG}/gpg-keys/{key_id}");
    app.api("DELETE", &delete, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let resp = publish(&app, &Release::unsigned("1.2.0", &["linux_amd64"])).await;
    resp.assert_status(StatusCode::CREATED);
    assert_ne!(resp.json()["signed_by"], key_id.as_str());
}
