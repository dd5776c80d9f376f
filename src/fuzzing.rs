//! Entry points for the fuzz targets in `fuzz/`: one function per parser of untrusted input,
//! each taking the fuzzer's bytes. They call the same code the server runs on uploads and
//! request bodies, so that the parsers themselves can stay private to their features.
//!
//! A function returns normally for any input the code refuses; it panics only where the code
//! panics, or where a property the server relies on does not hold (stated at each `assert!`).
//! Not part of Terrace's interface.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::blueprints::constraint::Constraint;
use crate::blueprints::schema::{self, InputOverride, Sources};
use crate::costs::catalogue::Catalogue;
use crate::costs::estimate::{self, Pricing};
use crate::costs::focus::{self, Attribution};
use crate::costs::rules::{Rules, Usage};
use crate::identity::auth::Action;
use crate::identity::auth::policy::{PolicyDocument, Scopes};
use crate::registry::modules::archive;
use crate::registry::modules::metadata::ModuleMetadata;
use crate::registry::providers::{keys, package, sums::Shasums};

/// Splits `data` into a part whose length is its first two bytes (big-endian, cut to what is
/// there) and the rest: how targets that take several inputs read them from one byte string.
pub fn split_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    match data {
        [high, low, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*high, *low])).min(rest.len());
            rest.split_at(len)
        }
        _ => (&[], data),
    }
}

/// The inverse of [`split_prefixed`] for one part (for making seeds).
pub fn prefixed(part: &[u8]) -> Vec<u8> {
    let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&part[..usize::from(len)]);
    out
}

/// A state body as the http backend and the management API receive it: `inspect`, and for a
/// JSON body it accepts, what a rollback (`with_serial`) and an outputs-only read do with it;
/// and the diff of two versions.
pub fn state_document(data: &[u8]) {
    let meta = crate::state::document::inspect(data);
    if let Ok(meta) = meta
        && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
    {
        let next = meta.serial.unwrap_or(0).saturating_add(1);
        let _ = crate::state::document::with_serial(data, next);
        let _ = crate::state::document::outputs_only(data);
    }
    // The web UI's diff reads the whole document: resources, instances, sensitive paths.
    let _ = crate::state::diff::diff(data, data);
    let _ = crate::state::diff::diff(br#"{"version":4,"serial":1,"lineage":"l"}"#, data);
}

/// A module `.tar.gz` as published: the archive checks, then metadata extraction.
pub fn module_archive(data: &[u8]) {
    if let Ok(files) = archive::inspect(data) {
        let metadata = ModuleMetadata::extract(&files);
        let _ = metadata.description();
        let _ = serde_json::to_vec(&metadata.root);
    }
}

/// One `.tf` file (and a README) of a module, through the registry's metadata extraction.
/// The input is `[u16 length][README][main.tf]`.
pub fn module_hcl(data: &[u8]) {
    let (readme, tf) = split_prefixed(data);
    let mut files = archive::ModuleFiles::default();
    files.dirs.insert(
        String::new(),
        archive::ModuleDir {
            tf_files: vec![("main.tf".into(), String::from_utf8_lossy(tf).into_owned())],
            tf_json_files: Vec::new(),
            has_config: true,
            readme: Some(String::from_utf8_lossy(readme).into_owned()),
        },
    );
    let metadata = ModuleMetadata::extract(&files);
    let _ = metadata.description();
    let _ = serde_json::to_vec(&metadata);
}

/// A provider package zip for provider type `x`, as publishing and the mirror check it.
pub fn provider_zip(data: &[u8]) {
    let _ = package::inspect("terraform-provider-x_1.0.0_linux_amd64.zip", data, "x");
}

/// A SHA256SUMS document. When it parses, its canonical form (what Terrace signs and serves
/// when the original cannot be) must parse to the same entries, be its own canonical form,
/// and have no lines Terraform cannot use.
pub fn shasums(data: &[u8]) {
    let Ok(sums) = Shasums::parse(data) else {
        return;
    };
    let again = Shasums::parse(sums.canonical())
        .unwrap_or_else(|e| panic!("the canonical form does not parse: {e}"));
    assert_eq!(
        again.canonical(),
        sums.canonical(),
        "canonical form changed"
    );
    assert!(
        again.unusable_lines().is_empty(),
        "the canonical form has unusable lines: {:?}",
        again.unusable_lines()
    );
    assert!(
        again.filenames().eq(sums.filenames()),
        "the canonical form lists other files"
    );
    for name in sums.filenames() {
        assert_eq!(
            again.hash_of(name),
            sums.hash_of(name),
            "hash of {name} changed"
        );
    }
}

/// An ASCII-armored public key as registered for a namespace (and as read back when stored).
pub fn gpg_key(data: &[u8]) {
    let armor = String::from_utf8_lossy(data);
    let parsed = keys::parse_public_key(&armor);
    let stored = keys::parse_stored(&armor);
    if parsed.is_ok() {
        assert!(stored.is_some(), "an accepted key does not read back");
    }
}

/// A detached signature over SHA256SUMS, checked against a namespace's key as publishing
/// does. The input is `[u16 length][armored key][u16 length][signature][signed bytes]`.
pub fn provider_signature(data: &[u8]) {
    let (armor, rest) = split_prefixed(data);
    let (signature, signed) = split_prefixed(rest);
    let armor = String::from_utf8_lossy(armor);
    let keys: Vec<_> = keys::parse_stored(&armor).into_iter().collect();
    let _ = keys::verify_detached(signature, signed, &keys);
}

/// A custom policy document as submitted (and a token's scopes, when the input is a JSON
/// array of strings). An accepted document must compile, as every request's authorization
/// compiles the stored text again.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(doc) = PolicyDocument::parse(text) {
        let stored = serde_json::to_string(&doc).unwrap_or_default();
        let again = PolicyDocument::parse(&stored)
            .unwrap_or_else(|e| panic!("an accepted document does not parse again: {e}"));
        let statements = again
            .compile()
            .unwrap_or_else(|e| panic!("an accepted document does not compile: {e}"));
        for statement in &statements {
            for action in Action::ALL {
                for resource in ["org", "workspace:prod", "module:vpc/aws", "mirror"] {
                    let _ = statement.matches(action, resource);
                }
            }
        }
    }
    if let Ok(patterns) = serde_json::from_str::<Vec<String>>(text)
        && let Ok(scopes) = Scopes::parse(patterns)
    {
        let _ = scopes.contains("workspace:prod");
    }
}

