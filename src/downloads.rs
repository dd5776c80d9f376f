//! `GET /dl/{blob_id}/{filename}`: serves any blob through a signed, expiring link (see
//! `links`), for the clients that download without credentials. Features mint the links.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::blob::StoredBlob;
use crate::crypto::Envelope;
use crate::db::{Db, on_pool};
use crate::error::{Error, Result};
use crate::server::extract::{ApiPath, ApiQuery};

pub fn routes() -> Router<AppState> {
    Router::new().route("/dl/{blob_id}/{filename}", get(download))
}

/// The path part of a download link for `blob_id` served as `filename`.
pub fn link_path(blob_id: &str, filename: &str) -> String {
    format!("/dl/{blob_id}/{filename}")
}

/// An absolute signed URL for a blob: `{base}/dl/{blob_id}/{filename}?expires=…&signature=…`.
pub fn signed_url(app: &AppState, base_url: &str, blob_id: &str, filename: &str) -> String {
    let path = link_path(blob_id, filename);
    format!("{base_url}{}", crate::links::sign(app.blobs.keys(), &path))
}

#[derive(Deserialize)]
struct LinkParams {
    expires: i64,
    signature: String,
}

#[derive(sqlx::FromRow)]
struct BlobRow {
    id: String,
    object_key: String,
    key_id: String,
    wrapped_key: Vec<u8>,
}

async fn find_blob(db: &Db, id: &str) -> Result<Option<StoredBlob>> {
    const SQL: &str = "SELECT id, object_key, key_id, wrapped_key FROM blobs WHERE id = $1";
    let row =
        on_pool!(db, p => sqlx::query_as::<_, BlobRow>(SQL).bind(id).fetch_optional(p).await)?;
    Ok(row.map(|row| StoredBlob {
        id: row.id,
        object_key: row.object_key,
        envelope: Envelope {
            key_id: row.key_id,
            wrapped_key: row.wrapped_key,
        },
    }))
}

fn content_type(filename: &str) -> &'static str {
    if filename.ends_with(".zip") {
        "application/zip"
    } else if filename.ends_with(".tar.gz") || filename.ends_with(".tgz") {
        "application/gzip"
    } else if filename.ends_with("SHA256SUMS") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

async fn download(
    State(app): State<AppState>,
    ApiPath((blob_id, filename)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<LinkParams>,
) -> Result<Response> {
    let path = link_path(&blob_id, &filename);
    crate::links::verify(app.blobs.keys(), &path, params.expires, &params.signature)?;
    let blob = find_blob(&app.db, &blob_id)
        .await?
        .ok_or(Error::NotFound("download"))?;
    let bytes = app.blobs.get(&blob).await?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&filename)),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}
