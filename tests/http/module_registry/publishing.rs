//! Publishing and deleting module versions, and every refusal on the way in.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{get, module_archive, publish, publish_as, raw_targz, targz, versions};
use crate::support::{ORG, RequestBuilder, TestApp};

on_both_databases! {
    publishing_answers_201_with_the_module_and_its_extracted_metadata,
    an_existing_version_is_409_even_when_spelled_with_a_v,
    versions_and_names_that_terraform_cannot_address_are_400,
    unsafe_or_malformed_archives_are_400_and_store_nothing,
    archives_over_the_cap_are_413,
    publishing_needs_write_and_deleting_needs_admin,
    deleting_versions_moves_latest_and_removes_empty_modules,
    concurrent_publishes_of_one_version_store_exactly_one,
}

async fn publishing_answers_201_with_the_module_and_its_extracted_metadata(app: TestApp) {
    let archive = module_archive("1.0.0");

    let resp = publish_as(
        &app,
        &format!("{ORG}/vpc/aws/v1.0.0"),
        archive.clone(),
        Some(&app.write_token),
    )
    .await;

    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    assert_eq!(body["id"], "acme/vpc/aws/1.0.0");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["provider"], "aws");
    assert_eq!(body["size"], archive.len());
    assert_eq!(body["sha256"], crate::support::sha256_hex(&archive));
    assert_eq!(body["description"], "A network for everything acme runs.");
    assert_eq!(
        body["root"]["inputs"],
        json!([
            {"name": "cidr", "type": "string", "description": "The VPC's CIDR block.", "default": "\"10.0.0.0/16\"", "required": false},
            {"name": "name", "type": "string", "description": "", "default": "", "required": true},
        ])
    );
    assert_eq!(
        body["root"]["outputs"][0],
        json!({"name": "vpc_id", "description": "The VPC."})
    );
    assert_eq!(body["submodules"][0]["path"], "modules/subnets");
    assert_eq!(body["submodules"][0]["inputs"][0]["name"], "count");
    // Only the encrypted archive reaches the blob store.
    let files = app.blob_files();
    assert_eq!(files.len(), 1);
    let stored = std::fs::read(&files[0]).unwrap();
    assert!(!crate::support::contains(&stored, b"vpc_id"));
}

async fn an_existing_version_is_409_even_when_spelled_with_a_v(app: TestApp) {
    publish(&app, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);

    let again = publish(&app, "vpc/aws", "1.0.0").await;
    let with_v = publish(&app, "vpc/aws", "v1.0.0").await;

    again.assert_status(StatusCode::CONFLICT);
    with_v.assert_status(StatusCode::CONFLICT);
    assert!(
        again.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    assert_eq!(versions(&app, "vpc/aws").await, ["1.0.0"]);
    assert_eq!(app.blob_files().len(), 1);
}

async fn versions_and_names_that_terraform_cannot_address_are_400(app: TestApp) {
    for path in [
        "vpc/aws/1.2",
        "vpc/aws/latest",
        "vpc/aws/1.0.0+build.5",
        "Vpc/aws/1.0.0",
        "-vpc/aws/1.0.0",
        "vpc/my-cloud/1.0.0",
        "vpc/AWS/1.0.0",
    ] {
        let resp = publish_as(
            &app,
            &format!("{ORG}/{path}"),
            module_archive("1.0.0"),
            Some(&app.write_token),
        )
        .await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        assert!(resp.json()["errors"][0].is_string(), "{path}");
    }
}

async fn unsafe_or_malformed_archives_are_400_and_store_nothing(app: TestApp) {
    use tar::EntryType::{Block, Char, Fifo, Link, Regular, Symlink};
    let main: &[u8] = b"variable \"x\" {}\n";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            raw_targz(&[("main.tf", Regular, main), ("/etc/cron.d/x", Regular, b"")]),
            "absolute",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("../../x.tf", Regular, b"")]),
            "'..'",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("x/../../y", Regular, b"")]),
            "'..'",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("creds", Symlink, b"")]),
            "link",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("hard", Link, b"")]),
            "link",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("tty", Char, b"")]),
            "device",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("sda", Block, b"")]),
            "device",
        ),
        (
            raw_targz(&[("main.tf", Regular, main), ("pipe", Fifo, b"")]),
            "FIFO",
        ),
        (b"PK\x03\x04 this is a zip".to_vec(), "gzip"),
        (
            gzip(b"not a tar archive, just text that is long enough to matter"),
            "not a valid",
        ),
        (
            targz(&[("vpc/main.tf", "variable \"x\" {}")]),
            "no .tf files at its root",
        ),
    ];
    for (archive, message) in cases {
        let resp = publish_as(
            &app,
            &format!("{ORG}/vpc/aws/1.0.0"),
            archive,
            Some(&app.write_token),
        )
        .await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        let error = resp.json()["errors"][0].as_str().unwrap().to_string();
        assert!(error.contains(message), "expected {message:?} in {error:?}");
    }
    assert!(app.blob_files().is_empty());
    let resp = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/versions"),
        Some(&app.read_token),
    )
    .await;
    resp.assert_status(StatusCode::NOT_FOUND);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

