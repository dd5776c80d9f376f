//! Fault tolerance of the real binary: PostgreSQL restarting under a stream of writes, the
//! object store hanging mid-write, and a replica killed while it holds a lock. Clients get
//! 503 with `Retry-After` (Terraform retries 5xx), `/readyz` names the dependency that is
//! down, no version is ever torn, `terrace verify` stays clean and the server recovers by
//! itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

use crate::crash::{all_versions, body_for, terrace};
use crate::support::{lock_info, postgres_schema_url, sha256_hex};
use crate::testkit::server::Server;
use crate::testkit::{missing, under_ci};

const ORG: &str = "acme";
const WS: &str = "faulty";

fn client() -> Client {
    // reqwest is built without a default TLS crypto provider; plain HTTP still needs one set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `/readyz`: status and body. Asserts the probe answers promptly whatever is down, and that
/// a 503 carries `Retry-After`.
fn readyz(client: &Client, base: &str) -> (StatusCode, Value) {
    let started = Instant::now();
    let resp = client.get(format!("{base}/readyz")).send().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "/readyz took {took:?}");
    let status = resp.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }
    (status, resp.json().unwrap())
}

/// Runs `terrace verify` on the same settings as the server; panics on any fault it reports.
fn verify(data_dir: &Path, env: &[(&str, &str)]) {
    let output = terrace(data_dir, env).output(&["verify"]);
    assert!(
        output.status.success(),
        "terrace verify found faults:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A writer that behaves like Terraform: posts serial n+1 and retries it on a 5xx.
#[derive(Default)]
struct Writer {
    /// The last serial answered 200.
    acked: AtomicI64,
    /// 503 answers seen, each with `Retry-After`.
    unavailable: AtomicUsize,
    /// The longest time a 503 took to arrive, in milliseconds.
    slowest_503_ms: AtomicI64,
    stop: AtomicBool,
    /// Anything but 200 or 503 with `Retry-After`: a failure of the test.
    errors: Mutex<Vec<String>>,
}

impl Writer {
    fn spawn(
        client: &Client,
        url: String,
        token: &str,
    ) -> (Arc<Writer>, std::thread::JoinHandle<()>) {
        let writer = Arc::new(Writer::default());
        let handle = {
            let (writer, client, token) = (writer.clone(), client.clone(), token.to_string());
            std::thread::spawn(move || writer.run(&client, &url, &token))
        };
        (writer, handle)
    }

    fn run(&self, client: &Client, url: &str, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut serial = self.acked.load(Ordering::SeqCst) + 1;
        // Stops only after an acknowledged write, so the last attempt is the last acked.
        while Instant::now() < deadline {
            let started = Instant::now();
            let sent = client
                .post(url)
                .basic_auth("terraform", Some(token))
                .body(body_for(serial))
                .send();
            match sent {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    self.acked.store(serial, Ordering::SeqCst);
                    serial += 1;
                    if self.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                }
                Ok(resp)
                    if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                        && resp.headers().contains_key(header::RETRY_AFTER) =>
                {
                    let took = started.elapsed().as_millis() as i64;
                    self.slowest_503_ms.fetch_max(took, Ordering::SeqCst);
                    self.unavailable.fetch_add(1, Ordering::SeqCst);
                }
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().unwrap_or_default();
                    self.error(format!("serial {serial}: {status} {body}"));
                }
                Err(e) => self.error(format!("serial {serial}: {e}")),
            }
            // Terraform waits before retrying; a short pause keeps the test quick.
            std::thread::sleep(Duration::from_millis(100));
        }
        self.error("the writer ran out of time".into());
    }

    fn error(&self, message: String) {
        eprintln!("writer: {message}");
        self.errors.lock().unwrap().push(message);
    }

    fn acked(&self) -> i64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `more` further writes are acknowledged.
    fn wait_for_acks(&self, more: i64, limit: Duration) {
        let target = self.acked() + more;
        wait_until(
            &format!("serial {target} to be acknowledged"),
            limit,
            || self.acked() >= target,
        );
    }

    /// Stops after the next acknowledged write; returns the last acknowledged serial.
    fn finish(&self, handle: std::thread::JoinHandle<()>) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        handle.join().unwrap();
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "writes failed otherwise than 503: {errors:#?}"
        );
        self.acked()
    }
}

