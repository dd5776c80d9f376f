//! The one home of background work: every periodic task and long-running writer is started
//! here with a name and a join handle, and stopped together on shutdown.
//!
//! Singleton tasks (orphan sweep, retention) take a lease row in `job_leases` before each run,
//! so with several replicas on one database exactly one runs them at a time; per-replica tasks
//! (download-count flush, cache listener, audit writer) run everywhere. The `jobs` table is a
//! work queue with leases (`queue`), claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL.

pub mod queue;
mod store;

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::infra::db::Db;

/// How often `serve` looks for orphaned objects and applies retention policies.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);

/// Background tasks of this process.
#[derive(Debug)]
pub struct Jobs {
    cancel: CancellationToken,
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    /// Identifies this process in lease rows.
    holder: String,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs::new()
    }
}

impl Jobs {
    pub fn new() -> Jobs {
        Jobs {
            cancel: CancellationToken::new(),
            tasks: Mutex::default(),
            holder: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Runs `task` until it ends or the jobs stop.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        let handle = tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task => {}
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, handle));
    }

    /// Runs `work` every `interval` on this replica, the first time after one interval.
    pub fn every<F, Fut>(&self, name: &'static str, interval: Duration, work: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send,
    {
        self.spawn(name, async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(e) = work().await {
                    tracing::warn!(job = name, error = %e, "background job failed; will retry");
                }
            }
        });
    }

    /// Runs `work` every `interval` on whichever replica holds the job's lease, the first
    /// time at once: a restart does not postpone maintenance by a whole interval.
    pub fn singleton<F, Fut>(&self, name: &'static str, interval: Duration, db: Db, work: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send,
    {
        let holder = self.holder.clone();
        self.spawn(name, async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                // The lease outlives the interval a little, so the holder keeps it while alive
                // and another replica takes over within one interval after it dies.
                match store::take_lease(&db, name, &holder, interval + interval / 2).await {
                    Ok(true) => {
                        if let Err(e) = work().await {
                            tracing::warn!(job = name, error = %e, "background job failed; will retry");
                        }
                    }
                    Ok(false) => tracing::debug!(job = name, "another replica holds the lease"),
                    Err(e) => tracing::warn!(job = name, error = %e, "cannot take the job lease"),
                }
            }
        });
    }

    /// The names of the running tasks.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, _)| *name)
            .collect()
    }

    /// Stops every task and waits for them to end.
    pub async fn stop(&self) {
        self.cancel.cancel();
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (name, handle) in tasks {
            if let Err(e) = handle.await {
                tracing::warn!(job = name, error = %e, "background job ended abnormally");
            }
        }
    }
}

/// How often a SQLite server checkpoints and truncates its write-ahead log.
pub const WAL_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the periodic maintenance of a serving process.
pub fn start_maintenance(jobs: &Jobs, state: &crate::state::Ctx, registry: &crate::registry::Ctx) {
    if let Db::Sqlite(_) = &state.db {
        let db = state.db.clone();
        jobs.every("wal-checkpoint", WAL_CHECKPOINT_INTERVAL, move || {
            let db = db.clone();
            async move {
                if !db.checkpoint().await? {
                    tracing::debug!("WAL checkpoint found the database busy; next time");
                }
                Ok(())
            }
        });
    }
    let registry = registry.clone();
    jobs.every(
        "download-counts",
        crate::infra::counts::FLUSH_INTERVAL,
        move || {
            let registry = registry.clone();
            async move { crate::registry::flush_download_counts(&registry).await }
        },
    );
    let (db, blobs) = (state.db.clone(), state.blobs.clone());
    jobs.singleton(
        "orphan-sweep",
        MAINTENANCE_INTERVAL,
        db.clone(),
        move || {
            let (db, blobs) = (db.clone(), blobs.clone());
            async move { crate::ops::sweep::sweep_and_log(&db, &blobs).await }
        },
    );
    let state = state.clone();
    jobs.singleton(
        "retention",
        MAINTENANCE_INTERVAL,
        state.db.clone(),
        move || {
            let state = state.clone();
            async move { crate::state::apply_all_retention(&state).await }
        },
    );
}

/// How often the cost history estimates new state versions (and budgets are evaluated).
pub const COST_HISTORY_INTERVAL: Duration = Duration::from_secs(30);
/// How often each replica refreshes its cost gauges.
pub const COST_GAUGES_INTERVAL: Duration = Duration::from_secs(60);

/// Starts the cost history (a singleton: every new state version gets its run-rate, the
/// ids in it are recorded for billing attribution, budgets are evaluated) and the cost
/// gauges of this replica.
pub fn start_costs(jobs: &Jobs, costs: &crate::costs::Ctx) {
    let history = costs.clone();
    jobs.singleton(
        "cost-history",
        COST_HISTORY_INTERVAL,
        costs.db.clone(),
        move || {
            let costs = history.clone();
            async move {
                let done = crate::costs::service::catch_up(&costs, None).await?;
                if done > 0 {
                    tracing::info!(versions = done, "state versions estimated");
                }
                Ok(())
            }
        },
    );
    let gauges = costs.clone();
    jobs.every("cost-gauges", COST_GAUGES_INTERVAL, move || {
        let costs = gauges.clone();
        async move { crate::costs::budgets::refresh_gauges(&costs).await }
    });
}

