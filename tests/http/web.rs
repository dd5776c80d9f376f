//! The web UI in process: sign-in with CSRF, the states pages, the diff, force-unlock and
//! rollback as an admin and refused to a reader, escaping, and the headers of every page.

use axum::http::StatusCode;
use serde_json::json;
use terrace::identity::auth::Role;

use crate::support::browser::{Browser, hidden};
use crate::support::{ORG, OTHER_ORG, Resp, TestApp};

const PASSWORD: &str = "correct horse battery";
const WS: &str = "net";

on_every_backend! {
    pages_need_a_session_and_sign_in_returns_to_the_page,
    a_wrong_password_or_an_expired_form_is_said_in_words,
    the_states_pages_show_workspaces_versions_outputs_and_locks,
    the_diff_shows_added_changed_and_removed_with_secrets_masked,
    an_admin_force_unlocks_and_rolls_back_a_reader_is_refused,
    what_a_user_may_not_see_is_404_and_values_are_escaped,
    modules_are_browsed_and_searched_and_a_readme_runs_no_script,
}

async fn add_user(app: &TestApp, org: &str, name: &str, role: Role) {
    crate::support::add_user(app, org, name, role, PASSWORD).await;
}

/// Signs `user` in through the sign-in page; the browser keeps the session.
async fn signed_in(app: &TestApp, user: &str) -> Browser {
    let mut browser = Browser::new();
    let page = browser.get(app, "/ui/sign-in").await;
    page.assert_status(StatusCode::OK);
    let csrf = hidden(&page.text(), "csrf");
    let resp = browser
        .post_form(
            app,
            "/ui/sign-in",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", PASSWORD),
                ("next", "/"),
            ],
        )
        .await;
    resp.assert_status(StatusCode::SEE_OTHER);
    browser
}

fn location(resp: &Resp) -> String {
    resp.headers["location"].to_str().unwrap().to_string()
}

/// A state with one bucket per name in `buckets` (attribute `acl`), a sensitive attribute and
/// a sensitive output.
fn state(serial: i64, buckets: &[(&str, &str)], secret: &str) -> String {
    let resources: Vec<_> = buckets
        .iter()
        .map(|(name, acl)| {
            json!({
                "mode": "managed", "type": "aws_s3_bucket", "name": name,
                "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
                "instances": [{
                    "schema_version": 0,
                    "attributes": {"id": name, "acl": acl, "secret": secret},
                    "sensitive_attributes": [[{"type": "get_attr", "value": "secret"}]],
                }],
            })
        })
        .collect();
    json!({
        "version": 4, "terraform_version": "1.0.3", "serial": serial, "lineage": "lin",
        "outputs": {
            "url": {"value": format!("https://{serial}.example"), "type": "string"},
            "password": {"value": secret, "type": "string", "sensitive": true},
        },
        "resources": resources,
    })
    .to_string()
}

async fn write(app: &TestApp, body: String) {
    app.write_state(WS, body, None, &app.write_token)
        .await
        .assert_status(StatusCode::OK);
}

async fn pages_need_a_session_and_sign_in_returns_to_the_page(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    let mut browser = Browser::new();
    let path = format!("/ui/orgs/{ORG}/workspaces");
    let resp = browser.get(&app, &path).await;
    resp.assert_status(StatusCode::SEE_OTHER);
    let to = location(&resp);
    assert_eq!(to, "/ui/sign-in?next=%2Fui%2Forgs%2Facme%2Fworkspaces");

    let page = browser.get(&app, &to).await;
    page.assert_status(StatusCode::OK);
    let html = page.text();
    assert_eq!(hidden(&html, "next"), path);
    let csrf = hidden(&html, "csrf");
    let resp = browser
        .post_form(
            &app,
            "/ui/sign-in",
            &[
                ("csrf", &csrf),
                ("username", "Alice"),
                ("password", PASSWORD),
                ("next", &path),
            ],
        )
        .await;
    resp.assert_status(StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), path);
    let page = browser.get(&app, &path).await;
    page.assert_status(StatusCode::OK);
    assert!(page.text().contains("Signed in as <strong>alice</strong>"));

    // Elsewhere than this site, `next` is ignored.
    let page = browser.get(&app, "/ui/sign-in?next=//evil.example/x").await;
    assert_eq!(hidden(&page.text(), "next"), "/");

    // Signing out ends the session.
    let home = browser.get(&app, "/").await;
    home.assert_status(StatusCode::OK);
    let csrf = hidden(&home.text(), "csrf");
    let resp = browser
        .post_form(&app, "/ui/sign-out", &[("csrf", &csrf)])
        .await;
    resp.assert_status(StatusCode::SEE_OTHER);
    browser
        .get(&app, &path)
        .await
        .assert_status(StatusCode::SEE_OTHER);
}

