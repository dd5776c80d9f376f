//! Where a backup lives: a local directory (a path or a `file://` URL) or a prefix in an
//! object store (`s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`), and
//! the reads and writes of files in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// Where a backup is written or read.
#[derive(Debug, Clone)]
pub struct Location(Place);

#[derive(Debug, Clone)]
enum Place {
    Dir(PathBuf),
    Remote {
        /// For messages: the URL without query or credentials.
        url: String,
        store: Arc<dyn ObjectStore>,
    },
}

impl Location {
    /// A local directory.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Location(Place::Dir(path.into()))
    }

    /// A path or URL; object stores take their settings from the environment (`AWS_*`,
    /// `AZURE_*`, `GOOGLE_*`), as `storage_url` does.
    pub fn parse(path_or_url: &str) -> anyhow::Result<Self> {
        Self::parse_with_options(path_or_url, std::env::vars())
    }

    /// Like [`Location::parse`] with explicit `object_store` options (such as `aws_endpoint`)
    /// instead of the environment.
    pub fn parse_with_options<K: AsRef<str>, V: Into<String>>(
        path_or_url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> anyhow::Result<Self> {
        // Only `scheme://…` is a URL: a plain path may well contain a colon.
        if !path_or_url.contains("://") {
            return Ok(Self::dir(path_or_url));
        }
        let mut url = url::Url::parse(path_or_url)
            .with_context(|| format!("invalid backup URL {path_or_url}"))?;
        match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| anyhow!("{path_or_url} is not a local directory URL"))?;
                Ok(Self::dir(dir))
            }
            "memory" => bail!("a backup in memory:// would vanish with this process"),
            _ => {
                let store = crate::infra::blob::store_from_url(&url, options)?;
                url.set_query(None);
                url.set_fragment(None);
                // Only URLs without a host refuse these, and they have nothing to strip.
                let _ = url.set_password(None);
                let _ = url.set_username("");
                Ok(Location(Place::Remote {
                    url: url.to_string(),
                    store,
                }))
            }
        }
    }

    /// Opens an existing backup.
    pub(super) fn open(&self) -> anyhow::Result<Target> {
        match &self.0 {
            Place::Dir(dir) => {
                ensure!(dir.is_dir(), "{} is not a directory", dir.display());
                let store = LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening backup directory {}", dir.display()))?;
                Ok(Target {
                    store: Arc::new(store),
                    dir: Some(dir.clone()),
                })
            }
            Place::Remote { store, .. } => Ok(Target {
                store: store.clone(),
                dir: None,
            }),
        }
    }

    /// Opens the location for a new backup: a local directory must be empty or not exist
    /// (it is created), a prefix must hold no object.
    pub(super) async fn create(&self) -> anyhow::Result<Target> {
        match &self.0 {
            Place::Dir(dir) => {
                prepare_dir(dir)?;
                // fsync files and their directories: a finished backup survives a crash.
                let store = LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening backup directory {}", dir.display()))?
                    .with_fsync(true);
                Ok(Target {
                    store: Arc::new(store),
                    dir: Some(dir.clone()),
                })
            }
            Place::Remote { url, store } => {
                if let Some(first) = store.list(None).next().await {
                    first.with_context(|| format!("listing {url}"))?;
                    bail!("{url} is not empty; back up into a new or empty prefix");
                }
                Ok(Target {
                    store: store.clone(),
                    dir: None,
                })
            }
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Place::Dir(dir) => write!(f, "{}", dir.display()),
            Place::Remote { url, .. } => f.write_str(url),
        }
    }
}

/// An opened backup: the store rooted at it, and its directory when it is local (metadata
/// files are then written and read in place rather than staged in a temporary directory).
pub(super) struct Target {
    pub store: Arc<dyn ObjectStore>,
    pub dir: Option<PathBuf>,
}

impl Target {
    /// Remote stores take large files in parts (the blob store's rule).
    fn multipart(&self) -> bool {
        self.dir.is_none()
    }

