//! Module archives: a `.tar.gz` is untrusted input, checked entry by entry before anything is
//! stored. Only regular files and directories with relative, non-escaping paths are accepted;
//! expansion, entry count and the files kept for metadata are all capped.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};
use std::rc::Rc;

use tar::EntryType;

use crate::error::{Error, Result};

/// Largest accepted archive (compressed), unless the server's body cap is lower.
pub const MAX_ARCHIVE_SIZE: u64 = 64 * 1024 * 1024;
/// Largest total size the archive may expand to: a guard against decompression bombs.
pub const MAX_EXPANDED_SIZE: u64 = 256 * 1024 * 1024;
/// Most entries (files, directories) one archive may hold.
pub const MAX_ENTRIES: usize = 20_000;
/// Longest `.tf` file read for metadata; longer files are skipped, not refused.
const MAX_TF_FILE: u64 = 4 * 1024 * 1024;
/// Most `.tf` text kept in memory for metadata across the whole archive.
const MAX_TF_TOTAL: u64 = 32 * 1024 * 1024;
/// READMEs are kept up to this many bytes.
pub const MAX_README: usize = 64 * 1024;

/// The directories of a module that the registry describes: the root and `modules/*`.
#[derive(Debug, Default)]
pub struct ModuleFiles {
    /// Keyed by directory: `""` for the root, `modules/<name>` for submodules.
    pub dirs: BTreeMap<String, ModuleDir>,
}

/// What one module directory contains, as far as metadata goes.
#[derive(Debug, Default)]
pub struct ModuleDir {
    /// `(file name, text)` of its `.tf` files, in archive order.
    pub tf_files: Vec<(String, String)>,
    /// `(file name, text)` of its `.tf.json` files, in archive order (within the same caps).
    pub tf_json_files: Vec<(String, String)>,
    /// Whether it holds any configuration (`.tf` or `.tf.json`).
    pub has_config: bool,
    /// `README.md`, cut at [`MAX_README`] bytes.
    pub readme: Option<String>,
}

/// Fails reads once more than `limit` bytes came out of `inner`, and remembers that it did
/// (the tar reader may wrap the error, so the flag is what gets checked).
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.tripped.set(true);
            return Err(std::io::Error::other("archive expands beyond the limit"));
        }
        Ok(n)
    }
}

/// Turns a read failure into the refusal the client sees.
fn read_error(tripped: &Cell<bool>) -> impl Fn(std::io::Error) -> Error + '_ {
    move |err| {
        if tripped.get() {
            Error::invalid(format!(
                "archive expands to more than {} MiB",
                MAX_EXPANDED_SIZE / (1024 * 1024)
            ))
        } else {
            Error::invalid(format!("archive is not a valid .tar.gz: {err}"))
        }
    }
}

/// Checks an entry's path and returns it as `/`-separated relative components.
fn safe_path(path: &Path) -> Result<Vec<String>> {
    let shown = path.display();
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                let part = part
                    .to_str()
                    .ok_or_else(|| Error::invalid(format!("archive path {shown} is not UTF-8")))?;
                // A backslash or a drive letter escapes on Windows, where Terraform also runs.
                if part.contains('\\') || (parts.is_empty() && is_drive(part)) {
                    return Err(Error::invalid(format!(
                        "archive path {shown} is not a relative path"
                    )));
                }
                parts.push(part.to_string());
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::invalid(format!(
                    "archive path {shown} is absolute; paths must be relative"
                )));
            }
            Component::ParentDir => {
                return Err(Error::invalid(format!(
                    "archive path {shown} contains '..'"
                )));
            }
        }
    }
    Ok(parts)
}

