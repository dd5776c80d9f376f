//! The `providers.v1` documents Terraform reads, the signed links in them, who may read, and
//! download counts.

use axum::http::StatusCode;
use serde_json::json;

use super::{
    SIGNING_KEY_ID, SIGNING_PUBLIC, TYPE, follow, get, package_name, seed, sums_name, verifies,
};
use crate::support::{ORG, TestApp, sha256_hex};

on_both_databases! {
    versions_list_protocols_and_platforms,
    download_describes_the_package_as_terraform_checks_it,
    download_links_work_without_credentials_and_are_signed,
    reads_need_a_token_of_the_namespace_unless_it_is_public,
    unknown_providers_versions_and_platforms_are_404,
    downloads_are_counted_in_memory_and_flushed_in_batches,
}

fn versions_path() -> String {
    format!("/v1/providers/{ORG}/{TYPE}/versions")
}

fn download_path(version: &str, os: &str, arch: &str) -> String {
    format!("/v1/providers/{ORG}/{TYPE}/{version}/download/{os}/{arch}")
}

async fn versions_list_protocols_and_platforms(app: TestApp) {
    seed(&app, "1.10.0", &["linux_amd64", "darwin_arm64"]).await;
    let release = super::Release::signed("1.2.0", &["linux_amd64"]);
    super::publish(&app, &release)
        .await
        .assert_status(StatusCode::CREATED);

    let resp = get(&app, &versions_path(), Some(&app.read_token)).await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "application/json");
    assert_eq!(
        resp.json(),
        json!({"versions": [
            {"version": "1.2.0", "protocols": ["5.0"], "platforms": [{"os": "linux", "arch": "amd64"}]},
            {"version": "1.10.0", "protocols": ["5.0"], "platforms": [
                {"os": "darwin", "arch": "arm64"}, {"os": "linux", "arch": "amd64"}]},
        ]})
    );
}

async fn download_describes_the_package_as_terraform_checks_it(app: TestApp) {
    let release = seed(&app, "1.0.0", &["linux_amd64"]).await;
    let resp = get(
        &app,
        &download_path("1.0.0", "linux", "amd64"),
        Some(&app.read_token),
    )
    .await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "application/json");
    let body = resp.json();
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "protocols",
            "os",
            "arch",
            "filename",
            "download_url",
            "shasums_url",
            "shasums_signature_url",
            "shasum",
            "signing_keys"
        ]
    );
    assert_eq!(body["protocols"], json!(["5.0"]));
    assert_eq!(body["os"], "linux");
    assert_eq!(body["arch"], "amd64");
    assert_eq!(body["filename"], package_name("1.0.0", "linux_amd64"));
    assert_eq!(body["shasum"], sha256_hex(&release.zips[0].1));
    assert_eq!(
        body["signing_keys"],
        json!({"gpg_public_keys": [{
            "key_id": SIGNING_KEY_ID,
            "ascii_armor": SIGNING_PUBLIC,
            "trust_signature": "",
            "source": "Terrace",
            "source_url": null,
        }]})
    );
    for field in ["download_url", "shasums_url", "shasums_signature_url"] {
        let url = body[field].as_str().unwrap();
        assert!(url.starts_with("http://terrace.test/dl/"), "{field}: {url}");
        assert!(
            url.contains("?expires=") && url.contains("&signature="),
            "{url}"
        );
    }
    assert!(
        body["shasums_url"]
            .as_str()
            .unwrap()
            .contains(&format!("/{}?", sums_name("1.0.0")))
    );
}

