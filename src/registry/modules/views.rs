//! Wire shapes of the module registry: the protocol's versions list and the public
//! registry's module objects, details and pagination `meta`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::metadata::{ModuleInfo, ModuleMetadata};
use super::store::{ModuleSummaryRow, VersionRow};
use crate::pagination::Page;

/// `{"modules":[{"versions":[{"version":"1.0.0"}, …]}]}`: Terraform reads only `modules[0]`.
#[derive(Debug, Serialize)]
pub struct VersionsResponse {
    pub modules: [VersionList; 1],
}

#[derive(Debug, Serialize)]
pub struct VersionList {
    pub source: String,
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Serialize)]
pub struct VersionEntry {
    pub version: String,
}

/// A module object as the public registry lists it.
#[derive(Debug, Serialize)]
pub struct ModuleView {
    pub id: String,
    pub owner: String,
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub provider: String,
    pub description: String,
    pub source: String,
    pub published_at: String,
    pub downloads: i64,
    pub verified: bool,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl ModuleView {
    fn new(
        namespace: &str,
        name: &str,
        system: &str,
        version: &str,
        description: &str,
        published_at: DateTime<Utc>,
        downloads: i64,
    ) -> Self {
        ModuleView {
            id: format!("{namespace}/{name}/{system}/{version}"),
            owner: namespace.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            provider: system.to_string(),
            description: description.to_string(),
            source: String::new(),
            published_at: rfc3339(published_at),
            downloads,
            verified: false,
        }
    }

    pub fn from_summary(row: &ModuleSummaryRow) -> Self {
        Self::new(
            &row.namespace,
            &row.name,
            &row.system,
            &row.version,
            &row.description,
            row.created_at,
            row.downloads,
        )
    }

    pub fn from_version(row: &VersionRow) -> Self {
        Self::new(
            &row.namespace,
            &row.name,
            &row.system,
            &row.version,
            &row.description,
            row.created_at,
            row.module_downloads,
        )
    }
}

/// The answer to a publish: the module object plus what was stored.
#[derive(Debug, Serialize)]
pub struct PublishedView {
    #[serde(flatten)]
    pub module: ModuleView,
    pub sha256: String,
    pub size: i64,
    pub root: ModuleInfo,
    pub submodules: Vec<ModuleInfo>,
}

/// Module details: the module object, what the version declares, and its siblings.
#[derive(Debug, Serialize)]
pub struct ModuleDetail {
    #[serde(flatten)]
    pub module: ModuleView,
    pub root: ModuleInfo,
    pub submodules: Vec<ModuleInfo>,
    /// Systems the module name is published for in this namespace.
    pub providers: Vec<String>,
    /// Every version of this module, oldest first.
    pub versions: Vec<String>,
}

impl ModuleDetail {
    pub fn new(row: &VersionRow, providers: Vec<String>, versions: Vec<String>) -> Self {
        let metadata: ModuleMetadata = serde_json::from_str(&row.metadata).unwrap_or_default();
        ModuleDetail {
            module: ModuleView::from_version(row),
            root: metadata.root,
            submodules: metadata.submodules,
            providers,
            versions,
        }
    }
}

/// The public registry's pagination object; `next_*`/`prev_*` appear only when they apply.
#[derive(Debug, Serialize)]
pub struct ListMeta {
    pub limit: i64,
    pub current_offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_url: Option<String>,
}

/// `{"meta": …, "modules": […]}`.
#[derive(Debug, Serialize)]
pub struct ModuleList {
    pub meta: ListMeta,
    pub modules: Vec<ModuleView>,
}

impl ModuleList {
    /// Builds a page from rows fetched with [`Page::fetch_limit`]. `path` and `query` (the
    /// request's other parameters, already encoded) make the `next_url`/`prev_url` links.
    pub fn new(mut rows: Vec<ModuleSummaryRow>, page: Page, path: &str, query: &str) -> Self {
        let more = rows.len() as i64 > page.limit;
        rows.truncate(page.limit as usize);
        let next_offset = more.then_some(page.offset + page.limit);
        let prev_offset = (page.offset > 0).then(|| (page.offset - page.limit).max(0));
        let link = |offset: i64| {
            let sep = if query.is_empty() { "" } else { "&" };
            format!("{path}?{query}{sep}limit={}&offset={offset}", page.limit)
        };
        ModuleList {
            meta: ListMeta {
                limit: page.limit,
                current_offset: page.offset,
                next_offset,
                prev_offset,
                next_url: next_offset.map(link),
                prev_url: prev_offset.map(link),
            },
            modules: rows.iter().map(ModuleView::from_summary).collect(),
        }
    }
}
