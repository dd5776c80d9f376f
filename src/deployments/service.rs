//! Deployment rules: inputs validated against the blueprint's schema, the workspace created
//! through the state feature, sensitive inputs encrypted in the blob store, a run queued for
//! every change.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::Ctx;
use super::generate::{self, Root};
use super::runs;
use super::store::{self, DeploymentRow, NewBlob};
use super::views;
use crate::blueprints as blueprint;
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource};
use crate::infra::blob::{BlobKey, BlobKind, PlainBuffer};
use crate::infra::notes::note_operation;
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::{Page, Paginated};

pub const ACTIVE: &str = "active";
pub const DESTROYING: &str = "destroying";
pub const ARCHIVED: &str = "archived";
const REDACTED: &str = "(sensitive)";

fn ws_resource<'a>(org: &'a OrgName, name: &'a str) -> Resource<'a> {
    Resource::Workspace {
        org: org.as_str(),
        workspace: name,
    }
}

/// The deployment `name` if the caller may perform `action` on its workspace.
pub(super) async fn visible(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    action: Action,
) -> Result<DeploymentRow> {
    let org_id =
        crate::identity::orgs::resolve(&app.db, principal, action, ws_resource(org, name)).await?;
    store::find_deployment(&app.db, org_id, name)
        .await?
        .ok_or(Error::NotFound("deployment"))
}

/// Inputs split into what may be shown and what is kept encrypted.
struct Inputs {
    plain: Map<String, Value>,
    secret: Map<String, Value>,
}

fn split(inputs: Value, sensitive: &[String]) -> Inputs {
    let mut plain = Map::new();
    let mut secret = Map::new();
    if let Value::Object(map) = inputs {
        for (k, v) in map {
            if sensitive.contains(&k) {
                secret.insert(k, v);
            } else {
                plain.insert(k, v);
            }
        }
    }
    Inputs { plain, secret }
}

async fn seal(
    app: &Ctx,
    org_id: i64,
    secret: &Map<String, Value>,
) -> Result<Option<(crate::infra::blob::StoredBlob, i64, String)>> {
    if secret.is_empty() {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(secret).map_err(anyhow::Error::from)?;
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
    let blob = app
        .blobs
        .put(
            BlobKey::new(BlobKind::Secret, org_id),
            PlainBuffer::from_plaintext(&bytes),
        )
        .await?;
    Ok(Some((blob, bytes.len() as i64, sha)))
}

fn validate(schema: &Value, inputs: Option<Value>) -> Result<Value> {
    blueprint::validate_inputs(schema, &inputs.unwrap_or(Value::Null)).map_err(Error::Unprocessable)
}

pub async fn create(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    base_url: &str,
    req: views::CreateDeployment,
) -> Result<views::Deployment> {
    let ws = WorkspaceName::parse(&req.name)?;
    let org_id = crate::identity::orgs::resolve(
        &app.db,
        principal,
        Action::StateWrite,
        ws_resource(org, ws.as_str()),
    )
    .await?;
    note_operation("deployment:create", format!("deployment:{ws}"));
    let resolved = blueprint::resolve(
        &app.blueprints,
        principal,
        org,
        &req.blueprint,
        req.version.as_deref(),
    )
    .await?;
    let mut problems = Vec::new();
    let inputs = match validate(&resolved.schema, req.inputs) {
        Ok(v) => Some(v),
        Err(Error::Unprocessable(mut p)) => {
            problems.append(&mut p);
            None
        }
        Err(e) => return Err(e),
    };
    let auto_apply = req.auto_apply.unwrap_or(false);
    if auto_apply && !resolved.auto_apply {
        problems.push(format!(
            "auto_apply: blueprint {} does not allow it",
            resolved.name
        ));
    }
    let Some(inputs) = inputs.filter(|_| problems.is_empty()) else {
        return Err(Error::Unprocessable(problems));
    };
    let workspace_id =
        crate::state::service::create_workspace(&app.state, principal, org, &ws).await?;
    let split = split(inputs, &resolved.sensitive_inputs);
    let sealed = seal(app, org_id, &split.secret).await?;
    let module = format!(
        "{}/{}/{}",
        resolved.namespace, resolved.module_name, resolved.system
    );
    let sensitive = json!(resolved.sensitive_inputs).to_string();
    let outputs = json!(resolved.outputs).to_string();
    let actor = principal.actor();
    let _turn = app.write_turn().await;
    store::insert_deployment(
        &app.db,
        store::NewDeployment {
            org_id,
            name: ws.as_str(),
            workspace_id,
            blueprint_id: resolved.id,
            blueprint: &resolved.name,
            module: &module,
            version: &resolved.version,
            inputs: &Value::Object(split.plain).to_string(),
            sensitive: &sensitive,
            outputs: &outputs,
            auto_apply,
            created_by: &actor,
        },
        sealed.as_ref().map(|(blob, size, sha)| NewBlob {
            blob,
            size: *size,
            sha256: sha,
        }),
    )
    .await?;
    drop(_turn);
    let dep = store::find_deployment(&app.db, org_id, ws.as_str())
        .await?
        .ok_or(Error::NotFound("deployment"))?;
    queue_run(app, &dep, org, "plan", &actor, base_url).await?;
    show_row(app, principal, org, dep).await
}

/// Queues a run of `operation` over the deployment's current settings.
pub(super) async fn queue_run(
    app: &Ctx,
    dep: &DeploymentRow,
    org: &OrgName,
    operation: &str,
    actor: &str,
    base_url: &str,
) -> Result<i64> {
    let sensitive: Vec<String> = serde_json::from_str(&dep.sensitive).unwrap_or_default();
    let outputs: Vec<(String, bool)> = serde_json::from_str(&dep.outputs).unwrap_or_default();
    let plain: Map<String, Value> = serde_json::from_str(&dep.inputs).unwrap_or_default();
    let mut names: Vec<(String, bool)> = plain.keys().map(|k| (k.clone(), false)).collect();
    if dep.secrets_blob.is_some() {
        let secrets = secrets(app, dep.secrets_blob.as_deref()).await?;
        names.extend(
            secrets
                .keys()
                .filter(|k| sensitive.contains(k))
                .map(|k| (k.clone(), true)),
        );
    }
    let main = generate::main_tf(&Root {
        url: base_url,
        org: org.as_str(),
        workspace: &dep.name,
        module: &dep.module,
        version: &dep.version,
        inputs: names,
        outputs: &outputs,
    });
    let mut files = BTreeMap::new();
    files.insert(
        "main.tf.json".to_string(),
        serde_json::to_string_pretty(&main).map_err(anyhow::Error::from)?,
    );
    let config = json!({"files": files, "inputs": plain, "url": base_url, "org": org.as_str(), "workspace": dep.name}).to_string();
    let _turn = app.write_turn().await;
    let id = store::insert_run(
        &app.db,
        store::NewRun {
            org_id: dep.org_id,
            deployment_id: dep.id,
            workspace_id: dep.workspace_id,
            operation,
            version: &dep.version,
            config: &config,
            secrets_blob: dep.secrets_blob.as_deref(),
            auto_apply: dep.auto_apply,
            created_by: actor,
        },
    )
    .await?;
    drop(_turn);
    super::events::announce(app, id, runs::QUEUED).await;
    runs::advance(app, dep.workspace_id).await?;
    Ok(id)
}

/// The sensitive inputs kept in blob `id`.
pub(super) async fn secrets(app: &Ctx, id: Option<&str>) -> Result<Map<String, Value>> {
    let Some(id) = id else { return Ok(Map::new()) };
    let blob = store::blob(&app.db, id).await?;
    let bytes = app.blobs.get(&blob).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or_default())
}

