//! Teams: a named group of org members with an optional role; members get the highest of
//! their own and their teams' roles, plus the policies attached to their teams. Admin only.

mod routes;
pub mod service;
pub mod store;
pub mod views;

pub use routes::routes;
pub use service::*;
