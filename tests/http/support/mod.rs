//! A real `AppState` on a fresh database and blob directory, the real router, and helpers
//! that speak the http backend protocol and the management API to it in-process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use tempfile::TempDir;
use terrace::app::{App, Settings};
use terrace::identity::auth::{Principal, Role};
use terrace::infra::AppState;
use terrace::infra::blob::BlobStore;
use terrace::infra::crypto::Keyring;
use terrace::infra::db::Db;
use terrace::names::OrgName;
use tower::ServiceExt;

pub mod browser;
mod request;

pub use request::{RequestBuilder, basic_auth, raw_http};

/// The org every scenario works in, and one whose tokens must never see it.
pub const ORG: &str = "acme";
pub const OTHER_ORG: &str = "other";

/// Body cap used unless a scenario asks for another.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite and blobs in a local folder: the embedded default.
    Sqlite,
    /// PostgreSQL and a local folder.
    Postgres,
    /// PostgreSQL and S3 (moto, `TERRACE_TEST_S3_ENDPOINT`).
    PostgresS3,
    /// PostgreSQL and Azure Blob (azurite, `AZURITE_BLOB_STORAGE_URL`).
    PostgresAzure,
    /// PostgreSQL, a local folder and locks in a fresh DynamoDB table (moto,
    /// `TERRACE_TEST_DYNAMODB_ENDPOINT`).
    PostgresDynamo,
    /// PostgreSQL, a local folder and locks in a fresh Azure Storage table (azurite's Table
    /// service, `AZURITE_TABLE_URL`).
    PostgresAzureTable,
}

impl Backend {
    /// Whether locks live in a table of their own rather than the metadata database.
    pub fn has_lock_table(self) -> bool {
        matches!(self, Backend::PostgresDynamo | Backend::PostgresAzureTable)
    }
}

/// A lock backend on a new Azure Storage table, created as `terrace locks init` does; `None`
/// when no emulator is configured (a failure under `CI`).
pub async fn azure_table_locks() -> Option<terrace::state::locks::Locks> {
    use terrace::config::{AzureEnv, AzureTableSettings};
    use terrace::state::locks::{AzureTableLocks, Locks};
    let endpoint = crate::testkit::required_var("AZURITE_TABLE_URL")?;
    let url = format!(
        "azuretable://devstoreaccount1/terrace{}?endpoint={}",
        uuid::Uuid::new_v4().simple(),
        url::form_urlencoded::byte_serialize(endpoint.as_bytes()).collect::<String>()
    );
    let env = AzureEnv {
        use_emulator: true,
        ..Default::default()
    };
    let settings = AzureTableSettings::parse(&url, &env).unwrap();
    assert!(AzureTableLocks::connect(&settings).init().await.unwrap());
    // A second init finds the table and leaves it alone.
    assert!(!AzureTableLocks::connect(&settings).init().await.unwrap());
    Some(Locks::AzureTable(AzureTableLocks::connect(&settings)))
}

/// A lock backend on a new DynamoDB table, created as `terrace locks init` does; `None` when
/// no emulator is configured (a failure under `CI`).
pub async fn dynamo_locks() -> Option<terrace::state::locks::Locks> {
    use terrace::config::LockSettings;
    use terrace::state::locks::{DynamoLocks, Locks};
    const VARIABLE: &str = "TERRACE_TEST_DYNAMODB_ENDPOINT";
    let endpoint = match std::env::var(VARIABLE) {
        Ok(endpoint) => endpoint,
        Err(_) if std::env::var_os("CI").is_some() => panic!("{VARIABLE} must be set in CI"),
        Err(_) => return None,
    };
    let endpoint: String = url::form_urlencoded::byte_serialize(endpoint.as_bytes()).collect();
    let url = format!(
        "dynamodb://terrace-test-{}?region=us-east-1&endpoint={endpoint}",
        uuid::Uuid::new_v4()
    );
    let env = terrace::config::AwsEnv {
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..Default::default()
    };
    let LockSettings::DynamoDb(settings) = LockSettings::parse(Some(&url), &env).unwrap() else {
        unreachable!("a dynamodb:// URL")
    };
    assert!(DynamoLocks::connect(&settings).init().await.unwrap());
    // A second init finds the table and leaves it alone.
    assert!(!DynamoLocks::connect(&settings).init().await.unwrap());
    Some(Locks::DynamoDb(DynamoLocks::connect(&settings)))
}

