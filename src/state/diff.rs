//! What changed between two state versions: resources added, removed and changed, down to
//! the attribute, and outputs; values Terraform marks sensitive are masked. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Largest version compared (and whose outputs the web UI reads): parsing takes several times
/// a document's size in memory.
pub const MAX_BYTES: i64 = 32 * 1024 * 1024;

/// Shown instead of a sensitive value.
pub const MASK: &str = "(sensitive)";

#[derive(Debug, Serialize, PartialEq)]
pub struct StateDiff {
    pub added: Vec<ResourceChange>,
    pub removed: Vec<ResourceChange>,
    pub changed: Vec<ResourceChange>,
    pub unchanged: usize,
    pub outputs: Vec<AttributeChange>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.outputs.is_empty()
    }
}

/// One resource instance, by its address (`module.net.aws_subnet.a["x"]`).
#[derive(Debug, Serialize, PartialEq)]
pub struct ResourceChange {
    pub address: String,
    pub attributes: Vec<AttributeChange>,
}

/// One leaf value by its path (`tags.Name`, `ingress[0].cidr_blocks[1]`); `None` where absent.
#[derive(Debug, Serialize, PartialEq)]
pub struct AttributeChange {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub sensitive: bool,
}

/// A resource instance's leaf values by path, and the paths under a sensitive marking.
struct Instance {
    leaves: BTreeMap<String, Value>,
    sensitive: Vec<String>,
}

/// The diff from `before` to `after`, two state documents (format version 4).
pub fn diff(before: &[u8], after: &[u8]) -> Result<StateDiff> {
    let before = parse(before)?;
    let after = parse(after)?;
    let (old, new) = (instances(&before), instances(&after));
    let mut diff = StateDiff {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
        outputs: outputs(&before, &after),
    };
    let addresses: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for address in addresses {
        let (a, b) = (old.get(address), new.get(address));
        let attributes = changes(a, b);
        let change = ResourceChange {
            address: address.clone(),
            attributes,
        };
        match (a, b) {
            (None, Some(_)) => diff.added.push(change),
            (Some(_), None) => diff.removed.push(change),
            _ if change.attributes.is_empty() => diff.unchanged += 1,
            _ => diff.changed.push(change),
        }
    }
    Ok(diff)
}

fn parse(body: &[u8]) -> Result<Value> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::Unprocessable(vec![format!("a version is not a Terraform state: {e}")])
    })?;
    if !value.is_object() {
        return Err(Error::Unprocessable(vec![
            "a version is not a Terraform state: not a JSON object".into(),
        ]));
    }
    Ok(value)
}

fn instances(state: &Value) -> BTreeMap<String, Instance> {
    let mut out = BTreeMap::new();
    let resources = state["resources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for resource in resources {
        let mut base = String::new();
        if let Some(module) = resource["module"].as_str() {
            base.push_str(module);
            base.push('.');
        }
        if resource["mode"].as_str() == Some("data") {
            base.push_str("data.");
        }
        base.push_str(resource["type"].as_str().unwrap_or("?"));
        base.push('.');
        base.push_str(resource["name"].as_str().unwrap_or("?"));
        let list = resource["instances"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for instance in list {
            let address = match &instance["index_key"] {
                Value::Null => base.clone(),
                Value::String(key) => format!("{base}[{}]", Value::String(key.clone())),
                other => format!("{base}[{other}]"),
            };
            let mut leaves = BTreeMap::new();
            flatten(&instance["attributes"], String::new(), &mut leaves);
            let sensitive = instance["sensitive_attributes"]
                .as_array()
                .map(|paths| paths.iter().filter_map(sensitive_path).collect())
                .unwrap_or_default();
            out.insert(address, Instance { leaves, sensitive });
        }
    }
    out
}

/// Leaf values by path; empty objects and lists count as leaves, so they show.
fn flatten(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                let next = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                flatten(item, next, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, format!("{path}[{i}]"), out);
            }
        }
        Value::Null if path.is_empty() => {}
        other => {
            out.insert(path, other.clone());
        }
    }
}

/// A `sensitive_attributes` entry (`[{"type":"get_attr","value":"password"}, …]`) as a path.
fn sensitive_path(steps: &Value) -> Option<String> {
    let mut path = String::new();
    for step in steps.as_array()? {
        match step["type"].as_str()? {
            "get_attr" => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(step["value"].as_str()?);
            }
            "index" => match &step["value"]["value"] {
                Value::String(key) => path.push_str(&format!(".{key}")),
                other => path.push_str(&format!("[{other}]")),
            },
            _ => return None,
        }
    }
    Some(path)
}

/// Whether `path` is marked or below a marked path (a set: a state may mark many paths).
fn under(path: &str, marked: &HashSet<&str>) -> bool {
    !marked.is_empty()
        && (marked.contains(path)
            || path
                .char_indices()
                .filter(|&(_, c)| c == '.' || c == '[')
                .any(|(i, _)| marked.contains(&path[..i])))
}

