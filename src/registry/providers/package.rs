//! Provider package zips: safety checks and Terraform's `h1:` hash.
//!
//! A zip is untrusted input. It must open with Go's `archive/zip` rules in mind (stored or
//! deflated entries, no encryption), hold relative paths without `..`, no links, a bounded
//! amount of data once expanded, and the provider executable Terraform will look for.

use std::io::Cursor;

use base64::Engine;

use crate::error::{Error, Result};
use crate::infra::crypto::sha256_hex;

/// Upper bound on the bytes a package may expand to (zip bombs).
pub const MAX_EXPANDED_SIZE: u64 = 2 * 1024 * 1024 * 1024;

/// Upper bound on the number of entries in a package.
pub const MAX_ENTRIES: usize = 1000;

/// What a package zip holds, as far as the registry cares.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    /// `h1:` + base64(SHA-256 over sorted `"<sha256 hex>  <name>\n"` lines): Go's
    /// `dirhash.HashZip` with `Hash1`, which Terraform uses to check archives.
    pub h1: String,
    /// `zh:` hash: lowercase hex SHA-256 of the zip itself.
    pub sha256: String,
}

/// Checks a package zip for provider `kind` and computes its hashes. CPU-bound: call it off
/// the async runtime.
pub fn inspect(filename: &str, bytes: &[u8], kind: &str) -> Result<PackageInfo> {
    inspect_with_limit(filename, bytes, kind, MAX_EXPANDED_SIZE)
}

fn inspect_with_limit(
    filename: &str,
    bytes: &[u8],
    kind: &str,
    max_expanded: u64,
) -> Result<PackageInfo> {
    let bad = |what: String| Error::invalid(format!("{filename}: {what}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable zip archive ({e})")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(bad(format!("more than {MAX_ENTRIES} entries")));
    }
    let executable = format!("terraform-provider-{kind}");
    let mut found_executable = false;
    let mut expanded: u64 = 0;
    let mut lines: Vec<(Vec<u8>, String)> = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| bad(format!("entry {index} cannot be read ({e})")))?;
        let name = std::str::from_utf8(entry.name_raw())
            .map_err(|_| bad(format!("entry {index} has a name that is not UTF-8")))?
            .to_string();
        check_path(&name).map_err(bad)?;
        if entry.is_symlink() {
            return Err(bad(format!("{name} is a symbolic link")));
        }
        if !entry.is_dir() && base_name(&name).starts_with(&executable) {
            found_executable = true;
        }
        let mut hasher = HashingSink::new(max_expanded - expanded);
        std::io::copy(&mut entry, &mut hasher).map_err(|e| {
            if hasher.over_limit {
                bad(format!(
                    "expands to more than {max_expanded} bytes; refusing it"
                ))
            } else {
                bad(format!("{name} cannot be decompressed ({e})"))
            }
        })?;
        expanded += hasher.written;
        lines.push((name.clone().into_bytes(), hasher.finish()));
    }
    if !found_executable {
        return Err(bad(format!(
            "holds no executable named {executable}_v<version> (or {executable}); \
             Terraform could not run it"
        )));
    }
    lines.sort();
    if lines.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(bad("lists the same file name twice".into()));
    }
    let mut summary = Vec::new();
    for (name, hash) in &lines {
        summary.extend_from_slice(hash.as_bytes());
        summary.extend_from_slice(b"  ");
        summary.extend_from_slice(name);
        summary.push(b'\n');
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &summary);
    Ok(PackageInfo {
        h1: format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        ),
        sha256: sha256_hex(bytes),
    })
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Refuses names that could escape the extraction directory or confuse Terraform.
fn check_path(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("an entry has an empty name".into());
    }
    if name.contains('\n') {
        return Err(format!("{name:?} contains a newline"));
    }
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) || name.contains('\\') {
        return Err(format!(
            "{name:?} contains control characters or backslashes"
        ));
    }
    if name.starts_with('/') || name.as_bytes().get(1) == Some(&b':') {
        return Err(format!("{name} is an absolute path"));
    }
    if name.split('/').any(|part| part == "..") {
        return Err(format!("{name} contains '..'"));
    }
    Ok(())
}

/// Counts and hashes what is written to it, failing past `limit` bytes.
struct HashingSink {
    context: ring::digest::Context,
    written: u64,
    limit: u64,
    over_limit: bool,
}

impl HashingSink {
    fn new(limit: u64) -> Self {
        HashingSink {
            context: ring::digest::Context::new(&ring::digest::SHA256),
            written: 0,
            limit,
            over_limit: false,
        }
    }

    fn finish(self) -> String {
        hex::encode(self.context.finish())
    }
}

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.over_limit = true;
            return Err(std::io::Error::other("expanded size limit"));
        }
        self.context.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            if name.ends_with('/') {
                writer
                    .add_directory(*name, SimpleFileOptions::default())
                    .unwrap();
            } else {
                writer
                    .start_file(*name, SimpleFileOptions::default())
                    .unwrap();
                writer.write_all(data).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn h1_is_go_dirhash_hash1_over_the_zip_entries() {
        let zip = zip_of(&[
            ("terraform-provider-dummy_v1.0.0", b"#!/bin/sh\n"),
            ("README.md", b"hello\n"),
        ]);
        let info = inspect("p.zip", &zip, "dummy").unwrap();
        // The summary Hash1 hashes: sorted "<sha256 hex>  <name>\n" lines.
        let summary = format!(
            "{}  README.md\n{}  terraform-provider-dummy_v1.0.0\n",
            sha256_hex(b"hello\n"),
            sha256_hex(b"#!/bin/sh\n")
        );
        let expected = base64::engine::general_purpose::STANDARD
            .encode(ring::digest::digest(&ring::digest::SHA256, summary.as_bytes()).as_ref());
        assert_eq!(info.h1, format!("h1:{expected}"));
        assert_eq!(info.sha256, sha256_hex(&zip));
    }

    #[test]
    fn unsafe_or_useless_archives_are_refused() {
        let exe: (&str, &[u8]) = ("terraform-provider-dummy_v1.0.0", b"x");
        assert!(inspect("p.zip", b"not a zip", "dummy").is_err());
        assert!(inspect("p.zip", &zip_of(&[("README.md", b"x")]), "dummy").is_err());
        for name in ["../evil", "/etc/passwd", "a/../../b", "c:/x", "a\\b"] {
            let zip = zip_of(&[exe, (name, b"x")]);
            assert!(inspect("p.zip", &zip, "dummy").is_err(), "{name}");
        }
        assert!(inspect("p.zip", &zip_of(&[exe, ("docs/", b"")]), "dummy").is_ok());
    }

    #[test]
    fn archives_expanding_past_the_limit_are_refused() {
        let zeros = vec![0u8; 1024 * 1024];
        let zip = zip_of(&[("terraform-provider-dummy", &zeros)]);
        assert!(zip.len() < 64 * 1024, "the test archive compresses well");
        let err = inspect_with_limit("p.zip", &zip, "dummy", 512 * 1024).unwrap_err();
        assert!(err.to_string().contains("expands to more than"), "{err}");
        assert!(inspect_with_limit("p.zip", &zip, "dummy", 2 * 1024 * 1024).is_ok());
    }

    #[test]
    fn symlinks_are_refused() {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file("terraform-provider-dummy", SimpleFileOptions::default())
            .unwrap();
        writer.write_all(b"x").unwrap();
        writer
            .add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        let zip = writer.finish().unwrap().into_inner();
        let err = inspect("p.zip", &zip, "dummy").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
