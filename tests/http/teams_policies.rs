//! Teams and custom policies: the management API, and how teams, policies, team tokens and
//! scoped tokens change what a caller may do, seen from the outside.

use axum::http::StatusCode;
use serde_json::{Value, json};
use terrace::identity::auth::{Principal, Role};
use terrace::identity::orgs::TokenSpec;
use terrace::names::{OrgName, UserName};

use crate::support::{ORG, OTHER_ORG, Resp, TestApp, state};

on_both_databases! {
    teams_are_created_listed_changed_and_deleted,
    team_members_must_belong_to_the_org,
    a_team_role_lifts_a_members_rights_at_once,
    a_policy_allow_grants_only_what_it_names,
    a_deny_statement_beats_the_admin_role,
    a_team_token_is_capped_by_its_team_and_follows_its_policies,
    a_scoped_token_finds_nothing_outside_its_scope,
    policies_are_created_replaced_and_deleted,
    invalid_policy_documents_are_400_with_a_helpful_message,
    attachments_need_exactly_one_target_in_the_same_org,
    only_admins_of_the_org_manage_teams_and_policies,
}

fn teams_path(tail: &str) -> String {
    format!("/api/v1/orgs/{ORG}/teams{tail}")
}

fn policies_path(tail: &str) -> String {
    format!("/api/v1/orgs/{ORG}/policies{tail}")
}

fn policy(effect: &str, action: &str, resource: &str) -> Value {
    json!({ "statements": [{ "effect": effect, "actions": [action], "resources": [resource] }] })
}

/// Adds `name` to acme with `role` and returns a login token for them.
async fn login_as(app: &TestApp, name: &str, role: Role) -> String {
    let org = OrgName::parse(ORG).unwrap();
    let user = UserName::parse(name).unwrap();
    terrace::identity::users::add_member(
        app.db(),
        &Principal::System,
        &org,
        &user,
        role,
        Some("password123"),
        "http://localhost",
    )
    .await
    .unwrap();
    let id = terrace::identity::users::store::find_user(app.db(), name)
        .await
        .unwrap()
        .unwrap()
        .id;
    terrace::identity::users::issue_login_token(
        &app.state.identity,
        id,
        name,
        "test",
        chrono::Duration::days(1),
    )
    .await
    .unwrap()
}

