//! Blueprint rules: who may curate and read, which module version a blueprint stands for,
//! what its schema is, and the public surface deployments use ([`resolve`],
//! [`validate_inputs`]). No HTTP types here.
//!
//! A blueprint stores what was derived from the version it last resolved to. Reads resolve
//! the constraint again (the registry caches version lists) and derive anew only when a newer
//! matching version has been published since.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::Value;

use super::Ctx;
use super::constraint::Constraint;
use super::schema::{self, Derived, InputOverride, Sources};
use super::store::{self, BlueprintRow, Fields, ListFilter};
use super::views::{BlueprintSummary, BlueprintUpdate, BlueprintView, NewBlueprint, Status};
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource, allowed, authorize};
use crate::identity::orgs;
use crate::names::{BlueprintName, OrgName};
use crate::pagination::{Page, Paginated};
use crate::registry::modules::{self, ModuleAddress, ModuleVersion};

const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 4000;
const MAX_CATEGORY: usize = 64;
const MAX_OWNER: usize = 200;
const MAX_TAGS: usize = 20;
const MAX_TAG: usize = 64;
const MAX_CONSTRAINT: usize = 200;
const MAX_OVERRIDES: usize = 500;
const MAX_LABEL: usize = 200;
const MAX_ALLOWED: usize = 1000;
/// Largest serialized set of overrides (defaults and allowed values included).
const MAX_OVERRIDES_BYTES: usize = 256 * 1024;

/// A blueprint resolved to one module version, as a deployment needs it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub id: i64,
    pub org: String,
    pub name: String,
    pub namespace: String,
    pub module_name: String,
    pub system: String,
    /// The exact module version.
    pub version: String,
    /// The input schema of that version, with the blueprint's overrides applied.
    pub schema: Value,
    pub auto_apply: bool,
    /// Inputs the module declares `sensitive`.
    pub sensitive_inputs: Vec<String>,
    /// The module's outputs, and whether each is `sensitive`, as derived from its `output`
    /// blocks (a deployment's root module passes them through).
    pub outputs: Vec<(String, bool)>,
}

/// Authorizes reading the blueprint and resolves its module version (the constraint, or
/// `version` if given and allowed by it). Drafts are only for org admins.
pub async fn resolve(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &str,
    version: Option<&str>,
) -> Result<Resolved> {
    let name = BlueprintName::parse(name)?;
    let row = readable(app, principal, org, &name).await?;
    let addr = address(org, &row)?;
    let constraint = Constraint::parse(&row.version_constraint)?;
    let (version, derived) = match version {
        None => {
            let row = refresh(app, principal, &addr, &constraint, row.clone()).await?;
            let derived = stored_derived(&row)?;
            (row.module_version, derived)
        }
        Some(text) => {
            let version = ModuleVersion::parse(text)
                .map_err(|e| Error::Unprocessable(vec![format!("version: {e}")]))?;
            let published = modules::module_versions(&app.registry, principal, &addr).await?;
            if !published.contains(&version.to_string()) {
                return Err(Error::Unprocessable(vec![format!(
                    "version: {version} is not a published version of {addr}"
                )]));
            }
            if !constraint.allows(version.semver()) {
                return Err(Error::Unprocessable(vec![format!(
                    "version: {version} is not allowed by the blueprint's constraint {:?}",
                    row.version_constraint
                )]));
            }
            let derived = if version.to_string() == row.module_version {
                stored_derived(&row)?
            } else {
                derive(app, principal, &addr, &version).await?
            };
            (version.to_string(), derived)
        }
    };
    let (schema, _) = schema::apply_overrides(&derived.schema, &overrides(&row)?);
    Ok(Resolved {
        id: row.id,
        org: org.to_string(),
        name: row.name,
        namespace: org.to_string(),
        module_name: row.module_name,
        system: row.module_system,
        version,
        sensitive_inputs: schema::sensitive_inputs(&schema),
        outputs: derived
            .outputs
            .iter()
            .map(|o| (o.name.clone(), o.sensitive))
            .collect(),
        schema,
        auto_apply: row.auto_apply,
    })
}

