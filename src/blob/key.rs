//! The only code that knows how objects are laid out in the store.

/// Identifies one object. Every variant carries a fresh id, so keys are never reused.
#[derive(Clone, Debug)]
pub enum BlobKey {
    StateVersion {
        workspace_id: i64,
        blob_id: uuid::Uuid,
    },
}

impl BlobKey {
    /// A key for a new state version blob of `workspace_id`.
    pub fn new_state_version(workspace_id: i64) -> Self {
        BlobKey::StateVersion {
            workspace_id,
            blob_id: uuid::Uuid::new_v4(),
        }
    }

    pub fn blob_id(&self) -> uuid::Uuid {
        match self {
            BlobKey::StateVersion { blob_id, .. } => *blob_id,
        }
    }

    pub fn to_path(&self) -> String {
        match self {
            BlobKey::StateVersion {
                workspace_id,
                blob_id,
            } => format!("state/{workspace_id}/{blob_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_version_layout_is_stable() {
        let key = BlobKey::StateVersion {
            workspace_id: 7,
            blob_id: uuid::Uuid::nil(),
        };
        assert_eq!(
            key.to_path(),
            "state/7/00000000-0000-0000-0000-000000000000"
        );
    }
}
