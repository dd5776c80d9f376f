//! Blueprints: a catalogue of curated modules of an org's registry. Each entry names a module
//! and a version constraint, carries catalogue metadata and per-input curation, and answers
//! an input schema (JSON Schema 2020-12) derived from the module's variables. Users consume a
//! blueprint's module like any module; deployments resolve and validate through [`resolve`]
//! and [`validate_inputs`].
//!
//! Layers: `routes` → `service` (rules, authorization, module resolution through the
//! registry's public service) → `store` (SQL). `schema` and `constraint` are pure functions.

pub(crate) mod constraint;
mod routes;
pub mod schema;
pub mod service;
mod store;
pub mod views;

pub use routes::routes;
pub use service::{Resolved, resolve, validate_inputs};

/// The blueprints' state: identity (to authenticate) and the registry's state (modules are
/// read through its public service).
#[derive(Clone, Debug)]
pub struct Ctx {
    pub identity: crate::identity::Ctx,
    pub registry: crate::registry::Ctx,
}

impl Ctx {
    pub fn new(registry: &crate::registry::Ctx) -> Ctx {
        Ctx {
            identity: registry.identity.clone(),
            registry: registry.clone(),
        }
    }
}

crate::identity::feature_ctx!(Ctx);
