//! The HTTP client of the CLI commands that talk to a running server (`module publish`,
//! `mirror import`).

use std::path::Path;

use anyhow::Context;

/// A client that also trusts `ca_cert` (a PEM file), e.g. the `--dev-tls` CA.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut client =
        reqwest::Client::builder().user_agent(concat!("terrace/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_cert {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", ca.display()))?;
        client = client.tls_certs_merge([cert]);
    }
    client.build().context("building the HTTP client")
}

/// The messages of an `{"errors": [...]}` body, or the body itself.
pub fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| body.to_string())
}
