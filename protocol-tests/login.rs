//! `terraform login` with the real Terraform: the test plays the browser (login form, CSRF
//! cookie, redirect to the CLI's loopback listener); the saved token then installs a private
//! module and carries exactly the user's rights.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::harness::{Role, Terrace, Workdir};
use crate::module_registry::{installed, main_tf, publish};

const PASSWORD: &str = "correct horse battery staple";

/// A port nothing listens on now; Terraform will listen there (`ports = [P, P+1]` pins P).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// `name="…" value="…"` of every `<input>` in `html`, entities decoded.
fn form_fields(html: &str) -> Vec<(String, String)> {
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let end = tag[start..].find('"')? + start;
        Some(html_escape::decode_html_entities(&tag[start..end]).into_owned())
    };
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            Some((
                attribute(tag, "name")?,
                attribute(tag, "value").unwrap_or_default(),
            ))
        })
        .collect()
}

/// The `name=value` part of every `Set-Cookie`, joined for a `Cookie` header.
fn cookies(response: &reqwest::blocking::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Signs in through the login page at `url` and returns where the server redirects to.
fn sign_in(server: &Terrace, url: &str, user: &str, password: &str) -> String {
    let browser = Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(
                &std::fs::read(server.ca_path()).expect("read the server CA"),
            )
            .expect("parse the server CA"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build the browser client");
    let page = browser.get(url).send().expect("GET the login page");
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = cookies(&page);
    assert!(cookie.contains("terrace_csrf="), "no CSRF cookie: {cookie}");
    let html = page.text().expect("read the login page");
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
    assert!(html.contains("method=\"post\""), "{html}");

    let mut fields = form_fields(&html);
    fields.retain(|(name, _)| name != "username" && name != "password");
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    let submitted = browser
        .post(format!("{}/oauth/authorize", server.base_url()))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish(),
        )
        .send()
        .expect("submit the login form");
    assert!(
        submitted.status().is_redirection(),
        "expected a redirect to Terraform, got {}",
        submitted.status()
    );
    submitted
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
        .to_owned()
}

#[test]
fn terraform_login_saves_a_token_that_installs_modules_with_the_users_rights() {
    require_terraform!();
    let port = free_port();
    let ports = format!("{port}-{}", port + 1);
    let server = Terrace::start_tls_with(&[("TERRACE_LOGIN_PORTS", &ports)]);
    let created = server.cli_with_stdin(
        &["user", "create", "alice", "--org", "acme", "--role", "read"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        created.status.success(),
        "user create failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    publish(&server, "1.0.0");

    let workdir =
        Workdir::registry(&server, None, &main_tf(&server, &[("x", "1.0.0")])).with_own_home();
    let mut login = workdir.spawn_interactive(&["login", &server.host()]);
    login.wait_for_stdout("Enter a value:", Duration::from_secs(60));
    login.write_stdin("yes\n");
    login.wait_for_stdout("/oauth/authorize?", Duration::from_secs(60));
    let stdout = login.stdout_so_far();
    let url = stdout
        .split_whitespace()
        .find(|word| word.contains("/oauth/authorize?"))
        .expect("the login URL")
        .to_owned();
    assert!(url.contains("code_challenge_method=S256"), "{url}");

    let callback = sign_in(&server, &url, "alice", PASSWORD);
    assert!(
        callback.starts_with(&format!("http://localhost:{port}/login?code=")),
        "{callback}"
    );
    // Terraform listens on 127.0.0.1 only; go there directly, as a browser falling back
    // from ::1 would.
    let callback = callback.replace("http://localhost:", "http://127.0.0.1:");
    crate::harness::deliver_login_code(&callback);
    let finished = login.finish();
    finished.assert_success();
    assert!(finished.stdout.contains("Success!"), "{finished}");

    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(workdir.home().join(".terraform.d/credentials.tfrc.json"))
            .expect("terraform login saved credentials"),
    )
    .expect("credentials are JSON");
    let token = saved["credentials"][server.host()]["token"]
        .as_str()
        .expect("a token for the host")
        .to_owned();

    // The saved token installs a private module.
    workdir.terraform(&["init"]).assert_success();
    assert_eq!(installed(&workdir), json!({"x": "1.0.0"}));

    // A read-role user may not publish…
    let refused = server
        .http()
        .put(format!(
            "{}/api/v1/modules/acme/vpc/aws/2.0.0",
            server.base_url()
        ))
        .header("Authorization", format!("Bearer {token}"))
        .body(Vec::new())
        .send()
        .expect("send PUT module version");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // …nor write state, though reading it works.
    let mut state = Workdir::new(&server, "prod", Role::Read);
    state.trust(&server);
    state.set_password(&token);
    state.terraform(&["init"]).assert_success();
    let apply = state.terraform(&["apply", "-auto-approve"]);
    apply.assert_failure();
    // Terraform's wording for a 403 (a 401 reads "requires auth").
    assert!(apply.stderr.contains("endpoint invalid auth"), "{apply}");
    assert!(server.pull_state("prod").is_none(), "nothing was written");
    state.terraform(&["plan", "-lock=false"]).assert_success();
}
