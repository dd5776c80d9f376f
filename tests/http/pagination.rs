//! Paging by cursor while rows are inserted: every row that existed when paging began is
//! listed exactly once, and no row twice — where offset paging shifts rows onto the next page.

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::Value;

use crate::support::{TestApp, state};

on_both_databases! {
    workspaces_are_listed_once_each_while_others_are_created,
    state_versions_are_listed_once_each_while_more_are_written,
    cursors_are_checked,
}

/// Pages through `first_path` (which ends in query parameters) by `next_cursor`, calling
/// `between` after every page; answers the keys (`field`) of every row, in order.
async fn page_through<F, Fut>(
    app: &TestApp,
    first_path: &str,
    field: &str,
    mut between: F,
) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    let mut path = first_path.to_string();
    for page in 0.. {
        let resp = app.api("GET", &path, &app.read_token, None).await;
        resp.assert_status(StatusCode::OK);
        let body = resp.json();
        for row in body["data"].as_array().unwrap() {
            seen.push(match &row[field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        assert_eq!(
            body["meta"]["next_offset"],
            if page == 0 && !body["meta"]["next_cursor"].is_null() {
                body["meta"]["limit"].clone()
            } else {
                Value::Null
            },
            "a cursor page has no next offset; the first one still has one"
        );
        let Some(cursor) = body["meta"]["next_cursor"].as_str() else {
            break;
        };
        path = format!("{first_path}&cursor={cursor}");
        between(page).await;
        assert!(page < 1000, "paging does not end");
    }
    seen
}

fn assert_each_once(seen: &[String], before: &HashSet<String>) {
    let mut unique = HashSet::new();
    let twice: Vec<&String> = seen.iter().filter(|k| !unique.insert(*k)).collect();
    assert!(twice.is_empty(), "listed twice: {twice:?}");
    let missing: Vec<&String> = before.iter().filter(|k| !unique.contains(*k)).collect();
    assert!(missing.is_empty(), "never listed: {missing:?}");
}

async fn create_workspace(app: &TestApp, name: &str) {
    app.write_state(name, state("l", 1), None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn workspaces_are_listed_once_each_while_others_are_created(app: TestApp) {
    let mut before = HashSet::new();
    for i in 0..40 {
        let name = format!("m-{i:03}");
        create_workspace(&app, &name).await;
        before.insert(name);
    }
    let path = "/api/v1/orgs/acme/workspaces?limit=7";
    // Between pages, new workspaces sort before, among and after the ones already listed:
    // with offsets, each one before the page boundary would push a row onto the next page.
    let inserted = std::cell::Cell::new(0);
    let seen = page_through(&app, path, "name", |page| {
        let app = &app;
        let inserted = &inserted;
        async move {
            for prefix in ["a", "m-0", "m-02", "z"] {
                create_workspace(app, &format!("{prefix}-new-{page}")).await;
                inserted.set(inserted.get() + 1);
            }
        }
    })
    .await;
    assert!(inserted.get() >= 20, "rows were inserted while paging");
    assert_each_once(&seen, &before);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages follow each other in name order");

    // And with a writer running beside the pager rather than between its pages.
    let before: HashSet<String> = page_through(
        &app,
        "/api/v1/orgs/acme/workspaces?limit=1000",
        "name",
        |_| async {},
    )
    .await
    .into_iter()
    .collect();
    let done = std::cell::Cell::new(false);
    let writer = async {
        let mut n = 0;
        while !done.get() {
            create_workspace(&app, &format!("{}-concurrent-{n}", ["b", "n", "y"][n % 3])).await;
            n += 1;
        }
    };
    let pager = async {
        let seen = page_through(&app, "/api/v1/orgs/acme/workspaces?limit=5", "name", |_| {
            tokio::task::yield_now()
        })
        .await;
        done.set(true);
        seen
    };
    let ((), seen) = tokio::join!(writer, pager);
    assert_each_once(&seen, &before);
}

async fn state_versions_are_listed_once_each_while_more_are_written(app: TestApp) {
    let ws = "history";
    for serial in 1..=30 {
        app.write_state(ws, state("lin", serial), None, &app.write_token)
            .await
            .assert_status(StatusCode::OK);
    }
    let before: HashSet<String> = (1..=30).map(|v| v.to_string()).collect();
    let path = TestApp::ws_api(ws, "/state-versions?limit=4");
    // Newest first: every new version lands on the first page, in front of all others.
    let serial = std::cell::Cell::new(30);
    let seen = page_through(&app, &path, "version", |_| {
        let app = &app;
        let serial = &serial;
        async move {
            for _ in 0..2 {
                serial.set(serial.get() + 1);
                app.write_state(ws, state("lin", serial.get()), None, &app.write_token)
                    .await
                    .assert_status(StatusCode::OK);
            }
        }
    })
    .await;
    assert!(serial.get() > 40, "versions were written while paging");
    assert_each_once(&seen, &before);
    assert_eq!(
        seen.len(),
        30,
        "only versions older than the first page follow it"
    );
    let numbers: Vec<i64> = seen.iter().map(|v| v.parse().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] > w[1]),
        "newest first: {numbers:?}"
    );
}

async fn cursors_are_checked(app: TestApp) {
    for ws in ["a", "b", "c"] {
        create_workspace(&app, ws).await;
    }
    let list = "/api/v1/orgs/acme/workspaces";
    let first = app
        .api("GET", &format!("{list}?limit=2"), &app.read_token, None)
        .await
        .json();
    let cursor = first["meta"]["next_cursor"].as_str().unwrap().to_string();
    let last = app
        .api(
            "GET",
            &format!("{list}?limit=2&cursor={cursor}"),
            &app.read_token,
            None,
        )
        .await
        .json();
    assert_eq!(last["data"][0]["name"], "c");
    assert!(
        last["meta"].get("next_cursor").is_none(),
        "the last page has no next cursor"
    );
    assert_eq!(last["meta"]["next_offset"], Value::Null);

    for bad in [
        format!("{list}?cursor=%21%21"),
        format!("{list}?cursor={cursor}&offset=2"),
        format!("{list}?cursor={}", "A".repeat(600)),
        format!(
            "{}?cursor={cursor}",
            TestApp::ws_api("a", "/state-versions")
        ),
        // A list that pages by offset only says so rather than start over.
        format!("/api/v1/orgs/acme/teams?cursor={cursor}"),
    ] {
        let resp = app.api("GET", &bad, &app.admin_token, None).await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        assert!(resp.json()["errors"][0].is_string(), "{}", resp.text());
    }
}
