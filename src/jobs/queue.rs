//! A durable work queue on the `jobs` table: producers enqueue, workers on any replica claim
//! with a lease, and a job whose worker died is claimed again once its lease runs out.

use chrono::{DateTime, Utc};

use super::store::{self, JobRow};
use crate::error::Result;
use crate::infra::db::Db;

pub use store::JobRow as Job;

/// Queues a job of `kind` to run from `run_after` on; returns its id.
pub async fn enqueue(db: &Db, kind: &str, payload: &str, run_after: DateTime<Utc>) -> Result<i64> {
    store::enqueue(db, kind, payload, run_after).await
}

/// Claims the oldest due job of `kind` for `lease`; renew by claiming again before it ends.
pub async fn claim(
    db: &Db,
    kind: &str,
    holder: &str,
    lease: std::time::Duration,
) -> Result<Option<JobRow>> {
    store::claim(db, kind, holder, lease).await
}

/// Marks a claimed job done (or failed for good, with `error`).
pub async fn finish(db: &Db, job: &Job, holder: &str, error: Option<&str>) -> Result<bool> {
    store::finish(db, job.id, holder, error).await
}

/// Gives a claimed job back to run again from `run_after`.
pub async fn retry(db: &Db, job: &Job, holder: &str, run_after: DateTime<Utc>) -> Result<bool> {
    store::retry(db, job.id, holder, run_after).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn exercise(db: &Db) {
        let now = Utc::now();
        let lease = Duration::from_secs(60);
        let first = enqueue(db, "run", "{\"n\":1}", now).await.unwrap();
        let second = enqueue(db, "run", "{\"n\":2}", now).await.unwrap();
        enqueue(db, "run", "{\"n\":3}", now + chrono::Duration::hours(1))
            .await
            .unwrap();
        let a = claim(db, "run", "a", lease).await.unwrap().unwrap();
        let b = claim(db, "run", "b", lease).await.unwrap().unwrap();
        assert_eq!((a.id, b.id), (first, second));
        assert_eq!(a.attempts, 1);
        // The third is not due, and the others are leased.
        assert!(claim(db, "run", "c", lease).await.unwrap().is_none());
        assert!(finish(db, &a, "a", None).await.unwrap());
        // Only the holder can finish; a finished job stays finished.
        assert!(!finish(db, &b, "a", None).await.unwrap());
        assert!(!finish(db, &a, "a", None).await.unwrap());
        // A job handed back (or whose lease runs out) is claimed again.
        assert!(retry(db, &b, "b", Utc::now()).await.unwrap());
        let again = claim(db, "run", "c", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempts), (second, 2));
        let taken_over = claim(db, "run", "d", lease).await.unwrap().unwrap();
        assert_eq!((taken_over.id, taken_over.attempts), (second, 3));
        assert!(!finish(db, &again, "c", None).await.unwrap());
        assert!(finish(db, &taken_over, "d", Some("failed")).await.unwrap());
    }

    #[tokio::test]
    async fn jobs_are_claimed_once_and_reclaimed_after_their_lease_on_sqlite() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        exercise(&db).await;
    }

    #[tokio::test]
    async fn jobs_are_claimed_once_and_reclaimed_after_their_lease_on_postgres() {
        let Some(db) = crate::infra::db::testing::postgres().await else {
            return;
        };
        exercise(&db).await;
    }
}
