//! Notifications: events (runs, budgets, stale locks) delivered to an org's webhooks.
//!
//! Features raise an [`Event`] through [`emit`]; delivery is this feature's business.

use crate::error::Result;
use crate::infra::AppState;

/// Something that happened in an org that subscribers may want to hear about.
#[derive(Debug, Clone)]
pub struct Event {
    pub org_id: i64,
    /// `run:planned`, `run:needs_attention`, `run:applied`, `run:errored`, `budget:threshold`,
    /// `lock:stale`, …
    pub kind: &'static str,
    /// The workspace the event concerns, for subscriptions filtered by a workspace glob.
    pub workspace: Option<String>,
    pub payload: serde_json::Value,
}

/// Queues `event` for every matching subscription of its org.
pub async fn emit(state: &AppState, event: Event) -> Result<()> {
    // Delivery (the outbox, signing, retries) is built in this module; until then events go
    // to the log only.
    let _ = state;
    tracing::debug!(
        kind = event.kind,
        org_id = event.org_id,
        "notification event"
    );
    Ok(())
}