/// Validates deployment inputs against a blueprint schema (with defaults applied where
/// absent). `Err` carries one message per field, such as `inputs.cidr: must match ^10\.`, or
/// the module's own `error_message` when the rule came from a `validation` block.
pub fn validate_inputs(
    schema: &serde_json::Value,
    inputs: &serde_json::Value,
) -> std::result::Result<serde_json::Value, Vec<String>> {
    schema::validate_inputs(schema, inputs)
}

/// What a list asks for besides the page.
#[derive(Debug, Default)]
pub struct ListRequest<'a> {
    pub category: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub status: Option<Status>,
    pub query: Option<&'a str>,
}

pub async fn create(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
    request: NewBlueprint,
    base_url: &str,
) -> Result<BlueprintView> {
    let org_id = admin(app, principal, org, name).await?;
    let mut errors = Vec::new();
    let addr = module_address(org, &request.module, &mut errors);
    let constraint_text = request.version.as_deref().unwrap_or("").trim().to_string();
    let constraint = constraint(&constraint_text, &mut errors);
    let title = request.title.unwrap_or_else(|| name.to_string());
    let tags = tags(&request.tags, &mut errors);
    catalogue_fields(
        &Catalogue {
            title: &title,
            description: request.description.as_deref(),
            category: request.category.as_deref(),
            owner: request.owner.as_deref(),
        },
        &mut errors,
    );
    let overrides_json = overrides_json(&request.inputs, &mut errors);
    let (Some(addr), Some(constraint), true) = (addr, constraint, errors.is_empty()) else {
        return Err(Error::Unprocessable(errors));
    };
    let (version, derived) = newest(app, principal, &addr, &constraint, &constraint_text).await?;
    let (_, problems) = schema::apply_overrides(&derived.schema, &request.inputs);
    if !problems.is_empty() {
        return Err(Error::Unprocessable(problems));
    }
    let derived_json = to_json(&derived)?;
    let status = request.status.unwrap_or(Status::Draft);
    let version_text = version.to_string();
    let fields = Fields {
        module_name: addr.name.as_str(),
        module_system: addr.system.as_str(),
        version_constraint: &constraint_text,
        title: title.trim(),
        description: request.description.as_deref(),
        category: request.category.as_deref(),
        owner: request.owner.as_deref(),
        tags: &tags,
        status: status.as_str(),
        auto_apply: request.auto_apply,
        overrides: &overrides_json,
        module_version: &version_text,
        derived: &derived_json,
        summary: &derived.summary,
    };
    let row = store::insert(
        &app.db,
        org_id,
        name.as_str(),
        &fields,
        &principal.actor(),
        Utc::now(),
    )
    .await
    .map_err(|e| e.or_conflict(|| format!("blueprint {name} already exists in {org}")))?;
    note_admin(principal, org, name);
    tracing::info!(%org, blueprint = %name, module = %addr, version = %version, "blueprint created");
    full_view(row, org, base_url)
}

pub async fn list(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    request: ListRequest<'_>,
    page: Page,
    base_url: &str,
) -> Result<Paginated<BlueprintSummary>> {
    let namespace = Resource::Namespace {
        org: org.as_str(),
        public: false,
    };
    let org_id = orgs::resolve(&app.db, principal, Action::RegistryRead, namespace).await?;
    let pattern = request.query.map(like_pattern);
    let filter = ListFilter {
        org_id,
        category: request.category,
        tag: request.tag,
        status: request.status.map(Status::as_str),
        include_drafts: allowed(principal, Action::OrgAdmin, Resource::Org(org.as_str())),
        pattern: pattern.as_deref(),
    };
    let rows = store::list(&app.db, &filter, page.fetch_limit(), page.offset).await?;
    let mut page = Paginated::new(rows, page);
    // Each entry shows the version it resolves to now; version lists are cached per module.
    // An entry whose module the caller may not read keeps what it last resolved to, rather
    // than failing the whole page.
    let mut current = Vec::with_capacity(page.data.len());
    for row in std::mem::take(&mut page.data) {
        let addr = address(org, &row)?;
        let Ok(constraint) = Constraint::parse(&row.version_constraint) else {
            current.push(row);
            continue;
        };
        match refresh(app, principal, &addr, &constraint, row.clone()).await {
            Ok(row) => current.push(row),
            Err(Error::Forbidden | Error::NotFound(_)) => current.push(row),
            Err(err) => return Err(err),
        }
    }
    page.data = current;
    Ok(page.map(|row| summary_view(&row, org, base_url)))
}

