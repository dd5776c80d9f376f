//! Logging and tracing setup: `TERRACE_LOG` or `RUST_LOG` filters; pretty or JSON lines on
//! stderr; and, when an OTLP endpoint is configured, OpenTelemetry traces exported over
//! OTLP/HTTP (protobuf).
//!
//! With no endpoint, no OpenTelemetry layer is installed: the detail spans (database queries,
//! blob-store and lock-table calls, runner phases) are at `debug` level, which the log filter
//! leaves off, so they cost a disabled callsite check and nothing else.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TraceSettings};

/// The provider, kept to flush and stop it at exit; set only when traces are exported.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether traces are exported (read per request, so it must be cheap).
pub fn tracing_on() -> bool {
    PROVIDER.get().is_some()
}

/// Installs the log subscriber, and the trace exporter when `tracing` is given. An exporter
/// that cannot be built is reported and left off: traces never stop the server.
pub fn init(format: LogFormat, tracing: Option<&TraceSettings>) {
    let filter = std::env::var("TERRACE_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info,sqlx=warn,tower_http=warn".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::new(&filter))
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(EnvFilter::new(&filter))
            .boxed(),
    };
    let (provider, problem) = match tracing.map(exporter) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let dispatch = std::sync::Arc::new(OnceLock::new());
    let traces = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("terrace");
        // Terrace's own spans and events, at every level; nothing from the libraries.
        let spans = tracing_opentelemetry::layer()
            .with_tracer(tracer.clone())
            .with_filter(Targets::new().with_target("terrace", LevelFilter::DEBUG));
        // sqlx reports each statement as an event once it is done; it becomes a span.
        let queries = QuerySpans {
            tracer,
            dispatch: dispatch.clone(),
        }
        .with_filter(Targets::new().with_target("sqlx::query", LevelFilter::DEBUG));
        spans.and_then(queries)
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if installed {
        tracing::dispatcher::get_default(|current| {
            let _ = dispatch.set(current.downgrade());
        });
    }
    if let Some(e) = problem {
        tracing::error!(error = %format!("{e:#}"), "traces are off: the exporter failed to start");
    }
    if let Some(provider) = provider {
        let _ = PROVIDER.set(provider);
    }
}

fn exporter(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(&settings.traces_endpoint)
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if let Some(name) = &settings.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // The batch processor exports from a thread of its own, off the request path.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Sends the spans still queued and stops the exporter (at exit). Blocking: call it outside
/// the async runtime's worker threads or through `spawn_blocking`.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("traces: the exporter did not shut down cleanly: {e}");
    }
}

/// The W3C `traceparent` (and `tracestate`) of an incoming request, if it carries a valid one.
pub fn remote_parent(headers: &axum::http::HeaderMap) -> Option<Context> {
    headers.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of `parent` and returns its trace id (32 hex digits) and the
/// `traceresponse` header value (`00-<trace id>-<span id>-<flags>`).
pub fn join(span: &tracing::Span, parent: Option<Context>) -> (String, String) {
    if let Some(parent) = parent {
        let _ = span.set_parent(parent);
    }
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    let trace_id = sc.trace_id().to_string();
    let response = format!(
        "00-{trace_id}-{}-{:02x}",
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    (trace_id, response)
}

/// The `traceparent` of the current span, for an outgoing request (the runner's calls to the
/// server); `None` when traces are off.
pub fn current_traceparent() -> Option<String> {
    if !tracing_on() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Turns sqlx's per-statement events into client spans under the span that ran the query,
/// timed from the elapsed time sqlx measured. The statement text has placeholders, never the
/// bound values.
struct QuerySpans {
    tracer: Tracer,
    /// The subscriber this layer is part of, to find the span a query ran in (a filtered
    /// layer's own context only sees spans its filter lets through). Set once installed.
    dispatch: std::sync::Arc<OnceLock<tracing::dispatcher::WeakDispatch>>,
}

impl<S> Layer<S> for QuerySpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let Some(dispatch) = self.dispatch.get().and_then(|d| d.upgrade()) else {
            return;
        };
        let current = dispatch.current_span();
        let Some(parent) = current
            .id()
            .and_then(|id| tracing_opentelemetry::get_otel_context(id, &dispatch))
        else {
            // A query outside any traced work (a background job between runs).
            return;
        };
        if !parent.span().span_context().is_valid() {
            return;
        }
        let mut fields = QueryFields::default();
        event.record(&mut fields);
        let end = SystemTime::now();
        let start = end - Duration::from_secs_f64(fields.elapsed_secs.max(0.0));
        let summary = fields.summary.trim_end_matches(" …").to_string();
        let statement = if fields.statement.trim().is_empty() {
            summary.clone()
        } else {
            fields.statement.trim().to_string()
        };
        let mut attributes = vec![
            KeyValue::new("db.system.name", "sql"),
            KeyValue::new("db.query.text", statement),
        ];
        if let Some(rows) = fields.rows_returned {
            attributes.push(KeyValue::new("db.response.returned_rows", rows));
        }
        let mut span = self
            .tracer
            .span_builder(summary)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
    }
}

#[derive(Default)]
struct QueryFields {
    summary: String,
    statement: String,
    rows_returned: Option<i64>,
    elapsed_secs: f64,
}

impl tracing::field::Visit for QueryFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows_returned = i64::try_from(value).ok();
        }
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = || format!("{value:?}").trim_matches('"').to_string();
        match field.name() {
            "summary" if self.summary.is_empty() => self.summary = text(),
            "db.statement" if self.statement.is_empty() => self.statement = text(),
            _ => {}
        }
    }
}
