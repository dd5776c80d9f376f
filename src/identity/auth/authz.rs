//! The single authorization decision: principal × action × resource → allow or the error to
//! return. An org (or, for scoped tokens, a resource) the caller cannot see is "not found",
//! never "forbidden".

use serde::{Deserialize, Serialize};

use super::Principal;
use super::policy::{Effect, Statement};
use crate::error::{Error, Result};

/// Built-in roles, each including everything below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A runner: claims runs and nothing else (below every other role, so it grants none of
    /// their actions).
    Runner,
    /// Read only the outputs of states (`terraform_remote_state` consumers).
    Outputs,
    Read,
    /// Read, and lock for `terraform plan`, but never write.
    Plan,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Runner => "runner",
            Role::Outputs => "outputs",
            Role::Read => "read",
            Role::Plan => "plan",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "runner" => Ok(Role::Runner),
            "outputs" => Ok(Role::Outputs),
            "read" => Ok(Role::Read),
            "plan" => Ok(Role::Plan),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(Error::invalid(
                "role must be one of runner, outputs, read, plan, write, admin",
            )),
        }
    }
}

/// Something a caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// List workspaces and versions of an org.
    OrgRead,
    /// Read only the outputs of a workspace's state.
    StateReadOutputs,
    /// Read a workspace's whole state.
    StateRead,
    /// Take or release a lock (and create the workspace on first use).
    StateLock,
    /// Write a new state version.
    StateWrite,
    /// Roll back, change settings, force-unlock through the API, delete the current state.
    StateAdmin,
    /// Manage the org's tokens, users, teams, policies; read its audit trail.
    OrgAdmin,
    /// Read a registry namespace (list and install modules and providers).
    RegistryRead,
    /// Publish module and provider versions.
    RegistryPublish,
    /// Delete versions, manage signing keys and namespace settings.
    RegistryAdmin,
    /// Install from the provider network mirror.
    MirrorRead,
    /// Upload archives to the provider network mirror.
    MirrorUpload,
    /// Claim queued runs and report on them: runner tokens only, never granted by a policy.
    RunClaim,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::OrgRead,
        Action::StateReadOutputs,
        Action::StateRead,
        Action::StateLock,
        Action::StateWrite,
        Action::StateAdmin,
        Action::OrgAdmin,
        Action::RegistryRead,
        Action::RegistryPublish,
        Action::RegistryAdmin,
        Action::MirrorRead,
        Action::MirrorUpload,
    ];

    /// The name used in policies and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::OrgRead => "org:read",
            Action::StateReadOutputs => "state:read-outputs",
            Action::StateRead => "state:read",
            Action::StateLock => "state:lock",
            Action::StateWrite => "state:write",
            Action::StateAdmin => "state:admin",
            Action::OrgAdmin => "org:admin",
            Action::RegistryRead => "registry:read",
            Action::RegistryPublish => "registry:publish",
            Action::RegistryAdmin => "registry:admin",
            Action::MirrorRead => "mirror:read",
            Action::MirrorUpload => "mirror:upload",
            Action::RunClaim => "run:claim",
        }
    }

    fn minimum_role(self) -> Role {
        match self {
            Action::StateReadOutputs => Role::Outputs,
            Action::OrgRead | Action::StateRead | Action::RegistryRead | Action::MirrorRead => {
                Role::Read
            }
            Action::StateLock => Role::Plan,
            Action::StateWrite | Action::RegistryPublish => Role::Write,
            Action::StateAdmin
            | Action::OrgAdmin
            | Action::RegistryAdmin
            | Action::MirrorUpload => Role::Admin,
            Action::RunClaim => Role::Runner,
        }
    }
}

/// What the action is about.
#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    Org(&'a str),
    Workspace {
        org: &'a str,
        workspace: &'a str,
    },
    /// A registry namespace (= org) as a whole; `public` namespaces may be read by anyone.
    Namespace {
        org: &'a str,
        public: bool,
    },
    Module {
        org: &'a str,
        public: bool,
        name: &'a str,
        system: &'a str,
    },
    Provider {
        org: &'a str,
        public: bool,
        name: &'a str,
    },
    /// A catalogue entry over a module of the org's registry.
    Blueprint {
        org: &'a str,
        name: &'a str,
    },
    /// The instance-wide provider mirror, managed by the admins of the `mirror_org` setting.
    Mirror {
        owner: Option<&'a str>,
    },
}

