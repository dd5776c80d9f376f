//! Wire types of the state management API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::store::VersionRow;

/// One state version as the API shows it.
#[derive(Debug, Serialize)]
pub struct StateVersion {
    pub version: i64,
    pub serial: Option<i64>,
    pub lineage: Option<String>,
    pub sha256: String,
    pub size: i64,
    pub source: String,
    /// The run that wrote it (`source` = `run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<VersionRow> for StateVersion {
    fn from(row: VersionRow) -> Self {
        StateVersion {
            version: row.version,
            serial: row.serial,
            lineage: row.lineage,
            sha256: row.sha256,
            size: row.size,
            source: row.source,
            run_id: row.run_id,
            created_at: row.created_at,
            created_by: row.created_by,
        }
    }
}

/// Who holds a lock, as the API shows it.
#[derive(Debug, Serialize)]
pub struct LockHolder {
    pub id: String,
    pub who: String,
    pub operation: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// Acquisition, or the holder's latest write or re-LOCK.
    pub renewed_at: DateTime<Utc>,
    /// `None` when the workspace has no lock lease.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The lease ran out without a write or renewal.
    pub stale: bool,
    /// The lock info JSON exactly as the holder sent it.
    pub info: serde_json::Value,
}

/// One workspace in a listing.
#[derive(Debug, Serialize)]
pub struct WorkspaceSummary {
    pub name: String,
    pub serial: Option<i64>,
    pub size: Option<i64>,
    pub versions: i64,
    pub updated_at: DateTime<Utc>,
    /// Who wrote the current version (`user:…`, `token:…`, `run:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    pub lineage_protection: bool,
    /// Lock lease such as `2h`; `None` when locks never go stale.
    pub lock_lease: Option<String>,
    pub expire_stale_locks: bool,
    /// Keep only the newest N versions (and those younger than `retain_days`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_versions: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_days: Option<i64>,
    pub lock: Option<serde_json::Value>,
}

/// Workspace settings an admin can change.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub lineage_protection: Option<bool>,
    /// Absent: unchanged; `null`: no lease; otherwise a duration such as `2h`.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub lock_lease: Option<Option<String>>,
    pub expire_stale_locks: Option<bool>,
    /// Absent: unchanged; `null`: no limit; otherwise keep the newest N versions.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub retain_versions: Option<Option<i64>>,
    /// Absent: unchanged; `null`: no limit; otherwise keep versions younger than D days.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub retain_days: Option<Option<i64>>,
}