/// An API token of acme made directly (as the CLI does); returns (id, secret).
async fn api_token(app: &TestApp, spec: TokenSpec<'_>) -> (i64, String) {
    let org = OrgName::parse(ORG).unwrap();
    let created = terrace::identity::orgs::create_token(app.db(), &Principal::System, &org, spec)
        .await
        .unwrap();
    (created.id, created.token)
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> Resp {
    app.api(method, path, &app.admin_token, body).await
}

async fn create_team(app: &TestApp, name: &str, role: Option<&str>) {
    admin(
        app,
        "POST",
        &teams_path(""),
        Some(json!({ "name": name, "role": role })),
    )
    .await
    .assert_status(StatusCode::CREATED);
}

async fn add_to_team(app: &TestApp, team: &str, user: &str) {
    admin(
        app,
        "PUT",
        &teams_path(&format!("/{team}/members/{user}")),
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
}

async fn create_policy(app: &TestApp, name: &str, document: Value) {
    let body = json!({ "name": name, "document": document });
    admin(app, "POST", &policies_path(""), Some(body))
        .await
        .assert_status(StatusCode::CREATED);
}

/// Attaches and returns the attachment's id.
async fn attach(app: &TestApp, policy: &str, target: Value) -> i64 {
    let path = policies_path(&format!("/{policy}/attachments"));
    let resp = admin(app, "POST", &path, Some(target)).await;
    resp.assert_status(StatusCode::CREATED);
    resp.json()["id"].as_i64().unwrap()
}

/// Writes a state with `serial` (lineage per workspace) and returns the status.
async fn write(app: &TestApp, ws: &str, serial: i64, token: &str) -> StatusCode {
    app.write_state(ws, state(&format!("lin-{ws}"), serial), None, token)
        .await
        .status
}

async fn teams_are_created_listed_changed_and_deleted(app: TestApp) {
    let resp = admin(
        &app,
        "POST",
        &teams_path(""),
        Some(json!({ "name": "platform", "role": "write" })),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let created = resp.json();
    assert_eq!(created["name"], "platform");
    assert_eq!(created["role"], "write");
    assert_eq!(created["members"], json!([]));
    assert!(created["created_at"].is_string(), "{created}");

    // No role at all: the team only carries policies.
    admin(
        &app,
        "POST",
        &teams_path(""),
        Some(json!({ "name": "auditors" })),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let dup = admin(
        &app,
        "POST",
        &teams_path(""),
        Some(json!({ "name": "platform" })),
    )
    .await;
    dup.assert_status(StatusCode::CONFLICT);
    assert!(dup.text().contains("already exists"), "{}", dup.text());
    for bad in [
        json!({ "name": "no spaces" }),
        json!({ "name": "" }),
        json!({ "name": "x", "role": "owner" }),
        json!({ "name": "x", "colour": "red" }),
    ] {
        admin(&app, "POST", &teams_path(""), Some(bad.clone()))
            .await
            .assert_status(StatusCode::BAD_REQUEST);
    }

    let list = admin(&app, "GET", &teams_path("?limit=1"), None).await;
    list.assert_status(StatusCode::OK);
    let list = list.json();
    assert_eq!(list["data"][0]["name"], "auditors");
    assert_eq!(list["data"][0]["role"], Value::Null);
    assert_eq!(list["meta"]["next_offset"], 1);
    let rest = admin(&app, "GET", &teams_path("?limit=1&offset=1"), None)
        .await
        .json();
    assert_eq!(rest["data"][0]["name"], "platform");
    assert_eq!(rest["meta"]["next_offset"], Value::Null);

    // PATCH: a value changes the role, null removes it, an absent field keeps it.
    let platform = teams_path("/platform");
    let patch = |body: Value| admin(&app, "PATCH", &platform, Some(body));
    assert_eq!(
        patch(json!({ "role": "read" })).await.json()["role"],
        "read"
    );
    assert_eq!(patch(json!({})).await.json()["role"], "read");
    assert_eq!(
        patch(json!({ "role": null })).await.json()["role"],
        Value::Null
    );
    patch(json!({ "name": "renamed" }))
        .await
        .assert_status(StatusCode::BAD_REQUEST);

    admin(&app, "DELETE", &teams_path("/platform"), None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    for method in ["GET", "DELETE"] {
        admin(&app, method, &teams_path("/platform"), None)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    admin(
        &app,
        "PATCH",
        &teams_path("/platform"),
        Some(json!({ "role": "read" })),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
}

async fn team_members_must_belong_to_the_org(app: TestApp) {
    for name in ["carol", "alice", "bob"] {
        login_as(&app, name, Role::Read).await;
    }
    create_team(&app, "platform", Some("write")).await;
    for name in ["carol", "alice", "bob"] {
        add_to_team(&app, "platform", name).await;
    }
    // Adding again is harmless.
    add_to_team(&app, "platform", "alice").await;

    let team = admin(&app, "GET", &teams_path("/platform"), None)
        .await
        .json();
    assert_eq!(team["members"], json!(["carol", "alice", "bob"]));
    let page = admin(&app, "GET", &teams_path("/platform/members?limit=2"), None)
        .await
        .json();
    assert_eq!(
        page["data"],
        json!([{ "name": "carol" }, { "name": "alice" }])
    );
    assert_eq!(page["meta"]["next_offset"], 2);
    let page = admin(
        &app,
        "GET",
        &teams_path("/platform/members?limit=2&offset=2"),
        None,
    )
    .await
    .json();
    assert_eq!(page["data"], json!([{ "name": "bob" }]));
    assert_eq!(page["meta"]["next_offset"], Value::Null);

    // A user of another org only, and nobody at all: not found.
    let other = OrgName::parse(OTHER_ORG).unwrap();
    terrace::identity::users::add_member(
        app.db(),
        &Principal::System,
        &other,
        &UserName::parse("mallory").unwrap(),
        Role::Admin,
        Some("password123"),
        "http://localhost",
    )
    .await
    .unwrap();
    for user in ["mallory", "nobody"] {
        let resp = admin(
            &app,
            "PUT",
            &teams_path(&format!("/platform/members/{user}")),
            None,
        )
        .await;
        resp.assert_status(StatusCode::NOT_FOUND);
        assert!(resp.text().contains("user"), "{}", resp.text());
    }
    admin(&app, "PUT", &teams_path("/missing/members/alice"), None)
        .await
        .assert_status(StatusCode::NOT_FOUND);

    admin(&app, "DELETE", &teams_path("/platform/members/alice"), None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    admin(&app, "DELETE", &teams_path("/platform/members/alice"), None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let team = admin(&app, "GET", &teams_path("/platform"), None)
        .await
        .json();
    assert_eq!(team["members"], json!(["carol", "bob"]));

    // Leaving the org also leaves its teams.
    admin(
        &app,
        "DELETE",
        &format!("/api/v1/orgs/{ORG}/users/bob"),
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    let team = admin(&app, "GET", &teams_path("/platform"), None)
        .await
        .json();
    assert_eq!(team["members"], json!(["carol"]));
}

async fn a_team_role_lifts_a_members_rights_at_once(app: TestApp) {
    let alice = login_as(&app, "alice", Role::Read).await;
    assert_eq!(write(&app, "app", 1, &alice).await, StatusCode::FORBIDDEN);

    create_team(&app, "deployers", Some("write")).await;
    add_to_team(&app, "deployers", "alice").await;
    assert_eq!(write(&app, "app", 1, &alice).await, StatusCode::OK);

    // Lowering the team's role lowers the member's at once.
    admin(
        &app,
        "PATCH",
        &teams_path("/deployers"),
        Some(json!({ "role": "plan" })),
    )
    .await
    .assert_status(StatusCode::OK);
    assert_eq!(write(&app, "app", 2, &alice).await, StatusCode::FORBIDDEN);
    app.lock("app", "alice-lock", &alice)
        .await
        .assert_status(StatusCode::OK);
    app.unlock("app", crate::support::lock_info("alice-lock"), &alice)
        .await
        .assert_status(StatusCode::OK);

    admin(
        &app,
        "PATCH",
        &teams_path("/deployers"),
        Some(json!({ "role": "write" })),
    )
    .await
    .assert_status(StatusCode::OK);
    assert_eq!(write(&app, "app", 2, &alice).await, StatusCode::OK);

    admin(
        &app,
        "DELETE",
        &teams_path("/deployers/members/alice"),
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(write(&app, "app", 3, &alice).await, StatusCode::FORBIDDEN);
    // Still a reader through the membership itself.
    app.get_state("app", &alice)
        .await
        .assert_status(StatusCode::OK);

    // A team never lowers a member's own role.
    let root = login_as(&app, "root", Role::Admin).await;
    create_team(&app, "readers", Some("read")).await;
    add_to_team(&app, "readers", "root").await;
    assert_eq!(write(&app, "app", 3, &root).await, StatusCode::OK);
}

async fn a_policy_allow_grants_only_what_it_names(app: TestApp) {
    let bob = login_as(&app, "bob", Role::Read).await;
    create_policy(
        &app,
        "prod-writers",
        policy("allow", "state:write", "workspace:prod-*"),
    )
    .await;
    let id = attach(&app, "prod-writers", json!({ "user": "bob" })).await;

    assert_eq!(write(&app, "prod-eu", 1, &bob).await, StatusCode::OK);
    assert_eq!(write(&app, "dev", 1, &bob).await, StatusCode::FORBIDDEN);
    // Writing does not bring locking or admin actions with it.
    app.lock("prod-eu", "x", &bob)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    app.api("GET", &format!("/api/v1/orgs/{ORG}/tokens"), &bob, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);

    // Through a team, the same.
    let carol = login_as(&app, "carol", Role::Read).await;
    create_team(&app, "prod", None).await;
    add_to_team(&app, "prod", "carol").await;
    assert_eq!(
        write(&app, "prod-us", 1, &carol).await,
        StatusCode::FORBIDDEN
    );
    attach(&app, "prod-writers", json!({ "team": "prod" })).await;
    assert_eq!(write(&app, "prod-us", 1, &carol).await, StatusCode::OK);
    assert_eq!(write(&app, "dev", 1, &carol).await, StatusCode::FORBIDDEN);

    // Detaching takes the right away again.
    let path = policies_path(&format!("/prod-writers/attachments/{id}"));
    admin(&app, "DELETE", &path, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    admin(&app, "DELETE", &path, None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    assert_eq!(write(&app, "prod-eu", 2, &bob).await, StatusCode::FORBIDDEN);
}

async fn a_deny_statement_beats_the_admin_role(app: TestApp) {
    let root = login_as(&app, "root", Role::Admin).await;
    let (token_id, token) = api_token(&app, TokenSpec::new("deploy", Role::Admin)).await;
    assert_eq!(write(&app, "prod-secrets", 1, &root).await, StatusCode::OK);
    assert_eq!(write(&app, "prod-secrets", 2, &token).await, StatusCode::OK);

    create_policy(
        &app,
        "hands-off",
        policy("deny", "state:*", "workspace:prod-secrets"),
    )
    .await;
    attach(&app, "hands-off", json!({ "user": "root" })).await;
    attach(&app, "hands-off", json!({ "token": token_id })).await;

    for (serial, caller) in [(1, &root), (2, &token)] {
        assert_eq!(
            write(&app, "prod-secrets", 3, caller).await,
            StatusCode::FORBIDDEN
        );
        app.get_state("prod-secrets", caller)
            .await
            .assert_status(StatusCode::FORBIDDEN);
        // Everything else the admin role still grants.
        assert_eq!(
            write(&app, "prod-other", serial, caller).await,
            StatusCode::OK
        );
    }
    // A denied write changed nothing.
    assert_eq!(app.versions("prod-secrets").await.len(), 2);

    // Narrowing the document applies at once, to the cached API token too.
    admin(
        &app,
        "PUT",
        &policies_path("/hands-off"),
        Some(json!({ "document": policy("deny", "state:write", "workspace:prod-secrets") })),
    )
    .await
    .assert_status(StatusCode::OK);
    for caller in [&root, &token] {
        app.get_state("prod-secrets", caller)
            .await
            .assert_status(StatusCode::OK);
        assert_eq!(
            write(&app, "prod-secrets", 3, caller).await,
            StatusCode::FORBIDDEN
        );
    }

    // Deleting the policy lifts the deny.
    admin(&app, "DELETE", &policies_path("/hands-off"), None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(write(&app, "prod-secrets", 3, &root).await, StatusCode::OK);
    assert_eq!(write(&app, "prod-secrets", 4, &token).await, StatusCode::OK);
}

async fn a_team_token_is_capped_by_its_team_and_follows_its_policies(app: TestApp) {
    create_team(&app, "ci", Some("read")).await;
    let spec = TokenSpec {
        team: Some("ci"),
        ..TokenSpec::new("ci-bot", Role::Write)
    };
    let (_, bot) = api_token(&app, spec).await;

    // Token role write, team role read: read.
    assert_eq!(
        write(&app, "app", 1, &app.admin_token).await,
        StatusCode::OK
    );
    app.get_state("app", &bot)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(write(&app, "app", 2, &bot).await, StatusCode::FORBIDDEN);

    admin(
        &app,
        "PATCH",
        &teams_path("/ci"),
        Some(json!({ "role": "admin" })),
    )
    .await
    .assert_status(StatusCode::OK);
    // Team role admin, token role write: write, not admin.
    assert_eq!(write(&app, "app", 2, &bot).await, StatusCode::OK);
    app.api("GET", &format!("/api/v1/orgs/{ORG}/tokens"), &bot, None)
        .await
        .assert_status(StatusCode::FORBIDDEN);

    // The team's policies follow the token.
    create_policy(
        &app,
        "no-prod",
        policy("deny", "state:write", "workspace:prod-*"),
    )
    .await;
    attach(&app, "no-prod", json!({ "team": "ci" })).await;
    assert_eq!(write(&app, "prod-1", 1, &bot).await, StatusCode::FORBIDDEN);
    assert_eq!(write(&app, "app", 3, &bot).await, StatusCode::OK);

    // No team role: only what the team's policies allow.
    admin(
        &app,
        "PATCH",
        &teams_path("/ci"),
        Some(json!({ "role": null })),
    )
    .await
    .assert_status(StatusCode::OK);
    assert_eq!(write(&app, "app", 4, &bot).await, StatusCode::FORBIDDEN);
    create_policy(
        &app,
        "apps",
        policy("allow", "state:write", "workspace:app"),
    )
    .await;
    attach(&app, "apps", json!({ "team": "ci" })).await;
    assert_eq!(write(&app, "app", 4, &bot).await, StatusCode::OK);

    // Deleting the team takes its tokens with it.
    admin(&app, "DELETE", &teams_path("/ci"), None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(write(&app, "app", 5, &bot).await, StatusCode::UNAUTHORIZED);
}

async fn a_scoped_token_finds_nothing_outside_its_scope(app: TestApp) {
    let spec = TokenSpec {
        scopes: Some(vec!["workspace:prod-*".into()]),
        ..TokenSpec::new("ci", Role::Write)
    };
    let (token_id, scoped) = api_token(&app, spec).await;
    assert_eq!(write(&app, "prod-1", 1, &scoped).await, StatusCode::OK);
    assert_eq!(write(&app, "dev", 1, &scoped).await, StatusCode::NOT_FOUND);
    app.get_state("dev", &scoped)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    app.api(
        "GET",
        &format!("/api/v1/orgs/{ORG}/workspaces"),
        &scoped,
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);

    // A policy cannot widen the scope.
    create_policy(&app, "everything", policy("allow", "*", "*")).await;
    attach(&app, "everything", json!({ "token": token_id })).await;
    assert_eq!(write(&app, "dev", 1, &scoped).await, StatusCode::NOT_FOUND);
    assert_eq!(write(&app, "prod-1", 2, &scoped).await, StatusCode::OK);
}

async fn policies_are_created_replaced_and_deleted(app: TestApp) {
    let document = json!({ "statements": [
        { "effect": "allow", "actions": ["state:read", "state:lock"], "resources": ["workspace:prod-*"] },
        { "effect": "deny", "actions": ["state:*"], "resources": ["workspace:prod-secrets"] },
    ]});
    let resp = admin(
        &app,
        "POST",
        &policies_path(""),
        Some(json!({ "name": "prod-readers", "document": document })),
    )
    .await;
    resp.assert_status(StatusCode::CREATED);
    let created = resp.json();
    assert_eq!(created["name"], "prod-readers");
    assert_eq!(created["document"], document);
    assert!(created["updated_at"].is_string(), "{created}");

    let dup = admin(
        &app,
        "POST",
        &policies_path(""),
        Some(json!({ "name": "prod-readers", "document": document })),
    )
    .await;
    dup.assert_status(StatusCode::CONFLICT);
    admin(
        &app,
        "POST",
        &policies_path(""),
        Some(json!({ "name": "bad name", "document": document })),
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    create_policy(&app, "a-first", policy("allow", "org:read", "org")).await;

    let shown = admin(&app, "GET", &policies_path("/prod-readers"), None).await;
    shown.assert_status(StatusCode::OK);
    assert_eq!(shown.json()["document"], document);
    let list = admin(&app, "GET", &policies_path("?limit=1"), None)
        .await
        .json();
    assert_eq!(list["data"][0]["name"], "a-first");
    assert_eq!(list["meta"]["next_offset"], 1);

    let replacement = policy("allow", "registry:publish", "module:network/*");
    let replaced = admin(
        &app,
        "PUT",
        &policies_path("/prod-readers"),
        Some(json!({ "document": replacement })),
    )
    .await;
    replaced.assert_status(StatusCode::OK);
    assert_eq!(replaced.json()["document"], replacement);
    let shown = admin(&app, "GET", &policies_path("/prod-readers"), None)
        .await
        .json();
    assert_eq!(shown["document"], replacement);
    admin(
        &app,
        "PUT",
        &policies_path("/prod-readers"),
        Some(json!({ "name": "x", "document": replacement })),
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    admin(
        &app,
        "PUT",
        &policies_path("/missing"),
        Some(json!({ "document": replacement })),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);

    // Attachments go with the policy.
    login_as(&app, "bob", Role::Read).await;
    attach(&app, "prod-readers", json!({ "user": "bob" })).await;
    admin(&app, "DELETE", &policies_path("/prod-readers"), None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    for path in ["/prod-readers", "/prod-readers/attachments"] {
        admin(&app, "GET", &policies_path(path), None)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    // The name is free again.
    create_policy(&app, "prod-readers", document).await;
    let attachments = admin(
        &app,
        "GET",
        &policies_path("/prod-readers/attachments"),
        None,
    )
    .await
    .json();
    assert_eq!(attachments["data"], json!([]));
}

async fn invalid_policy_documents_are_400_with_a_helpful_message(app: TestApp) {
    let statement = |effect: &str, actions: Value, resources: Value| json!({ "statements": [{ "effect": effect, "actions": actions, "resources": resources }] });
    let cases = [
        (
            statement("allow", json!(["state:steal"]), json!(["*"])),
            "unknown action",
        ),
        (
            statement("allow", json!(["state:read"]), json!(["bucket:x"])),
            "unknown resource",
        ),
        (
            statement("permit", json!(["state:read"]), json!(["*"])),
            "permit",
        ),
        (
            statement("allow", json!([]), json!(["*"])),
            "at least one action",
        ),
        (json!({ "statements": [] }), "at least one statement"),
        (
            json!({ "statements": [], "version": 1 }),
            "unknown field `version`",
        ),
        (json!("not a document"), "invalid policy document"),
        (
            statement("allow", json!(["state:read"]), json!(["workspace:[x"])),
            "invalid pattern",
        ),
    ];
    for (document, expected) in cases {
        let body = json!({ "name": "p", "document": document });
        let resp = admin(&app, "POST", &policies_path(""), Some(body)).await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        let message = resp.json()["errors"][0].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{document}: {message}");
    }
    // None of them was stored.
    let list = admin(&app, "GET", &policies_path(""), None).await.json();
    assert_eq!(list["data"], json!([]));

    // Replacing with an invalid document keeps the old one.
    let good = policy("allow", "state:read", "workspace:*");
    create_policy(&app, "p", good.clone()).await;
    let bad = json!({ "document": policy("allow", "state:steal", "*") });
    admin(&app, "PUT", &policies_path("/p"), Some(bad))
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    admin(&app, "PUT", &policies_path("/p"), Some(json!({})))
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    let shown = admin(&app, "GET", &policies_path("/p"), None).await.json();
    assert_eq!(shown["document"], good);
}

async fn attachments_need_exactly_one_target_in_the_same_org(app: TestApp) {
    login_as(&app, "bob", Role::Read).await;
    create_team(&app, "platform", None).await;
    let (token_id, _) = api_token(&app, TokenSpec::new("deploy", Role::Write)).await;
    create_policy(&app, "p", policy("allow", "state:read", "workspace:*")).await;
    let path = policies_path("/p/attachments");

    let team = attach(&app, "p", json!({ "team": "platform" })).await;
    let user = attach(&app, "p", json!({ "user": "bob" })).await;
    let token = attach(&app, "p", json!({ "token": token_id })).await;
    let list = admin(&app, "GET", &path, None).await;
    list.assert_status(StatusCode::OK);
    assert_eq!(
        list.json()["data"],
        json!([
            { "id": team, "team": "platform" },
            { "id": user, "user": "bob" },
            { "id": token, "token": token_id },
        ])
    );
    let page = admin(&app, "GET", &format!("{path}?limit=2"), None)
        .await
        .json();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["meta"]["next_offset"], 2);

    for again in [
        json!({ "team": "platform" }),
        json!({ "user": "bob" }),
        json!({ "token": token_id }),
    ] {
        admin(&app, "POST", &path, Some(again))
            .await
            .assert_status(StatusCode::CONFLICT);
    }
    for bad in [
        json!({}),
        json!({ "team": "platform", "user": "bob" }),
        json!({ "group": "platform" }),
        json!({ "token": "seven" }),
        json!({ "team": "bad name" }),
    ] {
        let resp = admin(&app, "POST", &path, Some(bad.clone())).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            resp.text()
        );
    }

    // Another org's team, user and token are not found from acme.
    let other = &app.other_token;
    app.api(
        "POST",
        &format!("/api/v1/orgs/{OTHER_ORG}/teams"),
        other,
        Some(json!({ "name": "outsiders" })),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let resp = app
        .api(
            "POST",
            &format!("/api/v1/orgs/{OTHER_ORG}/users"),
            other,
            Some(json!({ "name": "mallory", "role": "admin", "password": "password123" })),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    let resp = app
        .api(
            "POST",
            &format!("/api/v1/orgs/{OTHER_ORG}/tokens"),
            other,
            Some(json!({ "name": "theirs", "role": "admin" })),
        )
        .await;
    resp.assert_status(StatusCode::CREATED);
    let their_token = resp.json()["id"].as_i64().unwrap();
    for (target, kind) in [
        (json!({ "team": "outsiders" }), "team"),
        (json!({ "user": "mallory" }), "user"),
        (json!({ "token": their_token }), "token"),
        (json!({ "token": 999_999 }), "token"),
        (json!({ "user": "nobody" }), "user"),
    ] {
        let resp = admin(&app, "POST", &path, Some(target.clone())).await;
        resp.assert_status(StatusCode::NOT_FOUND);
        assert!(resp.text().contains(kind), "{target}: {}", resp.text());
    }

    // A revoked token cannot be given a policy.
    let (revoked, _) = api_token(&app, TokenSpec::new("old", Role::Read)).await;
    app.api(
        "DELETE",
        &format!("/api/v1/orgs/{ORG}/tokens/{revoked}"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    admin(&app, "POST", &path, Some(json!({ "token": revoked })))
        .await
        .assert_status(StatusCode::NOT_FOUND);
    admin(
        &app,
        "POST",
        &policies_path("/missing/attachments"),
        Some(json!({ "user": "bob" })),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);

    // Detaching by an id of another policy finds nothing.
    create_policy(&app, "q", policy("allow", "state:read", "workspace:*")).await;
    admin(
        &app,
        "DELETE",
        &policies_path(&format!("/q/attachments/{team}")),
        None,
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);
    admin(&app, "DELETE", &format!("{path}/{team}"), None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
}

async fn only_admins_of_the_org_manage_teams_and_policies(app: TestApp) {
    create_team(&app, "platform", Some("read")).await;
    create_policy(&app, "p", policy("allow", "state:read", "workspace:*")).await;
    let member = login_as(&app, "alice", Role::Write).await;
    let doc = policy("allow", "*", "*");
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", teams_path(""), None),
        (
            "POST",
            teams_path(""),
            Some(json!({ "name": "mine", "role": "admin" })),
        ),
        ("GET", teams_path("/platform"), None),
        (
            "PATCH",
            teams_path("/platform"),
            Some(json!({ "role": "admin" })),
        ),
        ("DELETE", teams_path("/platform"), None),
        ("GET", teams_path("/platform/members"), None),
        ("PUT", teams_path("/platform/members/alice"), None),
        ("DELETE", teams_path("/platform/members/alice"), None),
        ("GET", policies_path(""), None),
        (
            "POST",
            policies_path(""),
            Some(json!({ "name": "mine", "document": doc })),
        ),
        ("GET", policies_path("/p"), None),
        ("PUT", policies_path("/p"), Some(json!({ "document": doc }))),
        ("DELETE", policies_path("/p"), None),
        ("GET", policies_path("/p/attachments"), None),
        (
            "POST",
            policies_path("/p/attachments"),
            Some(json!({ "user": "alice" })),
        ),
        ("DELETE", policies_path("/p/attachments/1"), None),
    ];
    for (method, path, body) in &calls {
        for (who, token, expected) in [
            ("writer token", &app.write_token, StatusCode::FORBIDDEN),
            ("read token", &app.read_token, StatusCode::FORBIDDEN),
            ("member", &member, StatusCode::FORBIDDEN),
            ("other org", &app.other_token, StatusCode::NOT_FOUND),
        ] {
            let resp = app.api(method, path, token, body.clone()).await;
            assert_eq!(
                resp.status,
                expected,
                "{who}: {method} {path}: {}",
                resp.text()
            );
        }
        let mut anonymous = crate::support::RequestBuilder::new(method, path);
        if let Some(body) = body {
            anonymous = anonymous
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = app.send(anonymous.build()).await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            resp.text()
        );
    }
    // Nothing changed.
    let team = admin(&app, "GET", &teams_path("/platform"), None)
        .await
        .json();
    assert_eq!(
        (team["role"].clone(), team["members"].clone()),
        (json!("read"), json!([]))
    );
    let list = admin(&app, "GET", &teams_path(""), None).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let attachments = admin(&app, "GET", &policies_path("/p/attachments"), None)
        .await
        .json();
    assert_eq!(attachments["data"], json!([]));
    assert_eq!(
        write(&app, "app", 1, &member).await,
        StatusCode::OK,
        "the member keeps their own role"
    );
}
