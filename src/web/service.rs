//! What each page shows, gathered from the features' services (which authorize); no HTTP.

use bytes::Bytes;

use super::Ctx;
use crate::error::Result;
use crate::identity::auth::{Action, Principal, Resource, allowed};
use crate::names::{OrgName, WorkspaceName};
use crate::pagination::{PageRequest, Paginated};
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
    let outputs = state::current_outputs(&app.state, principal, org, ws)
        .await?
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
