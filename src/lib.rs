//! Terrace: a Terraform state backend and registry server.
//!
//! Layers, one way only: `server` (HTTP, auth extraction) → feature `routes`/`api` →
//! feature `service` (rules, authorization) → feature `store` (SQL) and `blob` (encrypted
//! objects). Features: `state` (http backend, versions, locks), `orgs` (orgs and tokens).
//! `db` and `blob` know no feature; `error`, `config` and `telemetry` are leaves.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod blob;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod counts;
pub mod crypto;
pub mod db;
pub mod downloads;
pub mod error;
pub mod identity;
pub mod keys;
pub mod links;
pub mod login;
pub mod metrics;
pub mod names;
pub mod orgs;
pub mod pagination;
pub mod registry;
pub mod server;
pub mod state;
pub mod sweep;
pub mod telemetry;
pub mod verify;
