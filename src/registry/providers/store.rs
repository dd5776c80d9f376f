//! SQL for GPG keys, signing keys, providers, versions and packages. Every statement runs on
//! both databases.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::infra::blob::StoredBlob;
use crate::infra::db::{Db, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub key_id: String,
    pub fingerprint: String,
    pub ascii_armor: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A key about to be registered.
pub struct NewKey<'a> {
    pub org_id: i64,
    pub key_id: &'a str,
    pub fingerprint: &'a str,
    pub ascii_armor: &'a str,
    pub source: &'a str,
    pub created_by: &'a str,
}

/// A blob about to be recorded with the rows that point at it.
pub struct NewBlob<'a> {
    pub blob: &'a StoredBlob,
    pub size: i64,
    pub sha256: &'a str,
}

/// A package zip of a release.
pub struct NewPackage<'a> {
    pub os: &'a str,
    pub arch: &'a str,
    pub filename: &'a str,
    pub sha256: &'a str,
    pub h1: &'a str,
    pub file: NewBlob<'a>,
}

/// A release about to be recorded.
pub struct NewRelease<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub version: &'a str,
    pub protocols: &'a str,
    pub shasums: NewBlob<'a>,
    pub signature: NewBlob<'a>,
    pub signed_by: &'a str,
    pub packages: Vec<NewPackage<'a>>,
    pub created_by: &'a str,
}

/// One platform of one version, as the versions listing needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlatformRow {
    pub version: String,
    pub protocols: String,
    pub os: String,
    pub arch: String,
}

/// A package with what its download document needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackageRow {
    pub package_id: i64,
    pub protocols: String,
    pub os: String,
    pub arch: String,
    pub filename: String,
    pub sha256: String,
    pub h1: String,
    pub blob_id: String,
    pub shasums_blob_id: String,
    pub signature_blob_id: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub blob_id: String,
    pub object_key: String,
    pub key_id_wrapped: String,
    pub wrapped_key: Vec<u8>,
}

/// Inserts a `blobs` row inside a transaction.
macro_rules! insert_blob {
    ($tx:expr, $new:expr, $now:expr) => {
        crate::infra::blob::insert_blob_row!($tx, $new.blob, $new.size, $new.sha256, $now).await?
    };
}

const KEY_COLUMNS: &str = "key_id, fingerprint, ascii_armor, source, created_at, created_by";

/// Registers a key; `Conflict` when the namespace already has it.
pub async fn insert_key(db: &Db, key: &NewKey<'_>, now: DateTime<Utc>) -> Result<KeyRow> {
    const SQL: &str = const_format::concatcp!(
        "INSERT INTO gpg_keys (org_id, key_id, fingerprint, ascii_armor, source, created_at, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        KEY_COLUMNS
    );
    let result = on_pool!(db, p => sqlx::query_as::<_, KeyRow>(SQL)
        .bind(key.org_id).bind(key.key_id).bind(key.fingerprint).bind(key.ascii_armor)
        .bind(key.source).bind(now).bind(key.created_by)
        .fetch_one(p).await);
    result.map_err(|e| {
        Error::from(e).or_conflict(|| {
            format!(
                "key {} is already registered for this namespace",
                key.key_id
            )
        })
    })
}

/// Keys of a namespace by key ID, one page.
pub async fn list_keys(db: &Db, org_id: i64, limit: i64, offset: i64) -> Result<Vec<KeyRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        KEY_COLUMNS,
        " FROM gpg_keys WHERE org_id = $1 ORDER BY key_id LIMIT $2 OFFSET $3"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, KeyRow>(SQL)
        .bind(org_id).bind(limit).bind(offset).fetch_all(p).await)?)
}

/// Every key of a namespace (what a download document lists).
pub async fn all_keys(db: &Db, org_id: i64) -> Result<Vec<KeyRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        KEY_COLUMNS,
        " FROM gpg_keys WHERE org_id = $1 ORDER BY key_id"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, KeyRow>(SQL).bind(org_id).fetch_all(p).await)?)
}

