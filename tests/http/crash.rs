//! Crash safety of the real binary: `kill -9` in the middle of a stream of writes, restart on
//! the same data, and the state must be one whole, acknowledged-or-later version.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::Value;

use crate::support::{postgres_schema_url, sha256_hex};
use crate::testkit::server::Setup;

const ORG: &str = "acme";
const WS: &str = "crashy";
const LINEAGE: &str = "0b6b3c2e-5d4f-4d0c-9a51-crash0000001";
const ROUNDS: usize = 6;

#[test]
fn sqlite_kill_9_mid_stream_keeps_a_whole_acknowledged_state() {
    let root = tempfile::tempdir().unwrap();
    crash_and_recover(root.path(), &[]);
}

#[test]
fn postgres_kill_9_mid_stream_keeps_a_whole_acknowledged_state() {
    let Some(db_url) = postgres_schema_url("crash") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    crash_and_recover(root.path(), &[("TERRACE_DATABASE_URL", &db_url)]);
}

/// The body sent for `serial`: Terraform-shaped, big enough to take a few writes to disk.
pub(crate) fn body_for(serial: i64) -> String {
    let instances: Vec<Value> = (0..64)
        .map(|i| serde_json::json!({ "attributes": { "id": format!("i-{serial:06}-{i:03}"), "pad": "p".repeat(96) } }))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "version": 4,
        "terraform_version": "1.0.3",
        "serial": serial,
        "lineage": LINEAGE,
        "outputs": {},
        "resources": [{ "mode": "managed", "type": "null_resource", "name": "n", "instances": instances }],
    }))
    .unwrap()
}

/// `terrace` on `data_dir` with the settings `env`, as the crash and fault tests run it: quiet
/// logs, and servers killed (SIGKILL) when dropped.
pub(crate) fn terrace(data_dir: &Path, env: &[(&str, &str)]) -> Setup {
    Setup::new(data_dir, &[("RUST_LOG", "warn")])
        .with_env(env)
        .kill_on_drop()
}

/// Writes serials `from, from+1, …` until a request fails; returns the last attempted serial.
/// `acked` holds the last serial the server answered 200 for.
fn stream_writes(client: &Client, url: &str, token: &str, from: i64, acked: &AtomicI64) -> i64 {
    let mut serial = from;
    loop {
        let sent = client
            .post(url)
            .basic_auth("terraform", Some(token))
            .body(body_for(serial))
            .send();
        match sent {
            Ok(resp) if resp.status() == StatusCode::OK => acked.store(serial, Ordering::SeqCst),
            Ok(resp) => panic!("write of serial {serial} failed: {}", resp.status()),
            Err(_) => return serial,
        }
        serial += 1;
    }
}

/// A delay that differs from round to round and run to run.
fn random_delay() -> Duration {
    let noise = uuid::Uuid::new_v4().as_u128();
    Duration::from_millis(20 + (noise % 230) as u64)
}

/// Every version of workspace `ws`, newest first, page by page.
pub(crate) fn all_versions(client: &Client, base: &str, token: &str, ws: &str) -> Vec<Value> {
    let mut versions = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        let url = format!(
            "{base}/api/v1/orgs/{ORG}/workspaces/{ws}/state-versions?limit=1000&offset={at}"
        );
        let page: Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        versions.extend(page["data"].as_array().unwrap().iter().cloned());
        offset = page["meta"]["next_offset"].as_i64();
    }
    versions
}

fn crash_and_recover(root: &Path, env: &[(&str, &str)]) {
    let terrace = terrace(&root.join("data"), env);
    let log = root.join("server.log");
    terrace.cli(&["org", "create", ORG]);
    let token = terrace.cli(&["token", "create", "--org", ORG, "--role", "write"]);
    assert!(
        token.starts_with("trc_") && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    // reqwest is built without a default TLS crypto provider; plain HTTP still needs one set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut next = 1;
    for round in 0..ROUNDS {
        let server = terrace.serve(&[], &log);
        let url = format!("{}/state/{ORG}/{WS}", server.base_url);
        let acked = Arc::new(AtomicI64::new(next - 1));
        let writer = {
            let (client, url, token, acked) =
                (client.clone(), url.clone(), token.clone(), acked.clone());
            std::thread::spawn(move || stream_writes(&client, &url, &token, next, &acked))
        };
        // Kill only once this round has been acknowledged at least once.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.load(Ordering::SeqCst) < next {
            assert!(
                Instant::now() < deadline,
                "round {round}: no write was acknowledged"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(random_delay());
        drop(server); // SIGKILL, then reap.
        let attempted = writer.join().unwrap();
        let acked = acked.load(Ordering::SeqCst);

        let server = terrace.serve(&[], &log);
        let url = format!("{}/state/{ORG}/{WS}", server.base_url);
        let resp = client
            .get(&url)
            .basic_auth("t", Some(&token))
            .send()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "round {round}");
        let bytes = resp.bytes().unwrap();
        let current: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("round {round}: state after the crash is not whole: {e}"));
        let serial = current["serial"].as_i64().unwrap();
        assert!(
            (acked..=attempted).contains(&serial),
            "round {round}: serial {serial} outside acknowledged {acked} ..= attempted {attempted}"
        );
        assert_eq!(
            bytes.as_ref(),
            body_for(serial).as_bytes(),
            "round {round}: bytes differ"
        );

        let versions = all_versions(&client, &server.base_url, &token, WS);
        let serials: Vec<i64> = versions
            .iter()
            .map(|v| v["serial"].as_i64().unwrap())
            .collect();
        let numbers: Vec<i64> = versions
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        let expected: Vec<i64> = (1..=serial).rev().collect();
        assert_eq!(
            serials, expected,
            "round {round}: versions are not consecutive"
        );
        assert_eq!(
            numbers, expected,
            "round {round}: version numbers are not consecutive"
        );
        for version in &versions {
            let serial = version["serial"].as_i64().unwrap();
            assert_eq!(version["sha256"], sha256_hex(body_for(serial).as_bytes()));
        }
        eprintln!("round {round}: acked {acked}, attempted {attempted}, recovered serial {serial}");
        next = serial + 1;
    }
}

/// Reads from `stream` until `needle` has arrived; returns everything read.
fn read_until(stream: &mut std::net::TcpStream, needle: &str) -> String {
    use std::io::Read;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before {needle:?}; got {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn sigterm_lets_an_in_flight_write_finish_and_then_exits() {
    use base64::Engine;
    use std::io::Write;
    use std::net::TcpStream;
    let root = tempfile::tempdir().unwrap();
    let terrace = terrace(&root.path().join("data"), &[]);
    let log = root.path().join("server.log");
    terrace.cli(&["org", "create", "acme"]);
    let token = terrace.cli(&["token", "create", "--org", "acme", "--role", "write"]);
    let mut server = terrace.serve(&[], &log);
    let addr = server.base_url.trim_start_matches("http://").to_string();
    let body = body_for(1);
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("terraform:{token}"));

    // `Expect: 100-continue` makes the server say when the handler starts reading the body,
    // so the request is known to be in flight before the signal.
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /state/acme/{WS} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    read_until(&mut stream, "100 Continue\r\n\r\n");
    stream.write_all(first).unwrap();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server kept accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.write_all(rest).unwrap();
    let response = read_until(&mut stream, "\r\n\r\n");
    drop(stream);

    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit status {status}");
    let restarted = terrace.serve(&[], &log);
    let client = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new()
    };
    let stored = client
        .get(format!("{}/state/acme/{WS}", restarted.base_url))
        .basic_auth("terraform", Some(&token))
        .send()
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(stored.text().unwrap(), body);
}
