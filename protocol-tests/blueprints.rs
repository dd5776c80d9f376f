//! Blueprints with the real Terraform: a module published with `terrace blueprint publish` is
//! installed by the `source` its blueprint shows, and inputs the blueprint's schema refuses
//! are refused by Terraform, with the same messages.
//!
//! The module holds only variables and outputs, so no provider is needed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Role, Terrace, Workdir};

const VARIABLES: &str = r#"
variable "cidr" {
  type = string
  validation {
    condition     = can(regex("^10\\.", var.cidr))
    error_message = "The CIDR must be inside 10.0.0.0/8."
  }
}

variable "size" {
  type    = string
  default = "small"
  validation {
    condition     = contains(["small", "large"], var.size)
    error_message = "Size is small or large."
  }
}

variable "replicas" {
  type    = number
  default = 2
  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5
    error_message = "Replicas are 1 to 5."
  }
}

variable "name" {
  type = string
  validation {
    condition     = length(var.name) <= 12
    error_message = "Names are at most 12 characters."
  }
}
"#;

const OUTPUTS: &str = r#"
output "summary" {
  value = "${var.name}:${var.size}:${var.replicas}:${var.cidr}"
}
"#;

/// A root module (Terraform's JSON syntax) calling the blueprint's module with `inputs`.
fn root_module(source: &str, version: &str, inputs: &Value) -> String {
    let mut call = json!({ "source": source, "version": version });
    if let (Some(call), Some(inputs)) = (call.as_object_mut(), inputs.as_object()) {
        call.extend(inputs.clone());
    }
    json!({
        "module": { "net": call },
        "output": { "summary": { "value": "${module.net.summary}" } },
    })
    .to_string()
}

#[test]
fn terraform_installs_a_blueprint_by_its_source_and_agrees_with_its_schema() {
    require_terraform!();
    let server = Terrace::start_tls();
    let dir = tempfile::tempdir().expect("create a module directory");
    std::fs::write(dir.path().join("variables.tf"), VARIABLES).expect("write variables.tf");
    std::fs::write(dir.path().join("outputs.tf"), OUTPUTS).expect("write outputs.tf");
    std::fs::write(dir.path().join("README.md"), "# Net\n\nA small network.\n")
        .expect("write README.md");
    let dir_arg = dir.path().display().to_string();
    let ca = server.ca_path().display().to_string();
    let args = [
        "blueprint",
        "publish",
        &dir_arg,
        "--namespace",
        "acme",
        "--name",
        "net",
        "--system",
        "aws",
        "--version",
        "1.0.0",
        "--title",
        "Network",
        "--constraint",
        "~> 1.0",
        "--status",
        "published",
        "--url",
        server.base_url(),
        "--ca-cert",
        &ca,
    ];
    let output = server.cli(&args, &[("TERRACE_TOKEN", server.token(Role::Admin))]);
    assert!(
        output.status.success(),
        "`terrace blueprint publish` failed\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let source = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(source, format!("{}/acme/net/aws", server.host()));

    let url = format!("{}/api/v1/orgs/acme/blueprints/net", server.base_url());
    let response = server
        .http()
        .get(&url)
        .header("Authorization", server.bearer(Role::Read))
        .send()
        .expect("send GET blueprint");
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    let blueprint: Value = response.json().expect("a blueprint is JSON");
    assert_eq!(blueprint["source"], source);
    assert_eq!(blueprint["module_version"], "1.0.0");
    let schema = &blueprint["input_schema"];
    let version = blueprint["module_version"].as_str().expect("a version");

    // Inputs the schema accepts (defaults filled in) are what Terraform applies.
    let inputs = terrace::blueprints::validate_inputs(
        schema,
        &json!({"cidr": "10.1.0.0/16", "name": "web", "replicas": 3}),
    )
    .expect("valid inputs");
    let good = Workdir::registry(&server, Some(Role::Read), "");
    std::fs::write(
        good.path().join("main.tf.json"),
        root_module(&source, version, &inputs),
    )
    .expect("write main.tf.json");
    good.terraform(&["init"]).assert_success();
    good.terraform(&["apply", "-auto-approve"]).assert_success();
    let outputs = good.terraform(&["output", "-json"]);
    outputs.assert_success();
    assert_eq!(
        outputs.stdout_json()["summary"]["value"],
        "web:small:3:10.1.0.0/16"
    );

    // Inputs the schema refuses are refused by Terraform with the module's own messages.
    let bad = json!({"cidr": "192.168.0.0/16", "size": "medium", "replicas": 9, "name": "a-much-too-long-name"});
    let refused = terrace::blueprints::validate_inputs(schema, &bad).expect_err("invalid inputs");
    let messages = [
        "The CIDR must be inside 10.0.0.0/8.",
        "Size is small or large.",
        "Replicas are 1 to 5.",
        "Names are at most 12 characters.",
    ];
    assert_eq!(
        refused,
        ["cidr", "size", "replicas", "name"]
            .iter()
            .zip(messages)
            .map(|(field, message)| format!("inputs.{field}: {message}"))
            .collect::<Vec<_>>()
    );
    let workdir = Workdir::registry(&server, Some(Role::Read), "");
    std::fs::write(
        workdir.path().join("main.tf.json"),
        root_module(&source, version, &bad),
    )
    .expect("write main.tf.json");
    workdir.terraform(&["init"]).assert_success();
    let plan = workdir.terraform(&["plan"]);
    plan.assert_failure();
    for message in messages {
        assert!(plan.stderr.contains(message), "{message:?} not in\n{plan}");
    }
}
