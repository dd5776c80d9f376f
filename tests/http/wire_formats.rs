//! Snapshots of every response Terraform reads: discovery, the http backend's lock conflicts
//! and errors, the module and provider registry protocols, the network mirror, and the
//! management API's state-version and workspace lists. A change to any of them shows up as a
//! snapshot diff to review against the protocol.
//!
//! Only what differs between runs is replaced with placeholders: times, link hosts, expiries
//! and signatures, and random blob ids. Fixtures are deterministic (fixed keys, archives
//! without timestamps), so checksums, hashes and key armor stay in the snapshots.
//!
//! The output is the same on both databases, so these run on SQLite only.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::module_registry;
use crate::provider_registry::{self, Release, TYPE, mirror};
use crate::support::{Backend, ORG, RequestBuilder, Resp, TestApp, lock_info, state};

const LINEAGE: &str = "3f0d8a6e-5c1b-4a57-9d2e-0b7c4e1f9a21";

async fn app() -> TestApp {
    TestApp::new(Backend::Sqlite).await.unwrap()
}

/// What a client sees of a response: the status, the given headers (null when absent) and
/// the body (JSON, or null when empty).
fn seen(resp: &Resp, headers: &[&str]) -> Value {
    let mut view = Map::new();
    view.insert("status".into(), json!(resp.status.as_u16()));
    for name in headers {
        let value = resp.headers.get(*name).map(|v| v.to_str().unwrap());
        view.insert((*name).into(), json!(value));
    }
    let body = if resp.body.is_empty() {
        Value::Null
    } else {
        resp.json()
    };
    view.insert("body".into(), body);
    Value::Object(view)
}

/// A signed download link with its host, blob id, expiry and signature replaced, after
/// checking that it is absolute, under `/dl/`, and expires a few minutes from now.
fn redact_link(url: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not absolute: {url}"));
    let (_host, path_and_query) = rest.split_once('/').unwrap();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or_else(|| panic!("not signed: {url}"));
    let path = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["dl", blob, file] => {
            uuid::Uuid::parse_str(blob).unwrap_or_else(|_| panic!("blob id in {url}"));
            format!("dl/[blob]/{file}")
        }
        _ => path.to_string(),
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("expires", at)) => {
                let ttl = at.parse::<i64>().unwrap() - chrono::Utc::now().timestamp();
                assert!(
                    (1..=terrace::downloads::LINK_TTL_SECONDS).contains(&ttl),
                    "{url}"
                );
                "expires=[expires]".to_string()
            }
            Some(("signature", sig)) => {
                assert!(!sig.is_empty(), "{url}");
                "signature=[signature]".to_string()
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://[host]/{path}?{query}")
}

/// Replaces the string at `pointer` with its redacted link.
fn redact_link_at(value: &mut Value, pointer: &str) {
    let field = value
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}"));
    *field = json!(redact_link(field.as_str().unwrap()));
}

#[tokio::test]
async fn discovery_names_the_module_and_provider_services_with_both_slashes() {
    let app = app().await;

    let resp = app
        .send(RequestBuilder::new("GET", "/.well-known/terraform.json").build())
        .await;

    insta::assert_json_snapshot!(seen(&resp, &["content-type"]));
}

#[tokio::test]
async fn a_lock_conflict_is_423_with_the_holders_lock_json_byte_for_byte() {
    let app = app().await;
    let holder = "e23629ff-dcc3-ad8e-a002-beefc9ef8d41";
    app.lock("prod", holder, &app.write_token)
        .await
        .assert_status(StatusCode::OK);

    let conflict = app
        .lock(
            "prod",
            "0d9c1a4b-7e22-4f0a-8c55-3b6f1e2d9a77",
            &app.write_token,
        )
        .await;
    let unlocked_write = app
        .write_state("prod", state(LINEAGE, 1), None, &app.write_token)
        .await;

    conflict.assert_status(StatusCode::LOCKED);
    // The exact bytes stored at LOCK time, whichever request ran into the lock.
    assert_eq!(conflict.body, lock_info(holder).as_bytes());
    assert_eq!(unlocked_write.status, StatusCode::LOCKED);
    assert_eq!(unlocked_write.body, conflict.body);
    insta::assert_snapshot!(format!(
        "{}\ncontent-type: {}\n\n{}",
        conflict.status,
        conflict.headers["content-type"].to_str().unwrap(),
        conflict.text(),
    ));
}

