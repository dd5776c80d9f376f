//! `terraform login` server side: the OAuth authorization-code flow with PKCE and its
//! refusals, CSRF, attempt limits, the consent page, invitations, and users' tokens.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use terrace::identity::auth::Role;

use crate::support::browser::{Browser, form, hidden, set_cookies};
use crate::support::{ORG, RequestBuilder, Resp, TestApp};

const PASSWORD: &str = "correct horse battery";
const VERIFIER: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.123456789";
const REDIRECT: &str = "http://localhost:10000/login";

fn challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn authorize_query(redirect: &str) -> String {
    format!(
        "/oauth/authorize?{}",
        form(&[
            ("client_id", "terraform-cli"),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("state", "st-123"),
        ])
    )
}

async fn add_user(app: &TestApp, name: &str, role: Role) {
    crate::support::add_user(app, ORG, name, role, PASSWORD).await;
}

impl Browser {
    /// Opens the login page and submits `user`/`password`; returns the answer.
    async fn sign_in(&mut self, app: &TestApp, user: &str, password: &str) -> Resp {
        let page = self.get(app, &authorize_query(REDIRECT)).await;
        page.assert_status(StatusCode::OK);
        let csrf = hidden(&page.text(), "csrf");
        self.submit(app, &csrf, &[("username", user), ("password", password)])
            .await
    }

