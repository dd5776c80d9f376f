//! Notifications: events (runs, budgets, stale locks) delivered to an org's webhooks.
//!
//! Features raise an [`Event`] through [`emit`] (or [`emit_once`] for events that must fire
//! once). `emit` records the event and one delivery per matching subscription in the outbox
//! (`notification_deliveries`), in one transaction; the delivery worker ([`deliver_due`], run
//! on every replica by `jobs`) claims due deliveries with a lease (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, the SQLite writer's turn on SQLite), signs them (Standard Webhooks and HCP
//! Terraform's `X-TFE-Notification-Signature`), posts them, logs every attempt and retries
//! with exponential backoff (honouring `Retry-After`) for about a day.
//!
//! Layers: `routes` → `service` (rules, authorization) → `store` (SQL); `delivery` (the
//! worker), `sign` (signatures and bodies) and `guard` (refusing private targets).

mod delivery;
mod guard;
mod routes;
pub mod service;
pub mod sign;
mod store;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

pub use delivery::{deliver_due, run_worker};
pub use routes::routes;

use crate::error::Result;
use crate::infra::AppState;

/// Every event kind a subscription may name (a pattern such as `run:*` or `*` matches several).
pub const KINDS: &[&str] = &[
    "run:created",
    "run:planning",
    "run:planned",
    "run:needs_attention",
    "run:applying",
    "run:applied",
    "run:completed",
    "run:errored",
    "run:canceled",
    "run:discarded",
    "budget:threshold",
    "lock:stale",
];

/// The kind of the event `POST …/notifications/{name}/test` sends.
pub const TEST_KIND: &str = "notification:test";

/// Something that happened in an org that subscribers may want to hear about.
#[derive(Debug, Clone)]
pub struct Event {
    pub org_id: i64,
    /// `run:planned`, `run:needs_attention`, `run:applied`, `run:errored`, `budget:threshold`,
    /// `lock:stale`, … (see [`KINDS`]).
    pub kind: &'static str,
    /// The workspace the event concerns, for subscriptions filtered by a workspace glob.
    pub workspace: Option<String>,
    /// The event's `data`. A string `message` in it, if any, is the text of Slack messages.
    pub payload: serde_json::Value,
}

/// How deliveries are made; `Default` is the documented default of each setting.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Allow targets on private, loopback and link-local addresses
    /// (`notifications_allow_private`).
    pub allow_private: bool,
    /// The first retry's delay; each further one doubles it (`notifications_retry_base`).
    pub retry_base: Duration,
    /// How long after an event its delivery is still retried (`notifications_retry_limit`).
    pub retry_limit: Duration,
    /// Time allowed for one attempt, connecting included (`notifications_timeout`).
    pub timeout: Duration,
    /// How often one replica looks for stale state locks (`notifications_lock_check`).
    pub lock_check: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            allow_private: false,
            retry_base: Duration::from_secs(30),
            retry_limit: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            lock_check: Duration::from_secs(30),
        }
    }
}

impl From<crate::config::NotificationSettings> for Settings {
    fn from(c: crate::config::NotificationSettings) -> Settings {
        Settings {
            allow_private: c.allow_private,
            retry_base: c.retry_base,
            retry_limit: c.retry_limit,
            timeout: c.timeout,
            lock_check: c.lock_check,
        }
    }
}

/// The notifications' state: identity (to authenticate), the settings and the HTTP client
/// that refuses private targets.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub identity: crate::identity::Ctx,
    pub settings: Arc<Settings>,
    client: reqwest::Client,
}

impl Ctx {
    pub fn new(identity: &crate::identity::Ctx, settings: Settings) -> Ctx {
        let client = guard::client(&settings);
        Ctx {
            identity: identity.clone(),
            settings: Arc::new(settings),
            client,
        }
    }
}

crate::identity::feature_ctx!(Ctx);

/// Wakes this process's delivery worker when an event was queued.
fn wake() -> &'static tokio::sync::Notify {
    static WAKE: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    WAKE.get_or_init(tokio::sync::Notify::new)
}

/// Queues `event` for every matching subscription of its org. Call it after the change the
/// event reports has committed, and never while holding the SQLite writer's turn
/// (`AppState::write_turn`): it takes that turn itself.
pub async fn emit(state: &AppState, event: Event) -> Result<()> {
    service::record(state, &event, None).await
}

/// How long ended deliveries (and their events and attempts) are kept.
pub const KEEP_DELIVERIES: chrono::Duration = chrono::Duration::days(30);
/// How long the record that a fire-once event was raised is kept.
pub const KEEP_ONCE: chrono::Duration = chrono::Duration::days(400);

/// Deletes events older than [`KEEP_DELIVERIES`] whose deliveries have all ended (fire-once
/// events after [`KEEP_ONCE`]); answers how many. Run hourly by a singleton job.
pub async fn prune(state: &AppState) -> Result<()> {
    let now = chrono::Utc::now();
    let _turn = state.write_turn().await;
    let deleted = store::prune(&state.db, now - KEEP_DELIVERIES, now - KEEP_ONCE).await?;
    if deleted > 0 {
        tracing::info!(
            events = deleted,
            "old notification events and deliveries deleted"
        );
    }
    Ok(())
}

/// Like [`emit`], but an event with the same `key` is raised only once, ever (a stale lock
/// named by its holder and last renewal, a budget threshold in a period, …).
pub async fn emit_once(state: &AppState, event: Event, key: &str) -> Result<()> {
    service::record(state, &event, Some(key)).await
}
