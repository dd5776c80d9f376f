//! The AWS-shaped provider test double (`tests/provider-double/provider.py`, written with the
//! `tf` framework from PyPI) released to Terrace's own registry as `acme/aws`, so Terraform
//! installs a working provider from Terrace and plans `aws_instance`-like resources.
//!
//! `scripts/ensure-provider-double` makes its Python environment and prints the interpreter
//! path, which `scripts/test` passes as `TERRACE_PROVIDER_DOUBLE_PYTHON`.

use std::path::PathBuf;

use reqwest::StatusCode;

use super::Terrace;
use super::gpg::Gpg;
use super::releases::{PLATFORM, publish, register_key, release};

const PYTHON_ENV: &str = "TERRACE_PROVIDER_DOUBLE_PYTHON";

/// Returns from the calling test when the double cannot run (a failure under `CI`).
macro_rules! require_provider_double {
    () => {
        if $crate::harness::provider_double::python().is_none() {
            return;
        }
    };
}

/// The Python interpreter of the double's environment, if there is one.
pub fn python() -> Option<PathBuf> {
    let path = match std::env::var_os(PYTHON_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/terrace/provider-double/bin/python")
        }
    };
    if path.is_file() {
        return Some(path);
    }
    let hint = format!(
        "no Python environment for the provider double at {} (run scripts/ensure-provider-double)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{hint}");
    }
    eprintln!("skipping protocol test: {hint}");
    None
}

/// The provider program: a shell script that runs the double with the environment's Python.
fn executable() -> Vec<u8> {
    let python = python().expect("the provider double's Python (require_provider_double!)");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/provider-double/provider.py");
    format!(
        "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
        python.display(),
        script.display()
    )
    .into_bytes()
}

/// Publishes the double as `acme/aws` VERSION (linux_amd64, GPG-signed) to `server`.
pub fn publish_aws(server: &Terrace, version: &str) {
    let gpg = Gpg::new("aws-double");
    register_key(server, &gpg);
    let platform = format!("{}_{}", PLATFORM.0, PLATFORM.1);
    let release = release(&gpg, "aws", version, &[platform.as_str()], |_| executable());
    let (status, body) = publish(server, &release, version);
    assert_eq!(
        status,
        StatusCode::CREATED,
        "publish acme/aws {version}: {body}"
    );
}