async fn a_wrong_password_or_an_expired_form_is_said_in_words(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    let mut browser = Browser::new();
    let page = browser.get(&app, "/ui/sign-in").await;
    let csrf = hidden(&page.text(), "csrf");
    let resp = browser
        .post_form(
            &app,
            "/ui/sign-in",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", "wrong"),
            ],
        )
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    assert!(resp.text().contains("The user name or password is wrong."));
    assert!(
        resp.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    let resp = browser
        .post_form(
            &app,
            "/ui/sign-in",
            &[
                ("csrf", "forged"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(resp.text().contains("The form has expired"));
    assert!(
        !browser
            .cookies
            .iter()
            .any(|c| c.starts_with("terrace_session="))
    );
}

async fn the_states_pages_show_workspaces_versions_outputs_and_locks(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    write(&app, state(1, &[("logs", "private")], "hunter2")).await;
    write(&app, state(2, &[("logs", "public-read")], "hunter2")).await;
    app.lock(WS, "lock-1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let mut browser = signed_in(&app, "alice").await;

    let home = browser.get(&app, "/").await;
    home.assert_status(StatusCode::OK);
    assert!(home.text().contains(&format!("/ui/orgs/{ORG}/workspaces")));
    assert!(!home.text().contains(OTHER_ORG));

    let list = browser
        .get(&app, &format!("/ui/orgs/{ORG}/workspaces"))
        .await;
    list.assert_status(StatusCode::OK);
    let html = list.text();
    assert!(
        html.contains(&format!("/ui/orgs/{ORG}/workspaces/{WS}")),
        "{html}"
    );
    assert!(html.contains("token:writer"), "{html}");
    assert!(html.contains("locked"), "{html}");

    // The page shows the cost history as recorded; the API's history estimates what is new
    // (as the history job does every 30 s).
    let ws_page = format!("/ui/orgs/{ORG}/workspaces/{WS}");
    assert!(
        browser
            .get(&app, &ws_page)
            .await
            .text()
            .contains("No estimate yet.")
    );
    app.api(
        "GET",
        &format!("/api/v1/orgs/{ORG}/workspaces/{WS}/cost/history"),
        &app.read_token,
        None,
    )
    .await
    .assert_status(StatusCode::OK);
    let page = browser.get(&app, &ws_page).await;
    page.assert_status(StatusCode::OK);
    let html = page.text();
    assert!(html.contains("https://2.example"), "{html}");
    assert!(html.contains("(sensitive)"));
    assert!(
        !html.contains("hunter2"),
        "a sensitive output shown: {html}"
    );
    assert!(html.contains("/versions/1/download") && html.contains("/versions/2/download"));
    // Each version was estimated: the run-rate and its chart.
    assert!(
        html.contains("Estimated run-rate") && html.contains("<svg class=\"chart\""),
        "{html}"
    );
    // A reader gets no admin actions.
    assert!(
        !html.contains("Force unlock") && !html.contains("Roll back"),
        "{html}"
    );

    let download = browser
        .get(
            &app,
            &format!("/ui/orgs/{ORG}/workspaces/{WS}/versions/1/download"),
        )
        .await;
    download.assert_status(StatusCode::OK);
    assert_eq!(download.text(), state(1, &[("logs", "private")], "hunter2"));
    assert!(
        download.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("net-1.tfstate")
    );

    // Reading state through the UI is in the audit trail, by the user, like an API read.
    app.state.audit.flush().await;
    let trail = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/audit-events"),
            &app.admin_token,
            None,
        )
        .await
        .json();
    let reads = trail["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "user:alice" && e["action"] == "state:read")
        .count();
    assert!(reads > 0, "{trail}");
}

async fn the_diff_shows_added_changed_and_removed_with_secrets_masked(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    write(
        &app,
        state(1, &[("logs", "private"), ("old", "private")], "s3cr3t-one"),
    )
    .await;
    write(
        &app,
        state(
            2,
            &[("logs", "public-read"), ("new", "private")],
            "s3cr3t-two",
        ),
    )
    .await;
    let mut browser = signed_in(&app, "alice").await;

    let resp = browser
        .get(
            &app,
            &format!("/ui/orgs/{ORG}/workspaces/{WS}/diff?from=1&to=2"),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let html = resp.text();
    assert!(html.contains("1 added") && html.contains("1 changed") && html.contains("1 removed"));
    assert!(html.contains("aws_s3_bucket.new") && html.contains("aws_s3_bucket.old"));
    assert!(html.contains("public-read"), "{html}");
    assert!(!html.contains("s3cr3t"), "a sensitive value shown: {html}");

    let missing = browser
        .get(
            &app,
            &format!("/ui/orgs/{ORG}/workspaces/{WS}/diff?from=1&to=9"),
        )
        .await;
    missing.assert_status(StatusCode::NOT_FOUND);
    assert!(missing.text().contains("There is no such state version"));
    let junk = browser
        .get(&app, &format!("/ui/orgs/{ORG}/workspaces/{WS}/diff?from=x"))
        .await;
    junk.assert_status(StatusCode::BAD_REQUEST);
}

async fn an_admin_force_unlocks_and_rolls_back_a_reader_is_refused(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    add_user(&app, ORG, "root", Role::Admin).await;
    write(&app, state(1, &[("logs", "private")], "x")).await;
    write(&app, state(2, &[("logs", "public-read")], "x")).await;
    app.lock(WS, "lock-1", &app.write_token)
        .await
        .assert_status(StatusCode::OK);
    let ws_page = format!("/ui/orgs/{ORG}/workspaces/{WS}");

    // The reader sees no button, and a form made up by hand is refused.
    let mut reader = signed_in(&app, "alice").await;
    let page = reader.get(&app, &ws_page).await;
    let csrf = hidden(&page.text(), "csrf");
    let resp = reader
        .post_form(&app, &format!("{ws_page}/unlock"), &[("csrf", &csrf)])
        .await;
    resp.assert_status(StatusCode::FORBIDDEN);
    assert!(resp.text().contains("Not allowed"));
    reader
        .get(&app, &format!("{ws_page}/versions/1/rollback"))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    assert!(app.lock_holder(WS).await.is_some());

    let mut admin = signed_in(&app, "root").await;
    let page = admin.get(&app, &ws_page).await;
    let html = page.text();
    assert!(
        html.contains("Force unlock") && html.contains("Roll back to this"),
        "{html}"
    );
    let csrf = hidden(&html, "csrf");
    // Without the form's token nothing happens.
    admin
        .post_form(&app, &format!("{ws_page}/unlock"), &[("csrf", "nope")])
        .await
        .assert_status(StatusCode::BAD_REQUEST);
    assert!(app.lock_holder(WS).await.is_some());
    let resp = admin
        .post_form(&app, &format!("{ws_page}/unlock"), &[("csrf", &csrf)])
        .await;
    resp.assert_status(StatusCode::SEE_OTHER);
    assert!(app.lock_holder(WS).await.is_none());

    let confirm = admin
        .get(&app, &format!("{ws_page}/versions/1/rollback"))
        .await;
    confirm.assert_status(StatusCode::OK);
    assert!(confirm.text().contains("Roll net back to serial 1?"));
    let resp = admin
        .post_form(
            &app,
            &format!("{ws_page}/versions/1/rollback"),
            &[("csrf", &csrf)],
        )
        .await;
    resp.assert_status(StatusCode::SEE_OTHER);
    let versions = app.versions(WS).await;
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["serial"], 3);
    assert_eq!(versions[0]["source"], "rollback");
}

async fn what_a_user_may_not_see_is_404_and_values_are_escaped(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    let mut body: serde_json::Value = serde_json::from_str(&state(1, &[], "x")).unwrap();
    body["outputs"]["url"]["value"] = json!("<script>alert(1)</script>");
    write(&app, body.to_string()).await;
    let mut browser = signed_in(&app, "alice").await;

    let page = browser
        .get(&app, &format!("/ui/orgs/{ORG}/workspaces/{WS}"))
        .await;
    page.assert_status(StatusCode::OK);
    let html = page.text();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("alert(1)"), "{html}");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");

    // Another org, a workspace that does not exist, a name that is not one: all 404 pages.
    for path in [
        format!("/ui/orgs/{OTHER_ORG}/workspaces"),
        format!("/ui/orgs/{ORG}/workspaces/nope"),
        format!("/ui/orgs/{ORG}/workspaces/..%2Fx"),
    ] {
        let resp = browser.get(&app, &path).await;
        resp.assert_status(StatusCode::NOT_FOUND);
        assert!(resp.text().contains("Not found"), "{path}");
    }
}

async fn modules_are_browsed_and_searched_and_a_readme_runs_no_script(app: TestApp) {
    add_user(&app, ORG, "alice", Role::Read).await;
    let main_tf = "variable \"cidr\" {\n  type        = string\n  description = \"The block.\"\n}\n\
        output \"vpc_id\" {\n  value       = 1\n  description = \"The VPC id.\"\n}\n\
        resource \"aws_vpc\" \"this\" {}\n";
    let readme = "# VPC\n\nA network for <b>everything</b>.\n\n<script>alert(1)</script>\n\n\
        [docs](https://example.com/docs) [trap](javascript:alert(2))\n";
    for version in ["1.0.0", "1.2.0"] {
        let archive = crate::module_registry::targz(&[("main.tf", main_tf), ("README.md", readme)]);
        crate::module_registry::publish_as(
            &app,
            &format!("{ORG}/vpc/aws/{version}"),
            archive,
            Some(&app.write_token),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    crate::module_registry::publish(&app, "dns/aws", "0.1.0")
        .await
        .assert_status(StatusCode::CREATED);
    let mut browser = signed_in(&app, "alice").await;

    let list = browser.get(&app, "/ui/modules").await;
    list.assert_status(StatusCode::OK);
    let html = list.text();
    assert!(html.contains("/ui/modules/acme/vpc/aws") && html.contains("/ui/modules/acme/dns/aws"));
    let found = browser.get(&app, "/ui/modules?q=vp").await.text();
    assert!(
        found.contains("/ui/modules/acme/vpc/aws") && !found.contains("acme/dns/aws"),
        "{found}"
    );
    let none = browser
        .get(&app, "/ui/modules?q=%3Cnothing%3E")
        .await
        .text();
    assert!(
        none.contains("No module matches") && !none.contains("<nothing>"),
        "{none}"
    );

    let page = browser.get(&app, "/ui/modules/acme/vpc/aws").await;
    page.assert_status(StatusCode::OK);
    let html = page.text();
    assert!(html.contains("1.2.0") && html.contains("The block.") && html.contains("The VPC id."));
    assert!(html.contains("aws_vpc.this"), "{html}");
    // In process there is no Host: the snippet names `localhost`.
    assert!(
        html.contains("source  = \"localhost/acme/vpc/aws\""),
        "{html}"
    );
    assert!(html.contains("<h1>VPC</h1>") && html.contains("href=\"https://example.com/docs\""));
    assert!(
        !html.contains("<script>") && !html.contains("<b>everything"),
        "{html}"
    );
    assert!(!html.to_lowercase().contains("javascript:"), "{html}");

    let old = browser
        .get(&app, "/ui/modules/acme/vpc/aws?version=1.0.0")
        .await;
    old.assert_status(StatusCode::OK);
    assert!(old.text().contains("version = \"1.0.0\""), "{}", old.text());
    browser
        .get(&app, "/ui/modules/acme/vpc/aws?version=9.9.9")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    browser
        .get(&app, "/ui/modules/other/vpc/aws")
        .await
        .assert_status(StatusCode::NOT_FOUND);
}
