//! AWS credentials found as the AWS SDKs and CLI find them: a real `terrace` process with
//! DynamoDB locks and an S3 blob store on moto, given credentials only through the environment,
//! a named profile in the shared files, or a web identity token that moto's STS exchanges for
//! temporary keys (as on EKS with IRSA). Without any, both stores refuse to start working.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::testkit::required_var;
use crate::testkit::server::Setup;

/// Settings shared by every case: moto for DynamoDB, S3 and STS; no instance metadata and no
/// shared files unless a case names some.
fn base_settings(endpoint: &str, dir: &Path) -> Vec<(String, String)> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let encoded: String = url::form_urlencoded::byte_serialize(endpoint.as_bytes()).collect();
    let missing = |name: &str| dir.join(name).display().to_string();
    vec![
        (
            "TERRACE_LOCKS".into(),
            format!("dynamodb://terrace-cred-{id}?region=us-east-1&endpoint={encoded}"),
        ),
        (
            "TERRACE_STORAGE_URL".into(),
            format!("s3://terrace/cred-{id}"),
        ),
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_CONFIG_FILE".into(), missing("no-config")),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            missing("no-credentials"),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ]
}

fn setup(dir: &Path, settings: &[(String, String)]) -> Setup {
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Setup::new(dir.join("data"), &pairs)
        .without_inherited("AWS_")
        .without_inherited("AZURE_")
}

/// `terrace locks init` creates the table, the server reports both stores ready, and a locked
/// state write lands in S3 and reads back.
fn assert_both_stores_work(dir: &Path, settings: &[(String, String)]) {
    let setup = setup(dir, settings);
    let init = setup.output(&["locks", "init"]);
    assert!(
        init.status.success(),
        "locks init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    setup.cli(&["org", "create", "acme"]);
    let token = setup.cli(&["token", "create", "--org", "acme", "--role", "write"]);
    let server = setup.serve(&[], &dir.join("server.log"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::new();
    let ready = http
        .get(format!("{}/readyz", server.base_url))
        .send()
        .unwrap();
    let status = ready.status();
    let body: Value = ready.json().unwrap();
    assert_eq!(status, StatusCode::OK, "{body}\n{}", server.log());
    assert_eq!(
        body,
        json!({"database": "ok", "blob_store": "ok", "locks": "ok"})
    );

    let url = format!("{}/state/acme/prod", server.base_url);
    let info = r#"{"ID":"cred-1","Operation":"OperationTypeApply","Info":"","Who":"t@h","Version":"1.0.3","Created":"2026-12-05T00:00:00Z","Path":""}"#;
    let lock = http
        .request(reqwest::Method::from_bytes(b"LOCK").unwrap(), &url)
        .basic_auth("terraform", Some(&token))
        .body(info)
        .send()
        .unwrap();
    assert_eq!(lock.status(), StatusCode::OK, "{}", server.log());
    let state = r#"{"version":4,"serial":1,"lineage":"cred","outputs":{}}"#;
    let write = http
        .post(format!("{url}?ID=cred-1"))
        .basic_auth("terraform", Some(&token))
        .body(state)
        .send()
        .unwrap();
    assert_eq!(write.status(), StatusCode::OK, "{}", server.log());
    let read = http
        .get(&url)
        .basic_auth("terraform", Some(&token))
        .send()
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.text().unwrap(), state);
}

#[test]
fn static_keys_from_the_environment() {
    let Some(endpoint) = required_var("TERRACE_TEST_S3_ENDPOINT") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = base_settings(&endpoint, dir.path());
    settings.push(("AWS_ACCESS_KEY_ID".into(), "AKIAFROMENV".into()));
    settings.push(("AWS_SECRET_ACCESS_KEY".into(), "secret".into()));
    assert_both_stores_work(dir.path(), &settings);
}

#[test]
fn a_named_profile_in_the_shared_files() {
    let Some(endpoint) = required_var("TERRACE_TEST_S3_ENDPOINT") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let config = dir.path().join("config");
    // Only the named profile has keys: the default one would find nothing.
    std::fs::write(
        &credentials,
        "[terrace-ci]\naws_access_key_id = AKIAFROMPROFILE\naws_secret_access_key = secret\n",
    )
    .unwrap();
    std::fs::write(&config, "[profile terrace-ci]\nregion = us-east-1\n").unwrap();
    let mut settings = base_settings(&endpoint, dir.path());
    settings.retain(|(k, _)| k != "AWS_CONFIG_FILE" && k != "AWS_SHARED_CREDENTIALS_FILE");
    settings.extend([
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            credentials.display().to_string(),
        ),
        ("AWS_CONFIG_FILE".into(), config.display().to_string()),
        ("AWS_PROFILE".into(), "terrace-ci".into()),
    ]);
    assert_both_stores_work(dir.path(), &settings);
}

#[test]
fn a_web_identity_token_exchanged_with_sts() {
    let Some(endpoint) = required_var("TERRACE_TEST_S3_ENDPOINT") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    // What the EKS pod identity webhook mounts: a projected service account token.
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXJyYWNlIn0.c2ln").unwrap();
    let mut settings = base_settings(&endpoint, dir.path());
    settings.extend([
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            token.display().to_string(),
        ),
        (
            "AWS_ROLE_ARN".into(),
            "arn:aws:iam::123456789012:role/terrace".into(),
        ),
        ("AWS_ROLE_SESSION_NAME".into(), "terrace-test".into()),
    ]);
    assert_both_stores_work(dir.path(), &settings);
}

/// The control: with no source of credentials at all, neither store works.
#[test]
fn without_any_credentials_both_stores_refuse() {
    let Some(endpoint) = required_var("TERRACE_TEST_S3_ENDPOINT") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = base_settings(&endpoint, dir.path());
    let setup = setup(dir.path(), &settings);
    let init = setup.output(&["locks", "init"]);
    assert!(
        !init.status.success(),
        "locks init worked without credentials"
    );
    let stderr = String::from_utf8_lossy(&init.stderr);
    assert!(stderr.to_lowercase().contains("credentials"), "{stderr}");

    let server = setup.serve(&[], &dir.path().join("server.log"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ready = reqwest::blocking::get(format!("{}/readyz", server.base_url)).unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().unwrap();
    assert_eq!(body["blob_store"], "unavailable", "{body}");
    assert_eq!(body["locks"], "unavailable", "{body}");
}
