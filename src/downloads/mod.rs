//! Signed, expiring download links (`GET /dl/{blob_id}/{filename}`) for the clients that
//! download without credentials: Terraform fetching module archives, provider zips, SHA256SUMS
//! and signatures. Features mint the links; this feature checks and serves them.

mod routes;
pub mod service;
mod store;

pub use routes::routes;
pub use service::{LINK_TTL_SECONDS, link_path, signed_url};
