//! Blob store over `object_store`, with every object encrypted on the way in.
//!
//! The database is the source of truth for which blob is current; objects are written once
//! under fresh keys and never overwritten.

mod key;

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tracing::Instrument;

pub use key::{BlobKey, BlobKind};

use crate::error::{Error, Result};
use crate::infra::crypto::{Envelope, Keyring, SEGMENT, Sealer};
use crate::infra::metrics::{BlobErrors, BlobOperationLabels, CacheCounters, Metrics};

/// Encrypting blob store.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    keys: Arc<Keyring>,
    /// Decrypted objects by blob id. Objects are immutable, so entries never go stale, on
    /// any replica.
    cache: Option<Arc<PlainCache>>,
    /// Remote stores take large objects in parts of `PART_SIZE` (local ones only when
    /// streamed, in smaller parts).
    multipart: bool,
    /// Hits and misses of `cache` (`terrace_cache_lookups_total{cache="state_blobs"}`).
    cache_counters: CacheCounters,
    /// Failed calls to the store (`terrace_blob_store_errors_total`).
    errors: BlobErrors,
}

/// The objects of a blob store as stored (encrypted), with no keys: what a backup copies.
#[derive(Clone)]
pub struct RawObjects {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for RawObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawObjects({})", self.store)
    }
}

impl RawObjects {
    /// The objects under a storage URL, as [`BlobStore::from_url`] reads it.
    pub fn from_url(url: &str) -> anyhow::Result<RawObjects> {
        let parsed = url::Url::parse(url).with_context(|| format!("invalid storage URL {url}"))?;
        Ok(RawObjects {
            store: store_from_url(&parsed, std::env::vars())?,
        })
    }

    /// The stored (encrypted) bytes of an object as they are, `None` when it is gone: for
    /// backups, which copy objects without decrypting them.
    #[tracing::instrument(level = "debug", name = "blob.get", skip_all, fields(otel.kind = "client"))]
    pub async fn raw_get(&self, object_key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&Path::from(object_key)).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Why a stored blob cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The object is not in the store.
    Missing,
    /// The store failed to return it.
    Unreadable(String),
    /// Its data key cannot be unwrapped (master key not configured) or the object fails
    /// authentication (corrupted or swapped).
    Undecryptable(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Missing => f.write_str("object missing from the blob store"),
            Fault::Unreadable(e) => write!(f, "object cannot be read: {e}"),
            Fault::Undecryptable(e) => write!(f, "object does not decrypt: {e}"),
        }
    }
}

/// Remote stores fail fast and honestly: `object_store` would otherwise retry a dead store
/// for minutes while the client waits. A store that refuses connections answers 503 with
/// `Retry-After` within a second, a hung one within the request timeout, and Terraform retries.
/// A request carries at most one part (`PART_SIZE`), which the request timeout leaves ample
/// time for. `AWS_TIMEOUT`, `AZURE_TIMEOUT` or `GOOGLE_TIMEOUT` (and `…_CONNECT_TIMEOUT`)
/// override the timeouts.
const STORE_CONNECT_TIMEOUT: &str = "3s";
const STORE_REQUEST_TIMEOUT: &str = "15s";
const STORE_RETRIES: usize = 3;
const STORE_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds an S3, Azure or GCS store with Terrace's timeouts and bounded retries; other
/// schemes `object_store` knows are built as it builds them.
fn remote_store<K: AsRef<str>, V: Into<String>>(
    url: &url::Url,
    options: impl IntoIterator<Item = (K, V)>,
) -> object_store::Result<(Arc<dyn ObjectStore>, Path)> {
    use object_store::{ObjectStoreScheme, RetryConfig};
    let retry = RetryConfig {
        max_retries: STORE_RETRIES,
        retry_timeout: STORE_RETRY_TIMEOUT,
        ..Default::default()
    };
    let defaults = [
        ("connect_timeout", STORE_CONNECT_TIMEOUT),
        ("timeout", STORE_REQUEST_TIMEOUT),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let options: Vec<(String, String)> = defaults
        .into_iter()
        .chain(
            options
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into())),
        )
        .collect();
    // Keys the store does not know (other environment variables) are skipped, as
    // `object_store::parse_url_opts` does.
    macro_rules! configured {
        ($builder:ty) => {{
            options.iter().fold(
                <$builder>::new().with_url(url.to_string()),
                |builder, (key, value)| match key.parse() {
                    Ok(k) => builder.with_config(k, value.clone()),
                    Err(_) => builder,
                },
            )
        }};
    }
    macro_rules! build {
        ($builder:ty) => {{ Arc::new(configured!($builder).with_retry(retry).build()?) as Arc<dyn ObjectStore> }};
    }
    let (scheme, path) = ObjectStoreScheme::parse(url)?;
    let path = Path::parse(path)?;
    let store = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            use object_store::aws::AmazonS3ConfigKey as Key;
            let given = |wanted: Key| {
                options
                    .iter()
                    .filter(|(k, _)| k.parse::<Key>().ok() == Some(wanted))
                    .map(|(_, v)| v.clone())
                    .next_back()
            };
            let mut builder = configured!(object_store::aws::AmazonS3Builder);
            // Keys given explicitly (options or AWS_ACCESS_KEY_ID) are used as they are;
            // otherwise the AWS default chain finds credentials as the AWS CLI would.
            let unsigned = given(Key::SkipSignature).is_some_and(|v| v == "true");
            if given(Key::AccessKeyId).is_none() && !unsigned {
                builder = builder.with_credentials(Arc::new(
                    crate::infra::aws::S3Credentials::new(given(Key::Region)),
                ));
            }
            Arc::new(builder.with_retry(retry).build()?) as Arc<dyn ObjectStore>
        }
        ObjectStoreScheme::MicrosoftAzure => build!(object_store::azure::MicrosoftAzureBuilder),
        ObjectStoreScheme::GoogleCloudStorage => {
            build!(object_store::gcp::GoogleCloudStorageBuilder)
        }
        _ => {
            let (store, prefix) = object_store::parse_url_opts(url, options)?;
            return Ok((Arc::from(store), prefix));
        }
    };
    Ok((store, path))
}

