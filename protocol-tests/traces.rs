//! OpenTelemetry traces: `terrace serve` exports spans over OTLP/HTTP (protobuf) to a real
//! receiver in the test, which decodes them with the `opentelemetry-proto` types. A Terraform
//! apply over the http backend gives one trace per request, named by the route template, with
//! spans for the lock store, the database queries and the blob store under it; an incoming W3C
//! `traceparent` is continued; the trace id is in the JSON log lines and the response headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::Value;

use crate::harness::{Role, Terrace, Workdir};

const WORKSPACE: &str = "traced";
const STATE_ROUTE: &str = "/state/{org}/{workspace}";

/// One received span, with ids in hex as W3C headers and logs show them.
#[derive(Clone, Debug)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
    service: String,
}

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf body.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let received = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body.as_ref())
                        .expect("an OTLP protobuf export request");
                    let mut received = received.lock().expect("spans lock");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| r.attributes.iter())
                            .find(|a| a.key == "service.name")
                            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                received.push(Span {
                                    trace_id: hex::encode(&span.trace_id),
                                    span_id: hex::encode(&span.span_id),
                                    parent: hex::encode(&span.parent_span_id),
                                    name: span.name,
                                    attributes: span
                                        .attributes
                                        .iter()
                                        .map(|a| {
                                            let value =
                                                a.value.as_ref().and_then(|v| v.value.as_ref());
                                            (a.key.clone(), text(value))
                                        })
                                        .collect(),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the receiver");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("receiver address")
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Collector {
            url,
            spans,
            _runtime: runtime,
        }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans lock").clone()
    }

    /// Waits (the exporter sends in batches) until `done` holds for the spans received.
    fn wait_for(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after 20 s; received: {:#?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Whether `span` is `root` or below it in the same trace.
fn under(spans: &[Span], span: &Span, root: &Span) -> bool {
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut current = span;
    loop {
        if current.span_id == root.span_id && current.trace_id == root.trace_id {
            return true;
        }
        match by_id.get(current.parent.as_str()) {
            Some(parent) if parent.trace_id == span.trace_id => current = parent,
            _ => return false,
        }
    }
}

/// The JSON log lines of the server.
fn json_lines(server: &Terrace) -> Vec<Value> {
    server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn start(collector: &Collector) -> Terrace {
    let settings = [
        (
            "TERRACE_OTEL_EXPORTER_OTLP_ENDPOINT",
            collector.url.as_str(),
        ),
        ("TERRACE_LOG_FORMAT", "json"),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    Terrace::start_replicas(1, &settings)
        .pop()
        .expect("one server")
}

#[test]
fn a_terraform_apply_is_traced_request_by_request() {
    require_terraform!();
    let collector = Collector::start();
    let server = start(&collector);
    let dir = Workdir::new(&server, WORKSPACE, Role::Write);
    dir.terraform(&["init"]).assert_success();
    dir.terraform(&["apply", "-auto-approve"]).assert_success();

    let name = |method: &str| format!("{method} {STATE_ROUTE}");
    let spans = collector.wait_for("LOCK, POST and UNLOCK traces", |spans| {
        ["LOCK", "POST", "UNLOCK"]
            .iter()
            .all(|m| spans.iter().any(|s| s.name == name(m)))
            && spans.iter().any(|s| s.name == "blob.put")
    });
    let request = |method: &str| {
        spans
            .iter()
            .find(|s| s.name == name(method))
            .unwrap_or_else(|| panic!("no {method} span"))
            .clone()
    };
    let (lock, write, unlock) = (request("LOCK"), request("POST"), request("UNLOCK"));
    // Terraform sends no traceparent: each request is a trace of its own, rooted at the
    // server span, which is named by the route and carries the route and status.
    for root in [&lock, &write, &unlock] {
        assert_eq!(root.parent, "", "{root:?}");
        assert_eq!(root.attributes["route"], STATE_ROUTE);
        assert_eq!(root.attributes["http.response.status_code"], "200");
        assert_eq!(root.service, "terrace");
    }
    assert_ne!(lock.trace_id, write.trace_id);
    let children = |root: &Span| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| s.span_id != root.span_id && under(&spans, s, root))
            .cloned()
            .collect()
    };
    let write_children = children(&write);
    let named: Vec<&str> = write_children.iter().map(|s| s.name.as_str()).collect();
    // The write goes to the blob store, checks the lock and commits rows.
    assert!(named.contains(&"blob.put"), "{named:?}");
    assert!(named.contains(&"locks.holder_for_write"), "{named:?}");
    let queries: Vec<&Span> = write_children
        .iter()
        .filter(|s| s.attributes.contains_key("db.query.text"))
        .collect();
    assert!(
        queries.iter().any(|q| q.name.starts_with("INSERT")),
        "{named:?}"
    );
    let lock_children = children(&lock);
    assert!(
        lock_children.iter().any(|s| s.name == "locks.acquire"),
        "{lock_children:?}"
    );
    assert!(
        lock_children
            .iter()
            .any(|s| s.attributes.contains_key("db.query.text")),
        "{lock_children:?}"
    );

    // Nothing secret or large in any span: not the token, not the state body.
    let token = server.token(Role::Write);
    let state = server.pull_state(WORKSPACE).expect("apply stored a state");
    let lineage = state["lineage"].as_str().expect("as the test expects");
    for span in collector.spans() {
        for (key, value) in &span.attributes {
            assert!(
                !value.contains(token) && !value.contains(lineage),
                "{key}={value} in {}",
                span.name
            );
        }
    }

    // The JSON log line of the write names its trace, and the request id is the trace id
    // (Terraform sent none).
    let lines = json_lines(&server);
    let logged = lines
        .iter()
        .find(|l| l["fields"]["trace_id"] == write.trace_id.as_str())
        .unwrap_or_else(|| panic!("no log line with trace_id {}", write.trace_id));
    assert_eq!(logged["fields"]["message"], "request finished");
    assert_eq!(logged["span"]["trace_id"], write.trace_id.as_str());
    assert_eq!(logged["span"]["request_id"], write.trace_id.as_str());
    assert_eq!(logged["span"]["route"], STATE_ROUTE);
}

#[test]
fn an_incoming_traceparent_is_continued_and_echoed() {
    let collector = Collector::start();
    let server = start(&collector);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let url = server.state_url(WORKSPACE);
    let response = server
        .http()
        .get(&url)
        .basic_auth("terraform", Some(server.token(Role::Read)))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .expect("as the test expects");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    // Without an x-request-id of the caller's, the request id is the trace id.
    assert_eq!(response.headers()["x-request-id"], trace_id);
    let echoed = response.headers()["traceresponse"]
        .to_str()
        .expect("as the test expects");
    assert!(echoed.starts_with(&format!("00-{trace_id}-")), "{echoed}");
    assert!(echoed.ends_with("-01"), "{echoed}");

    // A caller's own request id is kept; the trace id is still in `traceresponse`.
    let response = server
        .http()
        .get(&url)
        .basic_auth("terraform", Some(server.token(Role::Read)))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .expect("as the test expects");
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-id");
    assert!(
        response.headers()["traceresponse"]
            .to_str()
            .expect("as the test expects")
            .contains(trace_id)
    );

    let spans = collector.wait_for("the continued trace", |spans| {
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id && s.parent == caller_span)
            .count()
            >= 2
    });
    let server_span = spans
        .iter()
        .find(|s| s.trace_id == trace_id && s.parent == caller_span)
        .expect("as the test expects");
    assert_eq!(server_span.name, format!("GET {STATE_ROUTE}"));
    assert_eq!(server_span.attributes["http.response.status_code"], "404");
    // The span id the server sent back is its own span's.
    assert!(
        spans.iter().any(|s| s.trace_id == trace_id
            && s.parent == caller_span
            && echoed == format!("00-{trace_id}-{}-01", s.span_id)),
        "{echoed}"
    );

    let lines = json_lines(&server);
    let logged: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["trace_id"] == trace_id)
        .collect();
    assert_eq!(logged.len(), 2, "{lines:#?}");
    assert_eq!(logged[1]["span"]["request_id"], "caller-chosen-id");
}

/// Without an endpoint nothing is exported, even with the other `OTEL_*` variables set, and the
/// request id stays a random UUID with no `traceresponse`.
#[test]
fn without_an_endpoint_nothing_is_traced() {
    let collector = Collector::start();
    let settings = [
        ("TERRACE_LOG_FORMAT", "json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "terrace-test"),
    ];
    let server = Terrace::start_replicas(1, &settings)
        .pop()
        .expect("one server");
    let response = server
        .http()
        .get(server.state_url(WORKSPACE))
        .basic_auth("terraform", Some(server.token(Role::Read)))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .expect("the server answers");
    let request_id = response.headers()["x-request-id"].to_str().expect("ASCII");
    let parsed = uuid::Uuid::parse_str(request_id).expect("a UUID request id");
    assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
    assert!(!response.headers().contains_key("traceresponse"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(collector.spans().is_empty());
    assert!(
        json_lines(&server)
            .iter()
            .all(|l| l["fields"]["trace_id"].is_null() && l["span"]["trace_id"].is_null()),
        "{}",
        server.log()
    );
}

/// A deployment's plan run by a `terrace runner` process that exports traces too: the run is
/// one trace holding the runner's spans (`runner.run`, a span per Terraform command) and, as
/// the runner passes its `traceparent`, the server's spans for the runner's calls.
#[test]
fn a_run_is_traced_from_the_runner_into_the_server() {
    require_terraform!();
    let collector = Collector::start();
    let settings = [
        (
            "TERRACE_OTEL_EXPORTER_OTLP_ENDPOINT",
            collector.url.as_str(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("TERRACE_RUNNERS", "0"),
    ];
    let server = Terrace::start_tls_with(&settings);
    let admin = server.bearer(Role::Admin);
    let api = |method: reqwest::Method, path: &str, body: Value| {
        let response = server
            .http()
            .request(method, format!("{}{path}", server.base_url()))
            .header("Authorization", &admin)
            .json(&body)
            .send()
            .expect("the server answers");
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    };

    // A module without providers, published and made a blueprint.
    let main_tf = "variable \"n\" {\n  type = number\n}\n\noutput \"n\" {\n  value = var.n\n}\n";
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut archive = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(main_tf.len() as u64);
    header.set_mode(0o644);
    archive
        .append_data(&mut header, "main.tf", main_tf.as_bytes())
        .expect("append to the archive");
    let archive = archive
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the archive");
    let published = server
        .http()
        .put(format!(
            "{}/api/v1/modules/acme/tiny/null/1.0.0",
            server.base_url()
        ))
        .header("Authorization", server.bearer(Role::Write))
        .body(archive)
        .send()
        .expect("publish");
    assert_eq!(published.status(), reqwest::StatusCode::CREATED);
    api(
        reqwest::Method::POST,
        "/api/v1/orgs/acme/blueprints",
        serde_json::json!({"name": "tiny", "module": "acme/tiny/null", "title": "tiny",
            "status": "published"}),
    );
    let created = api(
        reqwest::Method::POST,
        "/api/v1/orgs/acme/deployments",
        serde_json::json!({"name": "traced", "blueprint": "tiny", "inputs": {"n": 1}}),
    );
    let run_id = created["current_run"]["id"].as_i64().expect("a run");

    let token = server.cli(&["runner-token", "create", "--org", "acme"], &[]);
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let ca = server.ca_path();
    let _runner = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_terrace"))
            .args(["runner", "--url", server.base_url(), "--token", &token])
            .args(["--name", "traced-runner"])
            .arg("--terraform")
            .arg(crate::harness::terraform_bin())
            .arg("--ca-cert")
            .arg(&ca)
            .env("SSL_CERT_FILE", &ca)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_SERVICE_NAME", "terrace-runner")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start terrace runner"),
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = api(
            reqwest::Method::GET,
            &format!("/api/v1/orgs/acme/runs/{run_id}"),
            Value::Null,
        );
        match run["status"].as_str() {
            Some("planned") => break,
            Some("errored") => panic!("the run failed: {run}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the run did not finish: {run}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let spans = collector.wait_for("the run's trace", |spans| {
        spans.iter().any(|s| s.name == "runner.run")
            && spans
                .iter()
                .any(|s| s.name == "POST /api/v1/runner/runs/{id}/finish")
    });

    let run = spans
        .iter()
        .find(|s| s.name == "runner.run")
        .expect("a runner.run span");
    assert_eq!(run.service, "terrace-runner");
    assert_eq!(run.attributes["run_id"], run_id.to_string());
    let in_run: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == run.trace_id && under(&spans, s, run))
        .collect();
    let names: Vec<&str> = in_run.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "terraform init",
        "terraform plan",
        "POST /api/v1/runner/runs/{id}/finish",
        "PUT /api/v1/runner/runs/{id}/logs",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    // The server's spans in the run's trace are the server's own.
    let finish = in_run
        .iter()
        .find(|s| s.name == "POST /api/v1/runner/runs/{id}/finish")
        .expect("finish");
    assert_eq!(finish.service, "terrace");
    assert!(spans.iter().any(|s| s.name == "runner.claim"));
}

/// A child process killed when dropped (the test's runner, also when the test fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
