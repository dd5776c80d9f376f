//! Wire types of the costs API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::estimate::{Estimate, PlanEstimate};

/// `GET …/workspaces/{ws}/cost`.
#[derive(Debug, Serialize)]
pub struct WorkspaceCost {
    pub workspace: String,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// One state version's run-rate in a workspace's cost history.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    pub state_version_id: Option<i64>,
    /// `ok`, `unreadable` for a state that is not Terraform JSON (such as an encrypted one), or
    /// `too_large` for a state above 32 MiB, which is not estimated.
    pub status: String,
    pub catalogue: String,
    pub currency: String,
    pub monthly: f64,
    pub unpriced: i64,
    pub created_at: DateTime<Utc>,
}

/// A run's estimate.
#[derive(Debug, Serialize)]
pub struct RunCost {
    pub run_id: i64,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub estimate: PlanEstimate,
}

/// A price catalogue version.
#[derive(Debug, Serialize)]
pub struct CatalogueVersion {
    pub version: String,
    pub format: String,
    pub source: String,
    pub published: Option<String>,
    pub prices: i64,
    pub sample: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
}

/// An import of billing data.
#[derive(Debug, Serialize)]
pub struct Import {
    pub id: i64,
    pub filename: String,
    pub status: String,
    pub lines: i64,
    pub error: Option<String>,
    /// `source` and `period` pairs this import is now the current data of.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<ImportPeriod>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Debug, Serialize)]
pub struct ImportPeriod {
    pub source: String,
    pub period: String,
}

/// Per-workspace cost settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostSettings {
    /// The region assumed for resources that do not name one.
    #[serde(default)]
    pub region: Option<String>,
    /// Usage amounts by `<resource type>.<usage key>`.
    #[serde(default)]
    pub usage: std::collections::BTreeMap<String, f64>,
}

/// `POST /api/v1/orgs/{org}/budgets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    pub name: String,
    pub scope: String,
    pub amount: f64,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default)]
    pub thresholds: Option<Vec<f64>>,
    pub basis: String,
}

/// A budget and where it stands this month.
#[derive(Debug, Serialize)]
pub struct Budget {
    pub name: String,
    pub scope: String,
    pub amount: f64,
    pub currency: String,
    pub period: String,
    pub thresholds: Vec<f64>,
    pub basis: String,
    /// This month's spend on the budget's basis, and its share of the amount.
    pub current: Option<BudgetStatus>,
    /// Thresholds crossed, once per period each.
    pub alerts: Vec<Alert>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetStatus {
    pub period: String,
    pub spend: f64,
    pub ratio: f64,
    /// `ok`, `warning` (past the lowest threshold) or `over` (past 100 %).
    pub status: String,
}

#[derive(Debug, Serialize)]
pub struct Alert {
    pub period: String,
    pub threshold: f64,
    pub spend: f64,
    pub ratio: f64,
    pub fired_at: DateTime<Utc>,
}
