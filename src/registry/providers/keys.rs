//! OpenPGP public keys and detached signatures, with the rules Terraform 1.0.3 imposes.
//!
//! Terraform before 1.6 reads keys with golang.org/x/crypto/openpgp, which cannot parse EdDSA
//! keys: one such key anywhere in a download's `signing_keys` fails the check for every key.
//! So only v4 keys whose primary key and subkeys are all RSA are accepted. Terraform also
//! needs a binary (not armored) signature carrying an issuer key ID, made by a key allowed to
//! sign.

use std::io::Cursor;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, KeyVersion, VerifyingKey};

use crate::error::{Error, Result};

/// Largest ASCII-armored public key accepted.
pub const MAX_ARMOR_SIZE: usize = 64 * 1024;

/// Largest detached signature accepted.
pub const MAX_SIGNATURE_SIZE: usize = 16 * 1024;

/// A parsed, acceptable public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// The primary key's ID: 16 upper-case hex digits, as Terraform prints it.
    pub key_id: String,
    pub fingerprint: String,
}

/// Upper-case hex of a key ID.
pub fn key_id_hex(id: &pgp::types::KeyId) -> String {
    hex::encode_upper(id.as_ref())
}

fn algorithm_name(algorithm: PublicKeyAlgorithm) -> String {
    match algorithm {
        PublicKeyAlgorithm::EdDSALegacy | PublicKeyAlgorithm::Ed25519 => "EdDSA".into(),
        PublicKeyAlgorithm::ECDSA => "ECDSA".into(),
        PublicKeyAlgorithm::ECDH | PublicKeyAlgorithm::X25519 => "ECDH".into(),
        PublicKeyAlgorithm::DSA => "DSA".into(),
        other => format!("{other:?}"),
    }
}

fn is_rsa(algorithm: PublicKeyAlgorithm) -> bool {
    matches!(
        algorithm,
        PublicKeyAlgorithm::RSA | PublicKeyAlgorithm::RSASign | PublicKeyAlgorithm::RSAEncrypt
    )
}

/// Parses one ASCII-armored public key and checks that Terraform 1.0.3 can use it.
pub fn parse_public_key(armor: &str) -> Result<PublicKey> {
    if armor.len() > MAX_ARMOR_SIZE {
        return Err(Error::invalid(format!(
            "ascii_armor is larger than {MAX_ARMOR_SIZE} bytes"
        )));
    }
    if !armor.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        return Err(Error::invalid(
            "ascii_armor must be an ASCII-armored public key \
             (-----BEGIN PGP PUBLIC KEY BLOCK-----, e.g. from gpg --armor --export KEYID)",
        ));
    }
    let (mut keys, _) = SignedPublicKey::from_armor_many(Cursor::new(armor.as_bytes()))
        .map_err(|e| Error::invalid(format!("ascii_armor is not a readable OpenPGP key ({e})")))?;
    let key = keys
        .next()
        .ok_or_else(|| Error::invalid("ascii_armor holds no public key"))?
        .map_err(|e| Error::invalid(format!("ascii_armor is not a readable OpenPGP key ({e})")))?;
    if keys.next().is_some() {
        return Err(Error::invalid(
            "ascii_armor holds more than one key; register them one at a time",
        ));
    }
    if key.version() != KeyVersion::V4 {
        return Err(Error::invalid(
            "only OpenPGP v4 keys can be used: Terraform cannot read other key versions",
        ));
    }
    let mut algorithms = vec![("primary key", key.algorithm())];
    for subkey in &key.public_subkeys {
        algorithms.push(("subkey", subkey.key.algorithm()));
    }
    if let Some((which, algorithm)) = algorithms.iter().find(|(_, a)| !is_rsa(*a)) {
        return Err(Error::invalid(format!(
            "the key's {which} uses {}; only RSA keys are accepted because Terraform before \
             1.6 cannot read EdDSA or ECDSA keys (one such key breaks signature checks for all \
             keys). Create one with: gpg --quick-gen-key 'Name <email>' rsa4096 sign never",
            algorithm_name(*algorithm)
        )));
    }
    Ok(PublicKey {
        key_id: key_id_hex(&key.legacy_key_id()),
        fingerprint: hex::encode_upper(key.fingerprint().as_bytes()),
    })
}