/// Removes a key (and the server signing key it belongs to, if any). True when it existed.
pub async fn delete_key(db: &Db, org_id: i64, key_id: &str) -> Result<bool> {
    const KEY: &str = "DELETE FROM gpg_keys WHERE org_id = $1 AND key_id = $2";
    const SIGNING: &str = "DELETE FROM registry_signing_keys WHERE org_id = $1 AND key_id = $2";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        let gone = sqlx::query(KEY).bind(org_id).bind(key_id).execute(&mut *tx).await?;
        sqlx::query(SIGNING).bind(org_id).bind(key_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(gone.rows_affected() > 0)
    })
}

/// The namespace's server signing key, if one was generated.
pub async fn find_signing_key(db: &Db, org_id: i64) -> Result<Option<SigningKeyRow>> {
    const SQL: &str = "SELECT b.id AS blob_id, b.object_key, \
        b.key_id AS key_id_wrapped, b.wrapped_key FROM registry_signing_keys s \
        JOIN blobs b ON b.id = s.blob_id WHERE s.org_id = $1";
    Ok(on_pool!(db, p => sqlx::query_as::<_, SigningKeyRow>(SQL)
        .bind(org_id).fetch_optional(p).await)?)
}

/// Records a freshly generated signing key and registers its public half, unless another
/// request got there first (then `false`, and nothing was written).
pub async fn insert_signing_key(
    db: &Db,
    secret: &NewBlob<'_>,
    public: &NewKey<'_>,
    now: DateTime<Utc>,
) -> Result<bool> {
    const SIGNING: &str = "INSERT INTO registry_signing_keys (org_id, key_id, blob_id, \
        created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO NOTHING";
    const KEY: &str = "INSERT INTO gpg_keys (org_id, key_id, fingerprint, ascii_armor, source, \
        created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
        ON CONFLICT (org_id, key_id) DO NOTHING";
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        insert_blob!(&mut *tx, secret, now);
        let done = sqlx::query(SIGNING)
            .bind(public.org_id).bind(public.key_id).bind(&secret.blob.id).bind(now)
            .execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(KEY)
            .bind(public.org_id).bind(public.key_id).bind(public.fingerprint)
            .bind(public.ascii_armor).bind(public.source).bind(now).bind(public.created_by)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// Whether `version` of provider `name` exists.
pub async fn version_exists(db: &Db, org_id: i64, name: &str, version: &str) -> Result<bool> {
    const SQL: &str = "SELECT v.id FROM providers p JOIN provider_versions v \
        ON v.provider_id = p.id WHERE p.org_id = $1 AND p.name = $2 AND v.version = $3";
    let row: Option<(i64,)> = on_pool!(db, p => sqlx::query_as(SQL)
        .bind(org_id).bind(name).bind(version).fetch_optional(p).await)?;
    Ok(row.is_some())
}

/// Records a release in one transaction: blobs, provider, version and packages. `Conflict`
/// when the version exists.
pub async fn record_release(db: &Db, release: &NewRelease<'_>, now: DateTime<Utc>) -> Result<()> {
    const PROVIDER: &str = "INSERT INTO providers (org_id, name, created_at, updated_at) \
        VALUES ($1, $2, $3, $3) ON CONFLICT (org_id, name) DO UPDATE SET updated_at = $3 \
        RETURNING id";
    const VERSION: &str = "INSERT INTO provider_versions (provider_id, version, protocols, \
        shasums_blob_id, signature_blob_id, signed_by, created_at, created_by) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";
    const PACKAGE: &str = "INSERT INTO provider_packages (version_id, os, arch, filename, \
        sha256, h1, size, blob_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    let result: std::result::Result<(), sqlx::Error> = on_pool!(db, p => {
        let mut tx = p.begin().await?;
        insert_blob!(&mut *tx, release.shasums, now);
        insert_blob!(&mut *tx, release.signature, now);
        for package in &release.packages {
            insert_blob!(&mut *tx, package.file, now);
        }
        let (provider_id,): (i64,) = sqlx::query_as(PROVIDER)
            .bind(release.org_id).bind(release.name).bind(now)
            .fetch_one(&mut *tx).await?;
        let (version_id,): (i64,) = sqlx::query_as(VERSION)
            .bind(provider_id).bind(release.version).bind(release.protocols)
            .bind(&release.shasums.blob.id).bind(&release.signature.blob.id)
            .bind(release.signed_by).bind(now).bind(release.created_by)
            .fetch_one(&mut *tx).await?;
        for package in &release.packages {
            sqlx::query(PACKAGE)
                .bind(version_id).bind(package.os).bind(package.arch).bind(package.filename)
                .bind(package.sha256).bind(package.h1).bind(package.file.size)
                .bind(&package.file.blob.id)
                .execute(&mut *tx).await?;
        }
        tx.commit().await
    });
    result.map_err(|e| {
        Error::from(e).or_conflict(|| {
            format!(
                "version {} of provider {} already exists",
                release.version, release.name
            )
        })
    })
}

