//! The provider registry and the network mirror with the real Terraform over HTTPS: install
//! a GPG-signed provider (keys and signatures from real `gpg`), install a public provider
//! through the mirror, refuse a release signed by an unregistered key, and refuse
//! unauthenticated reads.
//!
//! The provider zip holds a shell script: `terraform init` never runs it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::gpg::Gpg;
use crate::harness::releases::{self, PLATFORM, Release, publish, register_key};
use crate::harness::{Role, Terrace, Workdir};

/// The dummy's program: `terraform init` never runs it.
const NOT_A_PROVIDER: &[u8] = b"#!/bin/sh\necho 'not a real provider'\nexit 1\n";

fn package_zip(kind: &str, version: &str) -> Vec<u8> {
    releases::package_zip(kind, version, NOT_A_PROVIDER)
}

/// A release of `acme/dummy`: linux_amd64 and darwin_arm64, different bytes per platform as
/// real builds have.
fn release(gpg: &Gpg, version: &str) -> Release {
    let linux = format!("{}_{}", PLATFORM.0, PLATFORM.1);
    releases::release(
        gpg,
        "dummy",
        version,
        &[linux.as_str(), "darwin_arm64"],
        |platform| {
            let mut program = NOT_A_PROVIDER.to_vec();
            if platform != linux {
                program.extend_from_slice(format!("# {platform}\n").as_bytes());
            }
            program
        },
    )
}

fn api(server: &Terrace, path: &str) -> String {
    format!("{}{path}", server.base_url())
}

