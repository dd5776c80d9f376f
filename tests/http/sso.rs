//! Single sign-on: `terraform login`'s page through a real OpenID Connect provider
//! (`oidc-provider`, `TERRACE_TEST_OIDC_ISSUER`, started by scripts/ensure-oidc-provider), and
//! forged ID tokens through the callback against an issuer whose keys the test holds; users
//! created at first sign-in, IdP groups applied to teams at each sign-in, password policy, an
//! issuer that is down, and the audit trail of it all.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Value, json};
use terrace::config::{LocalPasswords, OidcSettings};
use terrace::identity::auth::Role;
use terrace::identity::login::LoginSettings;
use terrace::infra::db::Db;

use crate::support::{ORG, RequestBuilder, Resp, TestApp};

on_both_databases!(
    sso_through_a_real_provider_ends_in_a_terraform_token_with_the_groups_teams,
    a_group_removed_at_the_provider_takes_the_team_away_at_the_next_sign_in,
    forged_id_tokens_are_refused,
    state_must_match_the_browser_and_is_single_use,
    the_issuers_key_rotation_is_followed,
    an_issuer_that_is_down_gives_a_clear_error_and_admins_keep_their_passwords,
    local_passwords_can_be_turned_off,
    users_are_linked_by_issuer_and_subject_not_by_name,
    the_mapping_leaves_memberships_made_by_hand_alone,
    a_browser_sign_in_without_terraform_starts_a_session,
);

