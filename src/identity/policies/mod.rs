//! Custom policies: named JSON documents of allow/deny statements (`auth::policy`), attached to
//! teams, users or API tokens of the same org. Admin only.
//!
//! Every change that can alter a grant clears the API-token cache, so it applies at once.

mod routes;
pub mod service;
pub mod store;
pub mod views;

pub use routes::routes;
pub use service::*;
