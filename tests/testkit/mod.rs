//! Test code shared by the test crates (`tests/http` and `protocol-tests`), each of which
//! mounts this folder with `#[path = "…/tests/testkit/mod.rs"] mod testkit;`. It is not a
//! test crate of its own: Cargo builds only the `[[test]]` targets.

// Each crate uses a part of what is here.
#![allow(dead_code)]

pub mod server;

/// Whether the tests run under CI (`CI` set), where every prerequisite must be present.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Reports a missing prerequisite of a test that is about to return early: under `CI` a
/// failure, so the suite cannot go green by skipping; otherwise a printed note.
#[track_caller]
pub fn missing(what: &str) {
    if under_ci() {
        panic!("{what}: every prerequisite must be present under CI");
    }
    eprintln!("skipping: {what}");
}

/// The value of `variable`; `None` after [`missing`] when it is unset.
#[track_caller]
pub fn required_var(variable: &str) -> Option<String> {
    let value = std::env::var(variable).ok();
    if value.is_none() {
        missing(&format!("{variable} is not set"));
    }
    value
}
