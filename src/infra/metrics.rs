//! Prometheus metrics, one registry per process (kept in `AppState`, so tests stay isolated).
//!
//! Names follow Prometheus conventions: a `terrace_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters. `/metrics` answers in the OpenMetrics text
//! format to scrapers that ask for it (Prometheus does) and in the classic text format 0.0.4
//! otherwise ([`Metrics::render_text`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

// Labels borrow what they can: standard methods and route templates are `'static`, so
// counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: Cow<'static, str>,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: Cow<'static, str>,
    pub route: &'static str,
}

/// A budget's labels: org, budget name, basis (`actual`, `forecast`, `estimate`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub org: String,
    pub budget: String,
    pub basis: String,
}

/// A workspace's monthly cost labels: basis `estimate` (run-rate) or `actual` (this month's
/// billed spend; workspace `(unattributed)` for spend no workspace claims).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    pub org: String,
    pub workspace: String,
    pub basis: String,
}

/// A cache lookup: the cache's name and `hit` or `miss`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

/// Cache lookups by cache and result, shared with the caches that count them.
pub type CacheLookups = Family<CacheLabels, Counter>;

/// The hit and miss counters of one cache, made once so that counting is one atomic add.
#[derive(Clone, Debug, Default)]
pub struct CacheCounters {
    pub hits: Counter,
    pub misses: Counter,
}

impl CacheCounters {
    /// The counters of the cache `name` in `lookups`.
    pub fn new(lookups: &CacheLookups, name: &'static str) -> Self {
        let counter = |result| {
            lookups
                .get_or_create(&CacheLabels {
                    cache: name,
                    result,
                })
                .clone()
        };
        CacheCounters {
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }

    pub fn record(&self, hit: bool) {
        if hit {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
    }
}

/// A failed blob-store call: `put`, `get`, `delete` or `list`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BlobOperationLabels {
    pub operation: &'static str,
}

/// Blob-store calls that failed, by operation, shared with the blob store that counts them.
pub type BlobErrors = Family<BlobOperationLabels, Counter>;

/// The build: `version` and git `revision` as labels of a gauge that is always 1.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// Every metric Terrace exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    /// `terrace_state_received_bytes_total` (was `terrace_state_bytes_in_total`).
    pub state_received_bytes: Counter,
    /// `terrace_state_sent_bytes_total` (was `terrace_state_bytes_out_total`).
    pub state_sent_bytes: Counter,
    pub lock_conflicts: Counter,
    pub state_versions_written: Counter,
    /// From a state write's body being read to its version being durable and committed.
    pub state_write_duration: Histogram,
    /// Set on each scrape (`/metrics` counts them in the database first).
    pub stale_locks: Gauge,
    /// Runs waiting for a runner, across every org (set on each scrape, like `stale_locks`).
    pub runs_queued: Gauge,
    /// How long the longest-waiting queued run has waited, in seconds (0 when none waits).
    pub run_queue_oldest_seconds: Gauge<f64, AtomicU64>,
    /// Spend of each budget this month over its amount.
    pub budget_spend_ratio: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    /// Each workspace's monthly cost.
    pub monthly_cost: Family<CostLabels, Gauge<f64, AtomicU64>>,
    pub cache_lookups: CacheLookups,
    pub blob_errors: BlobErrors,
}

/// Route templates seen by any registry, as `'static` labels. Templates come from the routers'
/// fixed tables (never from request paths), so this stays as small as the route table.
static ROUTES: RwLock<Option<HashSet<&'static str>>> = RwLock::new(None);

