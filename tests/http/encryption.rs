//! Encryption at rest, and the operational endpoints.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Backend, RequestBuilder, TestApp, contains, state};

const WS: &str = "secrets";
/// Appears only inside state bodies.
const SECRET: &str = "s3cr3t-Pa55w0rd-7f1c9e";

on_both_databases! {
    stored_objects_never_contain_the_plaintext,
    the_database_never_contains_the_plaintext,
    healthz_is_200,
    readyz_reports_the_database_and_the_blob_store,
    metrics_count_requests_versions_and_lock_conflicts,
    every_response_carries_a_request_id,
}

fn secret_state(serial: i64) -> String {
    json!({
        "version": 4,
        "serial": serial,
        "lineage": "lin",
        "outputs": { "db_password": { "value": SECRET, "type": "string", "sensitive": true } },
        "resources": [{ "mode": "managed", "type": "random_password", "name": "db",
            "instances": [{ "attributes": { "result": SECRET } }] }],
    })
    .to_string()
}

/// Writes the secret through every path that stores a body: Terraform, upload, rollback.
async fn store_secret_everywhere(app: &TestApp) {
    for serial in 1..=2 {
        app.write_state(WS, secret_state(serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
    let upload = RequestBuilder::new("POST", &TestApp::ws_api(WS, "/state-versions"))
        .bearer(&app.admin_token)
        .body(secret_state(3));
    app.send(upload.build())
        .await
        .assert_status(StatusCode::CREATED);
    app.api(
        "POST",
        &TestApp::ws_api(WS, "/state-versions/1/rollback"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::CREATED);
    let got = app.get_state(WS, &app.read_token).await;
    assert!(
        contains(&got.body, SECRET.as_bytes()),
        "the secret must round-trip"
    );
}

async fn stored_objects_never_contain_the_plaintext(app: TestApp) {
    store_secret_everywhere(&app).await;

    let files = app.blob_files();

    assert_eq!(files.len(), 4, "{files:?}");
    for file in files {
        let object = std::fs::read(&file).unwrap();
        assert!(
            object.starts_with(b"TRC2"),
            "{} is not an encrypted object",
            file.display()
        );
        assert!(
            !contains(&object, SECRET.as_bytes()),
            "{} holds the plaintext",
            file.display()
        );
        assert!(
            !contains(&object, b"random_password"),
            "{} holds the plaintext",
            file.display()
        );
    }
}

async fn the_database_never_contains_the_plaintext(app: TestApp) {
    store_secret_everywhere(&app).await;

    match app.backend {
        Backend::Sqlite => {
            let dir = app.sqlite_dir().unwrap();
            let mut seen = 0;
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                seen += 1;
                assert!(
                    !contains(&bytes, SECRET.as_bytes()),
                    "{} holds the plaintext",
                    path.display()
                );
            }
            assert!(seen >= 2, "expected the database file and its WAL");
        }
        Backend::Postgres
        | Backend::PostgresS3
        | Backend::PostgresAzure
        | Backend::PostgresDynamo
        | Backend::PostgresAzureTable => {
            let terrace::infra::db::Db::Postgres(pool) = app.db() else {
                unreachable!()
            };
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            assert!(
                tables.iter().any(|(t,)| t == "state_versions"),
                "{tables:?}"
            );
            for (table,) in tables {
                let sql = format!("SELECT coalesce(string_agg(t::text, ''), '') FROM {table} t");
                let (text,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await
                    .unwrap();
                assert!(!text.contains(SECRET), "table {table} holds the plaintext");
            }
        }
    }
}

async fn healthz_is_200(app: TestApp) {
    let resp = app
        .send(RequestBuilder::new("GET", "/healthz").build())
        .await;

    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["status"], "ok");
}

async fn readyz_reports_the_database_and_the_blob_store(app: TestApp) {
    let resp = app
        .send(RequestBuilder::new("GET", "/readyz").build())
        .await;

    resp.assert_status(StatusCode::OK);
    assert_eq!(resp.json(), json!({ "database": "ok", "blob_store": "ok" }));
}

/// The value of the first sample named `name` whose labels include all of `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let matches = (series == name || series.starts_with(&format!("{name}{{")))
            && labels.iter().all(|l| series.contains(l));
        matches.then(|| value.parse().unwrap())
    })
}

async fn metrics_count_requests_versions_and_lock_conflicts(app: TestApp) {
    for serial in 1..=2 {
        app.write_state(WS, state("lin", serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
    app.write_state(WS, state("lin", 1), None, &app.write_token)
        .await
        .assert_status(StatusCode::CONFLICT);
    app.lock(WS, "holder", &app.write_token).await;
    for _ in 0..2 {
        app.lock(WS, "contender", &app.write_token)
            .await
            .assert_status(StatusCode::LOCKED);
    }

    let resp = app
        .send(RequestBuilder::new("GET", "/metrics").build())
        .await;

    resp.assert_status(StatusCode::OK);
    let text = resp.text();
    assert_eq!(
        sample(&text, "terrace_state_versions_written_total", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "terrace_lock_conflicts_total", &[]),
        Some(2.0),
        "{text}"
    );
    let locks = [
        r#"method="LOCK""#,
        r#"route="/state/{org}/{workspace}""#,
        r#"status="423""#,
    ];
    assert_eq!(
        sample(&text, "terrace_http_requests_total", &locks),
        Some(2.0),
        "{text}"
    );
    let writes = [
        r#"method="POST""#,
        r#"route="/state/{org}/{workspace}""#,
        r#"status="200""#,
    ];
    assert_eq!(
        sample(&text, "terrace_http_requests_total", &writes),
        Some(2.0),
        "{text}"
    );
}

async fn every_response_carries_a_request_id(app: TestApp) {
    let fresh = app.get_state(WS, &app.read_token).await;
    let generated = fresh.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    let request = RequestBuilder::new("GET", "/healthz").header("x-request-id", "trace-42");
    let echoed = app.send(request.build()).await;

    assert_eq!(echoed.headers["x-request-id"], "trace-42");
}
