//! The alert rules and the dashboard against real Prometheus tools: `promtool check rules` and
//! the rule unit tests, `promtool check metrics` on a live `/metrics`, and a real Prometheus
//! scraping a real `terrace serve` (after a Terraform apply) with the alert rules loaded,
//! answering every query of the Grafana dashboard and the rules over series Terrace exports.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use super::{free_port, repo_root, require_tool, run_ok, show};
use crate::harness::{Role, Terrace, Workdir};

const RULES: &str = "deploy/prometheus/terrace-alerts.yaml";
const RULE_TESTS: &str = "deploy/prometheus/terrace-alerts.test.yaml";
const DASHBOARD: &str = "deploy/grafana/terrace.json";

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = require_tool!("TERRACE_PROMTOOL", "promtool");
    let checked = run_ok(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(repo_root().join(RULES)),
    );
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(
        text.contains("SUCCESS: 7 rules found"),
        "{}",
        show(&checked)
    );
    let tested = run_ok(
        Command::new(&promtool)
            .current_dir(repo_root().join("deploy/prometheus"))
            .args(["test", "rules"])
            .arg(repo_root().join(RULE_TESTS)),
    );
    assert!(
        String::from_utf8_lossy(&tested.stdout).contains("SUCCESS"),
        "{}",
        show(&tested)
    );
}