/// The store a storage URL names: `file://` a local directory (created if missing, written
/// with fsync), anything else through [`remote_store`], narrowed to the URL's path. Shared by
/// the blob store and backups so both read URLs and settings the same way.
pub(crate) fn store_from_url<K: AsRef<str>, V: Into<String>>(
    url: &url::Url,
    options: impl IntoIterator<Item = (K, V)>,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|_| anyhow::anyhow!("invalid file storage URL {url}"))?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating blob directory {}", dir.display()))?;
            // fsync files and directories: a write is acknowledged only once durable.
            Arc::new(LocalFileSystem::new_with_prefix(&dir)?.with_fsync(true))
        }
        _ => {
            let (store, prefix) = remote_store(url, options)
                .with_context(|| format!("unsupported storage URL {url}"))?;
            if prefix.as_ref().is_empty() {
                store
            } else {
                Arc::new(PrefixStore::new(store, prefix))
            }
        }
    })
}

/// How long a readiness probe waits for the store.
pub const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Objects larger than this go to remote stores as multipart uploads, in parts of this size.
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;

/// Streamed writes to a local store go to disk in parts of this size, so memory stays small.
const LOCAL_PART_SIZE: usize = 1024 * 1024;

/// Ciphertext is handed to the store in pieces of about this size.
const FLUSH_SIZE: usize = 256 * 1024;

/// Objects larger than this are read back as a stream (and not cached).
pub const STREAM_ABOVE: u64 = 1024 * 1024;

/// Writes a new object. On a remote store (`multipart`) one larger than `PART_SIZE` goes up
/// in parts of that size, so no request outlasts the store's request timeout; anything else
/// goes in one put that refuses to overwrite. A multipart upload cannot refuse, so its key
/// must be fresh (or checked first).
pub(crate) async fn put_new(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: Bytes,
    multipart: bool,
) -> object_store::Result<()> {
    put_new_stream(
        store,
        path,
        futures::stream::once(async { Ok(bytes) }),
        multipart,
    )
    .await
}