fn is_drive(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// The module directory a file belongs to, if it is one the registry describes.
fn module_dir(parts: &[String]) -> Option<String> {
    match parts {
        [_file] => Some(String::new()),
        [modules, name, _file] if modules == "modules" => Some(format!("modules/{name}")),
        _ => None,
    }
}

fn read_text(reader: impl Read, limit: u64, tripped: &Cell<bool>) -> Result<String> {
    let mut bytes = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(read_error(tripped))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Validates a `.tar.gz` module archive and keeps what metadata extraction needs.
pub fn inspect(archive: &[u8]) -> Result<ModuleFiles> {
    if !archive.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::invalid(
            "archive is not gzip-compressed; upload a .tar.gz",
        ));
    }
    // Multi-member gzip, as Go's reader (and so Terraform) accepts.
    let decoder = flate2::read::MultiGzDecoder::new(archive);
    let tripped = Rc::new(Cell::new(false));
    let failed = read_error(&tripped);
    let mut tar = tar::Archive::new(Capped {
        inner: decoder,
        read: 0,
        limit: MAX_EXPANDED_SIZE,
        tripped: tripped.clone(),
    });
    let mut files = ModuleFiles::default();
    let mut kept_tf: u64 = 0;
    let mut count = 0usize;
    for entry in tar.entries().map_err(&failed)? {
        let entry = entry.map_err(&failed)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(Error::invalid(format!(
                "archive has more than {MAX_ENTRIES} entries"
            )));
        }
        let path = entry.path().map_err(&failed)?.into_owned();
        let kind = entry.header().entry_type();
        match kind {
            // A pax global header (git archive writes one) describes no file.
            EntryType::XGlobalHeader => continue,
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink | EntryType::Link => {
                return Err(Error::invalid(format!(
                    "archive entry {} is a link; links are not allowed",
                    path.display()
                )));
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(Error::invalid(format!(
                    "archive entry {} is a device or FIFO; only files and directories are allowed",
                    path.display()
                )));
            }
            other => {
                return Err(Error::invalid(format!(
                    "archive entry {} has unsupported type {other:?}; only files and directories \
                     are allowed",
                    path.display()
                )));
            }
        }
        let parts = safe_path(&path)?;
        if kind == EntryType::Directory || parts.is_empty() {
            continue;
        }
        let Some(dir) = module_dir(&parts) else {
            continue;
        };
        let file = parts[parts.len() - 1].as_str();
        let size = entry.size();
        if file.ends_with(".tf") || file.ends_with(".tf.json") {
            let slot = files.dirs.entry(dir).or_default();
            slot.has_config = true;
            if size <= MAX_TF_FILE && kept_tf + size <= MAX_TF_TOTAL {
                kept_tf += size;
                let text = read_text(entry, MAX_TF_FILE, &tripped)?;
                let kept = if file.ends_with(".tf") {
                    &mut slot.tf_files
                } else {
                    &mut slot.tf_json_files
                };
                kept.push((file.to_string(), text));
            }
        } else if file.eq_ignore_ascii_case("README.md") {
            let mut text = read_text(entry, MAX_README as u64, &tripped)?;
            // `take` may have cut a character in half; drop the replacement it became.
            if size > MAX_README as u64 {
                text = text.trim_end_matches('\u{FFFD}').to_string();
            }
            files.dirs.entry(dir).or_default().readme = Some(text);
        }
    }
    if !files.dirs.get("").is_some_and(|root| root.has_config) {
        return Err(Error::invalid(
            "archive has no .tf files at its root; pack the module directory's contents, \
             not its parent directory",
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: EntryType, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        // Write the name bytes directly so that unsafe paths can be built.
        let name = &mut header.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        header
    }

    fn archive(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let header = header(path, *kind, data.len() as u64);
            builder.append(&header, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    const MAIN: &[u8] = b"variable \"x\" {}\n";

    #[test]
    fn a_plain_module_is_accepted_with_its_files() {
        let gz = archive(&[
            ("./", EntryType::Directory, b""),
            ("./main.tf", EntryType::Regular, MAIN),
            ("vars.tf.json", EntryType::Regular, b"{}"),
            ("README.md", EntryType::Regular, b"# VPC\n"),
            ("modules/sub/main.tf", EntryType::Regular, MAIN),
            ("examples/x/main.tf", EntryType::Regular, MAIN),
        ]);
        let files = inspect(&gz).unwrap();
        assert_eq!(files.dirs.keys().collect::<Vec<_>>(), ["", "modules/sub"]);
        assert_eq!(files.dirs[""].tf_files[0].0, "main.tf");
        assert_eq!(files.dirs[""].tf_json_files[0].0, "vars.tf.json");
        assert_eq!(files.dirs[""].readme.as_deref(), Some("# VPC\n"));
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let cases: &[(&str, EntryType, &str)] = &[
            ("/etc/passwd", EntryType::Regular, "absolute"),
            ("../evil.tf", EntryType::Regular, "'..'"),
            ("a/../../evil.tf", EntryType::Regular, "'..'"),
            ("link", EntryType::Symlink, "link"),
            ("hard", EntryType::Link, "link"),
            ("dev", EntryType::Char, "device"),
            ("blk", EntryType::Block, "device"),
            ("fifo", EntryType::Fifo, "FIFO"),
            ("C:evil.tf", EntryType::Regular, "relative"),
            ("a\\..\\b.tf", EntryType::Regular, "relative"),
        ];
        for (path, kind, message) in cases {
            let gz = archive(&[("main.tf", EntryType::Regular, MAIN), (path, *kind, b"")]);
            let err = inspect(&gz).unwrap_err().to_string();
            assert!(err.contains(message), "{path}: {err}");
        }
    }

    #[test]
    fn non_gzip_and_non_tar_bodies_are_refused() {
        assert!(
            inspect(b"PK\x03\x04zip")
                .unwrap_err()
                .to_string()
                .contains("gzip")
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[7u8; 1024]).unwrap();
        let err = inspect(&gz.finish().unwrap()).unwrap_err().to_string();
        assert!(err.contains("not a valid .tar.gz"), "{err}");
    }

    #[test]
    fn an_archive_without_root_configuration_is_refused() {
        let gz = archive(&[("vpc/main.tf", EntryType::Regular, MAIN)]);
        assert!(
            inspect(&gz)
                .unwrap_err()
                .to_string()
                .contains("no .tf files")
        );
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_expansion_cap() {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        builder
            .append(&header("main.tf", EntryType::Regular, 3), &b"x=1"[..])
            .unwrap();
        let big = MAX_EXPANDED_SIZE + 1024;
        builder
            .append(
                &header("zeros.bin", EntryType::Regular, big),
                std::io::repeat(0).take(big),
            )
            .unwrap();
        let gz = builder.into_inner().unwrap().finish().unwrap();
        assert!(
            (gz.len() as u64) < MAX_ARCHIVE_SIZE,
            "the bomb fits under the upload cap"
        );
        let err = inspect(&gz).unwrap_err().to_string();
        assert!(err.contains("expands to more than"), "{err}");
    }
}
