//! Costs in process (real router, real database): estimates of states and plans with the
//! sample catalogue against hand-computed figures, catalogue imports (an AWS offer file in
//! CSV and JSON, an OpenInfraQuote prices.csv), a FOCUS export attributed to workspaces by
//! resource id and tag (re-import replaces, a malformed line keeps nothing), budgets crossing
//! 50/80/100 % once each, the budget gate stopping a run until an admin overrides, and
//! reports in JSON and CSV.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use terrace::identity::auth::Role;

use crate::support::{RequestBuilder, Resp, TestApp, create_token};

on_both_databases! {
    costs_states_and_plans_are_estimated_with_the_sample_catalogue,
    costs_price_files_are_imported_as_new_catalogue_versions,
    costs_focus_exports_are_attributed_replaced_and_refused_whole,
    costs_budgets_cross_each_threshold_once_per_period,
    costs_the_budget_gate_stops_a_run_until_an_admin_overrides,
    costs_a_blueprint_card_is_estimated_with_its_defaults,
}

const AWS_CSV: &str = include_str!("costs_fixtures/aws-ec2-offer.csv");
const AWS_JSON: &str = include_str!("costs_fixtures/aws-ec2-offer.json");
const OIQ_CSV: &str = include_str!("costs_fixtures/oiq-prices.csv");
const FOCUS: &str = include_str!("costs_fixtures/focus-2025-05.csv");
const FOCUS_RESTATED: &str = include_str!("costs_fixtures/focus-2025-05-restated.csv");
const PLAN: &str = include_str!("costs_fixtures/plan.json");

fn close(actual: &Value, expected: f64) -> bool {
    actual.as_f64().is_some_and(|a| (a - expected).abs() < 1e-6)
}

macro_rules! assert_close {
    ($actual:expr, $expected:expr, $context:expr) => {
        assert!(
            close(&$actual, $expected),
            "{} is {}, expected {}; {}",
            stringify!($actual),
            $actual,
            $expected,
            $context
        );
    };
}

