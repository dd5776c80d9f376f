//! Wire shapes of the blueprints API: what a create or update sends, and what a blueprint
//! answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{InputOverride, OutputInfo};

/// Who sees a blueprint: drafts only admins, the others every reader (deprecated ones stay
/// visible so that their deployments can be understood, but are marked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Published,
    Deprecated,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Published => "published",
            Status::Deprecated => "deprecated",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "draft" => Some(Status::Draft),
            "published" => Some(Status::Published),
            "deprecated" => Some(Status::Deprecated),
            _ => None,
        }
    }
}

/// `POST /api/v1/orgs/{org}/blueprints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBlueprint {
    pub name: String,
    /// `namespace/name/system` of a module in the org's registry.
    pub module: String,
    /// A Terraform version constraint; absent: any version.
    #[serde(default)]
    pub version: Option<String>,
    /// Absent: the blueprint's name.
    #[serde(default)]
    pub title: Option<String>,
    /// Absent: the README's first paragraph.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub owner: Option<String>,
    /// Absent: `draft`.
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub auto_apply: bool,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputOverride>,
}

/// `PATCH …/blueprints/{name}`: absent fields stay; `null` resets `version` (any),
/// `description` (the README's), `category` and `owner`. `inputs` replaces every override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueprintUpdate {
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub version: Option<Option<String>>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub category: Option<Option<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub owner: Option<Option<String>>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub auto_apply: Option<bool>,
    #[serde(default)]
    pub inputs: Option<BTreeMap<String, InputOverride>>,
}

/// A blueprint as lists show it.
#[derive(Debug, Serialize)]
pub struct BlueprintSummary {
    pub name: String,
    /// `namespace/name/system`.
    pub module: String,
    /// The version constraint; `null`: any.
    pub version: Option<String>,
    /// The newest published version the constraint allows (the one the schema is from).
    pub module_version: String,
    /// What a `module` block's `source` says: `<host>/<org>/<name>/<system>`.
    pub source: String,
    pub title: String,
    pub description: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub status: String,
    pub auto_apply: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
}

/// One blueprint: the summary, its curation, the input schema with the overrides applied,
/// the module's outputs and README.
#[derive(Debug, Serialize)]
pub struct BlueprintView {
    #[serde(flatten)]
    pub summary: BlueprintSummary,
    pub inputs: BTreeMap<String, InputOverride>,
    pub input_schema: Value,
    pub outputs: Vec<OutputInfo>,
    pub readme: String,
}
