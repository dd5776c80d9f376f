//! The request middleware as plain tower services, composed once (`ServiceBuilder`) and applied
//! to the router with a single layer. Each route's stack is then cloned as one value per request;
//! with one `from_fn` layer per concern every layer boxed and cloned everything inside it again.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::audit::AuditSink;
use crate::error::Error;
use crate::http::REQUEST_ID;
use crate::infra::metrics::{Metrics, route_label};

/// Runs each request to its end even if the client goes away: a dropped request could
/// otherwise stop between uploading a blob and recording it, or, on PostgreSQL, while its
/// `BEGIN` is in flight, which returns the connection to the pool inside a transaction nobody
/// ends (sqlx 0.9). The request is polled where it arrived; only a request whose client left
/// moves, as it is, to a task of its own, so the common case spawns nothing. A panic answers
/// 500, as a failed task would. Outermost, so every layer runs inside.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunToCompletionLayer;

impl<S> Layer<S> for RunToCompletionLayer {
    type Service = RunToCompletion<S>;

    fn layer(&self, inner: S) -> RunToCompletion<S> {
        RunToCompletion { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RunToCompletion<S> {
    inner: S,
}

impl<S> Service<Request> for RunToCompletion<S>
where
    S: Service<Request, Error = Infallible>,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Detached<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        Detached {
            request: Some(Box::pin(self.inner.call(req))),
        }
    }
}

/// A request's future that, dropped before its end, finishes on a task of its own.
pub struct Detached<F: Future + Send + 'static> {
    request: Option<Pin<Box<F>>>,
}

impl<F, R> Future for Detached<F>
where
    F: Future<Output = Result<R, Infallible>> + Send + 'static,
    R: IntoResponse,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(request) = self.request.as_mut() else {
            return Poll::Pending;
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| request.as_mut().poll(cx)));
        let response = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(response))) => response.into_response(),
            Err(_) => {
                tracing::error!("request task failed: the handler panicked");
                Error::Internal(anyhow::anyhow!("request task failed")).into_response()
            }
        };
        self.request = None;
        Poll::Ready(Ok(response))
    }
}

impl<F: Future + Send + 'static> Drop for Detached<F> {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = request.await;
                });
            }
            Err(_) => tracing::error!("request abandoned: no runtime to finish it on"),
        }
    }
}

/// Request ids: random UUIDs (version 4) from a thread-local generator seeded by the OS,
/// instead of one system call per request. They name requests in logs and the audit trail;
/// nothing relies on them being unpredictable.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastRequestId;

impl MakeRequestId for FastRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let bytes: [u8; 16] = rand::random();
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// One span per request, named `request` in logs, with the method, path and request id (never
/// headers or bodies: tokens and state stay out of logs and traces). With traces on it is
/// also an OpenTelemetry server span named by the route template (`LOCK /state/{org}/{workspace}`),
/// continuing the caller's W3C `traceparent`; its trace id goes into the JSON logs
/// (`trace_id`), the `traceresponse` header, and the `x-request-id` when the client sent
/// none. Outside the request id layers, because it may choose the id.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpanLayer;

impl<S> Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> RequestSpan<S> {
        RequestSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RequestSpan<S> {
    inner: S,
}

type Traced<B> = Pin<Box<dyn Future<Output = Result<axum::http::Response<B>, Infallible>> + Send>>;

impl<S, B> Service<Request> for RequestSpan<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = axum::http::Response<B>;
    type Error = Infallible;
    type Future = futures::future::Either<tracing::instrument::Instrumented<S::Future>, Traced<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        use futures::future::Either;
        use tracing::Instrument;
        if !crate::infra::telemetry::tracing_on() {
            if !req.headers().contains_key(&REQUEST_ID)
                && let Some(id) = FastRequestId.make_request_id(&req)
            {
                req.headers_mut()
                    .insert(REQUEST_ID.clone(), id.header_value().clone());
            }
            let request_id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let span = tracing::info_span!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %request_id,
            );
            let future = span.in_scope(|| self.inner.call(req));
            return Either::Left(future.instrument(span));
        }
        let route = route_label(
            req.extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
        );
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("{} {route}", req.method()),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            method = %req.method(),
            route,
            path = %req.uri().path(),
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        let parent = crate::infra::telemetry::remote_parent(req.headers());
        let (trace_id, traceresponse) = crate::infra::telemetry::join(&span, parent);
        span.record("trace_id", trace_id.as_str());
        if !req.headers().contains_key(&REQUEST_ID)
            && let Ok(value) = HeaderValue::from_str(&trace_id)
        {
            req.headers_mut().insert(REQUEST_ID.clone(), value);
        }
        if let Some(id) = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()) {
            span.record("request_id", id);
        }
        let start = Instant::now();
        let future = span.in_scope(|| self.inner.call(req));
        let traced = async move {
            let Ok(mut response) = future.await;
            let status = response.status().as_u16();
            let span = tracing::Span::current();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
            if let Ok(value) = HeaderValue::from_str(&traceresponse) {
                response.headers_mut().insert("traceresponse", value);
            }
            tracing::info!(
                status,
                elapsed_ms = start.elapsed().as_secs_f64() * 1000.0,
                trace_id = %trace_id,
                "request finished"
            );
            Ok(response)
        }
        .instrument(span);
        Either::Right(Box::pin(traced))
    }
}

