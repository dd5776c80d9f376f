//! Protocol tests: a real `terraform` binary drives the real `terrace` binary.
//!
//! Every test starts its own server on port 0 with its own data directory, so
//! the tests run in parallel. The Terraform binary comes from `TERRAFORM_BIN`
//! or from `.cache/terraform-1.0.3/terraform` (see `scripts/fetch-terraform`);
//! without it the tests skip locally and fail under `CI`.

#[macro_use]
mod harness;
#[path = "../tests/testkit/mod.rs"]
mod testkit;

mod access_roles;
mod blueprints;
mod deploy;
mod deployments;
mod login;
mod module_registry;
mod provider_registry;
mod replicas;
mod sso;
mod state_backend;
mod state_locking;
mod traces;
