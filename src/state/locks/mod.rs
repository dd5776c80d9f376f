//! Where state locks live: the metadata database (the default, table `state_locks`), a
//! DynamoDB table or an Azure Storage table, chosen by the `locks` setting. One closed enum, like `Db`; the service
//! asks it and never knows which backend answers.

mod azure_table;
mod dynamo;

use chrono::{DateTime, Utc};

pub use self::azure_table::AzureTableLocks;
pub use self::dynamo::DynamoLocks;
use super::store::{self, LeasedLock, LockRow, WorkspaceSummaryRow};
use crate::config::LockSettings;
use crate::error::Result;
use crate::infra::db::Db;

/// The lock backend in use. The database arm holds its pool; each arm answers with the
/// state feature's `LockRow`, whatever it stores.
#[derive(Clone, Debug)]
pub enum Locks {
    Database(Db),
    DynamoDb(DynamoLocks),
    AzureTable(AzureTableLocks),
}

/// How a state write learns who holds the lock.
#[derive(Debug)]
pub(super) enum WriteCheck {
    /// The lock is read inside the write's own transaction.
    InTransaction,
    /// The holder as read just before the write (no holder: unlocked).
    Holder(Option<LockRow>),
}

fn into_rows<H: Into<LockRow>>(
    held: std::collections::HashMap<i64, H>,
) -> std::collections::HashMap<i64, LockRow> {
    held.into_iter().map(|(id, h)| (id, h.into())).collect()
}

impl From<dynamo::HeldLock> for LockRow {
    fn from(held: dynamo::HeldLock) -> LockRow {
        LockRow {
            lock_id: held.lock_id,
            info: held.info,
            created_at: held.created_at,
            created_by: held.created_by,
            renewed_at: held.renewed_at,
        }
    }
}

impl From<azure_table::HeldLock> for LockRow {
    fn from(held: azure_table::HeldLock) -> LockRow {
        LockRow {
            lock_id: held.lock_id,
            info: held.info,
            created_at: held.created_at,
            created_by: held.created_by,
            renewed_at: held.renewed_at,
        }
    }
}

impl Locks {
    /// The backend `settings` name; connects lazily (no request is made here).
    pub fn connect(settings: &LockSettings, db: Db) -> Locks {
        match settings {
            LockSettings::Database => Locks::Database(db),
            LockSettings::DynamoDb(settings) => Locks::DynamoDb(DynamoLocks::connect(settings)),
            LockSettings::AzureTable(settings) => {
                Locks::AzureTable(AzureTableLocks::connect(settings))
            }
        }
    }