/// No torn or lost version: the current state is the last acknowledged body byte for byte,
/// and versions 1..=last hold serials 1..=last, each with its own bytes.
fn assert_history(client: &Client, base: &str, token: &str, last: i64) {
    let resp = client
        .get(format!("{base}/state/{ORG}/{WS}"))
        .basic_auth("terraform", Some(token))
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().unwrap().as_ref(), body_for(last).as_bytes());
    let versions = all_versions(client, base, token, WS);
    let serials: Vec<i64> = versions
        .iter()
        .map(|v| v["serial"].as_i64().unwrap())
        .collect();
    let numbers: Vec<i64> = versions
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (1..=last).rev().collect();
    assert_eq!(serials, expected, "serials have gaps or duplicates");
    assert_eq!(numbers, expected, "version numbers have gaps or duplicates");
    for version in &versions {
        let serial = version["serial"].as_i64().unwrap();
        assert_eq!(version["sha256"], sha256_hex(body_for(serial).as_bytes()));
    }
}

/// Creates the org and returns a write token and an admin token.
fn bootstrap(data_dir: &Path, env: &[(&str, &str)]) -> (String, String) {
    let terrace = terrace(data_dir, env);
    terrace.cli(&["org", "create", ORG]);
    let write = terrace.cli(&["token", "create", "--org", ORG, "--role", "write"]);
    let admin = terrace.cli(&["token", "create", "--org", ORG, "--role", "admin"]);
    (write, admin)
}

// --- PostgreSQL restart ------------------------------------------------------------------

