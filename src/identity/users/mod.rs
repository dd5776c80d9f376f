//! Users and their org memberships; login tokens as the user and admins see them.

mod routes;
pub mod service;
pub mod store;
pub mod views;

pub use routes::routes;
pub use service::*;
