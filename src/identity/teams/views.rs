//! Wire types of this slice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identity::auth::Role;
use crate::identity::users::store::TeamRow;

/// A team as listed (members are under `…/teams/{team}/members`).
#[derive(Debug, Serialize)]
pub struct TeamSummary {
    pub name: String,
    pub role: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<TeamRow> for TeamSummary {
    fn from(row: TeamRow) -> Self {
        TeamSummary {
            name: row.name,
            role: row.role,
            created_at: row.created_at,
        }
    }
}

/// One team with its members.
#[derive(Debug, Serialize)]
pub struct TeamView {
    pub name: String,
    pub role: Option<String>,
    /// IdP groups (values of the groups claim) whose members join this team at sign-in.
    pub idp_groups: Vec<String>,
    /// The first [`MAX_LIMIT`] members; the paginated `/members` list has them all.
    pub members: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub members_truncated: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct TeamMemberView {
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamUpdate {
    /// Absent: unchanged; `null`: the team grants no role (only its policies).
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    pub role: Option<Option<Role>>,
    /// Absent: unchanged; a list replaces the mapped IdP groups (`[]` maps none).
    #[serde(default)]
    pub idp_groups: Option<Vec<String>>,
}
