//! The master keyring: configured keys, or a key file generated in the data dir on first start.

use anyhow::Context;

use crate::config::Config;
use crate::infra::crypto::Keyring;

/// The configured master keys, or the key file in the data dir (generated on first start).
pub fn load_keyring(config: &Config) -> anyhow::Result<Keyring> {
    if let Some((current, previous)) = config.encryption_keys() {
        return Keyring::from_base64(&current, &previous).context("TERRACE_ENCRYPTION_KEY");
    }
    let path = config.key_file();
    if !path.exists() {
        write_new_key_file(&path)?;
        tracing::warn!(
            path = %path.display(),
            "generated a new master encryption key; back it up: without it no state can be read"
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let current = lines
        .next()
        .with_context(|| format!("key file {} is empty", path.display()))?;
    let mut previous: Vec<String> = lines.map(str::to_string).collect();
    previous.extend(config.previous_keys());
    Keyring::from_base64(current, &previous).with_context(|| format!("key file {}", path.display()))
}

/// Writes a fresh key file readable by the owner only.
pub fn write_new_key_file(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = crate::infra::crypto::generate_key()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    Ok(())
}
