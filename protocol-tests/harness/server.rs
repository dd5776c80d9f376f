//! One `terrace serve` process per test, bootstrapped through the `terrace`
//! CLI, plus the plain HTTP calls a test makes around Terraform: taking and
//! releasing locks, reading state and the management API.
//!
//! [`Terrace::start`] serves plain HTTP (enough for the http backend);
//! [`Terrace::start_tls`] serves HTTPS with the server's development CA, which
//! registry tests need because Terraform discovers registry hosts over HTTPS
//! only. [`Terrace::start_replicas`] starts several servers on one shared
//! database and blob store.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use reqwest::Certificate;
use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The organisation every test works in; the examples use it too.
pub const ORG: &str = "acme";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const READY_PREFIX: &str = "listening on ";

/// Token roles, as accepted by `terrace token create --role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Write,
    Read,
}

impl Role {
    const ALL: [Role; 3] = [Role::Admin, Role::Write, Role::Read];

    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Write => "write",
            Role::Read => "read",
        }
    }
}

/// A running Terrace server with an org and one token per role.
pub struct Terrace {
    // Declared first so the process stops before its directory is removed.
    process: ServerProcess,
    base_url: String,
    tokens: HashMap<Role, String>,
    http: Client,
    /// The development CA the server's certificate chains to, when serving HTTPS.
    ca_path: Option<PathBuf>,
    _root: TempDir,
}

impl Terrace {
    /// Starts `terrace serve` on a free port with a fresh data directory,
    /// then creates the org and the tokens with the CLI.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`Terrace::start`], but serving HTTPS (`terrace serve --dev-tls`).
    /// The server creates `<data dir>/tls/ca.pem`; [`Terrace::http`] trusts it
    /// and Terraform is pointed at it through `SSL_CERT_FILE`.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    /// Like [`Terrace::start_tls`], with extra `TERRACE_*` settings for the server.
    pub fn start_tls_with(settings: &[(&str, &str)]) -> Self {
        Self::start_configured(true, settings)
    }

    fn start_with(tls: bool) -> Self {
        Self::start_configured(tls, &[])
    }

    /// Starts `count` `terrace serve` processes on plain HTTP that share what `settings`
    /// configures: one database (`TERRACE_DATABASE_URL`), one blob store
    /// (`TERRACE_STORAGE_URL`, `AWS_*`) and one master key (`TERRACE_ENCRYPTION_KEY`, which
    /// every replica needs). Each has its own port and data directory. The org and the tokens
    /// are created once, in the shared database, so every replica accepts them.
    pub fn start_replicas(count: usize, settings: &[(&str, &str)]) -> Vec<Self> {
        assert!(count > 0, "start at least one replica");
        // One after the other: the first one migrates the shared database.
        let first = Self::start_configured(false, settings);
        let tokens = first.tokens.clone();
        let mut replicas = vec![first];
        for _ in 1..count {
            let (root, process, base_url) = spawn_serve(false, settings);
            replicas.push(Self::assemble(
                false,
                root,
                process,
                base_url,
                tokens.clone(),
            ));
        }
        replicas
    }

    fn start_configured(tls: bool, settings: &[(&str, &str)]) -> Self {
        let (root, process, base_url) = spawn_serve(tls, settings);

        process.run_cli(&["org", "create", ORG]);
        let tokens = Role::ALL
            .into_iter()
            .map(|role| {
                let label = format!("protocol-tests-{}", role.as_str());
                let args = ["token", "create", "--org", ORG, "--role", role.as_str()];
                let token = process.run_cli(&[&args[..], &["--name", &label]].concat());
                assert!(
                    !token.is_empty() && !token.contains(char::is_whitespace),
                    "`terrace token create` should print only the token, got {token:?}"
                );
                (role, token)
            })
            .collect();
        Self::assemble(tls, root, process, base_url, tokens)
    }

    /// The handle of a started server whose org and tokens exist.
    fn assemble(
        tls: bool,
        root: TempDir,
        process: ServerProcess,
        base_url: String,
        tokens: HashMap<Role, String>,
    ) -> Self {
        let (http, ca_path) = if tls {
            assert!(
                base_url.starts_with("https://"),
                "`terrace serve --dev-tls` should listen on https, got {base_url}"
            );
            let ca_path = process.data_dir.join("tls").join("ca.pem");
            (tls_client(&ca_path), Some(ca_path))
        } else {
            (plain_client(), None)
        };

        Terrace {
            process,
            base_url,
            tokens,
            http,
            ca_path,
            _root: root,
        }
    }

