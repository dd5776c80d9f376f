//! Wire types of the deployments and runs API, and of the runner protocol.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A deployment as the API shows it.
#[derive(Debug, Serialize)]
pub struct Deployment {
    pub name: String,
    /// `active`, `destroying` or `archived`.
    pub status: String,
    pub blueprint: String,
    pub module: String,
    pub version: String,
    /// The inputs, with sensitive values replaced by `"(sensitive)"`.
    pub inputs: serde_json::Value,
    /// The outputs of the current state (sensitive ones redacted).
    pub outputs: serde_json::Value,
    pub auto_apply: bool,
    /// A run was lost while applying: the real infrastructure may differ from the state.
    pub diverged: bool,
    pub workspace: String,
    pub current_run: Option<Run>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// One run as the API shows it.
#[derive(Debug, Serialize)]
pub struct Run {
    pub id: i64,
    pub deployment: String,
    /// `plan` (plan, then apply when confirmed) or `destroy`.
    pub operation: String,
    pub status: String,
    /// Why the run is where it is (waiting for Terraform, an error, a lost runner).
    pub reason: Option<String>,
    /// Runs ahead of this one in its workspace (0: next, or running).
    pub queue_position: Option<i64>,
    pub version: String,
    pub auto_apply: bool,
    pub plan: Option<serde_json::Value>,
    pub has_changes: Option<bool>,
    pub confirmed_by: Option<String>,
    pub runner: Option<String>,
    pub log_size: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/orgs/{org}/deployments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    pub name: String,
    pub blueprint: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub inputs: Option<serde_json::Value>,
    #[serde(default)]
    pub auto_apply: Option<bool>,
}

/// `PATCH …/deployments/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeployment {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub inputs: Option<serde_json::Value>,
    #[serde(default)]
    pub auto_apply: Option<bool>,
}

/// `POST /api/v1/orgs/{org}/runner-tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRunnerToken {
    #[serde(default)]
    pub name: Option<String>,
}

/// A claim's request: who asks, and how long it may wait for work.
#[derive(Debug, Deserialize, Serialize)]
pub struct ClaimRequest {
    pub runner: String,
    /// Hold the request up to this many milliseconds (at most 25 s) when nothing is queued.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// The work a runner claimed.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Claim {
    pub run_id: i64,
    /// Identifies this claim in heartbeats, log uploads and the finish call.
    pub lease: String,
    /// `plan` or `apply`.
    pub phase: String,
    /// `plan` or `destroy`.
    pub operation: String,
    pub org: String,
    pub workspace: String,
    /// Files of the root module: name → content.
    pub files: std::collections::BTreeMap<String, String>,
    /// The short-lived job token Terraform uses for state and registry.
    pub job_token: String,
    /// Terrace's base URL and host (for the CLI configuration's `credentials` block).
    pub url: String,
    pub host: String,
    /// The saved plan to apply (base64), in the apply phase.
    pub plan_file: Option<String>,
    /// Where the run's log continues.
    pub log_offset: i64,
    pub heartbeat_seconds: u64,
    /// Terraform's `provider_installation` mirror URL, when the server has a mirror.
    pub mirror_url: Option<String>,
}

/// A heartbeat's answer: whether to stop Terraform.
#[derive(Debug, Deserialize, Serialize)]
pub struct HeartbeatReply {
    /// Interrupt Terraform (SIGINT).
    pub cancel: bool,
    /// Kill it (a second cancel).
    pub force: bool,
}

/// How a claim ended.
#[derive(Debug, Deserialize, Serialize)]
pub struct Finish {
    /// `planned`, `applied`, `errored` or `canceled`.
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    /// `terraform show -json` of the saved plan.
    #[serde(default)]
    pub plan_json: Option<serde_json::Value>,
    /// The saved plan file (base64).
    #[serde(default)]
    pub plan_file: Option<String>,
    #[serde(default)]
    pub has_changes: Option<bool>,
    /// `terraform output -json` after an apply.
    #[serde(default)]
    pub outputs: Option<serde_json::Value>,
}