/// `object_store` options for the emulator behind `backend`, or `None` when it is not
/// configured (a failure under `CI`).
pub fn object_store_options(backend: Backend) -> Option<(String, Vec<(String, String)>)> {
    let (variable, scheme) = match backend {
        Backend::Sqlite
        | Backend::Postgres
        | Backend::PostgresDynamo
        | Backend::PostgresAzureTable => {
            unreachable!("local blobs")
        }
        Backend::PostgresS3 => ("TERRACE_TEST_S3_ENDPOINT", "s3"),
        Backend::PostgresAzure => ("AZURITE_BLOB_STORAGE_URL", "az"),
    };
    let endpoint = match std::env::var(variable) {
        Ok(endpoint) => endpoint,
        Err(_) if std::env::var_os("CI").is_some() => panic!("{variable} must be set in CI"),
        Err(_) => return None,
    };
    // Each test gets its own prefix in the emulator's `terrace` bucket or container.
    let url = format!("{scheme}://terrace/{}", uuid::Uuid::new_v4());
    let pairs: &[(&str, &str)] = match backend {
        Backend::PostgresS3 => &[
            ("aws_endpoint", &endpoint),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
        ],
        _ => &[("azure_storage_use_emulator", "true")],
    };
    let options = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((url, options))
}

/// A fresh schema named `{prefix}_<uuid>` on the shared PostgreSQL server, as a database URL
/// for the `terrace` binary; `None` when `TERRACE_TEST_POSTGRES_URL` is not set (a failure
/// under `CI`, a printed note otherwise).
pub fn postgres_schema_url(prefix: &str) -> Option<String> {
    let url = crate::testkit::required_var("TERRACE_TEST_POSTGRES_URL")?;
    let schema = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!(
        "{url}{separator}options=-c%20search_path%3D{schema}"
    ))
}

/// Generates, for each scenario `fn(TestApp)`, a `sqlite` and a `postgres` test. The
/// PostgreSQL variant returns early when no test database is configured.
/// `max_body_size = N;` before the list builds the apps with that body cap.
macro_rules! on_both_databases {
    (max_body_size = $max:expr; $($name:ident),+ $(,)?) => {
        const SCENARIO_MAX_BODY_SIZE: u64 = $max;
        on_both_databases!(@each
            |backend| $crate::support::TestApp::with_max_body_size(backend, super::SCENARIO_MAX_BODY_SIZE);
            $($name),+);
    };
    ($($name:ident),+ $(,)?) => {
        on_both_databases!(@each $crate::support::TestApp::new; $($name),+);
    };
    (@each $ctor:expr; $($name:ident),+) => {
        on_both_databases!(@backend sqlite, Sqlite, $ctor; $($name),+);
        on_both_databases!(@backend postgres, Postgres, $ctor; $($name),+);
    };
    (@backend $module:ident, $backend:ident, $ctor:expr; $($name:ident),+) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(app) = ($ctor)($crate::support::Backend::$backend).await else {
                        eprintln!("skipping: TERRACE_TEST_POSTGRES_URL is not set");
                        return;
                    };
                    super::$name(app).await;
                }
            )+
        }
    };
}

