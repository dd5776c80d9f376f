//! Caches across replicas on PostgreSQL: a change made through one replica reaches the others'
//! caches at once (LISTEN/NOTIFY), long before the TTL, and a replica that lost its listener
//! connection serves nothing stale once it is back.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use terrace::infra::db::Db;

use crate::module_registry::publish;
use crate::support::{Backend, ORG, RequestBuilder, Resp, TestApp};

/// Far below the 60 s TTL: only an announced invalidation explains a change seen this fast.
const PROPAGATION: Duration = Duration::from_secs(3);

/// Two replicas on one PostgreSQL database, each with its listener connected.
async fn two_replicas() -> Option<(TestApp, TestApp)> {
    let a = TestApp::new(Backend::Postgres).await?;
    let b = a.replica();
    for app in [&a, &b] {
        let listener = terrace::infra::cache::listener(&app.state.db, app.state.caches.clone());
        tokio::spawn(listener.expect("PostgreSQL has a listener"));
    }
    wait_until("listeners connected", || async {
        a.state.caches.live() && b.state.caches.live()
    })
    .await;
    Some((a, b))
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < PROPAGATION,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state_status(app: &TestApp, token: &str) -> StatusCode {
    app.get_state("cached", token).await.status
}

/// Revokes `token` in the database without telling any replica.
async fn revoke_behind_their_backs(app: &TestApp, token: &str) {
    let Db::Postgres(pool) = app.db() else {
        unreachable!("replica tests run on PostgreSQL")
    };
    sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE token_hash = $1")
        .bind(terrace::identity::auth::token::hash(token))
        .execute(pool)
        .await
        .unwrap();
}

async fn new_token(app: &TestApp, name: &str) -> (String, i64) {
    let resp = app
        .api(
            "POST",
            &format!("/api/v1/orgs/{ORG}/tokens"),
            &app.admin_token,
            Some(json!({ "name": name, "role": "read" })),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    let body = resp.json();
    (
        body["token"].as_str().unwrap().to_string(),
        body["id"].as_i64().unwrap(),
    )
}

/// A token B has cached, then revoked in the database without telling any replica. B still
/// accepts it: proof that B answers from its cache.
async fn cached_on_b_then_revoked_quietly(a: &TestApp, b: &TestApp) -> String {
    let (token, _) = new_token(a, "cached").await;
    assert_ne!(state_status(b, &token).await, StatusCode::UNAUTHORIZED);
    revoke_behind_their_backs(a, &token).await;
    assert_ne!(state_status(b, &token).await, StatusCode::UNAUTHORIZED);
    token
}

#[tokio::test]
async fn a_token_change_on_one_replica_reaches_the_others_cache_at_once() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let token = cached_on_b_then_revoked_quietly(&a, &b).await;

    // Any token change made through A drops every cached token on B.
    let (_, other_id) = new_token(&a, "other").await;
    a.api(
        "DELETE",
        &format!("/api/v1/orgs/{ORG}/tokens/{other_id}"),
        &a.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    wait_until("B to drop the revoked token", || async {
        state_status(&b, &token).await == StatusCode::UNAUTHORIZED
    })
    .await;
}

async fn anonymous_versions(app: &TestApp) -> Resp {
    let request = RequestBuilder::new("GET", &format!("/v1/modules/{ORG}/vpc/aws/versions"));
    app.send(request.build()).await
}

#[tokio::test]
async fn registry_changes_on_one_replica_reach_the_others_cache_at_once() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    publish(&a, "vpc/aws", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    // B caches the namespace as private and the version list as [1.0.0].
    assert_ne!(anonymous_versions(&b).await.status, StatusCode::OK);
    let list = |resp: Resp| {
        resp.json()["modules"][0]["versions"]
            .as_array()
            .unwrap()
            .len()
    };
    let versions = RequestBuilder::new("GET", &format!("/v1/modules/{ORG}/vpc/aws/versions"))
        .bearer(&b.read_token);
    assert_eq!(list(b.send(versions.build()).await), 1);

    a.api(
        "PATCH",
        &format!("/api/v1/orgs/{ORG}/registry"),
        &a.admin_token,
        Some(json!({ "public": true })),
    )
    .await
    .assert_status(StatusCode::OK);
    wait_until("B to see the namespace public", || async {
        anonymous_versions(&b).await.status == StatusCode::OK
    })
    .await;

    publish(&a, "vpc/aws", "1.1.0")
        .await
        .assert_status(StatusCode::CREATED);
    wait_until("B to list the new version", || async {
        list(anonymous_versions(&b).await) == 2
    })
    .await;
}

#[tokio::test]
async fn a_replica_whose_listener_reconnects_drops_what_it_may_have_missed() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let token = cached_on_b_then_revoked_quietly(&a, &b).await;

    // Cut every listener connection of this database (other tests' replicas reconnect too).
    let Db::Postgres(pool) = a.db() else {
        unreachable!()
    };
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN \"terrace_cache\"'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(cut.len() >= 2, "both listeners were connected: {cut:?}");

    wait_until("B to stop trusting its cache", || async {
        state_status(&b, &token).await == StatusCode::UNAUTHORIZED
    })
    .await;
    wait_until("listeners reconnected", || async {
        a.state.caches.live() && b.state.caches.live()
    })
    .await;
}