/// [`put_new`] from a stream of chunks (a file being read, say): with two parts in flight at
/// most, memory stays bounded whatever the object's size.
pub(crate) async fn put_new_stream(
    store: &dyn ObjectStore,
    path: &Path,
    chunks: impl futures::Stream<Item = object_store::Result<Bytes>>,
    multipart: bool,
) -> object_store::Result<()> {
    use futures::TryStreamExt;
    let part_size = if multipart { PART_SIZE } else { usize::MAX };
    let mut writer = ObjectWriter::new(store, path.clone(), part_size);
    let mut chunks = std::pin::pin!(chunks);
    let written = async {
        while let Some(chunk) = chunks.try_next().await? {
            writer.write(chunk).await?;
        }
        Ok(())
    }
    .await;
    match written {
        Ok(()) => writer.finish().await,
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// A new object written as its bytes arrive: kept in memory up to `part_size`, then sent in
/// parts of that size with at most two in flight. An object that never outgrows one part is
/// written with one put that refuses to overwrite.
pub(crate) struct ObjectWriter<'a> {
    store: &'a dyn ObjectStore,
    path: Path,
    part_size: usize,
    head: Vec<Bytes>,
    head_len: usize,
    parts: Option<object_store::WriteMultipart>,
}

impl<'a> ObjectWriter<'a> {
    pub(crate) fn new(store: &'a dyn ObjectStore, path: Path, part_size: usize) -> Self {
        ObjectWriter {
            store,
            path,
            part_size,
            head: Vec::new(),
            head_len: 0,
            parts: None,
        }
    }

    pub(crate) async fn write(&mut self, chunk: Bytes) -> object_store::Result<()> {
        if let Some(parts) = &mut self.parts {
            parts.wait_for_capacity(2).await?;
            parts.put(chunk);
            return Ok(());
        }
        self.head_len += chunk.len();
        self.head.push(chunk);
        if self.head_len > self.part_size {
            let upload = self.store.put_multipart(&self.path).await?;
            let mut parts =
                object_store::WriteMultipart::new_with_chunk_size(upload, self.part_size);
            for chunk in self.head.drain(..) {
                parts.put(chunk);
            }
            self.head_len = 0;
            self.parts = Some(parts);
        }
        Ok(())
    }

    pub(crate) async fn finish(self) -> object_store::Result<()> {
        if let Some(parts) = self.parts {
            return parts.finish().await.map(|_| ());
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = self.head.into_iter().collect::<PutPayload>();
        self.store.put_opts(&self.path, payload, options).await?;
        Ok(())
    }

    /// Gives up: an upload in parts is aborted, so no part outlives the failed write.
    pub(crate) async fn abort(self) {
        if let Some(parts) = self.parts
            && let Err(e) = parts.abort().await
        {
            tracing::warn!(error = %e, "could not abort a multipart upload");
        }
    }
}

type PlainCache = quick_cache::sync::Cache<String, Bytes, ByteWeighter>;

#[derive(Clone)]
struct ByteWeighter;

impl quick_cache::Weighter<String, Bytes> for ByteWeighter {
    fn weight(&self, key: &String, value: &Bytes) -> u64 {
        (key.len() + value.len()) as u64
    }
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.store)
    }
}

/// Records a stored blob's row (size, SHA-256 of the plaintext, wrapped data key) inside the
/// caller's transaction, the one that commits the row pointing at the blob:
/// `insert_blob_row!(&mut *tx, &blob, size, sha256, now).await?`.
macro_rules! insert_blob_row {
    ($tx:expr, $blob:expr, $size:expr, $sha256:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO blobs (id, object_key, size, sha256, key_id, wrapped_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&$blob.id)
        .bind(&$blob.object_key)
        .bind($size)
        .bind($sha256)
        .bind(&$blob.envelope.key_id)
        .bind(&$blob.envelope.wrapped_key)
        .bind($now)
        .execute($tx)
    };
}
pub(crate) use insert_blob_row;

/// What the metadata row must remember about a stored blob.
#[derive(Clone, Debug)]
pub struct StoredBlob {
    pub id: String,
    pub object_key: String,
    pub envelope: Envelope,
}

/// A buffer being filled with plaintext, to be stored whole.
pub struct PlainBuffer(Vec<u8>);

impl PlainBuffer {
    /// An empty buffer expecting about `capacity` bytes of plaintext.
    pub fn with_capacity(capacity: usize) -> Self {
        PlainBuffer(Vec::with_capacity(capacity))
    }

    pub fn from_plaintext(plain: &[u8]) -> Self {
        PlainBuffer(plain.to_vec())
    }

    pub fn extend(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
    }

