//! Reading request bodies: capped, hashed as they arrive, Content-MD5 checked, one copy.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use base64::Engine;
use http_body_util::BodyExt;
use md5::Digest;

use crate::error::{Error, Result};
use crate::infra::blob::PlainBuffer;

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn expected_md5(headers: &HeaderMap) -> Result<Option<Vec<u8>>> {
    let Some(value) = headers.get("content-md5") else {
        return Ok(None);
    };
    let decoded = value
        .to_str()
        .ok()
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .filter(|d| d.len() == 16)
        .ok_or_else(|| Error::invalid("Content-MD5 is not a base64 MD5 digest"))?;
    Ok(Some(decoded))
}

/// A request body read chunk by chunk: capped at `limit` bytes, hashed with SHA-256 (and MD5
/// when the client sent Content-MD5) on the way, so it can be passed on as it arrives.
pub struct BodyReader {
    body: Body,
    limit: u64,
    read: u64,
    sha: ring::digest::Context,
    md5: Option<(md5::Md5, Vec<u8>)>,
}

impl BodyReader {
    /// Refuses at once a body announced larger than `limit`, or a malformed Content-MD5.
    pub fn new(headers: &HeaderMap, body: Body, limit: u64) -> Result<Self> {
        if content_length(headers).is_some_and(|n| n > limit) {
            return Err(Error::TooLarge(limit));
        }
        Ok(BodyReader {
            body,
            limit,
            read: 0,
            sha: ring::digest::Context::new(&ring::digest::SHA256),
            md5: expected_md5(headers)?.map(|expected| (md5::Md5::new(), expected)),
        })
    }

    /// The next chunk, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|_| Error::invalid("could not read the request body"))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            self.read += chunk.len() as u64;
            if self.read > self.limit {
                return Err(Error::TooLarge(self.limit));
            }
            self.sha.update(&chunk);
            if let Some((md5, _)) = self.md5.as_mut() {
                md5.update(&chunk);
            }
            return Ok(Some(chunk));
        }
        Ok(None)
    }

    /// After the last chunk: checks Content-MD5 and answers the body's SHA-256 (hex).
    pub fn finish(self) -> Result<String> {
        if let Some((md5, expected)) = self.md5
            && md5.finalize().as_slice() != expected.as_slice()
        {
            return Err(Error::invalid("Content-MD5 does not match the body"));
        }
        Ok(hex::encode(self.sha.finish()))
    }
}

/// Reads a whole body of at most `limit` bytes into memory, computing SHA-256 (and checking
/// MD5 when the client sent Content-MD5) on the way.
pub async fn read_state_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<ReceivedBody> {
    // Reserving the announced length (already capped) avoids growing by doubling, which would
    // briefly hold two copies; pages a short body never touches are never made resident.
    let mut buf = PlainBuffer::with_capacity(content_length(headers).unwrap_or(0) as usize);
    let mut reader = BodyReader::new(headers, body, limit)?;
    while let Some(chunk) = reader.next().await? {
        buf.extend(&chunk);
    }
    Ok(ReceivedBody {
        buf,
        sha256: reader.finish()?,
    })
}

/// Reads a small body (lock info) of at most `limit` bytes, checking Content-MD5.
pub async fn read_small_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Vec<u8>> {
    let received = read_state_body(headers, body, limit).await?;
    Ok(received.buf.plaintext().to_vec())
}

/// A state body as received: plaintext with room for encryption, and its SHA-256.
pub struct ReceivedBody {
    pub buf: PlainBuffer,
    pub sha256: String,
}

impl ReceivedBody {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        ReceivedBody {
            buf: PlainBuffer::from_plaintext(bytes),
            sha256: crate::infra::crypto::sha256_hex(bytes),
        }
    }
}