    /// Where the server listens, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The token created for `role`.
    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    /// `host:port` as registry addresses and CLI `credentials` blocks name it,
    /// e.g. `127.0.0.1:41234` (module hosts need a dot, so never `localhost`).
    pub fn host(&self) -> String {
        let rest = self
            .base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, rest)| rest);
        rest.trim_end_matches('/').to_owned()
    }

    /// The CA certificate (PEM) to trust; only for servers from [`Terrace::start_tls`].
    pub fn ca_path(&self) -> PathBuf {
        self.ca_path
            .clone()
            .expect("ca_path() needs a server from Terrace::start_tls()")
    }

    /// An HTTP client for this server (trusting its CA when it serves HTTPS).
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// The `Authorization` header value for `role`: `Bearer <token>`.
    pub fn bearer(&self, role: Role) -> String {
        format!("Bearer {}", self.token(role))
    }

    /// Runs a `terrace` CLI subcommand as a user would (same data directory and
    /// settings as the server, no inherited `TERRACE_*` settings) and returns its output.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        self.process
            .command()
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run the terrace CLI")
    }

    /// Like [`Terrace::cli`], with `input` written to the command's stdin.
    pub fn cli_with_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .process
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the terrace CLI");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write the CLI's stdin");
        child.wait_with_output().expect("run the terrace CLI")
    }

    /// The http backend address of `workspace`.
    pub fn state_url(&self, workspace: &str) -> String {
        format!("{}/state/{ORG}/{workspace}", self.base_url)
    }

    /// The POST/DELETE lock address of `workspace`.
    pub fn lock_url(&self, workspace: &str) -> String {
        format!("{}/lock", self.state_url(workspace))
    }

    fn api_url(&self, workspace: &str, tail: &str) -> String {
        format!(
            "{}/api/v1/orgs/{ORG}/workspaces/{workspace}/{tail}",
            self.base_url
        )
    }

    /// Sends `LOCK` with a lock info body carrying `lock_id`.
    pub fn lock(&self, workspace: &str, role: Role, lock_id: &str) -> Response {
        let body = lock_info(lock_id).to_string();
        self.state_request(extension_method(b"LOCK"), workspace, role)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .expect("send LOCK")
    }

    /// Takes the lock of `workspace` as another client would, asserting success.
    pub fn hold_lock(&self, workspace: &str, lock_id: &str) {
        let response = self.lock(workspace, Role::Write, lock_id);
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "LOCK {} should succeed: {}",
            self.state_url(workspace),
            response.text().unwrap_or_default()
        );
    }

    /// The current state of `workspace` as the http backend returns it, if any.
    pub fn pull_state(&self, workspace: &str) -> Option<Value> {
        self.pull_state_bytes(workspace)
            .map(|bytes| serde_json::from_slice(&bytes).expect("state is JSON"))
    }

    /// The raw body of `GET` on the state address; `None` for "no state yet".
    pub fn pull_state_bytes(&self, workspace: &str) -> Option<Vec<u8>> {
        let response = self
            .state_request(Method::GET, workspace, Role::Read)
            .send()
            .expect("send GET state");
        match response.status() {
            // Terraform reads an empty 200, a 204 and a 404 all as "no state yet".
            StatusCode::OK => Some(response.bytes().expect("read state body").to_vec())
                .filter(|body| !body.is_empty()),
            StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => None,
            status => panic!("GET state answered {status}: {}", text(response)),
        }
    }

    /// The lock info JSON Terraform sent for the lock held on `workspace`,
    /// from the management API (which wraps it as `info` next to its own
    /// summary fields).
    pub fn lock_holder(&self, workspace: &str) -> Option<Value> {
        let response = self.api_get(workspace, "lock");
        match response.status() {
            StatusCode::OK => {
                let mut body: Value = response.json().expect("lock is JSON");
                let info = match body.get_mut("info") {
                    Some(info) => info.take(),
                    None => body.clone(),
                };
                if let Some(id) = body.get("id") {
                    assert_eq!(info["ID"], *id, "lock summary and lock info disagree");
                }
                Some(info)
            }
            StatusCode::NOT_FOUND => None,
            status => panic!("GET lock answered {status}: {}", text(response)),
        }
    }

    /// State versions of `workspace`, newest first. A workspace that was never
    /// written to may not exist yet, so a 404 counts as "no versions".
    pub fn state_versions(&self, workspace: &str) -> Vec<Value> {
        let response = self.api_get(workspace, "state-versions");
        match response.status() {
            StatusCode::OK => {
                let mut body: Value = response.json().expect("state versions are JSON");
                match body["data"].take() {
                    Value::Array(versions) => versions,
                    other => panic!("state versions `data` should be an array, got {other}"),
                }
            }
            StatusCode::NOT_FOUND => Vec::new(),
            status => panic!("GET state-versions answered {status}: {}", text(response)),
        }
    }

    /// The stored content of the newest version of `workspace` with `serial`.
    pub fn state_version(&self, workspace: &str, serial: i64) -> Value {
        let response = self.api_get(workspace, &format!("state-versions/{serial}"));
        match response.status() {
            StatusCode::OK => response.json().expect("a state version is JSON"),
            status => panic!(
                "GET state-versions/{serial} answered {status}: {}",
                text(response)
            ),
        }
    }

    fn state_request(
        &self,
        method: Method,
        workspace: &str,
        role: Role,
    ) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, self.state_url(workspace))
            .basic_auth("terraform", Some(self.token(role)))
    }

    fn api_get(&self, workspace: &str, tail: &str) -> Response {
        self.http
            .get(self.api_url(workspace, tail))
            .bearer_auth(self.token(Role::Admin))
            .send()
            .expect("send management API request")
    }
}

