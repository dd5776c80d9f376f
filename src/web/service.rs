//! What each page shows, gathered from the features' services (which authorize); no HTTP.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::Ctx;
use crate::error::{Error, Result};
use crate::identity::auth::{Action, Principal, Resource, allowed};
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::{PageRequest, Paginated};
use crate::registry::modules::{
    self as modules, ListRequest, ModuleAddress, ModuleDetail, ModuleList, ModuleVersion,
};
use crate::state::diff::StateDiff;
use crate::state::management::{self, StateVersion, WorkspaceSummary};
use crate::state::service as state;

/// Rows per page of the long lists.
pub const PAGE_SIZE: i64 = 50;

/// The orgs a signed-in user belongs to, by name.
pub fn orgs(principal: &Principal) -> Vec<String> {
    let mut names: Vec<String> = principal
        .caller()
        .map(|c| c.grants.iter().map(|g| g.org_name.clone()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn page(cursor: Option<String>) -> Result<crate::pagination::Page> {
    PageRequest {
        limit: Some(PAGE_SIZE),
        offset: None,
        cursor,
    }
    .validate_keyed()
}

pub async fn workspaces(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    cursor: Option<String>,
) -> Result<Paginated<WorkspaceSummary>> {
    management::list_workspaces(&app.state, principal, org, page(cursor)?).await
}

/// An output of the current state; the value is `None` when sensitive.
pub struct Output {
    pub name: String,
    pub value: Option<String>,
}

/// A workspace's page: its summary, a page of versions, its outputs, and which admin actions
/// the viewer may take (only those are offered).
pub struct Workspace {
    pub summary: WorkspaceSummary,
    pub versions: Paginated<StateVersion>,
    pub outputs: Vec<Output>,
    /// The state is too large to read its outputs for a page.
    pub outputs_unread: bool,
    pub may_admin: bool,
}

pub async fn workspace(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    cursor: Option<String>,
) -> Result<Workspace> {
    let summary = management::workspace(&app.state, principal, org, ws).await?;
    let versions = management::list_versions(&app.state, principal, org, ws, page(cursor)?).await?;
    // Reading outputs parses the whole current state: not for a very large one.
    let large = summary
        .size
        .is_some_and(|size| size > crate::state::diff::MAX_BYTES);
    let current = match large {
        true => None,
        false => state::current_outputs(&app.state, principal, org, ws).await?,
    };
    let outputs = current
        .and_then(|o| o.as_object().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, output)| Output {
            value: (output["sensitive"].as_bool() != Some(true))
                .then(|| output["value"].to_string()),
            name,
        })
        .collect();
    let resource = Resource::Workspace {
        org: org.as_str(),
        workspace: ws.as_str(),
    };
    Ok(Workspace {
        summary,
        versions,
        outputs,
        outputs_unread: large,
        may_admin: allowed(principal, Action::StateAdmin, resource),
    })
}

pub async fn diff(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    from: i64,
    to: i64,
) -> Result<StateDiff> {
    management::diff(&app.state, principal, org, ws, from, to).await
}

pub async fn download(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<Bytes> {
    management::read_version(&app.state, principal, org, ws, serial).await
}

pub async fn rollback_target(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<StateVersion> {
    management::rollback_target(&app.state, principal, org, ws, serial).await
}

pub async fn force_unlock(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<()> {
    management::force_unlock(&app.state, principal, org, ws).await
}

pub async fn rollback(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
    serial: i64,
) -> Result<StateVersion> {
    management::rollback(&app.state, principal, org, ws, serial).await
}

/// A page of the modules the viewer may see, latest version each; `query` searches names and
/// descriptions.
pub async fn modules(
    app: &Ctx,
    principal: &Principal,
    query: Option<&str>,
    offset: Option<i64>,
) -> Result<ModuleList> {
    let page = PageRequest {
        limit: Some(PAGE_SIZE),
        offset,
        cursor: None,
    }
    .validate()?;
    let request = ListRequest {
        query: query.filter(|q| !q.trim().is_empty()),
        ..ListRequest::default()
    };
    modules::list_modules(&app.registry, principal, request, page, "/ui/modules", "").await
}

/// One module version (the latest when `version` is `None`) with what it declares.
pub async fn module(
    app: &Ctx,
    principal: &Principal,
    addr: &ModuleAddress,
    version: Option<&ModuleVersion>,
) -> Result<ModuleDetail> {
    modules::module_details(&app.registry, principal, addr, version).await
}

/// A workspace's estimated monthly run-rate over its state versions, oldest first.
pub struct CostHistory {
    pub currency: String,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// The last 60 estimates of a workspace as recorded; `None` while it has none.
pub async fn cost_history(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    ws: &WorkspaceName,
) -> Result<Option<CostHistory>> {
    let page = PageRequest {
        limit: Some(60),
        offset: None,
        cursor: None,
    }
    .validate()?;
    let history =
        match crate::costs::service::recorded_history(&app.costs, principal, org, ws, page).await {
            Ok(history) => history,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
    let mut points: Vec<(DateTime<Utc>, f64)> = history
        .data
        .iter()
        .filter(|e| e.status == "ok")
        .map(|e| (e.created_at, e.monthly))
        .collect();
    points.reverse();
    let Some(currency) = history.data.first().map(|e| e.currency.clone()) else {
        return Ok(None);
    };
    Ok((!points.is_empty()).then_some(CostHistory { currency, points }))
}
