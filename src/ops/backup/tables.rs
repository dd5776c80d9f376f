//! Every table a backup holds, in an order that satisfies foreign keys on insert, with each
//! column's kind (the same Rust type decodes it on SQLite and PostgreSQL).

/// How a column is read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// BIGINT / INTEGER (64-bit).
    Int,
    /// PostgreSQL INTEGER (32-bit).
    Int32,
    Bool,
    Text,
    /// BYTEA / BLOB, as base64 in the backup.
    Bytes,
    /// TIMESTAMPTZ / TEXT written from `DateTime<Utc>`, as RFC 3339 in the backup.
    Time,
}

pub struct Table {
    pub name: &'static str,
    /// Every column this build knows; a backup copies those the database has (columns of
    /// migrations not yet applied are skipped) and refuses columns it does not know.
    pub columns: &'static [(&'static str, Kind)],
    /// Has an `id` identity column (a PostgreSQL sequence to reset after restore).
    pub identity: bool,
}

/// A table and the columns of it that the database has.
pub struct Plan {
    pub table: &'static Table,
    pub columns: Vec<(&'static str, Kind)>,
}

impl Plan {
    pub fn select_sql(&self) -> String {
        let columns: Vec<&str> = self.columns.iter().map(|(c, _)| *c).collect();
        let order: Vec<&str> = self.table.columns[..self.table.key_len()]
            .iter()
            .map(|(c, _)| *c)
            .collect();
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            self.table.name,
            order.join(", ")
        )
    }

    pub fn insert_sql(&self) -> String {
        let columns: Vec<&str> = self.columns.iter().map(|(c, _)| *c).collect();
        let params: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table.name,
            columns.join(", "),
            params.join(", ")
        )
    }
}

impl Table {
    /// How many leading columns form the primary key (for a stable dump order).
    fn key_len(&self) -> usize {
        match self.name {
            "org_members" | "team_members" | "blueprint_tags" => 2,
            _ => 1,
        }
    }
}

use Kind::*;