#[tokio::test]
async fn errors_are_a_list_of_messages_for_401_403_404_and_409() {
    let app = app().await;
    module_registry::publish(&app, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    let headers = ["content-type", "www-authenticate"];

    let state_without_credentials = app
        .send(RequestBuilder::new("GET", &format!("/state/{ORG}/prod")).build())
        .await;
    let registry_without_credentials =
        provider_registry::get(&app, &format!("/v1/providers/{ORG}/{TYPE}/versions"), None).await;
    let write_with_read_token = app
        .write_state("prod", state(LINEAGE, 1), None, &app.read_token)
        .await;
    let state_not_written_yet = app.get_state("prod", &app.read_token).await;
    let unknown_module = module_registry::get(
        &app,
        &format!("/v1/modules/{ORG}/nope/aws/versions"),
        Some(&app.read_token),
    )
    .await;
    let write_under_a_released_lock = app
        .write_state(
            "prod",
            state(LINEAGE, 1),
            Some("0d9c1a4b-7e22-4f0a-8c55-3b6f1e2d9a77"),
            &app.write_token,
        )
        .await;
    let module_version_exists = module_registry::publish(&app, "vpc/aws", "1.0.0").await;

    insta::assert_json_snapshot!(json!({
        "401 state without credentials": seen(&state_without_credentials, &headers),
        "401 registry without credentials": seen(&registry_without_credentials, &headers),
        "403 state write with a read token": seen(&write_with_read_token, &headers),
        "404 state not written yet": seen(&state_not_written_yet, &headers),
        "404 unknown module": seen(&unknown_module, &headers),
        "409 write under a released lock": seen(&write_under_a_released_lock, &headers),
        "409 module version exists": seen(&module_version_exists, &headers),
    }));
}

#[tokio::test]
async fn module_versions_are_listed_under_modules_0_in_semver_order() {
    let app = app().await;
    for version in ["1.1.0", "2.0.0", "1.2.0-beta", "1.0.0", "1.10.0"] {
        module_registry::publish(&app, "vpc/aws", version)
            .await
            .assert_status(StatusCode::CREATED);
    }

    let resp = module_registry::get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/versions"),
        Some(&app.read_token),
    )
    .await;

    insta::assert_json_snapshot!(seen(&resp, &["content-type"]));
}

#[tokio::test]
async fn module_download_is_204_with_a_signed_archive_link_in_x_terraform_get() {
    let app = app().await;
    module_registry::publish(&app, "vpc/aws", "1.1.0")
        .await
        .assert_status(StatusCode::CREATED);

    let resp = module_registry::get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/1.1.0/download"),
        Some(&app.read_token),
    )
    .await;

    let location = resp.headers["x-terraform-get"].to_str().unwrap();
    insta::assert_snapshot!(format!(
        "{}\nx-terraform-get: {}\nbody bytes: {}",
        resp.status,
        redact_link(location),
        resp.body.len(),
    ));
}

#[tokio::test]
async fn module_details_describe_the_version_its_interface_and_its_siblings() {
    let app = app().await;
    for (module, version) in [
        ("vpc/aws", "1.0.0"),
        ("vpc/aws", "1.1.0"),
        ("vpc/gcp", "0.1.0"),
    ] {
        module_registry::publish(&app, module, version)
            .await
            .assert_status(StatusCode::CREATED);
    }

    let resp = module_registry::get(
        &app,
        &format!("/v1/modules/{ORG}/vpc/aws/1.1.0"),
        Some(&app.read_token),
    )
    .await;

    resp.assert_status(StatusCode::OK);
    insta::assert_json_snapshot!(seen(&resp, &["content-type"]), {
        ".body.published_at" => "[time]",
    });
}

#[tokio::test]
async fn provider_versions_list_protocols_and_platforms() {
    let app = app().await;
    provider_registry::seed(&app, "1.10.0", &["linux_amd64", "darwin_arm64"]).await;
    provider_registry::publish(&app, &Release::signed("1.2.0", &["linux_amd64"]))
        .await
        .assert_status(StatusCode::CREATED);

    let resp = provider_registry::get(
        &app,
        &format!("/v1/providers/{ORG}/{TYPE}/versions"),
        Some(&app.read_token),
    )
    .await;

    insta::assert_json_snapshot!(seen(&resp, &["content-type"]));
}

