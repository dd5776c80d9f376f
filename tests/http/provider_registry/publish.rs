//! Publishing: what is accepted, and every refusal with the message that explains it.

use axum::http::StatusCode;

use super::{
    Part, Release, SIGNING_KEY_ID, SIGNING_SECRET, STRANGER_SECRET, SUBKEY_PRIMARY_ID,
    SUBKEY_PUBLIC, SUBKEY_SECRET, TYPE, add_key, assert_refused, package_name, package_zip,
    publish, publish_parts, secret_key, sign, sign_with, sums_name, zip_with,
};
use crate::support::{ORG, TestApp, sha256_hex};

on_both_databases! {
    a_signed_release_is_published,
    a_release_signed_by_a_subkey_is_published,
    protocols_come_from_the_field_or_the_goreleaser_manifest,
    an_existing_version_is_409,
    a_signature_by_an_unregistered_key_is_refused,
    an_armored_or_mismatched_signature_is_refused,
    a_release_without_a_signature_is_refused_unless_terrace_signs,
    zips_and_sums_must_match_exactly,
    sums_terraform_cannot_read_are_refused,
    unsafe_or_useless_zips_are_refused,
    badly_named_files_and_versions_are_refused,
    only_writers_of_the_namespace_publish,
    a_refused_release_leaves_no_blobs_behind,
}

async fn a_signed_release_is_published(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let release = Release::signed("1.0.0", &["linux_amd64", "darwin_arm64"]);
    let resp = publish(&app, &release).await;
    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    assert_eq!(body["namespace"], ORG);
    assert_eq!(body["type"], TYPE);
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["protocols"], serde_json::json!(["5.0"]));
    assert_eq!(body["signed_by"], SIGNING_KEY_ID);
    assert_eq!(body["server_signed"], false);
    let platforms = body["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    assert_eq!(platforms[0]["os"], "darwin");
    assert_eq!(
        platforms[1]["filename"],
        package_name("1.0.0", "linux_amd64")
    );
    assert_eq!(platforms[1]["shasum"], sha256_hex(&release.zips[0].1));
}

async fn a_release_signed_by_a_subkey_is_published(app: TestApp) {
    add_key(&app, SUBKEY_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let mut release = Release::unsigned("1.0.0", &["linux_amd64"]);
    let secret = secret_key(SUBKEY_SECRET);
    release.sig = Some(sign_with(&secret.secret_subkeys[0].key, &release.sums));
    let resp = publish(&app, &release).await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["signed_by"], SUBKEY_PRIMARY_ID);

    // The primary key may only certify, so Terraform would refuse its signature.
    let mut release = Release::unsigned("1.0.1", &["linux_amd64"]);
    release.sig = Some(sign_with(&secret.primary_key, &release.sums));
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "not allowed to sign",
    );
}

async fn protocols_come_from_the_field_or_the_goreleaser_manifest(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let mut release = Release::signed("1.0.0", &["linux_amd64"]);
    release.protocols = Some("6.0".into());
    let resp = publish(&app, &release).await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["protocols"], serde_json::json!(["6.0"]));

    // goreleaser lists the manifest in SHA256SUMS; it must then be uploaded too.
    let manifest = br#"{"version":1,"metadata":{"protocol_versions":["5.0","6.0"]}}"#.to_vec();
    let manifest_name = format!("terraform-provider-{TYPE}_1.1.0_manifest.json");
    let unsigned = Release::unsigned("1.1.0", &["linux_amd64"]);
    let mut sums = String::from_utf8(unsigned.sums.clone()).unwrap();
    sums.push_str(&format!("{}  {manifest_name}\n", sha256_hex(&manifest)));
    let release = unsigned.with_sums(sums.into_bytes());
    let mut parts = release.parts();
    let resp = publish_parts(&app, "1.1.0", &parts, &app.write_token).await;
    assert_refused(
        &resp,
        StatusCode::BAD_REQUEST,
        "manifest.json, which was not uploaded",
    );
    parts.push(Part::file(&manifest_name, manifest));
    let resp = publish_parts(&app, "1.1.0", &parts, &app.write_token).await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["protocols"], serde_json::json!(["5.0", "6.0"]));

    let mut bad = Release::signed("1.2.0", &["linux_amd64"]);
    bad.protocols = Some("five".into());
    assert_refused(
        &publish(&app, &bad).await,
        StatusCode::BAD_REQUEST,
        "protocol version",
    );
}