/// A blueprint module's variables through schema derivation, then deployment inputs checked
/// against the schema. The input is `[u16 length][inputs JSON][main.tf]`; inputs that read
/// as overrides (`{"name": {"allowed": […], …}}`) are applied to the schema first.
pub fn blueprint_schema(data: &[u8]) {
    let (inputs, tf) = split_prefixed(data);
    let tf = String::from_utf8_lossy(tf).into_owned();
    let tf_files = vec![("main.tf".to_string(), tf.clone())];
    // The same text as `.tf.json` when it is JSON: derivation reads both syntaxes.
    let tf_json_files = if serde_json::from_str::<Value>(&tf).is_ok() {
        vec![("main.tf.json".to_string(), tf)]
    } else {
        Vec::new()
    };
    let derived = schema::derive(Sources {
        tf_files: &tf_files,
        tf_json_files: &tf_json_files,
        readme: "",
    });
    let mut schema = derived.schema;
    let inputs: Value = serde_json::from_slice(inputs).unwrap_or(Value::Null);
    if let Ok(overrides) = serde_json::from_value::<BTreeMap<String, InputOverride>>(inputs.clone())
    {
        schema = schema::apply_overrides(&schema, &overrides).0;
    }
    let _ = schema::sensitive_inputs(&schema);
    let _ = schema::validate_inputs(&schema, &inputs);
    let _ = schema::validate_inputs(&schema, &json!({}));
}

/// A Terraform version constraint (a deployment's `version`), matched against versions a
/// module may have.
pub fn version_constraint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(constraint) = Constraint::parse(text) else {
        return;
    };
    static VERSIONS: OnceLock<Vec<semver::Version>> = OnceLock::new();
    let versions = VERSIONS.get_or_init(|| {
        [
            "0.0.0",
            "0.1.0",
            "1.2.3",
            "1.2.3-beta.1",
            "2.0.0",
            "18446744073709551615.0.0",
        ]
        .iter()
        .filter_map(|v| semver::Version::parse(v).ok())
        .chain([semver::Version::new(u64::MAX, u64::MAX, u64::MAX)])
        .collect()
    });
    for version in versions {
        let _ = constraint.matches(version);
        let _ = constraint.allows(version);
    }
}

/// The built-in pricing rules, usage and sample catalogue, read once.
fn pricing_data() -> (&'static Rules, &'static Usage, &'static Catalogue) {
    static DATA: OnceLock<(crate::costs::Settings, Catalogue)> = OnceLock::new();
    let (settings, catalogue) =
        DATA.get_or_init(|| (crate::costs::Settings::default(), Catalogue::sample()));
    (&settings.rules, &settings.usage, catalogue)
}

/// `terraform show -json` of a plan as uploaded for an estimate and kept as a run's summary;
/// the same document read as a state, as the cost history reads state versions.
pub fn plan_json(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (rules, usage, catalogue) = pricing_data();
    if estimate::is_plan(&doc) {
        let pricing = Pricing {
            rules,
            catalogue,
            usage,
            provider_regions: estimate::plan_regions(&doc),
        };
        let _ = estimate::estimate_plan(&pricing, &doc);
        let _ = crate::deployments::runs::summarize(&doc);
    }
    let pricing = Pricing {
        rules,
        catalogue,
        usage,
        provider_regions: HashMap::new(),
    };
    let _ = estimate::estimate(&pricing, &estimate::state_instances(&doc));
    let _ = estimate::state_resource_ids(&doc);
}

/// A FOCUS billing export (CSV, or gzip of it), read in small batches.
pub fn focus_billing(data: &[u8]) {
    let attribution = Attribution {
        by_resource: HashMap::from([("i-0abc".to_string(), 1), ("vol-1".to_string(), 2)]),
        by_name: HashMap::from([("prod".to_string(), 3)]),
        tag: "terrace-workspace".into(),
    };
    let _ = focus::read(data, &attribution, None, 4, &mut |_batch| Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_parts_split_back() {
        let mut data = prefixed(b"first");
        data.extend_from_slice(b"rest");
        assert_eq!(split_prefixed(&data), (&b"first"[..], &b"rest"[..]));
        assert_eq!(split_prefixed(b"\xff\xffab"), (&b"ab"[..], &b""[..]));
        assert_eq!(split_prefixed(b"a"), (&b""[..], &b"a"[..]));
    }
}
