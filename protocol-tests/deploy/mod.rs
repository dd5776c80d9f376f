//! What operators deploy: the container image (built with podman and run: serve, an org made
//! inside it, Terraform applying against it, SIGTERM draining), the Helm chart (linted and
//! rendered by Helm's own code, validated against the Kubernetes schemas), and the Prometheus
//! alert rules and Grafana dashboard (promtool, and a real Prometheus scraping a real
//! `terrace serve`).
//!
//! The tools come from `scripts/ensure-deploy-tools`, which `scripts/test` runs and whose
//! variables name them (`TERRACE_DEPLOY_PYTHON`, `TERRACE_PROMTOOL`, …). Without a tool a test
//! is skipped with a notice, and under `CI` it fails.

mod container_image;
mod helm_chart;
mod prometheus;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tool the variable `var` names (set by `scripts/ensure-deploy-tools`), falling back to
/// `fallback` on `PATH`. `None` (a skip) when neither exists; a panic under `CI`.
pub fn tool(var: &str, fallback: &str) -> Option<PathBuf> {
    let named = std::env::var_os(var)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let found = named.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(fallback))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        let hint = format!("{fallback} not found (run scripts/ensure-deploy-tools, or set {var})");
        if std::env::var_os("CI").is_some() {
            panic!("{hint}");
        }
        eprintln!("skipping deployment test: {hint}");
    }
    found
}

/// Returns from the calling test when `tool(var, fallback)` finds nothing; else its path.
macro_rules! require_tool {
    ($var:expr, $fallback:expr) => {
        match $crate::deploy::tool($var, $fallback) {
            Some(path) => path,
            None => return,
        }
    };
}
use require_tool;

/// The crate's root, where `Dockerfile` and `deploy/` are.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// Runs `command` to completion and returns its output; panics (with both streams) unless
/// it succeeds.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        show(&output)
    );
    output
}

/// Both streams of `output`, for failure messages.
pub fn show(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn version_names_the_git_revision_of_a_checkout() {
    let version = run_ok(Command::new(env!("CARGO_BIN_EXE_terrace")).arg("--version"));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let pkg = env!("CARGO_PKG_VERSION");
    let head = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    match head {
        // A checkout (CI's is a fresh clone): the revision of HEAD, which the binary was
        // built from (the build script reruns when HEAD moves).
        Ok(head) if head.status.success() => {
            let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
            assert_eq!(version, format!("terrace {pkg} ({head})"));
        }
        // No git or no checkout: the revision the build was given, or `unknown`.
        _ => assert!(
            version.starts_with(&format!("terrace {pkg} (")),
            "{version}"
        ),
    }
}
