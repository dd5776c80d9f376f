//! Wire types of the registry's own API (namespaces).

use serde::{Deserialize, Serialize};

/// A namespace the caller was allowed to act on.
#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    #[serde(skip)]
    pub org_id: i64,
    pub name: String,
    pub public: bool,
    pub server_signing: bool,
}

/// Settings an admin can change; absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSettings {
    pub public: Option<bool>,
    pub server_signing: Option<bool>,
}