pub async fn show(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
    base_url: &str,
) -> Result<BlueprintView> {
    let row = current(app, principal, org, name).await?;
    full_view(row, org, base_url)
}

/// The input schema alone, overrides applied.
pub async fn input_schema(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
) -> Result<Value> {
    let row = current(app, principal, org, name).await?;
    let derived = stored_derived(&row)?;
    Ok(schema::apply_overrides(&derived.schema, &overrides(&row)?).0)
}

pub async fn update(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
    patch: BlueprintUpdate,
    base_url: &str,
) -> Result<BlueprintView> {
    let org_id = admin(app, principal, org, name).await?;
    let row = store::find(&app.db, org_id, name.as_str())
        .await?
        .ok_or(Error::NotFound("blueprint"))?;
    let mut errors = Vec::new();
    let module_changed = patch.module.is_some() || patch.version.is_some();
    let module_text = patch
        .module
        .clone()
        .unwrap_or_else(|| format!("{org}/{}/{}", row.module_name, row.module_system));
    let addr = module_address(org, &module_text, &mut errors);
    let constraint_text = match &patch.version {
        Some(version) => version.as_deref().unwrap_or("").trim().to_string(),
        None => row.version_constraint.clone(),
    };
    let constraint = constraint(&constraint_text, &mut errors);
    let title = patch.title.unwrap_or_else(|| row.title.clone());
    let description = patch.description.unwrap_or_else(|| row.description.clone());
    let category = patch.category.unwrap_or_else(|| row.category.clone());
    let owner = patch.owner.unwrap_or_else(|| row.owner.clone());
    let tags = match &patch.tags {
        Some(given) => self::tags(given, &mut errors),
        None => serde_json::from_str(&row.tags).unwrap_or_default(),
    };
    catalogue_fields(
        &Catalogue {
            title: &title,
            description: description.as_deref(),
            category: category.as_deref(),
            owner: owner.as_deref(),
        },
        &mut errors,
    );
    let inputs_changed = patch.inputs.is_some();
    let inputs = match patch.inputs {
        Some(inputs) => inputs,
        None => overrides(&row)?,
    };
    let overrides_json = overrides_json(&inputs, &mut errors);
    let (Some(addr), Some(constraint), true) = (addr, constraint, errors.is_empty()) else {
        return Err(Error::Unprocessable(errors));
    };
    let (version, derived) = if module_changed {
        let (version, derived) =
            newest(app, principal, &addr, &constraint, &constraint_text).await?;
        (version.to_string(), derived)
    } else {
        let row = refresh(app, principal, &addr, &constraint, row.clone()).await?;
        let derived = stored_derived(&row)?;
        (row.module_version, derived)
    };
    // Overrides are held to the schema when they or the module change; a change of title
    // alone does not fail over an override a newer module version no longer fits.
    if inputs_changed || module_changed {
        let (_, problems) = schema::apply_overrides(&derived.schema, &inputs);
        if !problems.is_empty() {
            return Err(Error::Unprocessable(problems));
        }
    }
    let derived_json = to_json(&derived)?;
    let status = patch
        .status
        .or_else(|| Status::parse(&row.status))
        .unwrap_or(Status::Draft);
    let fields = Fields {
        module_name: addr.name.as_str(),
        module_system: addr.system.as_str(),
        version_constraint: &constraint_text,
        title: title.trim(),
        description: description.as_deref(),
        category: category.as_deref(),
        owner: owner.as_deref(),
        tags: &tags,
        status: status.as_str(),
        auto_apply: patch.auto_apply.unwrap_or(row.auto_apply),
        overrides: &overrides_json,
        module_version: &version,
        derived: &derived_json,
        summary: &derived.summary,
    };
    store::update(&app.db, row.id, &fields, Utc::now()).await?;
    note_admin(principal, org, name);
    let row = store::find(&app.db, org_id, name.as_str())
        .await?
        .ok_or(Error::NotFound("blueprint"))?;
    full_view(row, org, base_url)
}

