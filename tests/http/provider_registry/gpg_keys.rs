//! `/api/v1/orgs/{org}/gpg-keys`: RSA keys only, admins manage, members list.

use axum::http::StatusCode;
use serde_json::json;

use super::{
    ECDSA_PUBLIC, ED25519_PUBLIC, SIGNING_KEY_ID, SIGNING_PUBLIC, SUBKEY_PRIMARY_ID, SUBKEY_PUBLIC,
    add_key, assert_refused,
};
use crate::support::{ORG, TestApp};

on_both_databases! {
    an_rsa_key_is_registered_with_its_upper_case_key_id,
    eddsa_and_ecdsa_keys_are_refused_because_old_terraform_cannot_read_them,
    malformed_and_duplicate_keys_are_refused,
    only_admins_manage_keys_and_members_list_them,
    a_deleted_key_is_gone,
}

fn keys_path() -> String {
    format!("/api/v1/orgs/{ORG}/gpg-keys")
}

async fn an_rsa_key_is_registered_with_its_upper_case_key_id(app: TestApp) {
    let resp = add_key(&app, SIGNING_PUBLIC).await;
    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    assert_eq!(body["key_id"], SIGNING_KEY_ID);
    assert_eq!(
        body["fingerprint"],
        "5250D6BC61DF909D2592630D7DA601D596859CFD"
    );
    assert_eq!(body["source"], "uploaded");
    assert!(
        body["ascii_armor"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );

    // A certify-only primary with a signing subkey is identified by its primary key ID.
    let resp = add_key(&app, SUBKEY_PUBLIC).await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["key_id"], SUBKEY_PRIMARY_ID);

    let list = app.api("GET", &keys_path(), &app.read_token, None).await;
    list.assert_status(StatusCode::OK);
    let ids: Vec<_> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap().to_string())
        .collect();
    // Listed by key ID.
    assert_eq!(
        ids,
        vec![SUBKEY_PRIMARY_ID.to_string(), SIGNING_KEY_ID.to_string()]
    );
    assert_eq!(list.json()["meta"]["next_offset"], serde_json::Value::Null);
}

async fn eddsa_and_ecdsa_keys_are_refused_because_old_terraform_cannot_read_them(app: TestApp) {
    let resp = add_key(&app, ED25519_PUBLIC).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "EdDSA");
    assert_refused(&resp, StatusCode::BAD_REQUEST, "Terraform before 1.6");
    let resp = add_key(&app, ECDSA_PUBLIC).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "ECDSA");
    let list = app.api("GET", &keys_path(), &app.admin_token, None).await;
    assert_eq!(list.json()["data"], json!([]));
}

async fn malformed_and_duplicate_keys_are_refused(app: TestApp) {
    let resp = add_key(&app, "hello").await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "ASCII-armored public key");
    let broken = SIGNING_PUBLIC.replace('A', "B");
    let resp = add_key(&app, &broken).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    let resp = app
        .api(
            "POST",
            &keys_path(),
            &app.admin_token,
            Some(json!({ "armor": SIGNING_PUBLIC })),
        )
        .await;
    resp.assert_status(StatusCode::BAD_REQUEST);

    add_key(&app, SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let again = add_key(&app, SIGNING_PUBLIC).await;
    assert_refused(&again, StatusCode::CONFLICT, "already registered");
}

async fn only_admins_manage_keys_and_members_list_them(app: TestApp) {
    let body = Some(json!({ "ascii_armor": SIGNING_PUBLIC }));
    let path = keys_path();
    let write = app.api("POST", &path, &app.write_token, body.clone()).await;
    write.assert_status(StatusCode::FORBIDDEN);
    let other = app.api("POST", &path, &app.other_token, body.clone()).await;
    other.assert_status(StatusCode::NOT_FOUND);
    let anonymous = crate::support::RequestBuilder::new("GET", &path).build();
    app.send(anonymous)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    app.api("GET", &path, &app.other_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    add_key(&app, SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let delete_path = format!("{path}/{SIGNING_KEY_ID}");
    app.api("DELETE", &delete_path, &app.write_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);
}

async fn a_deleted_key_is_gone(app: TestApp) {
    add_key(&app, SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    // Key IDs are matched case-insensitively.
    let path = format!("{}/{}", keys_path(), SIGNING_KEY_ID.to_lowercase());
    app.api("DELETE", &path, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.api("DELETE", &path, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let list = app.api("GET", &keys_path(), &app.admin_token, None).await;
    assert_eq!(list.json()["data"], json!([]));
}
