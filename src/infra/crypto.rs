//! Envelope encryption of every blob (AES-256-GCM, ring).
//!
//! Each blob gets a random data key. The data key is wrapped by a master key and stored in
//! the metadata row next to the master key's id, so rotating the master key re-wraps rows and
//! never rewrites an immutable object. Master keys never reach the blob store or the database.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Magic prefix of every encrypted object, so a plaintext object is never mistaken for one.
const MAGIC: &[u8; 4] = b"TRC1";
/// Bytes before the ciphertext: magic and nonce.
pub const HEADER_LEN: usize = MAGIC.len() + NONCE_LEN;
/// Bytes after the ciphertext: the GCM tag.
pub const TAG_LEN: usize = 16;

/// The master keys this process knows: one current (wraps new data keys) and older ones that
/// can still unwrap.
pub struct Keyring {
    current: MasterKey,
    previous: HashMap<String, MasterKey>,
    rng: SystemRandom,
}

struct MasterKey {
    id: String,
    key: LessSafeKey,
    /// Signs short-lived download links; derived, so replicas sharing the master key agree.
    link_key: ring::hmac::Key,
    /// Source of further derived secrets (login-token signing keys).
    prk: ring::hkdf::Prk,
}

/// Output length for HKDF expansion into a plain byte array.
struct SecretLen;

impl ring::hkdf::KeyType for SecretLen {
    fn len(&self) -> usize {
        32
    }
}

/// Where a blob's data key is: wrapped by master key `key_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub key_id: String,
    pub wrapped_key: Vec<u8>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl MasterKey {
    fn from_bytes(raw: &[u8]) -> anyhow::Result<Self> {
        if raw.len() != 32 {
            bail!("an encryption key must be 32 bytes (base64 of 32 random bytes)");
        }
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"terrace-key-id:".as_slice(), raw].concat(),
        );
        let id = hex::encode(&digest.as_ref()[..8]);
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, raw).map_err(|_| anyhow!("invalid AES key"))?,
        );
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"terrace").extract(raw);
        let link_key: ring::hmac::Key = prk
            .expand(&[b"download-links"], ring::hmac::HMAC_SHA256)
            .map_err(|_| anyhow!("key derivation failed"))?
            .into();
        Ok(MasterKey {
            id,
            key,
            link_key,
            prk,
        })
    }

    fn from_base64(text: &str) -> anyhow::Result<Self> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .context("encryption key is not valid base64")?;
        Self::from_bytes(&raw)
    }
}

/// Base64 of 32 fresh random bytes: a new master key.
/// Lower-case hex SHA-256 of `bytes`, as recorded for every blob and package.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