/// Deletes a blueprint; one with live deployments is refused (409).
pub async fn delete(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
) -> Result<()> {
    let org_id = admin(app, principal, org, name).await?;
    if !store::delete(&app.db, org_id, name.as_str()).await? {
        return Err(Error::NotFound("blueprint"));
    }
    tracing::info!(%org, blueprint = %name, actor = %principal.actor(), "blueprint deleted");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Authorization.

fn blueprint_resource<'a>(org: &'a OrgName, name: &'a BlueprintName) -> Resource<'a> {
    Resource::Blueprint {
        org: org.as_str(),
        name: name.as_str(),
    }
}

/// Authorizes curating `name` (org admins, or a policy granting `org:admin` on
/// `blueprint:NAME`) and returns the org's id.
async fn admin(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
) -> Result<i64> {
    orgs::resolve(
        &app.db,
        principal,
        Action::OrgAdmin,
        blueprint_resource(org, name),
    )
    .await
}

/// Module reads note their own access decision; the trail should name the blueprint change.
fn note_admin(principal: &Principal, org: &OrgName, name: &BlueprintName) {
    // Already allowed by `admin`, which ran first.
    let _ = authorize(principal, Action::OrgAdmin, blueprint_resource(org, name));
}

/// A blueprint the caller may read; drafts only for those who may curate it.
async fn readable(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
) -> Result<BlueprintRow> {
    let resource = blueprint_resource(org, name);
    let org_id = orgs::resolve(&app.db, principal, Action::RegistryRead, resource).await?;
    let row = store::find(&app.db, org_id, name.as_str())
        .await?
        .ok_or(Error::NotFound("blueprint"))?;
    if row.status == Status::Draft.as_str() && !allowed(principal, Action::OrgAdmin, resource) {
        return Err(Error::NotFound("blueprint"));
    }
    Ok(row)
}

/// A readable blueprint with what is derived brought up to date.
async fn current(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &BlueprintName,
) -> Result<BlueprintRow> {
    let row = readable(app, principal, org, name).await?;
    let addr = address(org, &row)?;
    match Constraint::parse(&row.version_constraint) {
        Ok(constraint) => refresh(app, principal, &addr, &constraint, row).await,
        Err(_) => Ok(row),
    }
}

// ---------------------------------------------------------------------------------------------
// Module versions and derivation.

/// The newest published version `constraint` allows, `None` when there is none (or the
/// module is gone).
async fn newest_version(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    constraint: &Constraint,
) -> Result<Option<ModuleVersion>> {
    let versions = match modules::module_versions(&app.registry, principal, addr).await {
        Ok(versions) => versions,
        Err(Error::NotFound("module")) => return Ok(None),
        Err(err) => return Err(err),
    };
    // Oldest first, so the newest match is the last.
    Ok(versions
        .iter()
        .rev()
        .filter_map(|v| ModuleVersion::parse(v).ok())
        .find(|v| constraint.matches(v.semver())))
}

/// The version a new or re-pointed blueprint stands for, and what it declares.
async fn newest(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    constraint: &Constraint,
    constraint_text: &str,
) -> Result<(ModuleVersion, Derived)> {
    let Some(version) = newest_version(app, principal, addr, constraint).await? else {
        let message = if constraint_text.is_empty() {
            format!("module: {addr} has no published release in the registry")
        } else {
            format!("version: no published version of {addr} matches {constraint_text:?}")
        };
        return Err(Error::Unprocessable(vec![message]));
    };
    let derived = derive(app, principal, addr, &version).await?;
    Ok((version, derived))
}

/// `row` with what is derived from the newest matching version, derived and stored anew when
/// that is not the version it was derived from. When nothing matches any more (versions
/// deleted), the last derivation stands.
async fn refresh(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    constraint: &Constraint,
    mut row: BlueprintRow,
) -> Result<BlueprintRow> {
    let Some(version) = newest_version(app, principal, addr, constraint).await? else {
        return Ok(row);
    };
    let version = version.to_string();
    if version == row.module_version {
        return Ok(row);
    }
    let parsed = ModuleVersion::parse(&version)?;
    let derived = derive(app, principal, addr, &parsed).await?;
    let json = to_json(&derived)?;
    store::update_derived(&app.db, row.id, &version, &json, &derived.summary).await?;
    tracing::info!(blueprint = %row.name, module = %addr, %version, "blueprint follows a new module version");
    row.module_version = version;
    row.derived = json;
    row.summary = derived.summary;
    Ok(row)
}

async fn derive(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: &ModuleVersion,
) -> Result<Derived> {
    let config = modules::module_config(&app.registry, principal, addr, version).await?;
    // Parsing HCL is CPU work: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        schema::derive(Sources {
            tf_files: &config.tf_files,
            tf_json_files: &config.tf_json_files,
            readme: &config.readme,
        })
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("schema derivation panicked: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Checking what a create or update sends.

fn module_address(org: &OrgName, text: &str, errors: &mut Vec<String>) -> Option<ModuleAddress> {
    let parts: Vec<&str> = text.split('/').collect();
    let [namespace, name, system] = parts.as_slice() else {
        errors.push("module: must be namespace/name/system, e.g. acme/vpc/aws".into());
        return None;
    };
    if *namespace != org.as_str() {
        errors.push(format!(
            "module: must be a module of this organization's registry ({org}/…)"
        ));
        return None;
    }
    match ModuleAddress::lookup(namespace, name, system) {
        Ok(addr) => Some(addr),
        Err(e) => {
            errors.push(format!("module: {e}"));
            None
        }
    }
}

fn constraint(text: &str, errors: &mut Vec<String>) -> Option<Constraint> {
    if text.chars().count() > MAX_CONSTRAINT {
        errors.push(format!(
            "version: must be at most {MAX_CONSTRAINT} characters"
        ));
        return None;
    }
    match Constraint::parse(text) {
        Ok(constraint) => Some(constraint),
        Err(Error::Unprocessable(messages)) => {
            errors.extend(messages);
            None
        }
        Err(e) => {
            errors.push(format!("version: {e}"));
            None
        }
    }
}

struct Catalogue<'a> {
    title: &'a str,
    description: Option<&'a str>,
    category: Option<&'a str>,
    owner: Option<&'a str>,
}