/// A Prometheus server on a loopback port with its own storage, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second as job `terrace`, with the alert rules.
    fn start(binary: &std::path::Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: terrace\n    static_configs:\n      - targets: ['{target}']\n",
            rules = repo_root().join(RULES).display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::File::create(&config_path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    fn query_url(&self, query: &str) -> url::Url {
        url::Url::parse_with_params(&format!("{}/api/v1/query", self.url), [("query", query)])
            .expect("a query URL")
    }

    /// `/api/v1/query` for `query`; panics unless Prometheus answers `success`.
    fn query(&self, client: &Client, query: &str) -> Vec<Value> {
        let answer: Value = client
            .get(self.query_url(query))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("query {query}: {e}\n{}", self.log()));
        assert_eq!(answer["status"], "success", "{query}: {answer:#}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `query` until it has a result, for up to a minute.
    fn wait_for(&self, client: &Client, query: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = client
                .get(self.query_url(query))
                .send()
                .and_then(|r| r.json::<Value>())
                && let Some(result) = answer["data"]["result"].as_array()
                && !result.is_empty()
            {
                return result.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no result for {query} within a minute\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Every `expr` in the dashboard's panels, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join(DASHBOARD)).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$job", "terrace")
                .replace("$instance", ".*");
            queries.push((panel["title"].as_str().unwrap_or("").to_owned(), expr));
        }
    }
    assert!(queries.len() >= 15, "{queries:#?}");
    queries
}

/// The `terrace_…` metric names `text` uses, without the histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("terrace_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = name.strip_suffix("_bucket").unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn prometheus_scrapes_terrace_and_answers_the_dashboard_and_alert_queries() {
    let promtool = require_tool!("TERRACE_PROMTOOL", "promtool");
    let prometheus_bin = require_tool!("TERRACE_PROMETHEUS", "prometheus");
    require_terraform!();
    let server = Terrace::start();
    // A real apply, so state writes, cache lookups and request latencies have samples.
    let dir = Workdir::new(&server, "metrics", Role::Write);
    dir.terraform(&["init"]).assert_success();
    dir.terraform(&["apply", "-auto-approve"]).assert_success();
    dir.terraform(&["state", "pull"]).assert_success();

    // The classic text format passes promtool's checks (naming, help, types)...
    let client = Client::new();
    let plain = client
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .expect("GET /metrics");
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let exposition = plain.text().expect("metrics text");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool check metrics");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .expect("feed promtool");
    let checked = check.wait_with_output().expect("promtool check metrics");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "{}\n{exposition}",
        show(&checked)
    );
    for line in [
        "terrace_state_versions_written_total 1",
        "# TYPE terrace_state_write_duration_seconds histogram",
        "terrace_state_write_duration_seconds_count 1",
    ] {
        assert!(
            exposition.lines().any(|l| l == line),
            "no {line:?} in\n{exposition}"
        );
    }
    // ...and scrapers that ask for OpenMetrics get it.
    let open = client
        .get(format!("{}/metrics", server.base_url()))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .expect("GET /metrics");
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    assert!(open.text().unwrap().ends_with("# EOF\n"));

    let target = server.base_url().trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&prometheus_bin, &target);
    let up = prometheus.wait_for(&client, r#"up{job="terrace"} == 1"#);
    assert_eq!(up[0]["metric"]["instance"], target.as_str(), "{up:#?}");
    let written = prometheus.wait_for(&client, "terrace_state_versions_written_total >= 1");
    assert_eq!(written.len(), 1, "{written:#?}");
    let build = prometheus.wait_for(&client, "terrace_build_info");
    let revision = build[0]["metric"]["revision"].as_str().unwrap().to_owned();
    let version = run_ok(Command::new(env!("CARGO_BIN_EXE_terrace")).arg("--version"));
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains(&revision), "{version} vs {build:#?}");

    // The alert rules are loaded and evaluate without errors against live series.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules: Value = client
            .get(format!("{}/api/v1/rules", prometheus.url))
            .send()
            .and_then(|r| r.json())
            .expect("GET /api/v1/rules");
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = all.len() == 7
            && all
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z");
        if evaluated {
            // Nothing is wrong with this server, so nothing fires.
            assert!(all.iter().all(|r| r["state"] == "inactive"), "{rules:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all healthy: {rules:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every metric the dashboard and the rules name is one Terrace exports, and every
    // dashboard query is valid PromQL that Prometheus answers.
    let exported = metric_names(&exposition);
    let rules_text = std::fs::read_to_string(repo_root().join(RULES)).unwrap();
    let queries = dashboard_queries();
    let mut referenced = metric_names(&rules_text);
    for (_, expr) in &queries {
        referenced.extend(metric_names(expr));
    }
    // Families with a series per budget appear once an org has a budget (tests/http/costs.rs
    // checks the series); this server has none, so they must at least be registered.
    let registered = std::fs::read_to_string(repo_root().join("src/infra/metrics.rs")).unwrap();
    let per_budget = ["terrace_budget_spend_ratio"];
    for name in per_budget {
        let short = name.trim_start_matches("terrace_");
        assert!(
            registered.contains(&format!("\"{short}\"")),
            "{name} is not registered"
        );
    }
    let missing: Vec<&String> = referenced
        .difference(&exported)
        .filter(|name| !per_budget.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\n{exposition}"
    );
    for (_, expr) in &queries {
        prometheus.query(&client, expr);
    }
    // The panels that read state writes and caches show data after the apply.
    for (title, expr) in &queries {
        if title == "State versions written" || title == "Versions running" {
            let result = prometheus.wait_for(&client, expr);
            assert!(!result.is_empty(), "{title}: {expr}");
        }
    }
}

#[test]
fn dashboard_panels_are_laid_out_without_overlap_on_the_data_source_variable() {
    let text = std::fs::read_to_string(repo_root().join(DASHBOARD)).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["uid"].is_string() && dashboard["title"] == "Terrace");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_i64().expect("an id")),
            "{panel:#}"
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_i64().expect("gridPos"));
        assert!(x >= 0 && w > 0 && x + w <= 24, "{panel:#}");
        for row in y..y + h {
            for column in x..x + w {
                assert!(
                    cells.insert((row, column)),
                    "overlap at {row},{column}: {panel:#}"
                );
            }
        }
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel:#}");
            assert!(!panel["targets"].as_array().expect("targets").is_empty());
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| v["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
}
