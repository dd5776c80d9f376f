//! The narrow roles with the real Terraform: `outputs` serves `terraform_remote_state`
//! consumers without the rest of the state, and `plan` may lock and plan but never write.

use serde_json::json;

use crate::harness::{Role, Terrace, Workdir};

/// A token of `role` made with `terrace token create`.
fn token(server: &Terrace, role: &str) -> String {
    let output = server.cli(
        &[
            "token", "create", "--org", "acme", "--role", role, "--name", role,
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn an_outputs_token_feeds_terraform_remote_state_but_never_sees_resources() {
    require_terraform!();
    let server = Terrace::start_tls();
    // A producer's state: an output and a resource holding a secret.
    let state = json!({
        "version": 4, "terraform_version": "1.0.3", "serial": 3, "lineage": "net-1",
        "outputs": {"vpc_id": {"value": "vpc-0abc", "type": "string"}},
        "resources": [{"mode": "managed", "type": "aws_db_instance", "name": "main",
            "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
            "instances": [{"schema_version": 0, "attributes": {"password": "hunter2-secret"}}]}]
    });
    let written = server
        .http()
        .post(server.state_url("network"))
        .basic_auth("terraform", Some(server.token(Role::Write)))
        .body(state.to_string())
        .send()
        .expect("write the producer's state");
    assert!(written.status().is_success(), "{}", written.status());
    let outputs_token = token(&server, "outputs");

    let consumer = Workdir::registry(
        &server,
        None,
        &format!(
            "data \"terraform_remote_state\" \"network\" {{\n  backend = \"http\"\n  config = {{\n    \
             address  = {:?}\n    username = \"terraform\"\n    password = {:?}\n  }}\n}}\n\n\
             output \"vpc_id\" {{\n  value = data.terraform_remote_state.network.outputs.vpc_id\n}}\n",
            server.state_url("network"),
            outputs_token
        ),
    );
    consumer.terraform(&["init"]).assert_success();
    consumer
        .terraform(&["apply", "-auto-approve"])
        .assert_success();
    let outputs = consumer.terraform(&["output", "-json"]);
    outputs.assert_success();
    assert_eq!(outputs.stdout_json()["vpc_id"]["value"], "vpc-0abc");

    let seen = server
        .http()
        .get(server.state_url("network"))
        .basic_auth("terraform", Some(&outputs_token))
        .send()
        .expect("read as the outputs token")
        .text()
        .expect("read the body");
    assert!(seen.contains("vpc-0abc"), "{seen}");
    assert!(!seen.contains("hunter2-secret"), "{seen}");
    assert!(!seen.contains("aws_db_instance"), "{seen}");
}

#[test]
fn a_plan_token_locks_for_plan_but_cannot_apply() {
    require_terraform!();
    let server = Terrace::start();
    let writer = Workdir::new(&server, "prod", Role::Write);
    writer.terraform(&["init"]).assert_success();
    writer
        .terraform(&["apply", "-auto-approve"])
        .assert_success();
    let versions_before = server.state_versions("prod");

    let mut planner = Workdir::new(&server, "prod", Role::Read);
    planner.set_password(&token(&server, "plan"));
    planner.set_outputs(&[("greeting", "changed by a planner")]);
    planner.terraform(&["init"]).assert_success();
    // Plan takes and releases the lock.
    let plan = planner.terraform(&["plan"]);
    plan.assert_success();
    assert!(plan.stdout.contains("changed by a planner"), "{plan}");

    let apply = planner.terraform(&["apply", "-auto-approve"]);
    apply.assert_failure();
    assert_eq!(server.state_versions("prod"), versions_before);
    assert_eq!(server.lock_holder("prod"), None, "the lock is released");
}