fn catalogue_fields(fields: &Catalogue<'_>, errors: &mut Vec<String>) {
    let mut text = |field: &str, value: Option<&str>, max: usize| {
        let Some(value) = value else { return };
        let length = value.trim().chars().count();
        if length == 0 || length > max {
            errors.push(format!("{field}: must be 1-{max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            errors.push(format!("{field}: must not contain control characters"));
        }
    };
    text("title", Some(fields.title), MAX_TITLE);
    text("description", fields.description, MAX_DESCRIPTION);
    text("category", fields.category, MAX_CATEGORY);
    text("owner", fields.owner, MAX_OWNER);
}

/// Tags, deduplicated in order: 1-64 lowercase letters, digits, `-`, `_`, `.` or `:`.
fn tags(given: &[String], errors: &mut Vec<String>) -> Vec<String> {
    if given.len() > MAX_TAGS {
        errors.push(format!("tags: at most {MAX_TAGS} tags"));
        return Vec::new();
    }
    let mut tags: Vec<String> = Vec::new();
    for tag in given {
        let valid = (1..=MAX_TAG).contains(&tag.len())
            && tag.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'_' | b'.' | b':')
            });
        if !valid {
            errors.push(format!(
                "tags: {tag:?} is not a tag; use 1-{MAX_TAG} lowercase letters, digits, '-', '_', '.' or ':'"
            ));
        } else if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}

