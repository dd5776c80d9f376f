//! Envelope encryption of every blob (AES-256-GCM).
//!
//! Each blob gets a random data key. The data key is wrapped by a master key and stored in
//! the metadata row next to the master key's id, so rotating the master key re-wraps rows and
//! never rewrites an immutable object. Master keys never reach the blob store or the database.
//!
//! Two object formats, told apart by their magic:
//! - `TRC2` (written today): the STREAM construction (RustCrypto `aead::stream`, big-endian
//!   32-bit counter and last-segment flag in the nonce) over segments of [`SEGMENT`] bytes, so
//!   an object is encrypted and decrypted as it flows, in constant memory, and truncating,
//!   reordering or splicing segments fails authentication. Layout: magic, 7-byte nonce prefix,
//!   then each segment's ciphertext followed by its tag.
//! - `TRC1` (written before): one AES-256-GCM message (magic, nonce, ciphertext, tag); still read.

use std::collections::HashMap;

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::{Aes256Gcm, KeyInit};
use anyhow::{Context, anyhow, bail};
use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Magic prefix of a whole-message object, so a plaintext object is never mistaken for one.
const MAGIC: &[u8; 4] = b"TRC1";
/// Magic prefix of a segmented (streamed) object.
const MAGIC_STREAM: &[u8; 4] = b"TRC2";
/// Plaintext bytes per segment of a `TRC2` object.
pub const SEGMENT: usize = 64 * 1024;
/// Random nonce prefix of a `TRC2` object (12-byte nonce less STREAM's counter and flag).
const PREFIX_LEN: usize = 7;
/// Bytes before the first segment of a `TRC2` object.
pub const STREAM_HEADER_LEN: usize = MAGIC_STREAM.len() + PREFIX_LEN;
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

    /// Starts a `TRC2` object under a fresh data key: feed the plaintext to the [`Sealer`].
    pub fn sealer(&self, aad: &[u8]) -> anyhow::Result<(Sealer, Envelope)> {
        let mut data_key = [0u8; 32];
        self.rng
            .fill(&mut data_key)
            .map_err(|_| anyhow!("no randomness"))?;
        let mut prefix = [0u8; PREFIX_LEN];
        self.rng
            .fill(&mut prefix)
            .map_err(|_| anyhow!("no randomness"))?;
        let cipher =
            Aes256Gcm::new_from_slice(&data_key).map_err(|_| anyhow!("invalid data key"))?;
        let mut out = Vec::with_capacity(STREAM_HEADER_LEN);
        out.extend_from_slice(MAGIC_STREAM);
        out.extend_from_slice(&prefix);
        let sealer = Sealer {
            encryptor: EncryptorBE32::from_aead(cipher, prefix.as_slice().into()),
            aad: aad.to_vec(),
            pending: Vec::with_capacity(SEGMENT + TAG_LEN),
            header: Some(out),
        };
        let envelope = Envelope {
            key_id: self.current.id.clone(),
            wrapped_key: self.wrap(&self.current, &data_key, aad)?,
        };
        Ok((sealer, envelope))
    }

    /// Starts decrypting an object given its first bytes (at least [`STREAM_HEADER_LEN`] of
    /// them, or the whole object if shorter); `None` when it is not a `TRC2` object.
    pub fn opener(
        &self,
        envelope: &Envelope,
        head: &[u8],
        aad: &[u8],
    ) -> anyhow::Result<Option<Opener>> {
        if head.len() < STREAM_HEADER_LEN || &head[..MAGIC_STREAM.len()] != MAGIC_STREAM {
            return Ok(None);
        }
        let data_key = self.unwrap(envelope, aad)?;
        let cipher =
            Aes256Gcm::new_from_slice(&data_key).map_err(|_| anyhow!("invalid data key"))?;
        let prefix = &head[MAGIC_STREAM.len()..STREAM_HEADER_LEN];
        Ok(Some(Opener {
            decryptor: DecryptorBE32::from_aead(cipher, prefix.into()),
            aad: aad.to_vec(),
            pending: Vec::with_capacity(SEGMENT + TAG_LEN),
            skip: STREAM_HEADER_LEN,
        }))
    }

    /// Decrypts a whole object of either format.
    pub fn open_object(
        &self,
        envelope: &Envelope,
        object: Vec<u8>,
        aad: &[u8],
    ) -> anyhow::Result<bytes::Bytes> {
        match self.opener(envelope, &object, aad)? {
            Some(mut opener) => {
                let mut plain = Vec::with_capacity(object.len());
                opener.update(&object, &mut plain)?;
                opener.finish(&mut plain)?;
                Ok(plain.into())
            }
            None => {
                let mut object = object;
                let range = self.open(envelope, &mut object, aad)?;
                Ok(bytes::Bytes::from(object).slice(range))
            }
        }
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

/// Encrypts a `TRC2` object as its plaintext arrives. A full segment is sealed only once a
/// byte beyond it arrives, because the last segment is sealed differently.
pub struct Sealer {
    encryptor: EncryptorBE32<Aes256Gcm>,
    aad: Vec<u8>,
    pending: Vec<u8>,
    header: Option<Vec<u8>>,
}

impl Sealer {
    /// Adds plaintext; appends whatever ciphertext is complete to `out`.
    pub fn update(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
        while !plain.is_empty() {
            if self.pending.len() == SEGMENT {
                self.encryptor
                    .encrypt_next_in_place(&self.aad, &mut self.pending)
                    .map_err(|_| anyhow!("encryption failed"))?;
                out.extend_from_slice(&self.pending);
                self.pending.clear();
            }
            let take = plain.len().min(SEGMENT - self.pending.len());
            self.pending.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
        }
        Ok(())
    }

    /// Seals the last segment (possibly empty) into `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
        self.encryptor
            .encrypt_last_in_place(&self.aad, &mut self.pending)
            .map_err(|_| anyhow!("encryption failed"))?;
        out.extend_from_slice(&self.pending);
        Ok(())
    }
}