const VERIFIER: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.123456789";
const REDIRECT: &str = "http://localhost:10000/login";
/// Where Terrace tells the issuer to send browsers back (nothing listens: the test takes the
/// redirect and hands it to the in-process router).
const CALLBACK: &str = "http://127.0.0.1:9/oauth/sso/callback";
const PASSWORD: &str = "correct horse battery";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn challenge(verifier: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn authz_query() -> String {
    form(&[
        ("client_id", "terraform-cli"),
        ("code_challenge", &challenge(VERIFIER)),
        ("code_challenge_method", "S256"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("state", "st-123"),
    ])
}

fn settings(issuer: &str, local_passwords: LocalPasswords) -> LoginSettings {
    LoginSettings {
        oidc: Some(OidcSettings {
            issuer: issuer.to_string(),
            client_id: "terrace".into(),
            client_secret: "terrace-test-secret".into(),
            scopes: vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "groups".into(),
            ],
            groups_claim: "groups".into(),
        }),
        local_passwords,
        ..LoginSettings::default()
    }
}

fn location(resp: &Resp) -> String {
    assert!(
        resp.status.is_redirection(),
        "{}: {}",
        resp.status,
        resp.text()
    );
    resp.headers["location"].to_str().unwrap().to_string()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A browser on Terrace's pages: keeps Terrace's cookies.
#[derive(Default)]
struct Browser {
    cookies: Vec<String>,
}

impl Browser {
    async fn get(&mut self, app: &TestApp, path: &str) -> Resp {
        // The host the issuer is told to send browsers back to.
        let mut request = RequestBuilder::new("GET", path).header("host", "127.0.0.1:9");
        if !self.cookies.is_empty() {
            request = request.header("cookie", &self.cookies.join("; "));
        }
        let resp = app.send(request.build()).await;
        for value in resp.headers.get_all("set-cookie") {
            let pair = value
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string();
            let name = pair.split('=').next().unwrap().to_string();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            if !pair.ends_with('=') {
                self.cookies.push(pair);
            }
        }
        resp
    }

    /// Opens `terraform login`'s page, follows "Sign in with …"; returns the issuer URL.
    async fn start(&mut self, app: &TestApp) -> String {
        let page = self
            .get(app, &format!("/oauth/authorize?{}", authz_query()))
            .await;
        page.assert_status(StatusCode::OK);
        let html = page.text();
        let marker = "<a class=\"sso\" href=\"";
        let start = html
            .find(marker)
            .unwrap_or_else(|| panic!("no SSO link: {html}"))
            + marker.len();
        let end = html[start..].find('"').unwrap() + start;
        let href = html_escape::decode_html_entities(&html[start..end]).into_owned();
        assert!(html.contains("Sign in with 127.0.0.1"), "{html}");
        let started = self.get(app, &href).await;
        location(&started)
    }

    /// Hands the issuer's redirect back to Terrace.
    async fn callback(&mut self, app: &TestApp, redirect: &str) -> Resp {
        assert!(redirect.starts_with(CALLBACK), "{redirect}");
        let path = &redirect["http://127.0.0.1:9".len()..];
        self.get(app, path).await
    }
}

/// The code for Terraform's listener in a redirect, exchanged for the login token.
async fn terraform_token(app: &TestApp, resp: &Resp) -> String {
    let to = location(resp);
    assert!(to.starts_with(REDIRECT), "{to}");
    assert_eq!(query_value(&to, "state").as_deref(), Some("st-123"));
    let code = query_value(&to, "code").unwrap();
    let body = form(&[
        ("client_id", "terraform-cli"),
        ("code", &code),
        ("code_verifier", VERIFIER),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
    ]);
    let request = RequestBuilder::new("POST", "/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let resp = app.send(request.build()).await;
    resp.assert_status(StatusCode::OK);
    resp.json()["access_token"].as_str().unwrap().to_string()
}

async fn whoami(app: &TestApp, token: &str) -> Value {
    let resp = app.api("GET", "/api/v1/user", token, None).await;
    resp.assert_status(StatusCode::OK);
    resp.json()
}

async fn map_team(app: &TestApp, team: &str, role: &str, groups: &[&str]) {
    let resp = app
        .api(
            "PUT",
            &format!("/api/v1/orgs/{ORG}/teams/{team}"),
            &app.admin_token,
            Some(json!({"role": role, "idp_groups": groups})),
        )
        .await;
    resp.assert_status(StatusCode::OK);
    let mut expected: Vec<&str> = groups.to_vec();
    expected.sort();
    assert_eq!(resp.json()["idp_groups"], json!(expected));
}

/// (actor, action, resource, outcome) of every event, oldest first.
async fn events(app: &TestApp) -> Vec<(String, String, String, String)> {
    app.state.audit.flush().await;
    const SQL: &str = "SELECT actor, action, resource, outcome FROM audit_events ORDER BY id";
    match app.db() {
        Db::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await.unwrap(),
    }
}

fn has_event(events: &[(String, String, String, String)], action: &str, resource: &str) -> bool {
    events
        .iter()
        .any(|(_, a, r, o)| a == action && r == resource && o == "success")
}

// --- the real provider ---------------------------------------------------------------------

fn real_issuer() -> Option<String> {
    crate::testkit::required_var("TERRACE_TEST_OIDC_ISSUER")
}

/// The provider's pages, driven like a browser: follows redirects, keeps cookies, submits
/// the login form as `user` and the consent form, until the provider sends the browser to
/// Terrace's callback; returns that URL.
async fn provider_sign_in(authorize_url: &str, user: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut jar: Vec<(String, String)> = Vec::new();
    let mut url = authorize_url.to_string();
    let mut method_post: Option<String> = None;
    for _ in 0..20 {
        if url.starts_with(CALLBACK) {
            return url;
        }
        let cookie = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match method_post.take() {
            Some(body) => client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
            None => client.get(&url),
        };
        let resp = request.header("cookie", cookie).send().await.unwrap();
        for value in resp.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, v) = pair.split_once('=').unwrap();
            jar.retain(|(n, _)| n != name);
            if !v.is_empty() {
                jar.push((name.to_string(), v.to_string()));
            }
        }
        let base = url::Url::parse(&url).unwrap();
        if resp.status().is_redirection() {
            let to = resp.headers()["location"].to_str().unwrap();
            url = base.join(to).unwrap().to_string();
            continue;
        }
        let status = resp.status();
        let html = resp.text().await.unwrap();
        assert_eq!(status, 200, "{url}: {html}");
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form at {url}: {html}"));
        url = base.join(action).unwrap().to_string();
        method_post = Some(if html.contains("name=\"login\"") {
            form(&[("prompt", "login"), ("login", user), ("password", "any")])
        } else {
            form(&[("prompt", "consent")])
        });
    }
    panic!("the provider never sent the browser back to Terrace");
}

async fn set_provider_groups(issuer: &str, user: &str, groups: &[&str]) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resp = reqwest::Client::new()
        .post(format!("{issuer}/test/users/{user}/groups"))
        .body(json!(groups).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

async fn sso_through_a_real_provider_ends_in_a_terraform_token_with_the_groups_teams(app: TestApp) {
    let Some(issuer) = real_issuer() else { return };
    map_team(&app, "platform", "admin", &["platform-admins"]).await;
    map_team(&app, "readers", "read", &["engineers", "auditors"]).await;
    let app = app.with_login(settings(&issuer, LocalPasswords::On));

    let mut browser = Browser::default();
    let to_issuer = browser.start(&app).await;
    assert!(
        to_issuer.starts_with(&format!("{issuer}/auth?")),
        "{to_issuer}"
    );
    // Authorization code flow with PKCE (S256), state and nonce.
    assert_eq!(
        query_value(&to_issuer, "response_type").as_deref(),
        Some("code")
    );
    assert_eq!(
        query_value(&to_issuer, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_value(&to_issuer, "nonce").is_some_and(|n| n.len() >= 32));
    assert!(query_value(&to_issuer, "state").is_some_and(|s| s.len() >= 32));

    let back = provider_sign_in(&to_issuer, "alice").await;
    let done = browser.callback(&app, &back).await;
    let token = terraform_token(&app, &done).await;

    // A user of their own, with the highest role of the teams their groups map to.
    let me = whoami(&app, &token).await;
    assert_eq!(me["name"], "alice");
    assert_eq!(me["orgs"], json!([{"name": "acme", "role": "admin"}]));
    let teams = app
        .api(
            "GET",
            "/api/v1/orgs/acme/teams/platform/members",
            &token,
            None,
        )
        .await;
    teams.assert_status(StatusCode::OK);
    assert_eq!(teams.json()["data"], json!([{"name": "alice"}]));

    // The browser is now signed in: the next `terraform login` only asks for consent.
    let page = browser
        .get(&app, &format!("/oauth/authorize?{}", authz_query()))
        .await;
    assert!(
        page.text().contains("Signed in as <strong>alice</strong>"),
        "{}",
        page.text()
    );

    let trail = events(&app).await;
    assert!(
        has_event(&trail, "user:create-jit", "user:alice"),
        "{trail:?}"
    );
    assert!(
        has_event(&trail, "user:sso-login", "user:alice"),
        "{trail:?}"
    );
    assert!(
        has_event(&trail, "team:join-by-idp-group", "team:acme/platform"),
        "{trail:?}"
    );
    assert!(
        has_event(&trail, "team:join-by-idp-group", "team:acme/readers"),
        "{trail:?}"
    );
}

async fn a_group_removed_at_the_provider_takes_the_team_away_at_the_next_sign_in(app: TestApp) {
    let Some(issuer) = real_issuer() else { return };
    // This scenario's own users (one per database, as both run at once): their groups
    // change at the provider.
    let user = match app.backend {
        crate::support::Backend::Sqlite => "dave",
        _ => "ed",
    };
    set_provider_groups(&issuer, user, &["engineers"]).await;
    map_team(&app, "writers", "write", &["engineers"]).await;
    let app = app.with_login(settings(&issuer, LocalPasswords::On));

    let mut browser = Browser::default();
    let to_issuer = browser.start(&app).await;
    let back = provider_sign_in(&to_issuer, user).await;
    let first = terraform_token(&app, &browser.callback(&app, &back).await).await;
    assert_eq!(
        whoami(&app, &first).await["orgs"],
        json!([{"name": "acme", "role": "write"}])
    );

    set_provider_groups(&issuer, user, &[]).await;
    let mut browser = Browser::default();
    let to_issuer = browser.start(&app).await;
    let back = provider_sign_in(&to_issuer, user).await;
    let second = terraform_token(&app, &browser.callback(&app, &back).await).await;
    // Both the new token and the one from before lose the team (and the org membership the
    // mapping had made) at once: a login token's rights are read on every request.
    for token in [&first, &second] {
        assert_eq!(whoami(&app, token).await["orgs"], json!([]));
        app.get_state("prod", token)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    let trail = events(&app).await;
    assert!(
        has_event(&trail, "team:leave-by-idp-group", "team:acme/writers"),
        "{trail:?}"
    );
    set_provider_groups(&issuer, user, &["engineers"]).await;
}

// --- an issuer whose keys the test holds ---------------------------------------------------

/// An ES256 key pair with its key id.
struct TestKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &str) -> TestKey {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let public = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": b64(&public[1..33]), "y": b64(&public[33..65]),
        });
        TestKey {
            kid: kid.to_string(),
            pkcs8,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

/// What the fake issuer serves and saw.
#[derive(Default)]
struct IssuerState {
    jwks: Vec<Value>,
    /// The next token endpoint answer's `id_token`.
    id_token: String,
    /// The token requests' bodies.
    requests: Vec<String>,
}

struct FakeIssuer {
    url: String,
    state: Arc<Mutex<IssuerState>>,
}

impl FakeIssuer {
    async fn start(keys: &[&TestKey]) -> FakeIssuer {
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(IssuerState {
            jwks: keys.iter().map(|k| k.jwk.clone()).collect(),
            ..IssuerState::default()
        }));
        let discovery = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        });
        let jwks_state = state.clone();
        let token_state = state.clone();
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let discovery = discovery.clone();
                    async move { axum::Json(discovery) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let keys = jwks_state.lock().unwrap().jwks.clone();
                    async move { axum::Json(json!({ "keys": keys })) }
                }),
            )
            .route(
                "/token",
                post(move |body: String| {
                    let mut state = token_state.lock().unwrap();
                    state.requests.push(body);
                    let answer = json!({
                        "access_token": "opaque", "token_type": "Bearer",
                        "id_token": state.id_token,
                    });
                    async move { axum::Json(answer) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeIssuer { url, state }
    }

    fn claims(&self, sub: &str, nonce: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.url, "aud": "terrace", "sub": sub, "nonce": nonce,
            "iat": now, "exp": now + 300, "preferred_username": sub,
            "groups": ["engineers"],
        })
    }

    fn answer_with(&self, id_token: &str) {
        self.state.lock().unwrap().id_token = id_token.to_string();
    }
}

