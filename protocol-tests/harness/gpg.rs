//! Real GnuPG for release fixtures: a throwaway home per key, RSA keys made with
//! `gpg --quick-gen-key`, binary detached signatures made with `gpg --detach-sign`.

use std::path::Path;
use std::process::Command;

use super::releases::signature_path;

/// Returns from the calling test when `gpg` is missing (a failure under `CI`).
macro_rules! require_gpg {
    () => {
        if !$crate::harness::gpg::gpg_available() {
            return;
        }
    };
}

/// Whether `gpg` can run; prints a skip notice (or panics under `CI`) when not.
pub fn gpg_available() -> bool {
    let found = Command::new("gpg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let hint = "gpg not found (install Debian's gnupg package)";
        if std::env::var_os("CI").is_some() {
            panic!("{hint}");
        }
        eprintln!("skipping protocol test: {hint}");
    }
    found
}

/// A throwaway GnuPG home with one RSA signing key.
pub struct Gpg {
    home: tempfile::TempDir,
    pub key_id: String,
}

impl Gpg {
    pub fn new(name: &str) -> Gpg {
        let home = tempfile::Builder::new()
            .prefix("terrace-gpg-")
            .tempdir()
            .expect("create a GnuPG home");
        let mut gpg = Gpg {
            home,
            key_id: String::new(),
        };
        let uid = format!("{name} <{name}@terrace.test>");
        gpg.run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &uid,
            "rsa2048",
            "sign",
            "never",
        ]);
        let listing = gpg.run(&["--with-colons", "--list-keys", &uid]);
        gpg.key_id = listing
            .lines()
            .find(|line| line.starts_with("pub:"))
            .and_then(|line| line.split(':').nth(4))
            .expect("gpg lists the new key")
            .to_uppercase();
        gpg
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--yes", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .expect("run gpg");
        assert!(
            output.status.success(),
            "gpg {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn public_key(&self) -> String {
        self.run(&["--armor", "--export", &self.key_id])
    }

    /// A binary detached signature, as goreleaser's default `signs` step makes it.
    pub fn detach_sign(&self, file: &Path) -> Vec<u8> {
        let sig = signature_path(file);
        let (file_arg, sig_arg) = (file.display().to_string(), sig.display().to_string());
        self.run(&[
            "--local-user",
            &self.key_id,
            "--output",
            &sig_arg,
            "--detach-sign",
            &file_arg,
        ]);
        std::fs::read(&sig).expect("read the signature")
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Stops the agent gpg started for this home only.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
