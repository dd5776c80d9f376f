//! Provider types, versions, platforms and the goreleaser artifact names, parsed once at the
//! edge.

use crate::error::{Error, Result};

/// A provider type (`aws` in `hashicorp/aws`): lowercase letters, digits and `-`, 1–64 chars,
/// starting with a letter or digit. Terraform lowercases the type in addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderType(String);

impl ProviderType {
    pub fn parse(value: &str) -> Result<Self> {
        let value = value.to_ascii_lowercase();
        if is_label(&value) {
            Ok(ProviderType(value))
        } else {
            Err(Error::invalid(
                "invalid provider type: use 1-64 lowercase letters, digits or '-', \
                 starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A label of a provider address (namespace or type), already lowercased.
pub fn is_label(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A canonical semantic version (`1.2.3`, `1.2.3-beta.1`).
///
/// Terraform up to 1.12 fails the whole versions list on one unparsable entry (a `v` prefix,
/// for instance), so only canonical strings are ever stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderVersion(semver::Version);

impl ProviderVersion {
    pub fn parse(value: &str) -> Result<Self> {
        let parsed = semver::Version::parse(value).map_err(|_| {
            Error::invalid(format!(
                "invalid provider version {value:?}: use semantic versioning such as 1.2.3 \
                 (no 'v' prefix)"
            ))
        })?;
        if !parsed.build.is_empty() {
            return Err(Error::invalid(
                "provider versions cannot carry build metadata (+…)",
            ));
        }
        if parsed.to_string() != value {
            return Err(Error::invalid(format!(
                "provider version {value:?} is not canonical; use {parsed}"
            )));
        }
        Ok(ProviderVersion(parsed))
    }
}

impl std::fmt::Display for ProviderVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An `os`/`arch` pair such as `linux`/`amd64`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl Platform {
    pub fn parse(os: &str, arch: &str) -> Result<Self> {
        let ok = |s: &str| {
            (1..=32).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if ok(os) && ok(arch) {
            Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
            })
        } else {
            Err(Error::invalid(format!(
                "invalid platform {os}_{arch}: os and arch are lowercase letters and digits"
            )))
        }
    }

    /// Parses `linux_amd64`.
    pub fn parse_pair(pair: &str) -> Result<Self> {
        let (os, arch) = pair.split_once('_').ok_or_else(|| {
            Error::invalid(format!("invalid platform {pair:?}: expected os_arch"))
        })?;
        Self::parse(os, arch)
    }
}

/// The name of a provider package zip as goreleaser and Terraform spell it.
pub fn package_filename(kind: &ProviderType, version: &ProviderVersion, p: &Platform) -> String {
    format!(
        "terraform-provider-{}_{version}_{}_{}.zip",
        kind.as_str(),
        p.os,
        p.arch
    )
}

/// `terraform-provider-{type}_{version}_SHA256SUMS`.
pub fn shasums_filename(kind: &ProviderType, version: &ProviderVersion) -> String {
    format!("terraform-provider-{}_{version}_SHA256SUMS", kind.as_str())
}

/// What a release artifact is, recognised from its goreleaser file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Artifact {
    Package(Platform),
    Shasums,
    Signature,
    /// `…_manifest.json` (goreleaser lists it in SHA256SUMS; it carries the protocols).
    Manifest,
}

impl Artifact {
    /// Recognises `filename` as an artifact of `kind` at `version`, or says what is wrong.
    pub fn recognise(
        filename: &str,
        kind: &ProviderType,
        version: &ProviderVersion,
    ) -> Result<Artifact> {
        let prefix = format!("terraform-provider-{}_{version}_", kind.as_str());
        let Some(rest) = filename.strip_prefix(&prefix) else {
            return Err(Error::invalid(format!(
                "unexpected file {filename:?}: release files must be named \
                 {prefix}{{os}}_{{arch}}.zip, {prefix}SHA256SUMS or {prefix}SHA256SUMS.sig"
            )));
        };
        match rest {
            "SHA256SUMS" => Ok(Artifact::Shasums),
            "SHA256SUMS.sig" => Ok(Artifact::Signature),
            "manifest.json" => Ok(Artifact::Manifest),
            "SHA256SUMS.asc" => Err(Error::invalid(
                "ASCII-armored signatures (.asc) cannot be used: Terraform only accepts a \
                 binary detached signature (gpg --detach-sign), uploaded as …_SHA256SUMS.sig",
            )),
            _ => match rest.strip_suffix(".zip") {
                Some(pair) => Ok(Artifact::Package(Platform::parse_pair(pair)?)),
                None => Err(Error::invalid(format!(
                    "unexpected file {filename:?}: only the {{os}}_{{arch}}.zip packages, \
                     SHA256SUMS, SHA256SUMS.sig and manifest.json belong to a release"
                ))),
            },
        }
    }
}

/// Provider plugin protocol versions (`5.0`, `6.0`); Terraform 1.0.3 speaks 5 and 6.
pub fn parse_protocols(text: &str) -> Result<Vec<String>> {
    let mut protocols = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let valid = match item.split_once('.') {
            Some((major, minor)) => is_number(major) && is_number(minor),
            None => is_number(item),
        };
        if !valid {
            return Err(Error::invalid(format!(
                "invalid protocol version {item:?}: use major.minor such as 5.0 or 6.0"
            )));
        }
        let item = if item.contains('.') {
            item.to_string()
        } else {
            format!("{item}.0")
        };
        // Terraform (0.12 up to today) speaks plugin protocols 5 and 6 only and refuses a
        // package that offers neither.
        if !(item.starts_with("5.") || item.starts_with("6.")) {
            return Err(Error::invalid(format!(
                "unsupported protocol version {item}: Terraform installs providers speaking \
                 plugin protocol 5 or 6"
            )));
        }
        if !protocols.contains(&item) {
            protocols.push(item);
        }
    }
    if protocols.is_empty() {
        return Err(Error::invalid("protocols must name at least one version"));
    }
    Ok(protocols)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind() -> ProviderType {
        ProviderType::parse("dummy").unwrap()
    }

    fn v(s: &str) -> ProviderVersion {
        ProviderVersion::parse(s).unwrap()
    }

    #[test]
    fn versions_must_be_canonical_semver_without_a_v() {
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        assert_eq!(v("1.0.0-beta.1").to_string(), "1.0.0-beta.1");
        for bad in ["v1.2.3", "1.2", "01.2.3", "1.2.3+build", "latest", ""] {
            assert!(ProviderVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn goreleaser_names_are_recognised() {
        let (k, ver) = (kind(), v("1.0.0"));
        let recognise = |name: &str| Artifact::recognise(name, &k, &ver);
        assert_eq!(
            recognise("terraform-provider-dummy_1.0.0_linux_amd64.zip").unwrap(),
            Artifact::Package(Platform::parse("linux", "amd64").unwrap())
        );
        assert_eq!(
            recognise("terraform-provider-dummy_1.0.0_SHA256SUMS").unwrap(),
            Artifact::Shasums
        );
        assert_eq!(
            recognise("terraform-provider-dummy_1.0.0_SHA256SUMS.sig").unwrap(),
            Artifact::Signature
        );
        assert_eq!(
            recognise("terraform-provider-dummy_1.0.0_manifest.json").unwrap(),
            Artifact::Manifest
        );
        for bad in [
            "terraform-provider-dummy_1.0.1_linux_amd64.zip",
            "terraform-provider-other_1.0.0_linux_amd64.zip",
            "terraform-provider-dummy_1.0.0_linux.zip",
            "terraform-provider-dummy_1.0.0_Linux_amd64.zip",
            "terraform-provider-dummy_1.0.0_SHA256SUMS.asc",
            "terraform-provider-dummy_1.0.0_linux_amd64.tar.gz",
        ] {
            assert!(recognise(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protocols_are_major_minor_lists() {
        assert_eq!(parse_protocols("5.0").unwrap(), vec!["5.0"]);
        assert_eq!(parse_protocols("5, 6.0,5.0").unwrap(), vec!["5.0", "6.0"]);
        assert!(parse_protocols("").is_err());
        assert!(parse_protocols("five").is_err());
        assert!(parse_protocols("4.0").is_err());
    }

    #[test]
    fn types_and_platforms_are_lowercase_labels() {
        assert_eq!(
            ProviderType::parse("My-Cloud").unwrap().as_str(),
            "my-cloud"
        );
        assert!(ProviderType::parse("-x").is_err());
        assert!(ProviderType::parse("a_b").is_err());
        let platform = Platform::parse_pair("linux_arm64").unwrap();
        assert_eq!(
            (platform.os.as_str(), platform.arch.as_str()),
            ("linux", "arm64")
        );
        assert!(Platform::parse_pair("linux").is_err());
    }
}
