//! SQL of deployments, runs and run logs.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::infra::blob::{StoredBlob, insert_blob_row};
use crate::infra::crypto::Envelope;
use crate::infra::db::{Db, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeploymentRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub workspace_id: i64,
    pub blueprint: String,
    pub module: String,
    pub version: String,
    pub inputs: String,
    pub sensitive: String,
    pub secrets_blob: Option<String>,
    pub outputs: String,
    pub auto_apply: bool,
    pub status: String,
    pub diverged: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

const DEPLOYMENT_COLUMNS: &str = "id, org_id, name, workspace_id, blueprint, \
    module, version, inputs, sensitive, secrets_blob, outputs, auto_apply, status, diverged, \
    created_at, created_by, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub org_id: i64,
    pub deployment_id: i64,
    pub workspace_id: i64,
    pub operation: String,
    pub status: String,
    pub reason: Option<String>,
    pub version: String,
    pub config: String,
    pub secrets_blob: Option<String>,
    pub auto_apply: bool,
    pub job_id: Option<i64>,
    pub lease: Option<String>,
    pub runner: Option<String>,
    pub token_id: Option<i64>,
    pub plan_blob: Option<String>,
    pub plan_summary: Option<String>,
    pub has_changes: Option<bool>,
    pub confirmed_by: Option<String>,
    pub cancel_requests: i64,
    pub log_size: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, org_id, deployment_id, workspace_id, operation, status, reason, \
    version, config, secrets_blob, auto_apply, job_id, lease, runner, token_id, plan_blob, \
    plan_summary, has_changes, confirmed_by, cancel_requests, log_size, created_at, created_by, \
    started_at, finished_at";

/// A blob to record with the row that refers to it.
pub struct NewBlob<'a> {
    pub blob: &'a StoredBlob,
    pub size: i64,
    pub sha256: &'a str,
}

pub struct NewDeployment<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub workspace_id: i64,
    pub blueprint_id: i64,
    pub blueprint: &'a str,
    pub module: &'a str,
    pub version: &'a str,
    pub inputs: &'a str,
    pub sensitive: &'a str,
    pub outputs: &'a str,
    pub auto_apply: bool,
    pub created_by: &'a str,
}

pub async fn insert_deployment(
    db: &Db,
    new: NewDeployment<'_>,
    secrets: Option<NewBlob<'_>>,
) -> Result<i64> {
    const SQL: &str = "INSERT INTO deployments (org_id, name, workspace_id, blueprint_id, \
        blueprint, module, version, inputs, sensitive, secrets_blob, outputs, auto_apply, \
        status, diverged, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, \
        $7, $8, $9, $10, $11, $12, 'active', FALSE, $13, $14, $13) RETURNING id";
    let now = Utc::now();
    let name = new.name;
    let id = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        if let Some(s) = &secrets {
            insert_blob_row!(&mut *tx, s.blob, s.size, s.sha256, now).await?;
        }
        let (id,): (i64,) = sqlx::query_as(SQL)
            .bind(new.org_id).bind(new.name).bind(new.workspace_id).bind(new.blueprint_id)
            .bind(new.blueprint).bind(new.module).bind(new.version).bind(new.inputs)
            .bind(new.sensitive).bind(secrets.as_ref().map(|s| s.blob.id.clone()))
            .bind(new.outputs).bind(new.auto_apply).bind(now).bind(new.created_by)
            .fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok::<i64, sqlx::Error>(id)
    })
    .map_err(|e| Error::from(e).or_conflict(|| format!("deployment {name} already exists")))?;
    Ok(id)
}

pub async fn find_deployment(db: &Db, org_id: i64, name: &str) -> Result<Option<DeploymentRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        DEPLOYMENT_COLUMNS,
        " FROM deployments WHERE org_id = $1 AND name = $2"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, DeploymentRow>(SQL)
        .bind(org_id).bind(name).fetch_optional(p).await)?)
}

pub async fn deployment_by_id(db: &Db, id: i64) -> Result<Option<DeploymentRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        DEPLOYMENT_COLUMNS,
        " FROM deployments WHERE id = $1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, DeploymentRow>(SQL)
        .bind(id).fetch_optional(p).await)?)
}

pub async fn list_deployments(
    db: &Db,
    org_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<DeploymentRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        DEPLOYMENT_COLUMNS,
        " FROM deployments WHERE org_id = $1 ORDER BY name LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, DeploymentRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// New settings of a deployment (a PATCH).
pub struct DeploymentUpdate<'a> {
    pub version: &'a str,
    pub inputs: &'a str,
    pub sensitive: &'a str,
    pub outputs: &'a str,
    pub auto_apply: bool,
}