impl Resource<'_> {
    pub fn org(&self) -> &str {
        match self {
            Resource::Org(org)
            | Resource::Workspace { org, .. }
            | Resource::Namespace { org, .. }
            | Resource::Module { org, .. }
            | Resource::Provider { org, .. }
            | Resource::Blueprint { org, .. } => org,
            Resource::Mirror { owner } => owner.unwrap_or(""),
        }
    }

    fn public(&self) -> bool {
        matches!(
            self,
            Resource::Namespace { public: true, .. }
                | Resource::Module { public: true, .. }
                | Resource::Provider { public: true, .. }
        )
    }

    /// The resource's name within its org, as policies and scopes match it.
    pub fn path(&self) -> String {
        match self {
            Resource::Org(_) => "org".into(),
            Resource::Workspace { workspace, .. } => format!("workspace:{workspace}"),
            Resource::Namespace { .. } => "namespace".into(),
            Resource::Module { name, system, .. } => format!("module:{name}/{system}"),
            Resource::Provider { name, .. } => format!("provider:{name}"),
            Resource::Blueprint { name, .. } => format!("blueprint:{name}"),
            Resource::Mirror { .. } => "mirror".into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Resource::Org(_) => "organization",
            Resource::Workspace { .. } => "workspace",
            Resource::Namespace { .. } => "namespace",
            Resource::Module { .. } => "module",
            Resource::Provider { .. } => "provider",
            Resource::Blueprint { .. } => "blueprint",
            Resource::Mirror { .. } => "mirror",
        }
    }
}

/// What a caller may do in one org: a role (from membership, teams or the token) and the
/// statements of every policy attached to them.
#[derive(Clone, Debug)]
pub struct OrgGrant {
    pub org_id: i64,
    pub org_name: String,
    pub role: Option<Role>,
    pub statements: Vec<Statement>,
}

impl OrgGrant {
    /// Deny wins; otherwise the role or an allow statement grants.
    pub fn allows(&self, action: Action, resource: &str) -> bool {
        if action == Action::RunClaim {
            return self.role == Some(Role::Runner);
        }
        let matching = |effect| {
            self.statements
                .iter()
                .any(|s| s.effect == effect && s.matches(action, resource))
        };
        if matching(Effect::Deny) {
            return false;
        }
        self.role.is_some_and(|r| r >= action.minimum_role()) || matching(Effect::Allow)
    }
}

/// What a run's job token may do (within its scopes: its workspace and the registry).
const JOB_ACTIONS: [Action; 7] = [
    Action::OrgRead,
    Action::StateReadOutputs,
    Action::StateRead,
    Action::StateLock,
    Action::StateWrite,
    Action::RegistryRead,
    Action::MirrorRead,
];

/// Decides whether `principal` may perform `action` on `resource`, and notes the decision for
/// the audit trail.
pub fn authorize(principal: &Principal, action: Action, resource: Resource<'_>) -> Result<()> {
    let org_id = principal
        .caller()
        .and_then(|c| c.grant(resource.org()))
        .map(|g| g.org_id);
    let path = resource.path();
    let decision = decide(principal, action, resource, &path);
    crate::infra::notes::note_access(action.as_str(), path, org_id);
    decision
}

/// Whether `principal` may perform `action` on `resource`, without noting anything: for
/// answers that vary with the caller's rights (e.g. whether drafts are shown), not for
/// guarding an action.
pub fn allowed(principal: &Principal, action: Action, resource: Resource<'_>) -> bool {
    let path = resource.path();
    decide(principal, action, resource, &path).is_ok()
}

