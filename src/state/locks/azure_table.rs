//! State locks in an Azure Storage table: one entity per locked workspace (partition
//! `terrace`, row `ws-<id>`). Every change is conditional, as on DynamoDB: an insert fails when
//! the entity exists, and a replace or delete carries the `ETag` it read (`If-Match`), so the
//! Table service itself decides who wins when replicas race.
//!
//! Plain HTTPS with the service's Shared Key Lite signature (HMAC-SHA256 from `ring`), or a
//! SAS token: the Azure SDK crates for Rust (`azure_data_tables`) were retired upstream and
//! bring their own HTTP stack and a large dependency tree for the six REST calls used here.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::config::{AzureTableAuth, AzureTableSettings};
use crate::error::{Error, Result};

const PARTITION: &str = "terrace";
const ROW_PREFIX: &str = "ws-";
const HOLDER: &str = "Holder";
const INFO: &str = "Info";
const CREATED_AT: &str = "CreatedAt";
const CREATED_BY: &str = "CreatedBy";
const RENEWED_AT: &str = "RenewedAt";

/// The REST API version sent with every call.
const API_VERSION: &str = "2019-02-02";

/// How often a lock that keeps changing hands under one request is tried again.
const ATTEMPTS: usize = 5;

/// Row keys asked for in one filtered query.
const KEYS_PER_QUERY: usize = 50;

/// A client for one lock table.
#[derive(Clone)]
pub struct AzureTableLocks {
    http: reqwest::Client,
    settings: AzureTableSettings,
}

impl std::fmt::Debug for AzureTableLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureTableLocks")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A lock entity as the table holds it, with the `ETag` a conditional change must name.
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub lock_id: String,
    pub info: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub renewed_at: DateTime<Utc>,
    etag: String,
}

/// What a conditional change came to.
enum Outcome {
    Done,
    /// The entity changed or went away since it was read (412 or 404): read it again.
    Changed,
    /// An insert found the entity there (409).
    Exists,
}

