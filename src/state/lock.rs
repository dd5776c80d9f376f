//! Terraform's lock info JSON, as the http backend sends it on LOCK and UNLOCK.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest lock body accepted; Terraform's are a few hundred bytes.
pub const MAX_LOCK_BODY: u64 = 64 * 1024;

/// Longest lock lease accepted: a year.
const MAX_LEASE_SECONDS: u64 = 365 * 24 * 3600;

/// Parses a lock lease setting such as `2h` into whole seconds.
pub fn parse_lease(text: &str) -> Result<i64> {
    let bad = || Error::invalid("lock_lease must be a duration such as 30m or 2h, from 1s to 365d");
    let duration = humantime::parse_duration(text).map_err(|_| bad())?;
    if duration.subsec_nanos() != 0 || duration.as_secs() == 0 {
        return Err(bad());
    }
    if duration.as_secs() > MAX_LEASE_SECONDS {
        return Err(bad());
    }
    i64::try_from(duration.as_secs()).map_err(|_| bad())
}

/// When a lock last renewed at `renewed_at` goes stale; `None` without a lease.
pub fn lease_expires_at(
    renewed_at: DateTime<Utc>,
    lease_seconds: Option<i64>,
) -> Option<DateTime<Utc>> {
    renewed_at.checked_add_signed(chrono::Duration::try_seconds(lease_seconds?)?)
}

/// Stale: under a lease that ran out without a write or renewal.
pub fn is_stale(renewed_at: DateTime<Utc>, lease_seconds: Option<i64>, now: DateTime<Utc>) -> bool {
    lease_expires_at(renewed_at, lease_seconds).is_some_and(|expires| expires < now)
}

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
    fn leases_parse_to_whole_seconds() {
        assert_eq!(parse_lease("2h").unwrap(), 7200);
        assert_eq!(parse_lease("1s").unwrap(), 1);
        for bad in ["", "0s", "500ms", "1.5s", "soon", "400d"] {
            assert!(parse_lease(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_lock_is_stale_only_under_a_lease_that_ran_out() {
        let renewed = Utc::now() - chrono::Duration::seconds(10);
        assert!(!is_stale(renewed, None, Utc::now()));
        assert!(!is_stale(renewed, Some(60), Utc::now()));
        assert!(is_stale(renewed, Some(5), Utc::now()));
    }

    #[test]
    fn bodies_without_an_id_are_refused() {
        assert!(LockInfo::parse(br#"{"ID":""}"#).is_err());
        assert!(LockInfo::parse(b"not json").is_err());
        assert!(LockInfo::parse(br#"{"Who":"x"}"#).is_err());
    }
}
