//! `terrace runner` (a separate process that claims runs over HTTP and runs Terraform) and
//! `terrace runner-token create`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::identity::auth::{Principal, Role};
use crate::names::OrgName;

#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// The Terrace server's base URL.
    #[arg(long, env = "TERRACE_RUNNER_URL")]
    url: String,
    /// A runner token (`terrace runner-token create`).
    #[arg(long, env = "TERRACE_RUNNER_TOKEN", hide_env_values = true)]
    token: String,
    /// The Terraform binary: a path, or a name on PATH.
    #[arg(long, default_value = "terraform")]
    terraform: String,
    /// How many runs this process executes at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// A PEM CA certificate to trust besides the system's (SSL_CERT_FILE also works).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// This runner's name, shown on its runs [default: host name and process id].
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunnerTokenCommand {
    /// Create a runner token (it can only claim the org's runs) and print it.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, default_value = "runner")]
        name: String,
    },
}

pub async fn runner(args: RunnerArgs) -> anyhow::Result<()> {
    let terraform = crate::runner::find_terraform(&args.terraform)
        .with_context(|| format!("no Terraform found at {}", args.terraform))?;
    let transport =
        crate::runner::http::Http::new(&args.url, &args.token, args.ca_cert.as_deref())?;
    let base = args.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.concurrency.max(1) {
        let settings = crate::runner::Settings {
            name: format!("{base}-{n}"),
            terraform: terraform.clone(),
            grace: std::time::Duration::from_secs(30),
        };
        workers.spawn(crate::runner::work(transport.clone(), settings));
    }
    tracing::info!(url = %args.url, concurrency = args.concurrency, "runner started");
    tokio::select! {
        _ = workers.join_next() => {}
        () = crate::app::shutdown_signal() => {}
    }
    Ok(())
}

pub async fn runner_token(config: &Config, command: RunnerTokenCommand) -> anyhow::Result<()> {
    match command {
        RunnerTokenCommand::Create { org, name } => {
            let org = OrgName::parse(&org)?;
            let db = super::database(config).await?;
            let spec = crate::identity::orgs::TokenSpec::new(&name, Role::Runner);
            let created =
                crate::identity::orgs::create_token(&db, &Principal::System, &org, spec).await?;
            println!("{}", created.token);
            Ok(())
        }
    }
}