impl AzureTableLocks {
    /// Builds the client; nothing is sent until the first lock operation.
    pub fn connect(settings: &AzureTableSettings) -> AzureTableLocks {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Lock requests sit on Terraform's path: fail over to a 503 (which Terraform
        // retries) within seconds rather than hang.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        AzureTableLocks {
            http,
            settings: settings.clone(),
        }
    }

    pub fn table(&self) -> &str {
        &self.settings.table
    }

    /// Creates the table; an existing table is fine. True when it was created now.
    pub async fn init(&self) -> Result<bool> {
        let body = json!({ "TableName": self.settings.table });
        let response = self
            .send(Method::POST, "Tables", None, None, Some(&body))
            .await?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(self.failure("create table", response).await),
        }
    }

    pub(super) async fn acquire(
        &self,
        workspace_id: i64,
        lock_id: &str,
        info: &[u8],
        created_by: &str,
        now: DateTime<Utc>,
        stale_before: Option<DateTime<Utc>>,
    ) -> Result<Option<HeldLock>> {
        let entity = entity(workspace_id, lock_id, info, now, created_by, now);
        for _ in 0..ATTEMPTS {
            if let Outcome::Done = self.insert(&entity).await? {
                return Ok(None);
            }
            let Some(holder) = self.find(workspace_id).await? else {
                // Released in the meantime: try again.
                continue;
            };
            if holder.lock_id == lock_id {
                // The holder's own ID renews and keeps its info.
                let renewed = renewed(&holder, now);
                let entity = entity_of(workspace_id, &renewed);
                if let Outcome::Done = self.replace(workspace_id, &entity, &holder.etag).await? {
                    return Ok(None);
                }
                continue;
            }
            match stale_before {
                Some(stale_before) if holder.renewed_at < stale_before => {
                    // Takes over a stale lock only if nobody changed it since it was read.
                    if let Outcome::Done = self.replace(workspace_id, &entity, &holder.etag).await?
                    {
                        return Ok(None);
                    }
                }
                _ => return Ok(Some(holder)),
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "the lock of workspace {workspace_id} kept changing hands"
        )))
    }

    pub(super) async fn find(&self, workspace_id: i64) -> Result<Option<HeldLock>> {
        let path = self.entity_path(workspace_id);
        let response = self.send(Method::GET, &path, None, None, None).await?;
        match response.status() {
            StatusCode::OK => {
                let etag = header(&response, "etag")?;
                let body: Value = response
                    .json()
                    .await
                    .map_err(|e| unavailable("read a lock entity", e))?;
                Ok(Some(lock_of(&body, etag)?))
            }
            StatusCode::NOT_FOUND if !table_missing(&response) => Ok(None),
            _ => Err(self.failure("read a lock", response).await),
        }
    }

    /// The holders of those of `workspace_ids` that are locked.
    pub(super) async fn find_many(&self, workspace_ids: &[i64]) -> Result<HashMap<i64, HeldLock>> {
        let mut found = HashMap::new();
        for chunk in workspace_ids.chunks(KEYS_PER_QUERY) {
            let rows = chunk
                .iter()
                .map(|id| format!("RowKey eq '{ROW_PREFIX}{id}'"))
                .collect::<Vec<_>>()
                .join(" or ");
            let filter = format!("PartitionKey eq '{PARTITION}' and ({rows})");
            for entity in self.query(&filter, None).await? {
                let workspace = workspace_of(&entity)?;
                found.insert(workspace, lock_of(&entity, String::new())?);
            }
        }
        Ok(found)
    }

    /// When each lock in the table was last renewed, by workspace id.
    pub(super) async fn all_renewals(&self) -> Result<HashMap<i64, DateTime<Utc>>> {
        let filter = format!("PartitionKey eq '{PARTITION}'");
        let select = format!("RowKey,{RENEWED_AT}");
        let mut renewals = HashMap::new();
        for entity in self.query(&filter, Some(&select)).await? {
            renewals.insert(workspace_of(&entity)?, time_of(&entity, RENEWED_AT)?);
        }
        Ok(renewals)
    }

    pub(super) async fn renew(
        &self,
        workspace_id: i64,
        lock_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        for _ in 0..ATTEMPTS {
            // Not held by `lock_id` any more (force-unlocked, taken over): nothing to renew.
            let Some(holder) = self.find(workspace_id).await? else {
                return Ok(());
            };
            if holder.lock_id != lock_id {
                return Ok(());
            }
            let entity = entity_of(workspace_id, &renewed(&holder, now));
            if let Outcome::Done = self.replace(workspace_id, &entity, &holder.etag).await? {
                return Ok(());
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "the lock of workspace {workspace_id} kept changing hands"
        )))
    }

    pub(super) async fn release(&self, workspace_id: i64, lock_id: Option<&str>) -> Result<bool> {
        let Some(lock_id) = lock_id else {
            // Force-unlock: whoever holds it.
            return Ok(matches!(
                self.delete(workspace_id, "*").await?,
                Outcome::Done
            ));
        };
        for _ in 0..ATTEMPTS {
            let Some(holder) = self.find(workspace_id).await? else {
                return Ok(false);
            };
            if holder.lock_id != lock_id {
                return Ok(false);
            }
            if let Outcome::Done = self.delete(workspace_id, &holder.etag).await? {
                return Ok(true);
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "the lock of workspace {workspace_id} kept changing hands"
        )))
    }

    /// Moves every lock's `RenewedAt` to `at`: for tools and tests that age locks.
    pub async fn set_renewed_at(&self, at: DateTime<Utc>) -> Result<()> {
        let filter = format!("PartitionKey eq '{PARTITION}'");
        for entity in self.query(&filter, None).await? {
            let workspace_id = workspace_of(&entity)?;
            if let Some(holder) = self.find(workspace_id).await? {
                let entity = entity_of(workspace_id, &renewed(&holder, at));
                self.replace(workspace_id, &entity, &holder.etag).await?;
            }
        }
        Ok(())
    }

    async fn insert(&self, entity: &Value) -> Result<Outcome> {
        let table = self.settings.table.clone();
        let response = self
            .send(Method::POST, &table, None, None, Some(entity))
            .await?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(Outcome::Done),
            StatusCode::CONFLICT => Ok(Outcome::Exists),
            _ => Err(self.failure("insert a lock", response).await),
        }
    }

    /// Replaces the entity if its `ETag` is still `etag`.
    async fn replace(&self, workspace_id: i64, entity: &Value, etag: &str) -> Result<Outcome> {
        let path = self.entity_path(workspace_id);
        let response = self
            .send(Method::PUT, &path, Some(etag), None, Some(entity))
            .await?;
        self.conditional("replace a lock", response).await
    }

    /// Deletes the entity if its `ETag` is still `etag` (`*`: whatever it is).
    async fn delete(&self, workspace_id: i64, etag: &str) -> Result<Outcome> {
        let path = self.entity_path(workspace_id);
        let response = self
            .send(Method::DELETE, &path, Some(etag), None, None)
            .await?;
        self.conditional("delete a lock", response).await
    }

    async fn conditional(&self, what: &str, response: reqwest::Response) -> Result<Outcome> {
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(Outcome::Done),
            StatusCode::PRECONDITION_FAILED => Ok(Outcome::Changed),
            StatusCode::NOT_FOUND if !table_missing(&response) => Ok(Outcome::Changed),
            _ => Err(self.failure(what, response).await),
        }
    }

    /// Every entity `filter` selects, following continuation tokens.
    async fn query(&self, filter: &str, select: Option<&str>) -> Result<Vec<Value>> {
        let mut entities = Vec::new();
        let mut next: Option<(String, String)> = None;
        loop {
            let mut query = vec![("$filter", filter.to_string())];
            if let Some(select) = select {
                query.push(("$select", select.to_string()));
            }
            if let Some((partition, row)) = next.take() {
                query.push(("NextPartitionKey", partition));
                query.push(("NextRowKey", row));
            }
            let path = format!("{}()", self.settings.table);
            let response = self
                .send(Method::GET, &path, None, Some(&query), None)
                .await?;
            if response.status() != StatusCode::OK {
                return Err(self.failure("query locks", response).await);
            }
            let continuation = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            next = continuation("x-ms-continuation-nextpartitionkey")
                .zip(continuation("x-ms-continuation-nextrowkey"));
            let body: Value = response
                .json()
                .await
                .map_err(|e| unavailable("read lock entities", e))?;
            if let Some(Value::Array(page)) = body.get("value") {
                entities.extend(page.iter().cloned());
            }
            if next.is_none() {
                return Ok(entities);
            }
        }
    }

    fn entity_path(&self, workspace_id: i64) -> String {
        format!(
            "{}(PartitionKey='{PARTITION}',RowKey='{ROW_PREFIX}{workspace_id}')",
            self.settings.table
        )
    }

    /// One signed call to `<endpoint>/<path>`.
    #[tracing::instrument(level = "debug", name = "azure_table", skip_all, fields(otel.kind = "client", otel.name = %format_args!("Azure Table {method}"), http.request.method = %method, azure.table = %self.settings.table))]
    async fn send(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        query: Option<&[(&str, String)]>,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let base = self.settings.endpoint.trim_end_matches('/');
        let mut url = url::Url::parse(&format!("{base}/{path}"))
            .map_err(|e| Error::Internal(anyhow::anyhow!("Azure Table URL: {e}")))?;
        // Spaces in `$filter` as `%20`: the form encoding's `+` is not a space to every
        // service (a literal `+` is `%2B` either way).
        let mut parts: Vec<String> = query
            .unwrap_or_default()
            .iter()
            .map(|(key, value)| {
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair(key, value)
                    .finish()
                    .replace('+', "%20")
            })
            .collect();
        if let AzureTableAuth::Sas(token) = &self.settings.auth {
            parts.push(token.trim_start_matches('?').to_string());
        }
        if !parts.is_empty() {
            url.set_query(Some(&parts.join("&")));
        }
        let date = Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let mut request = self
            .http
            .request(method, url.clone())
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("Accept", "application/json;odata=nometadata")
            .header("DataServiceVersion", "3.0;NetFx")
            .header("MaxDataServiceVersion", "3.0;NetFx");
        if let AzureTableAuth::SharedKey(key) = &self.settings.auth {
            request = request.header(
                "Authorization",
                shared_key_lite(&self.settings.account, key, &date, &url),
            );
        }
        if let Some(etag) = if_match {
            request = request.header("If-Match", etag);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .header("Prefer", "return-no-content")
                .body(body.to_string());
        }
        request
            .send()
            .await
            .map_err(|e| unavailable("reach the Table service", e))
    }

    /// A failed call: 5xx and throttling are 503 (the client retries); anything else
    /// (a missing table, refused credentials) is a configuration problem.
    async fn failure(&self, what: &str, response: reqwest::Response) -> Error {
        let status = response.status();
        let missing = table_missing(&response);
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        let hint = if missing {
            "; create the table with `terrace locks init`"
        } else {
            ""
        };
        let error = anyhow::anyhow!(
            "Azure Table {} ({what}): {status} {text}{hint}",
            self.settings.table
        );
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Error::Unavailable(error)
        } else {
            Error::Internal(error)
        }
    }
}

