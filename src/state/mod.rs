//! Terraform HTTP state backend: versions, locks, lineage/serial protection (`service`), and the
//! management API over them (`management`). SQL stays in `store`, private to this feature.

mod deletion;
pub mod diff;
pub(crate) mod document;
pub mod feed;
mod lock;
pub mod locks;
pub mod management;
#[cfg(test)]
mod properties;
mod routes;
pub mod service;
mod store;
pub mod views;

use std::sync::Arc;

pub use deletion::{apply_all_retention, apply_retention, delete_versions};
pub use routes::routes;

use crate::infra::blob::StoredBlob;
use crate::infra::cache::TtlCache;

/// The state feature's state: identity (to authenticate), the lock backend and its caches.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub identity: crate::identity::Ctx,
    /// Where state locks live: the database (default) or DynamoDB.
    pub locks: locks::Locks,
    /// Workspace ids by (org id, name). Workspaces are never renamed or deleted, so nothing
    /// invalidates these.
    pub workspace_ids: Arc<TtlCache<(i64, String), i64>>,
    /// The blob of each workspace's current state (`None`: no state) by workspace id, so a
    /// state read needs no query. SQLite only, where this process is the one server writing
    /// state, and every change of a current version (`service::commit`, `delete_state`) drops
    /// the entry before it answers. Replicas on PostgreSQL read the current version every
    /// time: a write through another replica must be seen by the very next read.
    pub current_blobs: Option<Arc<TtlCache<i64, Option<Arc<StoredBlob>>>>>,
}

/// The name of the current-state cache.
pub const CURRENT_BLOB_CACHE: &str = "current_blobs";

impl Ctx {
    pub fn new(identity: &crate::identity::Ctx, locks: locks::Locks) -> Ctx {
        let sqlite = matches!(identity.db, crate::infra::db::Db::Sqlite(_));
        Ctx {
            workspace_ids: identity.caches.register("workspace_ids", 100_000),
            current_blobs: sqlite.then(|| identity.caches.register(CURRENT_BLOB_CACHE, 100_000)),
            identity: identity.clone(),
            locks,
        }
    }
}

crate::identity::feature_ctx!(Ctx);
