//! The rules of this slice; no HTTP types.
pub use super::views::{CreatedUser, Me, MemberView, MyOrg, UserTokenView};
use chrono::Utc;

use super::store::{self, NewUser};
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::{Action, Caller, Principal, Role, password, token};
use crate::identity::orgs::resolve_admin;
use crate::infra::db::Db;
use crate::names::{OrgName, UserName};
use crate::pagination::{Page, Paginated};

/// How long an invitation link stays valid.
const INVITATION_TTL: chrono::Duration = chrono::Duration::days(7);

/// Adds `name` to `org` with `role`, creating the user when new: with `password`, or else with
/// an invitation link under `base_url`. An existing user is only added to the org.
pub async fn add_member(
    db: &Db,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
    role: Role,
    password: Option<&str>,
    base_url: &str,
) -> Result<CreatedUser> {
    let org_id = resolve_admin(db, principal, org).await?;
    let now = Utc::now();
    let mut invitation_url = None;
    let user_id = match store::find_user(db, name.as_str()).await? {
        Some(existing) => {
            if password.is_some() {
                return Err(Error::conflict(format!(
                    "user {name} already exists; add them without a password"
                )));
            }
            if store::find_member(db, org_id, name.as_str())
                .await?
                .is_some()
            {
                return Err(Error::conflict(format!(
                    "user {name} is already a member of {org}"
                )));
            }
            existing.id
        }
        None => {
            let hash = match password {
                Some(p) => {
                    password::validate(p)?;
                    Some(password::hash_async(p.to_string()).await?)
                }
                None => None,
            };
            let invite = match hash {
                Some(_) => None,
                None => Some(token::random_secret()?),
            };
            let invite_hash = invite.as_deref().map(token::hash);
            let new = NewUser {
                name: name.as_str(),
                password_hash: hash.as_deref(),
                invite_hash: invite_hash.as_deref(),
                invite_expires_at: invite.as_ref().map(|_| now + INVITATION_TTL),
            };
            let id = store::insert_user(db, new, now)
                .await
                .map_err(|e| e.or_conflict(|| format!("user {name} already exists")))?;
            invitation_url = invite.map(|secret| format!("{base_url}/invite/{secret}"));
            id
        }
    };
    store::upsert_member(db, org_id, user_id, role.as_str(), now).await?;
    Ok(CreatedUser {
        name: name.to_string(),
        role,
        invitation_url,
    })
}

