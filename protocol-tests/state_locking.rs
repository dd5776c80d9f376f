//! Terraform's state locking against Terrace: LOCK/UNLOCK on the state
//! address, POST/DELETE on the `/lock` address, contention between clients,
//! force-unlock and writes that do not carry the holder's lock ID.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Role, Terrace, Workdir};
use crate::testkit::required_var;

const WORKSPACE: &str = "networking-prod";

/// A lock ID in the shape Terraform generates, held by "another client".
const HOLDER_ID: &str = "9f2b8c1e-5d3a-4e7f-8a6b-0c1d2e3f4a5b";

/// How long an interactive apply may take to reach its approval prompt.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(60);

fn output_value<'a>(state: &'a Value, name: &str) -> Option<&'a str> {
    state["outputs"][name]["value"].as_str()
}

fn holder_id(server: &Terrace) -> Option<String> {
    server
        .lock_holder(WORKSPACE)
        .map(|info| info["ID"].as_str().expect("lock info has an ID").to_owned())
}

#[test]
fn plan_releases_the_lock_when_it_finishes() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();

    dir.terraform(&["plan"]).assert_success();

    assert_eq!(server.lock_holder(WORKSPACE), None);
}

#[test]
fn plan_fails_while_another_client_holds_the_lock() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    server.hold_lock(WORKSPACE, HOLDER_ID);

    let plan = dir.terraform(&["plan"]);

    plan.assert_failure();
    assert!(plan.stderr.contains(HOLDER_ID), "{plan}");
    assert_eq!(holder_id(&server).as_deref(), Some(HOLDER_ID));
}

#[test]
fn apply_with_lock_false_succeeds_while_nobody_holds_the_lock() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();

    dir.terraform(&["apply", "-auto-approve", "-lock=false"])
        .assert_success();

    let state = server.pull_state(WORKSPACE).expect("apply stores a state");
    assert_eq!(output_value(&state, "greeting"), Some("hello"), "{state:#}");
    assert_eq!(server.lock_holder(WORKSPACE), None);
}

#[test]
fn apply_fails_and_names_the_holder_while_the_lock_is_held() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    server.hold_lock(WORKSPACE, HOLDER_ID);

    let apply = dir.terraform(&["apply", "-auto-approve"]);

    apply.assert_failure();
    // Terraform 1.0.3: "HTTP remote state already locked: ID=<holder id>",
    // taken from the 423 body; it does not wait for the lock.
    assert!(apply.stderr.contains(&format!("ID={HOLDER_ID}")), "{apply}");
    assert_eq!(holder_id(&server).as_deref(), Some(HOLDER_ID));
    assert_eq!(server.pull_state(WORKSPACE), None, "nothing was written");
}

#[test]
fn force_unlock_releases_a_held_lock_so_apply_succeeds() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    server.hold_lock(WORKSPACE, HOLDER_ID);

    // Terraform sends UNLOCK with an empty (chunked) body: the ID stays local.
    dir.terraform(&["force-unlock", "-force", HOLDER_ID])
        .assert_success();

    assert_eq!(server.lock_holder(WORKSPACE), None);
    dir.terraform(&["apply", "-auto-approve"]).assert_success();
    let state = server.pull_state(WORKSPACE).expect("apply stores a state");
    assert_eq!(output_value(&state, "greeting"), Some("hello"), "{state:#}");
}

#[test]
fn read_token_cannot_force_unlock() {
    require_terraform!();
    let server = Terrace::start();
    let reader = Workdir::new(&server, WORKSPACE, Role::Read);
    reader.terraform(&["init"]).assert_success();
    server.hold_lock(WORKSPACE, HOLDER_ID);

    let unlock = reader.terraform(&["force-unlock", "-force", HOLDER_ID]);

    unlock.assert_failure();
    assert_eq!(holder_id(&server).as_deref(), Some(HOLDER_ID));
}

#[test]
fn second_apply_fails_while_the_first_waits_for_approval() {
    require_terraform!();
    let server = Terrace::start();
    let first = Workdir::new(&server, WORKSPACE, Role::Write);
    let mut second = Workdir::new(&server, WORKSPACE, Role::Write);
    second.set_outputs(&[("greeting", "from the second")]);
    first.terraform(&["init"]).assert_success();
    second.terraform(&["init"]).assert_success();
    // Without -auto-approve, apply holds the lock while it waits at the prompt.
    let mut waiting = first.spawn_interactive(&["apply", "-input=true"]);
    waiting.wait_for_stdout("Enter a value:", PROMPT_TIMEOUT);
    let first_id = holder_id(&server).expect("the waiting apply holds the lock");

    let blocked = second.terraform(&["apply", "-auto-approve"]);

    blocked.assert_failure();
    assert!(blocked.stderr.contains(&first_id), "{blocked}");
    waiting.write_stdin("yes\n");
    waiting.finish().assert_success();
    let state = server
        .pull_state(WORKSPACE)
        .expect("the first apply stores a state");
    assert_eq!(output_value(&state, "greeting"), Some("hello"), "{state:#}");
    assert_eq!(server.lock_holder(WORKSPACE), None);
}

