//! In-process HTTP tests: the real router on a real database.
//!
//! Every scenario runs twice, on SQLite and on PostgreSQL (`TERRACE_TEST_POSTGRES_URL`); the
//! crash test drives the real `terrace` binary.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;
#[path = "../testkit/mod.rs"]
mod testkit;

mod access;
mod audit;
mod authz_matrix;
mod backup;
mod blueprints;
mod cloud_credentials;
mod costs;
mod crash;
mod deployments;
mod encryption;
mod faults;
mod history;
mod kms;
mod limits;
mod lock_leases;
mod login;
mod module_registry;
mod notifications;
mod pagination;
mod provider_registry;
mod replica_caches;
mod schema_drift;
mod sso;
mod state_backend;
mod streaming;
mod sweep;
mod teams_policies;
mod verify;
mod version_deletion;
mod web;
mod wire_formats;
