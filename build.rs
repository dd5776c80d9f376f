//! Build script: migrations and the git revision.
//!
//! `sqlx::migrate!` embeds the migration files at compile time but does not tell Cargo to
//! rebuild when one is added, so a new migration could be missed by an incremental build.
//!
//! `terrace --version` names the git revision it was built from (`TERRACE_GIT_REVISION` at
//! compile time). It comes from `git` when the sources are a git checkout; otherwise (a source
//! tarball, a container build whose context leaves `.git` out, no `git` installed) from the
//! `TERRACE_GIT_REVISION` environment variable, and failing that it is `unknown`. The build
//! never fails for want of git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=TERRACE_GIT_REVISION");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = git_revision(&manifest_dir)
        .or_else(|| {
            std::env::var("TERRACE_GIT_REVISION")
                .ok()
                .map(|r| r.trim().to_owned())
                .filter(|r| is_revision(r))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TERRACE_GIT_REVISION={revision}");
}

/// The abbreviated commit of HEAD, and tells Cargo to run this script again when HEAD moves.
fn git_revision(dir: &Path) -> Option<String> {
    // Only a checkout of these sources counts, not some repository they happen to sit in.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    // The files that change when HEAD moves: HEAD itself, the branch it points to, and
    // packed-refs. Only files that exist are named (a missing one would rerun every build).
    for name in ["HEAD", "packed-refs"] {
        watch(git(dir, &["rev-parse", "--git-path", name]), dir);
    }
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(dir, &["rev-parse", "--git-path", &branch])
    {
        // A branch only in packed-refs gets a file of its own at its next commit: the folder
        // it appears in is watched until then.
        let path = dir.join(path);
        match path.parent() {
            Some(folder) if !path.is_file() && folder.is_dir() => {
                println!("cargo:rerun-if-changed={}", folder.display());
            }
            _ => watch(Some(path.display().to_string()), dir),
        }
    }
    git(dir, &["rev-parse", "--short=12", "HEAD"]).filter(|r| is_revision(r))
}

fn watch(path: Option<String>, dir: &Path) {
    if let Some(path) = path {
        let path = dir.join(path);
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Runs `git -C dir args…`; `None` when git is missing, fails, or this is no checkout.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// A hex commit id (abbreviated or full), so nothing else reaches the version string.
fn is_revision(text: &str) -> bool {
    (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}