pub async fn update_deployment(
    db: &Db,
    id: i64,
    update: DeploymentUpdate<'_>,
    secrets: Option<NewBlob<'_>>,
) -> Result<()> {
    const SQL: &str = "UPDATE deployments SET version = $1, inputs = $2, sensitive = $3, \
        outputs = $4, auto_apply = $5, secrets_blob = $6, updated_at = $7 WHERE id = $8";
    let now = Utc::now();
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        if let Some(s) = &secrets {
            insert_blob_row!(&mut *tx, s.blob, s.size, s.sha256, now).await?;
        }
        sqlx::query(SQL)
            .bind(update.version).bind(update.inputs).bind(update.sensitive)
            .bind(update.outputs).bind(update.auto_apply)
            .bind(secrets.as_ref().map(|s| s.blob.id.clone()))
            .bind(now).bind(id)
            .execute(&mut *tx).await?;
        tx.commit().await
    })?;
    Ok(())
}

/// Sets a deployment's status; `archived` also lets go of the blueprint.
pub async fn set_deployment_status(db: &Db, id: i64, status: &str) -> Result<()> {
    const SQL: &str = "UPDATE deployments SET status = $1, updated_at = $2, \
        blueprint_id = CASE WHEN $1 = 'archived' THEN NULL ELSE blueprint_id END WHERE id = $3";
    on_pool!(db, p => sqlx::query(SQL).bind(status).bind(Utc::now()).bind(id).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub async fn set_diverged(db: &Db, id: i64, diverged: bool) -> Result<()> {
    const SQL: &str = "UPDATE deployments SET diverged = $1, updated_at = $2 WHERE id = $3";
    on_pool!(db, p => sqlx::query(SQL).bind(diverged).bind(Utc::now()).bind(id).execute(p).await.map(|_| ()))?;
    Ok(())
}

pub struct NewRun<'a> {
    pub org_id: i64,
    pub deployment_id: i64,
    pub workspace_id: i64,
    pub operation: &'a str,
    pub version: &'a str,
    pub config: &'a str,
    pub secrets_blob: Option<&'a str>,
    pub auto_apply: bool,
    pub created_by: &'a str,
}

pub async fn insert_run(db: &Db, new: NewRun<'_>) -> Result<i64> {
    const SQL: &str = "INSERT INTO runs (org_id, deployment_id, workspace_id, operation, status, \
        version, config, secrets_blob, auto_apply, cancel_requests, log_size, created_at, \
        created_by, updated_at) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, 0, 0, $9, \
        $10, $9) RETURNING id";
    let (id,): (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(new.org_id).bind(new.deployment_id).bind(new.workspace_id).bind(new.operation)
        .bind(new.version).bind(new.config).bind(new.secrets_blob).bind(new.auto_apply)
        .bind(Utc::now()).bind(new.created_by)
        .fetch_one(p).await)?;
    Ok(id)
}

pub async fn run(db: &Db, org_id: i64, id: i64) -> Result<Option<RunRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        RUN_COLUMNS,
        " FROM runs WHERE org_id = $1 AND id = $2"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, RunRow>(SQL)
        .bind(org_id).bind(id).fetch_optional(p).await)?)
}

pub async fn run_by_id(db: &Db, id: i64) -> Result<Option<RunRow>> {
    const SQL: &str = const_format::concatcp!("SELECT ", RUN_COLUMNS, " FROM runs WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as::<_, RunRow>(SQL)
        .bind(id).fetch_optional(p).await)?)
}

pub async fn run_by_job(db: &Db, job_id: i64) -> Result<Option<RunRow>> {
    const SQL: &str =
        const_format::concatcp!("SELECT ", RUN_COLUMNS, " FROM runs WHERE job_id = $1");
    Ok(on_pool!(db, p => sqlx::query_as::<_, RunRow>(SQL)
        .bind(job_id).fetch_optional(p).await)?)
}

