//! The rules of this slice; no HTTP types.
pub use super::views::{TeamMemberView, TeamSummary, TeamUpdate, TeamView};
use chrono::Utc;

use super::store;
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::{Principal, Role};
use crate::identity::orgs::resolve_admin;
use crate::identity::users::store::{TeamRow, find_member, find_team};
use crate::infra::notes::note_event;
use crate::names::{OrgName, TeamName, UserName};
use crate::pagination::{MAX_LIMIT, Page, Paginated};

async fn org_id(app: &Ctx, principal: &Principal, org: &OrgName) -> Result<i64> {
    resolve_admin(&app.db, principal, org).await
}

async fn team(app: &Ctx, org_id: i64, team: &TeamName) -> Result<TeamRow> {
    find_team(&app.db, org_id, team.as_str())
        .await?
        .ok_or(Error::NotFound("team"))
}

async fn view(app: &Ctx, row: TeamRow) -> Result<TeamView> {
    let mut members = store::list_members(&app.db, row.id, MAX_LIMIT + 1, 0).await?;
    let members_truncated = members.len() as i64 > MAX_LIMIT;
    members.truncate(MAX_LIMIT as usize);
    let idp_groups = store::idp_groups(&app.db, row.id).await?;
    Ok(TeamView {
        name: row.name,
        role: row.role,
        idp_groups,
        members: members.into_iter().map(|m| m.name).collect(),
        members_truncated,
        created_at: row.created_at,
    })
}

pub async fn create_team(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
    role: Option<Role>,
) -> Result<TeamView> {
    let org_id = org_id(app, principal, org).await?;
    let role = role.map(Role::as_str);
    let row = store::insert_team(&app.db, org_id, name.as_str(), role, Utc::now())
        .await
        .map_err(|e| e.or_conflict(|| format!("team {name} already exists in {org}")))?;
    view(app, row).await
}

pub async fn list_teams(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<TeamSummary>> {
    let org_id = org_id(app, principal, org).await?;
    let rows = store::list_teams(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(TeamSummary::from))
}

pub async fn show_team(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
) -> Result<TeamView> {
    let org_id = org_id(app, principal, org).await?;
    view(app, team(app, org_id, name).await?).await
}

pub async fn update_team(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
    update: TeamUpdate,
) -> Result<TeamView> {
    let org_id = org_id(app, principal, org).await?;
    let mut row = team(app, org_id, name).await?;
    if let Some(role) = update.role {
        let role = role.map(Role::as_str);
        store::set_role(&app.db, row.id, role).await?;
        // Team tokens carry the team's role in the token cache.
        app.grants_changed().await;
        row.role = role.map(String::from);
    }
    if let Some(groups) = update.idp_groups {
        let groups = validate_groups(groups)?;
        store::set_idp_groups(&app.db, row.id, &groups).await?;
    }
    view(app, row).await
}

/// Creates the team if it does not exist, then applies `update` (`PUT`).
pub async fn put_team(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
    update: TeamUpdate,
) -> Result<TeamView> {
    let org_id = org_id(app, principal, org).await?;
    if find_team(&app.db, org_id, name.as_str()).await?.is_none() {
        let role = update.role.flatten().map(Role::as_str);
        store::insert_team(&app.db, org_id, name.as_str(), role, Utc::now())
            .await
            .map_err(|e| e.or_conflict(|| format!("team {name} already exists in {org}")))?;
    }
    update_team(app, principal, org, name, update).await
}

/// At most this many groups map to one team.
const MAX_GROUPS: usize = 100;

/// IdP group names: 1-256 characters without control characters, at most [`MAX_GROUPS`].
fn validate_groups(groups: Vec<String>) -> Result<Vec<String>> {
    if groups.len() > MAX_GROUPS {
        return Err(Error::invalid(format!(
            "idp_groups: at most {MAX_GROUPS} groups"
        )));
    }
    let mut groups: Vec<String> = groups.into_iter().map(|g| g.trim().to_string()).collect();
    if groups
        .iter()
        .any(|g| g.is_empty() || g.len() > 256 || g.chars().any(char::is_control))
    {
        return Err(Error::invalid(
            "idp_groups: each group is 1-256 characters without control characters",
        ));
    }
    groups.sort();
    groups.dedup();
    Ok(groups)
}

/// Applies the IdP's groups of a user who just signed in: joins every team a group of
/// theirs is mapped to (and its org, with the least role, if they are not a member), and
/// leaves every team the mapping had put them in that no group of theirs maps to any more.
/// Memberships made by hand are left alone. Each change is an audit event.
pub async fn apply_idp_groups(app: &Ctx, user_id: i64, groups: &[String]) -> Result<()> {
    let mappings = store::all_mappings(&app.db).await?;
    let current = store::user_team_memberships(&app.db, user_id).await?;
    let wanted: Vec<&store::MappedTeam> = {
        let mut wanted: Vec<&store::MappedTeam> = mappings
            .iter()
            .filter(|m| groups.contains(&m.idp_group))
            .collect();
        wanted.dedup_by_key(|m| m.team_id);
        wanted
    };
    let mut changed = false;
    let now = Utc::now();
    for team in &wanted {
        if current.iter().any(|c| c.team_id == team.team_id) {
            continue;
        }
        store::add_idp_member(&app.db, team.org_id, team.team_id, user_id, now).await?;
        note_event(
            "team:join-by-idp-group",
            format!("team:{}/{}", team.org_name, team.team_name),
            Some(team.org_id),
        );
        changed = true;
    }
    for team in current.iter().filter(|c| c.idp_group == "idp") {
        if wanted.iter().any(|w| w.team_id == team.team_id) {
            continue;
        }
        store::remove_idp_member(&app.db, team.org_id, team.team_id, user_id).await?;
        note_event(
            "team:leave-by-idp-group",
            format!("team:{}/{}", team.org_name, team.team_name),
            Some(team.org_id),
        );
        changed = true;
    }
    if changed {
        // Team tokens are unaffected; this keeps every cached grant honest all the same.
        app.grants_changed().await;
    }
    Ok(())
}

/// Deletes a team with its memberships, policy attachments and team tokens.
pub async fn delete_team(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
) -> Result<()> {
    let org_id = org_id(app, principal, org).await?;
    let row = team(app, org_id, name).await?;
    if !store::delete_team(&app.db, row.id).await? {
        return Err(Error::NotFound("team"));
    }
    app.grants_changed().await;
    Ok(())
}

pub async fn list_members(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
    page: Page,
) -> Result<Paginated<TeamMemberView>> {
    let org_id = org_id(app, principal, org).await?;
    let row = team(app, org_id, name).await?;
    let rows = store::list_members(&app.db, row.id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(|m| TeamMemberView { name: m.name }))
}

/// Adds a member of the org to the team (idempotent).
pub async fn add_member(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
    user: &UserName,
) -> Result<()> {
    let org_id = org_id(app, principal, org).await?;
    let row = team(app, org_id, name).await?;
    // Only org members: a team must never bring an outsider into the org.
    let member = find_member(&app.db, org_id, user.as_str())
        .await?
        .ok_or(Error::NotFound("user"))?;
    store::add_member(&app.db, row.id, member.user_id).await?;
    app.grants_changed().await;
    Ok(())
}

pub async fn remove_member(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &TeamName,
    user: &UserName,
) -> Result<()> {
    let org_id = org_id(app, principal, org).await?;
    let row = team(app, org_id, name).await?;
    if !store::remove_member(&app.db, row.id, user.as_str()).await? {
        return Err(Error::NotFound("team member"));
    }
    app.grants_changed().await;
    Ok(())
}