/// A private PostgreSQL cluster in a temporary directory, free to restart (the shared server
/// is used by every other test). Stopped when dropped.
struct PgCluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// PostgreSQL refuses to run as root: then every command runs as `postgres`.
    as_postgres: bool,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PgCluster {
    /// Creates the cluster with the newest `initdb` installed; `None` when there is none.
    fn create() -> Option<PgCluster> {
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
            .collect();
        bins.sort_by_key(|bin| {
            let version = bin.parent().and_then(|v| v.file_name()).unwrap_or_default();
            version.to_string_lossy().parse::<u32>().unwrap_or(0)
        });
        let bin = bins.pop()?;
        let as_postgres = {
            let uid = Command::new("id").arg("-u").output().unwrap();
            String::from_utf8_lossy(&uid.stdout).trim() == "0"
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pg");
        std::fs::create_dir(&root).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(chown.success(), "chown postgres failed");
        }
        let cluster = PgCluster {
            bin,
            data: root.join("data"),
            log: root.join("server.log"),
            as_postgres,
            port: free_port(),
            _dir: dir,
        };
        let init = cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                cluster.data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        Some(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The server inherits pg_ctl's standard streams: they must not be pipes anyone waits
    /// on, so they go nowhere and the server's own log (`-l`) says what went wrong.
    fn pg_ctl(&self, args: &[&str]) -> std::process::ExitStatus {
        let log = self.log.display().to_string();
        self.command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-l", &log])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    fn must(&self, args: &[&str]) {
        let status = self.pg_ctl(args);
        assert!(
            status.success(),
            "pg_ctl {args:?}: {status}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn start(&self) {
        let socket_dir = self.data.parent().unwrap().display().to_string();
        let options = format!(
            "-p {} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        self.must(&["-w", "-t", "30", "-o", &options, "start"]);
    }

    /// `fast`: open transactions are rolled back and every connection is cut.
    fn stop(&self) {
        self.must(&["-w", "-t", "30", "-m", "fast", "stop"]);
    }

    fn restart(&self) {
        self.must(&["-w", "-t", "30", "-m", "fast", "restart"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

#[test]
fn postgres_restart_during_writes_gives_503_then_recovers_without_a_torn_version() {
    let Some(pg) = PgCluster::create() else {
        missing("no initdb under /usr/lib/postgresql/*/bin");
        return;
    };
    pg.start();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let db_url = pg.url();
    let env = [("TERRACE_DATABASE_URL", db_url.as_str())];
    let (token, _) = bootstrap(&data_dir, &env);
    let server = terrace(&data_dir, &env).serve(&[], &root.path().join("server.log"));
    let client = client();
    assert_eq!(readyz(&client, &server.base_url).0, StatusCode::OK);
    let url = format!("{}/state/{ORG}/{WS}", server.base_url);
    let (writer, handle) = Writer::spawn(&client, url, &token);
    writer.wait_for_acks(3, Duration::from_secs(20));

    // Fast restarts under load, at varying moments: transactions in flight are rolled back
    // (or their commit's answer is lost), every pooled connection dies, and the pool must
    // replace them by itself.
    for _ in 0..3 {
        let noise = uuid::Uuid::new_v4().as_u128();
        std::thread::sleep(Duration::from_millis(10 + (noise % 150) as u64));
        pg.restart();
        writer.wait_for_acks(2, Duration::from_secs(20));
    }

    // A longer outage: writes answer 503 with Retry-After, /readyz names the database.
    pg.stop();
    let seen = writer.unavailable.load(Ordering::SeqCst);
    wait_until(
        "/readyz to report the database down",
        Duration::from_secs(10),
        || {
            let (status, body) = readyz(&client, &server.base_url);
            status == StatusCode::SERVICE_UNAVAILABLE
                && body["database"] == "unavailable"
                && body["blob_store"] == "ok"
        },
    );
    wait_until("a write answered 503", Duration::from_secs(20), || {
        writer.unavailable.load(Ordering::SeqCst) > seen
    });
    let acked_in_outage = writer.acked();
    pg.start();
    wait_until("/readyz to recover", Duration::from_secs(20), || {
        readyz(&client, &server.base_url).0 == StatusCode::OK
    });
    writer.wait_for_acks(3, Duration::from_secs(20));
    let last = writer.finish(handle);
    let slowest = writer.slowest_503_ms.load(Ordering::SeqCst);
    eprintln!(
        "acked {last} (at the outage: {acked_in_outage}); {} answers 503, slowest {slowest} ms",
        writer.unavailable.load(Ordering::SeqCst)
    );
    assert!(slowest < 10_000, "a 503 took {slowest} ms");

    assert_history(&client, &server.base_url, &token, last);
    drop(server);
    verify(&data_dir, &env);
}

// --- Object store hanging ----------------------------------------------------------------

/// A private moto (S3 emulator), killed when dropped. The shared one serves other tests.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(client: &Client) -> Option<Moto> {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/moto-venv/bin/moto_server");
        if !bin.is_file() {
            return None;
        }
        let port = free_port().to_string();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_until("moto to answer", Duration::from_secs(30), || {
            client
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .is_ok()
        });
        Some(moto)
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay in front of the store that can be switched off: its port then refuses
/// connections and the connections it carried are cut, like a store that went away.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    /// The relay's thread has taken the last switch into account.
    settled: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: std::net::SocketAddr) -> Relay {
        use std::net::{Shutdown, TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let settled = Arc::new(AtomicBool::new(true));
        let (up_flag, settled_flag) = (up.clone(), settled.clone());
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            let mut open: Vec<TcpStream> = Vec::new();
            loop {
                let want_up = up_flag.load(Ordering::SeqCst);
                match (&listener, want_up) {
                    (Some(_), false) => {
                        listener = None;
                        for conn in open.drain(..) {
                            let _ = conn.shutdown(Shutdown::Both);
                        }
                    }
                    // Binding the same port again works at once: the standard library sets
                    // SO_REUSEADDR.
                    (None, true) => {
                        listener = Some(TcpListener::bind(("127.0.0.1", port)).unwrap());
                    }
                    _ => {}
                }
                settled_flag.store(true, Ordering::SeqCst);
                let Some(accepting) = &listener else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                accepting.set_nonblocking(true).unwrap();
                match accepting.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        open.push(client.try_clone().unwrap());
                        for (mut from, mut to) in [
                            (client.try_clone().unwrap(), server.try_clone().unwrap()),
                            (server, client),
                        ] {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut from, &mut to);
                                let _ = to.shutdown(Shutdown::Both);
                                let _ = from.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("relay accept: {e}"),
                }
            }
        });
        Relay { port, up, settled }
    }

    fn switch(&self, on: bool) {
        self.settled.store(false, Ordering::SeqCst);
        self.up.store(on, Ordering::SeqCst);
        wait_until("the relay to switch", Duration::from_secs(5), || {
            self.settled.load(Ordering::SeqCst)
        });
    }
}

/// Two outages of the S3 store while writes flow: it goes away (connections refused and cut),
/// then it hangs (accepts connections, never answers). Killing moto would not do for either:
/// it keeps everything in memory, so a restarted moto is a different, empty store. A relay
/// switched off stands for the store going away; SIGSTOP is the hung store, and SIGCONT
/// brings back the same store with every object intact.
#[test]
fn object_store_outages_during_writes_give_503_then_recover_without_a_torn_version() {
    let client = client();
    let Some(moto) = Moto::start(&client) else {
        missing("moto is not installed in .cache/moto-venv (scripts/ensure-object-stores)");
        return;
    };
    let bucket = "faults";
    let created = client
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let relay = Relay::start(upstream);
    let endpoint = format!("http://127.0.0.1:{}", relay.port);
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let storage_url = format!("s3://{bucket}/{}", uuid::Uuid::new_v4());
    // PostgreSQL when there is one (always under `CI`), SQLite otherwise.
    let db_url = if under_ci() || std::env::var_os("TERRACE_TEST_POSTGRES_URL").is_some() {
        postgres_schema_url("faults")
    } else {
        None
    };
    let mut env = vec![
        ("TERRACE_STORAGE_URL", storage_url.as_str()),
        ("AWS_ENDPOINT", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    match &db_url {
        Some(url) => env.push(("TERRACE_DATABASE_URL", url)),
        None => eprintln!("TERRACE_TEST_POSTGRES_URL is not set: using SQLite"),
    }
    let (token, _) = bootstrap(&data_dir, &env);
    let server = terrace(&data_dir, &env).serve(&[], &root.path().join("server.log"));
    assert_eq!(readyz(&client, &server.base_url).0, StatusCode::OK);
    let url = format!("{}/state/{ORG}/{WS}", server.base_url);
    let (writer, handle) = Writer::spawn(&client, url, &token);
    writer.wait_for_acks(3, Duration::from_secs(20));
    let blob_store_down = || {
        let (status, body) = readyz(&client, &server.base_url);
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["blob_store"] == "unavailable"
            && body["database"] == "ok"
    };
    let ready = || readyz(&client, &server.base_url).0 == StatusCode::OK;

    // The store goes away: writes fail fast.
    relay.switch(false);
    wait_until(
        "/readyz to report the blob store gone",
        Duration::from_secs(10),
        blob_store_down,
    );
    let seen = writer.unavailable.load(Ordering::SeqCst);
    wait_until("a write answered 503", Duration::from_secs(20), || {
        writer.unavailable.load(Ordering::SeqCst) > seen + 1
    });
    let gone_slowest = writer.slowest_503_ms.swap(0, Ordering::SeqCst);
    relay.switch(true);
    wait_until("/readyz to recover", Duration::from_secs(20), ready);
    writer.wait_for_acks(3, Duration::from_secs(30));

    // The store hangs: a write in flight waits out the store's request timeout, then answers
    // 503. No hang, no 500.
    moto.signal("-STOP");
    wait_until(
        "/readyz to report the blob store hung",
        Duration::from_secs(10),
        blob_store_down,
    );
    let seen = writer.unavailable.load(Ordering::SeqCst);
    wait_until("a write answered 503", Duration::from_secs(40), || {
        writer.unavailable.load(Ordering::SeqCst) > seen
    });
    moto.signal("-CONT");
    wait_until("/readyz to recover", Duration::from_secs(20), ready);
    writer.wait_for_acks(3, Duration::from_secs(30));
    let last = writer.finish(handle);
    let hung_slowest = writer.slowest_503_ms.load(Ordering::SeqCst);
    eprintln!(
        "acked {last}; {} answers 503, slowest {gone_slowest} ms (store gone), \
         {hung_slowest} ms (store hung)",
        writer.unavailable.load(Ordering::SeqCst)
    );
    assert!(gone_slowest < 5_000, "a 503 took {gone_slowest} ms");
    assert!(hung_slowest < 30_000, "a 503 took {hung_slowest} ms");

    assert_history(&client, &server.base_url, &token, last);
    drop(server);
    // Every version row has its object: nothing half-written.
    verify(&data_dir, &env);
}

// --- A replica dies holding a lock -------------------------------------------------------

fn lock(client: &Client, base: &str, token: &str, id: &str) -> (StatusCode, String) {
    let resp = client
        .request(
            Method::from_bytes(b"LOCK").unwrap(),
            format!("{base}/state/{ORG}/{WS}"),
        )
        .basic_auth("terraform", Some(token))
        .body(lock_info(id))
        .send()
        .unwrap();
    (resp.status(), resp.text().unwrap())
}

fn unlock(client: &Client, base: &str, token: &str, body: String) -> StatusCode {
    client
        .request(
            Method::from_bytes(b"UNLOCK").unwrap(),
            format!("{base}/state/{ORG}/{WS}"),
        )
        .basic_auth("terraform", Some(token))
        .body(body)
        .send()
        .unwrap()
        .status()
}

fn write(
    client: &Client,
    base: &str,
    token: &str,
    serial: i64,
    lock_id: Option<&str>,
) -> StatusCode {
    let query = lock_id.map(|id| format!("?ID={id}")).unwrap_or_default();
    client
        .post(format!("{base}/state/{ORG}/{WS}{query}"))
        .basic_auth("terraform", Some(token))
        .body(body_for(serial))
        .send()
        .unwrap()
        .status()
}

fn stale_locks(client: &Client, base: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("terrace_stale_locks "))
        .unwrap_or_else(|| panic!("no terrace_stale_locks in {text}"))
        .parse()
        .unwrap()
}

fn set_lease(client: &Client, base: &str, admin: &str, settings: Value) {
    let resp = client
        .patch(format!("{base}/api/v1/orgs/{ORG}/workspaces/{WS}"))
        .bearer_auth(admin)
        .json(&settings)
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().unwrap());
}

/// SIGKILL: the replica gets no chance to release anything.
fn kill_9(mut server: Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[test]
fn a_lock_held_by_a_killed_replica_is_taken_over_after_its_lease_or_force_unlocked() {
    let Some(db_url) = postgres_schema_url("faults") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let log = root.path().join("server.log");
    let env = [("TERRACE_DATABASE_URL", db_url.as_str())];
    let (token, admin) = bootstrap(&data_dir, &env);
    let client = client();
    // Two replicas on one database and one blob directory.
    let a = terrace(&data_dir, &env).serve(&[], &log);
    let b = terrace(&data_dir, &env).serve(&[], &log);
    assert_eq!(write(&client, &b.base_url, &token, 1, None), StatusCode::OK);

    // With a lease and takeover allowed: replica A locks, then dies.
    let lease = Duration::from_secs(3);
    set_lease(
        &client,
        &b.base_url,
        &admin,
        serde_json::json!({ "lock_lease": "3s", "expire_stale_locks": true }),
    );
    let locked_at = Instant::now();
    assert_eq!(
        lock(&client, &a.base_url, &token, "held-by-a").0,
        StatusCode::OK
    );
    kill_9(a);
    let (status, holder) = lock(&client, &b.base_url, &token, "wants-b");
    let stale_early = stale_locks(&client, &b.base_url);
    // Only what happened before the lease ran out can be asserted (a slow machine may
    // already be past it).
    if locked_at.elapsed() < lease {
        assert_eq!(status, StatusCode::LOCKED, "{holder}");
        let holder: Value = serde_json::from_str(&holder).unwrap();
        assert_eq!(holder["ID"], "held-by-a");
        assert_eq!(stale_early, 0.0);
    }
    wait_until(
        "the dead replica's lock to go stale",
        Duration::from_secs(10),
        || stale_locks(&client, &b.base_url) == 1.0,
    );
    assert_eq!(
        lock(&client, &b.base_url, &token, "wants-b").0,
        StatusCode::OK
    );
    assert_eq!(stale_locks(&client, &b.base_url), 0.0);
    assert_eq!(
        write(&client, &b.base_url, &token, 2, Some("wants-b")),
        StatusCode::OK
    );
    assert_eq!(
        unlock(&client, &b.base_url, &token, lock_info("wants-b")),
        StatusCode::OK
    );

    // Without a lease the dead replica's lock stays until an admin force-unlocks it.
    set_lease(
        &client,
        &b.base_url,
        &admin,
        serde_json::json!({ "lock_lease": null, "expire_stale_locks": false }),
    );
    let a = terrace(&data_dir, &env).serve(&[], &log);
    assert_eq!(
        lock(&client, &a.base_url, &token, "held-by-a2").0,
        StatusCode::OK
    );
    kill_9(a);
    let (status, holder) = lock(&client, &b.base_url, &token, "wants-b2");
    assert_eq!(status, StatusCode::LOCKED, "{holder}");
    assert_eq!(stale_locks(&client, &b.base_url), 0.0);
    // `terraform force-unlock` sends UNLOCK without a body.
    assert_eq!(
        unlock(&client, &b.base_url, &admin, String::new()),
        StatusCode::OK
    );
    assert_eq!(
        lock(&client, &b.base_url, &token, "wants-b2").0,
        StatusCode::OK
    );
    assert_eq!(
        write(&client, &b.base_url, &token, 3, Some("wants-b2")),
        StatusCode::OK
    );
    assert_eq!(
        unlock(&client, &b.base_url, &token, lock_info("wants-b2")),
        StatusCode::OK
    );

    assert_history(&client, &b.base_url, &token, 3);
    drop(b);
    verify(&data_dir, &env);
}
