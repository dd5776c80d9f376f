//! Terrace: a Terraform state backend and registry server.
//!
//! Layers, lowest first; a module imports only from its own layer or below (`scripts/layers`
//! checks this):
//! - leaves: `error` (the one error type and its HTTP mapping), `config` (every setting, parsed
//!   once), `names` (validated names), `pagination`;
//! - `infra`: database, blob store, encryption, caches, metrics, telemetry, per-request notes
//!   and `AppState`, the shared infrastructure. It knows no feature;
//! - features, each a folder of `routes` (HTTP only) → `service` (rules, authorization) →
//!   `store` (its SQL), wire types in `views`: `identity` (orgs, users, teams, tokens, policies,
//!   authorization, `terraform login`), `audit`, `downloads` (signed links), `state` (the http
//!   backend, versions, locks), `registry` (discovery, modules, providers, mirror),
//!   `blueprints` (the catalogue of curated modules and their input schemas). A feature
//!   uses lower features only through their public services;
//! - `ops` (backup, restore, verify, sweep, key rotation) and `jobs` (every background task);
//! - `http`: the router, middleware, extractors and the serve loop; `app`: builds everything
//!   from the configuration;
//! - `cli`: one file per command group.

/// The release (`Cargo.toml`'s version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binary was built from (`build.rs`), or `unknown`.
pub const GIT_REVISION: &str = env!("TERRACE_GIT_REVISION");
/// What `terrace --version` prints after the name: `0.1.0 (0123456789ab)`.
pub const LONG_VERSION: &str = const_format::concatcp!(VERSION, " (", GIT_REVISION, ")");

pub mod app;
pub mod audit;
pub mod blueprints;
pub mod cli;
pub mod config;
pub mod costs;
pub mod deployments;
pub mod downloads;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod infra;
pub mod jobs;
pub mod names;
pub mod notifications;
pub mod ops;
pub mod pagination;
pub mod registry;
pub mod runner;
pub mod state;
pub mod web;
