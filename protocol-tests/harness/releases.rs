//! goreleaser-style provider releases for the registry: platform zips holding an executable,
//! `SHA256SUMS` signed by real `gpg`, the signing key registered with Terrace, the files
//! uploaded as goreleaser names them.

use std::io::Write;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{Value, json};

use super::gpg::Gpg;
use super::{Role, Terrace};

/// The platform of the Terraform build the tests run (1.0.3 linux_amd64).
pub const PLATFORM: (&str, &str) = ("linux", "amd64");

/// `…_SHA256SUMS.sig` next to `…_SHA256SUMS` (versions have dots, so not `with_extension`).
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// A provider package zip holding `executable` under the name Terraform expects.
pub fn package_zip(kind: &str, version: &str, executable: &[u8]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    writer
        .start_file(format!("terraform-provider-{kind}_v{version}"), options)
        .expect("start a zip entry");
    writer.write_all(executable).expect("write a zip entry");
    writer.finish().expect("finish the zip").into_inner()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// A release of `kind` in a directory: one zip per platform, SHA256SUMS and its signature.
pub struct Release {
    /// Keeps the files below alive.
    _dir: tempfile::TempDir,
    pub kind: String,
    pub files: Vec<PathBuf>,
    pub zip_sha256: Vec<String>,
}

/// Builds a release signed by `gpg`; `executable` gives each platform's program.
pub fn release(
    gpg: &Gpg,
    kind: &str,
    version: &str,
    platforms: &[&str],
    executable: impl Fn(&str) -> Vec<u8>,
) -> Release {
    let dir = tempfile::tempdir().expect("create a release directory");
    let mut files = Vec::new();
    let mut sums = String::new();
    let mut zip_sha256 = Vec::new();
    for platform in platforms {
        let name = format!("terraform-provider-{kind}_{version}_{platform}.zip");
        let zip = package_zip(kind, version, &executable(platform));
        sums.push_str(&format!("{}  {name}\n", sha256_hex(&zip)));
        zip_sha256.push(sha256_hex(&zip));
        let path = dir.path().join(&name);
        std::fs::write(&path, zip).expect("write a zip");
        files.push(path);
    }
    let sums_path = dir
        .path()
        .join(format!("terraform-provider-{kind}_{version}_SHA256SUMS"));
    std::fs::write(&sums_path, sums).expect("write SHA256SUMS");
    gpg.detach_sign(&sums_path);
    files.push(sums_path.clone());
    files.push(signature_path(&sums_path));
    Release {
        _dir: dir,
        kind: kind.to_owned(),
        files,
        zip_sha256,
    }
}

/// Registers `gpg`'s public key with the org `acme`.
pub fn register_key(server: &Terrace, gpg: &Gpg) {
    let url = format!("{}/api/v1/orgs/acme/gpg-keys", server.base_url());
    let response = server
        .http()
        .post(&url)
        .header("Authorization", server.bearer(Role::Admin))
        .json(&json!({ "ascii_armor": gpg.public_key() }))
        .send()
        .expect("send POST gpg-keys");
    let status = response.status();
    let body: Value = response.json().expect("JSON answer");
    assert_eq!(status, StatusCode::CREATED, "POST {url}: {body}");
    assert_eq!(body["key_id"], gpg.key_id.as_str());
}

/// Uploads the release files to `acme/KIND/VERSION`; returns status and body.
pub fn publish(server: &Terrace, release: &Release, version: &str) -> (StatusCode, Value) {
    let mut form = Form::new();
    for path in &release.files {
        let name = path
            .file_name()
            .expect("release files have names")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(path).expect("read a release file");
        form = form.part("file", Part::bytes(bytes).file_name(name));
    }
    let url = format!(
        "{}/api/v1/providers/acme/{}/{version}",
        server.base_url(),
        release.kind
    );
    let response = server
        .http()
        .post(&url)
        .header("Authorization", server.bearer(Role::Write))
        .multipart(form)
        .send()
        .expect("send POST provider version");
    let status = response.status();
    (status, response.json().expect("JSON answer"))
}
