//! Provider registry and network mirror: GPG keys, publishing goreleaser releases (and every
//! refusal), the `providers.v1` documents Terraform reads, server-side signing, read access,
//! and the mirror protocol.
//!
//! Keys are fixtures made once with `gpg --quick-gen-key` (RSA 2048, and EdDSA/ECDSA ones
//! for the refusals); signatures are made here with the same OpenPGP crate the server uses,
//! and checked the way Terraform checks them.

mod caps;
mod gpg_keys;
pub(crate) mod mirror;
mod publish;
mod reads;
mod signing;

use std::io::{Cursor, Write};

use axum::http::StatusCode;
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::ser::Serialize;
use pgp::types::{Password, SigningKey, Timestamp};
use serde_json::{Value, json};

use crate::support::{ORG, RequestBuilder, Resp, TestApp, sha256_hex};

/// RSA key registered for the namespace in most scenarios (primary key signs).
pub const SIGNING_PUBLIC: &str = include_str!("provider_registry/keys/signing.pub.asc");
pub const SIGNING_SECRET: &str = include_str!("provider_registry/keys/signing.sec.asc");
pub const SIGNING_KEY_ID: &str = "7DA601D596859CFD";
/// RSA key that is never registered.
pub const STRANGER_SECRET: &str = include_str!("provider_registry/keys/stranger.sec.asc");
/// RSA certify-only primary key with an RSA signing subkey.
pub const SUBKEY_PUBLIC: &str = include_str!("provider_registry/keys/subkey.pub.asc");
pub const SUBKEY_SECRET: &str = include_str!("provider_registry/keys/subkey.sec.asc");
pub const SUBKEY_PRIMARY_ID: &str = "751789D935F47950";
pub const ED25519_PUBLIC: &str = include_str!("provider_registry/keys/ed25519.pub.asc");
pub const ECDSA_PUBLIC: &str = include_str!("provider_registry/keys/ecdsa.pub.asc");

pub const TYPE: &str = "dummy";

pub fn secret_key(armor: &str) -> SignedSecretKey {
    SignedSecretKey::from_string(armor).unwrap().0
}

pub fn public_key(armor: &str) -> SignedPublicKey {
    SignedPublicKey::from_string(armor).unwrap().0
}

/// A binary detached signature as `gpg --detach-sign` makes it.
pub fn sign_with(signer: &impl SigningKey, data: &[u8]) -> Vec<u8> {
    let mut config = SignatureConfig::v4(
        SignatureType::Binary,
        signer.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now())).unwrap(),
        Subpacket::regular(SubpacketData::IssuerFingerprint(signer.fingerprint())).unwrap(),
    ];
    config.unhashed_subpackets =
        vec![Subpacket::regular(SubpacketData::IssuerKeyId(signer.legacy_key_id())).unwrap()];
    let sig = config.sign(signer, &Password::empty(), data).unwrap();
    DetachedSignature::new(sig).to_bytes().unwrap()
}

/// Signs with the primary key of an armored secret key.
pub fn sign(secret_armor: &str, data: &[u8]) -> Vec<u8> {
    sign_with(&secret_key(secret_armor).primary_key, data)
}

/// Whether `signature` over `data` verifies against the armored public `key`, as Terraform
/// would check it (primary key or any subkey).
pub fn verifies(key_armor: &str, data: &[u8], signature: &[u8]) -> bool {
    let key = public_key(key_armor);
    let Ok(sig) = DetachedSignature::from_bytes(Cursor::new(signature)) else {
        return false;
    };
    sig.verify(&key.primary_key, data).is_ok()
        || key
            .public_subkeys
            .iter()
            .any(|s| sig.verify(&s.key, data).is_ok())
}

/// A provider package zip holding the executable Terraform looks for.
pub fn package_zip(kind: &str, version: &str, os: &str, arch: &str) -> Vec<u8> {
    zip_with(&[(
        &format!("terraform-provider-{kind}_v{version}"),
        format!("#!/bin/sh\necho {os}_{arch}\n").as_bytes(),
    )])
}

pub fn zip_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for (name, data) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

pub fn package_name(version: &str, platform: &str) -> String {
    format!("terraform-provider-{TYPE}_{version}_{platform}.zip")
}

pub fn sums_name(version: &str) -> String {
    format!("terraform-provider-{TYPE}_{version}_SHA256SUMS")
}

/// The files of a goreleaser release of `TYPE`: zips, SHA256SUMS and its signature.
pub struct Release {
    pub version: String,
    pub zips: Vec<(String, Vec<u8>)>,
    pub sums: Vec<u8>,
    pub sig: Option<Vec<u8>>,
    pub protocols: Option<String>,
}

