//! Wire shapes of the module registry: the protocol's versions list and the public
//! registry's module objects, details and pagination `meta`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::metadata::{ModuleInfo, ModuleMetadata};
use super::store::{ModuleSummaryRow, VersionRow};
use crate::pagination::Page;

/// `{"modules":[{"versions":[{"version":"1.0.0"}, …]}]}`: Terraform reads only `modules[0]`.
#[derive(Debug, Serialize)]
pub struct VersionsResponse<'a> {
    pub modules: [VersionList<'a>; 1],
}

#[derive(Debug, Serialize)]
pub struct VersionList<'a> {
    pub source: &'a str,
    pub versions: Vec<VersionEntry<'a>>,
}

#[derive(Debug, Serialize)]
pub struct VersionEntry<'a> {
    pub version: &'a str,
}

/// Every version of a module, oldest first, as cached for the protocol's hottest read: with
/// the protocol's answer serialized once, when loaded.
#[derive(Debug)]
pub struct SortedVersions {
    pub list: Vec<String>,
    /// The module address the answer was serialized for, and the answer.
    source: String,
    json: String,
}

impl SortedVersions {
    pub fn new(list: Vec<String>, source: String) -> Self {
        let json = Self::serialize(&list, &source);
        SortedVersions { list, source, json }
    }

    fn serialize(list: &[String], source: &str) -> String {
        let answer = VersionsResponse {
            modules: [VersionList {
                source,
                versions: list
                    .iter()
                    .map(|version| VersionEntry { version })
                    .collect(),
            }],
        };
        // Strings only: serializing them cannot fail.
        serde_json::to_string(&answer).unwrap_or_default()
    }

    /// The protocol's answer ([`VersionsResponse`]) for the module at `source`.
    pub fn protocol_json(&self, source: &str) -> String {
        if source == self.source {
            self.json.clone()
        } else {
            Self::serialize(&self.list, source)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_versions_answer_names_the_module_asked_for() {
        let versions = SortedVersions::new(
            vec!["1.0.0".to_string(), "2.0.0-rc.1".to_string()],
            "acme/vpc/aws".to_string(),
        );
        let expected = |source: &str| {
            serde_json::json!({"modules": [{"source": source, "versions": [
                {"version": "1.0.0"}, {"version": "2.0.0-rc.1"},
            ]}]})
        };
        for source in ["acme/vpc/aws", "other/vpc/aws"] {
            let answer: serde_json::Value =
                serde_json::from_str(&versions.protocol_json(source)).unwrap();
            assert_eq!(answer, expected(source));
        }
    }
}
