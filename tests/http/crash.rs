//! Crash safety of the real binary: `kill -9` in the middle of a stream of writes, restart on
//! the same data, and the state must be one whole, acknowledged-or-later version.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::Value;

use crate::support::sha256_hex;

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
    let Ok(url) = std::env::var("TERRACE_TEST_POSTGRES_URL") else {
        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("crash_{}", uuid::Uuid::new_v4().simple());
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .map(|_| ())
    });
    status.unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let db_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
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

/// A running `terrace serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn terrace(data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_terrace"));
    for var in [
        "TERRACE_CONFIG",
        "TERRACE_DATABASE_URL",
        "TERRACE_STORAGE_URL",
    ] {
        command.env_remove(var);
    }
    for var in ["TERRACE_ENCRYPTION_KEY", "TERRACE_PREVIOUS_ENCRYPTION_KEYS"] {
        command.env_remove(var);
    }
    command
        .env("TERRACE_DATA_DIR", data_dir)
        .env("TERRACE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

pub(crate) fn cli(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let output = terrace(data_dir, env).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "terrace {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

pub(crate) fn start(data_dir: &Path, env: &[(&str, &str)], log: &Path) -> Server {
    let log = File::options().create(true).append(true).open(log).unwrap();
    let mut child = terrace(data_dir, env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("listening on ") {
                let _ = tx.send(base.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("terrace serve did not report its address");
    Server { child, base }
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
    let data_dir: PathBuf = root.join("data");
    let log = root.join("server.log");
    cli(&data_dir, env, &["org", "create", ORG]);
    let token = cli(
        &data_dir,
        env,
        &["token", "create", "--org", ORG, "--role", "write"],
    );
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
        let server = start(&data_dir, env, &log);
        let url = format!("{}/state/{ORG}/{WS}", server.base);
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

        let server = start(&data_dir, env, &log);
        let url = format!("{}/state/{ORG}/{WS}", server.base);
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

        let versions = all_versions(&client, &server.base, &token, WS);
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
    let data = root.path().join("data");
    let log = root.path().join("server.log");
    cli(&data, &[], &["org", "create", "acme"]);
    let token = cli(
        &data,
        &[],
        &["token", "create", "--org", "acme", "--role", "write"],
    );
    let mut server = start(&data, &[], &log);
    let addr = server.base.trim_start_matches("http://").to_string();
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
    let restarted = start(&data, &[], &log);
    let client = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new()
    };
    let stored = client
        .get(format!("{}/state/acme/{WS}", restarted.base))
        .basic_auth("terraform", Some(&token))
        .send()
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(stored.text().unwrap(), body);
}