    /// Writes a new file, never over an existing one (a second backup racing into the same
    /// target fails rather than mixing).
    pub async fn put(&self, location: &ObjectPath, bytes: Bytes) -> anyhow::Result<()> {
        crate::infra::blob::put_new(&*self.store, location, bytes, self.multipart()).await?;
        Ok(())
    }

    /// Uploads a staged file as it is read, so it is never held in memory whole.
    pub async fn upload(&self, location: &ObjectPath, file: &Path) -> anyhow::Result<()> {
        let input = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        let chunks = tokio_util::io::ReaderStream::with_capacity(input, 1024 * 1024).map_err(|e| {
            object_store::Error::Generic {
                store: "staging directory",
                source: Box::new(e),
            }
        });
        crate::infra::blob::put_new_stream(&*self.store, location, chunks, self.multipart())
            .await?;
        Ok(())
    }

    /// Downloads a file into a new local file, chunk by chunk.
    pub async fn download(&self, location: &ObjectPath, file: &Path) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut chunks = self.store.get(location).await?.into_stream();
        let mut out = tokio::fs::File::create(file)
            .await
            .with_context(|| format!("creating {}", file.display()))?;
        while let Some(chunk) = chunks.try_next().await? {
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok(())
    }

    /// A whole file, `None` when there is none.
    pub async fn get(&self, location: &ObjectPath) -> anyhow::Result<Option<Bytes>> {
        match self.store.get(location).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// `dir` must not exist or be an empty directory.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            ensure!(
                entries.next().is_none(),
                "{} is not empty; back up into a new or empty directory",
                dir.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
        }
        Err(e) => Err(e).with_context(|| format!("{} is not a usable directory", dir.display())),
    }
}

/// Makes a directory's entries durable (the files themselves were synced when written).
pub(super) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::blob::PART_SIZE;

    #[test]
    fn paths_and_urls_name_their_location() {
        let none: [(&str, &str); 0] = [];
        let local = |s: &str| match Location::parse_with_options(s, none).unwrap().0 {
            Place::Dir(dir) => dir,
            Place::Remote { url, .. } => panic!("{s} parsed as remote {url}"),
        };
        assert_eq!(local("backups/2026-01-02"), Path::new("backups/2026-01-02"));
        assert_eq!(local("/srv/backup"), Path::new("/srv/backup"));
        assert_eq!(local("file:///srv/backup"), Path::new("/srv/backup"));
        assert_eq!(local("c:backup"), Path::new("c:backup"));

        let s3 = [
            ("aws_region", "eu-west-1"),
            ("aws_endpoint", "http://127.0.0.1:9"),
        ];
        let remote = Location::parse_with_options("s3://bucket/nightly?x=1", s3).unwrap();
        assert!(matches!(remote.0, Place::Remote { .. }));
        assert_eq!(remote.to_string(), "s3://bucket/nightly");

        for bad in ["memory://", "ftp://host/x", "file://host/x"] {
            assert!(Location::parse_with_options(bad, none).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_large_staged_file_goes_up_in_parts_and_comes_back_whole() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let target = Target {
            store: store.clone(),
            dir: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up.jsonl");
        let content: Vec<u8> = (0..2 * PART_SIZE + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&file, &content).unwrap();
        let location = ObjectPath::from("metadata/big.jsonl");
        target.upload(&location, &file).await.unwrap();
        let stored = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert!(stored == content.as_slice());
        let down = dir.path().join("down.jsonl");
        target.download(&location, &down).await.unwrap();
        assert!(std::fs::read(&down).unwrap() == content);
        // Written once: a second upload to the same place fails.
        let small = dir.path().join("small.jsonl");
        std::fs::write(&small, b"{}\n").unwrap();
        let location = ObjectPath::from("metadata/small.jsonl");
        target.upload(&location, &small).await.unwrap();
        assert!(target.upload(&location, &small).await.is_err());
        assert!(target.get(&location).await.unwrap().is_some());
        let nowhere = ObjectPath::from("metadata/none.jsonl");
        assert!(target.get(&nowhere).await.unwrap().is_none());
    }
}