/// Whether a 404 means the table itself is missing, not the entity.
fn table_missing(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("x-ms-error-code")
        .is_some_and(|code| code == "TableNotFound")
}

/// `Authorization: SharedKeyLite account:signature`, where the signature is the HMAC-SHA256
/// of the date and the canonical resource (`/account/path`, plus `?comp=` if present).
fn shared_key_lite(account: &str, key: &[u8], date: &str, url: &url::Url) -> String {
    let mut resource = format!("/{account}{}", url.path());
    if let Some((_, comp)) = url.query_pairs().find(|(k, _)| k == "comp") {
        resource.push_str(&format!("?comp={comp}"));
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signature = ring::hmac::sign(&key, format!("{date}\n{resource}").as_bytes());
    format!(
        "SharedKeyLite {account}:{}",
        BASE64.encode(signature.as_ref())
    )
}

fn unavailable(what: &str, e: reqwest::Error) -> Error {
    Error::Unavailable(anyhow::anyhow!("Azure Table: could not {what}: {e}"))
}

fn header(response: &reqwest::Response, name: &str) -> Result<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| malformed(format!("no {name} header")))
}

fn entity(
    workspace_id: i64,
    lock_id: &str,
    info: &[u8],
    created_at: DateTime<Utc>,
    created_by: &str,
    renewed_at: DateTime<Utc>,
) -> Value {
    json!({
        "PartitionKey": PARTITION,
        "RowKey": format!("{ROW_PREFIX}{workspace_id}"),
        HOLDER: lock_id,
        INFO: BASE64.encode(info),
        "Info@odata.type": "Edm.Binary",
        CREATED_AT: created_at.timestamp_millis().to_string(),
        "CreatedAt@odata.type": "Edm.Int64",
        CREATED_BY: created_by,
        RENEWED_AT: renewed_at.timestamp_millis().to_string(),
        "RenewedAt@odata.type": "Edm.Int64",
    })
}

