//! The HTTP surface: one router, its middleware, health endpoints and the serve loop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::App;
use super::middleware::{
    EdgeLayer, EdgeState, FastRequestId, RequestSpanLayer, RunToCompletionLayer,
};
use crate::error::Error;
use crate::http::{JSON_BODY_LIMIT, REQUEST_ID};

/// The whole application.
pub fn router(app: &App) -> Router {
    // Each feature's routes get that feature's own state.
    Router::<()>::new()
        .merge(crate::state::routes().with_state(app.state.clone()))
        .merge(crate::identity::routes().with_state(app.identity.clone()))
        .merge(crate::audit::routes().with_state(app.identity.clone()))
        .merge(crate::downloads::routes().with_state(app.infra.clone()))
        .merge(crate::registry::routes().with_state(app.registry.clone()))
        .merge(crate::blueprints::routes().with_state(app.blueprints.clone()))
        .merge(crate::deployments::routes().with_state(app.deployments.clone()))
        .merge(crate::notifications::routes().with_state(app.notifications.clone()))
        .merge(crate::costs::routes().with_state(app.costs.clone()))
        .merge(crate::web::routes().with_state(app.web.clone()))
        .merge(
            Router::new()
                .route("/healthz", get(healthz))
                .route("/readyz", get(readyz))
                .with_state(app.state.clone()),
        )
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(app.deployments.clone()),
        )
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        // One layer, composed once: outermost first.
        .layer(
            ServiceBuilder::new()
                .layer(RunToCompletionLayer)
                // The request span (and, with traces on, the trace context); it sets the
                // request id, so the next layer only records it.
                .layer(RequestSpanLayer)
                .layer(SetRequestIdLayer::new(REQUEST_ID, FastRequestId))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                // Failures logged inside the request span opened above.
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|_: &Request| tracing::Span::current()),
                )
                .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
                // Host from :authority, metrics, audit, 401 for anonymous API changes.
                .layer(EdgeLayer(Arc::new(EdgeState {
                    metrics: app.metrics.clone(),
                    audit: app.audit.clone(),
                }))),
        )
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: both dependencies answer. Each ping is bounded (`db::PING_TIMEOUT`,
/// `blob::PING_TIMEOUT`) and they run together, so the probe answers within about two seconds
/// even while a dependency hangs, and names the one that is down.
async fn readyz(State(app): State<crate::state::Ctx>) -> Response {
    let (db, blobs, locks) = tokio::join!(app.db.ping(), app.blobs.ping(), app.locks.ping());
    if let Err(e) = &db {
        tracing::warn!(error = %e, "database not ready");
    }
    if let Err(e) = &blobs {
        let detail = match e {
            Error::Unavailable(inner) => format!("{inner:#}"),
            other => other.to_string(),
        };
        tracing::warn!(error = %detail, "blob store not ready");
    }
    if let Some(Err(e)) = &locks {
        tracing::warn!(error = %e, "lock store not ready");
    }
    let mut body = serde_json::json!({
        "database": if db.is_ok() { "ok" } else { "unavailable" },
        "blob_store": if blobs.is_ok() { "ok" } else { "unavailable" },
    });
    // Only a lock store of its own is reported; database locks are the database.
    let locks_ok = locks.as_ref().is_none_or(|l| l.is_ok());
    if locks.is_some() {
        body["locks"] = (if locks_ok { "ok" } else { "unavailable" }).into();
    }
    if db.is_ok() && blobs.is_ok() && locks_ok {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            Json(body),
        )
            .into_response()
    }
}

async fn metrics(
    State(app): State<crate::deployments::Ctx>,
    headers: HeaderMap,
) -> impl IntoResponse {
    // Counted on scrape, so every replica reports the shared database's view.
    match crate::state::service::stale_lock_count(&app.state).await {
        Ok(count) => {
            app.metrics.stale_locks.set(count);
        }
        Err(e) => tracing::warn!(error = %e, "counting stale locks failed"),
    }
    match crate::deployments::service::queue_stats(&app).await {
        Ok((queued, waited)) => {
            app.metrics.runs_queued.set(queued);
            app.metrics.run_queue_oldest_seconds.set(waited);
        }
        Err(e) => tracing::warn!(error = %e, "reading the run queue failed"),
    }
    // OpenMetrics for scrapers that ask for it (Prometheus does), else the classic format.
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            app.metrics.render(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            app.metrics.render_text(),
        )
    }
}

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves (over TLS when `tls` is given) until `shutdown` completes, then drains in-flight
/// requests and writes out the audit events they queued.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let served = serve_until(listener, &app, tls, shutdown).await;
    // Bounded: with the database gone for good the writer would wait for it forever.
    if tokio::time::timeout(DRAIN_TIMEOUT, app.audit.flush())
        .await
        .is_err()
    {
        tracing::error!("audit events still queued at exit: the database did not come back");
    }
    app.jobs.stop().await;
    served
}

async fn serve_until(
    listener: tokio::net::TcpListener,
    app: &App,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connect info gives handlers and the audit trail the peer address.
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let Some(tls) = tls else {
        return axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let handle = axum_server::Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        drain.graceful_shutdown(Some(DRAIN_TIMEOUT));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .handle(handle)
        .serve(service)
        .await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down; draining in-flight requests");
}