async fn archives_over_the_cap_are_413(app: TestApp) {
    let cap = crate::support::DEFAULT_MAX_BODY_SIZE as usize;
    let mut oversized = module_archive("1.0.0");
    oversized.resize(cap + 1, 0);

    let announced = publish_as(
        &app,
        &format!("{ORG}/vpc/aws/1.0.0"),
        oversized.clone(),
        Some(&app.write_token),
    )
    .await;
    let chunks = oversized
        .chunks(1024 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let chunked = RequestBuilder::new("PUT", &format!("/api/v1/modules/{ORG}/vpc/aws/1.0.0"))
        .bearer(&app.write_token)
        .chunked(chunks)
        .build();
    let streamed = app.send(chunked).await;

    announced.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    streamed.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(app.blob_files().is_empty());
}

async fn publishing_needs_write_and_deleting_needs_admin(app: TestApp) {
    let path = format!("{ORG}/vpc/aws/1.0.0");
    let archive = module_archive("1.0.0");

    publish_as(&app, &path, archive.clone(), None)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    publish_as(&app, &path, archive.clone(), Some(&app.read_token))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    publish_as(&app, &path, archive.clone(), Some(&app.other_token))
        .await
        .assert_status(StatusCode::NOT_FOUND);
    publish_as(&app, &path, archive, Some(&app.write_token))
        .await
        .assert_status(StatusCode::CREATED);

    let delete = |token: String| {
        let request = RequestBuilder::new("DELETE", &format!("/api/v1/modules/{path}"))
            .bearer(&token)
            .build();
        app.send(request)
    };
    delete(app.write_token.clone())
        .await
        .assert_status(StatusCode::FORBIDDEN);
    delete(app.other_token.clone())
        .await
        .assert_status(StatusCode::NOT_FOUND);
    delete(app.admin_token.clone())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    delete(app.admin_token.clone())
        .await
        .assert_status(StatusCode::NOT_FOUND);
    // The archive is gone from the blob store too.
    assert!(app.blob_files().is_empty());
}

async fn deleting_versions_moves_latest_and_removes_empty_modules(app: TestApp) {
    for version in ["1.0.0", "1.1.0"] {
        publish(&app, "vpc/aws", version)
            .await
            .assert_status(StatusCode::CREATED);
    }
    let delete = |version: &str| {
        let path = format!("/api/v1/modules/{ORG}/vpc/aws/{version}");
        app.send(
            RequestBuilder::new("DELETE", &path)
                .bearer(&app.admin_token)
                .build(),
        )
    };

    delete("1.1.0").await.assert_status(StatusCode::NO_CONTENT);
    let latest: Value = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws"),
        Some(&app.read_token),
    )
    .await
    .json();
    assert_eq!(latest["version"], "1.0.0");
    assert_eq!(versions(&app, "vpc/aws").await, ["1.0.0"]);

    delete("1.0.0").await.assert_status(StatusCode::NO_CONTENT);
    get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/versions"),
        Some(&app.read_token),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/v1/modules", Some(&app.read_token)).await.json()["modules"],
        json!([])
    );
    // The name is free again.
    publish(&app, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
}

async fn concurrent_publishes_of_one_version_store_exactly_one(app: TestApp) {
    // Distinct contents, so a lost race would show in the stored checksum.
    let path = format!("{ORG}/vpc/aws/1.0.0");
    let uploads = (0..4).map(|i| {
        let archive = targz(&[("main.tf", &format!("output \"n\" {{\n  value = {i}\n}}\n"))]);
        publish_as(&app, &path, archive, Some(&app.write_token))
    });

    let results = futures::future::join_all(uploads).await;

    let created: Vec<_> = results
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT)
    );
    assert_eq!(versions(&app, "vpc/aws").await, ["1.0.0"]);
    // Losers' archives were discarded; only the winner's is stored.
    assert_eq!(app.blob_files().len(), 1);
    let winner = created[0].json()["sha256"].as_str().unwrap().to_string();
    let download = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/1.0.0/download"),
        Some(&app.read_token),
    )
    .await;
    let link = download.headers["x-terraform-get"].to_str().unwrap();
    let served = get(&app, link.strip_prefix("http://localhost").unwrap(), None).await;
    assert_eq!(crate::support::sha256_hex(&served.body), winner);
}
