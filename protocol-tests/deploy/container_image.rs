//! The container image, built from the top-level `Dockerfile` with podman and run for real:
//! it serves on 0.0.0.0:8080 inside the container as a non-root user with `/data` as its
//! volume, passes its own HEALTHCHECK, takes an org and a token made with the CLI inside the
//! container, keeps Terraform 1.0.3's state through the http backend, finishes a request in
//! flight when it gets SIGTERM, and keeps the data across a restart.
//!
//! The image is the `runtime-prebuilt` target with the `terrace` binary this test run built
//! (stripped of debug info), so nothing is compiled twice; `scripts/release` builds the full
//! multi-stage image. The base image is Debian bookworm made by `scripts/ensure-deploy-tools`
//! (no image can be pulled here). The runtime stage's layers are cached between runs (tagged
//! `RUNTIME_BASE`); each run adds, and removes again, only the layer with its binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use super::{free_port, repo_root, require_tool, run_ok, show};
use crate::harness::Workdir;

/// The runtime stage without the binary, tagged so that its layers stay cached across runs.
const RUNTIME_BASE: &str = "localhost/terrace-runtime-base:test";
const DEFAULT_BASE_IMAGE: &str = "localhost/terrace-base:bookworm";

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = require_tool!("TERRACE_HADOLINT", "hadolint");
    run_ok(Command::new(hadolint).current_dir(repo_root()).args([
        "--config",
        ".hadolint.yaml",
        "Dockerfile",
    ]));
}

/// An image tag of this test run (runs may overlap), removed when dropped.
struct Image {
    podman: PathBuf,
    tag: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new(&self.podman).args(["rmi", &self.tag]).output();
    }
}

/// A container, removed (with its anonymous volume) when dropped.
struct Container {
    podman: PathBuf,
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(&self.podman)
            .args(["rm", "--force", "--volumes", "--time", "0", &self.name])
            .output();
    }
}

impl Container {
    fn podman(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.podman)
            .args(args)
            .output()
            .expect("run podman")
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["exec", self.name.as_str()];
        full.extend_from_slice(args);
        let output = self.podman(&full);
        assert!(
            output.status.success(),
            "podman {full:?}: {}",
            show(&output)
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 output")
            .trim()
            .to_owned()
    }

    fn logs(&self) -> String {
        show(&self.podman(&["logs", &self.name]))
    }

