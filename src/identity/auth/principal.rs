//! The caller, from `Authorization: Basic` (password = token; Terraform's http backend can
//! send nothing else) or `Authorization: Bearer`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use chrono::Utc;

use super::authz::OrgGrant;
use super::policy::{PolicyDocument, Scopes, Statement};
use super::{Role, jwt, store, token};
use crate::error::{Error, Result};
use crate::identity::Ctx;

/// Names of job tokens start with this; API token names may not.
pub const JOB_TOKEN_PREFIX: &str = "run:";

/// A token that was valid when cached, and when it stops being valid.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub principal: Principal,
    pub expires_at: Option<chrono::DateTime<Utc>>,
}

/// Who is making a request.
#[derive(Clone, Debug)]
pub enum Principal {
    /// No credentials were sent.
    Anonymous,
    /// A user (login token) or an API token, with what it may do.
    Caller(Arc<Caller>),
    /// The CLI and background jobs acting on the database directly.
    System,
}

/// An authenticated caller and its rights, looked up when the request arrived.
#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
    pub grants: Vec<OrgGrant>,
    /// Resource globs an API token is limited to.
    pub scopes: Option<Scopes>,
}

#[derive(Clone, Debug)]
pub enum Identity {
    /// An org or team API token.
    Token { id: i64, name: String },
    /// A user, through a login token with id `token_id` (the JWT id).
    User {
        id: i64,
        name: String,
        token_id: String,
    },
}

impl Caller {
    pub fn grant(&self, org: &str) -> Option<&OrgGrant> {
        self.grants.iter().find(|g| g.org_name == org)
    }

    /// The run a job token was minted for (tokens named `run:<id>`, which only the runs
    /// feature creates).
    pub fn run_id(&self) -> Option<i64> {
        match &self.identity {
            Identity::Token { name, .. } => name.strip_prefix(JOB_TOKEN_PREFIX)?.parse().ok(),
            Identity::User { .. } => None,
        }
    }

    pub fn user_id(&self) -> Option<i64> {
        match self.identity {
            Identity::User { id, .. } => Some(id),
            Identity::Token { .. } => None,
        }
    }
}

impl Principal {
    /// How this principal is recorded as the author of a change.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::System => "system".into(),
            Principal::Caller(c) => match &c.identity {
                Identity::Token { id, name } => format!("token:{name}#{id}"),
                Identity::User { name, .. } => format!("user:{name}"),
            },
        }
    }

    /// The id of the credential used, for the audit trail.
    pub fn token_id(&self) -> Option<String> {
        match self {
            Principal::Caller(c) => Some(match &c.identity {
                Identity::Token { id, .. } => id.to_string(),
                Identity::User { token_id, .. } => token_id.clone(),
            }),
            _ => None,
        }
    }

    /// The run whose job token made the request, if any.
    pub fn run_id(&self) -> Option<i64> {
        self.caller().and_then(Caller::run_id)
    }

    pub fn caller(&self) -> Option<&Caller> {
        match self {
            Principal::Caller(c) => Some(c),
            _ => None,
        }
    }

    /// Ids of the orgs in which this principal may perform `action` on `resource` (a
    /// resource path such as `namespace`), for listings that span orgs.
    pub fn org_ids_allowing(&self, action: super::Action, resource: &str) -> Vec<i64> {
        let Some(caller) = self.caller() else {
            return Vec::new();
        };
        if caller
            .scopes
            .as_ref()
            .is_some_and(|s| !s.contains(resource))
        {
            return Vec::new();
        }
        caller
            .grants
            .iter()
            .filter(|g| g.allows(action, resource))
            .map(|g| g.org_id)
            .collect()
    }

    /// Resolves a presented API token or login token.
    pub async fn authenticate(app: &Ctx, secret: &str) -> Result<Principal> {
        if secret.starts_with(token::PREFIX) {
            Principal::from_token(app, secret).await
        } else if jwt::looks_like_jwt(secret) {
            Principal::from_login_token(app, secret).await
        } else {
            Err(Error::Unauthenticated)
        }
    }

    /// Resolves an API token secret (cached for a moment; changes through this process
    /// clear the cache at once).
    pub async fn from_token(app: &Ctx, secret: &str) -> Result<Principal> {
        let hash = token::hash(secret);
        if let Some(cached) = app.tokens.get(&hash) {
            if cached.expires_at.is_some_and(|at| at <= Utc::now()) {
                return Err(Error::Unauthenticated);
            }
            return Ok(cached.principal);
        }
        let ticket = app.tokens.ticket();
        let row = store::find_token_by_hash(&app.db, &hash)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if !token::hashes_match(&row.token_hash, &hash) || row.revoked_at.is_some() {
            return Err(Error::Unauthenticated);
        }
        if row.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(Error::Unauthenticated);
        }
        let token_role: Role = row.role.parse().map_err(|_| Error::Unauthenticated)?;
        // A team token never has more than its team, nor than the role it was made with.
        let role = match row.team_id {
            None => Some(token_role),
            Some(_) => parse_role(row.team_role.as_deref()).map(|team| team.min(token_role)),
        };
        let policies = store::token_policies(&app.db, row.id, row.team_id).await?;
        let scopes = match &row.scopes {
            Some(json) => Some(
                serde_json::from_str::<Vec<String>>(json)
                    .map_err(|e| Error::Internal(anyhow::anyhow!("stored scopes: {e}")))
                    .and_then(Scopes::parse)?,
            ),
            None => None,
        };
        let grant = OrgGrant {
            org_id: row.org_id,
            org_name: row.org_name,
            role,
            statements: compile(&policies, row.org_id)?,
        };
        let principal = Principal::Caller(Arc::new(Caller {
            identity: Identity::Token {
                id: row.id,
                name: row.name,
            },
            grants: vec![grant],
            scopes,
        }));
        app.tokens.insert(
            ticket,
            hash,
            CachedToken {
                principal: principal.clone(),
                expires_at: row.expires_at,
            },
        );
        Ok(principal)
    }

    /// Resolves a login token (JWT); the user's rights are read afresh every time, so role
    /// changes, revocation and disabling take effect at once.
    async fn from_login_token(app: &Ctx, secret: &str) -> Result<Principal> {
        let claims = jwt::verify(app, secret, jwt::API_AUDIENCE).await?;
        let session = store::find_user_token(&app.db, &claims.jti)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if session.revoked_at.is_some()
            || session.disabled_at.is_some()
            || session.expires_at <= Utc::now()
            || session.user_id.to_string() != claims.sub
        {
            return Err(Error::Unauthenticated);
        }
        let caller = user_caller(app, session.user_id, session.user_name, claims.jti).await?;
        Ok(Principal::Caller(Arc::new(caller)))
    }
}