/// How often the lease check looks for runs whose runner stopped heartbeating.
pub const RUN_LEASE_CHECK: Duration = Duration::from_secs(5);

/// Starts the run lease check (a singleton) and `count` in-process runners using
/// `terraform_bin`. Without a Terraform binary, says so once and leaves the reason on
/// queued runs.
pub fn start_runs(jobs: &Jobs, app: &crate::deployments::Ctx, count: u32, terraform_bin: &str) {
    let check = app.clone();
    jobs.singleton("run-leases", RUN_LEASE_CHECK, app.db.clone(), move || {
        let app = check.clone();
        async move { crate::deployments::protocol::expire_lost_runs(&app).await }
    });
    if count == 0 {
        return;
    }
    let Some(terraform) = crate::runner::find_terraform(terraform_bin) else {
        let reason = format!(
            "no Terraform found (terraform_bin = {terraform_bin}); runs wait for a runner that has one"
        );
        tracing::warn!("{reason}");
        app.set_waiting_reason(Some(reason));
        return;
    };
    app.set_waiting_reason(None);
    for n in 0..count {
        let settings = crate::runner::Settings {
            name: format!("{}-{n}", hostname()),
            terraform: terraform.clone(),
            grace: Duration::from_secs(30),
        };
        let transport = crate::runner::local::Local(app.clone());
        jobs.spawn("runner", crate::runner::work(transport, settings));
    }
}

/// Starts the notification delivery worker (every replica claims due deliveries from the
/// outbox) and the stale-lock check (a singleton raising `lock:stale` once per stale lock).
pub fn start_notifications(
    jobs: &Jobs,
    notifications: &crate::notifications::Ctx,
    state: &crate::state::Ctx,
) {
    jobs.spawn(
        "notification-delivery",
        crate::notifications::run_worker(notifications.clone(), jobs.holder.clone()),
    );
    let infra = (**state).clone();
    jobs.singleton(
        "notification-retention",
        MAINTENANCE_INTERVAL,
        state.db.clone(),
        move || {
            let infra = infra.clone();
            async move { crate::notifications::prune(&infra).await }
        },
    );
    let state = state.clone();
    jobs.singleton(
        "stale-locks",
        notifications.settings.lock_check,
        state.db.clone(),
        move || {
            let state = state.clone();
            async move { crate::state::service::announce_stale_locks(&state).await }
        },
    );
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "terrace".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn leases(db: &Db) {
        let ttl = Duration::from_secs(60);
        assert!(store::take_lease(db, "sweep", "a", ttl).await.unwrap());
        assert!(!store::take_lease(db, "sweep", "b", ttl).await.unwrap());
        // The holder renews its own lease.
        assert!(store::take_lease(db, "sweep", "a", ttl).await.unwrap());
        // Another job's lease is independent.
        assert!(store::take_lease(db, "retention", "b", ttl).await.unwrap());
        // An expired lease goes to whoever asks next.
        assert!(
            store::take_lease(db, "other", "a", Duration::ZERO)
                .await
                .unwrap()
        );
        assert!(store::take_lease(db, "other", "b", ttl).await.unwrap());
    }

    #[tokio::test]
    async fn only_one_holder_has_a_lease_until_it_expires_on_sqlite() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        leases(&db).await;
    }

    #[tokio::test]
    async fn only_one_holder_has_a_lease_until_it_expires_on_postgres() {
        let Some(db) = crate::infra::db::testing::postgres().await else {
            return;
        };
        leases(&db).await;
    }

    #[tokio::test]
    async fn of_two_replicas_one_runs_a_singleton_job() {
        let (db, _dir) = crate::infra::db::testing::sqlite().await;
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let replicas = [Jobs::new(), Jobs::new()];
        for jobs in &replicas {
            let runs = runs.clone();
            jobs.singleton("sweep", Duration::from_secs(3600), db.clone(), move || {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
            });
        }
        // Both replicas tick at once; give both a chance to take the lease.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for jobs in &replicas {
            jobs.stop().await;
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stop_ends_every_task() {
        let jobs = Jobs::new();
        jobs.spawn("forever", std::future::pending());
        jobs.every("tick", Duration::from_millis(5), || async { Ok(()) });
        assert_eq!(jobs.names(), vec!["forever", "tick"]);
        tokio::time::timeout(Duration::from_secs(5), jobs.stop())
            .await
            .expect("jobs stop promptly");
        assert!(jobs.names().is_empty());
    }
}