pub async fn list_runs(
    db: &Db,
    deployment_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<RunRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        RUN_COLUMNS,
        " FROM runs WHERE deployment_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, RunRow>(SQL)
        .bind(deployment_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// The newest run of a deployment.
pub async fn latest_run(db: &Db, deployment_id: i64) -> Result<Option<RunRow>> {
    Ok(list_runs(db, deployment_id, 1, 0).await?.into_iter().next())
}

/// Unfinished runs of the workspace older than `run_id`.
pub async fn runs_ahead(db: &Db, workspace_id: i64, run_id: i64) -> Result<i64> {
    const SQL: &str = "SELECT COUNT(*) FROM runs WHERE workspace_id = $1 AND id < $2 \
        AND finished_at IS NULL";
    let (n,): (i64,) = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(workspace_id).bind(run_id).fetch_one(p).await)?;
    Ok(n)
}

/// The oldest unfinished run of the workspace: the one that may use it.
pub async fn head_run(db: &Db, workspace_id: i64) -> Result<Option<RunRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        RUN_COLUMNS,
        " FROM runs WHERE workspace_id = $1 AND finished_at IS NULL ORDER BY id LIMIT 1"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, RunRow>(SQL)
        .bind(workspace_id).fetch_optional(p).await)?)
}

fn quoted(statuses: &[&'static str]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a transition changes besides the status.
#[derive(Default)]
pub struct Change<'a> {
    pub reason: Option<Option<&'a str>>,
    pub job_id: Option<Option<i64>>,
    pub lease: Option<Option<&'a str>>,
    pub runner: Option<&'a str>,
    pub token_id: Option<Option<i64>>,
    pub confirmed_by: Option<&'a str>,
    pub started: bool,
    pub finished: bool,
}

/// Moves run `id` from one of `from` (constants) to `to`; false when it was elsewhere.
pub async fn transition(
    db: &Db,
    id: i64,
    from: &[&'static str],
    to: &'static str,
    change: Change<'_>,
) -> Result<bool> {
    let mut sets = vec![format!("status = '{to}'"), "updated_at = $2".to_string()];
    // Each optional change binds a fixed parameter number; unused ones are bound too.
    if change.reason.is_some() {
        sets.push("reason = $3".into());
    }
    if change.job_id.is_some() {
        sets.push("job_id = $4".into());
    }
    if change.lease.is_some() {
        sets.push("lease = $5".into());
    }
    if change.runner.is_some() {
        sets.push("runner = $6".into());
    }
    if change.token_id.is_some() {
        sets.push("token_id = $7".into());
    }
    if change.confirmed_by.is_some() {
        sets.push("confirmed_by = $8".into());
    }
    if change.started {
        sets.push("started_at = COALESCE(started_at, $2)".into());
    }
    if change.finished {
        sets.push("finished_at = $2".into());
    }
    let sql = format!(
        "UPDATE runs SET {} WHERE id = $1 AND finished_at IS NULL AND status IN ({})",
        sets.join(", "),
        quoted(from)
    );
    let done = on_pool!(db, p => sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .bind(id)
        .bind(Utc::now())
        .bind(change.reason.flatten())
        .bind(change.job_id.flatten())
        .bind(change.lease.flatten())
        .bind(change.runner)
        .bind(change.token_id.flatten())
        .bind(change.confirmed_by)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Records a plan (its file as an encrypted blob) and moves the run to `to`.
#[allow(clippy::too_many_arguments)]
pub async fn record_plan(
    db: &Db,
    id: i64,
    lease: &str,
    plan: Option<NewBlob<'_>>,
    summary: &str,
    has_changes: bool,
    to: &'static str,
    finished: bool,
) -> Result<bool> {
    const SQL: &str = "UPDATE runs SET status = $1, plan_blob = $2, plan_summary = $3, \
        has_changes = $4, updated_at = $5, \
        finished_at = CASE WHEN $6 THEN $5 ELSE finished_at END \
        WHERE id = $7 AND lease = $8 AND status = 'planning' AND finished_at IS NULL";
    let now = Utc::now();
    let done = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        if let Some(b) = &plan {
            insert_blob_row!(&mut *tx, b.blob, b.size, b.sha256, now).await?;
        }
        let done = sqlx::query(SQL)
            .bind(to).bind(plan.as_ref().map(|b| b.blob.id.clone())).bind(summary)
            .bind(has_changes).bind(now).bind(finished).bind(id).bind(lease)
            .execute(&mut *tx).await?.rows_affected();
        if done == 1 {
            tx.commit().await?;
        }
        Ok::<u64, sqlx::Error>(done)
    })?;
    Ok(done == 1)
}

/// Counts one more cancel request; answers how many there have been.
pub async fn request_cancel(db: &Db, id: i64) -> Result<i64> {
    const SQL: &str = "UPDATE runs SET cancel_requests = cancel_requests + 1, updated_at = $1 \
        WHERE id = $2 AND finished_at IS NULL RETURNING cancel_requests";
    let row: Option<(i64,)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(Utc::now()).bind(id).fetch_optional(p).await)?;
    Ok(row.map_or(0, |r| r.0))
}

/// Appends `data` at `offset` of run `id`'s log. Idempotent: bytes already there are
/// skipped; a gap is refused. Answers the log's size afterwards.
pub async fn append_log(db: &Db, id: i64, offset: i64, data: &[u8]) -> Result<i64> {
    const SIZE: &str = "SELECT log_size FROM runs WHERE id = $1";
    const INSERT: &str = "INSERT INTO run_logs (run_id, \"offset\", data) VALUES ($1, $2, $3)";
    const GROW: &str = "UPDATE runs SET log_size = $1 WHERE id = $2";
    on_pool!(db, p => async {
        let mut tx = p.begin().await?;
        let (size,): (i64,) = sqlx::query_as(SIZE).bind(id).fetch_one(&mut *tx).await?;
        if offset > size {
            return Ok::<Result<i64>, sqlx::Error>(Err(Error::conflict(format!(
                "log offset {offset} is past the log's end {size}"
            ))));
        }
        let end = offset + data.len() as i64;
        if end <= size {
            return Ok(Ok(size));
        }
        let skip = usize::try_from(size - offset).unwrap_or(0);
        sqlx::query(INSERT).bind(id).bind(size).bind(&data[skip..]).execute(&mut *tx).await?;
        sqlx::query(GROW).bind(end).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Ok(end))
    }.await)?
}

