//! Prometheus metrics, one registry per process (kept in `AppState`, so tests stay isolated).

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
use prometheus_client::registry::Registry;

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

/// Every metric Terrace exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub state_bytes_in: Counter,
    pub state_bytes_out: Counter,
    pub lock_conflicts: Counter,
    pub state_versions_written: Counter,
    /// Set on each scrape (`/metrics` counts them in the database first).
    pub stale_locks: Gauge,
    /// Spend of each budget this month over its amount.
    pub budget_spend_ratio: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    /// Each workspace's monthly cost.
    pub monthly_cost: Family<CostLabels, Gauge<f64, AtomicU64>>,
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
        let state_bytes_in = Counter::default();
        let state_bytes_out = Counter::default();
        let lock_conflicts = Counter::default();
        let state_versions_written = Counter::default();
        let stale_locks = Gauge::default();
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
        registry.register(
            "state_bytes_in",
            "State bytes accepted",
            state_bytes_in.clone(),
        );
        registry.register(
            "state_bytes_out",
            "State bytes served",
            state_bytes_out.clone(),
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
            "stale_locks",
            "Locks whose lease ran out without a write or renewal",
            stale_locks.clone(),
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
        Metrics {
            budget_spend_ratio,
            monthly_cost,
            registry,
            requests,
            latency,
            state_bytes_in,
            state_bytes_out,
            lock_conflicts,
            state_versions_written,
            stale_locks,
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

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
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
}
