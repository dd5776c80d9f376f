//! SHA256SUMS documents, as `sha256sum` and goreleaser write them and as Terraform reads them.
//!
//! Terraform 1.0.3 panics on a blank line (it indexes the fields of every line) and ignores a
//! `*filename` (binary mode) line when it looks for the package's checksum, so neither may
//! reach it. The canonical form is exactly `<64 lowercase hex>  <filename>\n` per line.

use crate::error::{Error, Result};

/// A parsed SHA256SUMS document.
#[derive(Debug, Clone)]
pub struct Shasums {
    /// Lowercase hex SHA-256 by file name, in file order.
    entries: Vec<(String, String)>,
    /// Whether the original bytes have lines Terraform cannot use (blank, `*`-marked).
    unusable: Vec<String>,
    canonical: Vec<u8>,
}

impl Shasums {
    /// Parses a document, refusing lines that are not a checksum line at all.
    pub fn parse(bytes: &[u8]) -> Result<Shasums> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::invalid("SHA256SUMS is not UTF-8 text"))?;
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut unusable = Vec::new();
        let mut lines: Vec<&str> = text.split('\n').collect();
        // A final newline ends the last line; it does not start an empty one.
        if lines.last() == Some(&"") {
            lines.pop();
        }
        for (index, raw) in lines.iter().enumerate() {
            let number = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                unusable.push(format!(
                    "line {number} is blank (Terraform 1.0.3 crashes on it)"
                ));
                continue;
            }
            let (hash, rest) = line.split_once([' ', '\t']).ok_or_else(|| {
                Error::invalid(format!(
                    "SHA256SUMS line {number} is not \"<sha256>  <filename>\""
                ))
            })?;
            let hash_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            let rest = rest.trim_start_matches([' ', '\t']);
            let (name, binary) = match rest.strip_prefix('*') {
                Some(name) => (name, true),
                None => (rest, false),
            };
            // A name may not start with `*` itself: its canonical line would read as a
            // binary-mode line for another name.
            if !hash_ok
                || name.is_empty()
                || name.starts_with('*')
                || name.contains(char::is_whitespace)
            {
                return Err(Error::invalid(format!(
                    "SHA256SUMS line {number} is not \"<sha256>  <filename>\""
                )));
            }
            if binary {
                unusable.push(format!(
                    "line {number} marks {name} with '*' (Terraform does not match such lines)"
                ));
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err(Error::invalid(format!(
                    "SHA256SUMS lists {name} twice (line {number})"
                )));
            }
            entries.push((name.to_string(), hash.to_ascii_lowercase()));
        }
        if entries.is_empty() {
            return Err(Error::invalid("SHA256SUMS lists no files"));
        }
        let canonical = entries
            .iter()
            .map(|(name, hash)| format!("{hash}  {name}\n"))
            .collect::<String>()
            .into_bytes();
        Ok(Shasums {
            entries,
            unusable,
            canonical,
        })
    }

    /// The lowercase hex SHA-256 listed for `filename`.
    pub fn hash_of(&self, filename: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(name, _)| name == filename)
            .map(|(_, hash)| hash.as_str())
    }

    /// File names in document order.
    pub fn filenames(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// Problems that make the original bytes unusable by Terraform, if any.
    pub fn unusable_lines(&self) -> &[String] {
        &self.unusable
    }

    /// The canonical form: one `<hex>  <filename>\n` line per file, nothing else.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn canonical_documents_are_kept_byte_for_byte() {
        let text = format!("{A}  x_linux_amd64.zip\n{A}  x_manifest.json\n");
        let sums = Shasums::parse(text.as_bytes()).unwrap();
        assert!(sums.unusable_lines().is_empty());
        assert_eq!(sums.canonical(), text.as_bytes());
        assert_eq!(sums.hash_of("x_linux_amd64.zip"), Some(A));
        assert_eq!(sums.hash_of("x_darwin_amd64.zip"), None);
    }

    #[test]
    fn blank_lines_and_binary_markers_are_flagged_and_normalised() {
        let text = format!("{A} *x_linux_amd64.zip\r\n\n{B}  x_darwin_arm64.zip");
        let sums = Shasums::parse(text.as_bytes()).unwrap();
        assert_eq!(sums.unusable_lines().len(), 2);
        let lower = B.to_ascii_lowercase();
        assert_eq!(
            String::from_utf8(sums.canonical().to_vec()).unwrap(),
            format!("{A}  x_linux_amd64.zip\n{lower}  x_darwin_arm64.zip\n")
        );
    }

    #[test]
    fn garbage_and_duplicates_are_refused() {
        assert!(Shasums::parse(b"hello\n").is_err());
        assert!(Shasums::parse(b"").is_err());
        assert!(Shasums::parse(format!("{A}\n").as_bytes()).is_err());
        assert!(Shasums::parse(format!("{A}  a b\n").as_bytes()).is_err());
        // Found by fuzzing: `**x.zip` became `*x.zip`, which reads back as another name.
        assert!(Shasums::parse(format!("{A}  **x.zip\n").as_bytes()).is_err());
        assert!(Shasums::parse(format!("{A}  *x.zip\n").as_bytes()).is_ok());
        let dup = format!("{A}  x.zip\n{A}  x.zip\n");
        assert!(Shasums::parse(dup.as_bytes()).is_err());
        assert!(Shasums::parse(&[0xff, 0xfe]).is_err());
    }
}
