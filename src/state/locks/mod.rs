//! Where state locks live: the metadata database (the default, table `state_locks`) or a
//! DynamoDB table, chosen by the `locks` setting. One closed enum, like `Db`; the service
//! asks it and never knows which backend answers.

mod dynamo;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

pub use self::dynamo::{DynamoLocks, DynamoSettings};
use super::store::{self, LockRow, WorkspaceSummaryRow};
use crate::config::AwsEnv;
use crate::db::Db;
use crate::error::Result;

/// The `locks` setting, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockSettings {
    Database,
    DynamoDb(DynamoSettings),
}

impl LockSettings {
    /// `None` or `database`: the metadata database; `dynamodb://TABLE[?region=…&endpoint=…]`:
    /// a DynamoDB table, with what the URL leaves out taken from the AWS variables in `env`.
    pub fn parse(url: Option<&str>, env: &AwsEnv) -> anyhow::Result<LockSettings> {
        match url.map(str::trim) {
            None | Some("" | "database") => Ok(LockSettings::Database),
            Some(url) if url.starts_with("dynamodb://") => {
                Ok(LockSettings::DynamoDb(DynamoSettings::parse(url, env)?))
            }
            Some(other) => {
                anyhow::bail!("locks must be `database` or dynamodb://TABLE, not {other:?}")
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> AwsEnv {
        AwsEnv {
            region: Some("eu-west-1".into()),
            endpoint: None,
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("secret".into()),
            session_token: None,
        }
    }

    #[test]
    fn the_database_is_the_default() {
        for url in [None, Some(""), Some("database")] {
            assert_eq!(
                LockSettings::parse(url, &AwsEnv::default()).unwrap(),
                LockSettings::Database
            );
        }
        assert!(LockSettings::parse(Some("redis://x"), &env()).is_err());
    }

    #[test]
    fn dynamodb_urls_name_a_table_and_take_the_rest_from_the_environment() {
        let LockSettings::DynamoDb(s) =
            LockSettings::parse(Some("dynamodb://Terrace_Locks-1.prod"), &env()).unwrap()
        else {
            panic!("not dynamodb");
        };
        assert_eq!(s.table, "Terrace_Locks-1.prod");
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.endpoint, None);
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn query_parameters_override_the_environment() {
        let env = AwsEnv {
            endpoint: Some("http://from-env:1".into()),
            ..env()
        };
        let url = "dynamodb://locks?region=us-east-2&endpoint=http%3A%2F%2F127.0.0.1%3A5000";
        let LockSettings::DynamoDb(s) = LockSettings::parse(Some(url), &env).unwrap() else {
            panic!("not dynamodb");
        };
        assert_eq!(s.table, "locks");
        assert_eq!(s.region, "us-east-2");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        let url = "dynamodb://locks/?endpoint=http://127.0.0.1:5000";
        let LockSettings::DynamoDb(s) = LockSettings::parse(Some(url), &env).unwrap() else {
            panic!("not dynamodb");
        };
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn bad_dynamodb_settings_are_refused() {
        let no_region = AwsEnv {
            region: None,
            ..env()
        };
        let no_keys = AwsEnv {
            access_key_id: None,
            ..env()
        };
        for (url, env) in [
            ("dynamodb://", env()),
            ("dynamodb://ab", env()),
            ("dynamodb://a b c", env()),
            ("dynamodb://locks/extra", env()),
            ("dynamodb://locks?colour=blue", env()),
            ("dynamodb://locks?endpoint=ftp://x", env()),
            ("dynamodb://locks", no_region),
            ("dynamodb://locks", no_keys),
        ] {
            assert!(LockSettings::parse(Some(url), &env).is_err(), "{url}");
        }
    }
}