fn entity_of(workspace_id: i64, lock: &HeldLock) -> Value {
    entity(
        workspace_id,
        &lock.lock_id,
        &lock.info,
        lock.created_at,
        &lock.created_by,
        lock.renewed_at,
    )
}

fn renewed(lock: &HeldLock, now: DateTime<Utc>) -> HeldLock {
    HeldLock {
        renewed_at: now,
        ..lock.clone()
    }
}

fn malformed(what: String) -> Error {
    Error::Internal(anyhow::anyhow!("malformed Azure Table lock entity: {what}"))
}

fn string_of(entity: &Value, name: &str) -> Result<String> {
    entity
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| malformed(format!("no string {name}")))
}

/// Int64 properties arrive as strings (plain numbers are accepted too).
fn time_of(entity: &Value, name: &str) -> Result<DateTime<Utc>> {
    let millis = match entity.get(name) {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    millis
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| malformed(format!("no time {name}")))
}

fn workspace_of(entity: &Value) -> Result<i64> {
    let row = string_of(entity, "RowKey")?;
    row.strip_prefix(ROW_PREFIX)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| malformed(format!("RowKey {row:?}")))
}

fn lock_of(entity: &Value, etag: String) -> Result<HeldLock> {
    let info = BASE64
        .decode(string_of(entity, INFO)?)
        .map_err(|e| malformed(format!("{INFO}: {e}")))?;
    Ok(HeldLock {
        lock_id: string_of(entity, HOLDER)?,
        info,
        created_at: time_of(entity, CREATED_AT)?,
        created_by: string_of(entity, CREATED_BY)?,
        renewed_at: time_of(entity, RENEWED_AT)?,
        etag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Table service's Shared Key Lite documentation shape: the string
    /// signed is the date and `/account/path`, and `?comp=` is kept.
    #[test]
    fn shared_key_lite_signs_the_date_and_canonical_resource() {
        let url = url::Url::parse("http://127.0.0.1:10002/devstoreaccount1/Tables").unwrap();
        let date = "Sat, 05 Dec 2026 07:00:00 GMT";
        let header = shared_key_lite("devstoreaccount1", b"secret", date, &url);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        let expected = ring::hmac::sign(
            &key,
            b"Sat, 05 Dec 2026 07:00:00 GMT\n/devstoreaccount1/devstoreaccount1/Tables",
        );
        assert_eq!(
            header,
            format!(
                "SharedKeyLite devstoreaccount1:{}",
                BASE64.encode(expected.as_ref())
            )
        );
        let url =
            url::Url::parse("https://a.table.core.windows.net/?restype=service&comp=properties")
                .unwrap();
        let other = shared_key_lite("a", b"secret", date, &url);
        let expected = ring::hmac::sign(&key, format!("{date}\n/a/?comp=properties").as_bytes());
        assert!(
            other.ends_with(&BASE64.encode(expected.as_ref())),
            "{other}"
        );
    }

    #[test]
    fn entities_round_trip() {
        let now = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let entity = entity(42, "abc", b"{\"ID\":\"abc\"}", now, "user:1", now);
        assert_eq!(workspace_of(&entity).unwrap(), 42);
        let lock = lock_of(&entity, "W/\"1\"".into()).unwrap();
        assert_eq!(lock.lock_id, "abc");
        assert_eq!(lock.info, b"{\"ID\":\"abc\"}");
        assert_eq!(lock.renewed_at, now);
    }

    #[tokio::test]
    async fn an_unreachable_table_is_unavailable_not_an_internal_error() {
        let settings = AzureTableSettings::parse(
            "azuretable://devstoreaccount1/locks?endpoint=http://127.0.0.1:1/devstoreaccount1",
            &crate::config::AzureEnv {
                account_key: Some(BASE64.encode(b"key")),
                ..Default::default()
            },
        )
        .unwrap();
        let found = AzureTableLocks::connect(&settings).find(1).await;
        assert!(matches!(found, Err(Error::Unavailable(_))), "{found:?}");
    }
}
