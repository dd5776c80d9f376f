//! State locks in a DynamoDB table: one item per locked workspace, keyed by the string
//! attribute `LockID` (as in Terraform's own lock tables). Every change is a conditional
//! write, so DynamoDB itself decides who wins when replicas race.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use chrono::{DateTime, Utc};

use crate::config::DynamoSettings;
use crate::error::{Error, Result};

/// Key attribute; the rest hold the lock.
const KEY: &str = "LockID";
const HOLDER: &str = "Holder";
const INFO: &str = "Info";
const CREATED_AT: &str = "CreatedAt";
const CREATED_BY: &str = "CreatedBy";
const RENEWED_AT: &str = "RenewedAt";

/// Every item Terrace writes starts with this, followed by the workspace id.
const KEY_PREFIX: &str = "terrace/ws/";

/// BatchGetItem's limit on keys per call.
const BATCH_KEYS: usize = 100;

/// How often a lock that keeps changing hands under one request is tried again.
const ACQUIRE_ATTEMPTS: usize = 5;

/// A client for one lock table.
#[derive(Clone, Debug)]
pub struct DynamoLocks {
    client: Client,
    table: String,
}

impl DynamoLocks {
    /// Builds the client; nothing is sent until the first lock operation.
    pub fn connect(settings: &DynamoSettings) -> DynamoLocks {
        let http = crate::infra::aws::http_client();
        // Keys given explicitly, else the AWS default chain (profile, web identity, ECS, IMDS).
        let credentials = match &settings.static_keys {
            Some(keys) => SharedCredentialsProvider::new(Credentials::new(
                &keys.access_key_id,
                &keys.secret_access_key,
                keys.session_token.clone(),
                None,
                "terrace-settings",
            )),
            None => SharedCredentialsProvider::new(crate::infra::aws::DefaultChain::new(Some(
                settings.region.clone(),
            ))),
        };
        // Lock requests sit on Terraform's path: fail over to a 503 (which Terraform
        // retries) within seconds rather than hang.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(12))
            .build();
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(timeouts);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        DynamoLocks {
            client: Client::from_conf(config.build()),
            table: settings.table.clone(),
        }
    }

