//! The only code that knows how objects are laid out in the store.

/// What an object holds; the first path segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    /// A state version.
    State,
    /// A module archive (`.tar.gz`).
    Module,
    /// A provider zip, SHA256SUMS or signature.
    Provider,
    /// A provider archive uploaded for the network mirror.
    Mirror,
    /// Secret material Terrace holds (e.g. a namespace signing key).
    Secret,
}

impl BlobKind {
    fn as_str(self) -> &'static str {
        match self {
            BlobKind::State => "state",
            BlobKind::Module => "modules",
            BlobKind::Provider => "providers",
            BlobKind::Mirror => "mirror",
            BlobKind::Secret => "secrets",
        }
    }
}

/// Identifies one object. Every key carries a fresh id, so keys are never reused.
#[derive(Clone, Debug)]
pub struct BlobKey {
    kind: BlobKind,
    /// The owning row (workspace, org …), to keep related objects together.
    scope: i64,
    blob_id: uuid::Uuid,
}

impl BlobKey {
    /// A key for a new object of `kind` owned by `scope`.
    pub fn new(kind: BlobKind, scope: i64) -> Self {
        BlobKey {
            kind,
            scope,
            blob_id: uuid::Uuid::new_v4(),
        }
    }

    /// A key for a new state version blob of `workspace_id`.
    pub fn new_state_version(workspace_id: i64) -> Self {
        Self::new(BlobKind::State, workspace_id)
    }

    pub fn blob_id(&self) -> uuid::Uuid {
        self.blob_id
    }

    pub fn to_path(&self) -> String {
        format!("{}/{}/{}", self.kind.as_str(), self.scope, self.blob_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        let key = |kind| BlobKey {
            kind,
            scope: 7,
            blob_id: uuid::Uuid::nil(),
        };
        let nil = "00000000-0000-0000-0000-000000000000";
        assert_eq!(key(BlobKind::State).to_path(), format!("state/7/{nil}"));
        assert_eq!(key(BlobKind::Module).to_path(), format!("modules/7/{nil}"));
        assert_eq!(
            key(BlobKind::Provider).to_path(),
            format!("providers/7/{nil}")
        );
        assert_eq!(key(BlobKind::Mirror).to_path(), format!("mirror/7/{nil}"));
        assert_eq!(key(BlobKind::Secret).to_path(), format!("secrets/7/{nil}"));
    }
}
