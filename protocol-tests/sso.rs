//! `terraform login` through single sign-on: the real Terraform, a real `terrace serve` with
//! passwords turned off, and a real OpenID Connect provider (`oidc-provider`,
//! `TERRACE_TEST_OIDC_ISSUER`). The test plays the browser: "Sign in with …" on Terrace's
//! page, the provider's login and consent forms, back to Terrace, then to Terraform's loopback
//! listener. The saved token carries the rights of the team the user's IdP group maps to.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::harness::{Role, Terrace, Workdir};
use crate::module_registry::{installed, main_tf, publish};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A browser: follows nothing by itself, keeps cookies per origin.
struct Browser {
    client: Client,
    jar: Vec<(String, String, String)>,
}

impl Browser {
    fn new(server: &Terrace) -> Browser {
        let ca = std::fs::read(server.ca_path()).expect("read the server CA");
        let client = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("parse the CA"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the browser client");
        Browser {
            client,
            jar: Vec::new(),
        }
    }

    fn origin(url: &str) -> String {
        let url = url::Url::parse(url).expect("a URL");
        url.origin().ascii_serialization()
    }

    /// GET or POST (`body`), remembering the answer's cookies; returns (status, location, body).
    fn send(&mut self, url: &str, body: Option<String>) -> (StatusCode, Option<String>, String) {
        let origin = Self::origin(url);
        let cookie = self
            .jar
            .iter()
            .filter(|(o, _, _)| *o == origin)
            .map(|(_, n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match body {
            Some(body) => self
                .client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
            None => self.client.get(url),
        };
        let response = request
            .header("cookie", cookie)
            .send()
            .expect("browser request");
        for value in response.headers().get_all("set-cookie") {
            let pair = value
                .to_str()
                .expect("well-formed")
                .split(';')
                .next()
                .expect("well-formed");
            let (name, v) = pair.split_once('=').expect("well-formed");
            self.jar.retain(|(o, n, _)| !(*o == origin && n == name));
            if !v.is_empty() {
                self.jar
                    .push((origin.clone(), name.to_string(), v.to_string()));
            }
        }
        let status = response.status();
        let location = response.headers().get("location").map(|l| {
            url::Url::parse(url)
                .expect("well-formed")
                .join(l.to_str().expect("well-formed"))
                .expect("well-formed")
                .to_string()
        });
        (status, location, response.text().unwrap_or_default())
    }
}

#[test]
fn terraform_login_through_single_sign_on_saves_a_token_with_the_groups_team_rights() {
    require_terraform!();
    let Some(issuer) = crate::testkit::required_var("TERRACE_TEST_OIDC_ISSUER") else {
        return;
    };
    let port = free_port();
    let ports = format!("{port}-{}", port + 1);
    let server = Terrace::start_tls_with(&[
        ("TERRACE_LOGIN_PORTS", &ports),
        ("TERRACE_OIDC_ISSUER", &issuer),
        ("TERRACE_OIDC_CLIENT_ID", "terrace"),
        ("TERRACE_OIDC_CLIENT_SECRET", "terrace-test-secret"),
        ("TERRACE_OIDC_SCOPES", "openid profile email groups"),
        ("TERRACE_LOCAL_PASSWORDS", "off"),
    ]);
    // bob is in the provider's `engineers` group, mapped to a read team.
    let mapped = server
        .http()
        .put(format!(
            "{}/api/v1/orgs/acme/teams/engineers",
            server.base_url()
        ))
        .header("Authorization", server.bearer(Role::Admin))
        .json(&json!({"role": "read", "idp_groups": ["engineers"]}))
        .send()
        .expect("map the group");
    assert_eq!(mapped.status(), StatusCode::OK);
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

    // Terrace's page: only "Sign in with …", passwords are off.
    let mut browser = Browser::new(&server);
    let (status, _, html) = browser.send(&url, None);
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sign in with 127.0.0.1"), "{html}");
    assert!(!html.contains("type=\"password\""), "{html}");
    let marker = "<a class=\"sso\" href=\"";
    let start = html.find(marker).expect("the SSO link") + marker.len();
    let href = html_escape::decode_html_entities(
        &html[start..start + html[start..].find('"').expect("well-formed")],
    )
    .into_owned();

    // Through the provider's pages and back to Terrace, until Terrace sends the browser to
    // Terraform's listener.
    let mut next = format!("{}{href}", server.base_url());
    let mut body: Option<String> = None;
    let callback = loop {
        if next.starts_with(&format!("http://localhost:{port}/login")) {
            break next;
        }
        let (status, location, html) = browser.send(&next, body.take());
        if let Some(location) = location {
            next = location;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{next}: {html}");
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form at {next}: {html}"));
        next = url::Url::parse(&next)
            .expect("well-formed")
            .join(action)
            .expect("well-formed")
            .to_string();
        body = Some(if html.contains("name=\"login\"") {
            form(&[("prompt", "login"), ("login", "bob"), ("password", "any")])
        } else {
            form(&[("prompt", "consent")])
        });
    };
    assert!(callback.contains("code="), "{callback}");
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

    // The user created at sign-in, with the read role of the mapped team.
    let me: Value = server
        .http()
        .get(format!("{}/api/v1/user", server.base_url()))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .expect("GET /api/v1/user")
        .json()
        .expect("JSON");
    assert_eq!(me["name"], "bob");
    assert_eq!(me["orgs"], json!([{"name": "acme", "role": "read"}]));

    // The saved token installs a private module, and may not publish.
    workdir.terraform(&["init"]).assert_success();
    assert_eq!(installed(&workdir), json!({"x": "1.0.0"}));
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
}
