//! Private registry: remote service discovery, the module and provider registry protocols and
//! the provider network mirror. Namespaces are orgs.

pub mod mirror;
pub mod modules;
pub mod namespace;
pub mod providers;
mod routes;
mod store;
pub mod views;

pub use routes::routes;

use std::sync::Arc;

use crate::error::Result;
use crate::infra::cache::TtlCache;
use crate::infra::counts::PendingCounts;

/// The registry's state: identity (to authenticate), its caches, download counts not yet
/// written, and the mirror's owner.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub identity: crate::identity::Ctx,
    /// Registry namespaces by name (`None`: no such namespace).
    pub namespaces: Arc<TtlCache<String, Option<namespace::Namespace>>>,
    /// Sorted module versions by (org id, name, system), for the protocol's hottest read.
    pub module_versions: Arc<TtlCache<(i64, String, String), Arc<modules::SortedVersions>>>,
    /// Module downloads not yet written, by version blob id.
    pub module_downloads: Arc<PendingCounts<String>>,
    /// Provider downloads not yet written, by package id.
    pub provider_downloads: Arc<PendingCounts<i64>>,
    /// The org whose admins manage the provider mirror.
    pub mirror_org: Option<String>,
}

/// Cache names, for invalidations.
pub const NAMESPACE_CACHE: &str = "namespaces";
pub const MODULE_VERSION_CACHE: &str = "module_versions";

impl Ctx {
    pub fn new(identity: &crate::identity::Ctx, mirror_org: Option<String>) -> Ctx {
        Ctx {
            namespaces: identity.caches.register(NAMESPACE_CACHE, 1_000),
            module_versions: identity.caches.register(MODULE_VERSION_CACHE, 10_000),
            module_downloads: Arc::default(),
            provider_downloads: Arc::default(),
            identity: identity.clone(),
            mirror_org,
        }
    }
}

crate::identity::feature_ctx!(Ctx);

/// Writes the download counts gathered since the last call (a periodic job).
pub async fn flush_download_counts(app: &Ctx) -> Result<()> {
    let modules = modules::flush_downloads(app).await;
    let providers = providers::flush_download_counts(app).await;
    modules.and(providers)
}