/// A Terraform state (format 4) of `resources`: (type, name, attributes).
fn tfstate(serial: i64, resources: &[(&str, &str, Value)]) -> String {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(ty, name, attrs)| {
            json!({"mode": "managed", "type": ty, "name": name,
                   "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                   "instances": [{"schema_version": 0, "attributes": attrs}]})
        })
        .collect();
    json!({"version": 4, "terraform_version": "1.0.3", "serial": serial,
           "lineage": "3f1c0e2a-cost-test", "outputs": {}, "resources": resources})
    .to_string()
}

/// The shop workspace: an instance, a volume, a database, a NAT gateway, a VPC (free) and a
/// type no rule knows.
fn shop_state(serial: i64) -> String {
    tfstate(
        serial,
        &[
            (
                "aws_instance",
                "web",
                json!({"id": "i-0a1b2c3d4e5f00001", "instance_type": "t3.medium",
                       "arn": "arn:aws:ec2:us-east-1:123456789012:instance/i-0a1b2c3d4e5f00001",
                       "tags": {"team": "shop"}}),
            ),
            (
                "aws_ebs_volume",
                "data",
                json!({"id": "vol-0a1b2c3d4e5f00002", "size": 100, "type": "gp3",
                       "availability_zone": "us-east-1a"}),
            ),
            (
                "aws_db_instance",
                "db",
                json!({"id": "shop-db", "arn": "arn:aws:rds:us-east-1:123456789012:db:shop-db",
                       "instance_class": "db.t3.micro", "engine": "postgres",
                       "multi_az": false, "allocated_storage": 20, "storage_type": "gp2"}),
            ),
            (
                "aws_nat_gateway",
                "nat",
                json!({"id": "nat-0a1b2c3d4e5f00003", "subnet_id": "subnet-1"}),
            ),
            (
                "aws_vpc",
                "main",
                json!({"id": "vpc-1", "cidr_block": "10.0.0.0/16"}),
            ),
            ("aws_mystery_box", "x", json!({"id": "box-1"})),
        ],
    )
}

fn blog_state(serial: i64) -> String {
    tfstate(
        serial,
        &[(
            "aws_instance",
            "blog",
            json!({"id": "i-0b000000000000001", "instance_type": "t3.micro",
                   "availability_zone": "us-east-1c"}),
        )],
    )
}

async fn put_state(app: &TestApp, ws: &str, body: String) {
    app.write_state(ws, body, None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

fn multipart(filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "terrace-test-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(app: &TestApp, path: &str, token: &str, filename: &str, bytes: &[u8]) -> Resp {
    let (content_type, body) = multipart(filename, bytes);
    app.send(
        RequestBuilder::new("POST", path)
            .bearer(token)
            .header("content-type", &content_type)
            .body(body)
            .build(),
    )
    .await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let resp = app.api("GET", path, &app.read_token, None).await;
    resp.assert_status(StatusCode::OK);
    resp.json()
}

/// Hand-computed from the sample catalogue (us-east-1, 730 hours a month).
const SHOP_MONTHLY: f64 = 0.0416 * 730.0 // t3.medium
    + 0.08 * 100.0 // 100 GB gp3
    + 0.018 * 730.0 + 0.115 * 20.0 // db.t3.micro PostgreSQL Single-AZ, 20 GB
    + 0.045 * 730.0 + 0.045 * 10.0; // NAT gateway hours, 10 GB processed (usage default)

/// A state above the estimate cap is recorded as `too_large`, without being parsed: an
/// estimate takes several times a state's size in memory.
#[tokio::test]
async fn costs_a_state_too_large_to_estimate_is_recorded_as_such() {
    let Some(app) = TestApp::with_max_body_size(crate::support::Backend::Sqlite, 40 << 20).await
    else {
        return;
    };
    let mut doc: Value = serde_json::from_str(&shop_state(1)).unwrap();
    doc["outputs"]["padding"] = json!({"value": "x".repeat(33 << 20), "type": "string"});
    put_state(&app, "huge", doc.to_string()).await;
    let history = get(&app, "/api/v1/orgs/acme/workspaces/huge/cost/history").await;
    assert_eq!(history["data"][0]["status"], "too_large", "{history}");
    assert_eq!(history["data"][0]["monthly"], 0.0, "{history}");
}

async fn costs_states_and_plans_are_estimated_with_the_sample_catalogue(app: TestApp) {
    put_state(&app, "shop", shop_state(1)).await;
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/shop/cost").await;
    assert_eq!(cost["catalogue"]["sample"], true, "{cost}");
    assert_eq!(cost["catalogue"]["published"], "2025-01-01", "{cost}");
    assert!(
        cost["catalogue"]["label"]
            .as_str()
            .unwrap()
            .contains("Sample")
    );
    assert_eq!(cost["currency"], "USD");
    assert_close!(cost["monthly"], SHOP_MONTHLY, cost);
    assert_close!(cost["hourly"], SHOP_MONTHLY / 730.0, cost);
    let resource = |address: &str| {
        cost["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == address)
            .cloned()
            .unwrap_or_else(|| panic!("{address} in {cost}"))
    };
    assert_close!(
        resource("aws_instance.web")["monthly"],
        0.0416 * 730.0,
        cost
    );
    let db = resource("aws_db_instance.db");
    assert_eq!(db["components"].as_array().unwrap().len(), 2, "{db}");
    assert_close!(db["components"][1]["monthly"], 0.115 * 20.0, db);
    assert_eq!(
        cost["unpriced"],
        json!([{"address": "aws_mystery_box.x", "type": "aws_mystery_box",
                "reason": "no pricing rule for aws_mystery_box"}])
    );
    assert_eq!(cost["free"], 1);

    // Workspace usage settings change the usage-priced component.
    app.api(
        "PUT",
        "/api/v1/orgs/acme/workspaces/shop/cost/settings",
        &app.write_token,
        Some(json!({"usage": {"aws_nat_gateway.monthly_data_processed_gb": 1000}})),
    )
    .await
    .assert_status(StatusCode::OK);
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/shop/cost").await;
    assert_close!(cost["monthly"], SHOP_MONTHLY - 0.45 + 45.0, cost);

    // The history keeps one run-rate per state version.
    put_state(&app, "shop", blog_state(2)).await;
    let history = get(&app, "/api/v1/orgs/acme/workspaces/shop/cost/history").await;
    let entries = history["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{history}");
    assert_close!(entries[0]["monthly"], 0.0104 * 730.0, history);
    assert_close!(entries[1]["monthly"], SHOP_MONTHLY - 0.45 + 45.0, history);

    // A plan: provider region eu-west-1; one instance deleted, four resources created.
    let plan: Value = serde_json::from_str(PLAN).unwrap();
    let resp = app
        .api(
            "POST",
            "/api/v1/orgs/acme/cost-estimates",
            &app.read_token,
            Some(plan),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let e = resp.json();
    let after =
        0.0456 * 730.0 + 0.088 * 100.0 + 0.02 * 730.0 + 0.127 * 20.0 + 0.048 * 730.0 + 0.048 * 10.0;
    let before = 0.0114 * 730.0;
    assert_close!(e["before"]["monthly"], before, e);
    assert_close!(e["after"]["monthly"], after, e);
    assert_close!(e["delta"]["monthly"], after - before, e);
    let old = e["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "aws_instance.old")
        .unwrap()
        .clone();
    assert_eq!(old["after"], Value::Null, "{old}");
    assert_close!(old["delta"], -before, old);
    assert_eq!(e["unpriced"][0]["address"], "aws_mystery_box.x", "{e}");
    // Not a plan: refused, naming why.
    let resp = app
        .api(
            "POST",
            "/api/v1/orgs/acme/cost-estimates",
            &app.read_token,
            Some(json!({"x": 1})),
        )
        .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    // Another org's caller sees nothing.
    app.api(
        "GET",
        "/api/v1/orgs/acme/workspaces/shop/cost",
        &app.other_token,
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn costs_price_files_are_imported_as_new_catalogue_versions(app: TestApp) {
    put_state(&app, "blog", blog_state(1)).await;
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/blog/cost").await;
    assert_close!(cost["monthly"], 0.0104 * 730.0, cost);

    // Writers may not import prices.
    upload(
        &app,
        "/api/v1/orgs/acme/prices?format=aws-csv",
        &app.write_token,
        "ec2.csv",
        AWS_CSV.as_bytes(),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    let resp = upload(
        &app,
        "/api/v1/orgs/acme/prices?format=aws-csv",
        &app.admin_token,
        "ec2.csv",
        AWS_CSV.as_bytes(),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let v1 = resp.json();
    // On-demand rows only: Linux and Windows t3.micro, gp3.
    assert_eq!(v1["prices"], 3, "{v1}");
    assert_eq!(v1["published"], "2025-06-01T18:03:40Z");
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/blog/cost").await;
    assert_eq!(cost["catalogue"]["version"], v1["version"], "{cost}");
    assert_eq!(cost["catalogue"]["sample"], false);
    assert_close!(cost["monthly"], 0.02 * 730.0, cost);

    let resp = upload(
        &app,
        "/api/v1/orgs/acme/prices?format=aws-json",
        &app.admin_token,
        "ec2.json",
        AWS_JSON.as_bytes(),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let v2 = resp.json();
    assert_eq!(v2["prices"], 2, "{v2}");
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/blog/cost").await;
    assert_eq!(cost["catalogue"]["version"], v2["version"]);
    assert_close!(cost["monthly"], 0.025 * 730.0, cost);

    // OpenInfraQuote's prices.csv: priced through its own match sets.
    let resp = upload(
        &app,
        "/api/v1/orgs/acme/prices?format=oiq",
        &app.admin_token,
        "prices.csv",
        OIQ_CSV.as_bytes(),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    assert_eq!(resp.json()["prices"], 3);
    put_state(
        &app,
        "big",
        tfstate(
            1,
            &[(
                "aws_instance",
                "big",
                json!({"id": "i-9", "instance_type": "m5.large"}),
            )],
        ),
    )
    .await;
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/big/cost").await;
    assert_close!(cost["monthly"], 0.5 * 730.0, cost);
    // The blog's t3.micro has no price in this catalogue: unpriced, not zero.
    let cost = get(&app, "/api/v1/orgs/acme/workspaces/blog/cost").await;
    assert_close!(cost["monthly"], 0.0, cost);
    assert_eq!(
        cost["unpriced"][0]["address"], "aws_instance.blog",
        "{cost}"
    );

    // A malformed file: refused naming its line, and no new version.
    let bad = AWS_CSV.replace("\"0.0200000000\"", "\"two cents\"");
    let resp = upload(
        &app,
        "/api/v1/orgs/acme/prices?format=aws-csv",
        &app.admin_token,
        "bad.csv",
        bad.as_bytes(),
    )
    .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().contains("line 7"), "{}", resp.text());
    let versions = get(&app, "/api/v1/orgs/acme/prices").await;
    assert_eq!(versions["data"].as_array().unwrap().len(), 3, "{versions}");
    assert_eq!(versions["data"][0]["format"], "oiq");
}

async fn import_focus(app: &TestApp, name: &str, bytes: &[u8]) -> Resp {
    upload(
        app,
        "/api/v1/orgs/acme/costs/imports",
        &app.admin_token,
        name,
        bytes,
    )
    .await
}

fn rows_by_group(report: &Value) -> std::collections::BTreeMap<String, Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

async fn costs_focus_exports_are_attributed_replaced_and_refused_whole(app: TestApp) {
    put_state(&app, "shop", shop_state(1)).await;
    put_state(&app, "blog", blog_state(1)).await;
    let resp = import_focus(&app, "focus-2025-05.csv", FOCUS.as_bytes()).await;
    resp.assert_status(StatusCode::CREATED);
    let import = resp.json();
    assert_eq!(import["lines"], 11, "{import}");
    assert_eq!(
        import["periods"],
        json!([{"source": "AWS/123456789012", "period": "2025-05"}])
    );

    let path =
        "/api/v1/orgs/acme/costs/report?from=2025-05&to=2025-05&group_by=workspace&basis=actual";
    let report = get(&app, path).await;
    let rows = rows_by_group(&report);
    // shop: instance (by ARN) 0.9984 + 0.9984 + 0.70 (savings plan) - 1.00 (refund), volume
    // 8.00, database 13.14, NAT 1.08, credit by tag -5.00.
    assert_close!(
        rows["shop"]["actual"],
        0.9984 + 0.9984 + 0.70 - 1.0 + 8.0 + 13.14 + 1.08 - 5.0,
        report
    );
    // blog: instance by id 0.2496, bucket by the terrace-workspace tag 2.50.
    assert_close!(rows["blog"]["actual"], 0.2496 + 2.5, report);
    assert_close!(rows["(unattributed)"]["actual"], 3.75, report);
    assert_eq!(rows.len(), 3, "{report}");
    // BilledCost instead: the savings plan line counts in full.
    let billed = get(&app, &format!("{path}&measure=BilledCost")).await;
    assert_close!(
        rows_by_group(&billed)["shop"]["actual"],
        0.9984 * 3.0 - 1.0 + 8.0 + 13.14 + 1.08 - 5.0,
        billed
    );
    // By tag.
    let by_team = get(
        &app,
        "/api/v1/orgs/acme/costs/report?from=2025-05&to=2025-05&group_by=tag:team&basis=actual",
    )
    .await;
    assert_close!(
        rows_by_group(&by_team)["shop"]["actual"],
        0.9984 * 2.0 + 0.70 - 1.0 + 8.0,
        by_team
    );

    // CSV says the same.
    let resp = app
        .send(
            RequestBuilder::new("GET", path)
                .bearer(&app.read_token)
                .header("accept", "text/csv")
                .build(),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let csv = resp.text();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0], "month,workspace,estimate,actual,currency,budget_status",
        "{csv}"
    );
    assert!(
        lines.contains(&"2025-05,(unattributed),,3.75,USD,"),
        "{csv}"
    );
    assert!(lines.contains(&"2025-05,blog,,2.7496,USD,"), "{csv}");
    assert!(lines.contains(&"2025-05,shop,,18.9168,USD,"), "{csv}");

    // A restated export of the same period and source replaces the first.
    import_focus(
        &app,
        "focus-2025-05-restated.csv",
        FOCUS_RESTATED.as_bytes(),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let report = get(&app, path).await;
    let rows = rows_by_group(&report);
    assert_close!(rows["blog"]["actual"], 0.4992 + 2.5, report);
    assert!(!rows.contains_key("(unattributed)"), "{report}");

    // A malformed line: named, and nothing of that import is kept.
    let lines: Vec<&str> = FOCUS.lines().collect();
    let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    bad[4] = bad[4].replace(",8.00,8.00,8.00,8.00,", ",8.00,8.00,eight,8.00,");
    let resp = import_focus(&app, "broken.csv", bad.join("\n").as_bytes()).await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().contains("line 5"), "{}", resp.text());
    assert!(resp.text().contains("BilledCost"), "{}", resp.text());
    let after = get(&app, path).await;
    assert_eq!(after["rows"], report["rows"]);
    let imports = get(&app, "/api/v1/orgs/acme/costs/imports").await;
    assert_eq!(imports["data"][0]["status"], "failed", "{imports}");

    // gzip is read as such; the same data again changes nothing.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, FOCUS_RESTATED.as_bytes()).unwrap();
    import_focus(&app, "focus.csv.gz", &gz.finish().unwrap())
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(get(&app, path).await["rows"], report["rows"]);
}

/// A FOCUS export for the shop workspace's instance in `period` costing `amount`.
fn focus_for(period: &str, amount: f64) -> String {
    let header = FOCUS.lines().next().unwrap();
    format!(
        "{header}\n123456789012,shop-prod,USD,{period}-01T00:00:00Z,,{period}-02T00:00:00Z,,Usage,,x,AWS,AWS,AWS,us-east-1,i-0a1b2c3d4e5f00001,,,,{},,,,,{amount},{amount},{amount},{amount},\n",
        "Amazon Elastic Compute Cloud"
    )
}

async fn costs_budgets_cross_each_threshold_once_per_period(app: TestApp) {
    put_state(&app, "shop", shop_state(1)).await;
    let resp = app
        .api(
            "POST",
            "/api/v1/orgs/acme/budgets",
            &app.admin_token,
            Some(
                json!({"name": "shop-monthly", "scope": "workspace:sho*", "amount": 100,
                        "currency": "USD", "period": "monthly", "thresholds": [50, 80, 100],
                        "basis": "actual"}),
            ),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    // Bad budgets are refused, each problem named.
    let resp = app
        .api(
            "POST",
            "/api/v1/orgs/acme/budgets",
            &app.admin_token,
            Some(json!({"name": "x", "scope": "planet:mars", "amount": -1, "basis": "hope"})),
        )
        .await;
    resp.assert_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.json()["errors"].as_array().unwrap().len(),
        3,
        "{}",
        resp.text()
    );

    let fired = |b: &Value| -> Vec<(String, f64)> {
        b["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["period"].as_str().unwrap().to_string(),
                    a["threshold"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let p = "2025-05".to_string();
    for (amount, expected) in [
        (30.0, vec![]),
        (55.0, vec![(p.clone(), 50.0)]),
        (60.0, vec![(p.clone(), 50.0)]),
        (85.0, vec![(p.clone(), 50.0), (p.clone(), 80.0)]),
        (40.0, vec![(p.clone(), 50.0), (p.clone(), 80.0)]),
        (
            120.0,
            vec![(p.clone(), 50.0), (p.clone(), 80.0), (p.clone(), 100.0)],
        ),
        (
            130.0,
            vec![(p.clone(), 50.0), (p.clone(), 80.0), (p.clone(), 100.0)],
        ),
    ] {
        import_focus(&app, "focus.csv", focus_for("2025-05", amount).as_bytes())
            .await
            .assert_status(StatusCode::CREATED);
        let b = get(&app, "/api/v1/orgs/acme/budgets/shop-monthly").await;
        assert_eq!(fired(&b), expected, "after importing {amount}: {b}");
    }
    // Another period fires on its own.
    import_focus(&app, "focus.csv", focus_for("2025-06", 90.0).as_bytes())
        .await
        .assert_status(StatusCode::CREATED);
    let b = get(&app, "/api/v1/orgs/acme/budgets/shop-monthly").await;
    assert_eq!(fired(&b).len(), 5, "{b}");

    // The report shows the budget's standing beside the workspace.
    let report = get(
        &app,
        "/api/v1/orgs/acme/costs/report?from=2025-05&to=2025-06&group_by=workspace&basis=actual",
    )
    .await;
    let statuses: Vec<(&str, &str)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["month"].as_str().unwrap(),
                r["budget_status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("2025-05", "shop-monthly:over"),
            ("2025-06", "shop-monthly:warning")
        ],
        "{report}"
    );
    // A forecast budget of this month, and its gauge.
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    app.api(
        "POST",
        "/api/v1/orgs/acme/budgets",
        &app.admin_token,
        Some(json!({"name": "forecast", "scope": "org", "amount": 1000, "basis": "forecast"})),
    )
    .await
    .assert_status(StatusCode::CREATED);
    import_focus(&app, "now.csv", focus_for(&month, 10.0).as_bytes())
        .await
        .assert_status(StatusCode::CREATED);
    let b = get(&app, "/api/v1/orgs/acme/budgets/forecast").await;
    // Charges up to day 2: 10 so far, extrapolated to the whole month.
    let days = b["current"]["spend"].as_f64().unwrap() / 5.0;
    assert!((28.0..=31.0).contains(&days), "{b}");
    let metrics = app
        .send(RequestBuilder::new("GET", "/metrics").build())
        .await
        .text();
    assert!(
        metrics.contains(
            "terrace_budget_spend_ratio{org=\"acme\",budget=\"forecast\",basis=\"forecast\"}"
        ),
        "{metrics}"
    );
}

/// Publishes `main.tf` as module `acme/NAME/null` 1.0.0 and its published blueprint `NAME`.
async fn blueprint_of(app: &TestApp, name: &str, text: &str) {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "main.tf", text.as_bytes())
        .unwrap();
    let archive = tar.into_inner().unwrap().finish().unwrap();
    app.send(
        RequestBuilder::new("PUT", &format!("/api/v1/modules/acme/{name}/null/1.0.0"))
            .bearer(&app.write_token)
            .body(archive)
            .build(),
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.api(
        "POST",
        "/api/v1/orgs/acme/blueprints",
        &app.admin_token,
        Some(json!({"name": name, "module": format!("acme/{name}/null"), "status": "published"})),
    )
    .await
    .assert_status(StatusCode::CREATED);
}

async fn costs_a_blueprint_card_is_estimated_with_its_defaults(app: TestApp) {
    let text = r#"
variable "instance_type" {
  type    = string
  default = "t3.medium"
}

variable "subnet" {
  type = string
}

resource "aws_instance" "web" {
  ami           = "ami-1"
  instance_type = var.instance_type
}

resource "aws_ebs_volume" "data" {
  availability_zone = "us-east-1a"
  size              = 100
  type              = "gp3"
}

resource "aws_s3_bucket" "assets" {
  bucket = "assets"
}
"#;
    blueprint_of(&app, "shop", text).await;
    let cost = get(&app, "/api/v1/orgs/acme/blueprints/shop/cost").await;
    assert_eq!(cost["version"], "1.0.0", "{cost}");
    assert_close!(cost["monthly"], 0.0416 * 730.0 + 0.08 * 100.0, cost);
    assert_eq!(
        cost["unpriced"][0]["address"], "aws_s3_bucket.assets",
        "{cost}"
    );
    app.api(
        "GET",
        "/api/v1/orgs/acme/blueprints/shop/cost",
        &app.other_token,
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn costs_the_budget_gate_stops_a_run_until_an_admin_overrides(app: TestApp) {
    // A blueprint and a deployment of it, as the deployments tests make them.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let text = "variable \"env\" {\n  type = string\n}\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "main.tf", text.as_bytes())
        .unwrap();
    let archive = tar.into_inner().unwrap().finish().unwrap();
    app.send(
        RequestBuilder::new("PUT", "/api/v1/modules/acme/web/null/1.0.0")
            .bearer(&app.write_token)
            .body(archive)
            .build(),
    )
    .await
    .assert_status(StatusCode::CREATED);
    app.api(
        "POST",
        "/api/v1/orgs/acme/blueprints",
        &app.admin_token,
        Some(json!({"name": "web", "module": "acme/web/null", "status": "published", "auto_apply": true})),
    )
    .await
    .assert_status(StatusCode::CREATED);
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
    let run_id = resp.json()["current_run"]["id"].as_i64().unwrap();
    let runner = create_token(app.db(), "acme", "runner", Role::Runner, None).await;
    let claim = app
        .api(
            "POST",
            "/api/v1/runner/claim",
            &runner,
            Some(json!({"runner": "hand", "wait_ms": 0})),
        )
        .await;
    claim.assert_status(StatusCode::OK);
    let claim = claim.json();
    // The plan creates a t3.medium: 30.368 a month, over the 20 of the budget.
    let plan = json!({"resource_changes": [{"address": "aws_instance.web", "mode": "managed",
        "type": "aws_instance", "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": ["create"], "before": null,
                   "after": {"instance_type": "t3.medium"}}}]});
    let finish = json!({"status": "planned", "has_changes": true, "plan_json": plan,
        "plan_file": base64::engine::general_purpose::STANDARD.encode(b"saved plan")});
    app.send(
        RequestBuilder::new("POST", &format!("/api/v1/runner/runs/{run_id}/finish"))
            .bearer(&runner)
            .header("terrace-lease", claim["lease"].as_str().unwrap())
            .header("content-type", "application/json")
            .body(finish.to_string())
            .build(),
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    let run_path = format!("/api/v1/orgs/acme/runs/{run_id}");
    let run = get(&app, &run_path).await;
    assert_eq!(run["status"], "policy_override", "{run}");
    assert!(
        run["reason"].as_str().unwrap().contains("web-estimate"),
        "{run}"
    );
    // The estimate is kept on the run.
    let cost = get(&app, &format!("{run_path}/cost")).await;
    assert_close!(cost["delta"]["monthly"], 0.0416 * 730.0, cost);
    // Auto-apply did not pass the gate: nothing to claim; applying is refused.
    let nothing = app
        .api(
            "POST",
            "/api/v1/runner/claim",
            &runner,
            Some(json!({"runner": "hand", "wait_ms": 0})),
        )
        .await;
    assert_eq!(nothing.status, StatusCode::NO_CONTENT, "{}", nothing.text());
    app.api("POST", &format!("{run_path}/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::CONFLICT);
    // Only an admin overrides.
    app.api(
        "POST",
        &format!("{run_path}/override"),
        &app.write_token,
        None,
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    let resp = app
        .api(
            "POST",
            &format!("{run_path}/override"),
            &app.admin_token,
            None,
        )
        .await;
    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["status"], "planned", "{}", resp.text());
    app.api("POST", &format!("{run_path}/apply"), &app.write_token, None)
        .await
        .assert_status(StatusCode::OK);
    let apply = app
        .api(
            "POST",
            "/api/v1/runner/claim",
            &runner,
            Some(json!({"runner": "hand", "wait_ms": 0})),
        )
        .await;
    apply.assert_status(StatusCode::OK);
    assert_eq!(apply.json()["phase"], "apply");
}
