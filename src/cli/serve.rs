//! `terrace serve`: the server and its background jobs, until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::app::App;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<String>,
    /// Externally visible base URL.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Largest accepted state body, e.g. 256MiB.
    #[arg(long)]
    pub max_body_size: Option<String>,
    /// PEM certificate (chain) to serve HTTPS with.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a local CA and certificate generated under the data dir.
    #[arg(long)]
    pub dev_tls: bool,
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::from_config(&config).await?;
    app.start_jobs();
    let tls_files = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::app::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ if config.dev_tls => {
            let (files, ca) = crate::app::tls::dev_certificates(&config.data_dir.join("tls"))?;
            eprintln!(
                "serving HTTPS with a development certificate; trust it with SSL_CERT_FILE={}",
                std::path::absolute(&ca)?.display()
            );
            Some(files)
        }
        _ => None,
    };
    let tls = match &tls_files {
        Some(files) => Some(crate::app::tls::rustls_config(files).await?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = app.db.backend(), locks = app.state.locks.backend(), "terrace ready");
    // One line on stdout once bound, for scripts and tests that wait for readiness.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    crate::app::serve(listener, app, tls, crate::app::shutdown_signal()).await?;
    Ok(())
}
