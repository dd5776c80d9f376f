//! Server-side signing: a namespace may let Terrace sign SHA256SUMS with an RSA key Terrace
//! generates on first use and keeps encrypted as a secret blob. Its public half is registered
//! as one of the namespace's GPG keys, so downloads list it like any uploaded key.

use std::io::Cursor;

use chrono::Utc;
use pgp::composed::{
    ArmorOptions, Deserializable, DetachedSignature, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, Password, Timestamp};

use super::keys::key_id_hex;
use super::store::{self, NewBlob, NewKey};
use crate::error::{Error, Result};
use crate::infra::blob::{BlobKey, BlobKind, PlainBuffer, StoredBlob};
use crate::infra::crypto::Envelope;
use crate::registry::Ctx;
use crate::registry::namespace::Namespace;

/// RSA modulus size of generated keys. Generation happens once per namespace, off the async
/// runtime: well under a second in release builds, a few seconds in debug builds (the tests).
/// Terraform accepts any RSA size.
pub const KEY_BITS: u32 = 2048;

/// How a generated key is labelled in `gpg_keys.source`.
pub const SOURCE: &str = "terrace";

/// A binary detached signature (what Terraform wants in `…_SHA256SUMS.sig`) over `data`,
/// made with the primary key of `key`.
pub fn sign_detached(key: &SignedSecretKey, data: &[u8]) -> Result<Vec<u8>> {
    let signer = &key.primary_key;
    let mut config = SignatureConfig::v4(
        SignatureType::Binary,
        signer.algorithm(),
        HashAlgorithm::Sha256,
    );
    let subpacket = |data| Subpacket::regular(data).map_err(internal);
    config.hashed_subpackets = vec![
        subpacket(SubpacketData::SignatureCreationTime(Timestamp::now()))?,
        subpacket(SubpacketData::IssuerFingerprint(signer.fingerprint()))?,
    ];
    // x/crypto/openpgp (Terraform 1.0.3) finds the key by this issuer key ID.
    config.unhashed_subpackets = vec![subpacket(SubpacketData::IssuerKeyId(
        signer.legacy_key_id(),
    ))?];
    let signature = config
        .sign(signer, &Password::empty(), data)
        .map_err(internal)?;
    DetachedSignature::new(signature)
        .to_bytes()
        .map_err(internal)
}

fn internal(err: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("signing: {err}"))
}

/// A new RSA signing key for namespace `name`. CPU-bound: call it off the async runtime.
pub fn generate(name: &str) -> Result<SignedSecretKey> {
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Rsa(KEY_BITS))
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(format!("Terrace provider signing key for {name}"))
        .preferred_hash_algorithms([HashAlgorithm::Sha256].into_iter().collect())
        .build()
        .map_err(internal)?;
    params.generate(rand::rngs::OsRng).map_err(internal)
}

/// The namespace's signing key, generated (and its public key registered) on first use.
pub async fn namespace_key(app: &Ctx, ns: &Namespace) -> Result<SignedSecretKey> {
    if let Some(key) = load(app, ns.org_id).await? {
        return Ok(key);
    }
    let name = ns.name.clone();
    let secret = tokio::task::spawn_blocking(move || generate(&name))
        .await
        .map_err(internal)??;
    let armored_secret = secret
        .to_armored_string(ArmorOptions::default())
        .map_err(internal)?;
    let public = SignedPublicKey::from(secret.clone());
    let armored_public = public
        .to_armored_string(ArmorOptions::default())
        .map_err(internal)?;
    let key_id = key_id_hex(&public.legacy_key_id());
    let fingerprint = hex::encode_upper(public.fingerprint().as_bytes());

    let plain = PlainBuffer::from_plaintext(armored_secret.as_bytes());
    let size = plain.len() as i64;
    let sha256 = crate::infra::crypto::sha256_hex(armored_secret.as_bytes());
    let blob = app
        .blobs
        .put(BlobKey::new(BlobKind::Secret, ns.org_id), plain)
        .await?;
    let new_blob = NewBlob {
        blob: &blob,
        size,
        sha256: &sha256,
    };
    let new_key = NewKey {
        org_id: ns.org_id,
        key_id: &key_id,
        fingerprint: &fingerprint,
        ascii_armor: &armored_public,
        source: SOURCE,
        created_by: "system",
    };
    match store::insert_signing_key(&app.db, &new_blob, &new_key, Utc::now()).await {
        Ok(true) => {
            tracing::info!(namespace = %ns.name, key_id = %key_id, "generated a signing key");
            Ok(secret)
        }
        // Another request generated one at the same time: use that one.
        Ok(false) => {
            app.blobs.discard(&blob).await;
            load(app, ns.org_id)
                .await?
                .ok_or_else(|| internal("signing key vanished"))
        }
        Err(err) => {
            app.blobs.discard_unless_committed(&blob, &err).await;
            Err(err)
        }
    }
}

async fn load(app: &Ctx, org_id: i64) -> Result<Option<SignedSecretKey>> {
    let Some(row) = store::find_signing_key(&app.db, org_id).await? else {
        return Ok(None);
    };
    let blob = StoredBlob {
        id: row.blob_id,
        object_key: row.object_key,
        envelope: Envelope {
            key_id: row.key_id_wrapped,
            wrapped_key: row.wrapped_key,
        },
    };
    let bytes = app.blobs.get(&blob).await?;
    let (key, _) =
        SignedSecretKey::from_armor_single(Cursor::new(bytes.as_ref())).map_err(internal)?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = include_str!("../../../tests/http/provider_registry/keys/signing.sec.asc");

    #[test]
    fn signatures_are_binary_v4_with_an_issuer_key_id() {
        let (key, _) = SignedSecretKey::from_string(SECRET).unwrap();
        let data = b"0000  terraform-provider-x_1.0.0_linux_amd64.zip\n";
        let sig = sign_detached(&key, data).unwrap();
        assert_ne!(sig[0] & 0x80, 0, "binary packet");
        let public = SignedPublicKey::from(key.clone());
        let signer = super::super::keys::verify_detached(&sig, data, [&public]).unwrap();
        assert_eq!(signer, key_id_hex(&key.primary_key.legacy_key_id()));
        assert!(super::super::keys::verify_detached(&sig, b"other", [&public]).is_err());
    }
}
