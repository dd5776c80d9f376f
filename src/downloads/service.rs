//! Short-lived signed download links: minted by features, checked before serving.
//!
//! Terraform sends no credentials when it downloads module archives, provider zips, SHA256SUMS
//! and signatures, so those URLs carry an expiry and an HMAC over path and expiry instead.

use base64::Engine;
use chrono::Utc;

use crate::error::{Error, Result};
use crate::infra::AppState;
use crate::infra::blob::StoredBlob;
use crate::infra::crypto::Keyring;

/// The path part of a download link for `blob_id` served as `filename`.
pub fn link_path(blob_id: &str, filename: &str) -> String {
    format!("/dl/{blob_id}/{filename}")
}

/// An absolute signed URL for a blob: `{base}/dl/{blob_id}/{filename}?expires=…&signature=…`.
pub fn signed_url(app: &AppState, base_url: &str, blob_id: &str, filename: &str) -> String {
    let path = link_path(blob_id, filename);
    format!("{base_url}{}", sign(app.blobs.keys(), &path))
}

/// The decrypted blob behind a signed link, once the link checks out.
pub async fn open(
    app: &AppState,
    blob_id: &str,
    filename: &str,
    expires: i64,
    signature: &str,
) -> Result<bytes::Bytes> {
    verify(
        app.blobs.keys(),
        &link_path(blob_id, filename),
        expires,
        signature,
    )?;
    let blob: StoredBlob = super::store::find_blob(&app.db, blob_id)
        .await?
        .ok_or(Error::NotFound("download"))?;
    app.blobs.get(&blob).await
}

/// How long a download link stays valid.
pub const LINK_TTL_SECONDS: i64 = 300;

fn mac(keys: &Keyring, path: &str, expires: i64) -> String {
    let tag = ring::hmac::sign(keys.link_key(), format!("{path}\n{expires}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// `path?expires=…&signature=…`, valid for [`LINK_TTL_SECONDS`].
pub fn sign(keys: &Keyring, path: &str) -> String {
    let expires = Utc::now().timestamp() + LINK_TTL_SECONDS;
    format!(
        "{path}?expires={expires}&signature={}",
        mac(keys, path, expires)
    )
}

/// Checks a link's signature (constant time) and expiry.
pub fn verify(keys: &Keyring, path: &str, expires: i64, signature: &str) -> Result<()> {
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Error::NotFound("download"))?;
    ring::hmac::verify(
        keys.link_key(),
        format!("{path}\n{expires}").as_bytes(),
        &tag,
    )
    .map_err(|_| Error::NotFound("download"))?;
    if expires < Utc::now().timestamp() {
        return Err(Error::NotFound("download (link expired)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::from_base64(&crate::infra::crypto::generate_key().unwrap(), &[]).unwrap()
    }

    fn parts(link: &str) -> (String, i64, String) {
        let (path, query) = link.split_once('?').unwrap();
        let mut expires = 0;
        let mut signature = String::new();
        for pair in query.split('&') {
            match pair.split_once('=').unwrap() {
                ("expires", v) => expires = v.parse().unwrap(),
                ("signature", v) => signature = v.to_string(),
                _ => {}
            }
        }
        (path.to_string(), expires, signature)
    }

    #[test]
    fn a_signed_link_verifies_for_its_path_only() {
        let keys = keys();
        let (path, expires, signature) = parts(&sign(&keys, "/dl/abc/x.zip"));
        assert!(verify(&keys, &path, expires, &signature).is_ok());
        assert!(verify(&keys, "/dl/abd/x.zip", expires, &signature).is_err());
        assert!(verify(&keys, &path, expires + 1, &signature).is_err());
    }

    #[test]
    fn expired_links_and_foreign_keys_are_refused() {
        let keys = keys();
        let past = Utc::now().timestamp() - 1;
        assert!(verify(&keys, "/p", past, &mac(&keys, "/p", past)).is_err());
        let future = Utc::now().timestamp() + 60;
        assert!(
            verify(
                &self::tests::keys(),
                "/p",
                future,
                &mac(&keys, "/p", future)
            )
            .is_err()
        );
    }
}
