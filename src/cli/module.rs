//! `terrace module publish`: packs a module directory as `.tar.gz` and uploads it through the
//! publishing API, like any other client would.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

/// Module registry client commands.
#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Pack a module directory as .tar.gz and publish it as a new version.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The module's directory (its root .tf files at the top).
    pub(crate) dir: PathBuf,
    /// Namespace (organization) to publish in.
    #[arg(long)]
    pub(crate) namespace: String,
    /// Module name, e.g. vpc.
    #[arg(long)]
    pub(crate) name: String,
    /// Module system (the provider it targets), e.g. aws.
    #[arg(long)]
    pub(crate) system: String,
    /// Semantic version, e.g. 1.2.0.
    #[arg(long)]
    pub(crate) version: String,
    /// Terrace's base URL.
    #[arg(long, env = "TERRACE_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// An API token with the write role.
    #[arg(long, env = "TERRACE_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// A PEM CA certificate to trust besides the system's (e.g. the --dev-tls CA).
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
}

/// Runs a `terrace module …` command.
pub async fn run(command: ModuleCommand) -> anyhow::Result<()> {
    match command {
        ModuleCommand::Publish(args) => publish(args).await,
    }
}

/// Directories never packed: VCS data and Terraform's working data (provider binaries,
/// downloaded modules).
const SKIPPED_DIRS: [&str; 3] = [".git", ".terraform", ".hg"];

/// Whether a file must stay out of a module archive: state files may hold secrets.
fn skipped_file(name: &str) -> bool {
    name.ends_with(".tfstate")
        || name.ends_with(".tfstate.backup")
        || name == ".terraform.tfstate.lock.info"
}

/// Packs `dir` as a gzip-compressed tar with paths relative to `dir`, in a stable order.
/// Symlinks are refused: the registry does not accept links in archives.
pub fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(&relative))
            .with_context(|| format!("listing {}", dir.join(&relative).display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        // Directories are pushed in reverse so they come out in name order.
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            let name_text = name
                .to_str()
                .with_context(|| format!("{:?} is not a UTF-8 file name", entry.path()))?;
            let path = relative.join(&name);
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                bail!(
                    "{} is a symlink; module archives cannot contain links, copy the file instead",
                    entry.path().display()
                );
            }
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name_text) {
                    subdirs.push(path);
                }
            } else if kind.is_file() {
                if skipped_file(name_text) {
                    continue;
                }
                let file = std::fs::File::open(entry.path())
                    .with_context(|| format!("reading {}", entry.path().display()))?;
                let metadata = file.metadata()?;
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(metadata.len());
                header.set_mode(if is_executable(&metadata) {
                    0o755
                } else {
                    0o644
                });
                header.set_mtime(
                    metadata
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                );
                tar.append_data(&mut header, &path, file)
                    .with_context(|| format!("packing {}", entry.path().display()))?;
            }
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(tar.into_inner()?.finish()?)
}

fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let client = crate::cli::client::http_client(args.ca_cert.as_deref())?;
    let published = upload(&client, &args).await?;
    println!("{}", published["id"].as_str().unwrap_or_default());
    Ok(())
}

/// Packs `args.dir` and publishes it as a new version; returns the server's answer.
pub(crate) async fn upload(
    client: &reqwest::Client,
    args: &PublishArgs,
) -> anyhow::Result<serde_json::Value> {
    let dir = args.dir.clone();
    let archive = tokio::task::spawn_blocking(move || pack(&dir)).await??;
    let url = format!(
        "{}/api/v1/modules/{}/{}/{}/{}",
        args.url.trim_end_matches('/'),
        args.namespace,
        args.name,
        args.system,
        args.version
    );
    let size = archive.len();
    let response = client
        .put(&url)
        .bearer_auth(args.token.trim())
        .header(reqwest::header::CONTENT_TYPE, "application/gzip")
        .body(archive)
        .send()
        .await
        .with_context(|| format!("uploading to {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let reason = crate::cli::client::error_text(&body);
        bail!("publishing failed with {status}: {reason}");
    }
    let published: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    eprintln!(
        "published {} ({size} bytes)",
        published["id"].as_str().unwrap_or(&url)
    );
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_module_files_and_leaves_out_state_and_working_data() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("main.tf"), "variable \"x\" {}\n").unwrap();
        std::fs::write(root.join("terraform.tfstate"), "{}").unwrap();
        std::fs::create_dir_all(root.join("modules/sub")).unwrap();
        std::fs::write(root.join("modules/sub/main.tf"), "").unwrap();
        std::fs::create_dir_all(root.join(".terraform/providers")).unwrap();
        std::fs::write(root.join(".terraform/providers/bin"), "x").unwrap();

        let archive = pack(root).unwrap();

        let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(&archive[..]))
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["main.tf", "modules/sub/main.tf"]);
    }

    #[test]
    fn packing_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), "").unwrap();
        std::os::unix::fs::symlink("main.tf", dir.path().join("link.tf")).unwrap();
        assert!(
            pack(dir.path())
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
    }
}
