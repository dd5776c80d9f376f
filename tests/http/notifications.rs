//! Notifications against a real HTTP receiver started by the test: both signatures checked
//! with independent implementations (the `standardwebhooks` crate, and HMAC-SHA512 from
//! RustCrypto), retries after a 500 honouring `Retry-After`, private targets refused at
//! create and at delivery, run events from a run driven through the runner protocol,
//! `lock:stale` raised once, and (with the real binary) a restart of `terrace serve` while
//! deliveries are pending losing none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use terrace::notifications::Settings;

use crate::deployments::{blueprint, claim, deploy, finish, finish_planned, runner_token};
use crate::support::TestApp;

const NOTIFICATIONS: &str = "/api/v1/orgs/acme/notifications";

/// Settings for tests: the receiver is on loopback; retries come quickly.
fn settings() -> Settings {
    Settings {
        allow_private: true,
        retry_base: Duration::from_secs(1),
        retry_limit: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
        lock_check: Duration::from_secs(1),
    }
}

macro_rules! notification_scenarios {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::support::TestApp::with_notifications(crate::support::Backend::Sqlite, super::settings())
                        .await
                        .unwrap();
                    super::$name(app).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) =
                        crate::support::TestApp::with_notifications(crate::support::Backend::Postgres, super::settings()).await
                    else {
                        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
                        return;
                    };
                    super::$name(app).await;
                }
            )+
        }
    };
}

notification_scenarios! {
    notifications_are_signed_retried_after_a_500_and_logged,
    private_targets_are_refused_at_create_and_at_delivery,
    runs_raise_their_events,
    a_run_stopped_by_the_budget_gate_needs_attention,
    a_stale_lock_is_announced_once,
}

/// Locks in DynamoDB (moto): the stale-lock check scans renewals there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dynamo_a_stale_lock_is_announced_once() {
    let Some(app) =
        TestApp::with_notifications(crate::support::Backend::PostgresDynamo, settings()).await
    else {
        eprintln!("skipping: PostgreSQL or the DynamoDB emulator is not configured");
        return;
    };
    a_stale_lock_is_announced_once(app).await;
}

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks both signatures with implementations independent of Terrace's.
    pub fn assert_signed_with(&self, secret: &str) {
        let webhook = standardwebhooks::Webhook::new(secret).unwrap();
        webhook
            .verify(&self.body, &self.headers)
            .unwrap_or_else(|e| panic!("Standard Webhooks signature: {e}"));
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            self.headers["x-tfe-notification-signature"]
                .to_str()
                .unwrap(),
            expected,
            "X-TFE-Notification-Signature"
        );
        // A wrong secret fails.
        let other =
            standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(other.verify(&self.body, &self.headers).is_err());
    }
}

#[derive(Default)]
struct Script {
    got: Vec<Received>,
    /// Answer 500 to the first this many requests of each webhook id.
    fail_first: usize,
    retry_after: Option<u64>,
    /// Answer 503 to everything.
    down: bool,
}

/// A webhook receiver on a loopback port.
#[derive(Clone, Default)]
pub struct Receiver {
    script: Arc<Mutex<Script>>,
    pub url: String,
}

impl Receiver {
    /// Starts one on the current runtime.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut receiver = Receiver {
            url: format!("http://{}", listener.local_addr().unwrap()),
            ..Default::default()
        };
        let script = receiver.script.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let script = script.clone();
                async move {
                    let mut s = script.lock().unwrap();
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let seen = s
                        .got
                        .iter()
                        .filter(|r| {
                            r.headers.get("webhook-id").and_then(|v| v.to_str().ok()) == Some(&id)
                        })
                        .count();
                    let (status, retry_after) = if s.down {
                        (503, None)
                    } else if seen < s.fail_first {
                        (500, s.retry_after)
                    } else {
                        (200, None)
                    };
                    s.got.push(Received {
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                        at: Instant::now(),
                        status,
                    });
                    let mut response = axum::http::Response::builder().status(status);
                    if let Some(after) = retry_after {
                        response = response.header("retry-after", after.to_string());
                    }
                    response.body(axum::body::Body::empty()).unwrap()
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver.url = receiver.url.clone();
        receiver
    }

    pub fn fail_first(&self, n: usize, retry_after: Option<u64>) {
        let mut s = self.script.lock().unwrap();
        s.fail_first = n;
        s.retry_after = retry_after;
    }

    pub fn set_down(&self, down: bool) {
        self.script.lock().unwrap().down = down;
    }

    pub fn got(&self) -> Vec<Received> {
        self.script.lock().unwrap().got.clone()
    }

    /// The requests answered 200.
    pub fn delivered(&self) -> Vec<Received> {
        self.got().into_iter().filter(|r| r.status == 200).collect()
    }
}