pub async fn show(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
) -> Result<views::Deployment> {
    let dep = visible(app, principal, org, name, Action::StateRead).await?;
    show_row(app, principal, org, dep).await
}

pub async fn list(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<views::Deployment>> {
    let org_id = crate::identity::orgs::resolve(
        &app.db,
        principal,
        Action::OrgRead,
        Resource::Org(org.as_str()),
    )
    .await?;
    let rows = store::list_deployments(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    let mut out = Vec::new();
    for row in rows {
        // Only what the caller may read (scoped tokens see their workspaces).
        if crate::identity::auth::authorize(
            principal,
            Action::StateRead,
            ws_resource(org, &row.name),
        )
        .is_ok()
        {
            out.push(show_row(app, principal, org, row).await?);
        }
    }
    Ok(Paginated::new(out, page))
}

async fn show_row(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    dep: DeploymentRow,
) -> Result<views::Deployment> {
    let mut inputs: Map<String, Value> = serde_json::from_str(&dep.inputs).unwrap_or_default();
    let sensitive: Vec<String> = serde_json::from_str(&dep.sensitive).unwrap_or_default();
    if dep.secrets_blob.is_some() {
        for name in sensitive.iter() {
            inputs.insert(name.clone(), Value::String(REDACTED.into()));
        }
    }
    let ws = WorkspaceName::parse(&dep.name)?;
    let outputs =
        match crate::state::service::current_outputs(&app.state, principal, org, &ws).await {
            Ok(Some(Value::Object(outputs))) => outputs
                .into_iter()
                .map(|(k, v)| {
                    let value = if v["sensitive"] == Value::Bool(true) {
                        Value::String(REDACTED.into())
                    } else {
                        v["value"].clone()
                    };
                    (k, value)
                })
                .collect(),
            Ok(_) | Err(Error::Forbidden) => Map::new(),
            Err(e) => return Err(e),
        };
    let current_run = match store::latest_run(&app.db, dep.id).await? {
        Some(run) => Some(runs::view(app, run, dep.name.clone()).await?),
        None => None,
    };
    Ok(views::Deployment {
        workspace: dep.name.clone(),
        name: dep.name,
        status: dep.status,
        blueprint: dep.blueprint,
        module: dep.module,
        version: dep.version,
        inputs: Value::Object(inputs),
        outputs: Value::Object(outputs),
        auto_apply: dep.auto_apply,
        diverged: dep.diverged,
        current_run,
        created_at: dep.created_at,
        created_by: dep.created_by,
        updated_at: dep.updated_at,
    })
}

/// New inputs, version or auto-apply: validated like a new deployment, then a plan run.
pub async fn update(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    base_url: &str,
    req: views::UpdateDeployment,
) -> Result<views::Deployment> {
    let dep = visible(app, principal, org, name, Action::StateWrite).await?;
    note_operation("deployment:update", format!("deployment:{name}"));
    if dep.status != ACTIVE {
        return Err(Error::conflict(format!(
            "deployment {name} is {}",
            dep.status
        )));
    }
    let version = req.version.clone().unwrap_or_else(|| dep.version.clone());
    let resolved = blueprint::resolve(
        &app.blueprints,
        principal,
        org,
        &dep.blueprint,
        Some(&version),
    )
    .await?;
    let inputs = match req.inputs {
        Some(inputs) => inputs,
        None => {
            let mut all: Map<String, Value> = serde_json::from_str(&dep.inputs).unwrap_or_default();
            all.extend(secrets(app, dep.secrets_blob.as_deref()).await?);
            Value::Object(all)
        }
    };
    let inputs = validate(&resolved.schema, Some(inputs))?;
    let auto_apply = req.auto_apply.unwrap_or(dep.auto_apply);
    if auto_apply && !resolved.auto_apply {
        return Err(Error::Unprocessable(vec![format!(
            "auto_apply: blueprint {} does not allow it",
            resolved.name
        )]));
    }
    let split = split(inputs, &resolved.sensitive_inputs);
    let sealed = seal(app, dep.org_id, &split.secret).await?;
    let _turn = app.write_turn().await;
    store::update_deployment(
        &app.db,
        dep.id,
        store::DeploymentUpdate {
            version: &resolved.version,
            inputs: &Value::Object(split.plain).to_string(),
            sensitive: &json!(resolved.sensitive_inputs).to_string(),
            outputs: &json!(resolved.outputs).to_string(),
            auto_apply,
        },
        sealed.as_ref().map(|(blob, size, sha)| NewBlob {
            blob,
            size: *size,
            sha256: sha,
        }),
    )
    .await?;
    drop(_turn);
    let dep = visible(app, principal, org, name, Action::StateWrite).await?;
    queue_run(app, &dep, org, "plan", &principal.actor(), base_url).await?;
    show_row(app, principal, org, dep).await
}

/// Queues a plan of the current settings (the `plan` role may do this much).
pub async fn plan(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    base_url: &str,
) -> Result<views::Run> {
    let dep = visible(app, principal, org, name, Action::StateLock).await?;
    note_operation("run:plan", format!("deployment:{name}"));
    if dep.status != ACTIVE {
        return Err(Error::conflict(format!(
            "deployment {name} is {}",
            dep.status
        )));
    }
    let id = queue_run(app, &dep, org, "plan", &principal.actor(), base_url).await?;
    runs::show(app, principal, org, id).await
}

/// Queues the destroy run; once it is applied the deployment is archived.
pub async fn destroy(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    base_url: &str,
) -> Result<views::Run> {
    let dep = visible(app, principal, org, name, Action::StateWrite).await?;
    note_operation("deployment:destroy", format!("deployment:{name}"));
    if dep.status == ARCHIVED {
        return Err(Error::conflict(format!("deployment {name} is archived")));
    }
    store::set_deployment_status(&app.db, dep.id, DESTROYING).await?;
    let id = queue_run(app, &dep, org, "destroy", &principal.actor(), base_url).await?;
    runs::show(app, principal, org, id).await
}

/// After a destroy run finished without error.
pub(super) async fn archive(app: &Ctx, deployment_id: i64) -> Result<()> {
    store::set_deployment_status(&app.db, deployment_id, ARCHIVED).await
}

/// After a destroy run failed: the deployment is live again.
pub(super) async fn reactivate(app: &Ctx, deployment_id: i64) -> Result<()> {
    store::set_deployment_status(&app.db, deployment_id, ACTIVE).await
}

/// The run queue across every org, for the metrics: queued runs and how long the
/// longest-waiting one has waited, in seconds (0 when none waits).
pub async fn queue_stats(app: &Ctx) -> Result<(i64, f64)> {
    let (count, oldest) = store::queue_stats(&app.db).await?;
    let waited = oldest.map_or(0.0, |at| {
        (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    Ok((count, waited))
}