/// Parses a stored armored key (already checked when it was registered).
pub fn parse_stored(armor: &str) -> Option<SignedPublicKey> {
    SignedPublicKey::from_armor_single(Cursor::new(armor.as_bytes()))
        .ok()
        .map(|(key, _)| key)
}

/// Key flags of a signature, if it states any.
fn stated_flags(sig: &Signature) -> Option<pgp::packet::KeyFlags> {
    sig.config()?
        .hashed_subpackets()
        .find_map(|p| match &p.data {
            SubpacketData::KeyFlags(flags) => Some(flags.clone()),
            _ => None,
        })
}

/// Whether any of `sigs` lets the key sign (as x/crypto/openpgp decides: no flags = any use).
fn may_sign<'a>(sigs: impl IntoIterator<Item = &'a Signature>) -> bool {
    sigs.into_iter()
        .any(|sig| stated_flags(sig).is_none_or(|flags| flags.sign()))
}

/// Checks a detached signature over `data` against `keys` and returns the key ID of the
/// (primary) key that made it, or a message saying why Terraform would refuse it.
pub fn verify_detached<'a>(
    signature: &[u8],
    data: &[u8],
    keys: impl IntoIterator<Item = &'a SignedPublicKey>,
) -> Result<String> {
    if signature.len() > MAX_SIGNATURE_SIZE {
        return Err(Error::invalid("the signature file is too large"));
    }
    if signature.starts_with(b"-----BEGIN") || signature.first().is_some_and(|b| b & 0x80 == 0) {
        return Err(Error::invalid(
            "SHA256SUMS.sig is ASCII-armored; Terraform only accepts a binary detached \
             signature (gpg --detach-sign, without --armor)",
        ));
    }
    let parsed = DetachedSignature::from_bytes(Cursor::new(signature))
        .map_err(|e| Error::invalid(format!("SHA256SUMS.sig is not an OpenPGP signature ({e})")))?;
    let sig = &parsed.signature;
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(Error::invalid(
            "SHA256SUMS.sig is not a data signature over SHA256SUMS",
        ));
    }
    let issuers: Vec<String> = sig.issuer_key_id().into_iter().map(key_id_hex).collect();
    if issuers.is_empty() {
        return Err(Error::invalid(
            "SHA256SUMS.sig names no issuer key ID, which Terraform needs to find the key",
        ));
    }
    for key in keys {
        let primary_id = key_id_hex(&key.legacy_key_id());
        if issuers.contains(&primary_id) {
            let self_sigs = key
                .details
                .users
                .iter()
                .flat_map(|u| u.signatures.iter())
                .chain(key.details.direct_signatures.iter());
            if !may_sign(self_sigs) {
                return Err(Error::invalid(format!(
                    "key {primary_id} is not allowed to sign (certify-only); sign with its \
                     signing subkey"
                )));
            }
            return check(&parsed, &key.primary_key, data, primary_id);
        }
        for subkey in &key.public_subkeys {
            if issuers.contains(&key_id_hex(&subkey.key.legacy_key_id())) {
                if !may_sign(&subkey.signatures) {
                    return Err(Error::invalid(format!(
                        "subkey {} of key {primary_id} is not allowed to sign",
                        key_id_hex(&subkey.key.legacy_key_id())
                    )));
                }
                return check(&parsed, &subkey.key, data, primary_id);
            }
        }
    }
    Err(Error::invalid(format!(
        "SHA256SUMS is signed by key {}, which is not registered for this namespace; \
         register it with POST /api/v1/orgs/{{org}}/gpg-keys first",
        issuers.join(", ")
    )))
}

fn check(
    parsed: &DetachedSignature,
    key: &impl VerifyingKey,
    data: &[u8],
    primary_id: String,
) -> Result<String> {
    parsed.verify(key, data).map_err(|_| {
        Error::invalid(format!(
            "the signature by key {primary_id} does not match SHA256SUMS (wrong file, or the \
             file changed after signing)"
        ))
    })?;
    Ok(primary_id)
}
