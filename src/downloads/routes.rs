//! `GET /dl/{blob_id}/{filename}`: HTTP only.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::error::Result;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::infra::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/dl/{blob_id}/{filename}", get(download))
}

#[derive(Deserialize)]
struct LinkParams {
    expires: i64,
    signature: String,
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
    let bytes =
        super::service::open(&app, &blob_id, &filename, params.expires, &params.signature).await?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&filename)),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}
