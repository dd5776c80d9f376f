//! Custom policies: JSON documents of allow/deny statements over actions and resources.
//!
//! ```json
//! {"statements": [
//!   {"effect": "allow", "actions": ["state:read", "state:lock"], "resources": ["workspace:prod-*"]},
//!   {"effect": "deny",  "actions": ["state:*"], "resources": ["workspace:prod-secrets"]}
//! ]}
//! ```
//! Resources are named within the policy's org: `org`, `workspace:NAME`, `namespace`,
//! `module:NAME/SYSTEM`, `provider:TYPE`, `mirror`; `*` and `?` glob.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use super::Action;
use crate::error::{Error, Result};

/// Largest accepted policy document.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

const RESOURCE_KINDS: &[&str] = &[
    "org",
    "workspace:",
    "namespace",
    "module:",
    "provider:",
    "blueprint:",
    "mirror",
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    pub statements: Vec<StatementDoc>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatementDoc {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A statement ready to match.
#[derive(Clone, Debug)]
pub struct Statement {
    pub effect: Effect,
    actions: GlobSet,
    resources: GlobSet,
}

impl Statement {
    pub fn matches(&self, action: Action, resource: &str) -> bool {
        self.actions.is_match(action.as_str()) && self.resources.is_match(resource)
    }
}

fn glob_set(patterns: &[String]) -> Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern)
            .map_err(|e| Error::invalid(format!("invalid pattern {pattern:?}: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| Error::invalid(format!("invalid patterns: {e}")))
}

impl PolicyDocument {
    /// Parses and validates a document as submitted.
    pub fn parse(text: &str) -> Result<PolicyDocument> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::invalid("policy document is larger than 64 KiB"));
        }
        let doc: PolicyDocument = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("invalid policy document: {e}")))?;
        doc.validate()?;
        Ok(doc)
    }

    fn validate(&self) -> Result<()> {
        if self.statements.is_empty() {
            return Err(Error::invalid("a policy needs at least one statement"));
        }
        for statement in &self.statements {
            if statement.actions.is_empty() || statement.resources.is_empty() {
                return Err(Error::invalid(
                    "every statement needs at least one action and one resource",
                ));
            }
            glob_set(&statement.actions)?;
            for pattern in &statement.actions {
                let one = glob_set(std::slice::from_ref(pattern))?;
                if !Action::ALL.iter().any(|a| one.is_match(a.as_str())) {
                    return Err(Error::invalid(format!(
                        "unknown action {pattern:?}; actions are {}",
                        Action::ALL.map(Action::as_str).join(", ")
                    )));
                }
            }
            for pattern in &statement.resources {
                let known = pattern == "*"
                    || RESOURCE_KINDS.iter().any(|kind| {
                        pattern.starts_with(kind) || kind.starts_with(pattern.as_str())
                    });
                if !known {
                    return Err(Error::invalid(format!(
                        "unknown resource {pattern:?}; resources look like workspace:NAME, \
                         module:NAME/SYSTEM, provider:TYPE, blueprint:NAME, namespace, org or \
                         mirror"
                    )));
                }
            }
            glob_set(&statement.resources)?;
        }
        Ok(())
    }

    /// Compiles a stored (already validated) document.
    pub fn compile(&self) -> Result<Vec<Statement>> {
        self.statements
            .iter()
            .map(|s| {
                Ok(Statement {
                    effect: s.effect,
                    actions: glob_set(&s.actions)?,
                    resources: glob_set(&s.resources)?,
                })
            })
            .collect()
    }
}

/// Resource globs a token is limited to.
#[derive(Clone, Debug)]
pub struct Scopes {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Scopes {
    pub fn parse(patterns: Vec<String>) -> Result<Scopes> {
        if patterns.is_empty() {
            return Err(Error::invalid("a scoped token needs at least one scope"));
        }
        for pattern in &patterns {
            let known =
                RESOURCE_KINDS.iter().any(|kind| pattern.starts_with(kind)) || pattern == "*";
            if !known {
                return Err(Error::invalid(format!(
                    "unknown scope {pattern:?}; scopes look like workspace:prod-* or module:network/*"
                )));
            }
        }
        let set = glob_set(&patterns)?;
        Ok(Scopes { patterns, set })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn contains(&self, resource: &str) -> bool {
        self.set.is_match(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_with_unknown_actions_or_resources_are_refused() {
        let bad_action =
            r#"{"statements":[{"effect":"allow","actions":["state:steal"],"resources":["*"]}]}"#;
        assert!(PolicyDocument::parse(bad_action).is_err());
        let bad_resource = r#"{"statements":[{"effect":"allow","actions":["state:read"],"resources":["bucket:x"]}]}"#;
        assert!(PolicyDocument::parse(bad_resource).is_err());
        let extra = r#"{"statements":[],"version":1}"#;
        assert!(PolicyDocument::parse(extra).is_err());
        let good = r#"{"statements":[{"effect":"deny","actions":["state:*"],"resources":["workspace:prod-*"]}]}"#;
        let doc = PolicyDocument::parse(good).unwrap();
        let statements = doc.compile().unwrap();
        assert!(statements[0].matches(Action::StateWrite, "workspace:prod-eu"));
        assert!(!statements[0].matches(Action::StateWrite, "workspace:dev"));
        assert!(!statements[0].matches(Action::RegistryRead, "workspace:prod-eu"));
    }

    #[test]
    fn scopes_match_by_glob() {
        let scopes =
            Scopes::parse(vec!["workspace:prod-*".into(), "module:network/*".into()]).unwrap();
        assert!(scopes.contains("workspace:prod-1"));
        assert!(scopes.contains("module:network/aws"));
        assert!(!scopes.contains("workspace:dev"));
        assert!(!scopes.contains("org"));
        assert!(Scopes::parse(vec!["prod".into()]).is_err());
    }
}
