//! Provider registry: GPG keys per namespace, publishing goreleaser releases (verified
//! against those keys, or signed by Terrace), and the `providers.v1` protocol Terraform
//! installs from. SQL stays in `store`, private to this feature.

pub mod address;
mod counts;
pub mod keys;
pub mod package;
pub mod publish;
pub mod routes;
pub mod service;
pub mod signing;
mod store;
pub mod sums;

pub use counts::flush as flush_download_counts;
pub use routes::routes;
