//! A master key held by AWS KMS (moto's KMS, `TERRACE_TEST_S3_ENDPOINT`), with the real
//! binary: start on a file key, rotate to KMS, restart, every state readable; KMS down at
//! start stops the server with a clear error and changes nothing; rotate back to a file key.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;

use crate::support::postgres_schema_url;
use crate::testkit::server::Setup;

#[test]
fn sqlite_file_key_to_kms_and_back_keeps_every_state_readable() {
    let root = tempfile::tempdir().unwrap();
    round_trip(root.path(), &[]);
}

#[test]
fn postgres_file_key_to_kms_and_back_keeps_every_state_readable() {
    let Some(db_url) = postgres_schema_url("kms") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    round_trip(root.path(), &[("TERRACE_DATABASE_URL", &db_url)]);
}

/// A new symmetric key in moto's KMS; returns its id.
fn create_kms_key(endpoint: &str) -> String {
    let resp = Client::new()
        .post(format!("{endpoint}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "TrentService.CreateKey")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body("{}")
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text());
    let body: serde_json::Value = resp.json().unwrap();
    body["KeyMetadata"]["KeyId"].as_str().unwrap().to_string()
}

fn state_body(ws: &str, serial: i64) -> String {
    serde_json::json!({
        "version": 4, "terraform_version": "1.0.3", "serial": serial,
        "lineage": format!("lineage-{ws}"), "outputs": {"ws": {"value": ws, "type": "string"}},
        "resources": [],
    })
    .to_string()
}

fn write_state(base: &str, token: &str, ws: &str, serial: i64) {
    let resp = Client::new()
        .post(format!("{base}/state/acme/{ws}"))
        .basic_auth("terraform", Some(token))
        .header("content-type", "application/json")
        .body(state_body(ws, serial))
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{ws}: {:?}", resp.text());
}

fn assert_readable(base: &str, token: &str, states: &[(&str, i64)]) {
    for (ws, serial) in states {
        let resp = Client::new()
            .get(format!("{base}/state/acme/{ws}"))
            .basic_auth("terraform", Some(token))
            .send()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{ws}");
        assert_eq!(resp.text().unwrap(), state_body(ws, *serial), "{ws}");
    }
}

/// `terrace keys status`: the current key id and (key id, blob count) rows.
fn key_status(setup: &Setup) -> (String, Vec<(String, u64)>) {
    let out = setup.cli(&["keys", "status"]);
    let mut lines = out.lines();
    let current = lines
        .next()
        .unwrap()
        .strip_prefix("current key id: ")
        .unwrap()
        .to_string();
    let rows = lines
        .map(|l| {
            let (id, count) = l.split_once('\t').unwrap();
            (
                id.to_string(),
                count.trim_end_matches(" blobs").parse().unwrap(),
            )
        })
        .collect();
    (current, rows)
}

/// Every file under `dir` with its bytes' hash, to prove nothing was changed (the blobs; the
/// database is compared through what it holds).
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.push((path, crate::support::sha256_hex(&bytes)));
            }
        }
    }
    files.sort();
    files
}

/// Rows of the audit trail with no org (the key-provider operations).
fn system_events(db_url: &str) -> Vec<(String, String, String)> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = terrace::infra::db::Db::connect(db_url).await.unwrap();
        const SQL: &str = "SELECT actor, action, resource FROM audit_events \
                           WHERE org_id IS NULL AND action LIKE 'keys:%' ORDER BY id";
        match &db {
            terrace::infra::db::Db::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
            terrace::infra::db::Db::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
        }
    })
}

