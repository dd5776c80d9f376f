//! The module registry: publishing and its refusals, the `modules.v1` protocol Terraform
//! installs from, the browse endpoints, read scoping and download counts.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{ORG, RequestBuilder, Resp, TestApp};

mod browse;
mod protocol;
mod publishing;

const VARIABLES: &str = r#"
variable "cidr" {
  type        = string
  description = "The VPC's CIDR block."
  default     = "10.0.0.0/16"
}

variable "name" {
  type = string
}
"#;

const OUTPUTS: &str = r#"
output "vpc_id" {
  value       = "vpc-123"
  description = "The VPC."
}
"#;

/// A `.tar.gz` of regular files.
pub(crate) fn targz(files: &[(&str, &str)]) -> Vec<u8> {
    let entries: Vec<(&str, tar::EntryType, &[u8])> = files
        .iter()
        .map(|(path, text)| (*path, tar::EntryType::Regular, text.as_bytes()))
        .collect();
    raw_targz(&entries)
}

/// A `.tar.gz` whose headers are written as given, unsafe paths and types included.
fn raw_targz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        let name = &mut header.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn module_archive(version: &str) -> Vec<u8> {
    let output = format!("output \"version\" {{\n  value = \"{version}\"\n}}\n");
    targz(&[
        ("variables.tf", VARIABLES),
        ("outputs.tf", &format!("{OUTPUTS}{output}")),
        (
            "README.md",
            "# VPC\n\nA network for everything acme runs.\n",
        ),
        ("modules/subnets/main.tf", "variable \"count\" {}\n"),
    ])
}

pub(crate) async fn publish_as(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Resp {
    let mut request = RequestBuilder::new("PUT", &format!("/api/v1/modules/{path}")).body(body);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    app.send(request.build()).await
}

pub(crate) async fn publish(app: &TestApp, module: &str, version: &str) -> Resp {
    let path = format!("{ORG}/{module}/{version}");
    publish_as(app, &path, module_archive(version), Some(&app.write_token)).await
}

pub(crate) async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Resp {
    let mut request = RequestBuilder::new("GET", path);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    app.send(request.build()).await
}

async fn versions(app: &TestApp, module: &str) -> Vec<String> {
    let resp = get(
        app,
        &format!("/v1/modules/{ORG}/{module}/versions"),
        Some(&app.read_token),
    )
    .await;
    resp.assert_status(StatusCode::OK);
    resp.json()["modules"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect()
}

async fn make_public(app: &TestApp) {
    app.api(
        "PATCH",
        &format!("/api/v1/orgs/{ORG}/registry"),
        &app.admin_token,
        Some(json!({ "public": true })),
    )
    .await
    .assert_status(StatusCode::OK);
}
