//! Deployments end to end: real `terrace serve` (HTTPS, no in-process runners), a real
//! external `terrace runner` process with a runner token, and real Terraform.
//!
//! The blueprint modules hold only variables, validations and outputs, so Terraform needs no
//! provider (nothing is downloaded): a plan's changes are output changes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Role, Terrace, terraform_bin};

const ORG_API: &str = "/api/v1/orgs/acme";

/// The blueprint module: validated variables, a sensitive input, plain and sensitive outputs.
fn web_module() -> Vec<(&'static str, String)> {
    vec![
        (
            "variables.tf",
            r#"variable "env" {
  type        = string
  description = "Where it runs."
  validation {
    condition     = contains(["dev", "prod"], var.env)
    error_message = "The env must be dev or prod."
  }
}

variable "cidr" {
  type = string
  validation {
    condition     = can(regex("^10\\.", var.cidr))
    error_message = "The cidr must be in 10/8."
  }
}

variable "replicas" {
  type    = number
  default = 1
}

variable "password" {
  type      = string
  sensitive = true
  default   = "hunter2"
}
"#
            .to_owned(),
        ),
        (
            "outputs.tf",
            r#"output "url" {
  value = "https://${var.env}.example.com/${var.cidr}/${var.replicas}"
}

output "secret" {
  value     = "s-${var.password}"
  sensitive = true
}
"#
            .to_owned(),
        ),
        ("README.md", "# Web\n\nA web service.\n".to_owned()),
    ]
}

/// A module whose plan fails: it reads a file that is not there.
fn broken_module() -> Vec<(&'static str, String)> {
    vec![(
        "main.tf",
        "output \"x\" {\n  value = file(\"${path.module}/missing.txt\")\n}\n".to_owned(),
    )]
}

fn targz(files: &[(&str, String)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, text.as_bytes())
            .expect("append to the archive");
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the archive")
}

fn call(
    server: &Terrace,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", server.base_url());
    let mut request = server
        .http()
        .request(method.clone(), &url)
        .header("Authorization", server.bearer(Role::Admin));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status();
    let text = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn publish(server: &Terrace, name: &str, version: &str, files: &[(&str, String)]) {
    publish_for(server, name, "null", version, files);
}

fn publish_for(
    server: &Terrace,
    name: &str,
    system: &str,
    version: &str,
    files: &[(&str, String)],
) {
    let url = format!(
        "{}/api/v1/modules/acme/{name}/{system}/{version}",
        server.base_url()
    );
    let response = server
        .http()
        .put(&url)
        .header("Authorization", server.bearer(Role::Write))
        .body(targz(files))
        .send()
        .expect("publish a module version");
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "PUT {url}: {}",
        response.text().unwrap_or_default()
    );
}

fn blueprint(server: &Terrace, name: &str) {
    blueprint_for(server, name, "null");
}

fn blueprint_for(server: &Terrace, name: &str, system: &str) {
    let (status, body) = call(
        server,
        reqwest::Method::POST,
        &format!("{ORG_API}/blueprints"),
        Some(json!({
            "name": name,
            "module": format!("acme/{name}/{system}"),
            "title": name,
            "status": "published",
            "auto_apply": true,
        })),
    );
    assert_eq!(
        status,
        StatusCode::CREATED,
        "create blueprint {name}: {body}"
    );
}

/// A `terrace runner` process; killed when dropped.
struct Runner(Child);