    /// Posts the authorization form: the request's hidden fields, `csrf`, and `extra`.
    async fn submit(&mut self, app: &TestApp, csrf: &str, extra: &[(&str, &str)]) -> Resp {
        let challenge = challenge(VERIFIER);
        let mut pairs = vec![
            ("client_id", "terraform-cli"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("state", "st-123"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("csrf", csrf),
        ];
        pairs.extend_from_slice(extra);
        self.post_form(app, "/oauth/authorize", &pairs).await
    }
}

/// The `code` in a redirect to Terraform's listener.
fn code_from(resp: &Resp) -> String {
    assert!(
        resp.status.is_redirection(),
        "{}: {}",
        resp.status,
        resp.text()
    );
    let location = resp.headers["location"].to_str().unwrap();
    let url = url::Url::parse(location).unwrap();
    assert_eq!(&location[..REDIRECT.len()], REDIRECT);
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(
        pairs.contains(&("state".into(), "st-123".into())),
        "{location}"
    );
    pairs
        .into_iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no code in {location}"))
}

async fn exchange(app: &TestApp, code: &str, verifier: &str, redirect: &str) -> Resp {
    let body = form(&[
        ("client_id", "terraform-cli"),
        ("code", code),
        ("code_verifier", verifier),
        ("grant_type", "authorization_code"),
        ("redirect_uri", redirect),
    ]);
    let request = RequestBuilder::new("POST", "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    app.send(request.build()).await
}

async fn login(app: &TestApp, user: &str) -> String {
    let resp = Browser::new().sign_in(app, user, PASSWORD).await;
    let code = code_from(&resp);
    let token = exchange(app, &code, VERIFIER, REDIRECT).await;
    token.assert_status(StatusCode::OK);
    let body = token.json();
    assert_eq!(body["token_type"], "bearer");
    body["access_token"].as_str().unwrap().to_string()
}

async fn whoami(app: &TestApp, token: &str) -> Resp {
    app.api("GET", "/api/v1/user", token, None).await
}

async fn the_code_flow_with_pkce_issues_a_token_carrying_the_users_rights(app: TestApp) {
    add_user(&app, "alice", Role::Write).await;
    let token = login(&app, "Alice").await;
    let me = whoami(&app, &token).await;
    me.assert_status(StatusCode::OK);
    assert_eq!(me.json()["name"], "alice");
    assert_eq!(
        me.json()["orgs"],
        json!([{"name": "acme", "role": "write"}])
    );

    // The token is a JWT for 30 days, and works as the http backend's password.
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 30 * 24 * 3600);
    app.write_state("prod", crate::support::state("l1", 1), None, &token)
        .await
        .assert_status(StatusCode::OK);

    // A role change takes effect on the next request.
    let demote = app
        .api(
            "PATCH",
            "/api/v1/orgs/acme/users/alice",
            &app.admin_token,
            Some(json!({"role": "read"})),
        )
        .await;
    demote.assert_status(StatusCode::OK);
    app.write_state("prod", crate::support::state("l1", 2), None, &token)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.get_state("prod", &token)
        .await
        .assert_status(StatusCode::OK);
}

async fn wrong_passwords_and_unknown_users_get_the_same_answer(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let wrong = Browser::new()
        .sign_in(&app, "alice", "not the password")
        .await;
    let unknown = Browser::new()
        .sign_in(&app, "mallory", "not the password")
        .await;
    for resp in [&wrong, &unknown] {
        resp.assert_status(StatusCode::UNAUTHORIZED);
        assert!(resp.headers.get("location").is_none());
        assert!(resp.text().contains("Invalid user name or password."));
    }
    let strip = |html: String| html.replace("alice", "").replace("mallory", "");
    assert_eq!(strip(wrong.text()).len(), strip(unknown.text()).len());
}

async fn codes_are_single_use_and_a_replay_revokes_the_token(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let code = code_from(&Browser::new().sign_in(&app, "alice", PASSWORD).await);
    let first = exchange(&app, &code, VERIFIER, REDIRECT).await;
    first.assert_status(StatusCode::OK);
    let token = first.json()["access_token"].as_str().unwrap().to_string();
    whoami(&app, &token).await.assert_status(StatusCode::OK);

    let replay = exchange(&app, &code, VERIFIER, REDIRECT).await;
    replay.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(replay.json()["error"], "invalid_grant");
    whoami(&app, &token)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}

async fn a_wrong_verifier_or_redirect_uri_burns_the_code(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let code = code_from(&Browser::new().sign_in(&app, "alice", PASSWORD).await);
    let wrong = exchange(&app, &code, &format!("{VERIFIER}0"), REDIRECT).await;
    wrong.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json()["error"], "invalid_grant");
    // Single use even when the first try failed.
    exchange(&app, &code, VERIFIER, REDIRECT)
        .await
        .assert_status(StatusCode::BAD_REQUEST);

    let code = code_from(&Browser::new().sign_in(&app, "alice", PASSWORD).await);
    let moved = exchange(&app, &code, VERIFIER, "http://localhost:10001/login").await;
    moved.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(moved.json()["error"], "invalid_grant");

    let unknown = exchange(&app, "made-up", VERIFIER, REDIRECT).await;
    unknown.assert_status(StatusCode::BAD_REQUEST);
    let bad_grant = RequestBuilder::new("POST", "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "password"), ("username", "alice")]));
    let resp = app.send(bad_grant.build()).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(resp.json()["error"], "unsupported_grant_type");
}

async fn expired_codes_are_refused(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let code = code_from(&Browser::new().sign_in(&app, "alice", PASSWORD).await);
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    match app.db() {
        terrace::infra::db::Db::Sqlite(p) => {
            sqlx::query("UPDATE oauth_codes SET expires_at = $1")
                .bind(past)
                .execute(p)
                .await
                .unwrap();
        }
        terrace::infra::db::Db::Postgres(p) => {
            sqlx::query("UPDATE oauth_codes SET expires_at = $1")
                .bind(past)
                .execute(p)
                .await
                .unwrap();
        }
    }
    let resp = exchange(&app, &code, VERIFIER, REDIRECT).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(resp.json()["error"], "invalid_grant");
    assert!(resp.text().contains("expired"), "{}", resp.text());
}

async fn foreign_redirect_uris_and_bad_requests_get_a_page_not_a_redirect(app: TestApp) {
    for redirect in [
        "http://evil.example:10000/login",
        "https://localhost:10000/login",
        "http://localhost:9999/login",
        "http://localhost:10000/elsewhere",
        "http://localhost.evil.example:10000/login",
    ] {
        let resp = Browser::new().get(&app, &authorize_query(redirect)).await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        assert!(resp.headers.get("location").is_none(), "{redirect}");
        assert!(resp.text().contains("redirect_uri"), "{redirect}");
    }
    let plain = authorize_query(REDIRECT).replace("S256", "plain");
    let resp = Browser::new().get(&app, &plain).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(resp.text().contains("S256"));
    let other_client = authorize_query(REDIRECT).replace("terraform-cli", "someone-else");
    Browser::new()
        .get(&app, &other_client)
        .await
        .assert_status(StatusCode::BAD_REQUEST);
}

async fn the_login_form_needs_its_csrf_token(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let mut browser = Browser::new();
    let page = browser.get(&app, &authorize_query(REDIRECT)).await;
    assert!(page.headers["x-frame-options"] == "DENY");
    assert!(
        set_cookies(&page)
            .iter()
            .any(|c| c.starts_with("terrace_csrf="))
    );
    let credentials = [("username", "alice"), ("password", PASSWORD)];
    for csrf in ["", "forged"] {
        let resp = browser.submit(&app, csrf, &credentials).await;
        resp.assert_status(StatusCode::FORBIDDEN);
        assert!(resp.headers.get("location").is_none());
    }
    // A cross-site post carries no cookie at all.
    Browser::new()
        .submit(&app, "forged", &credentials)
        .await
        .assert_status(StatusCode::FORBIDDEN);
}

async fn repeated_failures_are_limited_per_user(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    add_user(&app, "bob", Role::Read).await;
    for _ in 0..5 {
        Browser::new()
            .sign_in(&app, "alice", "guess")
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
    }
    // Even the right password waits now, so guessing cannot go on.
    let limited = Browser::new().sign_in(&app, "alice", PASSWORD).await;
    limited.assert_status(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=13).contains(&retry), "{retry}");
    // Unknown names are limited just the same, and other users are not affected.
    for _ in 0..5 {
        Browser::new().sign_in(&app, "nobody", "guess").await;
    }
    Browser::new()
        .sign_in(&app, "nobody", "guess")
        .await
        .assert_status(StatusCode::TOO_MANY_REQUESTS);
    code_from(&Browser::new().sign_in(&app, "bob", PASSWORD).await);
}

async fn a_signed_in_browser_gets_a_consent_page(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let mut browser = Browser::new();
    code_from(&browser.sign_in(&app, "alice", PASSWORD).await);
    assert!(
        browser
            .cookies
            .iter()
            .any(|c| c.starts_with("terrace_session="))
    );

    let page = browser.get(&app, &authorize_query(REDIRECT)).await;
    page.assert_status(StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("Signed in as <strong>alice</strong>"),
        "{html}"
    );
    assert!(!html.contains("name=\"password\""));
    let csrf = hidden(&html, "csrf");
    let denied = browser.submit(&app, &csrf, &[("decision", "deny")]).await;
    let location = denied.headers["location"].to_str().unwrap().to_string();
    assert!(location.contains("error=access_denied"), "{location}");
    assert!(!location.contains("code="));

    let allowed = browser.submit(&app, &csrf, &[("decision", "allow")]).await;
    let code = code_from(&allowed);
    exchange(&app, &code, VERIFIER, REDIRECT)
        .await
        .assert_status(StatusCode::OK);

    // Without the session, a decision alone grants nothing.
    let csrf_only = browser
        .cookies
        .iter()
        .filter(|c| c.starts_with("terrace_csrf="))
        .cloned()
        .collect();
    let mut stranger = Browser { cookies: csrf_only };
    let resp = stranger.submit(&app, &csrf, &[("decision", "allow")]).await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    assert!(resp.headers.get("location").is_none());
}

async fn invited_users_choose_a_password_once(app: TestApp) {
    let created = app
        .api(
            "POST",
            "/api/v1/orgs/acme/users",
            &app.admin_token,
            Some(json!({"name": "carol", "role": "read"})),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let url = created.json()["invitation_url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = &url[url.find("/invite/").unwrap()..];

    // Before accepting, carol cannot sign in.
    Browser::new()
        .sign_in(&app, "carol", "")
        .await
        .assert_status(StatusCode::UNAUTHORIZED);

    let mut browser = Browser::new();
    let page = browser.get(&app, path).await;
    page.assert_status(StatusCode::OK);
    let csrf = hidden(&page.text(), "csrf");
    let mismatch = browser
        .post_form(
            &app,
            path,
            &[
                ("csrf", &csrf),
                ("password", PASSWORD),
                ("confirm", "other one"),
            ],
        )
        .await;
    mismatch.assert_status(StatusCode::BAD_REQUEST);
    let short = browser
        .post_form(
            &app,
            path,
            &[("csrf", &csrf), ("password", "short"), ("confirm", "short")],
        )
        .await;
    short.assert_status(StatusCode::BAD_REQUEST);
    browser
        .post_form(
            &app,
            path,
            &[
                ("csrf", &csrf),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await
        .assert_status(StatusCode::OK);
    browser
        .get(&app, path)
        .await
        .assert_status(StatusCode::NOT_FOUND);

    let token = login(&app, "carol").await;
    whoami(&app, &token).await.assert_status(StatusCode::OK);
}

async fn disabling_a_user_stops_their_tokens_at_once(app: TestApp) {
    add_user(&app, "alice", Role::Write).await;
    let token = login(&app, "alice").await;
    let disable = |on: bool| {
        app.api(
            "PATCH",
            "/api/v1/orgs/acme/users/alice",
            &app.admin_token,
            Some(json!({"disabled": on})),
        )
    };
    disable(true).await.assert_status(StatusCode::OK);
    whoami(&app, &token)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    app.get_state("prod", &token)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    Browser::new()
        .sign_in(&app, "alice", PASSWORD)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    disable(false).await.assert_status(StatusCode::OK);
    whoami(&app, &token).await.assert_status(StatusCode::OK);

    // Write-role admins of the org cannot; another org's admin cannot even see alice.
    app.api(
        "PATCH",
        "/api/v1/orgs/acme/users/alice",
        &app.write_token,
        Some(json!({"disabled": true})),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    app.api(
        "PATCH",
        "/api/v1/orgs/acme/users/alice",
        &app.other_token,
        Some(json!({"disabled": true})),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn users_list_and_revoke_their_tokens_and_admins_revoke_anyones(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let first = login(&app, "alice").await;
    let second = login(&app, "alice").await;
    let listed = app.api("GET", "/api/v1/user/tokens", &first, None).await;
    listed.assert_status(StatusCode::OK);
    let ids: Vec<String> = listed.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!listed.text().contains(&first), "secrets are never listed");

    // Users revoke their own…
    let own = app
        .api(
            "DELETE",
            &format!("/api/v1/user/tokens/{}", ids[0]),
            &first,
            None,
        )
        .await;
    own.assert_status(StatusCode::NO_CONTENT);
    // …admins anyone's.
    let path = format!("/api/v1/orgs/acme/users/alice/tokens/{}", ids[1]);
    app.api("DELETE", &path, &app.read_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.api("DELETE", &path, &app.admin_token, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    for token in [&first, &second] {
        whoami(&app, token)
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
    }
    // API tokens are not users.
    app.api("GET", "/api/v1/user/tokens", &app.admin_token, None)
        .await
        .assert_status(StatusCode::BAD_REQUEST);
}

async fn users_change_their_password_and_admins_manage_membership(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let token = login(&app, "alice").await;
    let change = |current: &str, new: &str| {
        app.api(
            "PUT",
            "/api/v1/user/password",
            &token,
            Some(json!({"current_password": current, "new_password": new})),
        )
    };
    change("wrong password", "a new password")
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    change(PASSWORD, "short")
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    change(PASSWORD, "a new password")
        .await
        .assert_status(StatusCode::NO_CONTENT);
    Browser::new()
        .sign_in(&app, "alice", PASSWORD)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    code_from(
        &Browser::new()
            .sign_in(&app, "alice", "a new password")
            .await,
    );

    let list = app
        .api("GET", "/api/v1/orgs/acme/users", &app.admin_token, None)
        .await;
    list.assert_status(StatusCode::OK);
    assert_eq!(list.json()["data"][0]["name"], "alice");
    assert_eq!(list.json()["data"][0]["role"], "read");
    app.api("GET", "/api/v1/orgs/acme/users", &app.write_token, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);

    // Adding an existing user with a password would overwrite theirs: refused.
    app.api(
        "POST",
        "/api/v1/orgs/acme/users",
        &app.admin_token,
        Some(json!({"name": "alice", "role": "admin", "password": "hijacked!!"})),
    )
    .await
    .assert_status(StatusCode::CONFLICT);

    app.api(
        "DELETE",
        "/api/v1/orgs/acme/users/alice",
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    whoami(&app, &token)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}

on_both_databases!(
    the_code_flow_with_pkce_issues_a_token_carrying_the_users_rights,
    wrong_passwords_and_unknown_users_get_the_same_answer,
    codes_are_single_use_and_a_replay_revokes_the_token,
    a_wrong_verifier_or_redirect_uri_burns_the_code,
    expired_codes_are_refused,
    foreign_redirect_uris_and_bad_requests_get_a_page_not_a_redirect,
    the_login_form_needs_its_csrf_token,
    repeated_failures_are_limited_per_user,
    a_signed_in_browser_gets_a_consent_page,
    invited_users_choose_a_password_once,
    disabling_a_user_stops_their_tokens_at_once,
    users_list_and_revoke_their_tokens_and_admins_revoke_anyones,
    users_change_their_password_and_admins_manage_membership,
    rotating_the_login_key_keeps_old_tokens_until_retired,
);

async fn rotating_the_login_key_keeps_old_tokens_until_retired(app: TestApp) {
    add_user(&app, "alice", Role::Read).await;
    let old = login(&app, "alice").await;
    let keys = app.state.blobs.keys();

    terrace::identity::auth::jwt::rotate(app.db(), keys, false)
        .await
        .unwrap();
    app.state.identity.login_keys.forget().await;
    let new = login(&app, "alice").await;
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    assert_ne!(kid(&old), kid(&new), "new tokens use the new key");
    whoami(&app, &old).await.assert_status(StatusCode::OK);

    terrace::identity::auth::jwt::rotate(app.db(), keys, true)
        .await
        .unwrap();
    app.state.identity.login_keys.forget().await;
    for token in [&old, &new] {
        whoami(&app, token)
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
    }
    let newest = login(&app, "alice").await;
    whoami(&app, &newest).await.assert_status(StatusCode::OK);
}
