//! The provider network mirror: uploads for other registries, hosted providers under this
//! server's own hostname, and who may read or upload.

use axum::http::StatusCode;
use serde_json::json;

use super::{TYPE, follow, get, package_zip, seed};
use crate::support::{ORG, RequestBuilder, Resp, TestApp, sha256_hex};

on_both_databases! {
    an_uploaded_archive_is_served_with_h1_and_zh_hashes,
    uploads_are_idempotent_and_never_replace_different_bytes,
    only_the_mirror_orgs_admins_upload_and_any_token_reads,
    hosted_providers_are_mirrored_under_the_servers_own_host,
    unknown_mirror_documents_are_404,
}

const NULL: &str = "/api/v1/mirror/registry.terraform.io/hashicorp/null";

pub(crate) async fn upload(app: &TestApp, tail: &str, zip: Vec<u8>, token: Option<&str>) -> Resp {
    let mut request = RequestBuilder::new("PUT", &format!("{NULL}/{tail}")).body(zip);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    app.send(request.build()).await
}

pub(crate) fn null_zip(version: &str, os: &str, arch: &str) -> Vec<u8> {
    package_zip("null", version, os, arch)
}

async fn an_uploaded_archive_is_served_with_h1_and_zh_hashes(app: TestApp) {
    let zip = null_zip("3.1.0", "linux", "amd64");
    let resp = upload(
        &app,
        "3.1.0/linux_amd64",
        zip.clone(),
        Some(&app.admin_token),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    assert_eq!(
        body["filename"],
        "terraform-provider-null_3.1.0_linux_amd64.zip"
    );
    let h1 = body["hashes"][0].as_str().unwrap().to_string();
    assert!(h1.starts_with("h1:") && h1.ends_with('='), "{h1}");
    assert_eq!(body["hashes"][1], format!("zh:{}", sha256_hex(&zip)));
    upload(
        &app,
        "3.2.0/linux_amd64",
        null_zip("3.2.0", "linux", "amd64"),
        Some(&app.admin_token),
    )
    .await
    .assert_status(StatusCode::CREATED);
    upload(
        &app,
        "3.2.0/darwin_arm64",
        null_zip("3.2.0", "darwin", "arm64"),
        Some(&app.admin_token),
    )
    .await
    .assert_status(StatusCode::CREATED);

    let base = "/v1/mirror/registry.terraform.io/hashicorp/null";
    let index = get(&app, &format!("{base}/index.json"), Some(&app.read_token)).await;
    index.assert_status(StatusCode::OK);
    assert_eq!(index.headers["content-type"], "application/json");
    assert_eq!(
        index.json(),
        json!({"versions": {"3.1.0": {}, "3.2.0": {}}})
    );

    let doc = get(&app, &format!("{base}/3.1.0.json"), Some(&app.read_token)).await;
    doc.assert_status(StatusCode::OK);
    assert_eq!(doc.headers["content-type"], "application/json");
    let doc = doc.json();
    let archives = doc["archives"].as_object().unwrap();
    assert_eq!(archives.keys().collect::<Vec<_>>(), ["linux_amd64"]);
    let archive = &archives["linux_amd64"];
    assert_eq!(
        archive["hashes"],
        json!([h1, format!("zh:{}", sha256_hex(&zip))])
    );
    let url = archive["url"].as_str().unwrap();
    assert!(url.ends_with(&format!(
        "/terraform-provider-null_3.1.0_linux_amd64.zip?{}",
        url.split_once('?').unwrap().1
    )));
    let download = follow(&app, url).await;
    download.assert_status(StatusCode::OK);
    assert_eq!(&download.body[..], &zip[..]);

    let doc = get(&app, &format!("{base}/3.2.0.json"), Some(&app.read_token))
        .await
        .json();
    let keys: Vec<_> = doc["archives"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["darwin_arm64", "linux_amd64"]);
}

async fn uploads_are_idempotent_and_never_replace_different_bytes(app: TestApp) {
    let zip = null_zip("3.1.0", "linux", "amd64");
    let admin = Some(app.admin_token.as_str());
    upload(&app, "3.1.0/linux_amd64", zip.clone(), admin)
        .await
        .assert_status(StatusCode::CREATED);
    let again = upload(&app, "3.1.0/linux_amd64", zip, admin).await;
    again.assert_status(StatusCode::OK);
    assert_eq!(again.json()["created"], false);
    let other = upload(
        &app,
        "3.1.0/linux_amd64",
        null_zip("3.1.0", "linux", "arm64"),
        admin,
    )
    .await;
    other.assert_status(StatusCode::CONFLICT);

    // The archive must be a provider package of that type, at a valid address.
    let resp = upload(
        &app,
        "3.1.0/linux_arm64",
        package_zip("other", "3.1.0", "linux", "arm64"),
        admin,
    )
    .await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    upload(
        &app,
        "v3.1.0/linux_arm64",
        null_zip("3.1.0", "linux", "arm64"),
        admin,
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    upload(
        &app,
        "3.1.0/linux-arm64",
        null_zip("3.1.0", "linux", "arm64"),
        admin,
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    upload(&app, "3.1.0/linux_arm64", b"not a zip".to_vec(), admin)
        .await
        .assert_status(StatusCode::BAD_REQUEST);
}

async fn only_the_mirror_orgs_admins_upload_and_any_token_reads(app: TestApp) {
    let zip = null_zip("3.1.0", "linux", "amd64");
    upload(&app, "3.1.0/linux_amd64", zip.clone(), None)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    upload(
        &app,
        "3.1.0/linux_amd64",
        zip.clone(),
        Some(&app.write_token),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    // Every org installs what the mirror serves: only the mirror org's admins fill it.
    upload(
        &app,
        "3.1.0/linux_amd64",
        zip.clone(),
        Some(&app.other_token),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    upload(&app, "3.1.0/linux_amd64", zip, Some(&app.admin_token))
        .await
        .assert_status(StatusCode::CREATED);

    let index = "/v1/mirror/registry.terraform.io/hashicorp/null/index.json";
    get(&app, index, None)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    get(&app, index, Some(&app.read_token))
        .await
        .assert_status(StatusCode::OK);
    get(&app, index, Some(&app.other_token))
        .await
        .assert_status(StatusCode::OK);
}

async fn hosted_providers_are_mirrored_under_the_servers_own_host(app: TestApp) {
    let release = seed(&app, "1.0.0", &["linux_amd64"]).await;
    let base = format!("/v1/mirror/terrace.test/{ORG}/{TYPE}");
    let index = get(&app, &format!("{base}/index.json"), Some(&app.read_token)).await;
    index.assert_status(StatusCode::OK);
    assert_eq!(index.json(), json!({"versions": {"1.0.0": {}}}));
    let doc = get(&app, &format!("{base}/1.0.0.json"), Some(&app.read_token))
        .await
        .json();
    let archive = &doc["archives"]["linux_amd64"];
    let hashes = archive["hashes"].as_array().unwrap();
    assert!(hashes[0].as_str().unwrap().starts_with("h1:"));
    assert_eq!(hashes[1], format!("zh:{}", sha256_hex(&release.zips[0].1)));
    let zip = follow(&app, archive["url"].as_str().unwrap()).await;
    assert_eq!(&zip.body[..], &release.zips[0].1[..]);

    // The namespace's own read rules apply.
    get(&app, &format!("{base}/index.json"), None)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    get(&app, &format!("{base}/index.json"), Some(&app.other_token))
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn unknown_mirror_documents_are_404(app: TestApp) {
    let token = Some(app.read_token.as_str());
    for path in [
        "/v1/mirror/registry.terraform.io/hashicorp/null/index.json",
        "/v1/mirror/registry.terraform.io/hashicorp/null/3.1.0.json",
        "/v1/mirror/registry.terraform.io/hashicorp/null/nonsense",
        "/v1/mirror/bad%20host/hashicorp/null/index.json",
    ] {
        get(&app, path, token)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}
