//! Test harness: spawns `terrace serve`, prepares Terraform working
//! directories and runs the Terraform CLI in them.
//!
//! Nothing here knows about individual scenarios; those live next to
//! `main.rs`.

#[macro_use]
pub mod gpg;
#[macro_use]
pub mod provider_double;
pub mod releases;
mod server;
mod workdir;

use std::path::PathBuf;
use std::sync::OnceLock;

pub use server::{Role, Terrace};
pub use workdir::Workdir;

/// Environment variable that points the tests at a specific Terraform build.
const TERRAFORM_BIN_ENV: &str = "TERRAFORM_BIN";

/// Where `scripts/fetch-terraform` puts the pinned Terraform, relative to the crate root.
const CACHED_TERRAFORM: &str = ".cache/terraform-1.0.3/terraform";

/// Returns from the calling test when no Terraform binary is available.
///
/// Under `CI` a missing binary is a failure instead, so the suite cannot go
/// green by skipping everything.
macro_rules! require_terraform {
    () => {
        if !$crate::harness::terraform_available() {
            return;
        }
    };
}

/// Path of the Terraform binary the tests run.
pub fn terraform_bin() -> PathBuf {
    match std::env::var_os(TERRAFORM_BIN_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CACHED_TERRAFORM),
    }
}

/// Whether Terraform can be run; prints a skip notice (or panics under `CI`) when not.
pub fn terraform_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| terraform_bin().is_file());
    if !available {
        let path = terraform_bin();
        let hint = format!(
            "Terraform not found at {} (run scripts/fetch-terraform or set {TERRAFORM_BIN_ENV})",
            path.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{hint}");
        }
        eprintln!("skipping protocol test: {hint}");
    }
    available
}

/// Hands the authorization code to `terraform login`'s loopback listener, as the browser's
/// redirect does. Terraform closes the listener as soon as it has the code, at times before
/// its answer is flushed, so a connection cut short after the request was sent is no failure:
/// the caller checks that Terraform finished and saved its token.
pub fn deliver_login_code(callback: &str) {
    match reqwest::blocking::Client::new().get(callback).send() {
        Ok(delivered) => assert_eq!(
            delivered.status(),
            reqwest::StatusCode::OK,
            "Terraform's listener refused the code"
        ),
        Err(e) => assert!(
            e.is_request() && !e.is_connect() && !e.is_timeout(),
            "deliver the code to Terraform: {e:?}"
        ),
    }
}
