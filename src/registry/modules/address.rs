//! Module addresses and versions, parsed once at the edge.
//!
//! A module is `namespace/name/system`; the namespace is an org name. Names and systems are
//! stored lowercase and matched case-insensitively, as Terraform treats them.

use crate::error::{Error, Result};
use crate::names::OrgName;

/// A valid module `name` (lowercase letters, digits, `-`, `_`; 1–64, no `-`/`_` at the ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleName(String);

/// A valid module `system` (the provider part of a module address).
///
/// Terraform's address grammar allows only `[0-9a-z]{1,64}` here, so `-` and `_` are refused:
/// a module published under such a system could never be installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System(String);

impl ModuleName {
    /// Parses a name for publishing: it must already be lowercase.
    pub fn parse(value: &str) -> Result<Self> {
        let valid = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !value.starts_with(['-', '_'])
            && !value.ends_with(['-', '_']);
        if valid {
            Ok(ModuleName(value.to_string()))
        } else {
            Err(Error::invalid(
                "invalid module name: use 1-64 lowercase letters, digits, '-' or '_', \
                 not starting or ending with '-' or '_'",
            ))
        }
    }

    /// Parses a name from a lookup, where Terraform preserves the user's case.
    pub fn lookup(value: &str) -> Result<Self> {
        Self::parse(&value.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl System {
    pub fn parse(value: &str) -> Result<Self> {
        let valid = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(System(value.to_string()))
        } else {
            Err(Error::invalid(
                "invalid module system: use 1-64 lowercase letters or digits (e.g. aws)",
            ))
        }
    }

    pub fn lookup(value: &str) -> Result<Self> {
        Self::parse(&value.to_ascii_lowercase())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `namespace/name/system`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleAddress {
    pub namespace: OrgName,
    pub name: ModuleName,
    pub system: System,
}

impl ModuleAddress {
    /// An address to publish under: name and system must be lowercase already.
    pub fn for_publish(namespace: &str, name: &str, system: &str) -> Result<Self> {
        Ok(ModuleAddress {
            namespace: OrgName::parse(namespace)?,
            name: ModuleName::parse(name)?,
            system: System::parse(system)?,
        })
    }

    /// An address as Terraform or a browser asks for it (any case).
    pub fn lookup(namespace: &str, name: &str, system: &str) -> Result<Self> {
        Ok(ModuleAddress {
            namespace: OrgName::parse(namespace)?,
            name: ModuleName::lookup(name)?,
            system: System::lookup(system)?,
        })
    }
}

impl std::fmt::Display for ModuleAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.name.0, self.system.0)
    }
}

/// A module version: semver, stored in canonical form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModuleVersion(semver::Version);

impl ModuleVersion {
    /// Parses `1.2.3`, `v1.2.3` or `1.2.3-beta.1`. Terraform asks for downloads with
    /// go-version's normalized string, which is exactly this canonical form.
    pub fn parse(value: &str) -> Result<Self> {
        let text = value.strip_prefix('v').unwrap_or(value);
        let version = semver::Version::parse(text).map_err(|e| {
            Error::invalid(format!(
                "version {value:?} is not a semantic version such as 1.2.3 ({e})"
            ))
        })?;
        // go-version ignores build metadata when comparing, so `1.0.0+a` and `1.0.0+b` would
        // be one version to Terraform: refuse it rather than serve an arbitrary one.
        if !version.build.is_empty() {
            return Err(Error::invalid(format!(
                "version {value:?} has build metadata, which Terraform ignores; drop the '+…' part"
            )));
        }
        Ok(ModuleVersion(version))
    }

    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// The parsed version, for comparisons such as version constraints.
    pub fn semver(&self) -> &semver::Version {
        &self.0
    }
}

impl std::fmt::Display for ModuleVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The version a listing shows as "latest": the highest release, or the highest pre-release
/// when there is no release yet (as Terraform picks with no constraint, when it can).
pub fn latest<'a, T>(versions: impl IntoIterator<Item = (&'a ModuleVersion, T)>) -> Option<T> {
    versions
        .into_iter()
        .max_by_key(|(version, _)| (!version.is_prerelease(), *version))
        .map(|(_, item)| item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_canonical_semver() {
        assert_eq!(ModuleVersion::parse("v1.2.3").unwrap().to_string(), "1.2.3");
        assert_eq!(
            ModuleVersion::parse("1.2.0-beta").unwrap().to_string(),
            "1.2.0-beta"
        );
        for bad in ["1.2", "latest", "", "1.0.0+build", "01.0.0", "v", "1.0.0.0"] {
            assert!(ModuleVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_follow_terraforms_address_grammar() {
        for ok in ["vpc", "my-vpc", "vpc_2", "0"] {
            assert!(ModuleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Vpc", "-vpc", "vpc_", "a/b", "a.b", &"x".repeat(65)] {
            assert!(ModuleName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ModuleName::lookup("VPC").unwrap().as_str(), "vpc");
        assert!(System::parse("aws").is_ok());
        for bad in ["", "my-cloud", "AWS", "a_b"] {
            assert!(System::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn latest_prefers_the_highest_release_over_newer_prereleases() {
        let v = |s| ModuleVersion::parse(s).unwrap();
        let versions = [v("1.0.0"), v("2.0.0-rc.1"), v("1.5.0"), v("1.2.0")];
        assert_eq!(
            latest(versions.iter().map(|v| (v, v.to_string()))),
            Some("1.5.0".into())
        );
        let pre = [v("1.0.0-alpha"), v("1.0.0-beta")];
        assert_eq!(
            latest(pre.iter().map(|v| (v, v.to_string()))),
            Some("1.0.0-beta".into())
        );
        assert_eq!(latest(std::iter::empty::<(&ModuleVersion, ())>()), None);
    }
}
