//! Terraform's lock info JSON, as the http backend sends it on LOCK and UNLOCK.

use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest lock body accepted; Terraform's are a few hundred bytes.
pub const MAX_LOCK_BODY: u64 = 64 * 1024;

/// The fields Terrace reads. The body itself is stored byte for byte and returned on
/// conflict, because Terraform parses the holder's info from it.
#[derive(Debug, Deserialize)]
pub struct LockInfo {
    /// Go marshals the struct with its field names, so the key is `ID`.
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Who", default)]
    pub who: String,
    #[serde(rename = "Operation", default)]
    pub operation: String,
}

impl LockInfo {
    /// Parses a LOCK body; the ID is required.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let info: LockInfo = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("lock info is not valid JSON: {e}")))?;
        if info.id.trim().is_empty() {
            return Err(Error::invalid("lock info has an empty ID"));
        }
        if info.id.len() > 256 {
            return Err(Error::invalid("lock ID is longer than 256 characters"));
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_lock_bodies_parse() {
        let body = br#"{"ID":"e23629ff-dcc3-ad8e-a002-beefc9ef8d41","Operation":"OperationTypePlan","Info":"","Who":"root@vm","Version":"1.0.3","Created":"2026-11-25T19:27:50.207910831Z","Path":""}"#;
        let info = LockInfo::parse(body).unwrap();
        assert_eq!(info.id, "e23629ff-dcc3-ad8e-a002-beefc9ef8d41");
        assert_eq!(info.who, "root@vm");
    }

    #[test]
    fn bodies_without_an_id_are_refused() {
        assert!(LockInfo::parse(br#"{"ID":""}"#).is_err());
        assert!(LockInfo::parse(b"not json").is_err());
        assert!(LockInfo::parse(br#"{"Who":"x"}"#).is_err());
    }
}