pub static TABLES: &[Table] = &[
    Table {
        name: "orgs",
        identity: true,
        columns: &[("id", Int), ("name", Text), ("created_at", Time)],
    },
    Table {
        name: "users",
        identity: true,
        columns: &[
            ("id", Int),
            ("name", Text),
            ("password_hash", Text),
            ("invite_hash", Bytes),
            ("invite_expires_at", Time),
            ("disabled_at", Time),
            ("created_at", Time),
        ],
    },
    Table {
        name: "teams",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("role", Text),
            ("created_at", Time),
        ],
    },
    Table {
        name: "api_tokens",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("role", Text),
            ("token_hash", Bytes),
            ("created_at", Time),
            ("created_by", Text),
            ("expires_at", Time),
            ("revoked_at", Time),
            ("team_id", Int),
            ("scopes", Text),
        ],
    },
    Table {
        name: "blobs",
        identity: false,
        columns: &[
            ("id", Text),
            ("object_key", Text),
            ("size", Int),
            ("sha256", Text),
            ("key_id", Text),
            ("wrapped_key", Bytes),
            ("created_at", Time),
        ],
    },
    Table {
        name: "workspaces",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("lineage_protection", Bool),
            ("current_version_id", Int),
            ("version_count", Int),
            ("created_at", Time),
            ("updated_at", Time),
            ("lock_lease_seconds", Int),
            ("expire_stale_locks", Bool),
            ("retain_versions", Int),
            ("retain_days", Int),
        ],
    },
    Table {
        name: "state_versions",
        identity: true,
        columns: &[
            ("id", Int),
            ("workspace_id", Int),
            ("version", Int),
            ("serial", Int),
            ("lineage", Text),
            ("sha256", Text),
            ("size", Int),
            ("blob_id", Text),
            ("source", Text),
            ("created_at", Time),
            ("created_by", Text),
            ("run_id", Int),
        ],
    },
    Table {
        name: "state_locks",
        identity: false,
        columns: &[
            ("workspace_id", Int),
            ("lock_id", Text),
            ("info", Bytes),
            ("created_at", Time),
            ("created_by", Text),
            ("renewed_at", Time),
        ],
    },
    Table {
        name: "jobs",
        identity: true,
        columns: &[
            ("id", Int),
            ("kind", Text),
            ("payload", Text),
            ("run_after", Time),
            ("leased_until", Time),
            ("attempts", Int),
            ("created_at", Time),
        ],
    },
    Table {
        name: "registry_namespaces",
        identity: false,
        columns: &[
            ("org_id", Int),
            ("public", Bool),
            ("server_signing", Bool),
            ("updated_at", Time),
        ],
    },
    Table {
        name: "modules",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("system", Text),
            ("latest_version_id", Int),
            ("downloads", Int),
            ("created_at", Time),
            ("updated_at", Time),
        ],
    },
    Table {
        name: "module_versions",
        identity: true,
        columns: &[
            ("id", Int),
            ("module_id", Int),
            ("version", Text),
            ("blob_id", Text),
            ("sha256", Text),
            ("size", Int),
            ("description", Text),
            ("metadata", Text),
            ("downloads", Int),
            ("created_at", Time),
            ("created_by", Text),
        ],
    },
    Table {
        name: "blueprints",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("module_name", Text),
            ("module_system", Text),
            ("version_constraint", Text),
            ("title", Text),
            ("description", Text),
            ("category", Text),
            ("owner", Text),
            ("tags", Text),
            ("status", Text),
            ("auto_apply", Bool),
            ("overrides", Text),
            ("module_version", Text),
            ("derived", Text),
            ("summary", Text),
            ("created_at", Time),
            ("updated_at", Time),
            ("created_by", Text),
        ],
    },
    Table {
        name: "blueprint_tags",
        identity: false,
        columns: &[("blueprint_id", Int), ("tag", Text)],
    },
    Table {
        name: "gpg_keys",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("key_id", Text),
            ("fingerprint", Text),
            ("ascii_armor", Text),
            ("source", Text),
            ("created_at", Time),
            ("created_by", Text),
        ],
    },
    Table {
        name: "registry_signing_keys",
        identity: false,
        columns: &[
            ("org_id", Int),
            ("key_id", Text),
            ("blob_id", Text),
            ("created_at", Time),
        ],
    },
    Table {
        name: "providers",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("created_at", Time),
            ("updated_at", Time),
        ],
    },
    Table {
        name: "provider_versions",
        identity: true,
        columns: &[
            ("id", Int),
            ("provider_id", Int),
            ("version", Text),
            ("protocols", Text),
            ("shasums_blob_id", Text),
            ("signature_blob_id", Text),
            ("signed_by", Text),
            ("created_at", Time),
            ("created_by", Text),
        ],
    },
    Table {
        name: "provider_packages",
        identity: true,
        columns: &[
            ("id", Int),
            ("version_id", Int),
            ("os", Text),
            ("arch", Text),
            ("filename", Text),
            ("sha256", Text),
            ("h1", Text),
            ("size", Int),
            ("blob_id", Text),
            ("downloads", Int),
        ],
    },
    Table {
        name: "mirror_packages",
        identity: true,
        columns: &[
            ("id", Int),
            ("hostname", Text),
            ("namespace", Text),
            ("name", Text),
            ("version", Text),
            ("os", Text),
            ("arch", Text),
            ("filename", Text),
            ("sha256", Text),
            ("h1", Text),
            ("size", Int),
            ("blob_id", Text),
            ("created_at", Time),
            ("created_by", Text),
        ],
    },
    Table {
        name: "org_members",
        identity: false,
        columns: &[
            ("org_id", Int),
            ("user_id", Int),
            ("role", Text),
            ("created_at", Time),
        ],
    },
    Table {
        name: "team_members",
        identity: false,
        columns: &[("team_id", Int), ("user_id", Int)],
    },
    Table {
        name: "policies",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("name", Text),
            ("document", Text),
            ("created_at", Time),
            ("updated_at", Time),
        ],
    },
    Table {
        name: "policy_attachments",
        identity: true,
        columns: &[
            ("id", Int),
            ("policy_id", Int),
            ("team_id", Int),
            ("user_id", Int),
            ("token_id", Int),
        ],
    },
    Table {
        name: "user_tokens",
        identity: false,
        columns: &[
            ("jti", Text),
            ("user_id", Int),
            ("name", Text),
            ("created_at", Time),
            ("expires_at", Time),
            ("revoked_at", Time),
        ],
    },
    Table {
        name: "login_keys",
        identity: false,
        columns: &[
            ("kid", Text),
            ("master_key_id", Text),
            ("created_at", Time),
            ("retired_at", Time),
        ],
    },
    Table {
        name: "oauth_codes",
        identity: false,
        columns: &[
            ("code_hash", Bytes),
            ("user_id", Int),
            ("client_id", Text),
            ("redirect_uri", Text),
            ("code_challenge", Text),
            ("expires_at", Time),
            ("used_at", Time),
            ("token_jti", Text),
        ],
    },
    Table {
        name: "audit_events",
        identity: true,
        columns: &[
            ("id", Int),
            ("org_id", Int),
            ("occurred_at", Time),
            ("actor", Text),
            ("token_id", Text),
            ("action", Text),
            ("resource", Text),
            ("outcome", Text),
            ("status", Int32),
            ("source", Text),
            ("request_id", Text),
        ],
    },
];
