//! Provider registry: GPG keys per namespace, publishing goreleaser releases (verified
//! against those keys, or signed by Terrace), and the `providers.v1` protocol Terraform
//! installs from. SQL stays in `store`, private to this feature.

// The mirror serves hosted providers through `service`, with the same addresses and checks.
pub(super) mod address;
mod counts;
pub(crate) mod keys;
pub(crate) mod package;
mod publish;
mod routes;
pub(super) mod service;
mod signing;
mod store;
pub(crate) mod sums;
mod views;

pub use counts::flush as flush_download_counts;
pub use routes::routes;
