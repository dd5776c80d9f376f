//! The rules of this slice; no HTTP types.
pub use super::views::{AttachmentView, PolicyView};
use chrono::Utc;
use serde_json::Value;

use super::store;
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::Principal;
use crate::identity::auth::policy::PolicyDocument;
use crate::identity::orgs::resolve_admin;
use crate::identity::users::store::{find_member, find_team};
use crate::names::{OrgName, PolicyName, TeamName, UserName};
use crate::pagination::{Page, Paginated};

/// What to attach a policy to.
#[derive(Debug, Clone)]
pub enum AttachTarget {
    Team(TeamName),
    User(UserName),
    /// An API token of the org, by id.
    Token(i64),
}

/// Validates a submitted document and returns the text to store.
fn document_text(document: &Value) -> Result<String> {
    let text = serde_json::to_string(document).map_err(anyhow::Error::from)?;
    PolicyDocument::parse(&text)?;
    Ok(text)
}

async fn org_id(app: &Ctx, principal: &Principal, org: &OrgName) -> Result<i64> {
    resolve_admin(&app.db, principal, org).await
}

async fn policy(app: &Ctx, org_id: i64, name: &PolicyName) -> Result<store::PolicyRow> {
    store::find_policy(&app.db, org_id, name.as_str())
        .await?
        .ok_or(Error::NotFound("policy"))
}

pub async fn create_policy(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
    document: &Value,
) -> Result<PolicyView> {
    let org_id = org_id(app, principal, org).await?;
    let text = document_text(document)?;
    store::insert_policy(&app.db, org_id, name.as_str(), &text, Utc::now())
        .await
        .map_err(|e| e.or_conflict(|| format!("policy {name} already exists in {org}")))?
        .try_into()
}

pub async fn list_policies(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<PolicyView>> {
    let org_id = org_id(app, principal, org).await?;
    let rows = store::list_policies(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    let page = Paginated::new(rows, page);
    Ok(Paginated {
        data: page
            .data
            .into_iter()
            .map(PolicyView::try_from)
            .collect::<Result<_>>()?,
        meta: page.meta,
    })
}

pub async fn show_policy(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
) -> Result<PolicyView> {
    let org_id = org_id(app, principal, org).await?;
    policy(app, org_id, name).await?.try_into()
}

/// Replaces a policy's document; it applies at once wherever the policy is attached.
pub async fn replace_document(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
    document: &Value,
) -> Result<PolicyView> {
    let org_id = org_id(app, principal, org).await?;
    let mut row = policy(app, org_id, name).await?;
    let text = document_text(document)?;
    let now = Utc::now();
    store::set_document(&app.db, row.id, &text, now).await?;
    app.grants_changed().await;
    row.document = text;
    row.updated_at = now;
    row.try_into()
}

pub async fn delete_policy(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
) -> Result<()> {
    let org_id = org_id(app, principal, org).await?;
    let row = policy(app, org_id, name).await?;
    if !store::delete_policy(&app.db, row.id).await? {
        return Err(Error::NotFound("policy"));
    }
    app.grants_changed().await;
    Ok(())
}

/// Attaches a policy to a team, member or API token of the same org.
pub async fn attach(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
    target: AttachTarget,
) -> Result<AttachmentView> {
    let org_id = org_id(app, principal, org).await?;
    let row = policy(app, org_id, name).await?;
    let mut view = AttachmentView {
        id: 0,
        team: None,
        user: None,
        token: None,
    };
    // Each target is looked up within this org, so another org's ids and names are "not found".
    let ids = match &target {
        AttachTarget::Team(team) => {
            let team = find_team(&app.db, org_id, team.as_str())
                .await?
                .ok_or(Error::NotFound("team"))?;
            view.team = Some(team.name);
            store::Target {
                team_id: Some(team.id),
                ..Default::default()
            }
        }
        AttachTarget::User(user) => {
            let member = find_member(&app.db, org_id, user.as_str())
                .await?
                .ok_or(Error::NotFound("user"))?;
            view.user = Some(member.name);
            store::Target {
                user_id: Some(member.user_id),
                ..Default::default()
            }
        }
        AttachTarget::Token(id) => {
            let id = store::find_org_token(&app.db, org_id, *id)
                .await?
                .ok_or(Error::NotFound("token"))?;
            view.token = Some(id);
            store::Target {
                token_id: Some(id),
                ..Default::default()
            }
        }
    };
    view.id = store::insert_attachment(&app.db, row.id, ids)
        .await
        .map_err(|e| e.or_conflict(|| format!("policy {name} is already attached there")))?;
    app.grants_changed().await;
    Ok(view)
}

pub async fn list_attachments(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
    page: Page,
) -> Result<Paginated<AttachmentView>> {
    let org_id = org_id(app, principal, org).await?;
    let row = policy(app, org_id, name).await?;
    let rows = store::list_attachments(&app.db, row.id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(AttachmentView::from))
}

pub async fn detach(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &PolicyName,
    id: i64,
) -> Result<()> {
    let org_id = org_id(app, principal, org).await?;
    let row = policy(app, org_id, name).await?;
    if !store::delete_attachment(&app.db, row.id, id).await? {
        return Err(Error::NotFound("attachment"));
    }
    app.grants_changed().await;
    Ok(())
}
