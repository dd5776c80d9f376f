//! `terrace prices import` and `terrace costs import`: price files and FOCUS billing exports
//! read from a path, an `http(s)://` URL or an object store (`s3://`, `gs://`, `az://`,
//! settings from `AWS_*`, `GOOGLE_*`, `AZURE_*`), streamed into the configured database.

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::config::Config;
use crate::costs::catalogue::Format;
use crate::identity::auth::Principal;
use crate::names::OrgName;

#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Import a price file as the org's new catalogue version.
    Import {
        #[arg(value_name = "PATH|URL")]
        from: String,
        /// aws-csv, aws-json, oiq or terrace.
        #[arg(long)]
        format: String,
        #[arg(long)]
        org: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CostsCommand {
    /// Import a FOCUS 1.0–1.2 billing export (CSV, plain or gzip).
    Import {
        #[arg(value_name = "PATH|URL")]
        from: String,
        #[arg(long)]
        org: String,
        /// The source each billing period is replaced per (default: the lines'
        /// `ProviderName/BillingAccountId`).
        #[arg(long)]
        source: Option<String>,
    },
}

type Input = BoxStream<'static, std::io::Result<Bytes>>;

/// The bytes at `from`, as a stream.
async fn open(from: &str) -> anyhow::Result<Input> {
    if !from.contains("://") {
        let file = tokio::fs::File::open(from)
            .await
            .with_context(|| format!("opening {from}"))?;
        return Ok(tokio_util::io::ReaderStream::new(file).boxed());
    }
    let url = url::Url::parse(from).with_context(|| format!("invalid URL {from}"))?;
    match url.scheme() {
        "http" | "https" => {
            let resp = super::client::http_client(None)?
                .get(url)
                .send()
                .await?
                .error_for_status()?;
            Ok(resp.bytes_stream().map_err(std::io::Error::other).boxed())
        }
        _ => {
            let (dir, name) = from
                .rsplit_once('/')
                .filter(|(_, name)| !name.is_empty())
                .ok_or_else(|| anyhow::anyhow!("{from} does not name a file"))?;
            let dir = url::Url::parse(dir).with_context(|| format!("invalid URL {from}"))?;
            let store = crate::infra::blob::store_from_url(&dir, std::env::vars())?;
            let object = store
                .get(&object_store::path::Path::from(name))
                .await
                .with_context(|| format!("reading {from}"))?;
            Ok(object.into_stream().map_err(std::io::Error::other).boxed())
        }
    }
}

fn file_name(from: &str) -> String {
    from.rsplit('/').next().unwrap_or(from).to_string()
}

async fn app(config: &Config) -> anyhow::Result<crate::app::App> {
    crate::app::App::from_config(config).await
}

pub async fn prices(config: &Config, command: PricesCommand) -> anyhow::Result<()> {
    let PricesCommand::Import { from, format, org } = command;
    let org = OrgName::parse(&org)?;
    let format = Format::parse(&format)
        .ok_or_else(|| anyhow::anyhow!("--format must be {}", Format::NAMES))?;
    let app = app(config).await?;
    let input = open(&from).await?;
    let started = std::time::Instant::now();
    let version = crate::costs::service::import_prices(
        &app.costs,
        &Principal::System,
        &org,
        format,
        &file_name(&from),
        input,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    eprintln!(
        "imported {} prices as catalogue version {} in {:.1?}",
        version.prices,
        version.version,
        started.elapsed()
    );
    println!("{}", serde_json::to_string_pretty(&version)?);
    app.audit.flush().await;
    Ok(())
}

pub async fn costs(config: &Config, command: CostsCommand) -> anyhow::Result<()> {
    let CostsCommand::Import { from, org, source } = command;
    let org = OrgName::parse(&org)?;
    let app = app(config).await?;
    let input = open(&from).await?;
    let started = std::time::Instant::now();
    let import = crate::costs::service::import_costs(
        &app.costs,
        &Principal::System,
        &org,
        &file_name(&from),
        source.as_deref(),
        input,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    let elapsed = started.elapsed();
    eprintln!(
        "imported {} lines in {:.1?} ({:.0} lines/s)",
        import.lines,
        elapsed,
        import.lines as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!("{}", serde_json::to_string_pretty(&import)?);
    app.audit.flush().await;
    Ok(())
}

fn describe(e: &crate::error::Error) -> String {
    match e {
        crate::error::Error::Unprocessable(problems) => problems.join("; "),
        other => other.to_string(),
    }
}
