//! The web UI: server-rendered pages at `/` and under `/ui/`, over the other features'
//! services (the same authorization as the API: what a user may not see is a 404).
//!
//! Pages are askama templates (`templates/web/`), checked when the crate builds; the one
//! stylesheet is embedded in the binary. Reading works without JavaScript. Sign-in uses the
//! browser session and CSRF protection of `identity::browser`, like the login pages.

mod routes;
mod service;
mod views;

pub use routes::routes;

/// The web UI's state: the features it shows.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub state: crate::state::Ctx,
    pub registry: crate::registry::Ctx,
    pub costs: crate::costs::Ctx,
}

impl Ctx {
    pub fn new(
        state: &crate::state::Ctx,
        registry: &crate::registry::Ctx,
        costs: &crate::costs::Ctx,
    ) -> Ctx {
        Ctx {
            state: state.clone(),
            registry: registry.clone(),
            costs: costs.clone(),
        }
    }

    fn identity(&self) -> &crate::identity::Ctx {
        &self.state.identity
    }
}
