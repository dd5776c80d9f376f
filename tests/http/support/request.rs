//! Requests as HTTP clients build them, and raw HTTP over a socket.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, header};
use base64::Engine;
use bytes::Bytes;

/// Builds requests the way an HTTP client would send them (Content-Length set for bodies).
pub struct RequestBuilder {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Option<Body>,
}

impl RequestBuilder {
    pub fn new(method: &str, uri: &str) -> Self {
        RequestBuilder {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            uri: uri.to_string(),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
        self
    }

    /// Basic auth with an arbitrary username and the token as password.
    pub fn basic(self, token: &str) -> Self {
        self.header("authorization", &basic_auth(token))
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        let body: Bytes = body.into();
        self.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        self.body = Some(Body::from(body));
        self
    }

    /// A body of unknown length, delivered in `chunks`, as with `Transfer-Encoding: chunked`.
    pub fn chunked(mut self, chunks: Vec<Bytes>) -> Self {
        self.headers.remove(header::CONTENT_LENGTH);
        self.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        self.body = Some(Body::from_stream(stream));
        self
    }

    pub fn build(self) -> Request<Body> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.uri)
            .body(self.body.unwrap_or_else(Body::empty))
            .unwrap();
        *request.headers_mut() = self.headers;
        request
    }
}

/// Sends raw request bytes over a fresh connection and returns the status code and the
/// whole response text (the request should say `Connection: close`).
pub async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

/// The `Authorization` header value Terraform sends for `token`.
pub fn basic_auth(token: &str) -> String {
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("terraform:{token}"));
    format!("Basic {credentials}")
}
