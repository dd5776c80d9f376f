//! `terrace migrate`, `verify`, `backup`, `restore` and `sweep`: operations on the configured
//! database and blob store.

use super::{database, stores};
use crate::config::Config;

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    database(config).await?;
    eprintln!("migrations applied");
    Ok(())
}

pub async fn sweep(config: &Config, grace: String, dry_run: bool) -> anyhow::Result<()> {
    let grace = humantime::parse_duration(&grace)
        .map_err(|e| anyhow::anyhow!("--grace: {e}"))
        .and_then(|d| Ok(chrono::Duration::from_std(d)?))?;
    let (db, blobs) = stores(config).await?;
    let report = crate::ops::sweep::sweep(&db, &blobs, grace, dry_run).await?;
    for key in &report.deleted {
        println!("{key}");
    }
    eprintln!(
        "{} objects, {} unreferenced: {} {}, {} younger than the grace period kept",
        report.objects,
        report.orphans,
        report.deleted.len(),
        if dry_run {
            "would be deleted"
        } else {
            "deleted"
        },
        report.kept_young
    );
    Ok(())
}

pub async fn backup(config: &Config, to: String) -> anyhow::Result<()> {
    let to = crate::ops::backup::Location::parse(&to)?;
    // Objects are copied still encrypted: no master key is needed or loaded.
    let db = database(config).await?;
    let blobs = crate::infra::blob::RawObjects::from_url(&config.storage_url()?)?;
    let manifest = crate::ops::backup::backup(&db, &blobs, &to).await?;
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    eprintln!(
        "backed up {rows} rows and {} objects ({} bytes) to {}; it needs master key id(s) {}",
        manifest.blobs.count,
        manifest.blobs.bytes,
        to,
        manifest.key_ids.join(", ")
    );
    if !manifest.blobs.missing_objects.is_empty() {
        eprintln!(
            "{} blobs were deleted while the backup ran and are not in it: {}",
            manifest.blobs.missing_objects.len(),
            manifest.blobs.missing_objects.join(", ")
        );
    }
    Ok(())
}

pub async fn restore(config: &Config, from: String) -> anyhow::Result<()> {
    let from = crate::ops::backup::Location::parse(&from)?;
    // Fail on a bad backup before creating anything (such as a key file).
    crate::ops::backup::read_manifest(&from).await?;
    let (db, blobs) = stores(config).await?;
    let manifest = crate::ops::backup::restore(&db, &blobs, &from).await?;
    let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
    eprintln!(
        "restored {rows} rows and {} objects from {} (taken {} on {})",
        manifest.blobs.count, from, manifest.created_at, manifest.database
    );
    Ok(())
}

pub async fn verify(config: &Config) -> anyhow::Result<()> {
    let (db, blobs) = stores(config).await?;
    let report = crate::ops::verify::verify(&db, &blobs).await?;
    for problem in &report.problems {
        println!(
            "{}\t{}\t{}\t{}",
            problem.blob_id, problem.used_by, problem.object_key, problem.problem
        );
    }
    eprintln!(
        "checked {} blobs ({} bytes of plaintext): {} problems",
        report.checked,
        report.bytes,
        report.problems.len()
    );
    if report.problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} blobs failed verification", report.problems.len())
    }
}
