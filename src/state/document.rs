//! What Terrace reads from a state body: only the top-level `serial` and `lineage`.
//!
//! Bodies are stored as sent. A JSON object without those fields (OpenTofu's client-side
//! encrypted state) is opaque and accepted.

use serde::Deserialize;

use crate::error::{Error, Result};

/// Metadata of a state body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMeta {
    pub serial: Option<i64>,
    pub lineage: Option<String>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    serial: Option<serde_json::Value>,
    #[serde(default)]
    lineage: Option<serde_json::Value>,
    // Other fields are skipped while parsing, not collected: states can be hundreds of MB.
}

/// Reads the metadata of a state body; refuses anything that is not a JSON object.
pub fn inspect(body: &[u8]) -> Result<StateMeta> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(Error::invalid("state body is empty")),
        // A derived struct would also accept a JSON array; a state is always an object.
        Some(b'{') => {}
        Some(_) => return Err(Error::invalid("state must be a JSON object")),
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("state is not a valid JSON object: {e}")))?;
    let serial = match probe.serial {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::invalid("state serial must be a non-negative integer"))?,
        ),
    };
    let lineage = match probe.lineage {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.len() <= 256 => Some(s),
        Some(_) => return Err(Error::invalid("state lineage must be a string")),
    };
    Ok(StateMeta { serial, lineage })
}

/// The same document with its top-level serial replaced, pretty-printed as Terraform writes it.
pub fn with_serial(body: &[u8], serial: i64) -> Result<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored state is not JSON: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("stored state is not an object")))?;
    object.insert("serial".into(), serial.into());
    let mut out = serde_json::to_vec_pretty(&value).map_err(|e| Error::Internal(e.into()))?;
    out.push(b'\n');
    Ok(out)
}

/// The state as an outputs-only reader sees it: the same document with every resource (and
/// whatever else may hold secrets) removed. `None` when the body is not a Terraform state
/// (e.g. client-side encrypted), since its outputs cannot be told apart.
pub fn outputs_only(body: &[u8]) -> Option<Vec<u8>> {
    #[derive(Deserialize)]
    struct Outputs {
        version: serde_json::Value,
        #[serde(default)]
        terraform_version: Option<serde_json::Value>,
        serial: serde_json::Value,
        lineage: serde_json::Value,
        outputs: serde_json::Value,
    }
    let state: Outputs = serde_json::from_slice(body).ok()?;
    let filtered = serde_json::json!({
        "version": state.version,
        "terraform_version": state.terraform_version,
        "serial": state.serial,
        "lineage": state.lineage,
        "outputs": state.outputs,
        "resources": [],
    });
    let mut out = serde_json::to_vec_pretty(&filtered).ok()?;
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_only_keeps_outputs_and_drops_resources() {
        let body = br#"{"version":4,"terraform_version":"1.0.3","serial":7,"lineage":"l",
            "outputs":{"vpc":{"value":"vpc-1","type":"string"}},
            "resources":[{"type":"aws_db_instance","instances":[{"attributes":{"password":"hunter2"}}]}]}"#;
        let filtered = String::from_utf8(outputs_only(body).unwrap()).unwrap();
        assert!(filtered.contains("vpc-1"));
        assert!(!filtered.contains("hunter2"));
        assert!(!filtered.contains("aws_db_instance"));
        let meta = inspect(filtered.as_bytes()).unwrap();
        assert_eq!(meta.serial, Some(7));
        assert!(outputs_only(br#"{"encrypted_data":"AAAA"}"#).is_none());
    }

    #[test]
    fn terraform_state_yields_serial_and_lineage() {
        let meta = inspect(br#"{"version":4,"serial":3,"lineage":"abc","outputs":{}}"#).unwrap();
        assert_eq!(meta.serial, Some(3));
        assert_eq!(meta.lineage.as_deref(), Some("abc"));
    }

    #[test]
    fn encrypted_envelopes_are_opaque() {
        let meta =
            inspect(br#"{"meta":{},"encrypted_data":"AAAA","encryption_version":"v0"}"#).unwrap();
        assert_eq!(meta, StateMeta::default());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"{"[..],
            b"[1,2]",
            b"[]",
            br#"[3, "lineage"]"#,
            b"",
            b"  ",
            br#"{"serial":-1}"#,
            br#"{"serial":"7"}"#,
        ] {
            assert!(inspect(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn with_serial_keeps_field_order() {
        let out = with_serial(br#"{"version":4,"serial":3,"lineage":"abc"}"#, 9).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\n  \"version\": 4,\n  \"serial\": 9,"));
        assert!(text.ends_with("}\n"));
    }
}