#[test]
fn write_without_the_holders_lock_id_is_refused() {
    require_terraform!();
    let server = Terrace::start();
    let mut dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    dir.terraform(&["apply", "-auto-approve"]).assert_success();
    let stored_before = server.pull_state(WORKSPACE).expect("state exists");
    let versions_before = server.state_versions(WORKSPACE);
    server.hold_lock(WORKSPACE, HOLDER_ID);
    dir.set_outputs(&[("greeting", "written without the lock")]);

    // -lock=false: Terraform writes with no `?ID=` while someone else holds the lock.
    let apply = dir.terraform(&["apply", "-auto-approve", "-lock=false"]);

    apply.assert_failure();
    assert!(
        dir.path().join("errored.tfstate").is_file() || apply.stderr.contains("HTTP error"),
        "a refused write leaves errored.tfstate behind\n{apply}"
    );
    let stored = server.pull_state(WORKSPACE).expect("state exists");
    assert_eq!(stored["serial"], stored_before["serial"], "{stored:#}");
    assert_eq!(
        output_value(&stored, "greeting"),
        Some("hello"),
        "{stored:#}"
    );
    assert_eq!(server.state_versions(WORKSPACE), versions_before);
    assert_eq!(holder_id(&server).as_deref(), Some(HOLDER_ID));
}

#[test]
fn apply_succeeds_when_locking_with_post_and_delete_on_the_lock_address() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::with_lock_path(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();

    dir.terraform(&["apply", "-auto-approve"]).assert_success();

    let state = server.pull_state(WORKSPACE).expect("apply stores a state");
    assert_eq!(output_value(&state, "greeting"), Some("hello"), "{state:#}");
    assert_eq!(server.lock_holder(WORKSPACE), None);
}

#[test]
fn lock_taken_with_the_lock_method_blocks_post_on_the_lock_address() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::with_lock_path(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    server.hold_lock(WORKSPACE, HOLDER_ID);

    let apply = dir.terraform(&["apply", "-auto-approve"]);

    apply.assert_failure();
    assert!(apply.stderr.contains(HOLDER_ID), "{apply}");
    assert_eq!(holder_id(&server).as_deref(), Some(HOLDER_ID));
}

/// The same flows with locks kept in DynamoDB (moto, created by `terrace locks init`):
/// Terraform is refused and shown the holder, `terraform force-unlock` frees the lock, and
/// then an apply locks, writes and unlocks through DynamoDB.
#[test]
fn terraform_locks_through_dynamodb() {
    require_terraform!();
    let Some(endpoint) = required_var("TERRACE_TEST_DYNAMODB_ENDPOINT") else {
        return;
    };
    let table = format!("terrace-{}", uuid::Uuid::new_v4().simple());
    let locks = format!("dynamodb://{table}?region=us-east-1&endpoint={endpoint}");
    let settings = [
        ("TERRACE_LOCKS", locks.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let server = Terrace::start_replicas(1, &settings)
        .pop()
        .expect("one server");
    let init = server.cli(&["locks", "init"], &[]);
    assert!(init.status.success(), "{init:?}");
    // `locks` appears in the readiness report only when locks live outside the database.
    let ready: Value = server
        .http()
        .get(format!("{}/readyz", server.base_url()))
        .send()
        .and_then(|r| r.json())
        .expect("readyz answers JSON");
    assert_eq!(ready["locks"], "ok", "{ready}");
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();

    server.hold_lock(WORKSPACE, HOLDER_ID);
    let apply = dir.terraform(&["apply", "-auto-approve"]);
    apply.assert_failure();
    assert!(apply.stderr.contains(HOLDER_ID), "{apply}");
    assert_eq!(server.pull_state(WORKSPACE), None);

    dir.terraform(&["force-unlock", "-force", HOLDER_ID])
        .assert_success();
    assert_eq!(server.lock_holder(WORKSPACE), None);

    dir.terraform(&["apply", "-auto-approve"]).assert_success();
    let state = server.pull_state(WORKSPACE).expect("apply stores a state");
    assert_eq!(output_value(&state, "greeting"), Some("hello"), "{state:#}");
    assert_eq!(server.lock_holder(WORKSPACE), None);
}

/// The same flows with locks kept in an Azure Storage table (azurite's Table service, created
/// by `terrace locks init`): refused while held, `terraform force-unlock`, then an apply.
#[test]
fn terraform_locks_through_an_azure_table() {
    require_terraform!();
    let Some(endpoint) = required_var("AZURITE_TABLE_URL") else {
        return;
    };
    let table = format!("terrace{}", uuid::Uuid::new_v4().simple());
    let endpoint: String = url::form_urlencoded::byte_serialize(endpoint.as_bytes()).collect();
    let locks = format!("azuretable://devstoreaccount1/{table}?endpoint={endpoint}");
    let settings = [
        ("TERRACE_LOCKS", locks.as_str()),
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
    ];
    let server = Terrace::start_replicas(1, &settings)
        .pop()
        .expect("one server");
    let init = server.cli(&["locks", "init"], &[]);
    assert!(init.status.success(), "{init:?}");
    assert!(
        String::from_utf8_lossy(&init.stderr).contains("created"),
        "{init:?}"
    );
    let ready: Value = server
        .http()
        .get(format!("{}/readyz", server.base_url()))
        .send()
        .and_then(|r| r.json())
        .expect("readyz answers JSON");
    assert_eq!(ready["locks"], "ok", "{ready}");
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();

    server.hold_lock(WORKSPACE, HOLDER_ID);
    let apply = dir.terraform(&["apply", "-auto-approve"]);
    apply.assert_failure();
    assert!(apply.stderr.contains(HOLDER_ID), "{apply}");
    assert_eq!(server.pull_state(WORKSPACE), None);

    dir.terraform(&["force-unlock", "-force", HOLDER_ID])
        .assert_success();
    assert_eq!(server.lock_holder(WORKSPACE), None);

    dir.terraform(&["apply", "-auto-approve"]).assert_success();
    let state = server.pull_state(WORKSPACE).expect("apply stores a state");
    assert_eq!(output_value(&state, "greeting"), Some("hello"), "{state:#}");
    assert_eq!(server.lock_holder(WORKSPACE), None);
}