/// Waits up to `secs` for `done`.
async fn eventually(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let resp = app
        .api("POST", NOTIFICATIONS, &app.admin_token, Some(body))
        .await;
    resp.assert_status(StatusCode::CREATED);
    resp.json()
}

fn start_jobs(app: &TestApp) {
    terrace::jobs::start_notifications(&app.state.jobs, &app.state.notifications, &app.state.state);
}

async fn notifications_are_signed_retried_after_a_500_and_logged(app: TestApp) {
    let receiver = Receiver::start().await;
    receiver.fail_first(1, Some(2));
    let created = subscribe(
        &app,
        json!({"name": "ops", "url": format!("{}/hook", receiver.url), "events": ["run:*"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["format"], "generic");
    // The secret is shown once.
    let shown = app
        .api(
            "GET",
            &format!("{NOTIFICATIONS}/ops"),
            &app.admin_token,
            None,
        )
        .await;
    shown.assert_status(StatusCode::OK);
    assert!(shown.json().get("secret").is_none(), "{}", shown.text());
    let slack = subscribe(
        &app,
        json!({"name": "chat", "url": format!("{}/slack", receiver.url), "events": ["*"],
               "format": "slack"}),
    )
    .await;
    let slack_secret = slack["secret"].as_str().unwrap().to_string();
    // Admins only; another org sees nothing.
    app.api("GET", NOTIFICATIONS, &app.write_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.api("GET", NOTIFICATIONS, &app.other_token, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let list = app.api("GET", NOTIFICATIONS, &app.admin_token, None).await;
    assert_eq!(list.json()["data"].as_array().unwrap().len(), 2);
    // Duplicates and bad fields.
    app.api(
        "POST",
        NOTIFICATIONS,
        &app.admin_token,
        Some(json!({"name": "ops", "url": receiver.url, "events": ["run:applied"]})),
    )
    .await
    .assert_status(StatusCode::CONFLICT);
    let bad = app
        .api(
            "POST",
            NOTIFICATIONS,
            &app.admin_token,
            Some(json!({"name": "bad", "url": "ftp://x", "events": ["run:exploded"]})),
        )
        .await;
    bad.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.json()["errors"].as_array().unwrap().len(),
        2,
        "{}",
        bad.text()
    );

    start_jobs(&app);
    let queued = app
        .api(
            "POST",
            &format!("{NOTIFICATIONS}/ops/test"),
            &app.admin_token,
            None,
        )
        .await;
    queued.assert_status(StatusCode::ACCEPTED);
    let id = queued.json()["delivery"].as_str().unwrap().to_string();
    eventually(30, "the retried delivery", || {
        receiver.delivered().iter().any(|r| r.id() == id)
    })
    .await;
    let tries: Vec<Received> = receiver
        .got()
        .into_iter()
        .filter(|r| r.id() == id)
        .collect();
    assert_eq!(tries.len(), 2, "one 500, then the retry");
    assert_eq!((tries[0].status, tries[1].status), (500, 200));
    // The retry waited for Retry-After (2 s), longer than the 1 s backoff.
    let gap = tries[1].at - tries[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    for t in &tries {
        t.assert_signed_with(&secret);
        assert_eq!(t.path, "/hook");
    }
    assert_eq!(
        tries[0].body, tries[1].body,
        "the same body on every attempt"
    );
    let body = tries[1].json();
    assert_eq!(body["type"], "notification:test");
    assert_eq!(body["org"], "acme");
    assert_eq!(body["notification"], "ops");

    // Every attempt is logged.
    let log = app
        .api(
            "GET",
            &format!("{NOTIFICATIONS}/ops/deliveries"),
            &app.admin_token,
            None,
        )
        .await;
    log.assert_status(StatusCode::OK);
    let delivery = log.json()["data"][0].clone();
    assert_eq!(delivery["id"], id.as_str());
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 2);
    let attempts = delivery["log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{delivery}");
    assert_eq!(attempts[0]["status_code"], 500);
    assert!(attempts[0]["next_attempt_at"].is_string());
    assert_eq!(attempts[1]["status_code"], 200);

    // Slack format: an incoming-webhook message, signed the same way.
    receiver.fail_first(0, None);
    app.api(
        "POST",
        &format!("{NOTIFICATIONS}/chat/test"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    eventually(30, "the Slack message", || {
        receiver.delivered().iter().any(|r| r.path == "/slack")
    })
    .await;
    let message = receiver
        .delivered()
        .into_iter()
        .find(|r| r.path == "/slack")
        .unwrap();
    message.assert_signed_with(&slack_secret);
    let text = message.json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("Test notification"), "{text}");

    // Rotating the secret shows a new one, which signs from then on; delete removes.
    let rotated = app
        .api(
            "PATCH",
            &format!("{NOTIFICATIONS}/chat"),
            &app.admin_token,
            Some(json!({"rotate_secret": true, "workspace": "prod-*"})),
        )
        .await;
    rotated.assert_status(StatusCode::OK);
    let new_secret = rotated.json()["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, slack_secret);
    assert_eq!(rotated.json()["workspace"], "prod-*");
    let before = receiver.delivered().len();
    app.api(
        "POST",
        &format!("{NOTIFICATIONS}/chat/test"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    eventually(30, "a message signed with the new secret", || {
        receiver.delivered().len() > before
    })
    .await;
    receiver
        .delivered()
        .last()
        .unwrap()
        .assert_signed_with(&new_secret);
    app.api(
        "DELETE",
        &format!("{NOTIFICATIONS}/chat"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    app.api(
        "GET",
        &format!("{NOTIFICATIONS}/chat"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn private_targets_are_refused_at_create_and_at_delivery(app: TestApp) {
    let strict = TestApp::with_notifications(app.backend, Settings::default())
        .await
        .unwrap();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
    ] {
        let resp = strict
            .api(
                "POST",
                NOTIFICATIONS,
                &strict.admin_token,
                Some(json!({"name": "x", "url": url, "events": ["run:applied"]})),
            )
            .await;
        resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(resp.text().contains("private"), "{url}: {}", resp.text());
    }

    // Saved where private targets are allowed, delivered by a worker where they are not:
    // refused at delivery, and the receiver hears nothing.
    let receiver = Receiver::start().await;
    subscribe(
        &app,
        json!({"name": "inside", "url": format!("{}/hook", receiver.url), "events": ["run:*"]}),
    )
    .await;
    app.api(
        "POST",
        &format!("{NOTIFICATIONS}/inside/test"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::ACCEPTED);
    let strict_worker = terrace::notifications::Ctx::new(&app.state.identity, Settings::default());
    let made = terrace::notifications::deliver_due(&strict_worker, "strict")
        .await
        .unwrap();
    assert_eq!(made, 1);
    assert!(receiver.got().is_empty());
    let log = app
        .api(
            "GET",
            &format!("{NOTIFICATIONS}/inside/deliveries"),
            &app.admin_token,
            None,
        )
        .await
        .json();
    let delivery = &log["data"][0];
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(
        delivery["last_error"].as_str().unwrap().contains("private"),
        "{delivery}"
    );
}

async fn runs_raise_their_events(app: TestApp) {
    let receiver = Receiver::start().await;
    let created = subscribe(
        &app,
        json!({"name": "runs", "url": format!("{}/runs", receiver.url), "events": ["run:*"],
               "workspace": "web*"}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    subscribe(
        &app,
        json!({"name": "elsewhere", "url": format!("{}/elsewhere", receiver.url),
               "events": ["run:*"], "workspace": "prod-*"}),
    )
    .await;
    start_jobs(&app);
    blueprint(&app).await;
    let runner = runner_token(&app, "acme").await;

    let id = deploy(&app, "web").await;
    let c = claim(&app, &runner).await.unwrap();
    finish_planned(&app, &runner, &c, true).await;
    app.api(
        "POST",
        &format!("/api/v1/orgs/acme/runs/{id}/apply"),
        &app.write_token,
        None,
    )
    .await
    .assert_status(StatusCode::OK);
    let c = claim(&app, &runner).await.unwrap();
    finish(&app, &runner, &c, "applied")
        .await
        .assert_status(StatusCode::NO_CONTENT);

    let failing = deploy(&app, "web-2").await;
    let c = claim(&app, &runner).await.unwrap();
    assert_eq!(c["run_id"], failing);
    let resp = finish(&app, &runner, &c, "errored").await;
    resp.assert_status(StatusCode::NO_CONTENT);

    let expected = [
        (id, "run:created"),
        (id, "run:planning"),
        (id, "run:planned"),
        (id, "run:needs_attention"),
        (id, "run:applying"),
        (id, "run:applied"),
        (id, "run:completed"),
        (failing, "run:created"),
        (failing, "run:planning"),
        (failing, "run:errored"),
    ];
    eventually(30, "every run event", || {
        receiver.delivered().len() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.delivered();
    let mut seen: HashMap<(i64, String), Value> = HashMap::new();
    for r in &got {
        assert_eq!(r.path, "/runs", "the prod-* subscription hears nothing");
        r.assert_signed_with(&secret);
        let body = r.json();
        let run = body["data"]["run"]["id"].as_i64().unwrap();
        let kind = body["type"].as_str().unwrap().to_string();
        assert!(
            seen.insert((run, kind.clone()), body.clone()).is_none(),
            "{kind} of run {run} delivered twice"
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "{:?}",
        seen.keys().collect::<Vec<_>>()
    );
    for (run, kind) in expected {
        let body = seen
            .get(&(run, kind.to_string()))
            .unwrap_or_else(|| panic!("no {kind} for run {run}"));
        assert_eq!(body["org"], "acme");
        assert!(body["workspace"].as_str().unwrap().starts_with("web"));
    }
    let applied = &seen[&(id, "run:applied".to_string())];
    assert_eq!(applied["data"]["run"]["status"], "applied");
    assert_eq!(applied["data"]["run"]["deployment"], "web");
    assert!(
        applied["data"]["message"]
            .as_str()
            .unwrap()
            .contains("applied")
    );
    let attention = &seen[&(id, "run:needs_attention".to_string())];
    assert_eq!(attention["data"]["run"]["status"], "planned");
    assert_eq!(attention["data"]["run"]["has_changes"], true);
}

async fn a_run_stopped_by_the_budget_gate_needs_attention(app: TestApp) {
    let receiver = Receiver::start().await;
    subscribe(
        &app,
        json!({"name": "runs", "url": format!("{}/runs", receiver.url), "events": ["run:*"]}),
    )
    .await;
    start_jobs(&app);
    blueprint(&app).await;
    app.api(
        "POST",
        "/api/v1/orgs/acme/budgets",
        &app.admin_token,
        Some(
            json!({"name": "web-estimate", "scope": "blueprint:web", "amount": 20,
                    "basis": "estimate"}),
        ),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let resp = app
        .api(
            "POST",
            "/api/v1/orgs/acme/deployments",
            &app.write_token,
            Some(
                json!({"name": "web-prod", "blueprint": "web", "inputs": {"env": "prod"},
                        "auto_apply": true}),
            ),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    let id = resp.json()["current_run"]["id"].as_i64().unwrap();
    let runner = runner_token(&app, "acme").await;
    let c = claim(&app, &runner).await.unwrap();
    // A t3.medium: about 30 a month, over the budget of 20.
    let plan = json!({"resource_changes": [{"address": "aws_instance.web", "mode": "managed",
        "type": "aws_instance", "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": ["create"], "before": null,
                   "after": {"instance_type": "t3.medium"}}}]});
    let resp = app
        .send(
            crate::support::RequestBuilder::new(
                "POST",
                &format!("/api/v1/runner/runs/{id}/finish"),
            )
            .bearer(&runner)
            .header("terrace-lease", c["lease"].as_str().unwrap())
            .header("content-type", "application/json")
            .body(json!({"status": "planned", "has_changes": true, "plan_json": plan}).to_string())
            .build(),
        )
        .await;
    resp.assert_status(StatusCode::NO_CONTENT);
    eventually(30, "run:needs_attention", || {
        receiver
            .delivered()
            .iter()
            .any(|r| r.json()["type"] == "run:needs_attention")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kinds: Vec<String> = receiver
        .delivered()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "run:created",
        "run:planning",
        "run:planned",
        "run:needs_attention",
    ] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            1,
            "{kind}: {kinds:?}"
        );
    }
    let attention = receiver
        .delivered()
        .into_iter()
        .map(|r| r.json())
        .find(|b| b["type"] == "run:needs_attention")
        .unwrap();
    assert_eq!(
        attention["data"]["run"]["status"], "policy_override",
        "{attention}"
    );
    assert!(
        attention["data"]["message"]
            .as_str()
            .unwrap()
            .contains("override"),
        "{attention}"
    );
}

async fn a_stale_lock_is_announced_once(app: TestApp) {
    let receiver = Receiver::start().await;
    let created = subscribe(
        &app,
        json!({"name": "locks", "url": format!("{}/locks", receiver.url),
               "events": ["lock:stale"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    app.lock("stuck", "lock-1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    app.api(
        "PATCH",
        &TestApp::ws_api("stuck", ""),
        &app.admin_token,
        Some(json!({"lock_lease": "1s"})),
    )
    .await
    .assert_status(StatusCode::OK);
    start_jobs(&app);
    eventually(30, "lock:stale", || !receiver.delivered().is_empty()).await;
    // The check runs every second; the lock stays stale, and is announced once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = receiver.delivered();
    assert_eq!(got.len(), 1, "announced once");
    got[0].assert_signed_with(&secret);
    let body = got[0].json();
    assert_eq!(body["type"], "lock:stale");
    assert_eq!(body["workspace"], "stuck");
    assert_eq!(body["data"]["lock"]["id"], "lock-1");
    assert_eq!(body["data"]["lock"]["who"], "alice@laptop");
    assert_eq!(body["data"]["lock"]["lease_seconds"], 1);
}

#[test]
fn sqlite_a_restart_during_pending_deliveries_loses_none() {
    let root = tempfile::tempdir().unwrap();
    restart_keeps_deliveries(root.path(), &[]);
}

#[test]
fn postgres_a_restart_during_pending_deliveries_loses_none() {
    let Some(db_url) = crate::support::postgres_schema_url("notify") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    restart_keeps_deliveries(root.path(), &[("TERRACE_DATABASE_URL", &db_url)]);
}

/// Events queued while the receiver is down, `terrace serve` killed (SIGKILL) and started
/// again, the receiver back: every event arrives, with its webhook id, signed.
fn restart_keeps_deliveries(root: &std::path::Path, env: &[(&str, &str)]) {
    const EVENTS: usize = 5;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(Receiver::start());
    receiver.set_down(true);
    let setup = crate::testkit::server::Setup::new(
        root.join("data"),
        &[
            ("RUST_LOG", "warn"),
            ("TERRACE_RUNNERS", "0"),
            ("TERRACE_NOTIFICATIONS_ALLOW_PRIVATE", "true"),
            ("TERRACE_NOTIFICATIONS_RETRY_BASE", "1s"),
        ],
    )
    .with_env(env);
    setup.cli(&["org", "create", "acme"]);
    let token = setup.cli(&["token", "create", "--org", "acme", "--role", "admin"]);
    let log = root.join("serve.log");
    let client = reqwest::blocking::Client::new();
    let api = |base: &str, method: reqwest::Method, tail: &str, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{base}{NOTIFICATIONS}{tail}"))
            .bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };

    let mut server = setup.serve(&[], &log);
    let (status, created) = api(
        &server.base_url,
        reqwest::Method::POST,
        "",
        Some(json!({"name": "ops", "url": format!("{}/hook", receiver.url), "events": ["*"]})),
    );
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for _ in 0..EVENTS {
        let (status, queued) = api(&server.base_url, reqwest::Method::POST, "/ops/test", None);
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{queued}");
        ids.push(queued["delivery"].as_str().unwrap().to_string());
    }
    // Every delivery has been tried (and refused) at least once before the stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tried: std::collections::HashSet<String> =
            receiver.got().iter().map(Received::id).collect();
        if ids.iter().all(|id| tried.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every delivery was tried\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No chance to finish anything: claimed deliveries wait for their leases to run out.
    server.kill();
    drop(server);
    assert!(receiver.delivered().is_empty());

    receiver.set_down(false);
    let server = setup.serve(&[], &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: std::collections::HashSet<String> =
            receiver.delivered().iter().map(Received::id).collect();
        if ids.iter().all(|id| delivered.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries lost across the restart\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in receiver.delivered() {
        r.assert_signed_with(&secret);
    }
    let (_, log) = api(
        &server.base_url,
        reqwest::Method::GET,
        "/ops/deliveries",
        None,
    );
    let rows = log["data"].as_array().unwrap();
    assert_eq!(rows.len(), EVENTS);
    for row in rows {
        assert_eq!(row["status"], "delivered", "{row}");
        assert!(row["attempts"].as_i64().unwrap() >= 2, "{row}");
    }
    drop(runtime);
}
