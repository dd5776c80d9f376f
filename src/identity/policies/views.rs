//! Wire types of this slice.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::store;
use crate::error::{Error, Result};

#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub name: String,
    pub document: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<store::PolicyRow> for PolicyView {
    type Error = Error;

    fn try_from(row: store::PolicyRow) -> Result<Self> {
        let document = serde_json::from_str(&row.document)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored policy {}: {e}", row.name)))?;
        Ok(PolicyView {
            name: row.name,
            document,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// An attachment: its id and exactly one of `team`, `user`, `token`.
#[derive(Debug, Serialize)]
pub struct AttachmentView {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<i64>,
}

impl From<store::AttachmentRow> for AttachmentView {
    fn from(row: store::AttachmentRow) -> Self {
        AttachmentView {
            id: row.id,
            team: row.team_name,
            user: row.user_name,
            token: row.token_id,
        }
    }
}
