//! Opaque API tokens: random, shown once, stored as SHA-256, compared in constant time.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Every token starts with this, so secret scanners can recognise leaked Terrace tokens.
pub const PREFIX: &str = "trc_";

/// `N` bytes from the system's secure random source.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut raw = [0u8; N];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(raw)
}

/// 32 random bytes, base64url: for codes, CSRF tokens and invitations.
pub fn random_secret() -> anyhow::Result<String> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A new token secret: the prefix and 32 random bytes, base64url.
pub fn mint() -> anyhow::Result<String> {
    Ok(format!("{PREFIX}{}", random_secret()?))
}

/// The stored form of a token. The secret has 256 bits of entropy, so a fast hash suffices.
pub fn hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Constant-time equality of two stored hashes.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_are_unique_and_prefixed() {
        let a = mint().unwrap();
        let b = mint().unwrap();
        assert!(a.starts_with(PREFIX));
        assert_ne!(a, b);
        assert_eq!(a.len(), PREFIX.len() + 43);
    }

    #[test]
    fn hashes_match_only_for_the_same_token() {
        assert!(hashes_match(&hash("trc_a"), &hash("trc_a")));
        assert!(!hashes_match(&hash("trc_a"), &hash("trc_b")));
    }
}