fn parse_role(text: Option<&str>) -> Option<Role> {
    text.and_then(|r| r.parse().ok())
}

fn compile(policies: &[store::AttachedPolicy], org_id: i64) -> Result<Vec<Statement>> {
    let mut statements = Vec::new();
    for policy in policies.iter().filter(|p| p.org_id == org_id) {
        let doc = PolicyDocument::parse(&policy.document)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored policy: {e}")))?;
        statements.extend(doc.compile()?);
    }
    Ok(statements)
}

/// A user's grants in every org they belong to: the highest of their membership and team
/// roles, plus the policies attached to them and their teams.
pub async fn user_caller(
    app: &Ctx,
    user_id: i64,
    name: String,
    token_id: String,
) -> Result<Caller> {
    let roles = store::user_roles(&app.db, user_id).await?;
    let policies = store::user_policies(&app.db, user_id).await?;
    let mut grants: Vec<OrgGrant> = Vec::new();
    for row in roles {
        let role = parse_role(row.role.as_deref());
        match grants.iter_mut().find(|g| g.org_id == row.org_id) {
            Some(grant) => grant.role = grant.role.max(role),
            None => grants.push(OrgGrant {
                org_id: row.org_id,
                org_name: row.org_name,
                role,
                statements: Vec::new(),
            }),
        }
    }
    for grant in &mut grants {
        grant.statements = compile(&policies, grant.org_id)?;
    }
    Ok(Caller {
        identity: Identity::User {
            id: user_id,
            name,
            token_id,
        },
        grants,
        scopes: None,
    })
}

/// Extracts the token secret from an `Authorization` header value.
fn presented_secret(value: &str) -> Result<String> {
    let (scheme, rest) = value.split_once(' ').ok_or(Error::Unauthenticated)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| Error::Unauthenticated)?;
        let text = String::from_utf8(decoded).map_err(|_| Error::Unauthenticated)?;
        // The username is free; the password (which may itself contain ':') is the token.
        let (_, password) = text.split_once(':').ok_or(Error::Unauthenticated)?;
        return Ok(password.to_string());
    }
    Err(Error::Unauthenticated)
}

impl<S> FromRequestParts<S> for Principal
where
    S: crate::identity::HasIdentity + Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let app = state.identity();
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Principal::Anonymous);
        };
        let value = value.to_str().map_err(|_| Error::Unauthenticated)?;
        let secret = presented_secret(value)?;
        if secret.is_empty() {
            return Err(Error::Unauthenticated);
        }
        let principal = Principal::authenticate(app, &secret).await?;
        crate::infra::notes::note_actor(principal.actor(), principal.token_id());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_uses_the_password_even_with_colons() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("terraform:trc_a:b")
        );
        assert_eq!(presented_secret(&header).unwrap(), "trc_a:b");
    }

    #[test]
    fn bearer_tokens_are_taken_as_they_are() {
        assert_eq!(presented_secret("Bearer trc_x").unwrap(), "trc_x");
        assert!(presented_secret("Digest abc").is_err());
    }
}
