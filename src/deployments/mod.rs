//! Deployments (a blueprint instantiated into a workspace), their runs, and the server side
//! of the runner protocol: runs are queued in the database (`infra::queue`), claimed by
//! runners over HTTP (or in process, through the same functions), and report back logs,
//! plans and outcomes. `generate` writes the root module a run executes.

mod events;
pub mod generate;
pub mod phase;
pub mod protocol;
mod routes;
pub mod runs;
pub mod service;
mod store;
pub mod views;

use std::ops::Deref;
use std::sync::{Arc, OnceLock, RwLock};

pub use routes::routes;

use crate::infra::AppState;

/// The deployments feature's state: the state feature (workspaces, outputs, identity) and
/// what wakes waiting runners.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub state: crate::state::Ctx,
    /// Blueprints resolve a deployment's module version and validate its inputs.
    pub blueprints: crate::blueprints::Ctx,
    /// Woken whenever a run becomes claimable on this replica.
    pub wake: Arc<tokio::sync::Notify>,
    /// Why queued runs are not starting, when this server knows (no Terraform found).
    pub waiting_reason: Arc<RwLock<Option<String>>>,
    /// Terraform's provider mirror URL for runs, when the server has a mirror.
    pub mirror_url: Option<String>,
    /// The check run after every plan with changes (the cost phase), registered when the
    /// application is built; shared by every clone.
    pub plan_check: Arc<OnceLock<Arc<dyn phase::PlanCheck>>>,
}

impl Ctx {
    pub fn new(
        state: &crate::state::Ctx,
        blueprints: &crate::blueprints::Ctx,
        mirror: bool,
    ) -> Ctx {
        Ctx {
            state: state.clone(),
            blueprints: blueprints.clone(),
            wake: Arc::default(),
            waiting_reason: Arc::default(),
            mirror_url: mirror.then(|| "/v1/mirror/".to_string()),
            plan_check: Arc::default(),
        }
    }

    /// Records why queued runs wait (or that they no longer do).
    pub fn set_waiting_reason(&self, reason: Option<String>) {
        *self
            .waiting_reason
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }

    fn waiting_reason(&self) -> Option<String> {
        self.waiting_reason
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Deref for Ctx {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.state
    }
}

impl crate::identity::HasIdentity for Ctx {
    fn identity(&self) -> &crate::identity::Ctx {
        &self.state.identity
    }
}
