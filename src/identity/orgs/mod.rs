//! Organisations and their API tokens: the service used by the CLI and the management API.

mod routes;
pub mod service;
pub mod store;
pub mod views;

pub use routes::routes;
pub use service::*;