fn changes(a: Option<&Instance>, b: Option<&Instance>) -> Vec<AttributeChange> {
    let empty = BTreeMap::new();
    let (old, new) = (
        a.map(|i| &i.leaves).unwrap_or(&empty),
        b.map(|i| &i.leaves).unwrap_or(&empty),
    );
    let marked: HashSet<&str> = a
        .iter()
        .chain(b.iter())
        .flat_map(|i| i.sensitive.iter().map(String::as_str))
        .collect();
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    paths
        .into_iter()
        .filter(|path| old.get(*path) != new.get(*path))
        .map(|path| {
            let sensitive = under(path, &marked);
            AttributeChange {
                path: path.clone(),
                before: old.get(path).map(|v| shown(v, sensitive)),
                after: new.get(path).map(|v| shown(v, sensitive)),
                sensitive,
            }
        })
        .collect()
}

fn shown(value: &Value, sensitive: bool) -> String {
    if sensitive {
        MASK.to_string()
    } else {
        value.to_string()
    }
}

fn outputs(before: &Value, after: &Value) -> Vec<AttributeChange> {
    let none = serde_json::Map::new();
    let old = before["outputs"].as_object().unwrap_or(&none);
    let new = after["outputs"].as_object().unwrap_or(&none);
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|name| old.get(*name).map(|o| &o["value"]) != new.get(*name).map(|o| &o["value"]))
        .map(|name| {
            let sensitive = [old.get(name), new.get(name)]
                .iter()
                .flatten()
                .any(|o| o["sensitive"].as_bool() == Some(true));
            AttributeChange {
                path: name.clone(),
                before: old.get(name).map(|o| shown(&o["value"], sensitive)),
                after: new.get(name).map(|o| shown(&o["value"], sensitive)),
                sensitive,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state(resources: Value, outputs: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "version": 4, "serial": 1, "lineage": "l",
            "outputs": outputs, "resources": resources,
        }))
        .unwrap()
    }

    fn bucket(name: &str, index: Value, attributes: Value) -> Value {
        json!({
            "mode": "managed", "type": "aws_s3_bucket", "name": name,
            "provider": "provider[\"registry.terraform.io/hashicorp/aws\"]",
            "instances": [{
                "index_key": index, "schema_version": 0, "attributes": attributes,
                "sensitive_attributes": [[{"type": "get_attr", "value": "secret"}]],
            }],
        })
    }

    #[test]
    fn resources_are_added_removed_and_changed_by_attribute() {
        let before = state(
            json!([
                bucket(
                    "a",
                    Value::Null,
                    json!({"id": "a", "tags": {"env": "dev"}, "secret": "s1"})
                ),
                bucket("gone", json!("x"), json!({"id": "g"})),
                bucket("same", json!(0), json!({"id": "s"})),
            ]),
            json!({"url": {"value": "http://old", "type": "string"},
                   "pw": {"value": "p1", "type": "string", "sensitive": true}}),
        );
        let after = state(
            json!([
                bucket(
                    "a",
                    Value::Null,
                    json!({"id": "a", "tags": {"env": "prod"}, "secret": "s2"})
                ),
                bucket("same", json!(0), json!({"id": "s"})),
                bucket("new", Value::Null, json!({"id": "n"})),
            ]),
            json!({"url": {"value": "http://new", "type": "string"},
                   "pw": {"value": "p2", "type": "string", "sensitive": true}}),
        );
        let diff = diff(&before, &after).unwrap();
        assert_eq!(diff.unchanged, 1);
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.added[0].address, "aws_s3_bucket.new");
        assert_eq!(diff.removed[0].address, "aws_s3_bucket.gone[\"x\"]");
        let changed = &diff.changed[0];
        assert_eq!(changed.address, "aws_s3_bucket.a");
        assert_eq!(
            changed.attributes,
            vec![
                AttributeChange {
                    path: "secret".into(),
                    before: Some(MASK.into()),
                    after: Some(MASK.into()),
                    sensitive: true,
                },
                AttributeChange {
                    path: "tags.env".into(),
                    before: Some("\"dev\"".into()),
                    after: Some("\"prod\"".into()),
                    sensitive: false,
                },
            ]
        );
        let pw = diff.outputs.iter().find(|o| o.path == "pw").unwrap();
        assert_eq!(pw.before.as_deref(), Some(MASK));
        let url = diff.outputs.iter().find(|o| o.path == "url").unwrap();
        assert_eq!(url.after.as_deref(), Some("\"http://new\""));
        let text = serde_json::to_string(&diff).unwrap();
        assert!(!text.contains("s1") && !text.contains("s2") && !text.contains("p2"));
    }

    #[test]
    fn a_version_against_itself_is_empty_and_junk_is_refused() {
        let one = state(
            json!([bucket("a", Value::Null, json!({"id": "a"}))]),
            json!({}),
        );
        let diff = diff(&one, &one).unwrap();
        assert!(diff.is_empty());
        assert_eq!(diff.unchanged, 1);
        assert!(matches!(
            super::diff(b"not json", &one),
            Err(Error::Unprocessable(_))
        ));
    }

    #[test]
    fn nested_sensitive_paths_mask_what_is_below_them() {
        assert_eq!(
            sensitive_path(&json!([{"type":"get_attr","value":"conn"},
                                   {"type":"index","value":{"value":0,"type":"number"}}])),
            Some("conn[0]".into())
        );
        let marked: HashSet<&str> = ["conn[0]", "token"].into_iter().collect();
        assert!(under("conn[0].password", &marked));
        assert!(under("conn[0]", &marked));
        assert!(under("token", &marked));
        assert!(!under("connection", &marked));
        assert!(!under("conn[1].password", &marked));
    }
}
