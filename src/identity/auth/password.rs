//! Password hashing with argon2id (the crate's default parameters, OWASP's minimum).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{Error, Result};

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 1024;

/// Checks the length rules users are told about.
pub fn validate(password: &str) -> Result<()> {
    if password.chars().count() < MIN_LEN {
        return Err(Error::invalid(format!(
            "password must be at least {MIN_LEN} characters"
        )));
    }
    if password.len() > MAX_LEN {
        return Err(Error::invalid(format!(
            "password must be at most {MAX_LEN} bytes"
        )));
    }
    Ok(())
}

/// The PHC string to store.
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// Verifies `password` against a stored hash. With no hash (unknown user, pending invitation)
/// a dummy hash is verified instead, so the answer takes as long either way.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("terrace-dummy-password").ok());
    let (candidate, real) = match stored {
        Some(hash) => (hash, true),
        None => match dummy {
            Some(hash) => (hash.as_str(), false),
            None => return false,
        },
    };
    let Ok(parsed) = PasswordHash::new(candidate) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

/// [`hash`] off the async workers: argon2 is deliberately slow.
pub async fn hash_async(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| Error::Internal(e.into()))?
}

/// [`verify`] off the async workers.
pub async fn verify_async(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify(&password, stored.as_deref()))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse", Some(&stored)));
        assert!(!verify("wrong horse", Some(&stored)));
        assert!(!verify("terrace-dummy-password", None));
        assert!(validate("short").is_err());
        assert!(validate("long enough").is_ok());
    }
}
