//! The pages: askama templates (`templates/web/`, escaped by default) and the data they show,
//! formatted for people; and the headers every page carries.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::service::{self, Output};
use crate::pagination::Paginated;
use crate::state::diff::{AttributeChange, ResourceChange, StateDiff};
use crate::state::management::{StateVersion, WorkspaceSummary};

/// The one stylesheet, embedded.
pub const STYLE: &str = include_str!("../../templates/web/style.css");

/// What every page's frame shows: who is signed in, and the CSRF token of its forms.
pub struct Layout {
    pub user: Option<String>,
    pub csrf: String,
}

/// Pages may not be framed, cached or run scripts; forms post to this site only.
pub fn html(status: StatusCode, body: String, cookies: &[String]) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Renders a page; a template that fails to render is a 500 with a plain message.
pub fn render(status: StatusCode, page: &impl Template, cookies: &[String]) -> Response {
    match page.render() {
        Ok(body) => html(status, body, cookies),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>The page could not be shown.</p>".into(),
                &[],
            )
        }
    }
}

#[derive(Template)]
#[template(path = "web/sign_in.html")]
pub struct SignIn {
    pub layout: Layout,
    pub next: String,
    pub error: Option<String>,
    pub passwords: bool,
}

#[derive(Template)]
#[template(path = "web/home.html")]
pub struct Home {
    pub layout: Layout,
    pub orgs: Vec<String>,
}

#[derive(Template)]
#[template(path = "web/error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "web/confirm.html")]
pub struct Confirm {
    pub layout: Layout,
    pub title: String,
    pub message: String,
    pub action: String,
    pub button: String,
    pub back: String,
}

/// A lock as a person reads it.
pub struct LockView {
    pub who: String,
    pub operation: String,
    pub since: String,
    pub stale: bool,
}

impl LockView {
    fn from_json(lock: &serde_json::Value) -> LockView {
        let text = |key: &str| lock[key].as_str().unwrap_or_default().to_string();
        LockView {
            who: text("Who"),
            operation: text("Operation")
                .trim_start_matches("OperationType")
                .to_string(),
            since: text("Created"),
            stale: lock["stale"].as_bool() == Some(true),
        }
    }
}

pub struct WorkspaceRow {
    pub name: String,
    pub serial: String,
    pub size: String,
    pub versions: i64,
    pub updated: String,
    pub updated_by: String,
    pub lock: Option<LockView>,
}

impl From<WorkspaceSummary> for WorkspaceRow {
    fn from(ws: WorkspaceSummary) -> WorkspaceRow {
        WorkspaceRow {
            serial: ws
                .serial
                .map(|s| s.to_string())
                .unwrap_or_else(|| "—".into()),
            size: ws.size.map(bytes).unwrap_or_else(|| "—".into()),
            versions: ws.versions,
            updated: time(ws.updated_at),
            updated_by: ws.updated_by.unwrap_or_else(|| "—".into()),
            lock: ws.lock.as_ref().map(LockView::from_json),
            name: ws.name,
        }
    }
}

#[derive(Template)]
#[template(path = "web/workspaces.html")]
pub struct Workspaces {
    pub layout: Layout,
    pub org: String,
    pub rows: Vec<WorkspaceRow>,
    pub next: Option<String>,
}

impl Workspaces {
    pub fn new(layout: Layout, org: String, page: Paginated<WorkspaceSummary>) -> Workspaces {
        Workspaces {
            layout,
            org,
            next: page.meta.next_cursor,
            rows: page.data.into_iter().map(WorkspaceRow::from).collect(),
        }
    }
}

pub struct VersionRow {
    pub serial: Option<i64>,
    pub version: i64,
    pub size: String,
    pub source: String,
    pub created: String,
    pub created_by: String,
    pub sha256: String,
}

impl From<StateVersion> for VersionRow {
    fn from(v: StateVersion) -> VersionRow {
        VersionRow {
            serial: v.serial,
            version: v.version,
            size: bytes(v.size),
            source: v.source,
            created: time(v.created_at),
            created_by: v.created_by,
            sha256: v.sha256,
        }
    }
}

#[derive(Template)]
#[template(path = "web/workspace.html")]
pub struct Workspace {
    pub layout: Layout,
    pub org: String,
    pub row: WorkspaceRow,
    pub lineage_protection: bool,
    pub retention: String,
    pub outputs: Vec<Output>,
    pub versions: Vec<VersionRow>,
    pub next: Option<String>,
    pub may_admin: bool,
    /// Serials offered in the diff form, newest first, with the two preselected.
    pub serials: Vec<SerialOption>,
}

pub struct SerialOption {
    pub serial: i64,
    pub from: bool,
    pub to: bool,
}

impl Workspace {
    pub fn new(layout: Layout, org: String, page: service::Workspace) -> Workspace {
        let retention = match (page.summary.retain_versions, page.summary.retain_days) {
            (None, None) => "every version is kept".to_string(),
            (Some(n), None) => format!("the newest {n} versions"),
            (None, Some(d)) => format!("versions of the last {d} days"),
            (Some(n), Some(d)) => {
                format!("the newest {n} versions, and those of the last {d} days")
            }
        };
        let versions: Vec<VersionRow> = page
            .versions
            .data
            .into_iter()
            .map(VersionRow::from)
            .collect();
        let numbers: Vec<i64> = versions.iter().filter_map(|v| v.serial).collect();
        // The newest change preselected: the previous serial against the current one.
        let to = numbers.first().copied().unwrap_or_default();
        let from = numbers.get(1).copied().unwrap_or(to);
        let serials = numbers
            .iter()
            .map(|&serial| SerialOption {
                serial,
                from: serial == from,
                to: serial == to,
            })
            .collect();
        Workspace {
            layout,
            org,
            lineage_protection: page.summary.lineage_protection,
            retention,
            row: WorkspaceRow::from(page.summary),
            outputs: page.outputs,
            next: page.versions.meta.next_cursor,
            versions,
            may_admin: page.may_admin,
            serials,
        }
    }
}

#[derive(Template)]
#[template(path = "web/diff.html")]
pub struct Diff {
    pub layout: Layout,
    pub org: String,
    pub ws: String,
    pub from: i64,
    pub to: i64,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
    pub empty: bool,
    pub outputs: Vec<AttributeChange>,
    pub sections: Vec<DiffSection>,
}

/// Added, changed or removed resources; changed ones are shown open.
pub struct DiffSection {
    pub title: &'static str,
    pub class: &'static str,
    pub open: bool,
    pub resources: Vec<ResourceChange>,
}

impl Diff {
    pub fn new(
        layout: Layout,
        org: String,
        ws: String,
        (from, to): (i64, i64),
        diff: StateDiff,
    ) -> Diff {
        let empty = diff.is_empty();
        let section = |title, class, open, resources| DiffSection {
            title,
            class,
            open,
            resources,
        };
        Diff {
            layout,
            org,
            ws,
            from,
            to,
            added: diff.added.len(),
            changed: diff.changed.len(),
            removed: diff.removed.len(),
            unchanged: diff.unchanged,
            empty,
            outputs: diff.outputs,
            sections: vec![
                section("Added", "added", false, diff.added),
                section("Changed", "changed", true, diff.changed),
                section("Removed", "removed", false, diff.removed),
            ],
        }
    }
}

/// `1.2 MiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `2026-12-06 14:03 UTC`.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