/// Decrypts a `TRC2` object as its bytes arrive (header included), mirroring [`Sealer`].
pub struct Opener {
    decryptor: DecryptorBE32<Aes256Gcm>,
    aad: Vec<u8>,
    pending: Vec<u8>,
    /// Header bytes still to pass over.
    skip: usize,
}

impl Opener {
    /// Adds object bytes; appends whatever plaintext is complete and authentic to `out`.
    pub fn update(&mut self, mut object: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        let skipped = self.skip.min(object.len());
        self.skip -= skipped;
        object = &object[skipped..];
        while !object.is_empty() {
            if self.pending.len() == SEGMENT + TAG_LEN {
                self.decryptor
                    .decrypt_next_in_place(&self.aad, &mut self.pending)
                    .map_err(|_| anyhow!("blob failed authentication (corrupt or wrong key)"))?;
                out.extend_from_slice(&self.pending);
                self.pending.clear();
            }
            let take = object.len().min(SEGMENT + TAG_LEN - self.pending.len());
            self.pending.extend_from_slice(&object[..take]);
            object = &object[take..];
        }
        Ok(())
    }

    /// Checks the last segment and appends its plaintext; fails on a truncated object.
    pub fn finish(mut self, out: &mut Vec<u8>) -> anyhow::Result<()> {
        if self.skip > 0 || self.pending.len() < TAG_LEN {
            bail!("encrypted object is truncated");
        }
        self.decryptor
            .decrypt_last_in_place(&self.aad, &mut self.pending)
            .map_err(|_| anyhow!("blob failed authentication (corrupt, truncated or wrong key)"))?;
        out.extend_from_slice(&self.pending);
        Ok(())
    }
}

/// Plaintext length of a `TRC2` object of `object_len` bytes.
pub fn stream_plaintext_len(object_len: u64) -> Option<u64> {
    let body = object_len.checked_sub(STREAM_HEADER_LEN as u64)?;
    let segment = (SEGMENT + TAG_LEN) as u64;
    // Every segment carries a tag; the last one may be short (or hold only its tag).
    let segments = body.div_ceil(segment).max(1);
    body.checked_sub(segments * TAG_LEN as u64)
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

    /// Seals `plain` fed in pieces of `feed` bytes.
    fn streamed(keys: &Keyring, plain: &[u8], feed: usize, aad: &[u8]) -> (Vec<u8>, Envelope) {
        let (mut sealer, env) = keys.sealer(aad).unwrap();
        let mut out = Vec::new();
        for piece in plain.chunks(feed.max(1)) {
            sealer.update(piece, &mut out).unwrap();
        }
        sealer.finish(&mut out).unwrap();
        (out, env)
    }

    fn opened_in_pieces(
        keys: &Keyring,
        env: &Envelope,
        object: &[u8],
        feed: usize,
        aad: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let mut opener = keys.opener(env, object, aad)?.expect("a TRC2 object");
        let mut out = Vec::new();
        for piece in object.chunks(feed) {
            opener.update(piece, &mut out)?;
        }
        opener.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn streamed_objects_round_trip_whatever_the_sizes_and_pieces() {
        let keys = ring(&generate_key().unwrap(), &[]);
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for feed in [1000, SEGMENT, 7 * SEGMENT] {
                let (object, env) = streamed(&keys, &plain, feed, b"blob-1");
                assert_eq!(
                    stream_plaintext_len(object.len() as u64),
                    Some(len as u64),
                    "len {len}"
                );
                for read in [1, 17, SEGMENT + TAG_LEN, object.len().max(1)] {
                    let got = opened_in_pieces(&keys, &env, &object, read, b"blob-1").unwrap();
                    assert!(got == plain, "len {len}, feed {feed}, read {read}");
                }
                let whole = keys.open_object(&env, object, b"blob-1").unwrap();
                assert!(whole == plain);
            }
        }
    }

    #[test]
    fn streamed_objects_refuse_truncation_reordering_and_flipped_bits() {
        let keys = ring(&generate_key().unwrap(), &[]);
        let plain = vec![5u8; 3 * SEGMENT];
        let (object, env) = streamed(&keys, &plain, SEGMENT, b"b");
        let seg = SEGMENT + TAG_LEN;
        // Dropping the last segment leaves a "next" segment where a last one must be.
        let cut = &object[..STREAM_HEADER_LEN + 2 * seg];
        assert!(opened_in_pieces(&keys, &env, cut, 4096, b"b").is_err());
        assert!(opened_in_pieces(&keys, &env, &object[..object.len() - 1], 4096, b"b").is_err());
        let mut swapped = object.clone();
        let (a, b) = (STREAM_HEADER_LEN, STREAM_HEADER_LEN + seg);
        let first = object[a..b].to_vec();
        swapped.copy_within(b..b + seg, a);
        swapped[b..b + seg].copy_from_slice(&first);
        assert!(opened_in_pieces(&keys, &env, &swapped, 4096, b"b").is_err());
        let mut flipped = object.clone();
        flipped[STREAM_HEADER_LEN + seg + 3] ^= 1;
        assert!(opened_in_pieces(&keys, &env, &flipped, 4096, b"b").is_err());
        assert!(keys.open_object(&env, object.clone(), b"other").is_err());
        // Whole-message objects written before segmenting still open.
        let (old, old_env) = sealed(&keys, b"old state", b"b");
        assert_eq!(
            &keys.open_object(&old_env, old, b"b").unwrap()[..],
            b"old state"
        );
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        assert!(Keyring::from_base64("c2hvcnQ=", &[]).is_err());
    }
}
