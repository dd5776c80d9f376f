//! The rules of this slice; no HTTP types.
pub use super::views::{CreatedToken, TokenView};
use chrono::{DateTime, Utc};

use super::store;
use crate::error::{Error, Result};
use crate::identity::Ctx;
use crate::identity::auth::policy::Scopes;
use crate::identity::auth::store::{self as tokens, NewToken};
use crate::identity::auth::{Action, Principal, Resource, Role, authorize, token};
use crate::infra::db::Db;
use crate::names::OrgName;
use crate::pagination::{Page, Paginated};

/// The org named `name`, if any. Answers without authorization: for callers that decide
/// what to reveal themselves.
pub async fn find_org(db: &Db, name: &str) -> Result<Option<store::OrgRow>> {
    store::find_org(db, name).await
}

/// Authorizes `action` and returns the org's id.
/// Every org: (id, name), for background work that reports per org (metrics).
pub async fn all_orgs(db: &Db) -> Result<Vec<(i64, String)>> {
    store::all_orgs(db).await
}

pub async fn resolve(
    db: &Db,
    principal: &Principal,
    action: Action,
    resource: Resource<'_>,
) -> Result<i64> {
    authorize(principal, action, resource)?;
    // A caller with a grant in this org carries its id; anyone else (system, public reads)
    // looks it up.
    match principal.caller().and_then(|c| c.grant(resource.org())) {
        Some(grant) => Ok(grant.org_id),
        None => {
            let org = resource.org();
            Ok(store::find_org(db, org)
                .await?
                .ok_or(Error::NotFound("organization"))?
                .id)
        }
    }
}

/// The id of `org` for an org-admin action, answered as [`resolve`] answers.
pub async fn resolve_admin(db: &Db, principal: &Principal, org: &OrgName) -> Result<i64> {
    resolve(db, principal, Action::OrgAdmin, Resource::Org(org.as_str())).await
}

/// Creates an org (CLI bootstrap).
pub async fn create_org(db: &Db, name: &OrgName) -> Result<i64> {
    store::insert_org(db, name.as_str(), Utc::now())
        .await
        .map(|row| row.id)
        .map_err(|e| e.or_conflict(|| format!("organization {name} already exists")))
}

/// What an API token is for.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub name: &'a str,
    /// The token's role; for a team token, a ceiling under the team's own role.
    pub role: Role,
    /// Act for this team: the team's role and policies apply.
    pub team: Option<&'a str>,
    /// Limit the token to resources matching these globs (`workspace:prod-*`).
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl<'a> TokenSpec<'a> {
    pub fn new(name: &'a str, role: Role) -> Self {
        TokenSpec {
            name,
            role,
            team: None,
            scopes: None,
            expires_at: None,
        }
    }
}

/// Creates an org or team API token.
pub async fn create_token(
    app_db: &Db,
    principal: &Principal,
    org: &OrgName,
    spec: TokenSpec<'_>,
) -> Result<CreatedToken> {
    let org_id = resolve_admin(app_db, principal, org).await?;
    let name = spec.name;
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("token name must be 1-100 characters"));
    }
    if name.starts_with(crate::identity::auth::JOB_TOKEN_PREFIX) {
        return Err(Error::invalid(
            "token names starting with run: are reserved for runs",
        ));
    }
    let scopes = match spec.scopes {
        Some(patterns) => {
            let scopes = Scopes::parse(patterns)?;
            Some(serde_json::to_string(scopes.patterns()).map_err(anyhow::Error::from)?)
        }
        None => None,
    };
    let team_id = match spec.team {
        Some(team) => Some(
            crate::identity::users::store::find_team(app_db, org_id, team)
                .await?
                .ok_or(Error::NotFound("team"))?
                .id,
        ),
        None => None,
    };
    let role = spec.role;
    let expires_at = spec.expires_at;
    let secret = token::mint()?;
    let hash = token::hash(&secret);
    let created_by = principal.actor();
    let id = tokens::insert_token(
        app_db,
        NewToken {
            org_id,
            name,
            role: role.as_str(),
            token_hash: &hash,
            created_by: &created_by,
            expires_at,
            team_id,
            scopes,
        },
        Utc::now(),
    )
    .await?;
    Ok(CreatedToken {
        id,
        token: secret,
        role,
        expires_at,
    })
}

/// Mints the short-lived token of run `run_id`: state of `workspace` (read, lock, write) and
/// registry reads in its org, nothing else (`authorize` knows job tokens by their name).
/// Returns the token's id and secret.
pub async fn create_job_token(
    db: &Db,
    org_id: i64,
    run_id: i64,
    workspace: &str,
    expires_at: DateTime<Utc>,
) -> Result<(i64, String)> {
    let scopes = Scopes::parse(vec![
        format!("workspace:{workspace}"),
        "namespace".into(),
        "module:*".into(),
        "provider:*".into(),
        "mirror".into(),
    ])?;
    let scopes = serde_json::to_string(scopes.patterns()).map_err(anyhow::Error::from)?;
    let secret = token::mint()?;
    let hash = token::hash(&secret);
    let name = format!("{}{run_id}", crate::identity::auth::JOB_TOKEN_PREFIX);
    let id = tokens::insert_token(
        db,
        NewToken {
            org_id,
            name: &name,
            role: Role::Write.as_str(),
            token_hash: &hash,
            created_by: "system",
            expires_at: Some(expires_at),
            team_id: None,
            scopes: Some(scopes),
        },
        Utc::now(),
    )
    .await?;
    Ok((id, secret))
}

/// Revokes a run's job token once the run no longer needs it.
pub async fn revoke_job_token(app: &Ctx, org_id: i64, id: i64) -> Result<()> {
    if tokens::revoke_token(&app.db, org_id, id, Utc::now()).await? {
        app.grants_changed().await;
    }
    Ok(())
}

pub async fn list_tokens(
    app: &Ctx,
    principal: &Principal,
    org: &OrgName,
    page: Page,
) -> Result<Paginated<TokenView>> {
    let org_id = resolve_admin(&app.db, principal, org).await?;
    let rows = tokens::list_tokens(&app.db, org_id, page.fetch_limit(), page.offset).await?;
    Ok(Paginated::new(rows, page).map(|row| TokenView {
        id: row.id,
        name: row.name,
        role: row.role,
        team: row.team_name,
        scopes: row.scopes.and_then(|s| serde_json::from_str(&s).ok()),
        created_at: row.created_at,
        created_by: row.created_by,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    }))
}

pub async fn revoke_token(app: &Ctx, principal: &Principal, org: &OrgName, id: i64) -> Result<()> {
    let org_id = resolve_admin(&app.db, principal, org).await?;
    if tokens::revoke_token(&app.db, org_id, id, Utc::now()).await? {
        app.grants_changed().await;
        Ok(())
    } else {
        Err(Error::NotFound("token"))
    }
}

/// Parses `30d`, `12h`, `90m` into a deadline from now.
pub fn expiry_from(text: Option<&str>) -> Result<Option<chrono::DateTime<Utc>>> {
    let Some(text) = text else { return Ok(None) };
    let duration = humantime::parse_duration(text)
        .map_err(|_| Error::invalid("expires_in must be a duration such as 30d or 12h"))?;
    let duration = chrono::Duration::from_std(duration)
        .map_err(|_| Error::invalid("expires_in is too long"))?;
    Utc::now()
        .checked_add_signed(duration)
        .map(Some)
        .ok_or_else(|| Error::invalid("expires_in is too long"))
}
