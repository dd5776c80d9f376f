//! `terrace mirror import DIR`: uploads the provider zips of a `terraform providers mirror`
//! directory (`DIR/<hostname>/<namespace>/<type>/terraform-provider-<type>_<version>_<os>_<arch>.zip`)
//! through the mirror upload API, like any other client would.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

/// Provider mirror client commands.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Upload the provider zips of a `terraform providers mirror` directory.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The directory `terraform providers mirror` wrote.
    dir: PathBuf,
    /// Terrace's base URL.
    #[arg(long, env = "TERRACE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API token with the admin role (of any organization).
    #[arg(long, env = "TERRACE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM CA certificate to trust besides the system's (e.g. the --dev-tls CA).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// One zip found in the directory, with the address it will be mirrored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundArchive {
    pub path: PathBuf,
    pub hostname: String,
    pub namespace: String,
    pub kind: String,
    pub version: String,
    pub platform: String,
}

/// Runs a `terrace mirror …` command.
pub async fn run(command: MirrorCommand) -> anyhow::Result<()> {
    match command {
        MirrorCommand::Import(args) => import(args).await,
    }
}

fn sorted_dirs(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if entry.file_type()?.is_dir() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Finds every provider zip of a mirror directory, in a stable order.
pub fn scan(dir: &Path) -> anyhow::Result<Vec<FoundArchive>> {
    let mut found = Vec::new();
    for (hostname, host_dir) in sorted_dirs(dir)? {
        for (namespace, ns_dir) in sorted_dirs(&host_dir)? {
            for (kind, type_dir) in sorted_dirs(&ns_dir)? {
                let prefix = format!("terraform-provider-{kind}_");
                let mut names: Vec<String> = std::fs::read_dir(&type_dir)?
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".zip"))
                    .collect();
                names.sort();
                for name in names {
                    let parsed = name
                        .strip_prefix(&prefix)
                        .and_then(|rest| rest.strip_suffix(".zip"))
                        .and_then(|rest| rest.split_once('_'))
                        .filter(|(_, platform)| platform.contains('_'));
                    let Some((version, platform)) = parsed else {
                        eprintln!("skipping {}: not a provider package name", name);
                        continue;
                    };
                    found.push(FoundArchive {
                        path: type_dir.join(&name),
                        hostname: hostname.clone(),
                        namespace: namespace.clone(),
                        kind: kind.clone(),
                        version: version.to_string(),
                        platform: platform.to_string(),
                    });
                }
            }
        }
    }
    Ok(found)
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .context("an admin token is required (--token or TERRACE_TOKEN)")?;
    let archives = scan(&args.dir)?;
    if archives.is_empty() {
        bail!(
            "{} holds no provider zips (expected <hostname>/<namespace>/<type>/*.zip, \
             as `terraform providers mirror` writes)",
            args.dir.display()
        );
    }
    let client = crate::cli::client::http_client(args.ca_cert.as_deref())?;
    let base = args.url.trim_end_matches('/');
    let mut failed = 0;
    for archive in &archives {
        let url = format!(
            "{base}/api/v1/mirror/{}/{}/{}/{}/{}",
            archive.hostname, archive.namespace, archive.kind, archive.version, archive.platform
        );
        let bytes = tokio::fs::read(&archive.path)
            .await
            .with_context(|| format!("reading {}", archive.path.display()))?;
        let response = client
            .put(&url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/zip")
            .body(bytes)
            .send()
            .await
            .with_context(|| format!("uploading to {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let what = format!(
            "{}/{}/{} {} {}",
            archive.hostname, archive.namespace, archive.kind, archive.version, archive.platform
        );
        match status.as_u16() {
            201 => eprintln!("mirrored {what}"),
            200 => eprintln!("already mirrored {what}"),
            _ => {
                failed += 1;
                eprintln!(
                    "failed {what}: {status}: {}",
                    crate::cli::client::error_text(&body)
                );
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} archives could not be mirrored",
            archives.len()
        );
    }
    eprintln!("{} archives mirrored", archives.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_the_zips_of_a_providers_mirror_layout() {
        let dir = tempfile::tempdir().unwrap();
        let type_dir = dir.path().join("registry.terraform.io/hashicorp/null");
        std::fs::create_dir_all(&type_dir).unwrap();
        for name in [
            "terraform-provider-null_3.1.0_linux_amd64.zip",
            "terraform-provider-null_3.1.0_darwin_arm64.zip",
            "index.json",
            "3.1.0.json",
            "terraform-provider-other_1.0.0_linux_amd64.zip",
        ] {
            std::fs::write(type_dir.join(name), b"x").unwrap();
        }
        let found = scan(dir.path()).unwrap();
        let summary: Vec<_> = found
            .iter()
            .map(|a| {
                (
                    a.hostname.as_str(),
                    a.kind.as_str(),
                    a.version.as_str(),
                    a.platform.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("registry.terraform.io", "null", "3.1.0", "darwin_arm64"),
                ("registry.terraform.io", "null", "3.1.0", "linux_amd64"),
            ]
        );
    }
}
