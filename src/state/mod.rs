//! Terraform HTTP state backend: versions, locks, lineage/serial protection, and the
//! management API over them. SQL stays in `store`, private to this feature.

pub mod api;
mod document;
mod lock;
pub mod routes;
pub mod service;
mod store;

pub use service::ReceivedState;