pub async fn list_members(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<MemberView>> {
    let org_id = resolve_admin(&app.db, principal, org).await?;
    let rows = store::list_members(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(MemberView::from))
}

/// The member `name` of an org the caller administers.
async fn member(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
) -> Result<(i64, store::MemberRow)> {
    let org_id = resolve_admin(&app.db, principal, org).await?;
    let member = store::find_member(&app.db, org_id, name.as_str())
        .await?
        .ok_or(Error::NotFound("user"))?;
    Ok((org_id, member))
}

pub async fn show_member(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
) -> Result<MemberView> {
    Ok(member(app, principal, org, name).await?.1.into())
}

/// A user's account (disabling, password) spans orgs, so only someone who administers every
/// org the user belongs to may change it.
async fn may_manage_account(app: &Ctx, principal: &Principal, user_id: i64) -> Result<()> {
    let caller = match principal {
        Principal::System => return Ok(()),
        Principal::Caller(caller) => caller,
        Principal::Anonymous => return Err(Error::Unauthenticated),
    };
    let admin_of = |org_id: i64| {
        caller
            .grants
            .iter()
            .any(|g| g.org_id == org_id && g.allows(Action::OrgAdmin, "org"))
    };
    let orgs = store::member_orgs(&app.db, user_id).await?;
    if orgs.into_iter().all(admin_of) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberUpdate {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

pub async fn update_member(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
    update: MemberUpdate,
) -> Result<MemberView> {
    let (org_id, current) = member(app, principal, org, name).await?;
    if update.disabled.is_some() || update.password.is_some() {
        may_manage_account(app, principal, current.user_id).await?;
    }
    if let Some(new) = &update.password {
        password::validate(new)?;
        let hash = password::hash_async(new.clone()).await?;
        store::set_password(&app.db, current.user_id, &hash).await?;
    }
    if let Some(disabled) = update.disabled {
        store::set_disabled(&app.db, current.user_id, disabled.then(Utc::now)).await?;
    }
    if let Some(role) = update.role {
        store::upsert_member(&app.db, org_id, current.user_id, role.as_str(), Utc::now()).await?;
    }
    show_member(app, principal, org, name).await
}

/// Removes a user from the org; a user left in no org is deleted with their tokens.
pub async fn remove_member(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
) -> Result<()> {
    let (org_id, current) = member(app, principal, org, name).await?;
    if store::remove_member(&app.db, org_id, current.user_id).await? == 0 {
        store::delete_user(&app.db, current.user_id).await?;
    }
    Ok(())
}

pub async fn list_member_tokens(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
    page: Page,
) -> Result<Paginated<UserTokenView>> {
    let (_, current) = member(app, principal, org, name).await?;
    let rows =
        store::list_user_tokens(&app.db, current.user_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(UserTokenView::from))
}

pub async fn revoke_member_token(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    name: &UserName,
    id: &str,
) -> Result<()> {
    let (_, current) = member(app, principal, org, name).await?;
    revoke(app, current.user_id, id).await
}

async fn revoke(app: &Ctx, user_id: i64, id: &str) -> Result<()> {
    if store::revoke_user_token(&app.db, user_id, id, Utc::now()).await? {
        Ok(())
    } else {
        Err(Error::NotFound("token"))
    }
}

/// The calling user (login tokens only: API tokens belong to orgs, not people).
pub fn current_user(principal: &Principal) -> Result<(&Caller, i64)> {
    match principal {
        Principal::Anonymous => Err(Error::Unauthenticated),
        Principal::Caller(caller) => match caller.user_id() {
            Some(id) => Ok((caller, id)),
            None => Err(Error::invalid(
                "this endpoint is for users; API tokens belong to an organization",
            )),
        },
        Principal::System => Err(Error::invalid("this endpoint is for users")),
    }
}

pub fn me(principal: &Principal) -> Result<Me> {
    let (caller, _) = current_user(principal)?;
    let name = match &caller.identity {
        crate::identity::auth::Identity::User { name, .. } => name.clone(),
        crate::identity::auth::Identity::Token { name, .. } => name.clone(),
    };
    Ok(Me {
        name,
        orgs: caller
            .grants
            .iter()
            .map(|g| MyOrg {
                name: g.org_name.clone(),
                role: g.role,
            })
            .collect(),
    })
}

pub async fn list_own_tokens(
    app: &Ctx,
    principal: &Principal,
    page: Page,
) -> Result<Paginated<UserTokenView>> {
    let (_, user_id) = current_user(principal)?;
    let rows = store::list_user_tokens(&app.db, user_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(UserTokenView::from))
}

pub async fn revoke_own_token(app: &Ctx, principal: &Principal, id: &str) -> Result<()> {
    let (_, user_id) = current_user(principal)?;
    revoke(app, user_id, id).await
}

/// Changes the caller's password after checking the current one.
pub async fn change_password(
    app: &Ctx,
    principal: &Principal,
    current: &str,
    new: &str,
) -> Result<()> {
    let (_, user_id) = current_user(principal)?;
    let user = store::find_user_by_id(&app.db, user_id)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if !password::verify_async(current.to_string(), user.password_hash).await {
        return Err(Error::invalid("the current password is wrong"));
    }
    password::validate(new)?;
    let hash = password::hash_async(new.to_string()).await?;
    store::set_password(&app.db, user_id, &hash).await
}

/// Mints a login token (JWT) for a user and records its id so it can be listed and revoked.
pub async fn issue_login_token(
    app: &Ctx,
    user_id: i64,
    name: &str,
    label: &str,
    ttl: chrono::Duration,
) -> Result<String> {
    Ok(issue_login_token_with_id(app, user_id, name, label, ttl)
        .await?
        .1)
}

/// [`issue_login_token`], also returning the token's id.
pub async fn issue_login_token_with_id(
    app: &Ctx,
    user_id: i64,
    name: &str,
    label: &str,
    ttl: chrono::Duration,
) -> Result<(String, String)> {
    let jti = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    store::insert_user_token(&app.db, &jti, user_id, label, now, now + ttl).await?;
    let token = crate::identity::auth::jwt::mint(
        app,
        crate::identity::auth::jwt::API_AUDIENCE,
        user_id,
        name,
        &jti,
        ttl,
    )
    .await?;
    Ok((jti, token))
}
