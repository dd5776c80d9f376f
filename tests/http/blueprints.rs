//! Blueprints: the catalogue API over modules published in-process, the schema derived from
//! validated variables, overrides, who sees what, `resolve`/`validate_inputs` as deployments
//! call them, the 409 for a blueprint still referred to, the audit trail, and
//! `terrace blueprint publish` against a real `terrace serve`.

use axum::http::StatusCode;
use serde_json::{Value, json};
use terrace::identity::auth::Principal;
use terrace::infra::db::Db;
use terrace::names::OrgName;

use crate::support::{ORG, RequestBuilder, Resp, TestApp};

on_both_databases! {
    a_blueprint_answers_its_module_schema_outputs_and_readme,
    curation_is_for_admins_and_drafts_are_hidden_from_readers,
    lists_filter_by_category_tag_status_and_text_and_page,
    the_newest_version_the_constraint_allows_is_followed,
    resolve_and_validate_inputs_serve_deployments,
    refused_requests_name_every_field,
    a_blueprint_that_deployments_refer_to_cannot_be_deleted,
    blueprint_changes_are_in_the_audit_trail,
}

const BLUEPRINTS: &str = "/api/v1/orgs/acme/blueprints";

const VARIABLES: &str = r#"
variable "cidr" {
  type        = string
  description = "The VPC's CIDR block."
  validation {
    condition     = can(regex("^10\\.", var.cidr))
    error_message = "The CIDR must be inside 10.0.0.0/8."
  }
}

variable "size" {
  type    = string
  default = "small"
  validation {
    condition     = contains(["small", "medium", "large"], var.size)
    error_message = "Size is small, medium or large."
  }
}

variable "replicas" {
  type    = number
  default = 2
  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5
    error_message = "1 to 5 replicas."
  }
}

variable "name" {
  type = string
  validation {
    condition     = length(var.name) <= 12
    error_message = "Names are at most 12 characters."
  }
}

variable "admin_password" {
  type      = string
  sensitive = true
  nullable  = false
}

variable "network" {
  type = object({
    name    = string
    subnets = optional(list(string), [])
  })
  default = { name = "main" }
}
"#;

const OUTPUTS: &str = r#"
output "vpc_id" {
  value       = "vpc-123"
  description = "The VPC."
}

output "password" {
  value     = var.admin_password
  sensitive = true
}
"#;

const README: &str = "# VPC\n\nA network for everything\nacme runs.\n\n## Usage\n";

/// A `.tar.gz` of regular files.
fn targz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, text.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Publishes `acme/{module}/aws` at `version`; the `marker` variable tells versions apart.
async fn publish(app: &TestApp, module: &str, version: &str) {
    let marker = format!(
        "variable \"v{}\" {{\n  default = 1\n}}\n",
        version.replace('.', "_")
    );
    let archive = targz(&[
        ("variables.tf", VARIABLES),
        ("outputs.tf", OUTPUTS),
        ("marker.tf", &marker),
        ("README.md", README),
    ]);
    let path = format!("/api/v1/modules/{ORG}/{module}/aws/{version}");
    let request = RequestBuilder::new("PUT", &path)
        .bearer(&app.write_token)
        .body(archive);
    app.send(request.build())
        .await
        .assert_status(StatusCode::CREATED);
}

async fn create(app: &TestApp, body: Value) -> Resp {
    app.api("POST", BLUEPRINTS, &app.admin_token, Some(body))
        .await
}

async fn get(app: &TestApp, path: &str, token: &str) -> Resp {
    app.api("GET", path, token, None).await
}

fn one(name: &str) -> String {
    format!("{BLUEPRINTS}/{name}")
}