    pub fn plaintext(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A blob being written as its plaintext arrives: encrypted segment by segment and sent to
/// the store in parts, so memory stays constant whatever its size. Nothing refers to it until
/// the caller records the [`StoredBlob`] that `finish` returns; a failed write is `abort`ed.
pub struct BlobUpload<'a> {
    blobs: &'a BlobStore,
    id: String,
    object_key: String,
    envelope: Envelope,
    sealer: Sealer,
    writer: ObjectWriter<'a>,
    out: Vec<u8>,
    /// One span for the whole upload, which spans many writes.
    span: tracing::Span,
}

impl BlobUpload<'_> {
    /// Adds plaintext.
    pub async fn write(&mut self, plain: &[u8]) -> Result<()> {
        self.sealer
            .update(plain, &mut self.out)
            .map_err(Error::Internal)?;
        if self.out.len() >= FLUSH_SIZE {
            let chunk = Bytes::from(std::mem::replace(
                &mut self.out,
                Vec::with_capacity(FLUSH_SIZE + SEGMENT),
            ));
            let written = self.writer.write(chunk).instrument(self.span.clone()).await;
            self.blobs.failed("put", written)?;
        }
        Ok(())
    }

    /// Seals the last segment and completes the object.
    pub async fn finish(self) -> Result<StoredBlob> {
        let BlobUpload {
            blobs,
            id,
            object_key,
            envelope,
            sealer,
            mut writer,
            mut out,
            span,
        } = self;
        sealer.finish(&mut out).map_err(Error::Internal)?;
        let written = async {
            writer.write(Bytes::from(out)).await?;
            writer.finish().await
        }
        .instrument(span)
        .await;
        blobs.failed("put", written)?;
        Ok(StoredBlob {
            id,
            object_key,
            envelope,
        })
    }

    /// Gives the write up, leaving nothing behind in the store.
    pub async fn abort(self) {
        self.writer.abort().instrument(self.span).await;
    }
}

/// An object's bytes as a stream. A local file is read 1 MiB at a time, the next chunk while
/// the last one is decrypted and sent: `into_stream` reads it 8 KiB at a time, each on a
/// blocking thread, which held a download near 140 MB/s.
fn object_stream(
    found: object_store::GetResult,
) -> futures::stream::BoxStream<'static, object_store::Result<Bytes>> {
    use futures::StreamExt;
    const CHUNK: u64 = 1 << 20;
    let (file, range) = match found.payload {
        object_store::GetResultPayload::File(file, _) => (Arc::new(file), found.range),
        object_store::GetResultPayload::Stream(stream) => return stream,
    };
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: e,
    };
    let starts = (range.start..range.end).step_by(CHUNK as usize);
    futures::stream::iter(starts)
        .map(move |pos| {
            let file = file.clone();
            let len = (range.end - pos).min(CHUNK) as usize;
            async move {
                let buf = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0; len];
                    file.read_exact_at(&mut buf, pos)?;
                    Ok(buf)
                })
                .await
                .map_err(|e| failed(e.into()))?
                .map_err(|e| failed(e.into()))?;
                Ok(Bytes::from(buf))
            }
        })
        .buffered(2)
        .boxed()
}

/// A blob's plaintext as read: whole (small, or from the cache) or as a stream of chunks.
pub enum Plain {
    Whole(Bytes),
    Stream {
        len: u64,
        chunks: futures::stream::BoxStream<'static, Result<Bytes>>,
    },
}

impl BlobStore {
    /// Builds the store from `file:///dir`, `memory://`, `s3://bucket/prefix`,
    /// `az://container/prefix` or `gs://bucket/prefix`; cloud stores take their settings
    /// from the usual environment variables (`AWS_*`, `AZURE_*`, `GOOGLE_*`).
    pub fn from_url(url: &str, keys: Arc<Keyring>) -> anyhow::Result<Self> {
        Self::from_url_with_options(url, std::env::vars(), keys)
    }

