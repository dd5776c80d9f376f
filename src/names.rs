//! Validated names for orgs and workspaces: parsed once at the edge, trusted afterwards.

use crate::error::{Error, Result};

/// Checks a name: 1–90 chars of `A-Z a-z 0-9 _ - .`, starting with a letter or digit.
fn check(kind: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 90
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {kind} name: use 1-90 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

macro_rules! name_type {
    ($ty:ident, $kind:literal) => {
        #[doc = concat!("A valid ", $kind, " name.")]
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(value: &str) -> Result<Self> {
                check($kind, value)?;
                Ok($ty(value.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(OrgName, "organization");
name_type!(TeamName, "team");
name_type!(PolicyName, "policy");
name_type!(BlueprintName, "blueprint");

/// A user name: an email address or a login, compared case-insensitively (kept lowercase).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserName(String);

impl UserName {
    pub fn parse(value: &str) -> Result<Self> {
        let lower = value.trim().to_lowercase();
        let valid = !lower.is_empty()
            && lower.len() <= 100
            && lower.as_bytes()[0].is_ascii_alphanumeric()
            && lower.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'+')
            });
        if valid {
            Ok(UserName(lower))
        } else {
            Err(Error::invalid(
                "invalid user name: use 1-100 letters, digits, '-', '_', '.', '@' or '+', \
                 starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl OrgName {
    /// Org names are also registry namespaces, which Terraform lowercases; refusing capitals
    /// here keeps an org from being unreachable through the registry.
    pub fn parse_new(value: &str) -> Result<Self> {
        let name = Self::parse(value)?;
        if value.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "organization names must be lowercase: they are also registry namespaces",
            ));
        }
        Ok(name)
    }
}
name_type!(WorkspaceName, "workspace");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_orgs_must_be_lowercase() {
        assert!(OrgName::parse_new("acme-2").is_ok());
        assert!(OrgName::parse_new("Acme").is_err());
    }

    #[test]
    fn names_accept_the_usual_shapes_and_refuse_the_rest() {
        for ok in ["acme", "networking-prod", "a.b_c", "9lives"] {
            assert!(WorkspaceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a/b", "..", "a b", "é", &"x".repeat(91)] {
            assert!(WorkspaceName::parse(bad).is_err(), "{bad}");
        }
    }
}
