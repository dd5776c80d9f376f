//! Where state locks live: the metadata database (the default, table `state_locks`) or a
//! DynamoDB table, chosen by the `locks` setting. One closed enum, like `Db`; the service
//! asks it and never knows which backend answers.

mod dynamo;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

pub use self::dynamo::DynamoLocks;
use super::store::{self, LockRow, WorkspaceSummaryRow};
use crate::config::LockSettings;
use crate::error::Result;
use crate::infra::db::Db;

/// The lock backend in use.
#[derive(Clone, Debug)]
pub enum Locks {
    Database,
    DynamoDb(DynamoLocks),
}

impl Locks {
    /// The backend `settings` name; connects lazily (no request is made here).
    pub fn connect(settings: &LockSettings) -> Locks {
        match settings {
            LockSettings::Database => Locks::Database,
            LockSettings::DynamoDb(settings) => Locks::DynamoDb(DynamoLocks::connect(settings)),
        }
    }

    /// For logs: `database` or `dynamodb`.
    pub fn backend(&self) -> &'static str {
        match self {
            Locks::Database => "database",
            Locks::DynamoDb(_) => "dynamodb",
        }
    }

    /// For `/readyz`: whether a separate lock store answers (database locks are the
    /// database, checked on their own). Bounded, so a hung store cannot hang the probe.
    pub async fn ping(&self) -> Result<()> {
        let Locks::DynamoDb(d) = self else {
            return Ok(());
        };
        // No workspace has id 0: a strongly consistent read of a key that is never there.
        match tokio::time::timeout(std::time::Duration::from_secs(2), d.find(0)).await {
            Ok(found) => found.map(|_| ()),
            Err(_) => Err(crate::error::Error::Unavailable(anyhow::anyhow!(
                "DynamoDB did not answer within 2 s"
            ))),
        }
    }

    /// Takes the lock if it is free, renews it if `lock_id` already holds it, and replaces a
    /// holder not renewed since `stale_before`. Returns the holder when someone else keeps
    /// it. Atomic on both backends: two replicas cannot both take over one stale lock.
    #[expect(
        clippy::too_many_arguments,
        reason = "one lock request, field by field"
    )]
    pub(super) async fn acquire(
        &self,
        db: &Db,
        workspace_id: i64,
        lock_id: &str,
        info: &[u8],
        created_by: &str,
        now: DateTime<Utc>,
        stale_before: Option<DateTime<Utc>>,
    ) -> Result<Option<LockRow>> {
        match self {
            Locks::Database => {
                store::insert_lock(
                    db,
                    workspace_id,
                    lock_id,
                    info,
                    created_by,
                    now,
                    stale_before,
                )
                .await
            }
            Locks::DynamoDb(d) => {
                d.acquire(workspace_id, lock_id, info, created_by, now, stale_before)
                    .await
            }
        }
    }

    /// The current holder, if any (a consistent read on DynamoDB).
    pub(super) async fn find(&self, db: &Db, workspace_id: i64) -> Result<Option<LockRow>> {
        match self {
            Locks::Database => store::find_lock(db, workspace_id).await,
            Locks::DynamoDb(d) => d.find(workspace_id).await,
        }
    }

    /// What a state write must check its lock ID against when the write transaction cannot
    /// see the lock itself: `None` for database locks (read inside the transaction), else the
    /// holder as of now.
    pub(super) async fn holder_for_write(
        &self,
        workspace_id: i64,
    ) -> Result<Option<Option<LockRow>>> {
        match self {
            Locks::Database => Ok(None),
            Locks::DynamoDb(d) => Ok(Some(d.find(workspace_id).await?)),
        }
    }

    /// Marks the lock as renewed when `lock_id` still holds it (a write under the lock).
    pub(super) async fn renew(
        &self,
        db: &Db,
        workspace_id: i64,
        lock_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        match self {
            Locks::Database => store::renew_lock(db, workspace_id, lock_id, now).await,
            Locks::DynamoDb(d) => d.renew(workspace_id, lock_id, now).await,
        }
    }

    /// Releases the lock if `lock_id` holds it (any holder when `None`). True when a lock
    /// went away.
    pub(super) async fn release(
        &self,
        db: &Db,
        workspace_id: i64,
        lock_id: Option<&str>,
    ) -> Result<bool> {
        match self {
            Locks::Database => store::delete_lock(db, workspace_id, lock_id).await,
            Locks::DynamoDb(d) => d.release(workspace_id, lock_id).await,
        }
    }

    /// When each lock under a lease was last renewed, with its lease in seconds.
    pub(super) async fn leased(&self, db: &Db) -> Result<Vec<(DateTime<Utc>, i64)>> {
        match self {
            Locks::Database => store::leased_locks(db).await,
            Locks::DynamoDb(d) => {
                let held = d.all_renewals().await?;
                let ids: Vec<i64> = held.keys().copied().collect();
                let leases = store::lock_leases(db, &ids).await?;
                Ok(leases
                    .into_iter()
                    .filter_map(|(id, lease)| Some((*held.get(&id)?, lease)))
                    .collect())
            }
        }
    }

    /// Fills in the lock of each workspace of a listing page. The database listing joins
    /// `state_locks` already; DynamoDB is asked for the page's keys only.
    pub(super) async fn fill_page(&self, rows: &mut [WorkspaceSummaryRow]) -> Result<()> {
        let Locks::DynamoDb(d) = self else {
            return Ok(());
        };
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut held: HashMap<i64, LockRow> = d.find_many(&ids).await?;
        for row in rows {
            let lock = held.remove(&row.id);
            row.lock_renewed_at = lock.as_ref().map(|l| l.renewed_at);
            row.lock_info = lock.map(|l| l.info);
        }
        Ok(())
    }
}
