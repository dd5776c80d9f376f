//! The single authorization decision: principal × action × resource → allow or the error to
//! return. An org the caller cannot see is "not found", never "forbidden".

use serde::{Deserialize, Serialize};

use super::Principal;
use crate::error::{Error, Result};

/// Per-org role of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(Error::invalid("role must be one of read, write, admin")),
        }
    }
}

/// Something a caller wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// List workspaces and versions of an org.
    OrgRead,
    /// Read a workspace's state.
    StateRead,
    /// Take or release a lock (and create the workspace on first use).
    StateLock,
    /// Write a new state version.
    StateWrite,
    /// Roll back, change settings, force-unlock through the API, delete the current state.
    StateAdmin,
    /// Manage the org's tokens.
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
}

impl Action {
    fn minimum_role(self) -> Role {
        match self {
            Action::OrgRead | Action::StateRead | Action::RegistryRead => Role::Read,
            Action::StateLock | Action::StateWrite | Action::RegistryPublish => Role::Write,
            Action::StateAdmin | Action::OrgAdmin | Action::RegistryAdmin => Role::Admin,
            Action::MirrorRead => Role::Read,
            Action::MirrorUpload => Role::Admin,
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
    /// A registry namespace (= org); `public` namespaces may be read by anyone.
    Namespace {
        org: &'a str,
        public: bool,
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
            | Resource::Namespace { org, .. } => org,
            Resource::Mirror { owner } => owner.unwrap_or(""),
        }
    }
}

/// Decides whether `principal` may perform `action` on `resource`.
pub fn authorize(principal: &Principal, action: Action, resource: Resource<'_>) -> Result<()> {
    if action == Action::RegistryRead
        && matches!(resource, Resource::Namespace { public: true, .. })
    {
        return Ok(());
    }
    match principal {
        Principal::System => Ok(()),
        Principal::Anonymous => Err(Error::Unauthenticated),
        // The mirror serves public providers to every org; only its owner's admins change it.
        Principal::Token(_) if action == Action::MirrorRead => Ok(()),
        Principal::Token(token) if matches!(resource, Resource::Mirror { .. }) => {
            let owner =
                matches!(resource, Resource::Mirror { owner: Some(o) } if o == token.org_name);
            if owner && token.role >= action.minimum_role() {
                Ok(())
            } else {
                Err(Error::Forbidden)
            }
        }
        Principal::Token(token) => {
            if token.org_name != resource.org() {
                return Err(Error::NotFound("organization"));
            }
            if token.role >= action.minimum_role() {
                Ok(())
            } else {
                Err(Error::Forbidden)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::TokenPrincipal;

    fn token(org: &str, role: Role) -> Principal {
        Principal::Token(TokenPrincipal {
            token_id: 1,
            org_id: 1,
            org_name: org.into(),
            role,
            name: "t".into(),
        })
    }

    #[test]
    fn the_role_matrix_is_exactly_as_documented() {
        use Action::*;
        let ws = Resource::Workspace {
            org: "acme",
            workspace: "prod",
        };
        let table: &[(Action, [bool; 3])] = &[
            (OrgRead, [true, true, true]),
            (StateRead, [true, true, true]),
            (StateLock, [false, true, true]),
            (StateWrite, [false, true, true]),
            (StateAdmin, [false, false, true]),
            (OrgAdmin, [false, false, true]),
            (RegistryRead, [true, true, true]),
            (RegistryPublish, [false, true, true]),
            (RegistryAdmin, [false, false, true]),
        ];
        for (action, allowed) in table {
            for (role, allowed) in [Role::Read, Role::Write, Role::Admin].iter().zip(allowed) {
                let result = authorize(&token("acme", *role), *action, ws);
                assert_eq!(result.is_ok(), *allowed, "{action:?} as {role:?}");
                if !allowed {
                    assert!(matches!(result, Err(Error::Forbidden)));
                }
            }
        }
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