/// Lock info JSON as Terraform sends it (`statemgr.LockInfo`, Go field names).
pub fn lock_info(lock_id: &str) -> Value {
    json!({
        "ID": lock_id,
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": "protocol-tests@harness",
        "Version": "1.0.3",
        "Created": "2026-01-01T00:00:00Z",
        "Path": "",
    })
}

fn extension_method(name: &[u8]) -> Method {
    Method::from_bytes(name).expect("valid HTTP method token")
}

fn text(response: Response) -> String {
    response.text().unwrap_or_else(|error| format!("<{error}>"))
}

/// A `terrace` command whose configuration comes only from this test.
fn terrace_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_terrace"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TERRACE_") {
            command.env_remove(name);
        }
    }
    command
        .env("TERRACE_LISTEN", "127.0.0.1:0")
        .env("TERRACE_DATA_DIR", data_dir)
        .env("TERRACE_MIRROR_ORG", ORG);
    command
}

/// Starts `terrace serve` on a free port with a fresh data directory and waits until it
/// listens; returns the directory (removed when dropped), the process and the base URL.
fn spawn_serve(tls: bool, settings: &[(&str, &str)]) -> (TempDir, ServerProcess, String) {
    let root = tempfile::Builder::new()
        .prefix("terrace-protocol-")
        .tempdir()
        .expect("create a temporary directory for the server");
    let data_dir = root.path().join("data");
    let log_path = root.path().join("server.log");
    let log = File::create(&log_path).expect("create the server log file");

    let mut command = terrace_command(&data_dir);
    command.arg("serve").envs(settings.iter().copied());
    if tls {
        command.arg("--dev-tls");
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn `terrace serve`");
    let mut process = ServerProcess {
        child,
        log_path,
        data_dir,
        settings: settings
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    };
    let base_url = process.wait_until_listening();
    (root, process, base_url)
}

/// The `terrace serve` child; stopped with SIGTERM when dropped.
struct ServerProcess {
    child: Child,
    log_path: PathBuf,
    data_dir: PathBuf,
    /// The server's extra settings, which its CLI commands get too: with a shared database
    /// or blob store they must address the same ones.
    settings: Vec<(String, String)>,
}

impl ServerProcess {
    /// A `terrace` command configured like the server.
    fn command(&self) -> Command {
        let mut command = terrace_command(&self.data_dir);
        command.envs(self.settings.iter().map(|(name, value)| (name, value)));
        command
    }

    /// Reads stdout until the readiness line and returns the base URL from it.
    fn wait_until_listening(&mut self) -> String {
        let stdout = self.child.stdout.take().expect("server stdout is piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        // Keeps draining stdout after readiness so the server never writes
        // into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(url) = line.trim().strip_prefix(READY_PREFIX) {
                        return url.trim_end_matches('/').to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`terrace serve` printed no `{READY_PREFIX}…` line within {STARTUP_TIMEOUT:?}\n{}",
                    self.log()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for `terrace serve`");
                    panic!(
                        "`terrace serve` exited with {status} before listening\n{}",
                        self.log()
                    );
                }
            }
        }
    }

    /// Runs a `terrace` CLI subcommand on the same data directory and returns its stdout.
    fn run_cli(&self, args: &[&str]) -> String {
        let output = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the terrace CLI");
        assert!(
            output.status.success(),
            "`terrace {}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        format!("--- terrace serve log ---\n{log}")
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Graceful first: the server should finish in-flight requests on SIGTERM.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// A client for the plain-HTTP server; reqwest is built without a default TLS provider.
fn plain_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

/// A client that trusts only the server's development CA.
fn tls_client(ca_path: &Path) -> Client {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca_path)
        .unwrap_or_else(|error| panic!("read {}: {error}", ca_path.display()));
    let ca = Certificate::from_pem(&pem).expect("the development CA is PEM");
    Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("build an HTTPS client trusting the development CA")
}
