//! Terraform HTTP state backend: versions, locks, lineage/serial protection (`service`), and the
//! management API over them. SQL stays in `store`, private to this feature.

pub mod api;
pub mod deletion;
mod document;
mod lock;
pub mod locks;
pub mod management;
pub mod routes;
pub mod service;
mod store;

pub use service::ReceivedState;