    /// The SDK client, for tools and tests that inspect the table.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand capacity) and waits until it is active. An existing
    /// table is fine. True when it was created now.
    pub async fn init(&self) -> Result<bool> {
        let key_attribute = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        let key = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        let created = match self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(key_attribute)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                false
            }
            Err(e) => return Err(sdk_error("CreateTable", &self.table, e)),
        };
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", &self.table, e))?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(created);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "DynamoDB table {} did not become active within a minute",
            self.table
        )))
    }

    #[tracing::instrument(level = "debug", name = "dynamodb.PutItem", skip_all, fields(otel.kind = "client", rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "PutItem", aws.dynamodb.table_names = %self.table))]
    pub(super) async fn acquire(
        &self,
        workspace_id: i64,
        lock_id: &str,
        info: &[u8],
        created_by: &str,
        now: DateTime<Utc>,
        stale_before: Option<DateTime<Utc>>,
    ) -> Result<Option<HeldLock>> {
        for _ in 0..ACQUIRE_ATTEMPTS {
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, key_value(workspace_id))
                .item(HOLDER, AttributeValue::S(lock_id.to_string()))
                .item(INFO, AttributeValue::B(Blob::new(info)))
                .item(CREATED_AT, millis(now))
                .item(CREATED_BY, AttributeValue::S(created_by.to_string()))
                .item(RENEWED_AT, millis(now))
                .expression_attribute_names("#key", KEY)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            // The holder's own ID never takes over: it renews below and keeps its info.
            put = match stale_before {
                None => put.condition_expression("attribute_not_exists(#key)"),
                Some(stale_before) => put
                    .condition_expression(
                        "attribute_not_exists(#key) OR (#renewed < :stale AND #holder <> :holder)",
                    )
                    .expression_attribute_names("#renewed", RENEWED_AT)
                    .expression_attribute_names("#holder", HOLDER)
                    .expression_attribute_values(":stale", millis(stale_before))
                    .expression_attribute_values(":holder", AttributeValue::S(lock_id.into())),
            };
            let failed = match put.send().await {
                Ok(_) => return Ok(None),
                Err(e) => match e.as_service_error() {
                    Some(failed) if failed.is_conditional_check_failed_exception() => {
                        use aws_sdk_dynamodb::operation::put_item::PutItemError;
                        match failed {
                            PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                            _ => None,
                        }
                    }
                    _ => return Err(sdk_error("PutItem", &self.table, e)),
                },
            };
            // The item that made the condition fail, when DynamoDB returned it.
            let holder = match failed {
                Some(item) if !item.is_empty() => Some(lock_row(&item)?),
                _ => self.find(workspace_id).await?,
            };
            match holder {
                // Released in the meantime: try again.
                None => continue,
                Some(holder) if holder.lock_id == lock_id => {
                    if self.renew_held(workspace_id, lock_id, now).await? {
                        return Ok(None);
                    }
                }
                Some(holder) => return Ok(Some(holder)),
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "the lock of workspace {workspace_id} kept changing hands"
        )))
    }

    #[tracing::instrument(level = "debug", name = "dynamodb.GetItem", skip_all, fields(otel.kind = "client", rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "GetItem", aws.dynamodb.table_names = %self.table))]
    pub(super) async fn find(&self, workspace_id: i64) -> Result<Option<HeldLock>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, key_value(workspace_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.table, e))?;
        got.item().map(lock_row).transpose()
    }

    /// The holders of those of `workspace_ids` that are locked (consistent reads).
    #[tracing::instrument(level = "debug", name = "dynamodb.BatchGetItem", skip_all, fields(otel.kind = "client", rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "BatchGetItem", aws.dynamodb.table_names = %self.table))]
    pub(super) async fn find_many(&self, workspace_ids: &[i64]) -> Result<HashMap<i64, HeldLock>> {
        let mut found = HashMap::new();
        for chunk in workspace_ids.chunks(BATCH_KEYS) {
            let keys = chunk
                .iter()
                .map(|id| HashMap::from([(KEY.to_string(), key_value(*id))]))
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| Error::Internal(e.into()))?;
            // DynamoDB may leave keys unprocessed under load; ask again for those.
            for attempt in 0.. {
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", &self.table, e))?;
                for item in got
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let row = lock_row(item)?;
                    found.insert(workspace_of(item)?, row);
                }
                match got.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => {
                        if attempt >= 5 {
                            return Err(Error::Unavailable(anyhow::anyhow!(
                                "DynamoDB kept keys of {} unprocessed",
                                self.table
                            )));
                        }
                        request = rest.clone();
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// When each lock in the table was last renewed, by workspace id.
    #[tracing::instrument(level = "debug", name = "dynamodb.Scan", skip_all, fields(otel.kind = "client", rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "Scan", aws.dynamodb.table_names = %self.table))]
    pub(super) async fn all_renewals(&self) -> Result<HashMap<i64, DateTime<Utc>>> {
        let mut renewals = HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .projection_expression("#key, #renewed")
                .filter_expression("begins_with(#key, :prefix)")
                .expression_attribute_names("#key", KEY)
                .expression_attribute_names("#renewed", RENEWED_AT)
                .expression_attribute_values(":prefix", AttributeValue::S(KEY_PREFIX.into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Scan", &self.table, e))?;
            for item in page.items() {
                renewals.insert(workspace_of(item)?, time_attribute(item, RENEWED_AT)?);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(renewals);
            }
        }
    }

    pub(super) async fn renew(
        &self,
        workspace_id: i64,
        lock_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // Not held any more (force-unlocked, taken over): nothing to renew.
        self.renew_held(workspace_id, lock_id, now).await?;
        Ok(())
    }

    /// Moves `RenewedAt` to `now` if `lock_id` holds the lock; false when it does not.
    #[tracing::instrument(level = "debug", name = "dynamodb.UpdateItem", skip_all, fields(otel.kind = "client", rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "UpdateItem", aws.dynamodb.table_names = %self.table))]
    async fn renew_held(
        &self,
        workspace_id: i64,
        lock_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, key_value(workspace_id))
            .update_expression("SET #renewed = :now")
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#renewed", RENEWED_AT)
            .expression_attribute_names("#holder", HOLDER)
            .expression_attribute_values(":now", millis(now))
            .expression_attribute_values(":holder", AttributeValue::S(lock_id.into()))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("UpdateItem", &self.table, e)),
        }
    }

    #[tracing::instrument(level = "debug", name = "dynamodb.DeleteItem", skip_all, fields(otel.kind = "client", rpc.system = "aws-api", rpc.service = "DynamoDB", rpc.method = "DeleteItem", aws.dynamodb.table_names = %self.table))]
    pub(super) async fn release(&self, workspace_id: i64, lock_id: Option<&str>) -> Result<bool> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, key_value(workspace_id))
            .return_values(ReturnValue::AllOld);
        let delete = match lock_id {
            Some(id) => delete
                .condition_expression("#holder = :holder")
                .expression_attribute_names("#holder", HOLDER)
                .expression_attribute_values(":holder", AttributeValue::S(id.into())),
            // Force-unlock: whoever holds it.
            None => delete,
        };
        match delete.send().await {
            Ok(out) => Ok(out.attributes().is_some_and(|a| !a.is_empty())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("DeleteItem", &self.table, e)),
        }
    }
}