async fn download_links_work_without_credentials_and_are_signed(app: TestApp) {
    let release = seed(&app, "1.0.0", &["linux_amd64"]).await;
    let body = get(
        &app,
        &download_path("1.0.0", "linux", "amd64"),
        Some(&app.read_token),
    )
    .await
    .json();
    let zip = follow(&app, body["download_url"].as_str().unwrap()).await;
    zip.assert_status(StatusCode::OK);
    assert_eq!(&zip.body[..], &release.zips[0].1[..]);
    let sums = follow(&app, body["shasums_url"].as_str().unwrap()).await;
    sums.assert_status(StatusCode::OK);
    assert_eq!(&sums.body[..], &release.sums[..]);
    let sig = follow(&app, body["shasums_signature_url"].as_str().unwrap()).await;
    sig.assert_status(StatusCode::OK);
    // What Terraform does with them: the zip's hash is on the SUMS line, the SUMS signature
    // verifies against a listed key.
    let line = format!(
        "{}  {}",
        body["shasum"].as_str().unwrap(),
        body["filename"].as_str().unwrap()
    );
    assert!(
        String::from_utf8_lossy(&sums.body)
            .lines()
            .any(|l| l == line)
    );
    let key = body["signing_keys"]["gpg_public_keys"][0]["ascii_armor"]
        .as_str()
        .unwrap();
    assert!(verifies(key, &sums.body, &sig.body));

    // A tampered link is refused.
    let url = body["download_url"]
        .as_str()
        .unwrap()
        .replace("signature=", "signature=x");
    follow(&app, &url)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn reads_need_a_token_of_the_namespace_unless_it_is_public(app: TestApp) {
    seed(&app, "1.0.0", &["linux_amd64"]).await;
    let download = download_path("1.0.0", "linux", "amd64");
    for path in [versions_path(), download.clone()] {
        get(&app, &path, None)
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
        get(&app, &path, Some("trc_not_a_token"))
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
        get(&app, &path, Some(&app.other_token))
            .await
            .assert_status(StatusCode::NOT_FOUND);
        get(&app, &path, Some(&app.read_token))
            .await
            .assert_status(StatusCode::OK);
    }
    // An unknown namespace looks like a private one.
    get(&app, &format!("/v1/providers/nobody/{TYPE}/versions"), None)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);

    app.api(
        "PATCH",
        &format!("/api/v1/orgs/{ORG}/registry"),
        &app.admin_token,
        Some(json!({"public": true})),
    )
    .await
    .assert_status(StatusCode::OK);
    for path in [versions_path(), download] {
        get(&app, &path, None).await.assert_status(StatusCode::OK);
        get(&app, &path, Some(&app.other_token))
            .await
            .assert_status(StatusCode::OK);
    }
}

async fn unknown_providers_versions_and_platforms_are_404(app: TestApp) {
    seed(&app, "1.0.0", &["linux_amd64"]).await;
    let token = Some(app.read_token.as_str());
    for path in [
        format!("/v1/providers/{ORG}/other/versions"),
        download_path("1.0.1", "linux", "amd64"),
        download_path("1.0.0", "windows", "amd64"),
        download_path("v1.0.0", "linux", "amd64"),
    ] {
        get(&app, &path, token)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}

async fn downloads_are_counted_in_memory_and_flushed_in_batches(app: TestApp) {
    seed(&app, "1.0.0", &["linux_amd64", "darwin_arm64"]).await;
    for _ in 0..3 {
        get(
            &app,
            &download_path("1.0.0", "linux", "amd64"),
            Some(&app.read_token),
        )
        .await
        .assert_status(StatusCode::OK);
    }
    let counts = || async {
        let sql = "SELECT os, downloads FROM provider_packages ORDER BY os";
        match app.db() {
            terrace::infra::db::Db::Sqlite(p) => {
                sqlx::query_as::<_, (String, i64)>(sql).fetch_all(p).await
            }
            terrace::infra::db::Db::Postgres(p) => {
                sqlx::query_as::<_, (String, i64)>(sql).fetch_all(p).await
            }
        }
        .unwrap()
    };
    // Nothing is written on the download path.
    assert_eq!(
        counts().await,
        vec![("darwin".into(), 0), ("linux".into(), 0)]
    );
    terrace::registry::providers::flush_download_counts(&app.state.registry)
        .await
        .unwrap();
    assert_eq!(
        counts().await,
        vec![("darwin".into(), 0), ("linux".into(), 3)]
    );
    terrace::registry::providers::flush_download_counts(&app.state.registry)
        .await
        .unwrap();
    assert_eq!(
        counts().await,
        vec![("darwin".into(), 0), ("linux".into(), 3)]
    );
}
