//! The module registry with the real Terraform over HTTPS: discovery, version
//! selection among releases and a pre-release, the archive download through a
//! signed link, and read scoping (credentials, public namespaces).
//!
//! The module holds only variables and outputs, so no provider is needed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Role, Terrace, Workdir};

/// Files of version `version` of `acme/vpc/aws`; its output names the version.
fn module_files(version: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "variables.tf",
            "variable \"cidr\" {\n  type    = string\n  default = \"10.0.0.0/16\"\n}\n".to_owned(),
        ),
        (
            "outputs.tf",
            format!(
                "output \"version\" {{\n  value = \"{version}\"\n}}\n\n\
                 output \"cidr\" {{\n  value = var.cidr\n}}\n"
            ),
        ),
        ("README.md", format!("# VPC {version}\n")),
    ]
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

/// Publishes a version through the API, as CI pipelines would.
pub(crate) fn publish(server: &Terrace, version: &str) {
    let url = format!(
        "{}/api/v1/modules/acme/vpc/aws/{version}",
        server.base_url()
    );
    let response = server
        .http()
        .put(&url)
        .header("Authorization", server.bearer(Role::Write))
        .body(targz(&module_files(version)))
        .send()
        .expect("send PUT module version");
    let status = response.status();
    let body = response.text().unwrap_or_default();
    assert_eq!(status, StatusCode::CREATED, "PUT {url}: {body}");
}

/// Publishes a version with `terrace module publish`, from a directory.
fn publish_with_cli(server: &Terrace, version: &str) {
    let dir = tempfile::tempdir().expect("create a module directory");
    for (path, text) in module_files(version) {
        std::fs::write(dir.path().join(path), text).expect("write a module file");
    }
    let dir_arg = dir.path().display().to_string();
    let ca = server.ca_path().display().to_string();
    let args = [
        "module",
        "publish",
        &dir_arg,
        "--namespace",
        "acme",
        "--name",
        "vpc",
        "--system",
        "aws",
        "--version",
        version,
        "--url",
        server.base_url(),
        "--ca-cert",
        &ca,
    ];
    let output = server.cli(&args, &[("TERRACE_TOKEN", server.token(Role::Write))]);
    assert!(
        output.status.success(),
        "`terrace module publish` failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("acme/vpc/aws/{version}")
    );
}

/// A root module calling `acme/vpc/aws` from `server` with each `(name, constraint)`.
pub(crate) fn main_tf(server: &Terrace, calls: &[(&str, &str)]) -> String {
    let mut config = String::new();
    for (name, constraint) in calls {
        config.push_str(&format!(
            "module {name:?} {{\n  source  = \"{}/acme/vpc/aws\"\n  version = {constraint:?}\n}}\n\n\
             output {name:?} {{\n  value = module.{name}.version\n}}\n\n",
            server.host()
        ));
    }
    config
}

/// `.terraform/modules/modules.json`: the version installed for each module call.
pub(crate) fn installed(workdir: &Workdir) -> Value {
    let manifest: Value =
        serde_json::from_str(&workdir.read_file(".terraform/modules/modules.json"))
            .expect("modules.json is JSON");
    let mut versions = serde_json::Map::new();
    for module in manifest["Modules"].as_array().expect("a Modules array") {
        if let Some(version) = module.get("Version") {
            let key = module["Key"].as_str().expect("a module key").to_owned();
            versions.insert(key, version.clone());
        }
    }
    Value::Object(versions)
}

#[test]
fn init_installs_the_highest_matching_version_and_skips_prereleases() {
    require_terraform!();
    let server = Terrace::start_tls();
    publish_with_cli(&server, "1.0.0");
    for version in ["1.1.0", "1.2.0-beta", "2.0.0"] {
        publish(&server, version);
    }
    let config = main_tf(&server, &[("x", "~> 1.1"), ("beta", "1.2.0-beta")]);
    let workdir = Workdir::registry(&server, Some(Role::Read), &config);

    workdir.terraform(&["init"]).assert_success();

    // `~> 1.1` skips 1.2.0-beta; only the exact constraint selects a pre-release.
    assert_eq!(
        installed(&workdir),
        json!({"x": "1.1.0", "beta": "1.2.0-beta"})
    );
    let manifest = workdir.read_file(".terraform/modules/modules.json");
    assert!(
        manifest.contains(&format!("{}/acme/vpc/aws", server.host())),
        "{manifest}"
    );
    workdir
        .terraform(&["apply", "-auto-approve"])
        .assert_success();
    let outputs = workdir.terraform(&["output", "-json"]);
    outputs.assert_success();
    let outputs = outputs.stdout_json();
    assert_eq!(outputs["x"]["value"], "1.1.0");
    assert_eq!(outputs["beta"]["value"], "1.2.0-beta");
}

#[test]
fn init_without_credentials_is_refused_until_the_namespace_is_public() {
    require_terraform!();
    let server = Terrace::start_tls();
    publish(&server, "1.0.0");
    let workdir = Workdir::registry(&server, None, &main_tf(&server, &[("x", "1.0.0")]));

    let refused = workdir.terraform(&["init"]);

    refused.assert_failure();
    assert!(
        refused
            .stderr
            .contains("error looking up module versions: 401"),
        "expected the registry's 401 in the error\n{refused}"
    );

    let url = format!("{}/api/v1/orgs/acme/registry", server.base_url());
    let response = server
        .http()
        .patch(&url)
        .header("Authorization", server.bearer(Role::Admin))
        .json(&json!({ "public": true }))
        .send()
        .expect("send PATCH registry settings");
    assert_eq!(response.status(), StatusCode::OK, "PATCH {url}");

    workdir.terraform(&["init"]).assert_success();
    assert_eq!(installed(&workdir), json!({"x": "1.0.0"}));
}