fn key_value(workspace_id: i64) -> AttributeValue {
    AttributeValue::S(format!("{KEY_PREFIX}{workspace_id}"))
}

fn millis(time: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(time.timestamp_millis().to_string())
}

fn malformed(what: String) -> Error {
    Error::Internal(anyhow::anyhow!("malformed DynamoDB lock item: {what}"))
}

fn workspace_of(item: &HashMap<String, AttributeValue>) -> Result<i64> {
    let key = item.get(KEY).and_then(|v| v.as_s().ok());
    key.and_then(|k| k.strip_prefix(KEY_PREFIX))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| malformed(format!("{KEY} {key:?}")))
}

fn string_attribute(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| malformed(format!("no string {name}")))
}

fn time_attribute(item: &HashMap<String, AttributeValue>, name: &str) -> Result<DateTime<Utc>> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| malformed(format!("no time {name}")))
}

/// A lock item as DynamoDB holds it.
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub lock_id: String,
    pub info: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub renewed_at: DateTime<Utc>,
}

fn lock_row(item: &HashMap<String, AttributeValue>) -> Result<HeldLock> {
    let info = item
        .get(INFO)
        .and_then(|v| v.as_b().ok())
        .ok_or_else(|| malformed(format!("no binary {INFO}")))?;
    Ok(HeldLock {
        lock_id: string_attribute(item, HOLDER)?,
        info: info.as_ref().to_vec(),
        created_at: time_attribute(item, CREATED_AT)?,
        created_by: string_attribute(item, CREATED_BY)?,
        renewed_at: time_attribute(item, RENEWED_AT)?,
    })
}

/// DynamoDB error codes that mean "slow down", not "wrong".
const THROTTLED: [&str; 3] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// Network trouble, timeouts, throttling and DynamoDB's own failures are 503 (the client
/// retries); anything else (a missing table, denied access) is a configuration problem.
fn sdk_error<E>(operation: &str, table: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().map(str::to_string);
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(ctx) => {
            ctx.raw().status().as_u16() >= 500
                || code.as_deref().is_some_and(|c| THROTTLED.contains(&c))
        }
        _ => false,
    };
    let hint = match code.as_deref() {
        Some("ResourceNotFoundException") => "; create the table with `terrace locks init`",
        _ => "",
    };
    let error = anyhow::anyhow!(
        "DynamoDB {operation} on table {table}: {}{hint}",
        DisplayErrorContext(&err)
    );
    if transient {
        Error::Unavailable(error)
    } else {
        Error::Internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AwsEnv;

    #[tokio::test]
    async fn an_unreachable_table_is_unavailable_not_an_internal_error() {
        let env = AwsEnv {
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            ..Default::default()
        };
        // Nothing listens on port 1: the connection is refused at once.
        let settings =
            DynamoSettings::parse("dynamodb://locks?endpoint=http://127.0.0.1:1", &env).unwrap();
        let locks = DynamoLocks::connect(&settings);
        let found = locks.find(1).await;
        assert!(matches!(found, Err(Error::Unavailable(_))), "{found:?}");
    }
}