async fn an_existing_version_is_409(app: TestApp) {
    let release = super::seed(&app, "1.0.0", &["linux_amd64"]).await;
    let resp = publish(&app, &release).await;
    assert_refused(&resp, StatusCode::CONFLICT, "already exists");
}

async fn a_signature_by_an_unregistered_key_is_refused(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let mut release = Release::unsigned("1.0.0", &["linux_amd64"]);
    release.sig = Some(sign(STRANGER_SECRET, &release.sums));
    let resp = publish(&app, &release).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "403FF5D0EE9167BA");
    assert_refused(&resp, StatusCode::BAD_REQUEST, "not registered");
}

async fn an_armored_or_mismatched_signature_is_refused(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let mut release = Release::signed("1.0.0", &["linux_amd64"]);
    let sig = release.sig.clone().unwrap();
    use pgp::composed::Deserializable;
    let armored = pgp::composed::DetachedSignature::from_bytes(std::io::Cursor::new(&sig[..]))
        .unwrap()
        .to_armored_string(Default::default())
        .unwrap();
    release.sig = Some(armored.into_bytes());
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "ASCII-armored",
    );

    release.sig = Some(sign(SIGNING_SECRET, b"some other document"));
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "does not match",
    );

    release.sig = Some(b"\x88garbage".to_vec());
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "not an OpenPGP",
    );

    let mut parts = release.parts();
    let asc = format!("{}.asc", sums_name("1.0.0"));
    parts.push(Part::file(&asc, b"x".to_vec()));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "binary detached signature");
}

async fn a_release_without_a_signature_is_refused_unless_terrace_signs(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let release = Release::unsigned("1.0.0", &["linux_amd64"]);
    let resp = publish(&app, &release).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "server_signing");

    let mut parts = release.parts();
    parts.retain(|p| p.filename.as_deref() != Some(&sums_name("1.0.0")));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    assert_refused(
        &resp,
        StatusCode::BAD_REQUEST,
        "has no terraform-provider-dummy_1.0.0_SHA256SUMS",
    );

    let only_sums = vec![Part::file(&sums_name("1.0.0"), release.sums.clone())];
    let resp = publish_parts(&app, "1.0.0", &only_sums, &app.write_token).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "no package zips");
}

async fn zips_and_sums_must_match_exactly(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    // A zip that differs from its line.
    let mut release = Release::signed("1.0.0", &["linux_amd64"]);
    release.zips[0].1 = package_zip(TYPE, "1.0.0", "linux", "arm64");
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "does not match SHA256SUMS",
    );

    // A line whose file was not uploaded.
    let mut release = Release::signed("1.0.0", &["linux_amd64", "darwin_amd64"]);
    release.zips.pop();
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "which was not uploaded",
    );

    // A zip without a line.
    let extra = Release::unsigned("1.0.0", &["windows_amd64"]);
    let mut release = Release::signed("1.0.0", &["linux_amd64"]);
    release.zips.push(extra.zips[0].clone());
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "has no line for",
    );

    // The same file twice.
    let release = Release::signed("1.0.0", &["linux_amd64"]);
    let mut parts = release.parts();
    parts.push(Part::file(&release.zips[0].0, release.zips[0].1.clone()));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "uploaded twice");
}