fn names(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

fn errors(resp: &Resp) -> Vec<String> {
    resp.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

async fn a_blueprint_answers_its_module_schema_outputs_and_readme(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    let resp = create(
        &app,
        json!({
            "name": "network",
            "module": "acme/vpc/aws",
            "title": "Network",
            "category": "networking",
            "tags": ["aws", "core"],
            "owner": "platform-team",
            "status": "published",
            "auto_apply": true,
            "inputs": {
                "size": {"allowed": ["small", "large"], "label": "Size", "order": 1},
                "replicas": {"hidden": true, "default": 3},
            },
        }),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let created = resp.json();
    assert_eq!(created["name"], "network");
    assert_eq!(created["module"], "acme/vpc/aws");
    assert_eq!(created["version"], Value::Null);
    assert_eq!(created["module_version"], "1.0.0");
    assert_eq!(created["source"], "localhost/acme/vpc/aws");
    assert_eq!(created["title"], "Network");
    // No description given: the README's first paragraph.
    assert_eq!(
        created["description"],
        "A network for everything acme runs."
    );
    assert_eq!(created["category"], "networking");
    assert_eq!(created["tags"], json!(["aws", "core"]));
    assert_eq!(created["owner"], "platform-team");
    assert_eq!(created["status"], "published");
    assert_eq!(created["auto_apply"], true);
    assert_eq!(created["created_by"], "token:admin#3");
    assert_eq!(created["readme"], README);
    assert_eq!(
        created["outputs"],
        json!([
            {"name": "vpc_id", "description": "The VPC.", "sensitive": false},
            {"name": "password", "description": "", "sensitive": true},
        ])
    );

    let schema = &created["input_schema"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        schema["required"],
        json!(["cidr", "name", "admin_password"])
    );
    let p = &schema["properties"];
    assert_eq!(p["cidr"]["type"], "string");
    assert_eq!(p["cidr"]["pattern"], "^10\\.");
    assert_eq!(p["cidr"]["description"], "The VPC's CIDR block.");
    assert_eq!(
        p["cidr"]["x-terrace-messages"]["pattern"],
        "The CIDR must be inside 10.0.0.0/8."
    );
    assert_eq!(
        p["cidr"]["x-terrace-validations"],
        json!([{"condition": "can(regex(\"^10\\\\.\", var.cidr))",
                "error_message": "The CIDR must be inside 10.0.0.0/8."}])
    );
    // The override narrows the enum the module's validation derives.
    assert_eq!(p["size"]["enum"], json!(["small", "large"]));
    assert_eq!(p["size"]["title"], "Size");
    assert_eq!(p["size"]["x-terrace-order"], 1);
    assert_eq!(p["size"]["default"], "small");
    assert_eq!(p["replicas"]["minimum"], 1);
    assert_eq!(p["replicas"]["maximum"], 5);
    assert_eq!(p["replicas"]["default"], 3);
    assert_eq!(p["replicas"]["x-terrace-hidden"], true);
    assert_eq!(p["name"]["maxLength"], 12);
    assert_eq!(
        p["admin_password"],
        json!({"type": "string", "writeOnly": true})
    );
    assert_eq!(
        p["network"],
        json!({
            "type": ["object", "null"],
            "properties": {
                "name": {"type": "string"},
                "subnets": {"type": "array", "items": {"type": "string"}, "default": []},
            },
            "required": ["name"],
            "default": {"name": "main"},
        })
    );

    let shown = get(&app, &one("network"), &app.read_token).await;
    shown.assert_status(StatusCode::OK);
    assert_eq!(shown.json(), created);
    let alone = get(&app, &format!("{}/schema", one("network")), &app.read_token).await;
    alone.assert_status(StatusCode::OK);
    assert_eq!(&alone.json(), schema);

    // PATCH changes what it names and keeps the rest.
    let resp = app
        .api(
            "PATCH",
            &one("network"),
            &app.admin_token,
            Some(
                json!({"description": "Curated VPC.", "status": "deprecated", "tags": ["aws"],
                        "category": null}),
            ),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let patched = resp.json();
    assert_eq!(patched["description"], "Curated VPC.");
    assert_eq!(patched["status"], "deprecated");
    assert_eq!(patched["tags"], json!(["aws"]));
    assert_eq!(patched["category"], Value::Null);
    assert_eq!(patched["title"], "Network");
    assert_eq!(patched["input_schema"], *schema);

    // The module is consumed like any other: its versions answer at the source address.
    let versions = get(&app, "/v1/modules/acme/vpc/aws/versions", &app.read_token).await;
    versions.assert_status(StatusCode::OK);

    app.api("DELETE", &one("network"), &app.admin_token, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    get(&app, &one("network"), &app.admin_token)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.api("DELETE", &one("network"), &app.admin_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
}

async fn curation_is_for_admins_and_drafts_are_hidden_from_readers(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    let body = json!({"name": "draft-net", "module": "acme/vpc/aws"});
    let resp = app
        .api("POST", BLUEPRINTS, &app.write_token, Some(body.clone()))
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    app.api(
        "POST",
        "/api/v1/orgs/acme/blueprints",
        &app.other_token,
        Some(body.clone()),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
    let resp = create(&app, body).await;
    resp.assert_status(StatusCode::CREATED);
    // Drafts by default.
    assert_eq!(resp.json()["status"], "draft");

    // Readers see neither the draft nor its schema; admins do.
    for path in [one("draft-net"), format!("{}/schema", one("draft-net"))] {
        get(&app, &path, &app.read_token)
            .await
            .assert_status(StatusCode::NOT_FOUND);
        get(&app, &path, &app.admin_token)
            .await
            .assert_status(StatusCode::OK);
    }
    let listed = get(&app, BLUEPRINTS, &app.read_token).await;
    listed.assert_status(StatusCode::OK);
    assert!(names(&listed.json()).is_empty());
    let listed = get(&app, BLUEPRINTS, &app.admin_token).await;
    assert_eq!(names(&listed.json()), ["draft-net"]);

    // Another org sees nothing, and cannot change anything.
    for path in [BLUEPRINTS.to_string(), one("draft-net")] {
        get(&app, &path, &app.other_token)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    app.api(
        "PATCH",
        &one("draft-net"),
        &app.other_token,
        Some(json!({"title": "x"})),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
    app.api("DELETE", &one("draft-net"), &app.other_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    // Writers may not curate either.
    app.api(
        "PATCH",
        &one("draft-net"),
        &app.write_token,
        Some(json!({"title": "x"})),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    app.api("DELETE", &one("draft-net"), &app.write_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);

    // Published, readers see it.
    app.api(
        "PATCH",
        &one("draft-net"),
        &app.admin_token,
        Some(json!({"status": "published"})),
    )
    .await
    .assert_status(StatusCode::OK);
    get(&app, &one("draft-net"), &app.read_token)
        .await
        .assert_status(StatusCode::OK);
    // Without a token: 401.
    let anonymous = RequestBuilder::new("GET", BLUEPRINTS).build();
    assert_eq!(app.send(anonymous).await.status, StatusCode::UNAUTHORIZED);
}

async fn lists_filter_by_category_tag_status_and_text_and_page(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    let entries = [
        (
            "alpha",
            "networking",
            vec!["aws"],
            "published",
            "Alpha network",
        ),
        (
            "bravo",
            "networking",
            vec!["gcp"],
            "deprecated",
            "Bravo peering",
        ),
        (
            "charlie",
            "data",
            vec!["aws", "db"],
            "published",
            "Charlie 50%_off",
        ),
        ("delta", "data", vec![], "draft", "Delta"),
    ];
    for (name, category, tags, status, title) in entries {
        create(
            &app,
            json!({"name": name, "module": "acme/vpc/aws", "category": category, "tags": tags,
                   "status": status, "title": title}),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    let list = |query: &'static str, token: String| {
        let app = &app;
        async move {
            let resp = get(app, &format!("{BLUEPRINTS}{query}"), &token).await;
            resp.assert_status(StatusCode::OK);
            resp.json()
        }
    };
    let reader = app.read_token.clone();
    let admin = app.admin_token.clone();
    assert_eq!(
        names(&list("", reader.clone()).await),
        ["alpha", "bravo", "charlie"]
    );
    assert_eq!(
        names(&list("", admin.clone()).await),
        ["alpha", "bravo", "charlie", "delta"]
    );
    assert_eq!(
        names(&list("?category=data", reader.clone()).await),
        ["charlie"]
    );
    assert_eq!(
        names(&list("?tag=aws", reader.clone()).await),
        ["alpha", "charlie"]
    );
    assert_eq!(
        names(&list("?status=deprecated", reader.clone()).await),
        ["bravo"]
    );
    assert!(names(&list("?status=draft", reader.clone()).await).is_empty());
    assert_eq!(
        names(&list("?status=draft", admin.clone()).await),
        ["delta"]
    );
    assert_eq!(names(&list("?q=PEERING", reader.clone()).await), ["bravo"]);
    // The README's paragraph counts as the description.
    assert_eq!(
        names(&list("?q=everything", reader.clone()).await),
        ["alpha", "bravo", "charlie"]
    );
    // Wildcards are matched literally.
    assert_eq!(names(&list("?q=50%25_", reader.clone()).await), ["charlie"]);
    assert!(names(&list("?q=%25", reader.clone()).await).len() == 1);

    let first = list("?limit=2", reader.clone()).await;
    assert_eq!(names(&first), ["alpha", "bravo"]);
    assert_eq!(
        first["meta"],
        json!({"limit": 2, "offset": 0, "next_offset": 2})
    );
    let second = list("?limit=2&offset=2", reader.clone()).await;
    assert_eq!(names(&second), ["charlie"]);
    assert_eq!(second["meta"]["next_offset"], Value::Null);
    // List entries are summaries.
    let entry = &first["data"][0];
    assert_eq!(entry["module_version"], "1.0.0");
    assert_eq!(entry["source"], "localhost/acme/vpc/aws");
    assert!(entry.get("input_schema").is_none() && entry.get("readme").is_none());

    for bad in ["?status=live", "?limit=0", "?offset=-1"] {
        get(&app, &format!("{BLUEPRINTS}{bad}"), &reader)
            .await
            .assert_status(StatusCode::BAD_REQUEST);
    }
}

async fn the_newest_version_the_constraint_allows_is_followed(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    let resp = create(
        &app,
        json!({"name": "net", "module": "acme/vpc/aws", "version": "~> 1.0", "status": "published"}),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["version"], "~> 1.0");
    assert!(resp.json()["input_schema"]["properties"]["v1_0_0"].is_object());

    publish(&app, "vpc", "1.1.0").await;
    publish(&app, "vpc", "2.0.0").await;
    publish(&app, "vpc", "1.2.0-beta.1").await;
    let shown = get(&app, &one("net"), &app.read_token).await.json();
    assert_eq!(shown["module_version"], "1.1.0");
    // The schema is the new version's.
    let properties = &shown["input_schema"]["properties"];
    assert!(properties["v1_1_0"].is_object() && properties.get("v1_0_0").is_none());
    let listed = get(&app, BLUEPRINTS, &app.read_token).await.json();
    assert_eq!(listed["data"][0]["module_version"], "1.1.0");

    // Re-pointing the constraint re-resolves; `null` is any version.
    let resp = app
        .api(
            "PATCH",
            &one("net"),
            &app.admin_token,
            Some(json!({"version": null})),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["module_version"], "2.0.0");
    assert_eq!(resp.json()["version"], Value::Null);
    let resp = app
        .api(
            "PATCH",
            &one("net"),
            &app.admin_token,
            Some(json!({"version": "= 1.0.0"})),
        )
        .await;
    assert_eq!(resp.json()["module_version"], "1.0.0");
    let resp = app
        .api(
            "PATCH",
            &one("net"),
            &app.admin_token,
            Some(json!({"version": "~> 3.0"})),
        )
        .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&resp),
        ["version: no published version of acme/vpc/aws matches \"~> 3.0\""]
    );

    // When the resolved version is deleted, the next matching one is used.
    app.api(
        "PATCH",
        &one("net"),
        &app.admin_token,
        Some(json!({"version": "~> 1.0"})),
    )
    .await
    .assert_status(StatusCode::OK);
    app.api(
        "DELETE",
        "/api/v1/modules/acme/vpc/aws/1.1.0",
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    let shown = get(&app, &one("net"), &app.read_token).await.json();
    assert_eq!(shown["module_version"], "1.0.0");
}

async fn resolve_and_validate_inputs_serve_deployments(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    publish(&app, "vpc", "1.1.0").await;
    publish(&app, "vpc", "2.0.0").await;
    create(
        &app,
        json!({"name": "net", "module": "acme/vpc/aws", "version": ">= 1.0, < 2.0",
               "status": "published", "auto_apply": true,
               "inputs": {"size": {"allowed": ["small", "large"]}}}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    create(&app, json!({"name": "secret", "module": "acme/vpc/aws"}))
        .await
        .assert_status(StatusCode::CREATED);

    let org = OrgName::parse(ORG).unwrap();
    let ctx = &app.state.blueprints;
    let reader = Principal::from_token(&app.state.identity, &app.read_token)
        .await
        .unwrap();
    let resolved = terrace::blueprints::resolve(ctx, &reader, &org, "net", None)
        .await
        .unwrap();
    assert_eq!(
        (
            resolved.org.as_str(),
            resolved.name.as_str(),
            resolved.namespace.as_str(),
            resolved.module_name.as_str(),
            resolved.system.as_str(),
            resolved.version.as_str(),
        ),
        ("acme", "net", "acme", "vpc", "aws", "1.1.0")
    );
    assert!(resolved.auto_apply);
    assert_eq!(resolved.sensitive_inputs, ["admin_password"]);
    assert_eq!(
        resolved.outputs,
        [
            ("vpc_id".to_string(), false),
            ("password".to_string(), true)
        ]
    );
    assert_eq!(
        resolved.schema["properties"]["size"]["enum"],
        json!(["small", "large"])
    );
    let pinned = terrace::blueprints::resolve(ctx, &reader, &org, "net", Some("1.0.0"))
        .await
        .unwrap();
    assert_eq!(pinned.version, "1.0.0");
    assert!(pinned.schema["properties"]["v1_0_0"].is_object());
    assert_eq!(pinned.id, resolved.id);
    for (version, message) in [
        (
            "2.0.0",
            "version: 2.0.0 is not allowed by the blueprint's constraint \">= 1.0, < 2.0\"",
        ),
        (
            "1.9.0",
            "version: 1.9.0 is not a published version of acme/vpc/aws",
        ),
    ] {
        match terrace::blueprints::resolve(ctx, &reader, &org, "net", Some(version)).await {
            Err(terrace::error::Error::Unprocessable(messages)) => {
                assert_eq!(messages, [message])
            }
            other => panic!("{version}: {other:?}"),
        }
    }
    // Drafts resolve for admins only; other orgs see nothing.
    let draft = terrace::blueprints::resolve(ctx, &reader, &org, "secret", None).await;
    assert!(
        matches!(draft, Err(terrace::error::Error::NotFound(_))),
        "{draft:?}"
    );
    let admin = Principal::from_token(&app.state.identity, &app.admin_token)
        .await
        .unwrap();
    assert!(
        terrace::blueprints::resolve(ctx, &admin, &org, "secret", None)
            .await
            .is_ok()
    );
    let other = Principal::from_token(&app.state.identity, &app.other_token)
        .await
        .unwrap();
    let hidden = terrace::blueprints::resolve(ctx, &other, &org, "net", None).await;
    assert!(
        matches!(hidden, Err(terrace::error::Error::NotFound(_))),
        "{hidden:?}"
    );

    let schema = &resolved.schema;
    let refused = terrace::blueprints::validate_inputs(
        schema,
        &json!({"cidr": "192.168.0.0/16", "size": "medium", "replicas": 7, "name": "a-very-long-name",
                "network": {"subnets": "x"}, "zone": "a"}),
    )
    .unwrap_err();
    assert_eq!(
        refused,
        [
            "inputs.admin_password: is required",
            "inputs.cidr: The CIDR must be inside 10.0.0.0/8.",
            "inputs.size: must be one of small, large",
            "inputs.replicas: 1 to 5 replicas.",
            "inputs.name: Names are at most 12 characters.",
            "inputs.network.name: is required",
            "inputs.network.subnets: must be a list",
            "inputs.zone: is not an input of this blueprint",
        ]
    );
    let accepted = terrace::blueprints::validate_inputs(
        schema,
        &json!({"cidr": "10.0.0.0/16", "name": "web", "admin_password": "s3cret"}),
    )
    .unwrap();
    assert_eq!(
        accepted,
        json!({"cidr": "10.0.0.0/16", "name": "web", "admin_password": "s3cret",
               "size": "small", "replicas": 2, "network": {"name": "main", "subnets": []},
               "v1_1_0": 1})
    );
}

async fn refused_requests_name_every_field(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    let resp = create(
        &app,
        json!({"name": "bad", "module": "other/vpc/aws", "version": "latest", "title": "",
               "tags": ["Not A Tag"], "category": "x".repeat(65)}),
    )
    .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&resp),
        [
            "module: must be a module of this organization's registry (acme/…)",
            "version: \"latest\" is not a version constraint (\"latest\"); use Terraform's syntax, e.g. \"~> 1.2\" or \">= 1.0, < 2.0\"",
            "tags: \"Not A Tag\" is not a tag; use 1-64 lowercase letters, digits, '-', '_', '.' or ':'",
            "title: must be 1-200 characters",
            "category: must be 1-64 characters",
        ]
    );
    let resp = create(&app, json!({"name": "bad", "module": "acme/nope/aws"})).await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&resp),
        ["module: acme/nope/aws has no published release in the registry"]
    );
    let resp = create(
        &app,
        json!({"name": "bad", "module": "acme/vpc/aws",
               "inputs": {"cidr": {"hidden": true, "default": "192.168.0.0/16"},
                          "name": {"hidden": true}, "ghost": {"label": "Boo"},
                          "size": {"allowed": ["tiny"]}}}),
    )
    .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&resp),
        [
            "inputs.cidr.default: The CIDR must be inside 10.0.0.0/8.",
            "inputs.cidr: a hidden input needs a default (the module declares none)",
            "inputs.ghost: the module has no such variable",
            "inputs.name: a hidden input needs a default (the module declares none)",
            "inputs.size.allowed[0]: Size is small, medium or large.",
        ]
    );
    // Unknown fields and bad names are malformed requests.
    create(
        &app,
        json!({"name": "x", "module": "acme/vpc/aws", "colour": "red"}),
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    create(&app, json!({"name": "no/slash", "module": "acme/vpc/aws"}))
        .await
        .assert_status(StatusCode::BAD_REQUEST);

    create(&app, json!({"name": "net", "module": "acme/vpc/aws"}))
        .await
        .assert_status(StatusCode::CREATED);
    let again = create(&app, json!({"name": "net", "module": "acme/vpc/aws"})).await;
    again.assert_status(StatusCode::CONFLICT);
    assert_eq!(errors(&again), ["blueprint net already exists in acme"]);
    let resp = app
        .api(
            "PATCH",
            &one("net"),
            &app.admin_token,
            Some(json!({"inputs": {"ghost": {}}})),
        )
        .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        errors(&resp),
        ["inputs.ghost: the module has no such variable"]
    );
    app.api(
        "PATCH",
        &one("nope"),
        &app.admin_token,
        Some(json!({"title": "x"})),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn a_blueprint_that_deployments_refer_to_cannot_be_deleted(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    let resp = create(&app, json!({"name": "net", "module": "acme/vpc/aws"})).await;
    resp.assert_status(StatusCode::CREATED);
    let id: i64 = match app.db() {
        Db::Sqlite(p) => sqlx::query_scalar("SELECT id FROM blueprints WHERE name = 'net'")
            .fetch_one(p)
            .await
            .unwrap(),
        Db::Postgres(p) => sqlx::query_scalar("SELECT id FROM blueprints WHERE name = 'net'")
            .fetch_one(p)
            .await
            .unwrap(),
    };
    // Deployments refer to their blueprint this way; a table of the test's own stands in.
    let create_table = |kind: &str| {
        format!(
            "CREATE TABLE live_refs (blueprint_id {kind} REFERENCES blueprints(id) ON DELETE RESTRICT)"
        )
    };
    match app.db() {
        Db::Sqlite(p) => {
            sqlx::query(sqlx::AssertSqlSafe(create_table("INTEGER")))
                .execute(p)
                .await
                .unwrap();
            sqlx::query("INSERT INTO live_refs VALUES ($1)")
                .bind(id)
                .execute(p)
                .await
                .unwrap();
        }
        Db::Postgres(p) => {
            sqlx::query(sqlx::AssertSqlSafe(create_table("BIGINT")))
                .execute(p)
                .await
                .unwrap();
            sqlx::query("INSERT INTO live_refs VALUES ($1)")
                .bind(id)
                .execute(p)
                .await
                .unwrap();
        }
    }
    let resp = app.api("DELETE", &one("net"), &app.admin_token, None).await;
    resp.assert_status(StatusCode::CONFLICT);
    assert_eq!(errors(&resp), ["blueprint has live deployments"]);
    get(&app, &one("net"), &app.admin_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn blueprint_changes_are_in_the_audit_trail(app: TestApp) {
    publish(&app, "vpc", "1.0.0").await;
    create(&app, json!({"name": "net", "module": "acme/vpc/aws"}))
        .await
        .assert_status(StatusCode::CREATED);
    app.api(
        "PATCH",
        &one("net"),
        &app.write_token,
        Some(json!({"title": "x"})),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    app.api("DELETE", &one("net"), &app.admin_token, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.state.audit.flush().await;
    let resp = get(
        &app,
        "/api/v1/orgs/acme/audit-events?resource=blueprint:",
        &app.admin_token,
    )
    .await;
    resp.assert_status(StatusCode::OK);
    let trail: Vec<(String, String, String, String)> = resp.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |actor: &str, outcome: &str| {
        (
            actor.to_string(),
            "org:admin".to_string(),
            "blueprint:net".to_string(),
            outcome.to_string(),
        )
    };
    assert_eq!(
        trail,
        [
            row("token:admin#3", "success"),
            row("token:writer#2", "denied"),
            row("token:admin#3", "success"),
        ]
    );
}

/// `terrace blueprint publish` against a real `terrace serve`: the first run publishes the
/// version and creates the entry, the next publishes a new version and updates the entry, a
/// version that exists is refused.
#[test]
fn the_cli_publishes_a_module_version_and_its_catalogue_entry() {
    use crate::testkit::server::Setup;

    let root = tempfile::tempdir().unwrap();
    let terrace = Setup::new(root.path().join("data"), &[("RUST_LOG", "warn")]);
    terrace.cli(&["org", "create", ORG]);
    let token = terrace.cli(&["token", "create", "--org", ORG, "--role", "admin"]);
    let server = terrace.serve(&[], &root.path().join("server.log"));
    let base = server.base_url.clone();
    let module = root.path().join("vpc");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(module.join("variables.tf"), VARIABLES).unwrap();
    std::fs::write(module.join("outputs.tf"), OUTPUTS).unwrap();
    std::fs::write(module.join("README.md"), README).unwrap();

    let publish = |version: &str, extra: &[&str]| {
        let mut args = vec![
            "blueprint",
            "publish",
            module.to_str().unwrap(),
            "--url",
            &base,
            "--token",
            &token,
            "--namespace",
            ORG,
            "--name",
            "vpc",
            "--system",
            "aws",
            "--version",
            version,
        ];
        args.extend_from_slice(extra);
        terrace.output(&args)
    };
    let first = publish(
        "1.0.0",
        &[
            "--title",
            "VPC",
            "--category",
            "networking",
            "--tag",
            "aws",
            "--tag",
            "core",
            "--owner",
            "platform",
            "--status",
            "published",
            "--auto-apply",
        ],
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let host = base.trim_start_matches("http://");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        format!("{host}/acme/vpc/aws")
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let read = |client: &reqwest::blocking::Client| -> Value {
        let resp = client
            .get(format!("{base}/api/v1/orgs/acme/blueprints/vpc"))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        resp.json().unwrap()
    };
    let created = read(&client);
    assert_eq!(created["module"], "acme/vpc/aws");
    assert_eq!(created["module_version"], "1.0.0");
    assert_eq!(created["title"], "VPC");
    assert_eq!(created["category"], "networking");
    assert_eq!(created["tags"], json!(["aws", "core"]));
    assert_eq!(created["owner"], "platform");
    assert_eq!(created["status"], "published");
    assert_eq!(created["auto_apply"], true);
    assert_eq!(
        created["description"],
        "A network for everything acme runs."
    );
    assert_eq!(
        created["input_schema"]["properties"]["cidr"]["pattern"],
        "^10\\."
    );

    let second = publish("1.1.0", &["--title", "VPC (v1.1)"]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let updated = read(&client);
    assert_eq!(updated["module_version"], "1.1.0");
    assert_eq!(updated["title"], "VPC (v1.1)");
    // What the second run did not name stays.
    assert_eq!(updated["status"], "published");
    assert_eq!(updated["tags"], json!(["aws", "core"]));
    assert_eq!(updated["auto_apply"], true);
    assert_eq!(updated["created_at"], created["created_at"]);

    let again = publish("1.1.0", &["--title", "VPC"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("409"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