/// Starts a sign-in in a fresh browser; returns the browser, the state and the nonce.
async fn begin(app: &TestApp) -> (Browser, String, String) {
    let mut browser = Browser::default();
    let to_issuer = browser.start(app).await;
    let state = query_value(&to_issuer, "state").unwrap();
    let nonce = query_value(&to_issuer, "nonce").unwrap();
    (browser, state, nonce)
}

/// Finishes the sign-in `state` with whatever ID token the issuer was told to answer with.
async fn finish(app: &TestApp, browser: &mut Browser, state: &str) -> Resp {
    let back = format!("{CALLBACK}?code=the-code&{}", form(&[("state", state)]));
    browser.callback(app, &back).await
}

/// Makes a forged ID token for a sign-in's nonce.
type Forge<'a> = Box<dyn Fn(&str) -> String + 'a>;

async fn forged_id_tokens_are_refused(app: TestApp) {
    let key = TestKey::new("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::On));

    // The genuine article works, and PKCE's verifier went to the token endpoint.
    let (mut browser, state, nonce) = begin(&app).await;
    issuer.answer_with(&key.sign(&issuer.claims("erin", &nonce)));
    let done = finish(&app, &mut browser, &state).await;
    let token = terraform_token(&app, &done).await;
    assert_eq!(whoami(&app, &token).await["name"], "erin");
    let sent = issuer
        .state
        .lock()
        .unwrap()
        .requests
        .last()
        .cloned()
        .unwrap();
    assert!(sent.contains("grant_type=authorization_code"), "{sent}");
    assert!(sent.contains("code_verifier="), "{sent}");
    let used_nonce = nonce;

    let impostor = TestKey::new("k1");
    let hs_key = jsonwebtoken::EncodingKey::from_secret(b"terrace-test-secret");
    let cases: Vec<(&str, Forge)> = vec![
        (
            "signature does not verify",
            Box::new(|nonce: &str| impostor.sign(&issuer.claims("erin", nonce))),
        ),
        (
            "not a signed JWT",
            Box::new(|nonce: &str| {
                let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
                let body = b64(issuer.claims("erin", nonce).to_string().as_bytes());
                format!("{header}.{body}.")
            }),
        ),
        (
            "not signed with the issuer's private key",
            Box::new(|nonce: &str| {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = Some("k1".into());
                jsonwebtoken::encode(&header, &issuer.claims("erin", nonce), &hs_key).unwrap()
            }),
        ),
        (
            "issued to another client (aud)",
            Box::new(|nonce: &str| {
                let mut claims = issuer.claims("erin", nonce);
                claims["aud"] = json!("someone-else");
                key.sign(&claims)
            }),
        ),
        (
            "it has expired",
            Box::new(|nonce: &str| {
                let mut claims = issuer.claims("erin", nonce);
                let past = chrono::Utc::now().timestamp() - 3600;
                claims["iat"] = json!(past - 300);
                claims["exp"] = json!(past);
                key.sign(&claims)
            }),
        ),
        (
            "another issuer (iss)",
            Box::new(|nonce: &str| {
                let mut claims = issuer.claims("erin", nonce);
                claims["iss"] = json!("https://idp.example.com");
                key.sign(&claims)
            }),
        ),
        (
            "its nonce is not this sign-in's",
            // A token minted for an earlier sign-in, replayed into this one.
            Box::new(|_nonce: &str| key.sign(&issuer.claims("erin", &used_nonce))),
        ),
        (
            "does not publish",
            Box::new(|nonce: &str| TestKey::new("k-unknown").sign(&issuer.claims("erin", nonce))),
        ),
    ];
    for (expected, forge) in &cases {
        let (mut browser, state, nonce) = begin(&app).await;
        issuer.answer_with(&forge(&nonce));
        let resp = finish(&app, &mut browser, &state).await;
        assert_eq!(
            resp.status,
            StatusCode::UNAUTHORIZED,
            "{expected}: {}",
            resp.text()
        );
        assert!(
            resp.text().contains(expected),
            "{expected}: {}",
            resp.text()
        );
        assert!(resp.headers.get("location").is_none());
    }
    // None of them signed anyone in.
    let trail = events(&app).await;
    let refused = trail
        .iter()
        .filter(|(actor, a, _, o)| a == "user:sso-login" && o == "denied" && actor == "anonymous")
        .count();
    assert_eq!(refused, cases.len(), "{trail:?}");
    let created = trail
        .iter()
        .filter(|(_, a, _, _)| a == "user:create-jit")
        .count();
    assert_eq!(created, 1, "{trail:?}");
}

async fn state_must_match_the_browser_and_is_single_use(app: TestApp) {
    let key = TestKey::new("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::On));

    // Another browser's state (a login CSRF): refused, and the sign-in stays usable.
    let (mut victim, state, nonce) = begin(&app).await;
    let (mut attacker, other_state, _) = begin(&app).await;
    issuer.answer_with(&key.sign(&issuer.claims("frank", &nonce)));
    let resp = finish(&app, &mut attacker, &state).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        resp.text().contains("state does not match"),
        "{}",
        resp.text()
    );

    let done = finish(&app, &mut victim, &state).await;
    terraform_token(&app, &done).await;
    // A replay of the same callback (its cookie still in hand) is refused.
    victim.cookies.push(format!("terrace_sso_state={state}"));
    let replay = finish(&app, &mut victim, &state).await;
    replay.assert_status(StatusCode::BAD_REQUEST);
    assert!(replay.text().contains("already used"), "{}", replay.text());

    // A browser sent back with a state other than its own is refused too.
    let (mut browser, _, _) = begin(&app).await;
    let resp = finish(&app, &mut browser, &other_state).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        resp.text().contains("state does not match"),
        "{}",
        resp.text()
    );

    // The issuer's own refusal is shown, not followed.
    let (mut browser, state, _) = begin(&app).await;
    let back = format!(
        "{CALLBACK}?error=access_denied&{}",
        form(&[("state", &state)])
    );
    let resp = browser.callback(&app, &back).await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert!(resp.text().contains("access_denied"));
}