#[tokio::test]
async fn provider_download_describes_the_package_its_signed_links_and_signing_key() {
    let app = app().await;
    provider_registry::seed(&app, "1.0.0", &["linux_amd64", "darwin_arm64"]).await;

    let resp = provider_registry::get(
        &app,
        &format!("/v1/providers/{ORG}/{TYPE}/1.0.0/download/linux/amd64"),
        Some(&app.read_token),
    )
    .await;

    resp.assert_status(StatusCode::OK);
    let mut seen = seen(&resp, &["content-type"]);
    for field in ["download_url", "shasums_url", "shasums_signature_url"] {
        redact_link_at(&mut seen, &format!("/body/{field}"));
    }
    insta::assert_json_snapshot!(seen);
}

#[tokio::test]
async fn mirror_index_and_version_documents_list_versions_and_hashed_archives() {
    let app = app().await;
    for (version, os, arch) in [
        ("3.1.0", "linux", "amd64"),
        ("3.2.0", "linux", "amd64"),
        ("3.2.0", "darwin", "arm64"),
    ] {
        let tail = format!("{version}/{os}_{arch}");
        mirror::upload(
            &app,
            &tail,
            mirror::null_zip(version, os, arch),
            Some(&app.admin_token),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    let base = "/v1/mirror/registry.terraform.io/hashicorp/null";

    let index =
        provider_registry::get(&app, &format!("{base}/index.json"), Some(&app.read_token)).await;
    let version =
        provider_registry::get(&app, &format!("{base}/3.2.0.json"), Some(&app.read_token)).await;

    insta::assert_json_snapshot!("mirror_index", seen(&index, &["content-type"]));
    version.assert_status(StatusCode::OK);
    let mut version = seen(&version, &["content-type"]);
    for platform in ["darwin_arm64", "linux_amd64"] {
        redact_link_at(&mut version, &format!("/body/archives/{platform}/url"));
    }
    insta::assert_json_snapshot!("mirror_version", version);
}

#[tokio::test]
async fn hosted_providers_are_mirrored_in_the_same_shape() {
    let app = app().await;
    provider_registry::seed(&app, "1.0.0", &["linux_amd64"]).await;
    let base = format!("/v1/mirror/terrace.test/{ORG}/{TYPE}");

    let index =
        provider_registry::get(&app, &format!("{base}/index.json"), Some(&app.read_token)).await;
    let version =
        provider_registry::get(&app, &format!("{base}/1.0.0.json"), Some(&app.read_token)).await;

    insta::assert_json_snapshot!("hosted_mirror_index", seen(&index, &["content-type"]));
    version.assert_status(StatusCode::OK);
    let mut version = seen(&version, &["content-type"]);
    redact_link_at(&mut version, "/body/archives/linux_amd64/url");
    insta::assert_json_snapshot!("hosted_mirror_version", version);
}

#[tokio::test]
async fn state_versions_are_listed_newest_first_with_serial_lineage_and_checksum() {
    let app = app().await;
    for serial in [1, 2] {
        app.write_state("prod", state(LINEAGE, serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }

    let resp = app
        .api(
            "GET",
            &TestApp::ws_api("prod", "/state-versions"),
            &app.read_token,
            None,
        )
        .await;

    resp.assert_status(StatusCode::OK);
    insta::assert_json_snapshot!(seen(&resp, &["content-type"]), {
        ".body.data[].created_at" => "[time]",
    });
}

#[tokio::test]
async fn workspaces_are_listed_with_their_current_serial_size_and_lock() {
    let app = app().await;
    app.write_state("prod", state(LINEAGE, 3), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    app.lock(
        "prod",
        "e23629ff-dcc3-ad8e-a002-beefc9ef8d41",
        &app.write_token,
    )
    .await
    .assert_status(StatusCode::OK);
    app.lock(
        "staging",
        "0d9c1a4b-7e22-4f0a-8c55-3b6f1e2d9a77",
        &app.write_token,
    )
    .await
    .assert_status(StatusCode::OK);
    app.unlock(
        "staging",
        lock_info("0d9c1a4b-7e22-4f0a-8c55-3b6f1e2d9a77"),
        &app.write_token,
    )
    .await
    .assert_status(StatusCode::OK);

    let resp = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/workspaces"),
            &app.read_token,
            None,
        )
        .await;

    resp.assert_status(StatusCode::OK);
    insta::assert_json_snapshot!(seen(&resp, &["content-type"]), {
        ".body.data[].updated_at" => "[time]",
        ".body.data[].lock.renewed_at" => "[time]",
    });
}
