//! The HTTP transport of `terrace runner`: the runner protocol under `/api/v1/runner/`, with
//! a runner token.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::deployments::views::{Claim, ClaimRequest, Finish, HeartbeatReply};

const LEASE: &str = "terrace-lease";

#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Http {
    /// A transport to `url` with `token`, trusting `ca_cert` (or `SSL_CERT_FILE`) besides the
    /// system's roots.
    pub fn new(url: &str, token: &str, ca_cert: Option<&Path>) -> anyhow::Result<Http> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("terrace-runner/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(120));
        let extra = ca_cert
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("SSL_CERT_FILE").map(Into::into));
        if let Some(ca) = extra {
            let pem = std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM bundle", ca.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Http {
            client: builder.build().context("building the HTTP client")?,
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        traced(
            self.client
                .post(format!("{}/api/v1/runner{path}", self.url))
                .bearer_auth(&self.token),
        )
    }
}

/// Carries the current trace (`traceparent`) to the server, so its spans join the run's.
fn traced(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match crate::infra::telemetry::current_traceparent() {
        Some(parent) => request.header("traceparent", parent),
        None => request,
    }
}

async fn check(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    anyhow::bail!("{status}: {body}")
}

impl super::Transport for Http {
    async fn claim(&self, runner: &str, wait: Duration) -> anyhow::Result<Option<Claim>> {
        let req = ClaimRequest {
            runner: runner.to_string(),
            wait_ms: Some(wait.as_millis() as u64),
        };
        let response = check(self.post("/claim").json(&req).send().await?).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        Ok(Some(response.json().await?))
    }

    async fn heartbeat(&self, run: i64, lease: &str) -> anyhow::Result<HeartbeatReply> {
        let response = self
            .post(&format!("/runs/{run}/heartbeat"))
            .header(LEASE, lease)
            .send()
            .await?;
        Ok(check(response).await?.json().await?)
    }

    async fn log(&self, run: i64, lease: &str, offset: i64, data: Vec<u8>) -> anyhow::Result<i64> {
        let response = traced(self.client.put(format!(
            "{}/api/v1/runner/runs/{run}/logs?offset={offset}",
            self.url
        )))
        .bearer_auth(&self.token)
        .header(LEASE, lease)
        .body(data)
        .send()
        .await?;
        let response = check(response).await?;
        Ok(response
            .headers()
            .get("terrace-next-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset))
    }

    async fn finish(&self, run: i64, lease: &str, done: Finish) -> anyhow::Result<()> {
        let response = self
            .post(&format!("/runs/{run}/finish"))
            .header(LEASE, lease)
            .json(&done)
            .send()
            .await?;
        check(response).await?;
        Ok(())
    }
}