fn overrides_json(inputs: &BTreeMap<String, InputOverride>, errors: &mut Vec<String>) -> String {
    if inputs.len() > MAX_OVERRIDES {
        errors.push(format!(
            "inputs: at most {MAX_OVERRIDES} inputs may be curated"
        ));
    }
    for (name, input) in inputs {
        if let Some(label) = &input.label
            && (label.trim().is_empty() || label.chars().count() > MAX_LABEL)
        {
            errors.push(format!(
                "inputs.{name}.label: must be 1-{MAX_LABEL} characters"
            ));
        }
        if input
            .allowed
            .as_ref()
            .is_some_and(|a| a.len() > MAX_ALLOWED)
        {
            errors.push(format!(
                "inputs.{name}.allowed: at most {MAX_ALLOWED} values"
            ));
        }
    }
    let json = serde_json::to_string(inputs).unwrap_or_else(|_| "{}".into());
    if json.len() > MAX_OVERRIDES_BYTES {
        errors.push(format!(
            "inputs: the overrides are larger than {} KiB",
            MAX_OVERRIDES_BYTES / 1024
        ));
    }
    json
}

/// `%text%` for `LIKE … ESCAPE '\'`, lowercase, with the wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

// ---------------------------------------------------------------------------------------------
// Rows to answers.

fn address(org: &OrgName, row: &BlueprintRow) -> Result<ModuleAddress> {
    ModuleAddress::lookup(org.as_str(), &row.module_name, &row.module_system)
}

fn stored_derived(row: &BlueprintRow) -> Result<Derived> {
    serde_json::from_str(&row.derived)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("stored blueprint schema")))
}

fn overrides(row: &BlueprintRow) -> Result<BTreeMap<String, InputOverride>> {
    serde_json::from_str(&row.overrides)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("stored blueprint overrides")))
}

fn to_json(derived: &Derived) -> Result<String> {
    serde_json::to_string(derived)
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("blueprint schema")))
}

/// The host (and port) of the base URL: what a module `source` starts with.
fn host(base_url: &str) -> &str {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

fn summary_view(row: &BlueprintRow, org: &OrgName, base_url: &str) -> BlueprintSummary {
    let module = format!("{org}/{}/{}", row.module_name, row.module_system);
    BlueprintSummary {
        name: row.name.clone(),
        source: format!("{}/{module}", host(base_url)),
        module,
        version: Some(row.version_constraint.clone()).filter(|v| !v.is_empty()),
        module_version: row.module_version.clone(),
        title: row.title.clone(),
        description: row
            .description
            .clone()
            .unwrap_or_else(|| row.summary.clone()),
        category: row.category.clone(),
        tags: serde_json::from_str(&row.tags).unwrap_or_default(),
        owner: row.owner.clone(),
        status: row.status.clone(),
        auto_apply: row.auto_apply,
        created_at: row.created_at,
        updated_at: row.updated_at,
        created_by: row.created_by.clone(),
    }
}

fn full_view(row: BlueprintRow, org: &OrgName, base_url: &str) -> Result<BlueprintView> {
    let derived = stored_derived(&row)?;
    let inputs = overrides(&row)?;
    let (input_schema, _) = schema::apply_overrides(&derived.schema, &inputs);
    Ok(BlueprintView {
        summary: summary_view(&row, org, base_url),
        inputs,
        input_schema,
        outputs: derived.outputs,
        readme: derived.readme,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_host_comes_from_the_base_url() {
        assert_eq!(host("https://terrace.example.com"), "terrace.example.com");
        assert_eq!(host("https://127.0.0.1:8443/prefix"), "127.0.0.1:8443");
        assert_eq!(host("localhost"), "localhost");
    }
}
