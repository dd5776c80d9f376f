//! HTTP plumbing every feature's routes share: extractors whose rejections use the one error
//! shape, and capped body reading. Knows no feature.

pub mod body;
pub mod extract;

use axum::http::HeaderName;

/// The request id header, set (or kept) on the way in and echoed on the way out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// JSON bodies of the management API are small; state bodies are read with their own cap.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;
