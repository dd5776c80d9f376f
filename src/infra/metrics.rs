//! Prometheus metrics, one registry per process (kept in `AppState`, so tests stay isolated).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
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
        Metrics {
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

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