/// Every (version, platform) of provider `name`.
pub async fn list_platforms(db: &Db, org_id: i64, name: &str) -> Result<Option<Vec<PlatformRow>>> {
    const PROVIDER: &str = "SELECT id FROM providers WHERE org_id = $1 AND name = $2";
    const SQL: &str = "SELECT v.version, v.protocols, k.os, k.arch FROM provider_versions v \
        JOIN provider_packages k ON k.version_id = v.id WHERE v.provider_id = $1 \
        ORDER BY v.id, k.os, k.arch";
    let provider: Option<(i64,)> = on_pool!(db, p => sqlx::query_as(PROVIDER)
        .bind(org_id).bind(name).fetch_optional(p).await)?;
    let Some((provider_id,)) = provider else {
        return Ok(None);
    };
    let rows = on_pool!(db, p => sqlx::query_as::<_, PlatformRow>(SQL)
        .bind(provider_id).fetch_all(p).await)?;
    Ok(Some(rows))
}

const PACKAGE_COLUMNS: &str = "k.id AS package_id, v.protocols, k.os, k.arch, \
    k.filename, k.sha256, k.h1, k.blob_id, v.shasums_blob_id, v.signature_blob_id";

const PACKAGE_FROM: &str = " FROM providers p JOIN provider_versions v ON v.provider_id = p.id \
    JOIN provider_packages k ON k.version_id = v.id";

/// One package of one version.
pub async fn find_package(
    db: &Db,
    org_id: i64,
    name: &str,
    version: &str,
    os: &str,
    arch: &str,
) -> Result<Option<PackageRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        PACKAGE_COLUMNS,
        PACKAGE_FROM,
        " WHERE p.org_id = $1 AND p.name = $2 AND v.version = $3 AND k.os = $4 AND k.arch = $5"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, PackageRow>(SQL)
        .bind(org_id).bind(name).bind(version).bind(os).bind(arch)
        .fetch_optional(p).await)?)
}

/// Every package of one version (the mirror's archive list).
pub async fn version_packages(
    db: &Db,
    org_id: i64,
    name: &str,
    version: &str,
) -> Result<Vec<PackageRow>> {
    const SQL: &str = const_format::concatcp!(
        "SELECT ",
        PACKAGE_COLUMNS,
        PACKAGE_FROM,
        " WHERE p.org_id = $1 AND p.name = $2 AND v.version = $3 ORDER BY k.os, k.arch"
    );
    Ok(on_pool!(db, p => sqlx::query_as::<_, PackageRow>(SQL)
        .bind(org_id).bind(name).bind(version).fetch_all(p).await)?)
}

/// Adds `count` to a package's download counter.
pub async fn add_downloads(db: &Db, package_id: i64, count: i64) -> Result<()> {
    const SQL: &str = "UPDATE provider_packages SET downloads = downloads + $1 WHERE id = $2";
    on_pool!(db, p => sqlx::query(SQL).bind(count).bind(package_id).execute(p).await.map(|_| ()))?;
    Ok(())
}