/// What [`Edge`] needs, shared by every route's copy of it.
#[derive(Debug)]
pub struct EdgeState {
    pub metrics: Arc<Metrics>,
    pub audit: AuditSink,
}

/// The per-route part of the middleware, which needs the matched route (set by the router):
/// `Host` from `:authority`, metrics, the audit record, and 401 for anonymous management-API
/// changes. Everything before the request runs is synchronous, so the request is handed on
/// without cloning the route below.
#[derive(Clone, Debug)]
pub struct EdgeLayer(pub Arc<EdgeState>);

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Edge<S> {
    inner: S,
    state: Arc<EdgeState>,
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        host_from_authority(&mut req);
        let method = req.method().clone();
        let route = route_label(
            req.extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
        );
        // Opened before the credentials check, so a refused change is recorded too.
        let recording = crate::audit::begin(&self.state.audit, &req);
        let response = if lacks_credentials(&req) {
            None
        } else {
            Some(self.inner.call(req))
        };
        let state = self.state.clone();
        Box::pin(async move {
            let response = async move {
                match response {
                    Some(response) => match response.await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => Error::Unauthenticated.into_response(),
                }
            };
            let response = match recording {
                Some(recording) => recording.record(response).await,
                None => response.await,
            };
            let status = response.status().as_u16();
            state
                .metrics
                .observe_request(&method, route, status, start.elapsed());
            Ok(response)
        })
    }
}

/// HTTP/2 carries the host in the `:authority` pseudo-header, not in `Host`; links built from
/// the request (download URLs) read `Host`, so fill it in.
fn host_from_authority(req: &mut Request) {
    if !req.headers().contains_key(header::HOST)
        && let Some(value) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, value);
    }
}

/// No management API change is open to anonymous callers: answer 401 before the body is
/// parsed, so a caller without a token learns nothing from validation errors.
fn lacks_credentials(req: &Request) -> bool {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    !reads
        && req.uri().path().starts_with("/api/")
        && !req.headers().contains_key(header::AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        let request = axum::http::Request::new(());
        let a = FastRequestId.make_request_id(&request).unwrap();
        let b = FastRequestId.make_request_id(&request).unwrap();
        let a = uuid::Uuid::parse_str(a.header_value().to_str().unwrap()).unwrap();
        let b = uuid::Uuid::parse_str(b.header_value().to_str().unwrap()).unwrap();
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_request_whose_client_left_still_finishes() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let once = Arc::new(std::sync::Mutex::new(Some((go_rx, done_tx))));
        let inner = tower::service_fn(move |_req: Request| {
            let channels = once.lock().unwrap().take();
            async move {
                let (go_rx, done_tx) = channels.expect("one request");
                let _ = go_rx.await;
                let _ = done_tx.send(());
                Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
            }
        });
        let mut service = RunToCompletionLayer.layer(inner);
        let mut request = service.call(Request::new(axum::body::Body::empty()));
        // Polled once, then abandoned by its client.
        let waker = futures::task::noop_waker();
        assert!(
            Pin::new(&mut request)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(request);
        let _ = go_tx.send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), done_rx)
            .await
            .expect("the request finished")
            .expect("the request finished");
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500() {
        let inner = tower::service_fn(|_req: Request| async move {
            if true {
                panic!("handler bug");
            }
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        });
        let mut service = RunToCompletionLayer.layer(inner);
        let response = service
            .call(Request::new(axum::body::Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
}