fn dummy_main_tf(server: &Terrace, version: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    dummy = {{\n      source  = \"{}/acme/dummy\"\n      version = \"{version}\"\n    }}\n  }}\n}}\n",
        server.host()
    )
}

#[test]
fn a_gpg_signed_provider_installs_and_the_lock_file_records_its_hashes() {
    require_terraform!();
    require_gpg!();
    let server = Terrace::start_tls();
    let gpg = Gpg::new("release");
    register_key(&server, &gpg);
    let release = release(&gpg, "1.0.0");
    let (status, body) = publish(&server, &release, "1.0.0");
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let workdir = Workdir::registry(&server, Some(Role::Read), &dummy_main_tf(&server, "1.0.0"));
    let init = workdir.terraform(&["init"]);
    init.assert_success();
    assert!(
        init.stdout.contains(&format!(
            "Installed {}/acme/dummy v1.0.0 (self-signed, key ID {})",
            server.host(),
            gpg.key_id
        )),
        "{init}"
    );

    // One zh: per SHA256SUMS line (both platforms), and Terraform's own h1: of the package,
    // which must equal the h1: Terrace computed at publish time.
    let lock = workdir.read_file(".terraform.lock.hcl");
    for sha in &release.zip_sha256 {
        assert!(lock.contains(&format!("\"zh:{sha}\"")), "{lock}");
    }
    assert_lock_records_mirror_h1(
        &server,
        &format!("/v1/mirror/{}/acme/dummy/1.0.0.json", server.host()),
        &lock,
    );
}

#[test]
fn a_provider_installs_through_the_network_mirror() {
    require_terraform!();
    let server = Terrace::start_tls();
    // A `terraform providers mirror` directory, imported with the CLI.
    let mirror = tempfile::tempdir().expect("create a mirror directory");
    let type_dir = mirror.path().join("registry.terraform.io/hashicorp/null");
    std::fs::create_dir_all(&type_dir).expect("create the mirror layout");
    let zip = package_zip("null", "3.1.0");
    let name = format!(
        "terraform-provider-null_3.1.0_{}_{}.zip",
        PLATFORM.0, PLATFORM.1
    );
    std::fs::write(type_dir.join(&name), &zip).expect("write the mirrored zip");
    let dir_arg = mirror.path().display().to_string();
    let ca = server.ca_path().display().to_string();
    let args = [
        "mirror",
        "import",
        &dir_arg,
        "--url",
        server.base_url(),
        "--ca-cert",
        &ca,
    ];
    let output = server.cli(&args, &[("TERRACE_TOKEN", server.token(Role::Admin))]);
    assert!(
        output.status.success(),
        "`terrace mirror import` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let main_tf = "terraform {\n  required_providers {\n    null = {\n      source  = \"hashicorp/null\"\n      version = \"3.1.0\"\n    }\n  }\n}\n";
    let mirror_block = format!(
        "provider_installation {{\n  network_mirror {{\n    url = \"https://{}/v1/mirror/\"\n  }}\n}}\n",
        server.host()
    );

    // Without credentials for the mirror host, the mirror refuses to answer.
    let anonymous = Workdir::registry(&server, None, main_tf);
    anonymous.append_cli_config(&mirror_block);
    let refused = anonymous.terraform(&["init"]);
    refused.assert_failure();
    // Terraform wraps its messages; compare with the line breaks removed.
    let stderr = refused
        .stderr
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(stderr.contains("authentication credentials"), "{refused}");

    let workdir = Workdir::registry(&server, Some(Role::Read), main_tf);
    workdir.append_cli_config(&mirror_block);
    let init = workdir.terraform(&["init"]);
    init.assert_success();
    assert!(
        init.stdout
            .contains("Installed hashicorp/null v3.1.0 (verified checksum)"),
        "{init}"
    );
    let lock = workdir.read_file(".terraform.lock.hcl");
    assert!(
        lock.contains("provider \"registry.terraform.io/hashicorp/null\""),
        "{lock}"
    );
    assert_lock_records_mirror_h1(
        &server,
        "/v1/mirror/registry.terraform.io/hashicorp/null/3.1.0.json",
        &lock,
    );
}

#[test]
fn a_provider_signed_by_an_unregistered_key_is_refused() {
    require_terraform!();
    require_gpg!();
    let server = Terrace::start_tls();
    let registered = Gpg::new("registered");
    register_key(&server, &registered);
    let stranger = Gpg::new("stranger");
    let release = release(&stranger, "1.0.0");

    let (status, body) = publish(&server, &release, "1.0.0");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["errors"][0].as_str().unwrap_or_default();
    assert!(
        message.contains(&stranger.key_id) && message.contains("not registered"),
        "{body}"
    );

    // Nothing was published, so there is nothing for Terraform to install.
    let workdir = Workdir::registry(&server, Some(Role::Read), &dummy_main_tf(&server, "1.0.0"));
    workdir.terraform(&["init"]).assert_failure();
}

#[test]
fn an_unauthenticated_read_is_refused() {
    require_terraform!();
    require_gpg!();
    let server = Terrace::start_tls();
    let gpg = Gpg::new("release");
    register_key(&server, &gpg);
    let release = release(&gpg, "1.0.0");
    let (status, body) = publish(&server, &release, "1.0.0");
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let workdir = Workdir::registry(&server, None, &dummy_main_tf(&server, "1.0.0"));
    let refused = workdir.terraform(&["init"]);
    refused.assert_failure();
    let stderr = refused
        .stderr
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stderr.contains("requires authentication credentials"),
        "{refused}"
    );
    assert!(!workdir.path().join(".terraform.lock.hcl").exists());
}

/// The lock file holds the `h1:` hash that the mirror document at `path` gives for PLATFORM:
/// Terraform computed its own and it must equal what Terrace computed at upload time.
fn assert_lock_records_mirror_h1(server: &Terrace, path: &str, lock: &str) {
    let url = api(server, path);
    let document: Value = server
        .http()
        .get(&url)
        .header("Authorization", server.bearer(Role::Read))
        .send()
        .expect("send GET mirror document")
        .json()
        .expect("JSON answer");
    let key = format!("{}_{}", PLATFORM.0, PLATFORM.1);
    let h1 = document["archives"][&key]["hashes"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no h1 in {document}"));
    assert!(lock.contains(&format!("\"{h1}\"")), "{h1} not in\n{lock}");
}
