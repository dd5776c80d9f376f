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
use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Certificate;
use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::testkit::server::{Server, Setup};

/// The organisation every test works in; the examples use it too.
pub const ORG: &str = "acme";

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
    process: Server,
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
        Self::replicas(false, count, settings)
    }

    /// Like [`Terrace::start_replicas`], serving HTTPS: the first replica makes the development
    /// CA and certificate, and the others serve the same certificate (as replicas behind one
    /// name do), so one CA file ([`Terrace::ca_path`]) is trusted by all of them.
    pub fn start_replicas_tls(count: usize, settings: &[(&str, &str)]) -> Vec<Self> {
        Self::replicas(true, count, settings)
    }

    fn replicas(tls: bool, count: usize, settings: &[(&str, &str)]) -> Vec<Self> {
        assert!(count > 0, "start at least one replica");
        // One after the other: the first one migrates the shared database.
        let first = Self::start_configured(tls, settings);
        let tokens = first.tokens.clone();
        let mut shared = settings.to_vec();
        let tls_dir = first.process.setup().data_dir().join("tls");
        let (cert, key) = (tls_dir.join("cert.pem"), tls_dir.join("key.pem"));
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        if tls {
            shared.extend([("TERRACE_TLS_CERT", &*cert), ("TERRACE_TLS_KEY", &*key)]);
        }
        let ca_path = first.ca_path.clone();
        let mut replicas = vec![first];
        for _ in 1..count {
            let (root, process, base_url) = spawn_serve(false, &shared);
            let mut replica = Self::assemble(false, root, process, base_url, tokens.clone());
            if let Some(ca) = &ca_path {
                replica.http = tls_client(ca);
                replica.ca_path = Some(ca.clone());
            }
            replicas.push(replica);
        }
        replicas
    }

    fn start_configured(tls: bool, settings: &[(&str, &str)]) -> Self {
        let (root, process, base_url) = spawn_serve(tls, settings);

        process.setup().cli(&["org", "create", ORG]);
        let tokens = Role::ALL
            .into_iter()
            .map(|role| {
                let label = format!("protocol-tests-{}", role.as_str());
                let args = ["token", "create", "--org", ORG, "--role", role.as_str()];
                let token = process
                    .setup()
                    .cli(&[&args[..], &["--name", &label]].concat());
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
        process: Server,
        base_url: String,
        tokens: HashMap<Role, String>,
    ) -> Self {
        let (http, ca_path) = if tls {
            assert!(
                base_url.starts_with("https://"),
                "`terrace serve --dev-tls` should listen on https, got {base_url}"
            );
            let ca_path = process.setup().data_dir().join("tls").join("ca.pem");
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

    /// The server's log (stderr) so far.
    pub fn log(&self) -> String {
        self.process.log()
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
            .setup()
            .command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run the terrace CLI")
    }

    /// Like [`Terrace::cli`], with `input` written to the command's stdin.
    pub fn cli_with_stdin(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .process
            .setup()
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

/// Starts `terrace serve` on a free port with a fresh data directory and waits until it
/// listens; returns the directory (removed when dropped), the process (stopped with SIGTERM
/// when dropped) and the base URL. Its CLI commands get the same settings: with a shared
/// database or blob store they must address the same ones.
fn spawn_serve(tls: bool, settings: &[(&str, &str)]) -> (TempDir, Server, String) {
    let root = tempfile::Builder::new()
        .prefix("terrace-protocol-")
        .tempdir()
        .expect("create a temporary directory for the server");
    let setup =
        Setup::new(root.path().join("data"), &[("TERRACE_MIRROR_ORG", ORG)]).with_env(settings);
    let args: &[&str] = if tls { &["--dev-tls"] } else { &[] };
    let process = setup.serve(args, &root.path().join("server.log"));
    let base_url = process.base_url.clone();
    (root, process, base_url)
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