    /// Like [`BlobStore::from_url`] with explicit `object_store` options (keys such as
    /// `aws_endpoint` or `azure_storage_use_emulator`, case-insensitive) instead of the
    /// environment.
    pub fn from_url_with_options<K: AsRef<str>, V: Into<String>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
        keys: Arc<Keyring>,
    ) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| format!("invalid storage URL {url}"))?;
        let multipart = !matches!(parsed.scheme(), "file" | "memory");
        let store = store_from_url(&parsed, options)?;
        Ok(BlobStore {
            store,
            keys,
            cache: None,
            multipart,
            cache_counters: CacheCounters::default(),
            errors: BlobErrors::default(),
        })
    }

    /// Counts cache lookups and failed calls in `metrics`.
    pub fn counted(mut self, metrics: &Metrics) -> Self {
        self.cache_counters = CacheCounters::new(&metrics.cache_lookups, "state_blobs");
        self.errors = metrics.blob_errors.clone();
        self
    }

    /// Counts a failed call (not finding an object that may be absent is no failure).
    fn failed<T, E>(
        &self,
        operation: &'static str,
        result: std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if result.is_err() {
            self.errors
                .get_or_create(&BlobOperationLabels { operation })
                .inc();
        }
        result
    }

    /// Keeps up to `bytes` of decrypted objects in memory (0 turns the cache off).
    pub fn with_cache(mut self, bytes: u64) -> Self {
        self.cache = (bytes > 0).then(|| {
            let items = (bytes / (64 * 1024)).clamp(16, 100_000) as usize;
            Arc::new(PlainCache::with_weighter(items, bytes, ByteWeighter))
        });
        self
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// Starts writing a new blob under a fresh key; the object is never overwritten.
    pub fn start_put(&self, key: BlobKey) -> Result<BlobUpload<'_>> {
        let id = key.blob_id().to_string();
        let object_key = key.to_path();
        let (sealer, envelope) = self.keys.sealer(id.as_bytes()).map_err(Error::Internal)?;
        // Keys are fresh ids, so an upload in parts cannot overwrite anything either.
        let part_size = if self.multipart {
            PART_SIZE
        } else {
            LOCAL_PART_SIZE
        };
        let writer = ObjectWriter::new(&*self.store, Path::from(object_key.as_str()), part_size);
        Ok(BlobUpload {
            blobs: self,
            id,
            object_key,
            envelope,
            sealer,
            writer,
            out: Vec::with_capacity(FLUSH_SIZE + SEGMENT),
            span: tracing::debug_span!("blob.put", otel.kind = "client"),
        })
    }

    /// Encrypts and durably stores `buf` under a fresh key; the object is never overwritten.
    pub async fn put(&self, key: BlobKey, buf: PlainBuffer) -> Result<StoredBlob> {
        let mut upload = self.start_put(key)?;
        if let Err(e) = upload.write(buf.plaintext()).await {
            upload.abort().await;
            return Err(e);
        }
        drop(buf);
        upload.finish().await
    }

    /// Reads and decrypts a blob.
    #[tracing::instrument(level = "debug", name = "blob.get", skip_all, fields(otel.kind = "client"))]
    pub async fn get(&self, blob: &StoredBlob) -> Result<Bytes> {
        if let Some(hit) = self.cached(blob) {
            return Ok(hit);
        }
        // Boxed: the store's future is large, and a cache hit (the hot path) needs none.
        Box::pin(self.fetch(blob)).await
    }

    /// Reads and decrypts a blob from the store, and caches it.
    async fn fetch(&self, blob: &StoredBlob) -> Result<Bytes> {
        let object = async {
            self.store
                .get(&Path::from(blob.object_key.as_str()))
                .await?
                .bytes()
                .await
        }
        .await;
        let data = Vec::from(self.failed("get", object)?);
        self.open_and_cache(blob, data)
    }

    /// A cache hit, counted either way.
    fn cached(&self, blob: &StoredBlob) -> Option<Bytes> {
        let cache = self.cache.as_ref()?;
        let hit = cache.get(&blob.id);
        self.cache_counters.record(hit.is_some());
        hit
    }

    /// Decrypts a whole object and keeps the plaintext in the cache.
    fn open_and_cache(&self, blob: &StoredBlob, object: Vec<u8>) -> Result<Bytes> {
        let plain = self
            .keys
            .open_object(&blob.envelope, object, blob.id.as_bytes())
            .map_err(Error::Internal)?;
        if let Some(cache) = &self.cache {
            cache.insert(blob.id.clone(), plain.clone());
        }
        Ok(plain)
    }

    /// Reads a blob for sending on: a small one whole (and cached), a large one as a stream
    /// decrypted segment by segment, so sending it costs constant memory.
    #[tracing::instrument(level = "debug", name = "blob.get", skip_all, fields(otel.kind = "client"))]
    pub async fn read(&self, blob: &StoredBlob) -> Result<Plain> {
        use futures::TryStreamExt;
        if let Some(hit) = self.cached(blob) {
            return Ok(Plain::Whole(hit));
        }
        let found = self.store.get(&Path::from(blob.object_key.as_str())).await;
        let found = self.failed("get", found)?;
        let size = found.meta.size;
        let len = crate::infra::crypto::stream_plaintext_len(size);
        let mut inner = object_stream(found);
        let mut head = Vec::new();
        while (head.len() as u64) < size.min(STREAM_ABOVE + 1) {
            match self.failed("get", inner.try_next().await)? {
                Some(chunk) => head.extend_from_slice(&chunk),
                None => break,
            }
        }
        let opener = if (head.len() as u64) <= STREAM_ABOVE {
            None
        } else {
            self.keys
                .opener(&blob.envelope, &head, blob.id.as_bytes())
                .map_err(Error::Internal)?
        };
        let (Some(mut opener), Some(len)) = (opener, len) else {
            // Small, or written before objects were segmented: read whole.
            let rest: Vec<Bytes> = self.failed("get", inner.try_collect().await)?;
            for chunk in rest {
                head.extend_from_slice(&chunk);
            }
            return self.open_and_cache(blob, head).map(Plain::Whole);
        };
        let mut first = Vec::new();
        opener.update(&head, &mut first).map_err(Error::Internal)?;
        let errors = self.errors.clone();
        let chunks = futures::stream::try_unfold(
            (Some(opener), inner, first),
            move |(opener, mut inner, mut out)| {
                let errors = errors.clone();
                async move {
                    let Some(mut opener) = opener else {
                        return Ok(None);
                    };
                    loop {
                        if !out.is_empty() {
                            return Ok(Some((Bytes::from(out), (Some(opener), inner, Vec::new()))));
                        }
                        let next = inner.try_next().await.inspect_err(|_| {
                            errors
                                .get_or_create(&BlobOperationLabels { operation: "get" })
                                .inc();
                        })?;
                        match next {
                            Some(chunk) => {
                                opener.update(&chunk, &mut out).map_err(Error::Internal)?
                            }
                            None => {
                                opener.finish(&mut out).map_err(Error::Internal)?;
                                return Ok(Some((Bytes::from(out), (None, inner, Vec::new()))));
                            }
                        }
                    }
                }
            },
        );
        Ok(Plain::Stream {
            len,
            chunks: Box::pin(chunks),
        })
    }

    /// Reads and decrypts a blob from the store itself (never the cache), saying what is wrong
    /// when that fails: for `terrace verify`.
    pub async fn check(&self, blob: &StoredBlob) -> std::result::Result<Bytes, Fault> {
        let object = match self.store.get(&Path::from(blob.object_key.as_str())).await {
            Ok(found) => found.bytes().await,
            Err(e) => Err(e),
        };
        let data = match object {
            Ok(bytes) => Vec::from(bytes),
            Err(object_store::Error::NotFound { .. }) => return Err(Fault::Missing),
            Err(e) => return Err(Fault::Unreadable(e.to_string())),
        };
        self.keys
            .open_object(&blob.envelope, data, blob.id.as_bytes())
            .map_err(|e| Fault::Undecryptable(format!("{e:#}")))
    }

    /// The same objects without the keys.
    pub fn raw(&self) -> RawObjects {
        RawObjects {
            store: self.store.clone(),
        }
    }

    /// Stores already encrypted bytes under `object_key` (restore). Never overwrites: an
    /// existing object with the same bytes is accepted, a different one is an error.
    #[tracing::instrument(level = "debug", name = "blob.put", skip_all, fields(otel.kind = "client"))]
    pub async fn raw_put(&self, object_key: &str, bytes: Bytes) -> Result<()> {
        let path = Path::from(object_key);
        // An upload in parts cannot refuse an existing object, so that is looked for first.
        let in_parts = self.multipart && bytes.len() > PART_SIZE;
        let exists = in_parts
            && match self.store.head(&path).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
        if !exists {
            match put_new(&*self.store, &path, bytes.clone(), self.multipart).await {
                Ok(()) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let existing = self.store.get(&path).await?.bytes().await?;
        if existing == bytes {
            Ok(())
        } else {
            Err(Error::Internal(anyhow::anyhow!(
                "object {object_key} already exists with other content"
            )))
        }
    }

    /// Best-effort removal of an object whose row is gone (or was never committed).
    #[tracing::instrument(level = "debug", name = "blob.delete", skip_all, fields(otel.kind = "client"))]
    pub async fn discard(&self, blob: &StoredBlob) {
        if let Some(cache) = &self.cache {
            cache.remove(&blob.id);
        }
        let deleted = self
            .store
            .delete(&Path::from(blob.object_key.as_str()))
            .await;
        if let Err(err) = self.failed("delete", deleted) {
            tracing::warn!(error = %err, "could not discard uncommitted blob; the sweep will");
        }
    }

    /// Removes a blob after its row failed to commit, unless `err` leaves the commit's outcome
    /// unknown (the row may exist and must not lose its blob; the sweep removes the object if
    /// it does not).
    pub async fn discard_unless_committed(&self, blob: &StoredBlob, err: &Error) {
        if err.may_have_committed() {
            tracing::warn!("keeping a blob whose row may have been committed");
        } else {
            self.discard(blob).await;
        }
    }

    /// Every object in the store with its last change, for the orphan sweep.
    pub fn list_objects(
        &self,
    ) -> impl futures::Stream<Item = Result<(String, chrono::DateTime<chrono::Utc>)>> + '_ {
        use futures::StreamExt;
        self.store.list(None).map(|item| {
            self.failed("list", item)
                .map(|meta| (meta.location.to_string(), meta.last_modified))
                .map_err(Error::from)
        })
    }

    /// Deletes an object nothing refers to.
    #[tracing::instrument(level = "debug", name = "blob.delete", skip_all, fields(otel.kind = "client"))]
    pub async fn delete_object(&self, object_key: &str) -> Result<()> {
        match self.store.delete(&Path::from(object_key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => self.failed("delete", Err(e)).map_err(Error::from),
        }
    }

    /// Readiness: the store answers a listing within `PING_TIMEOUT` (a hung store must not
    /// hang the probe).
    pub async fn ping(&self) -> Result<()> {
        let prefix = Path::from("state");
        let listing = self.store.list_with_delimiter(Some(&prefix));
        let answer = match tokio::time::timeout(PING_TIMEOUT, listing).await {
            Ok(listed) => listed.map(|_| ()).map_err(Error::from),
            Err(_) => Err(Error::Unavailable(anyhow::anyhow!(
                "blob store did not answer within {PING_TIMEOUT:?}"
            ))),
        };
        self.failed("list", answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Keyring> {
        let key = crate::infra::crypto::generate_key().unwrap();
        Arc::new(Keyring::from_base64(&key, &[]).unwrap())
    }

    #[test]
    fn cloud_storage_urls_build_with_their_settings() {
        let none: [(&str, &str); 0] = [];
        let s3 = [
            ("aws_region", "eu-west-1"),
            ("aws_endpoint", "http://127.0.0.1:9"),
        ];
        assert!(BlobStore::from_url_with_options("s3://bucket/prefix", s3, keys()).is_ok());
        let azure = [
            ("azure_storage_account_name", "acct"),
            ("azure_storage_account_key", "a2V5"),
        ];
        assert!(BlobStore::from_url_with_options("az://container/prefix", azure, keys()).is_ok());
        let gcs = [("google_bucket", "bucket")];
        let built = BlobStore::from_url_with_options("gs://bucket/prefix", gcs, keys());
        assert!(built.is_ok(), "{:?}", built.err());
        // A setting of the wrong kind is rejected, not ignored.
        let bad = [("aws_allow_http", "perhaps")];
        assert!(BlobStore::from_url_with_options("s3://bucket", bad, keys()).is_err());
        let unknown = BlobStore::from_url_with_options("ftp://host/x", none, keys());
        assert!(format!("{:#}", unknown.err().unwrap()).contains("unsupported storage URL"));
        assert!(
            BlobStore::from_url_with_options("s3://bucket", none, keys())
                .unwrap()
                .multipart
        );
    }

    #[tokio::test]
    async fn cache_hits_misses_and_failed_calls_are_counted() {
        let metrics = Metrics::new();
        let store = BlobStore::from_url("memory://", keys())
            .unwrap()
            .with_cache(1 << 20)
            .counted(&metrics);
        let key = BlobKey::new_state_version(1);
        let blob = store
            .put(key, PlainBuffer::from_plaintext(b"{}"))
            .await
            .unwrap();
        store.get(&blob).await.unwrap();
        store.get(&blob).await.unwrap();
        store.delete_object(&blob.object_key).await.unwrap();
        store.cache.as_ref().unwrap().remove(&blob.id);
        assert!(store.get(&blob).await.is_err());
        let text = metrics.render_text();
        for line in [
            r#"terrace_cache_lookups_total{cache="state_blobs",result="hit"} 1"#,
            r#"terrace_cache_lookups_total{cache="state_blobs",result="miss"} 2"#,
            r#"terrace_blob_store_errors_total{operation="get"} 1"#,
            r#"terrace_blob_store_errors_total{operation="put"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    fn fresh_key() -> (BlobKey, String) {
        let key = BlobKey::new_state_version(1);
        let object_key = key.to_path();
        (key, object_key)
    }

    #[tokio::test]
    async fn large_blobs_stream_back_and_whole_message_blobs_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = BlobStore::from_url(&url, keys())
            .unwrap()
            .with_cache(1 << 30);
        let plain: Vec<u8> = (0..3 * STREAM_ABOVE as usize + 7)
            .map(|i| i as u8)
            .collect();
        let blob = store
            .put(
                BlobKey::new_state_version(1),
                PlainBuffer::from_plaintext(&plain),
            )
            .await
            .unwrap();
        let Plain::Stream { len, chunks } = store.read(&blob).await.unwrap() else {
            panic!("a large blob is streamed");
        };
        assert_eq!(len, plain.len() as u64);
        use futures::TryStreamExt;
        let parts: Vec<Bytes> = chunks.try_collect().await.unwrap();
        assert!(parts.concat() == plain);
        assert!(store.get(&blob).await.unwrap() == plain);
        assert!(store.check(&blob).await.unwrap() == plain);

        // An object in the format written before segmenting (one GCM message).
        let (key, object_key) = fresh_key();
        let id = key.blob_id().to_string();
        let mut buf = vec![0u8; crate::infra::crypto::HEADER_LEN];
        buf.extend_from_slice(b"{\"serial\":1}");
        let envelope = store.keys.seal(&mut buf, id.as_bytes()).unwrap();
        store.raw_put(&object_key, Bytes::from(buf)).await.unwrap();
        let old = StoredBlob {
            id,
            object_key,
            envelope,
        };
        let Plain::Whole(bytes) = store.read(&old).await.unwrap() else {
            panic!("a small blob is read whole");
        };
        assert_eq!(&bytes[..], b"{\"serial\":1}");
        assert_eq!(&store.check(&old).await.unwrap()[..], b"{\"serial\":1}");
    }

    #[tokio::test]
    async fn a_large_raw_object_goes_up_in_parts_and_is_never_overwritten() {
        let store = BlobStore {
            store: Arc::new(object_store::memory::InMemory::new()),
            keys: keys(),
            cache: None,
            multipart: true,
            cache_counters: CacheCounters::default(),
            errors: BlobErrors::default(),
        };
        let big = Bytes::from(vec![7u8; PART_SIZE + 1]);
        store.raw_put("state/1/big", big.clone()).await.unwrap();
        assert_eq!(
            store.raw().raw_get("state/1/big").await.unwrap(),
            Some(big.clone())
        );
        // Again with the same bytes (a second restore) is accepted, other bytes are not.
        store.raw_put("state/1/big", big).await.unwrap();
        let other = Bytes::from(vec![8u8; PART_SIZE + 1]);
        assert!(store.raw_put("state/1/big", other).await.is_err());
        let small = Bytes::from_static(b"small");
        store.raw_put("state/1/small", small.clone()).await.unwrap();
        store.raw_put("state/1/small", small).await.unwrap();
        let different = Bytes::from_static(b"different");
        assert!(store.raw_put("state/1/small", different).await.is_err());
    }

    #[tokio::test]
    async fn a_store_that_refuses_connections_fails_within_seconds() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let s3 = [
            ("aws_region", "us-east-1"),
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ];
        let store = BlobStore::from_url_with_options("s3://bucket/prefix", s3, keys()).unwrap();
        let started = std::time::Instant::now();
        let put = store
            .put(
                BlobKey::new_state_version(1),
                PlainBuffer::from_plaintext(b"{}"),
            )
            .await;
        assert!(matches!(put, Err(Error::Unavailable(_))), "{put:?}");
        assert!(matches!(store.ping().await, Err(Error::Unavailable(_))));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    }
}