async fn sums_terraform_cannot_read_are_refused(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let base = Release::unsigned("1.0.0", &["linux_amd64", "darwin_amd64"]);
    let text = String::from_utf8(base.sums.clone()).unwrap();

    let blank = text.replacen('\n', "\n\n", 1);
    let release =
        Release::unsigned("1.0.0", &["linux_amd64", "darwin_amd64"]).with_sums(blank.into_bytes());
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "blank",
    );

    let star = text.replacen("  terraform", " *terraform", 1);
    let release =
        Release::unsigned("1.0.0", &["linux_amd64", "darwin_amd64"]).with_sums(star.into_bytes());
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "'*'",
    );

    let release =
        Release::unsigned("1.0.0", &["linux_amd64"]).with_sums(b"not a sums file\n".to_vec());
    assert_refused(
        &publish(&app, &release).await,
        StatusCode::BAD_REQUEST,
        "SHA256SUMS line 1",
    );
}

async fn unsafe_or_useless_zips_are_refused(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let exe = format!("terraform-provider-{TYPE}_v1.0.0");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (zip_with(&[("README.md", b"hello")]), "no executable"),
        (zip_with(&[(&exe, b"x"), ("../evil", b"x")]), "'..'"),
        (
            zip_with(&[(&exe, b"x"), ("/etc/cron.d/x", b"x")]),
            "absolute path",
        ),
        (
            b"PK\x03\x04 not really a zip".to_vec(),
            "not a readable zip",
        ),
    ];
    for (zip, needle) in cases {
        let name = package_name("1.0.0", "linux_amd64");
        let sums = format!("{}  {name}\n", sha256_hex(&zip)).into_bytes();
        let parts = vec![
            Part::file(&name, zip),
            Part::file(
                &format!("{}.sig", sums_name("1.0.0")),
                sign(SIGNING_SECRET, &sums),
            ),
            Part::file(&sums_name("1.0.0"), sums),
        ];
        let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
        assert_refused(&resp, StatusCode::BAD_REQUEST, needle);
    }
}

async fn badly_named_files_and_versions_are_refused(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let release = Release::signed("1.0.0", &["linux_amd64"]);
    for version in ["v1.0.0", "1.0", "latest"] {
        let resp = publish_parts(&app, version, &release.parts(), &app.write_token).await;
        assert_refused(&resp, StatusCode::BAD_REQUEST, "version");
    }
    // Files of another version, or not part of a release at all.
    let resp = publish_parts(&app, "1.0.1", &release.parts(), &app.write_token).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "unexpected file");
    let mut parts = release.parts();
    parts.push(Part::file("notes.txt", b"x".to_vec()));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "unexpected file");
    let mut parts = release.parts();
    parts.push(Part::field("colour", "blue"));
    let resp = publish_parts(&app, "1.0.0", &parts, &app.write_token).await;
    assert_refused(&resp, StatusCode::BAD_REQUEST, "unexpected form field");

    let not_multipart = app
        .api(
            "POST",
            &format!("/api/v1/providers/{ORG}/{TYPE}/1.0.0"),
            &app.write_token,
            Some(serde_json::json!({})),
        )
        .await;
    assert_refused(
        &not_multipart,
        StatusCode::BAD_REQUEST,
        "multipart/form-data",
    );
}

async fn only_writers_of_the_namespace_publish(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let release = Release::signed("1.0.0", &["linux_amd64"]);
    let parts = release.parts();
    publish_parts(&app, "1.0.0", &parts, &app.read_token)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    publish_parts(&app, "1.0.0", &parts, &app.other_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let anonymous = crate::support::RequestBuilder::new(
        "POST",
        &format!("/api/v1/providers/{ORG}/{TYPE}/1.0.0"),
    )
    .header(
        "content-type",
        &format!("multipart/form-data; boundary={}", super::BOUNDARY),
    )
    .body(super::multipart_body(&parts))
    .build();
    app.send(anonymous)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    publish_parts(&app, "1.0.0", &parts, &app.admin_token)
        .await
        .assert_status(StatusCode::CREATED);
}

async fn a_refused_release_leaves_no_blobs_behind(app: TestApp) {
    add_key(&app, super::SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let before = app.blob_files();
    // The zips are stored as they arrive; the bad signature is only found at the end.
    let mut release = Release::signed("1.0.0", &["linux_amd64", "darwin_amd64"]);
    release.sig = Some(sign(STRANGER_SECRET, &release.sums));
    publish(&app, &release)
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(app.blob_files(), before);
}
