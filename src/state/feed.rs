//! The state history for features that derive data from it (cost estimates): versions in
//! the order they were written, their bytes, and an org's workspaces. System-level reads
//! for background work; callers answering a request authorize first.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::Ctx;
use super::store;
use crate::error::Result;
use crate::infra::blob::StoredBlob;
use crate::infra::crypto::Envelope;

/// A state version of the history.
#[derive(Debug, Clone)]
pub struct FeedVersion {
    pub id: i64,
    pub org_id: i64,
    pub workspace_id: i64,
    pub workspace: String,
    pub created_at: DateTime<Utc>,
    /// The body's size in bytes.
    pub size: i64,
    blob: StoredBlob,
}

impl From<store::FeedRow> for FeedVersion {
    fn from(row: store::FeedRow) -> FeedVersion {
        FeedVersion {
            id: row.id,
            org_id: row.org_id,
            workspace_id: row.workspace_id,
            workspace: row.workspace,
            created_at: row.created_at,
            size: row.size,
            blob: StoredBlob {
                id: row.blob_id,
                object_key: row.object_key,
                envelope: Envelope {
                    key_id: row.key_id,
                    wrapped_key: row.wrapped_key,
                },
            },
        }
    }
}

/// Up to `limit` versions with an id above `after_id`, oldest first (of one org, and only
/// current versions, when asked).
pub async fn versions_after(
    app: &Ctx,
    after_id: i64,
    org_id: Option<i64>,
    current_only: bool,
    limit: i64,
) -> Result<Vec<FeedVersion>> {
    let rows = store::versions_after(&app.db, after_id, org_id, current_only, limit).await?;
    Ok(rows.into_iter().map(FeedVersion::from).collect())
}

/// The bytes of `version`, exactly as written.
pub async fn version_bytes(app: &Ctx, version: &FeedVersion) -> Result<Bytes> {
    app.blobs.get(&version.blob).await
}

/// Every workspace of the org `org_id`: (id, name), by name.
pub async fn workspaces(app: &Ctx, org_id: i64) -> Result<Vec<(i64, String)>> {
    store::org_workspace_names(&app.db, org_id).await
}