/// Log chunks of run `id` that end after `offset`, in order, up to about `max` bytes.
pub async fn read_log(db: &Db, id: i64, offset: i64, max: i64) -> Result<Vec<(i64, Vec<u8>)>> {
    // A chunk that starts before `offset` may still reach past it: start from the last
    // chunk at or before it.
    const SQL: &str = "SELECT \"offset\", data FROM run_logs WHERE run_id = $1 AND \"offset\" >= \
        COALESCE((SELECT MAX(\"offset\") FROM run_logs WHERE run_id = $1 AND \"offset\" <= $2), 0) \
        AND \"offset\" < $3 ORDER BY \"offset\"";
    Ok(on_pool!(db, p => sqlx::query_as::<_, (i64, Vec<u8>)>(SQL)
        .bind(id).bind(offset).bind(offset + max).fetch_all(p).await)?)
}

/// The stored blob with id `id`.
pub async fn blob(db: &Db, id: &str) -> Result<StoredBlob> {
    const SQL: &str = "SELECT object_key, key_id, wrapped_key FROM blobs WHERE id = $1";
    let row: Option<(String, String, Vec<u8>)> =
        on_pool!(db, p => sqlx::query_as(SQL).bind(id).fetch_optional(p).await)?;
    let (object_key, key_id, wrapped_key) = row.ok_or(Error::NotFound("blob"))?;
    Ok(StoredBlob {
        id: id.to_string(),
        object_key,
        envelope: Envelope {
            key_id,
            wrapped_key,
        },
    })
}

/// Gives run `id` the queue job `job` unless it has one.
pub async fn attach_job(db: &Db, id: i64, job: i64) -> Result<bool> {
    const SQL: &str = "UPDATE runs SET job_id = $1 WHERE id = $2 AND job_id IS NULL \
        AND finished_at IS NULL";
    let done = on_pool!(db, p => sqlx::query(SQL).bind(job).bind(id)
        .execute(p).await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Queued runs of every org: how many, and when the longest-waiting one was queued.
pub async fn queue_stats(db: &Db) -> Result<(i64, Option<DateTime<Utc>>)> {
    const COUNT: &str = "SELECT COUNT(*) FROM runs WHERE status = 'queued'";
    const OLDEST: &str =
        "SELECT created_at FROM runs WHERE status = 'queued' ORDER BY created_at LIMIT 1";
    let count: i64 = on_pool!(db, p => sqlx::query_scalar(COUNT).fetch_one(p).await)?;
    if count == 0 {
        return Ok((0, None));
    }
    let oldest: Option<DateTime<Utc>> =
        on_pool!(db, p => sqlx::query_scalar(OLDEST).fetch_optional(p).await)?;
    Ok((count, oldest))
}
