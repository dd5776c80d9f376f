//! Module registry: publishing `.tar.gz` archives (checked, HCL metadata extracted, stored
//! encrypted), the `modules.v1` protocol Terraform installs from, the public registry's browse
//! endpoints, and download counts kept off the download path.
//!
//! Layers: `routes` (protocol, browse) and `api` (publish, delete) → `service` (rules,
//! authorization through the namespace) → `store` (SQL). `archive` and `metadata` are pure
//! functions over the uploaded bytes; `terrace module publish` lives in the CLI.

mod address;
mod api;
pub(crate) mod archive;
mod counts;
pub mod hcl;
pub(crate) mod metadata;
mod routes;
mod service;
mod store;
mod views;

use axum::Router;

pub use address::{ModuleAddress, ModuleVersion};
pub use counts::flush as flush_downloads;
pub use service::{
    ListRequest, ModuleConfig, list_modules, module_config, module_details, module_versions,
};
pub use views::{ModuleDetail, ModuleList, ModuleView, SortedVersions};

use crate::registry::Ctx;

/// Every module registry route: `/v1/modules/…` and `/api/v1/modules/…`.
pub fn routes() -> Router<Ctx> {
    Router::new().merge(routes::routes()).merge(api::routes())
}
