//! SQL for mirrored provider archives. Every statement runs on both databases.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::infra::blob::StoredBlob;
use crate::infra::db::{Db, on_pool};

/// `hostname/namespace/type` of a mirrored provider.
pub struct Address<'a> {
    pub hostname: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArchiveRow {
    pub os: String,
    pub arch: String,
    pub filename: String,
    pub sha256: String,
    pub h1: String,
    pub blob_id: String,
}

/// An archive about to be recorded.
pub struct NewArchive<'a> {
    pub address: Address<'a>,
    pub version: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
    pub filename: &'a str,
    pub sha256: &'a str,
    pub h1: &'a str,
    pub size: i64,
    pub blob: &'a StoredBlob,
    pub created_by: &'a str,
}

const COLUMNS: &str = "os, arch, filename, sha256, h1, blob_id";

/// The versions mirrored for a provider (unordered, distinct).
pub async fn versions(db: &Db, a: &Address<'_>) -> Result<Vec<String>> {
    const SQL: &str = "SELECT DISTINCT version FROM mirror_packages \
        WHERE hostname = $1 AND namespace = $2 AND name = $3";
    let rows: Vec<(String,)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(a.hostname).bind(a.namespace).bind(a.name).fetch_all(p).await)?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// The archives of one mirrored version.
pub async fn archives(db: &Db, a: &Address<'_>, version: &str) -> Result<Vec<ArchiveRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM mirror_packages WHERE hostname = $1 AND namespace = $2 AND name = $3 \
          AND version = $4 ORDER BY os, arch"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, ArchiveRow>(SQL)
        .bind(a.hostname).bind(a.namespace).bind(a.name).bind(version).fetch_all(p).await)?)
}

/// One archive.
pub async fn find_archive(
    db: &Db,
    a: &Address<'_>,
    version: &str,
    os: &str,
    arch: &str,
) -> Result<Option<ArchiveRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        COLUMNS,
        " FROM mirror_packages WHERE hostname = $1 AND namespace = $2 AND name = $3 \
          AND version = $4 AND os = $5 AND arch = $6"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, ArchiveRow>(SQL)
        .bind(a.hostname).bind(a.namespace).bind(a.name).bind(version).bind(os).bind(arch)
        .fetch_optional(p).await)?)
}

/// Records an archive and its blob in one transaction; `Conflict` when the platform of that
/// version is already mirrored.
pub async fn insert_archive(db: &Db, new: &NewArchive<'_>, now: DateTime<Utc>) -> Result<()> {
    const ARCHIVE: &str = "INSERT INTO mirror_packages (hostname, namespace, name, version, os, \
        arch, filename, sha256, h1, size, blob_id, created_at, created_by) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
    let result: std::result::Result<(), sqlx::Error> = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        crate::infra::blob::insert_blob_row!(&mut *tx, new.blob, new.size, new.sha256, now).await?;
        sqlx::query(ARCHIVE)
            .bind(new.address.hostname).bind(new.address.namespace).bind(new.address.name)
            .bind(new.version).bind(new.os).bind(new.arch).bind(new.filename)
            .bind(new.sha256).bind(new.h1).bind(new.size).bind(&new.blob.id).bind(now)
            .bind(new.created_by)
            .execute(&mut *tx).await?;
        tx.commit().await
    });
    result.map_err(|e| {
        Error::from(e)
            .or_conflict(|| "this platform of this version is already mirrored".to_string())
    })
}