    /// For logs: `database`, `dynamodb` or `azuretable`.
    pub fn backend(&self) -> &'static str {
        match self {
            Locks::Database(_) => "database",
            Locks::DynamoDb(_) => "dynamodb",
            Locks::AzureTable(_) => "azuretable",
        }
    }

    /// For `/readyz`: whether a separate lock store answers; `None` when locks live in the
    /// database, which is checked on its own. Bounded, so a hung store cannot hang the probe.
    pub async fn ping(&self) -> Option<Result<()>> {
        // No workspace has id 0: a consistent read of a key that is never there.
        let (name, found) = match self {
            Locks::Database(_) => return None,
            Locks::DynamoDb(d) => (
                "DynamoDB",
                Box::pin(async move { d.find(0).await.map(|_| ()) })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + '_>>,
            ),
            Locks::AzureTable(a) => (
                "The Azure Table",
                Box::pin(async move { a.find(0).await.map(|_| ()) }) as _,
            ),
        };
        Some(
            match tokio::time::timeout(std::time::Duration::from_secs(2), found).await {
                Ok(found) => found,
                Err(_) => Err(crate::error::Error::Unavailable(anyhow::anyhow!(
                    "{name} did not answer within 2 s"
                ))),
            },
        )
    }

    /// Whether a write under the lock renews it in the write's own transaction (database
    /// locks), rather than needing a separate renewal.
    pub(super) fn renews_in_write(&self) -> bool {
        matches!(self, Locks::Database(_))
    }

    /// Takes the lock if it is free, renews it if `lock_id` already holds it, and replaces a
    /// holder not renewed since `stale_before`. Returns the holder when someone else keeps
    /// it. Atomic on both backends: two replicas cannot both take over one stale lock.
    #[tracing::instrument(level = "debug", name = "locks.acquire", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn acquire(
        &self,
        workspace_id: i64,
        lock_id: &str,
        info: &[u8],
        created_by: &str,
        now: DateTime<Utc>,
        stale_before: Option<DateTime<Utc>>,
    ) -> Result<Option<LockRow>> {
        match self {
            Locks::Database(db) => {
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
                let holder = d
                    .acquire(workspace_id, lock_id, info, created_by, now, stale_before)
                    .await?;
                Ok(holder.map(LockRow::from))
            }
            Locks::AzureTable(a) => {
                let holder = a
                    .acquire(workspace_id, lock_id, info, created_by, now, stale_before)
                    .await?;
                Ok(holder.map(LockRow::from))
            }
        }
    }

    /// The current holder, if any (a consistent read on DynamoDB).
    #[tracing::instrument(level = "debug", name = "locks.find", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn find(&self, workspace_id: i64) -> Result<Option<LockRow>> {
        match self {
            Locks::Database(db) => store::find_lock(db, workspace_id).await,
            Locks::DynamoDb(d) => Ok(d.find(workspace_id).await?.map(LockRow::from)),
            Locks::AzureTable(a) => Ok(a.find(workspace_id).await?.map(LockRow::from)),
        }
    }

    /// What a state write checks its lock ID against: the lock read inside the write
    /// transaction (database locks), else the holder as of now.
    #[tracing::instrument(level = "debug", name = "locks.holder_for_write", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn holder_for_write(&self, workspace_id: i64) -> Result<WriteCheck> {
        match self {
            Locks::Database(_) => Ok(WriteCheck::InTransaction),
            Locks::DynamoDb(d) => Ok(WriteCheck::Holder(
                d.find(workspace_id).await?.map(LockRow::from),
            )),
            Locks::AzureTable(a) => Ok(WriteCheck::Holder(
                a.find(workspace_id).await?.map(LockRow::from),
            )),
        }
    }

    /// Marks the lock as renewed when `lock_id` still holds it (a write under the lock).
    #[tracing::instrument(level = "debug", name = "locks.renew", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn renew(
        &self,
        workspace_id: i64,
        lock_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        match self {
            Locks::Database(db) => store::renew_lock(db, workspace_id, lock_id, now).await,
            Locks::DynamoDb(d) => d.renew(workspace_id, lock_id, now).await,
            Locks::AzureTable(a) => a.renew(workspace_id, lock_id, now).await,
        }
    }

    /// Releases the lock if `lock_id` holds it (any holder when `None`). True when a lock
    /// went away.
    #[tracing::instrument(level = "debug", name = "locks.release", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn release(&self, workspace_id: i64, lock_id: Option<&str>) -> Result<bool> {
        match self {
            Locks::Database(db) => store::delete_lock(db, workspace_id, lock_id).await,
            Locks::DynamoDb(d) => d.release(workspace_id, lock_id).await,
            Locks::AzureTable(a) => a.release(workspace_id, lock_id).await,
        }
    }

    /// When each lock under a lease was last renewed, with its lease in seconds (the leases
    /// are workspace settings, read from `metadata`).
    #[tracing::instrument(level = "debug", name = "locks.leased", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn leased(&self, metadata: &Db) -> Result<Vec<(DateTime<Utc>, i64)>> {
        match self {
            Locks::Database(_) => store::leased_locks(metadata).await,
            Locks::DynamoDb(_) | Locks::AzureTable(_) => {
                let held = match self {
                    Locks::DynamoDb(d) => d.all_renewals().await?,
                    Locks::AzureTable(a) => a.all_renewals().await?,
                    Locks::Database(_) => unreachable!("matched above"),
                };
                let ids: Vec<i64> = held.keys().copied().collect();
                let leases = store::lock_leases(metadata, &ids).await?;
                Ok(leases
                    .into_iter()
                    .filter_map(|(id, lease)| Some((*held.get(&id)?, lease)))
                    .collect())
            }
        }
    }

    /// Every lock under a lease that ran out by `now`, with its workspace (lock leases are
    /// workspace settings, read from `metadata`; DynamoDB is scanned for renewals, then asked
    /// for the stale holders only).
    pub(super) async fn stale(&self, metadata: &Db, now: DateTime<Utc>) -> Result<Vec<LeasedLock>> {
        let stale =
            |l: &LeasedLock| super::lock::is_stale(l.lock.renewed_at, Some(l.lease_seconds), now);
        match self {
            Locks::Database(_) => Ok(store::leased_lock_rows(metadata)
                .await?
                .into_iter()
                .filter(stale)
                .collect()),
            Locks::DynamoDb(_) | Locks::AzureTable(_) => {
                let renewals = match self {
                    Locks::DynamoDb(d) => d.all_renewals().await?,
                    Locks::AzureTable(a) => a.all_renewals().await?,
                    Locks::Database(_) => unreachable!("matched above"),
                };
                let ids: Vec<i64> = renewals.keys().copied().collect();
                let stale_ids: Vec<(i64, i64)> = store::lock_leases(metadata, &ids)
                    .await?
                    .into_iter()
                    .filter(|(id, lease)| {
                        renewals
                            .get(id)
                            .is_some_and(|r| super::lock::is_stale(*r, Some(*lease), now))
                    })
                    .collect();
                if stale_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<i64> = stale_ids.iter().map(|(id, _)| *id).collect();
                let mut held: std::collections::HashMap<i64, LockRow> = match self {
                    Locks::DynamoDb(d) => into_rows(d.find_many(&ids).await?),
                    Locks::AzureTable(a) => into_rows(a.find_many(&ids).await?),
                    Locks::Database(_) => unreachable!("matched above"),
                };
                let names = store::workspace_names(metadata, &ids).await?;
                Ok(names
                    .into_iter()
                    .filter_map(|(id, org_id, org, workspace)| {
                        let lease_seconds = stale_ids.iter().find(|(i, _)| *i == id)?.1;
                        Some(LeasedLock {
                            workspace_id: id,
                            org_id,
                            org,
                            workspace,
                            lease_seconds,
                            lock: held.remove(&id)?,
                        })
                    })
                    .filter(stale)
                    .collect())
            }
        }
    }

    /// Fills in the lock of each workspace of a listing page. The database listing joins
    /// `state_locks` already; a lock table is asked for the page's keys only.
    #[tracing::instrument(level = "debug", name = "locks.fill_page", skip_all, fields(locks.backend = self.backend()))]
    pub(super) async fn fill_page(&self, rows: &mut [WorkspaceSummaryRow]) -> Result<()> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut held: std::collections::HashMap<i64, LockRow> = match self {
            Locks::Database(_) => return Ok(()),
            Locks::DynamoDb(d) => d
                .find_many(&ids)
                .await?
                .into_iter()
                .map(|(id, l)| (id, l.into()))
                .collect(),
            Locks::AzureTable(a) => a
                .find_many(&ids)
                .await?
                .into_iter()
                .map(|(id, l)| (id, l.into()))
                .collect(),
        };
        for row in rows {
            let lock = held.remove(&row.id);
            row.lock_renewed_at = lock.as_ref().map(|l| l.renewed_at);
            row.lock_info = lock.map(|l| l.info);
        }
        Ok(())
    }
}