fn round_trip(root: &Path, env: &[(&str, &str)]) {
    let Some(moto) = crate::testkit::required_var("TERRACE_TEST_S3_ENDPOINT") else {
        return;
    };
    let key_id = create_kms_key(&moto);
    let provider = format!("awskms://{key_id}");
    let data = root.join("data");
    let log = root.join("serve.log");
    let setup = Setup::new(
        &data,
        &[
            ("RUST_LOG", "warn"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL_KMS", &moto),
        ],
    )
    .with_env(env);
    let db_url = env
        .iter()
        .find(|(k, _)| *k == "TERRACE_DATABASE_URL")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| format!("sqlite://{}/terrace.db", data.display()));

    // 1. A file key (generated on first start) and three states.
    setup.cli(&["org", "create", "acme"]);
    let token = setup.cli(&["token", "create", "--org", "acme", "--role", "admin"]);
    {
        let server = setup.serve(&[], &log);
        for ws in ["a", "b", "c"] {
            write_state(&server.base_url, &token, ws, 1);
        }
    }
    let (file_key, rows) = key_status(&setup);
    assert_eq!(rows, vec![(file_key.clone(), 3)]);

    // 2. To KMS: the file key is read as a previous key while everything is re-wrapped.
    let on_kms = setup
        .clone()
        .with_env(&[("TERRACE_ENCRYPTION_KEY_PROVIDER", &provider)]);
    on_kms.cli(&["keys", "rotate"]);
    let (kms_key, rows) = key_status(&on_kms);
    assert_ne!(kms_key, file_key);
    assert_eq!(rows, vec![(kms_key.clone(), 3)]);
    // The file key is no longer needed at all.
    std::fs::rename(data.join("master.key"), root.join("old-master.key")).unwrap();
    {
        let server = on_kms.serve(&[], &log);
        assert_readable(&server.base_url, &token, &[("a", 1), ("b", 1), ("c", 1)]);
        write_state(&server.base_url, &token, "d", 1);
    }
    // A restart unwraps the same master key again.
    {
        let server = on_kms.serve(&[], &log);
        assert_readable(&server.base_url, &token, &[("a", 1), ("d", 1)]);
    }
    assert_eq!(
        key_status(&on_kms),
        (kms_key.clone(), vec![(kms_key.clone(), 4)])
    );

    // 3. KMS down at start: a clear error within seconds, and nothing is changed.
    let before = snapshot(&data.join("blobs"));
    let keys_before = key_status(&on_kms);
    let events_before = system_events(&db_url);
    let down = on_kms
        .clone()
        .with_env(&[("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1")]);
    let mut child = down
        .command()
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("terrace serve kept running without its KMS");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("AWS KMS key {key_id} at http://127.0.0.1:1")),
        "{stderr}"
    );
    assert!(
        stderr.contains("Terrace did not start and changed nothing"),
        "{stderr}"
    );
    assert_eq!(snapshot(&data.join("blobs")), before);
    assert_eq!(key_status(&on_kms), keys_before);
    assert_eq!(system_events(&db_url), events_before);

    // 4. Back to a file key (a new one, generated on first use), the KMS key as the previous
    // provider during the rotation; afterwards KMS is not needed any more.
    let back = setup
        .clone()
        .with_env(&[("TERRACE_PREVIOUS_ENCRYPTION_KEY_PROVIDER", &provider)]);
    back.cli(&["keys", "rotate"]);
    let (new_file_key, rows) = key_status(&setup);
    assert!(new_file_key != kms_key && new_file_key != file_key);
    assert_eq!(rows, vec![(new_file_key.clone(), 4)]);
    let without_kms = setup
        .clone()
        .with_env(&[("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1")]);
    {
        let server = without_kms.serve(&[], &log);
        assert_readable(
            &server.base_url,
            &token,
            &[("a", 1), ("b", 1), ("c", 1), ("d", 1)],
        );
    }

    // Key-provider operations are on record.
    let events = system_events(&db_url);
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|(actor, action, _)| (actor.as_str(), action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("system", "keys:rotate"),
            ("system", "keys:unwrap"),
            ("system", "keys:unwrap"),
            ("system", "keys:rotate"),
        ]
    );
    assert_eq!(events[0].2, format!("key-provider:{provider}/{kms_key}"));
    assert_eq!(events[1].2, provider);
    assert_eq!(events[3].2, format!("key-provider:local/{new_file_key}"));
}
