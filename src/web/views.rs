//! The pages: askama templates (`templates/web/`, escaped by default) and the data they show,
//! formatted for people; and the headers every page carries.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::service::{self, Output};
use crate::pagination::Paginated;
use crate::registry::modules::{ModuleDetail, ModuleList, ModuleView};
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
    crate::identity::browser::page_headers(
        headers,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
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
    pub outputs_unread: bool,
    pub versions: Vec<VersionRow>,
    pub next: Option<String>,
    pub may_admin: bool,
    /// Serials offered in the diff form, newest first, with the two preselected.
    pub serials: Vec<SerialOption>,
    pub cost: Option<CostView>,
}

/// The cost section: the newest estimate and a chart of the run-rate over time.
pub struct CostView {
    pub monthly: String,
    /// An inline SVG (no script, no inline style), or empty with a single estimate.
    pub chart: String,
}

impl CostView {
    pub fn new(history: service::CostHistory) -> Option<CostView> {
        let (_, last) = *history.points.last()?;
        Some(CostView {
            monthly: money(last, &history.currency),
            chart: chart(&history.points, &history.currency),
        })
    }
}

/// `1,234.50 USD`.
pub fn money(amount: f64, currency: &str) -> String {
    let cents = (amount * 100.0).round() as i64;
    let sign = if cents < 0 { "-" } else { "" };
    let whole = (cents.abs() / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02} {currency}", cents.abs() % 100)
}

/// A line chart of the monthly run-rate per state version, as SVG drawn on the server.
pub fn chart(points: &[(DateTime<Utc>, f64)], currency: &str) -> String {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    const PAD: f64 = 24.0;
    if points.len() < 2 {
        return String::new();
    }
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(0.01);
    let step = (W - 2.0 * PAD) / (points.len() - 1) as f64;
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            let x = PAD + step * i as f64;
            let y = H - PAD - (v / max) * (H - 2.0 * PAD);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">Estimated monthly cost per state version, {} to {}; highest {}</title>\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"currentColor\" stroke-opacity=\"0.3\"/>\
         <polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"{PAD}\" y=\"14\" font-size=\"12\" fill=\"currentColor\">{}</text>\
         <text x=\"{PAD}\" y=\"{t}\" font-size=\"12\" fill=\"currentColor\">{}</text>\
         <text x=\"{r}\" y=\"{t}\" font-size=\"12\" fill=\"currentColor\" text-anchor=\"end\">{}</text></svg>",
        time(first),
        time(last),
        money(max, currency),
        coords.join(" "),
        money(max, currency),
        first.format("%Y-%m-%d"),
        last.format("%Y-%m-%d"),
        b = H - PAD,
        r = W - PAD,
        t = H - 6.0,
    )
}

pub struct SerialOption {
    pub serial: i64,
    pub from: bool,
    pub to: bool,
}

impl Workspace {
    pub fn new(
        layout: Layout,
        org: String,
        page: service::Workspace,
        cost: Option<service::CostHistory>,
    ) -> Workspace {
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
            outputs_unread: page.outputs_unread,
            next: page.versions.meta.next_cursor,
            versions,
            may_admin: page.may_admin,
            serials,
            cost: cost.and_then(CostView::new),
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

#[derive(Template)]
#[template(path = "web/modules.html")]
pub struct Modules {
    pub layout: Layout,
    pub query: String,
    pub modules: Vec<ModuleView>,
    /// Offsets of the previous and next pages.
    pub prev: Option<i64>,
    pub next: Option<i64>,
}

impl Modules {
    pub fn new(layout: Layout, query: String, list: ModuleList) -> Modules {
        Modules {
            layout,
            // The links carry the search on, encoded.
            query,
            prev: list.meta.prev_offset,
            next: list.meta.next_offset,
            modules: list.modules,
        }
    }

    /// The search as a query-string value.
    pub fn query_param(&self) -> String {
        url::form_urlencoded::byte_serialize(self.query.as_bytes()).collect()
    }
}

#[derive(Template)]
#[template(path = "web/module.html")]
pub struct Module {
    pub layout: Layout,
    pub detail: ModuleDetail,
    /// The README as HTML, from Markdown with any raw HTML shown as text.
    pub readme: String,
    /// `host/namespace/name/system`, for the `source` snippet.
    pub source: String,
    pub published: String,
    /// Newest first.
    pub versions: Vec<String>,
}

impl Module {
    pub fn new(layout: Layout, host: &str, detail: ModuleDetail) -> Module {
        let m = &detail.module;
        let source = format!("{host}/{}/{}/{}", m.namespace, m.name, m.provider);
        let published = m.published_at.replace('T', " ").replace('Z', " UTC");
        let readme = markdown(&detail.root.readme);
        let versions = detail.versions.iter().rev().cloned().collect();
        Module {
            layout,
            readme,
            source,
            published,
            versions,
            detail,
        }
    }
}

/// Markdown as HTML that cannot carry a script: raw HTML in the text is shown as text, and
/// links or images with a scheme other than http(s) or mailto lead nowhere.
pub fn markdown(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag, html};

    fn safe(url: &str) -> bool {
        let url = url.trim();
        match url.split_once(':') {
            // Relative links (no scheme before any `/`, `?` or `#`) stay.
            Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
                matches!(
                    scheme.to_ascii_lowercase().as_str(),
                    "http" | "https" | "mailto"
                )
            }
            _ => true,
        }
    }
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(text, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Link {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) if !safe(&dest_url) => Event::Start(Tag::Image {
            link_type,
            dest_url: "#".into(),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
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
    fn markdown_carries_no_script() {
        let html = markdown(
            "# Title\n\n<script>alert(1)</script>\n\nText with <img src=x onerror=alert(2)>.\n\n\
             [ok](https://example.com) [rel](docs/a.md) [bad](javascript:alert(3)) \
             [bad2]( JaVaScRiPt:alert(4)) ![img](data:image/svg+xml,x)\n",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(
            !html.contains("<script") && !html.contains("<img src=\"x\""),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(
            html.contains("href=\"https://example.com\"") && html.contains("href=\"docs/a.md\"")
        );
        assert!(
            !html.to_lowercase().contains("javascript:") && !html.contains("data:"),
            "{html}"
        );
    }

    #[test]
    fn money_reads_as_accountants_write_it() {
        assert_eq!(money(0.0, "USD"), "0.00 USD");
        assert_eq!(money(1234.5, "USD"), "1,234.50 USD");
        assert_eq!(money(1234567.891, "EUR"), "1,234,567.89 EUR");
        assert_eq!(money(-123.4, "USD"), "-123.40 USD");
    }

    #[test]
    fn a_chart_draws_one_point_per_estimate() {
        let at = |d| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, d, 0, 0, 0).unwrap();
        assert_eq!(chart(&[(at(1), 5.0)], "USD"), "");
        let svg = chart(&[(at(1), 5.0), (at(2), 10.0), (at(3), 0.0)], "USD");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(
            svg.contains("points=\"24.0,80.0 320.0,24.0 616.0,136.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("10.00 USD") && !svg.contains("style="),
            "{svg}"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
    }
}