fn decide(principal: &Principal, action: Action, resource: Resource<'_>, path: &str) -> Result<()> {
    if action == Action::RegistryRead && resource.public() {
        return Ok(());
    }
    let caller = match principal {
        Principal::System => return Ok(()),
        Principal::Anonymous => return Err(Error::Unauthenticated),
        Principal::Caller(caller) => caller,
    };
    if caller.run_id().is_some() && !JOB_ACTIONS.contains(&action) {
        // A run's job token reads and writes its workspace's state and reads the registry.
        return Err(Error::Forbidden);
    }
    if let Some(scopes) = &caller.scopes
        && !scopes.contains(path)
    {
        return Err(Error::NotFound(resource.kind()));
    }
    if let Resource::Mirror { owner } = resource {
        // The mirror serves public providers to every org; only its owner's admins change it.
        if action == Action::MirrorRead {
            return Ok(());
        }
        return match owner.and_then(|o| caller.grant(o)) {
            Some(grant) if grant.allows(action, path) => Ok(()),
            _ => Err(Error::Forbidden),
        };
    }
    let grant = caller
        .grant(resource.org())
        .ok_or(Error::NotFound("organization"))?;
    if grant.allows(action, path) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::auth::policy::{PolicyDocument, Scopes};
    use crate::identity::auth::principal::{Caller, Identity};

    fn caller(grants: Vec<OrgGrant>, scopes: Option<Vec<&str>>) -> Principal {
        Principal::Caller(Arc::new(Caller {
            identity: Identity::Token {
                id: 1,
                name: "t".into(),
            },
            grants,
            scopes: scopes
                .map(|s| Scopes::parse(s.into_iter().map(String::from).collect()).unwrap()),
        }))
    }

    fn grant(org: &str, role: Option<Role>, policy: &str) -> OrgGrant {
        let statements = if policy.is_empty() {
            Vec::new()
        } else {
            PolicyDocument::parse(policy).unwrap().compile().unwrap()
        };
        OrgGrant {
            org_id: 1,
            org_name: org.into(),
            role,
            statements,
        }
    }

    fn token(org: &str, role: Role) -> Principal {
        caller(vec![grant(org, Some(role), "")], None)
    }

    const WS: Resource<'static> = Resource::Workspace {
        org: "acme",
        workspace: "prod",
    };

    #[test]
    fn the_role_matrix_is_exactly_as_documented() {
        use Action::*;
        // Columns: outputs, read, plan, write, admin.
        let table: &[(Action, [bool; 5])] = &[
            (StateReadOutputs, [true, true, true, true, true]),
            (OrgRead, [false, true, true, true, true]),
            (StateRead, [false, true, true, true, true]),
            (StateLock, [false, false, true, true, true]),
            (StateWrite, [false, false, false, true, true]),
            (StateAdmin, [false, false, false, false, true]),
            (OrgAdmin, [false, false, false, false, true]),
            (RegistryRead, [false, true, true, true, true]),
            (RegistryPublish, [false, false, false, true, true]),
            (RegistryAdmin, [false, false, false, false, true]),
        ];
        let roles = [
            Role::Outputs,
            Role::Read,
            Role::Plan,
            Role::Write,
            Role::Admin,
        ];
        for (action, allowed) in table {
            for (role, allowed) in roles.iter().zip(allowed) {
                let result = authorize(&token("acme", *role), *action, WS);
                assert_eq!(result.is_ok(), *allowed, "{action:?} as {role:?}");
                if !allowed {
                    assert!(matches!(result, Err(Error::Forbidden)));
                }
            }
        }
    }

    #[test]
    fn policies_grant_beyond_the_role_and_deny_wins() {
        use Action::*;
        let policy = r#"{"statements":[
            {"effect":"allow","actions":["state:read","state:lock"],"resources":["workspace:prod-*"]},
            {"effect":"allow","actions":["registry:publish"],"resources":["module:network/*"]},
            {"effect":"deny","actions":["state:*"],"resources":["workspace:prod-secrets"]}
        ]}"#;
        let p = caller(vec![grant("acme", None, policy)], None);
        let ws = |name| Resource::Workspace {
            org: "acme",
            workspace: name,
        };
        let module = |name| Resource::Module {
            org: "acme",
            public: false,
            name,
            system: "aws",
        };
        // (action, resource, expected): Ok or the error's status.
        let table: Vec<(Action, Resource, u16)> = vec![
            (StateRead, ws("prod-eu"), 200),
            (StateLock, ws("prod-eu"), 200),
            (StateWrite, ws("prod-eu"), 403),
            (StateRead, ws("dev"), 403),
            (StateRead, ws("prod-secrets"), 403),
            (StateLock, ws("prod-secrets"), 403),
            (RegistryPublish, module("network"), 200),
            (RegistryPublish, module("compute"), 403),
            (OrgRead, Resource::Org("acme"), 403),
            (
                StateRead,
                Resource::Workspace {
                    org: "other",
                    workspace: "prod-eu",
                },
                404,
            ),
        ];
        for (action, resource, expected) in table {
            let status = match authorize(&p, action, resource) {
                Ok(()) => 200,
                Err(e) => e.status().as_u16(),
            };
            assert_eq!(status, expected, "{action:?} on {resource:?}");
        }
        // A deny overrides even the admin role.
        let admin = caller(vec![grant("acme", Some(Role::Admin), policy)], None);
        assert!(authorize(&admin, StateWrite, ws("prod-secrets")).is_err());
        assert!(authorize(&admin, StateWrite, ws("prod-eu")).is_ok());
    }

    #[test]
    fn scoped_tokens_cannot_see_outside_their_scopes() {
        let p = caller(
            vec![grant("acme", Some(Role::Write), "")],
            Some(vec!["workspace:prod-*"]),
        );
        let inside = Resource::Workspace {
            org: "acme",
            workspace: "prod-1",
        };
        let outside = Resource::Workspace {
            org: "acme",
            workspace: "dev",
        };
        assert!(authorize(&p, Action::StateWrite, inside).is_ok());
        assert!(matches!(
            authorize(&p, Action::StateRead, outside),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            authorize(&p, Action::OrgRead, Resource::Org("acme")),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn another_orgs_resources_are_not_found_even_for_admins() {
        let result = authorize(
            &token("other", Role::Admin),
            Action::StateRead,
            Resource::Org("acme"),
        );
        assert!(matches!(result, Err(Error::NotFound(_))));
    }

    #[test]
    fn public_namespaces_are_readable_by_anyone_but_not_writable() {
        let public = Resource::Namespace {
            org: "acme",
            public: true,
        };
        assert!(authorize(&Principal::Anonymous, Action::RegistryRead, public).is_ok());
        assert!(authorize(&token("other", Role::Read), Action::RegistryRead, public).is_ok());
        let publish = authorize(
            &token("other", Role::Admin),
            Action::RegistryPublish,
            public,
        );
        assert!(matches!(publish, Err(Error::NotFound(_))));
        let private = Resource::Namespace {
            org: "acme",
            public: false,
        };
        let anonymous = authorize(&Principal::Anonymous, Action::RegistryRead, private);
        assert!(matches!(anonymous, Err(Error::Unauthenticated)));
    }

    #[test]
    fn only_the_mirror_owners_admins_upload_but_every_token_reads() {
        let mirror = Resource::Mirror {
            owner: Some("acme"),
        };
        assert!(authorize(&token("other", Role::Read), Action::MirrorRead, mirror).is_ok());
        assert!(authorize(&token("acme", Role::Admin), Action::MirrorUpload, mirror).is_ok());
        for (org, role) in [("acme", Role::Write), ("other", Role::Admin)] {
            let result = authorize(&token(org, role), Action::MirrorUpload, mirror);
            assert!(matches!(result, Err(Error::Forbidden)), "{org} {role:?}");
        }
        let unowned = Resource::Mirror { owner: None };
        let result = authorize(&token("acme", Role::Admin), Action::MirrorUpload, unowned);
        assert!(matches!(result, Err(Error::Forbidden)));
        let anonymous = authorize(&Principal::Anonymous, Action::MirrorRead, mirror);
        assert!(matches!(anonymous, Err(Error::Unauthenticated)));
    }

    #[test]
    fn anonymous_callers_must_authenticate() {
        let result = authorize(
            &Principal::Anonymous,
            Action::StateRead,
            Resource::Org("acme"),
        );
        assert!(matches!(result, Err(Error::Unauthenticated)));
    }
}
