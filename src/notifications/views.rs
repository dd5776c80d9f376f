//! Wire shapes of the notifications API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a delivery's body is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"type", "timestamp", "org", "workspace", "notification", "data"}`.
    Generic,
    /// A Slack incoming-webhook message (`{"text", "blocks"}`).
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Generic => "generic",
            Format::Slack => "slack",
        }
    }

    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "generic" => Some(Format::Generic),
            "slack" => Some(Format::Slack),
            _ => None,
        }
    }
}

/// `POST /api/v1/orgs/{org}/notifications`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNotification {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    /// A workspace glob such as `prod-*`; absent: every workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /api/v1/orgs/{org}/notifications/{name}`: what it names changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationUpdate {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// `null` removes the filter.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub workspace: Option<Option<String>>,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `true`: a new signing secret, shown once in the answer.
    #[serde(default)]
    pub rotate_secret: Option<bool>,
}

/// A subscription. `secret` is present only in the answer that created it (or rotated it).
#[derive(Debug, Serialize)]
pub struct Notification {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub workspace: Option<String>,
    pub format: Format,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// One try to deliver.
#[derive(Debug, Serialize)]
pub struct Attempt {
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// When the next try is due, if another follows.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One event's delivery to one subscription, with every attempt.
#[derive(Debug, Serialize)]
pub struct Delivery {
    /// The `webhook-id` header: the same on every attempt.
    pub id: String,
    pub event: String,
    pub workspace: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub log: Vec<Attempt>,
}

/// The answer to `POST …/notifications/{name}/test`.
#[derive(Debug, Serialize)]
pub struct TestQueued {
    pub delivery: String,
}