impl Release {
    /// Zips for `platforms`, canonical SHA256SUMS, signed by the registered fixture key.
    pub fn signed(version: &str, platforms: &[&str]) -> Release {
        let mut release = Release::unsigned(version, platforms);
        release.sig = Some(sign(SIGNING_SECRET, &release.sums));
        release
    }

    pub fn unsigned(version: &str, platforms: &[&str]) -> Release {
        let zips: Vec<(String, Vec<u8>)> = platforms
            .iter()
            .map(|p| {
                let (os, arch) = p.split_once('_').unwrap();
                (
                    package_name(version, p),
                    package_zip(TYPE, version, os, arch),
                )
            })
            .collect();
        let sums = zips
            .iter()
            .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
            .collect::<String>()
            .into_bytes();
        Release {
            version: version.to_string(),
            zips,
            sums,
            sig: None,
            protocols: None,
        }
    }

    /// Replaces SHA256SUMS and re-signs it with the registered key.
    pub fn with_sums(mut self, sums: Vec<u8>) -> Release {
        self.sig = Some(sign(SIGNING_SECRET, &sums));
        self.sums = sums;
        self
    }

    /// The multipart parts, as goreleaser's file names.
    pub fn parts(&self) -> Vec<Part> {
        let mut parts: Vec<Part> = self
            .zips
            .iter()
            .map(|(name, bytes)| Part::file(name, bytes.clone()))
            .collect();
        parts.push(Part::file(&sums_name(&self.version), self.sums.clone()));
        if let Some(sig) = &self.sig {
            parts.push(Part::file(
                &format!("{}.sig", sums_name(&self.version)),
                sig.clone(),
            ));
        }
        if let Some(protocols) = &self.protocols {
            parts.push(Part::field("protocols", protocols));
        }
        parts
    }
}

/// One part of a multipart/form-data body.
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub bytes: Vec<u8>,
}

impl Part {
    pub fn file(filename: &str, bytes: Vec<u8>) -> Part {
        Part {
            name: "file".into(),
            filename: Some(filename.into()),
            bytes,
        }
    }

    pub fn field(name: &str, value: &str) -> Part {
        Part {
            name: name.into(),
            filename: None,
            bytes: value.as_bytes().to_vec(),
        }
    }
}

pub const BOUNDARY: &str = "terrace-test-boundary-7MA4YWxkTrZu0gW";

pub fn multipart_body(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match &part.filename {
            Some(filename) => format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n",
                part.name
            ),
            None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", part.name),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `POST /api/v1/providers/acme/dummy/{version}` with `parts`.
pub async fn publish_parts(app: &TestApp, version: &str, parts: &[Part], token: &str) -> Resp {
    let request = RequestBuilder::new("POST", &format!("/api/v1/providers/{ORG}/{TYPE}/{version}"))
        .bearer(token)
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart_body(parts));
    app.send(request.build()).await
}

pub async fn publish(app: &TestApp, release: &Release) -> Resp {
    publish_parts(app, &release.version, &release.parts(), &app.write_token).await
}

/// Registers an armored key for acme as its admin.
pub async fn add_key(app: &TestApp, armor: &str) -> Resp {
    app.api(
        "POST",
        &format!("/api/v1/orgs/{ORG}/gpg-keys"),
        &app.admin_token,
        Some(json!({ "ascii_armor": armor })),
    )
    .await
}

/// Registers the fixture signing key and publishes a signed release.
pub async fn seed(app: &TestApp, version: &str, platforms: &[&str]) -> Release {
    add_key(app, SIGNING_PUBLIC)
        .await
        .assert_status(StatusCode::CREATED);
    let release = Release::signed(version, platforms);
    publish(app, &release)
        .await
        .assert_status(StatusCode::CREATED);
    release
}

/// A GET with a bearer token (or none) and an explicit `Host`.
pub async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Resp {
    let mut request = RequestBuilder::new("GET", path).header("host", "terrace.test");
    if let Some(token) = token {
        request = request.bearer(token);
    }
    app.send(request.build()).await
}

/// Follows an absolute signed link (as Terraform does, without credentials).
pub async fn follow(app: &TestApp, url: &str) -> Resp {
    let path = url
        .strip_prefix("http://terrace.test")
        .unwrap_or_else(|| panic!("links are absolute under the request's host: {url}"));
    get(app, path, None).await
}

/// The error messages of a refusal, joined.
pub fn errors(resp: &Resp) -> String {
    let body: Value = resp.json();
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors list: {body}"))
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Asserts a refusal with `status` whose message contains `needle`.
#[track_caller]
pub fn assert_refused(resp: &Resp, status: StatusCode, needle: &str) {
    resp.assert_status(status);
    let text = errors(resp);
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");
}
