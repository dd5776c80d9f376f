//! Wire types of this slice.

use crate::identity::auth::Role;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A token as listed (never with its secret).
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub team: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly created token: the only time the secret is visible.
#[derive(Debug, Serialize)]
pub struct CreatedToken {
    pub id: i64,
    pub token: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}