    /// Waits until `/healthz` answers 200 through the published port.
    fn wait_healthy(&self, client: &Client, base: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if client
                .get(format!("{base}/healthz"))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not become healthy:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Builds the image from `Dockerfile` with this run's binary; returns the image's JSON config.
fn build_image(podman: &Path, base: &str, image: &Image) -> Value {
    let context = tempfile::tempdir().expect("temporary build context");
    let binary = context.path().join("terrace");
    let stripped = Command::new("objcopy")
        .args(["--strip-debug", env!("CARGO_BIN_EXE_terrace")])
        .arg(&binary)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_terrace"), &binary).expect("copy the binary");
    }
    for (target, tag) in [
        ("runtime-base", RUNTIME_BASE),
        ("runtime-prebuilt", image.tag.as_str()),
    ] {
        run_ok(
            Command::new(podman)
                .args(["build", "--pull=never", "--format=docker", "--network=host"])
                .args(["--target", target])
                .args(["--build-arg", &format!("BASE_IMAGE={base}")])
                .args(["--tag", tag, "--file"])
                .arg(repo_root().join("Dockerfile"))
                .arg(context.path()),
        );
    }
    let inspected = run_ok(Command::new(podman).args(["image", "inspect", &image.tag]));
    let images: Value = serde_json::from_slice(&inspected.stdout).expect("inspect JSON");
    images[0].clone()
}

#[test]
fn container_image_serves_terraform_and_drains_on_sigterm() {
    let podman = require_tool!("TERRACE_PODMAN", "podman");
    require_terraform!();
    let base = std::env::var("TERRACE_TEST_BASE_IMAGE").unwrap_or(DEFAULT_BASE_IMAGE.into());
    let has_base = Command::new(&podman)
        .args(["image", "exists", &base])
        .status()
        .is_ok_and(|s| s.success());
    if !has_base {
        let hint = format!("no base image {base} (run scripts/ensure-deploy-tools)");
        assert!(std::env::var_os("CI").is_none(), "{hint}");
        eprintln!("skipping container test: {hint}");
        return;
    }

    let port = free_port();
    let tagged = Image {
        podman: podman.clone(),
        tag: format!("localhost/terrace:test-{}-{port}", std::process::id()),
    };
    let image = build_image(&podman, &base, &tagged);
    let config = &image["Config"];
    assert_eq!(config["User"], "10001:10001", "{config:#}");
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "{config:#}"
    );
    assert!(config["Volumes"].get("/data").is_some(), "{config:#}");
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"TERRACE_LISTEN=0.0.0.0:8080"), "{env:?}");
    assert!(env.contains(&"TERRACE_DATA_DIR=/data"), "{env:?}");
    let health = image["Healthcheck"]["Test"].to_string();
    assert!(health.contains("/healthz"), "{image:#}");

    let container = Container {
        podman: podman.clone(),
        name: format!("terrace-test-{}-{port}", std::process::id()),
    };
    run_ok(
        Command::new(&podman)
            .args(["run", "--detach", "--name", &container.name])
            // The health check runs on demand below (its timer needs systemd).
            .args(["--health-interval", "disable"])
            .args(["--publish", &format!("127.0.0.1:{port}:8080")])
            .arg(&tagged.tag),
    );
    let base_url = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new();
    container.wait_healthy(&client, &base_url);
    let health = container.podman(&["healthcheck", "run", &container.name]);
    assert!(health.status.success(), "HEALTHCHECK: {}", show(&health));

    // The server runs as the image's user and keeps its data in the /data volume.
    assert_eq!(container.exec(&["id", "-u"]), "10001");
    assert_eq!(
        container.exec(&["stat", "-c", "%u", "/data/terrace.db"]),
        "10001"
    );
    let version = container.exec(&["terrace", "--version"]);
    assert!(version.starts_with("terrace "), "{version}");

    // Bootstrap with the CLI inside the container, then Terraform from outside.
    container.exec(&["terrace", "org", "create", "acme"]);
    let token = container.exec(&[
        "terrace", "token", "create", "--org", "acme", "--role", "write",
    ]);
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    let state_url = format!("{base_url}/state/acme/container");
    let dir = Workdir::at_url(&state_url, &token);
    dir.terraform(&["init"]).assert_success();
    dir.terraform(&["apply", "-auto-approve"]).assert_success();
    let state: Value = client
        .get(&state_url)
        .basic_auth("terraform", Some(&token))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("GET the state Terraform wrote");
    assert_eq!(state["outputs"]["greeting"]["value"], "hello", "{state:#}");

    // SIGTERM while a state write is in flight: the write finishes, then the server exits 0.
    let mut next = state.clone();
    next["serial"] = (state["serial"].as_i64().unwrap() + 1).into();
    let body = serde_json::to_vec(&next).unwrap();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let basic = base64_basic("terraform", &token);
    write!(
        stream,
        "POST /state/acme/container HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(head).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let killed = container.podman(&["kill", "--signal", "TERM", &container.name]);
    assert!(killed.status.success(), "{}", show(&killed));
    std::thread::sleep(Duration::from_secs(1));
    stream.write_all(tail).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        container.logs()
    );
    let waited = container.podman(&["wait", &container.name]);
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout).trim(),
        "0",
        "exit status after SIGTERM: {}\n{}",
        show(&waited),
        container.logs()
    );

    // Started again, it serves the drained write from its volume.
    run_ok(Command::new(&podman).args(["start", &container.name]));
    container.wait_healthy(&client, &base_url);
    let after: Value = client
        .get(&state_url)
        .basic_auth("terraform", Some(&token))
        .send()
        .and_then(|r| r.json())
        .expect("GET the state after the restart");
    assert_eq!(after["serial"], next["serial"], "{after:#}");
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