impl Runner {
    fn start(server: &Terrace, token: &str, name: &str) -> Runner {
        let ca = server.ca_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_terrace"));
        command
            .args([
                "runner",
                "--url",
                server.base_url(),
                "--token",
                token,
                "--name",
                name,
            ])
            .arg("--terraform")
            .arg(terraform_bin())
            .arg("--ca-cert")
            .arg(&ca)
            // Terraform (the runner's child) trusts the server's development CA through this.
            .env("SSL_CERT_FILE", &ca);
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start terrace runner");
        Runner(child)
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn runner_token(server: &Terrace) -> String {
    let output = server.cli(&["runner-token", "create", "--org", "acme"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn run(server: &Terrace, id: i64) -> Value {
    let (status, body) = call(
        server,
        reqwest::Method::GET,
        &format!("{ORG_API}/runs/{id}"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn log(server: &Terrace, id: i64) -> String {
    let url = format!("{}{ORG_API}/runs/{id}/logs", server.base_url());
    server
        .http()
        .get(&url)
        .header("Authorization", server.bearer(Role::Admin))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// Waits until run `id` reaches one of `statuses`; panics with its log otherwise.
fn wait_for(server: &Terrace, id: i64, statuses: &[&str], timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let r = run(server, id);
        let status = r["status"].as_str().unwrap_or_default().to_owned();
        if statuses.contains(&status.as_str()) {
            return r;
        }
        if start.elapsed() > timeout {
            panic!(
                "run {id} is {status}, not one of {statuses:?}: {r}\n--- log ---\n{}",
                log(server, id)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deployment(server: &Terrace, name: &str) -> Value {
    let (status, body) = call(
        server,
        reqwest::Method::GET,
        &format!("{ORG_API}/deployments/{name}"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn current_run(dep: &Value) -> i64 {
    dep["current_run"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no current run: {dep}"))
}

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn a_blueprint_deploys_changes_and_is_destroyed_through_an_external_runner() {
    require_terraform!();
    let server = Terrace::start_tls_with(&[("TERRACE_RUNNERS", "0")]);
    publish(&server, "web", "1.0.0", &web_module());
    publish(&server, "broken", "1.0.0", &broken_module());
    blueprint(&server, "web");
    blueprint(&server, "broken");
    let token = runner_token(&server);
    let _runner = Runner::start(&server, &token, "ext-1");

    // Bad inputs: one message per field, nothing created.
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(json!({"name": "web-bad", "blueprint": "web",
                    "inputs": {"env": "staging", "cidr": "192.168.0.0/16"}})),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("inputs.env"), "{text}");
    assert!(text.contains("inputs.cidr"), "{text}");
    let (status, _) = call(
        &server,
        reqwest::Method::GET,
        &format!("{ORG_API}/deployments/web-bad"),
        None,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Good inputs: planned, confirmed, applied; outputs on the deployment.
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(json!({"name": "web", "blueprint": "web",
                    "inputs": {"env": "dev", "cidr": "10.1.0.0/16", "password": "pw"}})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["inputs"]["password"], "(sensitive)", "{body}");
    let first = current_run(&body);
    let planned = wait_for(&server, first, &["planned"], TIMEOUT);
    assert_eq!(planned["has_changes"], true, "{planned}");
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/runs/{first}/apply"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for(&server, first, &["applied"], TIMEOUT);
    let dep = deployment(&server, "web");
    assert_eq!(
        dep["outputs"]["url"], "https://dev.example.com/10.1.0.0/16/1",
        "{dep}"
    );
    assert_ne!(
        dep["outputs"]["secret"], "s-pw",
        "sensitive output shown: {dep}"
    );
    assert!(
        !log(&server, first).contains("s-pw"),
        "sensitive value in the log"
    );

    // The state version records the run.
    let versions = server.state_versions("web");
    let last = versions.first().expect("a state version");
    assert_eq!(last["source"], "run", "{last}");
    assert_eq!(last["run_id"], first, "{last}");

    // New inputs: a new plan with a change.
    let (status, body) = call(
        &server,
        reqwest::Method::PATCH,
        &format!("{ORG_API}/deployments/web"),
        Some(json!({"inputs": {"env": "prod", "cidr": "10.1.0.0/16"}})),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = current_run(&body);
    assert_ne!(second, first);
    let planned = wait_for(&server, second, &["planned"], TIMEOUT);
    assert_eq!(planned["has_changes"], true, "{planned}");
    let changes = planned["plan"].to_string();
    assert!(
        changes.contains("url"),
        "the plan should change the url: {changes}"
    );
    call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/runs/{second}/apply"),
        None,
    );
    wait_for(&server, second, &["applied"], TIMEOUT);
    assert_eq!(
        deployment(&server, "web")["outputs"]["url"],
        "https://prod.example.com/10.1.0.0/16/1"
    );

    // Destroy: a destroy run, then archived; the workspace stays.
    let (status, body) = call(
        &server,
        reqwest::Method::DELETE,
        &format!("{ORG_API}/deployments/web"),
        None,
    );
    assert!(status.is_success(), "{status} {body}");
    let destroy = body["id"].as_i64().expect("DELETE answers the destroy run");
    let r = wait_for(&server, destroy, &["planned", "applied"], TIMEOUT);
    if r["status"] == "planned" {
        call(
            &server,
            reqwest::Method::POST,
            &format!("{ORG_API}/runs/{destroy}/apply"),
            None,
        );
        wait_for(&server, destroy, &["applied"], TIMEOUT);
    }
    let start = Instant::now();
    while deployment(&server, "web")["status"] != "archived" {
        assert!(start.elapsed() < TIMEOUT, "{}", deployment(&server, "web"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!server.state_versions("web").is_empty());

    // A failing plan: errored, with Terraform's error in the log.
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(json!({"name": "broken", "blueprint": "broken"})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let failing = current_run(&body);
    let r = wait_for(&server, failing, &["errored"], TIMEOUT);
    assert!(r["reason"].is_string(), "{r}");
    let text = log(&server, failing);
    assert!(
        text.contains("missing.txt"),
        "the log should hold Terraform's error: {text}"
    );
}

/// A blueprint of AWS-shaped resources, served by the provider double from Terrace's registry.
fn cloud_module(host: &str) -> Vec<(&'static str, String)> {
    vec![(
        "main.tf",
        format!(
            r#"terraform {{
  required_providers {{
    aws = {{
      source  = "{host}/acme/aws"
      version = "~> 1.0"
    }}
  }}
}}

provider "aws" {{
  region = var.region
}}

variable "region" {{
  type    = string
  default = "eu-west-1"
}}

variable "instance_type" {{
  type = string
  validation {{
    condition     = contains(["t3.micro", "t3.large"], var.instance_type)
    error_message = "Pick t3.micro or t3.large."
  }}
}}

variable "db_password" {{
  type      = string
  sensitive = true
}}

resource "aws_instance" "web" {{
  ami           = "ami-0abcdef"
  instance_type = var.instance_type
  tags          = {{ terrace-workspace = "cloud" }}
}}

resource "aws_ebs_volume" "data" {{
  availability_zone = "${{var.region}}a"
  size              = 100
  type              = "gp3"
}}

resource "aws_db_instance" "db" {{
  engine            = "postgres"
  instance_class    = "db.t3.micro"
  allocated_storage = 20
  password          = var.db_password
}}

output "instance_arn" {{
  value = aws_instance.web.arn
}}
"#
        ),
    )]
}

/// A server (HTTPS, no in-process runners) with the provider double published as `acme/aws`,
/// the module `module(host)` published as `acme/NAME/aws` with its blueprint, and an external
/// runner.
fn cloud_server(name: &str, module: fn(&str) -> Vec<(&'static str, String)>) -> (Terrace, Runner) {
    let server = Terrace::start_tls_with(&[("TERRACE_RUNNERS", "0")]);
    crate::harness::provider_double::publish_aws(&server, "1.0.0");
    publish_for(&server, name, "aws", "1.0.0", &module(&server.host()));
    blueprint_for(&server, name, "aws");
    let token = runner_token(&server);
    let runner = Runner::start(&server, &token, &format!("ext-{name}"));
    (server, runner)
}

/// The runner's Terraform installs a working provider from Terrace's own registry (the job
/// token reads it), plans and applies resources shaped like a cloud provider's, and a change of
/// input updates the resource in place.
#[test]
fn a_blueprint_of_cloud_resources_installs_its_provider_from_terrace_and_applies() {
    require_terraform!();
    require_gpg!();
    require_provider_double!();
    let (server, _runner) = cloud_server("cloud", cloud_module);

    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(json!({"name": "cloud", "blueprint": "cloud",
                    "inputs": {"instance_type": "t3.micro", "db_password": "hunter2"}})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = current_run(&body);
    let planned = wait_for(&server, first, &["planned", "errored"], TIMEOUT);
    assert_eq!(
        planned["status"],
        "planned",
        "{planned}\n{}",
        log(&server, first)
    );
    let plan = planned["plan"].to_string();
    for address in [
        "aws_instance.web",
        "aws_ebs_volume.data",
        "aws_db_instance.db",
    ] {
        assert!(plan.contains(address), "{address} not in the plan: {plan}");
    }
    let text = log(&server, first);
    assert!(
        text.contains(&format!("Installed {}/acme/aws v1.0.0", server.host())),
        "the provider should come from Terrace: {text}"
    );
    assert!(!text.contains("hunter2"), "sensitive input in the log");
    call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/runs/{first}/apply"),
        None,
    );
    wait_for(&server, first, &["applied"], TIMEOUT);
    let arn = deployment(&server, "cloud")["outputs"]["instance_arn"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        arn.starts_with("arn:aws:ec2:eu-west-1:123456789012:instance/i-"),
        "{arn}"
    );

    // A new instance type changes the instance in place, nothing else.
    let (status, body) = call(
        &server,
        reqwest::Method::PATCH,
        &format!("{ORG_API}/deployments/cloud"),
        Some(json!({"inputs": {"instance_type": "t3.large", "db_password": "hunter2"}})),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = current_run(&body);
    let planned = wait_for(&server, second, &["planned"], TIMEOUT);
    let changes = &planned["plan"]["resource_changes"];
    let changed: Vec<String> = changes
        .as_array()
        .unwrap_or_else(|| panic!("resource_changes in {planned}"))
        .iter()
        .filter(|c| c["actions"] != json!(["no-op"]))
        .map(|c| format!("{} {}", c["address"], c["actions"]))
        .collect();
    assert_eq!(
        changed,
        vec![r#""module.main.aws_instance.web" ["update"]"#.to_owned()],
        "{planned}"
    );
}

/// An HTTP endpoint the test controls, serving a state document for Terraform's
/// `terraform_remote_state` (http backend): `/hang` never answers, `/once` hangs on its first
/// request only. That is how a plan or an apply is made to take long with Terraform 1.0.3 and
/// no provider: reading the data source blocks on this endpoint.
struct SlowEndpoint {
    url: String,
    /// Requests held open right now: a hanging read ends when Terraform's connection closes.
    hanging: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SlowEndpoint {
    fn start() -> SlowEndpoint {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let first = std::sync::Arc::new(AtomicBool::new(true));
        let hanging = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hanging.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let first = first.clone();
                let hanging = counter.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                            break;
                        }
                    }
                    let hang = path.starts_with("/hang")
                        || (path.starts_with("/once") && first.swap(false, Ordering::SeqCst));
                    if hang {
                        // Hold the request until the client goes away.
                        hanging.fetch_add(1, Ordering::SeqCst);
                        let mut sink = [0u8; 64];
                        while matches!(std::io::Read::read(&mut reader, &mut sink), Ok(n) if n > 0)
                        {
                        }
                        hanging.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    let body = r#"{"version":4,"terraform_version":"1.0.3","serial":1,"lineage":"slow","outputs":{"ok":{"value":"yes","type":"string"}},"resources":[]}"#;
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        SlowEndpoint { url, hanging }
    }

    /// Waits until no request is held open any more, i.e. the Terraform reading it is gone.
    fn wait_until_released(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.hanging.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "Terraform still holds its request open {timeout:?} after its runner died"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A module reading remote state from `var.url`; with `at_apply` the address holds
/// `timestamp()`, unknown until apply, so Terraform reads it during apply.
fn slow_module(at_apply: bool) -> Vec<(&'static str, String)> {
    let address = if at_apply {
        "\"${var.url}?t=${timestamp()}\""
    } else {
        "var.url"
    };
    vec![(
        "main.tf",
        format!(
            "variable \"url\" {{\n  type = string\n}}\n\n\
             data \"terraform_remote_state\" \"slow\" {{\n  backend = \"http\"\n  config = {{\n    address = {address}\n  }}\n}}\n\n\
             output \"read\" {{\n  value = data.terraform_remote_state.slow.outputs\n}}\n"
        ),
    )]
}

fn create(server: &Terrace, name: &str, blueprint: &str, url: &str) -> i64 {
    let (status, body) = call(
        server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(
            json!({"name": name, "blueprint": blueprint, "auto_apply": true,
                    "inputs": {"url": url}}),
        ),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    current_run(&body)
}

fn slow_server() -> (Terrace, SlowEndpoint) {
    let server = Terrace::start_tls_with(&[("TERRACE_RUNNERS", "0")]);
    publish(&server, "slowplan", "1.0.0", &slow_module(false));
    publish(&server, "slowapply", "1.0.0", &slow_module(true));
    blueprint(&server, "slowplan");
    blueprint(&server, "slowapply");
    (server, SlowEndpoint::start())
}

#[test]
fn cancel_of_a_long_apply_stops_terraform() {
    require_terraform!();
    let (server, slow) = slow_server();
    let token = runner_token(&server);
    let _runner = Runner::start(&server, &token, "ext-cancel");
    let id = create(&server, "stuck", "slowapply", &format!("{}/hang", slow.url));
    wait_for(&server, id, &["applying"], TIMEOUT);
    // Let Terraform get to the blocking read.
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/runs/{id}/cancel"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    // Terraform waits for the read it is in after SIGINT; a second cancel kills it.
    std::thread::sleep(Duration::from_secs(5));
    if run(&server, id)["status"] == "applying" {
        call(
            &server,
            reqwest::Method::POST,
            &format!("{ORG_API}/runs/{id}/cancel"),
            None,
        );
    }
    let r = wait_for(&server, id, &["canceled"], Duration::from_secs(60));
    assert!(r["finished_at"].is_string(), "{r}");
    let text = log(&server, id);
    assert!(text.contains("interrupting Terraform"), "{text}");
}

#[test]
fn a_runner_killed_while_planning_leaves_the_run_to_another() {
    require_terraform!();
    let (server, slow) = slow_server();
    let token = runner_token(&server);
    let mut first = Runner::start(&server, &token, "ext-doomed");
    let id = create(&server, "replan", "slowplan", &format!("{}/once", slow.url));
    let r = wait_for(&server, id, &["planning"], TIMEOUT);
    assert_eq!(r["runner"], "ext-doomed-0", "{r}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        slow.hanging.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "Terraform should be blocked on its read"
    );
    first.kill9();
    slow.wait_until_released(Duration::from_secs(10));
    let _second = Runner::start(&server, &token, "ext-heir");
    // The lease (15 s) runs out; the run is planned again and, auto-applied, applied.
    let r = wait_for(
        &server,
        id,
        &["applied", "errored"],
        Duration::from_secs(150),
    );
    assert_eq!(r["status"], "applied", "{r}\n{}", log(&server, id));
    assert_eq!(r["runner"], "ext-heir-0", "{r}");
    assert_eq!(deployment(&server, "replan")["diverged"], false);
}

#[test]
fn a_runner_killed_while_applying_errors_the_run_and_flags_divergence() {
    require_terraform!();
    let (server, slow) = slow_server();
    let token = runner_token(&server);
    let mut first = Runner::start(&server, &token, "ext-doomed");
    let id = create(
        &server,
        "halfway",
        "slowapply",
        &format!("{}/hang", slow.url),
    );
    wait_for(&server, id, &["applying"], TIMEOUT);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        slow.hanging.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "Terraform should be blocked on its read"
    );
    first.kill9();
    // The dead runner's Terraform does not go on applying on its own.
    slow.wait_until_released(Duration::from_secs(10));
    let _second = Runner::start(&server, &token, "ext-heir");
    let r = wait_for(&server, id, &["errored"], Duration::from_secs(120));
    assert_eq!(r["reason"], "runner lost during apply", "{r}");
    assert_eq!(deployment(&server, "halfway")["diverged"], true);
}

/// The module of the drain test: one input, one output, nothing to download.
fn tiny_module() -> Vec<(&'static str, String)> {
    vec![(
        "main.tf",
        "variable \"n\" {\n  type = number\n}\n\noutput \"n\" {\n  value = var.n\n}\n".into(),
    )]
}

/// Two `terrace serve` replicas on one PostgreSQL database and one bucket, a `terrace runner`
/// process on each, 50 queued plan runs: each is executed exactly once (one `terraform plan` in
/// its log), and both runners take part.
#[test]
fn two_replicas_and_two_runner_processes_run_fifty_queued_runs_once_each() {
    require_terraform!();
    let Some(mut settings) = crate::replicas::shared_settings() else {
        return;
    };
    settings.push(("TERRACE_RUNNERS", "0".to_owned()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replicas = Terrace::start_replicas_tls(2, &settings);
    publish(&replicas[0], "tiny", "1.0.0", &tiny_module());
    blueprint(&replicas[0], "tiny");
    let mut ids = Vec::new();
    for n in 0..50 {
        let (status, body) = call(
            &replicas[n % 2],
            reqwest::Method::POST,
            &format!("{ORG_API}/deployments"),
            Some(json!({"name": format!("tiny-{n}"), "blueprint": "tiny", "inputs": {"n": n}})),
        );
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(current_run(&body));
    }
    let token = runner_token(&replicas[0]);
    let _a = Runner::start(&replicas[0], &token, "drain-a");
    let _b = Runner::start(&replicas[1], &token, "drain-b");
    let mut runners = std::collections::HashMap::<String, usize>::new();
    for (n, id) in ids.iter().enumerate() {
        let r = wait_for(
            &replicas[n % 2],
            *id,
            &["planned", "errored"],
            Duration::from_secs(600),
        );
        let text = log(&replicas[(n + 1) % 2], *id);
        assert_eq!(r["status"], "planned", "{r}\n{text}");
        assert_eq!(
            text.matches("$ terraform plan").count(),
            1,
            "run {id}:\n{text}"
        );
        *runners
            .entry(r["runner"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert_eq!(runners.values().sum::<usize>(), 50, "{runners:?}");
    assert!(
        runners.keys().any(|r| r.starts_with("drain-a"))
            && runners.keys().any(|r| r.starts_with("drain-b")),
        "both runners should have run some: {runners:?}"
    );
}

/// A webhook receiver on a loopback port: records each request's body, answers 200.
struct Hooks {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Hooks {
    fn start() -> Hooks {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("receiver address")
        );
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(json) = serde_json::from_slice(&body)
                {
                    seen.lock().expect("receiver log").push(json);
                }
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Hooks { url, bodies }
    }

    fn kinds_of_run(&self, run: i64) -> Vec<String> {
        self.bodies
            .lock()
            .expect("receiver log")
            .iter()
            .filter(|b| b["data"]["run"]["id"] == run)
            .map(|b| b["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// A run of real Terraform through an external runner raises its notification events: a
/// subscriber hears it created, planning, planned and needing attention, then applying,
/// applied and completed once confirmed.
#[test]
fn a_real_run_raises_its_notification_events() {
    require_terraform!();
    let server = Terrace::start_tls_with(&[
        ("TERRACE_RUNNERS", "0"),
        ("TERRACE_NOTIFICATIONS_ALLOW_PRIVATE", "true"),
    ]);
    let hooks = Hooks::start();
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/notifications"),
        Some(json!({"name": "runs", "url": hooks.url, "events": ["run:*"], "workspace": "tiny-*"})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    publish(&server, "tiny", "1.0.0", &tiny_module());
    blueprint(&server, "tiny");
    let token = runner_token(&server);
    let _runner = Runner::start(&server, &token, "notify");
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(json!({"name": "tiny-1", "blueprint": "tiny", "inputs": {"n": 1}})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = current_run(&body);
    wait_for(&server, id, &["planned"], TIMEOUT);
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/runs/{id}/apply"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for(&server, id, &["applied"], TIMEOUT);
    let expected = [
        "run:created",
        "run:planning",
        "run:planned",
        "run:needs_attention",
        "run:applying",
        "run:applied",
        "run:completed",
    ];
    let start = Instant::now();
    while hooks.kinds_of_run(id).len() < expected.len() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "events so far: {:?}",
            hooks.kinds_of_run(id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut got = hooks.kinds_of_run(id);
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(got, want);
}

/// Resources the cost estimate prices from the sample catalogue, and one it has no rule for.
fn priced_module(host: &str) -> Vec<(&'static str, String)> {
    vec![(
        "main.tf",
        format!(
            r#"terraform {{
  required_providers {{
    aws = {{
      source  = "{host}/acme/aws"
      version = "~> 1.0"
    }}
  }}
}}

provider "aws" {{
  region = "us-east-1"
}}

resource "aws_instance" "web" {{
  ami           = "ami-0abcdef"
  instance_type = "t3.micro"
}}

resource "aws_ebs_volume" "data" {{
  availability_zone = "us-east-1a"
  size              = 100
  type              = "gp3"
}}

resource "aws_db_instance" "db" {{
  engine            = "postgres"
  instance_class    = "db.t3.micro"
  allocated_storage = 20
  multi_az          = false
}}

resource "aws_nat_gateway" "nat" {{
  subnet_id = "subnet-0abc"
}}

resource "aws_s3_bucket" "assets" {{
  bucket = "priced-assets"
}}
"#
        ),
    )]
}

/// A real plan of AWS-shaped resources (Terraform, the provider double from Terrace's registry,
/// an external runner) gets its cost phase: the estimate kept on the run matches figures
/// computed by hand from the sample catalogue, the bucket is unpriced, and after the apply the
/// workspace's state costs the same.
#[test]
fn a_planned_run_is_estimated_with_the_sample_catalogue() {
    require_terraform!();
    require_gpg!();
    require_provider_double!();
    let (server, _runner) = cloud_server("priced", priced_module);
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/deployments"),
        Some(json!({"name": "priced", "blueprint": "priced"})),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = current_run(&body);
    let planned = wait_for(&server, id, &["planned", "errored"], TIMEOUT);
    assert_eq!(
        planned["status"],
        "planned",
        "{planned}\n{}",
        log(&server, id)
    );

    // Sample catalogue, us-east-1, 730 hours a month.
    let expected = 0.0104 * 730.0 // t3.micro
        + 0.08 * 100.0 // 100 GB gp3
        + 0.018 * 730.0 + 0.115 * 20.0 // db.t3.micro PostgreSQL Single-AZ, 20 GB
        + 0.045 * 730.0 + 0.045 * 10.0; // NAT gateway, 10 GB processed (usage default)
    let close = |v: &Value, want: f64| v.as_f64().is_some_and(|v| (v - want).abs() < 1e-6);
    let (status, cost) = call(
        &server,
        reqwest::Method::GET,
        &format!("{ORG_API}/runs/{id}/cost"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{cost}");
    assert_eq!(cost["catalogue"]["sample"], true, "{cost}");
    assert!(close(&cost["after"]["monthly"], expected), "{cost}");
    assert!(close(&cost["delta"]["monthly"], expected), "{cost}");
    assert_eq!(
        cost["unpriced"][0]["address"], "module.main.aws_s3_bucket.assets",
        "{cost}"
    );
    call(
        &server,
        reqwest::Method::POST,
        &format!("{ORG_API}/runs/{id}/apply"),
        None,
    );
    wait_for(&server, id, &["applied"], TIMEOUT);
    let (status, state_cost) = call(
        &server,
        reqwest::Method::GET,
        &format!("{ORG_API}/workspaces/priced/cost"),
        None,
    );
    assert_eq!(status, StatusCode::OK, "{state_cost}");
    assert!(close(&state_cost["monthly"], expected), "{state_cost}");
    assert_eq!(
        state_cost["unpriced"].as_array().map(Vec::len),
        Some(1),
        "{state_cost}"
    );
}