async fn the_issuers_key_rotation_is_followed(app: TestApp) {
    let old = TestKey::new("2026-01");
    let new = TestKey::new("2026-02");
    let issuer = FakeIssuer::start(&[&old]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::On));

    let (mut browser, state, nonce) = begin(&app).await;
    issuer.answer_with(&old.sign(&issuer.claims("gina", &nonce)));
    terraform_token(&app, &finish(&app, &mut browser, &state).await).await;

    // The issuer rotates: publishes the new key, drops the old one, signs with the new one.
    issuer.state.lock().unwrap().jwks = vec![new.jwk.clone()];
    let (mut browser, state, nonce) = begin(&app).await;
    issuer.answer_with(&new.sign(&issuer.claims("gina", &nonce)));
    terraform_token(&app, &finish(&app, &mut browser, &state).await).await;

    // A token under the retired key no longer verifies once the new JWKS has been read.
    let (mut browser, state, nonce) = begin(&app).await;
    issuer.answer_with(&old.sign(&issuer.claims("gina", &nonce)));
    finish(&app, &mut browser, &state)
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
}

async fn add_password_user(app: &TestApp, name: &str, role: Role) {
    crate::support::add_user(app, ORG, name, role, PASSWORD).await;
}

/// Submits the password form of `terraform login`'s page.
async fn password_sign_in(app: &TestApp, user: &str) -> Resp {
    let mut browser = Browser::default();
    let page = browser
        .get(app, &format!("/oauth/authorize?{}", authz_query()))
        .await;
    let html = page.text();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).unwrap_or_else(|| panic!("{html}")) + marker.len();
    let csrf = html[start..start + html[start..].find('"').unwrap()].to_string();
    let challenge = challenge(VERIFIER);
    let body = form(&[
        ("client_id", "terraform-cli"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("state", "st-123"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("csrf", &csrf),
        ("username", user),
        ("password", PASSWORD),
    ]);
    let request = RequestBuilder::new("POST", "/oauth/authorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &browser.cookies.join("; "))
        .body(body);
    app.send(request.build()).await
}

async fn an_issuer_that_is_down_gives_a_clear_error_and_admins_keep_their_passwords(app: TestApp) {
    add_password_user(&app, "root", Role::Admin).await;
    add_password_user(&app, "dev", Role::Write).await;
    // Nothing listens on port 1.
    let app = app.with_login(settings("http://127.0.0.1:1", LocalPasswords::Admins));

    let mut browser = Browser::default();
    let page = browser
        .get(&app, &format!("/oauth/authorize?{}", authz_query()))
        .await;
    assert!(page.text().contains("Sign in with 127.0.0.1"));
    let start = browser
        .get(&app, &format!("/oauth/sso/start?{}", authz_query()))
        .await;
    start.assert_status(StatusCode::BAD_GATEWAY);
    let text = start.text();
    assert!(
        text.contains("identity provider http://127.0.0.1:1 cannot be reached"),
        "{text}"
    );
    assert!(text.contains("administrators can still sign in"), "{text}");

    // The break-glass path: an org admin signs in with a password; others may not.
    let token = terraform_token(&app, &password_sign_in(&app, "root").await).await;
    assert_eq!(whoami(&app, &token).await["name"], "root");
    let refused = password_sign_in(&app, "dev").await;
    refused.assert_status(StatusCode::FORBIDDEN);
    assert!(refused.text().contains("Password sign-in is turned off"));
}

async fn local_passwords_can_be_turned_off(app: TestApp) {
    add_password_user(&app, "root", Role::Admin).await;
    let key = TestKey::new("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::Off));
    let page = Browser::default()
        .get(&app, &format!("/oauth/authorize?{}", authz_query()))
        .await;
    assert!(
        !page.text().contains("type=\"password\""),
        "{}",
        page.text()
    );
    let mut browser = Browser::default();
    let html = page.text();
    assert!(html.contains("Sign in with"));
    // Even a correct admin password is refused (the form is not offered, a post is refused).
    let csrf_page = browser
        .get(&app, &format!("/oauth/authorize?{}", authz_query()))
        .await;
    let _ = csrf_page;
    let challenge = challenge(VERIFIER);
    let body = form(&[
        ("client_id", "terraform-cli"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("state", "st-123"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("csrf", "c"),
        ("username", "root"),
        ("password", PASSWORD),
    ]);
    let request = RequestBuilder::new("POST", "/oauth/authorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", "terrace_csrf=c")
        .body(body);
    let resp = app.send(request.build()).await;
    resp.assert_status(StatusCode::FORBIDDEN);
    assert!(resp.text().contains("Password sign-in is turned off"));
}

async fn users_are_linked_by_issuer_and_subject_not_by_name(app: TestApp) {
    // A local user already has the name the identity provider suggests.
    add_password_user(&app, "hank", Role::Admin).await;
    let key = TestKey::new("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::On));

    let (mut browser, state, nonce) = begin(&app).await;
    let mut claims = issuer.claims("subject-1", &nonce);
    claims["preferred_username"] = json!("hank");
    claims["groups"] = json!([]);
    issuer.answer_with(&key.sign(&claims));
    let token = terraform_token(&app, &finish(&app, &mut browser, &state).await).await;
    let me = whoami(&app, &token).await;
    assert_eq!(me["name"], "hank-2");
    assert_eq!(me["orgs"], json!([]));

    // The same subject signs in again under another name: the same user.
    let (mut browser, state, nonce) = begin(&app).await;
    let mut claims = issuer.claims("subject-1", &nonce);
    claims["preferred_username"] = json!("henry");
    issuer.answer_with(&key.sign(&claims));
    let token = terraform_token(&app, &finish(&app, &mut browser, &state).await).await;
    assert_eq!(whoami(&app, &token).await["name"], "hank-2");
}

async fn members(app: &TestApp, team: &str) -> Value {
    let resp = app
        .api(
            "GET",
            &format!("/api/v1/orgs/{ORG}/teams/{team}/members"),
            &app.admin_token,
            None,
        )
        .await;
    resp.assert_status(StatusCode::OK);
    resp.json()["data"].clone()
}

async fn the_mapping_leaves_memberships_made_by_hand_alone(app: TestApp) {
    map_team(&app, "ops", "write", &["ops-group"]).await;
    map_team(&app, "manual", "read", &[]).await;
    // Group names are checked.
    let bad = app
        .api(
            "PUT",
            &format!("/api/v1/orgs/{ORG}/teams/ops"),
            &app.admin_token,
            Some(json!({"idp_groups": ["fine", "bad\u{0001}"]})),
        )
        .await;
    assert!(bad.status.is_client_error(), "{}", bad.status);
    let key = TestKey::new("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::On));

    let sign_in = |groups: Value| {
        let app = &app;
        let issuer = &issuer;
        let key = &key;
        async move {
            let (mut browser, state, nonce) = begin(app).await;
            let mut claims = issuer.claims("ivy", &nonce);
            claims["groups"] = groups;
            issuer.answer_with(&key.sign(&claims));
            terraform_token(app, &finish(app, &mut browser, &state).await).await
        }
    };
    sign_in(json!(["ops-group"])).await;
    assert_eq!(members(&app, "ops").await, json!([{"name": "ivy"}]));
    // An admin also puts ivy in a team by hand.
    app.api(
        "PUT",
        &format!("/api/v1/orgs/{ORG}/teams/manual/members/ivy"),
        &app.admin_token,
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);

    // ivy leaves the group: the mapped team goes, the hand-made membership (and so the org
    // membership) stays.
    let token = sign_in(json!([])).await;
    assert_eq!(members(&app, "ops").await, json!([]));
    assert_eq!(members(&app, "manual").await, json!([{"name": "ivy"}]));
    assert_eq!(
        whoami(&app, &token).await["orgs"],
        json!([{"name": "acme", "role": "read"}])
    );
}

async fn a_browser_sign_in_without_terraform_starts_a_session(app: TestApp) {
    let key = TestKey::new("k1");
    let issuer = FakeIssuer::start(&[&key]).await;
    let app = app.with_login(settings(&issuer.url, LocalPasswords::On));
    let mut browser = Browser::default();
    let to_issuer = location(&browser.get(&app, "/oauth/sso/start").await);
    assert!(to_issuer.starts_with(&format!("{}/authorize?", issuer.url)));
    assert_eq!(
        query_value(&to_issuer, "redirect_uri").as_deref(),
        Some(CALLBACK)
    );
    let state = query_value(&to_issuer, "state").unwrap();
    let nonce = query_value(&to_issuer, "nonce").unwrap();
    issuer.answer_with(&key.sign(&issuer.claims("jane", &nonce)));
    let done = finish(&app, &mut browser, &state).await;
    done.assert_status(StatusCode::OK);
    assert!(
        done.text()
            .contains("signed in to Terrace as <strong>jane</strong>")
    );
    assert!(
        browser
            .cookies
            .iter()
            .any(|c| c.starts_with("terrace_session="))
    );
    assert!(
        !browser
            .cookies
            .iter()
            .any(|c| c.starts_with("terrace_sso_state="))
    );
    // The session carries over to `terraform login`: only consent is asked.
    let page = browser
        .get(&app, &format!("/oauth/authorize?{}", authz_query()))
        .await;
    assert!(page.text().contains("Signed in as <strong>jane</strong>"));
}
