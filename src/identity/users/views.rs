//! Wire types of this slice.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::store;
use crate::identity::auth::Role;

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub name: String,
    pub role: String,
    pub disabled: bool,
    /// The user has not yet set a password through their invitation.
    pub invited: bool,
    pub created_at: DateTime<Utc>,
}

impl From<store::MemberRow> for MemberView {
    fn from(row: store::MemberRow) -> Self {
        MemberView {
            name: row.name,
            role: row.role,
            disabled: row.disabled_at.is_some(),
            invited: row.pending_invite,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CreatedUser {
    pub name: String,
    pub role: Role,
    /// Where the user sets their password, when none was given (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct UserTokenView {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<store::UserTokenRow> for UserTokenView {
    fn from(row: store::UserTokenRow) -> Self {
        UserTokenView {
            id: row.jti,
            name: row.name,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Me {
    pub name: String,
    pub orgs: Vec<MyOrg>,
}

#[derive(Debug, Serialize)]
pub struct MyOrg {
    pub name: String,
    pub role: Option<Role>,
}