pub fn generate_key() -> anyhow::Result<String> {
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| anyhow!("no randomness"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

impl Keyring {
    /// Builds a keyring from base64 keys: `current` and any number of `previous` ones.
    pub fn from_base64(current: &str, previous: &[String]) -> anyhow::Result<Self> {
        let current = MasterKey::from_base64(current)?;
        let mut others = HashMap::new();
        for text in previous {
            let key = MasterKey::from_base64(text)?;
            if key.id != current.id {
                others.insert(key.id.clone(), key);
            }
        }
        Ok(Keyring {
            current,
            previous: others,
            rng: SystemRandom::new(),
        })
    }

    /// Id of the key that wraps new data keys.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Whether master key `id` is configured (current or previous).
    pub fn knows(&self, id: &str) -> bool {
        self.current.id == id || self.previous.contains_key(id)
    }

    /// The HMAC key for signed download links.
    pub fn link_key(&self) -> &ring::hmac::Key {
        &self.current.link_key
    }

    /// A secret derived from master key `key_id` for `purpose`; replicas sharing the key
    /// derive the same one, and nothing secret needs storing.
    pub fn derive_secret(&self, key_id: &str, purpose: &[u8]) -> anyhow::Result<[u8; 32]> {
        let mut out = [0u8; 32];
        self.master(key_id)?
            .prk
            .expand(&[b"derived:", purpose], SecretLen)
            .and_then(|okm| okm.fill(&mut out))
            .map_err(|_| anyhow!("key derivation failed"))?;
        Ok(out)
    }

    fn master(&self, id: &str) -> anyhow::Result<&MasterKey> {
        if id == self.current.id {
            return Ok(&self.current);
        }
        self.previous
            .get(id)
            .ok_or_else(|| anyhow!("master key {id} is not configured"))
    }

    fn nonce(&self) -> anyhow::Result<[u8; NONCE_LEN]> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow!("no randomness"))?;
        Ok(nonce)
    }

    /// Encrypts in place. `buf` holds `HEADER_LEN` bytes of room followed by the plaintext;
    /// afterwards it is the complete object (header, ciphertext, tag). `aad` binds the object
    /// to its metadata row so objects cannot be swapped.
    pub fn seal(&self, buf: &mut Vec<u8>, aad: &[u8]) -> anyhow::Result<Envelope> {
        if buf.len() < HEADER_LEN {
            bail!("buffer lacks room for the header");
        }
        let mut data_key = [0u8; 32];
        self.rng
            .fill(&mut data_key)
            .map_err(|_| anyhow!("no randomness"))?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &data_key).map_err(|_| anyhow!("invalid data key"))?,
        );
        let nonce = self.nonce()?;
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[HEADER_LEN..],
            )
            .map_err(|_| anyhow!("encryption failed"))?;
        buf[..MAGIC.len()].copy_from_slice(MAGIC);
        buf[MAGIC.len()..HEADER_LEN].copy_from_slice(&nonce);
        buf.extend_from_slice(tag.as_ref());
        Ok(Envelope {
            key_id: self.current.id.clone(),
            wrapped_key: self.wrap(&self.current, &data_key, aad)?,
        })
    }

    /// Decrypts an object produced by [`Keyring::seal`]; returns the plaintext's range in `buf`.
    pub fn open(
        &self,
        envelope: &Envelope,
        buf: &mut [u8],
        aad: &[u8],
    ) -> anyhow::Result<std::ops::Range<usize>> {
        if buf.len() < HEADER_LEN + TAG_LEN || &buf[..MAGIC.len()] != MAGIC {
            bail!("object is not an encrypted blob");
        }
        let data_key = self.unwrap(envelope, aad)?;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &data_key).map_err(|_| anyhow!("invalid data key"))?,
        );
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[MAGIC.len()..HEADER_LEN]);
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf[HEADER_LEN..],
            )
            .map_err(|_| anyhow!("blob failed authentication (corrupt or wrong key)"))?;
        let len = plain.len();
        Ok(HEADER_LEN..HEADER_LEN + len)
    }

    /// Re-wraps a data key under the current master key (key rotation).
    pub fn rewrap(&self, envelope: &Envelope, aad: &[u8]) -> anyhow::Result<Envelope> {
        let data_key = self.unwrap(envelope, aad)?;
        Ok(Envelope {
            key_id: self.current.id.clone(),
            wrapped_key: self.wrap(&self.current, &data_key, aad)?,
        })
    }

    fn wrap(&self, master: &MasterKey, data_key: &[u8; 32], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce = self.nonce()?;
        let mut out = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(data_key);
        let tag = master
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| anyhow!("key wrap failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn unwrap(&self, envelope: &Envelope, aad: &[u8]) -> anyhow::Result<[u8; 32]> {
        let master = self.master(&envelope.key_id)?;
        if envelope.wrapped_key.len() != NONCE_LEN + 32 + TAG_LEN {
            bail!("wrapped key has the wrong length");
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&envelope.wrapped_key[..NONCE_LEN]);
        let mut sealed = envelope.wrapped_key[NONCE_LEN..].to_vec();
        let plain = master
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| anyhow!("data key failed to unwrap"))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(plain);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &str, previous: &[&str]) -> Keyring {
        let previous: Vec<String> = previous.iter().map(|s| s.to_string()).collect();
        Keyring::from_base64(current, &previous).unwrap()
    }

    fn sealed(keys: &Keyring, plain: &[u8], aad: &[u8]) -> (Vec<u8>, Envelope) {
        let mut buf = vec![0u8; HEADER_LEN];
        buf.extend_from_slice(plain);
        let env = keys.seal(&mut buf, aad).unwrap();
        (buf, env)
    }

    #[test]
    fn seal_then_open_returns_the_plaintext_and_hides_it() {
        let keys = ring(&generate_key().unwrap(), &[]);
        let (mut buf, env) = sealed(
            &keys,
            b"{\"serial\": 1, \"secret\": \"hunter2\"}",
            b"blob-1",
        );

        assert!(!buf.windows(7).any(|w| w == b"hunter2"));
        let range = keys.open(&env, &mut buf, b"blob-1").unwrap();
        assert_eq!(&buf[range], b"{\"serial\": 1, \"secret\": \"hunter2\"}");
    }

    #[test]
    fn open_fails_for_another_objects_aad_or_a_flipped_bit() {
        let keys = ring(&generate_key().unwrap(), &[]);
        let (buf, env) = sealed(&keys, b"state", b"blob-1");

        assert!(keys.open(&env, &mut buf.clone(), b"blob-2").is_err());
        let mut flipped = buf.clone();
        flipped[HEADER_LEN] ^= 1;
        assert!(keys.open(&env, &mut flipped, b"blob-1").is_err());
    }

    #[test]
    fn rotation_rewraps_so_the_old_key_can_be_dropped() {
        let old = generate_key().unwrap();
        let new = generate_key().unwrap();
        let before = ring(&old, &[]);
        let (buf, env) = sealed(&before, b"state", b"b");

        let during = ring(&new, &[&old]);
        let rewrapped = during.rewrap(&env, b"b").unwrap();
        let after = ring(&new, &[]);

        assert_ne!(rewrapped.key_id, env.key_id);
        assert!(after.open(&env, &mut buf.clone(), b"b").is_err());
        let mut copy = buf.clone();
        let range = after.open(&rewrapped, &mut copy, b"b").unwrap();
        assert_eq!(&copy[range], b"state");
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        assert!(Keyring::from_base64("c2hvcnQ=", &[]).is_err());
    }
}