/// The route label of a request: its matched route template (`None`: no route matched), as
/// a `'static` string kept once per process.
pub fn route_label(template: Option<&str>) -> &'static str {
    let Some(template) = template else {
        return "unmatched";
    };
    let known = ROUTES.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(label) = known.as_ref().and_then(|k| k.get(template)) {
        return label;
    }
    drop(known);
    let mut known = ROUTES.write().unwrap_or_else(PoisonError::into_inner);
    let known = known.get_or_insert_with(HashSet::new);
    if let Some(label) = known.get(template) {
        return label;
    }
    let label: &'static str = Box::leak(template.into());
    known.insert(label);
    label
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("terrace");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let state_received_bytes = Counter::default();
        let state_sent_bytes = Counter::default();
        let lock_conflicts = Counter::default();
        let state_versions_written = Counter::default();
        let state_write_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let stale_locks = Gauge::default();
        let runs_queued = Gauge::default();
        let run_queue_oldest_seconds = Gauge::<f64, AtomicU64>::default();
        let cache_lookups = CacheLookups::default();
        let blob_errors = BlobErrors::default();
        for operation in ["put", "get", "delete", "list"] {
            // Present from the start, so that rates and alerts see zeros, not absent series.
            let _ = blob_errors.get_or_create(&BlobOperationLabels { operation });
        }
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: crate::VERSION,
                revision: crate::GIT_REVISION,
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build: version and git revision",
            build_info,
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register_with_unit(
            "state_received",
            "State bytes accepted",
            Unit::Bytes,
            state_received_bytes.clone(),
        );
        registry.register_with_unit(
            "state_sent",
            "State bytes served",
            Unit::Bytes,
            state_sent_bytes.clone(),
        );
        registry.register(
            "lock_conflicts",
            "LOCK requests refused because another holder has the lock",
            lock_conflicts.clone(),
        );
        registry.register(
            "state_versions_written",
            "State versions committed",
            state_versions_written.clone(),
        );
        registry.register(
            "state_write_duration_seconds",
            "Time from a state write's body being read to its version being durable in the \
             blob store and committed",
            state_write_duration.clone(),
        );
        registry.register(
            "stale_locks",
            "Locks whose lease ran out without a write or renewal",
            stale_locks.clone(),
        );
        registry.register(
            "runs_queued",
            "Runs queued and waiting for a runner",
            runs_queued.clone(),
        );
        registry.register(
            "run_queue_oldest_seconds",
            "How long the longest-waiting queued run has waited",
            run_queue_oldest_seconds.clone(),
        );
        let budget_spend_ratio = Family::<BudgetLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "budget_spend_ratio",
            "Spend this month over the budget's amount, on the budget's basis",
            budget_spend_ratio.clone(),
        );
        let monthly_cost = Family::<CostLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "workspace_monthly_cost",
            "Monthly cost of a workspace: estimated run-rate or actual spend this month",
            monthly_cost.clone(),
        );
        registry.register(
            "cache_lookups",
            "Cache lookups by cache and result (hit or miss)",
            cache_lookups.clone(),
        );
        registry.register(
            "blob_store_errors",
            "Blob-store calls that failed, by operation",
            blob_errors.clone(),
        );
        Metrics {
            budget_spend_ratio,
            monthly_cost,
            registry,
            requests,
            latency,
            state_received_bytes,
            state_sent_bytes,
            lock_conflicts,
            state_versions_written,
            state_write_duration,
            stale_locks,
            runs_queued,
            run_queue_oldest_seconds,
            cache_lookups,
            blob_errors,
        }
    }

    /// Counts and times one request by method, route label ([`route_label`]) and status.
    pub fn observe_request(
        &self,
        method: &Method,
        route: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { method, route })
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers and tools that do not read
    /// OpenMetrics (`promtool check metrics`, older agents).
    pub fn render_text(&self) -> String {
        openmetrics_to_text(&self.render())
    }
}

/// Rewrites the OpenMetrics text that `prometheus-client` writes as text format 0.0.4: a
/// counter family is named with its `_total` suffix (OpenMetrics names the family without
/// it), and the `# UNIT` and `# EOF` lines, which 0.0.4 lacks, are left out. The samples are
/// the same lines in both formats. Only the metric types Terrace registers (counter, gauge,
/// histogram) occur.
fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE, and only TYPE tells whether the family is a counter.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" {
                Cow::Owned(format!("{name}_total"))
            } else {
                Cow::Borrowed(name)
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            let kind = if kind == "unknown" { "untyped" } else { kind };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn method_label(method: &Method) -> Cow<'static, str> {
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    const NAMES: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    match known.iter().position(|m| m == method) {
        Some(i) => Cow::Borrowed(NAMES[i]),
        // LOCK, UNLOCK and other extension methods.
        None => Cow::Owned(method.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_route_and_status() {
        let metrics = Metrics::new();
        let lock = Method::from_bytes(b"LOCK").unwrap();
        let template = String::from("/state/{org}/{workspace}");
        for _ in 0..2 {
            let route = route_label(Some(&template));
            metrics.observe_request(&lock, route, 423, Duration::from_millis(1));
        }
        let unmatched = route_label(None);
        metrics.observe_request(&Method::GET, unmatched, 404, Duration::from_millis(1));
        let text = metrics.render();
        assert!(
            text.contains(
                r#"terrace_http_requests_total{method="LOCK",route="/state/{org}/{workspace}",status="423"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"terrace_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(std::ptr::eq(
            route_label(Some(&template)),
            route_label(Some("/state/{org}/{workspace}"))
        ));
    }

    #[test]
    fn the_classic_text_format_names_counters_with_their_total_suffix() {
        let metrics = Metrics::new();
        metrics.state_received_bytes.inc_by(10);
        CacheCounters::new(&metrics.cache_lookups, "tokens").record(true);
        let route = route_label(Some("/healthz"));
        metrics.observe_request(&Method::GET, route, 200, Duration::from_millis(1));
        let text = metrics.render_text();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        for line in [
            "# TYPE terrace_state_received_bytes_total counter",
            "# HELP terrace_state_received_bytes_total State bytes accepted.",
            "terrace_state_received_bytes_total 10",
            "# TYPE terrace_http_request_duration_seconds histogram",
            "# TYPE terrace_stale_locks gauge",
            r#"terrace_cache_lookups_total{cache="tokens",result="hit"} 1"#,
            r#"terrace_blob_store_errors_total{operation="put"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let build = format!(
            r#"terrace_build_info{{version="{}",revision="{}"}} 1"#,
            crate::VERSION,
            crate::GIT_REVISION
        );
        assert!(text.lines().any(|l| l == build), "no {build:?} in\n{text}");
        // Every counter is typed under the name its samples carry.
        for line in text.lines().filter(|l| l.ends_with(" counter")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(name)),
                "no samples named {name} in\n{text}"
            );
        }
    }
}