/// Like `on_both_databases!`, and also on PostgreSQL with S3, with Azure Blob storage and with
/// DynamoDB locks.
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        on_both_databases!(@each $crate::support::TestApp::new; $($name),+);
        on_both_databases!(@backend postgres_s3, PostgresS3, $crate::support::TestApp::new; $($name),+);
        on_both_databases!(@backend postgres_azure, PostgresAzure, $crate::support::TestApp::new; $($name),+);
        on_both_databases!(@backend postgres_dynamo, PostgresDynamo, $crate::support::TestApp::new; $($name),+);
        on_both_databases!(@backend postgres_azure_table, PostgresAzureTable, $crate::support::TestApp::new; $($name),+);
    };
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON; panics with the body text when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, expected: StatusCode) -> &Self {
        assert_eq!(
            self.status,
            expected,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
}

/// One server: real router, real database, real encrypted blob store on disk.
pub struct TestApp {
    pub backend: Backend,
    pub router: Router,
    pub state: App,
    pub read_token: String,
    pub write_token: String,
    pub admin_token: String,
    /// An admin token of the other org.
    pub other_token: String,
    blobs_dir: PathBuf,
    /// The SQLite database's directory (holds `test.db` and its WAL).
    sqlite_dir: Option<Arc<TempDir>>,
    _blobs_root: Arc<TempDir>,
}

impl TestApp {
    pub async fn new(backend: Backend) -> Option<TestApp> {
        Self::with_max_body_size(backend, DEFAULT_MAX_BODY_SIZE).await
    }

    pub async fn with_max_body_size(backend: Backend, max_body_size: u64) -> Option<TestApp> {
        Self::build(backend, max_body_size, Default::default()).await
    }

    /// An app whose webhook deliveries use `notifications`.
    pub async fn with_notifications(
        backend: Backend,
        notifications: terrace::notifications::Settings,
    ) -> Option<TestApp> {
        Self::build(backend, DEFAULT_MAX_BODY_SIZE, notifications).await
    }

    async fn build(
        backend: Backend,
        max_body_size: u64,
        notifications: terrace::notifications::Settings,
    ) -> Option<TestApp> {
        let (db, sqlite_dir) = match backend {
            Backend::Sqlite => {
                let (db, dir) = terrace::infra::db::testing::sqlite().await;
                (db, Some(dir))
            }
            Backend::Postgres
            | Backend::PostgresS3
            | Backend::PostgresAzure
            | Backend::PostgresDynamo
            | Backend::PostgresAzureTable => (terrace::infra::db::testing::postgres().await?, None),
        };
        let blobs_root = tempfile::tempdir().unwrap();
        let blobs_dir = blobs_root.path().join("blobs");
        let key = terrace::infra::crypto::generate_key().unwrap();
        let keys = Arc::new(Keyring::from_base64(&key, &[]).unwrap());
        let blobs = match backend {
            Backend::Sqlite
            | Backend::Postgres
            | Backend::PostgresDynamo
            | Backend::PostgresAzureTable => {
                let url = format!("file://{}", blobs_dir.display());
                BlobStore::from_url(&url, keys).unwrap()
            }
            _ => {
                let (url, options) = object_store_options(backend)?;
                BlobStore::from_url_with_options(&url, options, keys).unwrap()
            }
        };
        let locks = match backend {
            Backend::PostgresDynamo => Some(dynamo_locks().await?),
            Backend::PostgresAzureTable => Some(azure_table_locks().await?),
            _ => None,
        };
        let settings = Settings {
            locks,
            mirror_org: Some("acme".into()),
            notifications,
            ..Settings::default()
        };
        let state = App::new(AppState::new(db.clone(), blobs, max_body_size), settings);
        let router = terrace::app::router(&state);

        let acme = OrgName::parse(ORG).unwrap();
        let other = OrgName::parse(OTHER_ORG).unwrap();
        terrace::identity::orgs::create_org(&db, &acme)
            .await
            .unwrap();
        terrace::identity::orgs::create_org(&db, &other)
            .await
            .unwrap();
        let read_token = create_token(&db, ORG, "reader", Role::Read, None).await;
        let write_token = create_token(&db, ORG, "writer", Role::Write, None).await;
        let admin_token = create_token(&db, ORG, "admin", Role::Admin, None).await;
        let other_token = create_token(&db, OTHER_ORG, "intruder", Role::Admin, None).await;
        Some(TestApp {
            backend,
            router,
            state,
            read_token,
            write_token,
            admin_token,
            other_token,
            blobs_dir,
            sqlite_dir: sqlite_dir.map(Arc::new),
            _blobs_root: Arc::new(blobs_root),
        })
    }

    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// The SQLite database directory, on the SQLite backend.
    pub fn sqlite_dir(&self) -> Option<&Path> {
        self.sqlite_dir.as_deref().map(TempDir::path)
    }

    /// Another replica on the same database and blob store: its own router and caches.
    pub fn replica(&self) -> TestApp {
        let infra = AppState::new(
            self.state.db.clone(),
            self.state.blobs.clone(),
            self.state.max_body_size,
        );
        let settings = Settings {
            mirror_org: self.state.registry.mirror_org.clone(),
            ..Settings::default()
        };
        let state = App::new(infra, settings);
        TestApp {
            backend: self.backend,
            router: terrace::app::router(&state),
            state,
            read_token: self.read_token.clone(),
            write_token: self.write_token.clone(),
            admin_token: self.admin_token.clone(),
            other_token: self.other_token.clone(),
            blobs_dir: self.blobs_dir.clone(),
            sqlite_dir: self.sqlite_dir.clone(),
            _blobs_root: self._blobs_root.clone(),
        }
    }

    /// Another server on the same database and blob store with other login settings
    /// (single sign-on, password policy).
    pub fn with_login(&self, login: terrace::identity::login::LoginSettings) -> TestApp {
        let infra = AppState::new(
            self.state.db.clone(),
            self.state.blobs.clone(),
            self.state.max_body_size,
        );
        let settings = Settings {
            mirror_org: self.state.registry.mirror_org.clone(),
            login,
            ..Settings::default()
        };
        let state = App::new(infra, settings);
        TestApp {
            backend: self.backend,
            router: terrace::app::router(&state),
            state,
            read_token: self.read_token.clone(),
            write_token: self.write_token.clone(),
            admin_token: self.admin_token.clone(),
            other_token: self.other_token.clone(),
            blobs_dir: self.blobs_dir.clone(),
            sqlite_dir: self.sqlite_dir.clone(),
            _blobs_root: self._blobs_root.clone(),
        }
    }

    /// Every object file under the blob directory.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![self.blobs_dir.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// Sends one request through the router.
    pub async fn send(&self, request: Request<Body>) -> Resp {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// A request to the http backend address of `ws`, with Basic auth as Terraform sends it.
    pub fn state_request(&self, method: &str, path_tail: &str, token: &str) -> RequestBuilder {
        RequestBuilder::new(method, &format!("/state/{ORG}/{path_tail}")).basic(token)
    }

    pub async fn get_state(&self, ws: &str, token: &str) -> Resp {
        self.send(self.state_request("GET", ws, token).build())
            .await
    }

    /// Terraform's write: POST, with `?ID=` when it holds a lock.
    pub async fn write_state(
        &self,
        ws: &str,
        body: impl Into<Bytes>,
        lock_id: Option<&str>,
        token: &str,
    ) -> Resp {
        let tail = match lock_id {
            Some(id) => format!("{ws}?ID={id}"),
            None => ws.to_string(),
        };
        let request = self.state_request("POST", &tail, token).body(body);
        self.send(request.build()).await
    }

    /// LOCK with a Terraform-shaped lock info body for `id`.
    pub async fn lock(&self, ws: &str, id: &str, token: &str) -> Resp {
        let request = self.state_request("LOCK", ws, token).body(lock_info(id));
        self.send(request.build()).await
    }

    pub async fn unlock(&self, ws: &str, body: impl Into<Bytes>, token: &str) -> Resp {
        let request = self.state_request("UNLOCK", ws, token).body(body);
        self.send(request.build()).await
    }

    /// A management API call with a Bearer token and an optional JSON body.
    pub async fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut request = RequestBuilder::new(method, path).bearer(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        self.send(request.build()).await
    }

    /// `/api/v1/orgs/acme/workspaces/{ws}{tail}`.
    pub fn ws_api(ws: &str, tail: &str) -> String {
        format!("/api/v1/orgs/{ORG}/workspaces/{ws}{tail}")
    }

    /// The versions of `ws`, newest first (the first page of up to 1000).
    pub async fn versions(&self, ws: &str) -> Vec<Value> {
        let resp = self
            .api(
                "GET",
                &Self::ws_api(ws, "/state-versions?limit=1000"),
                &self.admin_token,
                None,
            )
            .await;
        resp.assert_status(StatusCode::OK);
        resp.json()["data"].as_array().unwrap().clone()
    }

    /// The current lock holder as the management API shows it, `None` when unlocked.
    pub async fn lock_holder(&self, ws: &str) -> Option<Value> {
        let resp = self
            .api("GET", &Self::ws_api(ws, "/lock"), &self.read_token, None)
            .await;
        match resp.status {
            StatusCode::OK => Some(resp.json()),
            StatusCode::NOT_FOUND => None,
            other => panic!("unexpected {other} from the lock API: {}", resp.text()),
        }
    }

    /// Serves the router on a loopback port for tests that need a real socket.
    pub async fn serve(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }
}

/// Creates a token directly in the database, as the CLI does.
pub async fn create_token(
    db: &Db,
    org: &str,
    name: &str,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> String {
    let org = OrgName::parse(org).unwrap();
    let spec = terrace::identity::orgs::TokenSpec {
        expires_at,
        ..terrace::identity::orgs::TokenSpec::new(name, role)
    };
    terrace::identity::orgs::create_token(db, &Principal::System, &org, spec)
        .await
        .unwrap()
        .token
}

/// Lock info JSON shaped like Terraform's.
pub fn lock_info(id: &str) -> String {
    format!(
        r#"{{"ID":"{id}","Operation":"OperationTypeApply","Info":"","Who":"alice@laptop","Version":"1.0.3","Created":"2026-01-02T03:04:05.123456789Z","Path":""}}"#
    )
}

/// A Terraform-shaped state document.
pub fn state(lineage: &str, serial: i64) -> String {
    format!(
        "{{\n  \"version\": 4,\n  \"terraform_version\": \"1.0.3\",\n  \"serial\": {serial},\n  \"lineage\": \"{lineage}\",\n  \"outputs\": {{}},\n  \"resources\": []\n}}\n"
    )
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Adds `name` to `org` with `role` and a password, as `terrace user create` does.
pub async fn add_user(app: &TestApp, org: &str, name: &str, role: Role, password: &str) {
    terrace::identity::users::add_member(
        app.db(),
        &terrace::identity::auth::Principal::System,
        &OrgName::parse(org).unwrap(),
        &terrace::names::UserName::parse(name).unwrap(),
        role,
        Some(password),
        "http://localhost",
    )
    .await
    .unwrap();
}
