//! The `modules.v1` protocol as Terraform calls it, read scoping and download counts.

use axum::http::StatusCode;
use serde_json::json;

use super::{get, make_public, module_archive, publish, publish_as};
use crate::support::{ORG, RequestBuilder, TestApp};

on_both_databases! {
    versions_lists_every_version_in_terraforms_shape,
    download_is_204_with_a_signed_archive_link_that_needs_no_credentials,
    reads_need_a_token_of_the_org_unless_the_namespace_is_public,
    download_counts_reach_the_database_only_when_flushed,
    an_http2_request_without_a_host_header_gets_links_to_its_authority,
}

/// HTTP/2 clients (newer Terraform) send `:authority` and no `Host` header; the archive link
/// must still point at the host and port they used.
async fn an_http2_request_without_a_host_header_gets_links_to_its_authority(app: TestApp) {
    publish(&app, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    let request = axum::http::Request::builder()
        .method("GET")
        .uri(format!(
            "https://registry.example.com:8443/v1/modules/{ORG}/vpc/aws/1.0.0/download"
        ))
        .version(axum::http::Version::HTTP_2)
        .header("authorization", format!("Bearer {}", app.read_token))
        .body(axum::body::Body::empty())
        .unwrap();

    let resp = app.send(request).await;

    resp.assert_status(StatusCode::NO_CONTENT);
    let location = resp.headers["x-terraform-get"].to_str().unwrap();
    assert!(
        location.starts_with("http://registry.example.com:8443/dl/"),
        "{location}"
    );
}

async fn versions_lists_every_version_in_terraforms_shape(app: TestApp) {
    for version in ["1.1.0", "2.0.0", "1.2.0-beta", "1.0.0", "1.10.0"] {
        publish(&app, "vpc/aws", version)
            .await
            .assert_status(StatusCode::CREATED);
    }

    let resp = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/versions"),
        Some(&app.read_token),
    )
    .await;
    // Terraform preserves the user's case in module addresses.
    let mixed_case = get(
        &app,
        &format!("/v1/modules/{ORG}/VPC/Aws/versions"),
        Some(&app.read_token),
    )
    .await;
    let missing = get(
        &app,
        &format!("/v1/modules/{ORG}/nope/aws/versions"),
        Some(&app.read_token),
    )
    .await;

    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "application/json");
    assert_eq!(
        resp.json(),
        json!({"modules": [{"source": "acme/vpc/aws", "versions": [
            {"version": "1.0.0"}, {"version": "1.1.0"}, {"version": "1.2.0-beta"},
            {"version": "1.10.0"}, {"version": "2.0.0"},
        ]}]})
    );
    assert_eq!(mixed_case.json(), resp.json());
    missing.assert_status(StatusCode::NOT_FOUND);
    assert_eq!(missing.json(), json!({"errors": ["module not found"]}));
}

/// Splits an absolute URL into the path and query the router sees.
fn path_and_query(url: &str) -> &str {
    let rest = url.split_once("://").unwrap().1;
    &rest[rest.find('/').unwrap()..]
}

async fn download_is_204_with_a_signed_archive_link_that_needs_no_credentials(app: TestApp) {
    let archive = module_archive("1.1.0");
    publish_as(
        &app,
        &format!("{ORG}/vpc/aws/1.1.0"),
        archive.clone(),
        Some(&app.write_token),
    )
    .await
    .assert_status(StatusCode::CREATED);

    let resp = get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/1.1.0/download"),
        Some(&app.read_token),
    )
    .await;

    resp.assert_status(StatusCode::NO_CONTENT);
    assert!(resp.body.is_empty());
    let location = resp.headers["x-terraform-get"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.starts_with("http://localhost/dl/"), "{location}");
    // go-getter recognises archives by the path's extension, before the query.
    let (path, query) = location.split_once('?').unwrap();
    assert!(path.ends_with("/vpc-aws-1.1.0.tar.gz"), "{location}");
    assert!(query.contains("signature="), "{location}");

    // Terraform sends no credentials here, and a HEAD first.
    let head = app
        .send(RequestBuilder::new("HEAD", path_and_query(&location)).build())
        .await;
    let archive_resp = get(&app, path_and_query(&location), None).await;
    head.assert_status(StatusCode::OK);
    archive_resp.assert_status(StatusCode::OK);
    assert_eq!(archive_resp.body.as_ref(), archive.as_slice());
    let tampered = location.replace("signature=", "signature=x");
    get(&app, path_and_query(&tampered), None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    for missing in ["1.2.0", "v9"] {
        let resp = get(
            &app,
            &format!("/v1/modules/{ORG}/vpc/aws/{missing}/download"),
            Some(&app.read_token),
        )
        .await;
        assert!(
            matches!(resp.status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST),
            "{missing}"
        );
    }
}

async fn reads_need_a_token_of_the_org_unless_the_namespace_is_public(app: TestApp) {
    publish(&app, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    let paths = [
        format!("/v1/modules/{ORG}/vpc/aws/versions"),
        format!("/v1/modules/{ORG}/vpc/aws/1.0.0/download"),
        format!("/v1/modules/{ORG}/vpc/aws"),
        format!("/v1/modules/{ORG}"),
    ];
    for path in &paths {
        get(&app, path, None)
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
        get(&app, path, Some(&app.other_token))
            .await
            .assert_status(StatusCode::NOT_FOUND);
        assert!(
            get(&app, path, Some(&app.read_token))
                .await
                .status
                .is_success(),
            "{path}"
        );
    }
    // An unknown namespace looks exactly like a private one.
    get(&app, "/v1/modules/nobody/vpc/aws/versions", None)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);

    make_public(&app).await;

    for path in &paths {
        assert!(get(&app, path, None).await.status.is_success(), "{path}");
        assert!(
            get(&app, path, Some(&app.other_token))
                .await
                .status
                .is_success(),
            "{path}"
        );
    }
    // Public means readable, never writable by others.
    let resp = publish_as(
        &app,
        &format!("{ORG}/vpc/aws/2.0.0"),
        module_archive("2.0.0"),
        Some(&app.other_token),
    )
    .await;
    resp.assert_status(StatusCode::NOT_FOUND);
}

async fn download_counts_reach_the_database_only_when_flushed(app: TestApp) {
    publish(&app, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    let download = format!("/v1/modules/{ORG}/vpc/aws/1.0.0/download");
    let downloads = || async {
        get(
            &app,
            &format!("/v1/modules/{ORG}/vpc/aws"),
            Some(&app.read_token),
        )
        .await
        .json()["downloads"]
            .clone()
    };

    for _ in 0..3 {
        get(&app, &download, Some(&app.read_token))
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    assert_eq!(downloads().await, 0);

    terrace::registry::modules::flush_downloads(&app.state.registry)
        .await
        .unwrap();
    assert_eq!(downloads().await, 3);
    terrace::registry::modules::flush_downloads(&app.state.registry)
        .await
        .unwrap();
    assert_eq!(downloads().await, 3);
    let listed = get(&app, "/v1/modules", Some(&app.read_token)).await.json();
    assert_eq!(listed["modules"][0]["downloads"], 3);
}
