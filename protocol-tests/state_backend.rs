//! Terraform stores, reads, pushes and migrates state through Terrace's http
//! backend, and Terrace keeps every version it was given.

use serde_json::Value;

use crate::harness::{Role, Terrace, Workdir};

/// The workspace `examples/terraform/http-backend` uses.
const WORKSPACE: &str = "networking-prod";

/// The value of a string output in a state document.
fn output_value<'a>(state: &'a Value, name: &str) -> Option<&'a str> {
    state["outputs"][name]["value"].as_str()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Initialises `dir` and applies its configuration, asserting both succeed.
fn init_and_apply(dir: &Workdir) {
    dir.terraform(&["init"]).assert_success();
    dir.terraform(&["apply", "-auto-approve"]).assert_success();
}

#[test]
fn state_pull_returns_the_outputs_written_by_apply() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    init_and_apply(&dir);

    let pulled = dir
        .terraform(&["state", "pull"])
        .assert_success()
        .stdout_json();

    assert_eq!(
        output_value(&pulled, "greeting"),
        Some("hello"),
        "{pulled:#}"
    );
}

#[test]
fn apply_records_a_state_version_matching_the_stored_state() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);

    init_and_apply(&dir);

    let stored = server
        .pull_state_bytes(WORKSPACE)
        .expect("apply stores a state");
    let state: Value = serde_json::from_slice(&stored).expect("state is JSON");
    let versions = server.state_versions(WORKSPACE);
    let newest = versions.first().expect("at least one state version");
    assert_eq!(newest["serial"], state["serial"], "{versions:#?}");
    assert_eq!(newest["lineage"], state["lineage"], "{versions:#?}");
    assert_eq!(newest["size"], stored.len(), "{versions:#?}");
    assert_eq!(
        newest["sha256"].as_str(),
        Some(sha256_hex(&stored).as_str()),
        "{versions:#?}"
    );
}

#[test]
fn apply_with_a_changed_output_adds_a_newer_state_version() {
    require_terraform!();
    let server = Terrace::start();
    let mut dir = Workdir::new(&server, WORKSPACE, Role::Write);
    init_and_apply(&dir);
    let before = server.state_versions(WORKSPACE);
    assert!(!before.is_empty(), "the first apply stores a version");

    dir.set_outputs(&[("greeting", "hello again")]);
    dir.terraform(&["apply", "-auto-approve"]).assert_success();

    let after = server.state_versions(WORKSPACE);
    assert!(after.len() > before.len(), "{before:#?}\n{after:#?}");
    let serials: Vec<i64> = after
        .iter()
        .map(|version| version["serial"].as_i64().expect("serial is an integer"))
        .collect();
    assert!(
        serials.windows(2).all(|pair| pair[0] > pair[1]),
        "versions are newest first with increasing serials: {serials:?}"
    );
    assert!(serials[0] > before[0]["serial"].as_i64().unwrap_or(i64::MAX));
    let state = server.pull_state(WORKSPACE).expect("state exists");
    assert_eq!(output_value(&state, "greeting"), Some("hello again"));
}

#[test]
fn state_push_of_a_higher_serial_is_stored_and_pulled_back() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    init_and_apply(&dir);
    let mut local = dir
        .terraform(&["state", "pull"])
        .assert_success()
        .stdout_json();
    let pushed_serial = local["serial"].as_i64().expect("serial is an integer") + 5;
    local["serial"] = pushed_serial.into();
    local["outputs"]["greeting"]["value"] = "pushed".into();
    let file = dir.path().join("pushed.tfstate");
    std::fs::write(&file, local.to_string()).expect("write the state to push");

    dir.terraform(&["state", "push", "pushed.tfstate"])
        .assert_success();

    let stored = server.pull_state(WORKSPACE).expect("state exists");
    assert_eq!(
        output_value(&stored, "greeting"),
        Some("pushed"),
        "{stored:#}"
    );
    assert_eq!(stored["lineage"], local["lineage"], "{stored:#}");
    // Terraform 1.0.3 bumps the serial of a pushed file once more (7 → 8).
    assert!(
        stored["serial"].as_i64() >= Some(pushed_serial),
        "{stored:#}"
    );
    let pulled = dir
        .terraform(&["state", "pull"])
        .assert_success()
        .stdout_json();
    assert_eq!(pulled["serial"], stored["serial"]);
    assert_eq!(output_value(&pulled, "greeting"), Some("pushed"));
}

#[test]
fn init_migrate_state_moves_a_local_state_into_terrace() {
    require_terraform!();
    let server = Terrace::start();
    let mut dir = Workdir::local();
    init_and_apply(&dir);
    let local_file = std::fs::read(dir.path().join("terraform.tfstate")).expect("local state");
    let local: Value = serde_json::from_slice(&local_file).expect("local state is JSON");

    dir.use_terrace(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init", "-migrate-state", "-force-copy"])
        .assert_success();

    let stored = server
        .pull_state(WORKSPACE)
        .expect("the local state was migrated");
    // Terraform's remote state manager mints a fresh lineage for the first
    // snapshot in an empty backend, migration included, so only the content
    // carries over.
    assert_eq!(stored["outputs"], local["outputs"], "{stored:#}");
    assert_eq!(stored["resources"], local["resources"], "{stored:#}");
    let versions = server.state_versions(WORKSPACE);
    assert_eq!(versions.len(), 1, "{versions:#?}");
    assert_eq!(versions[0]["lineage"], stored["lineage"], "{versions:#?}");
    dir.terraform(&["plan", "-detailed-exitcode"])
        .assert_success();
}

#[test]
fn http_backend_example_stores_its_state_in_terrace() {
    require_terraform!();
    let server = Terrace::start();
    let dir = Workdir::from_example("http-backend", &server, Role::Write);

    init_and_apply(&dir);

    let stored = server.pull_state(WORKSPACE).expect("apply stores a state");
    assert_eq!(
        output_value(&stored, "environment"),
        Some("networking-prod"),
        "{stored:#}"
    );
}

#[test]
fn read_token_can_pull_state() {
    require_terraform!();
    let server = Terrace::start();
    init_and_apply(&Workdir::new(&server, WORKSPACE, Role::Write));
    let reader = Workdir::new(&server, WORKSPACE, Role::Read);
    reader.terraform(&["init"]).assert_success();

    let pulled = reader
        .terraform(&["state", "pull"])
        .assert_success()
        .stdout_json();

    assert_eq!(
        output_value(&pulled, "greeting"),
        Some("hello"),
        "{pulled:#}"
    );
}

#[test]
fn read_token_cannot_apply_and_nothing_new_is_stored() {
    require_terraform!();
    let server = Terrace::start();
    init_and_apply(&Workdir::new(&server, WORKSPACE, Role::Write));
    let versions_before = server.state_versions(WORKSPACE);
    let mut reader = Workdir::new(&server, WORKSPACE, Role::Read);
    reader.set_outputs(&[("greeting", "from a reader")]);
    reader.terraform(&["init"]).assert_success();

    let apply = reader.terraform(&["apply", "-auto-approve"]);

    apply.assert_failure();
    // 403 on LOCK: "HTTP remote state endpoint invalid auth".
    assert!(apply.stderr.contains("auth"), "{apply}");
    assert_eq!(server.state_versions(WORKSPACE), versions_before);
    let state = server.pull_state(WORKSPACE).expect("state exists");
    assert_eq!(output_value(&state, "greeting"), Some("hello"));
    assert_eq!(
        server.lock_holder(WORKSPACE),
        None,
        "no lock is left behind"
    );
}
