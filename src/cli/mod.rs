//! Command line, one file per command group. Everything but `serve` and the client commands
//! (`module`, `mirror`, `blueprint`) works directly on the configured database, for bootstrap
//! and scripts.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::infra::db::Db;

pub mod blueprint;
pub mod client;
mod config;
mod costs;
mod keys;
pub mod mirror;
pub mod module;
mod ops;
mod orgs;
mod runner;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "terrace",
    version = crate::LONG_VERSION,
    about = "Terraform state backend and registry server"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// TOML settings file (also TERRACE_CONFIG).
    #[arg(long, global = true, env = "TERRACE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the embedded database, blobs and key file [default: ./terrace-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// sqlite://… or postgres://… [default: sqlite in the data dir].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// file:///… [default: blobs/ in the data dir].
    #[arg(long, global = true)]
    storage_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage organizations.
    #[command(subcommand)]
    Org(orgs::OrgCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(orgs::TokenCommand),
    /// Manage users.
    #[command(subcommand)]
    User(orgs::UserCommand),
    /// Manage master encryption keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage the lock backend (the `locks` setting).
    #[command(subcommand)]
    Locks(keys::LocksCommand),
    /// Check that every stored blob exists, decrypts and matches its recorded SHA-256;
    /// prints each failure and exits non-zero if there is any.
    Verify,
    /// Write a consistent snapshot (metadata, encrypted objects, manifest of the master key
    /// ids it needs; never the keys) into an empty or new directory, or an empty object-store
    /// prefix, while the server runs.
    Backup {
        /// A directory, or an `s3://bucket/prefix`, `az://container/prefix`,
        /// `gs://bucket/prefix` or `file:///dir` URL (cloud settings from `AWS_*`, `AZURE_*`,
        /// `GOOGLE_*`, as for `storage_url`).
        #[arg(long, value_name = "PATH|URL")]
        to: String,
    },
    /// Restore a backup onto an empty installation; the configured keyring must hold every
    /// master key the backup's manifest names.
    Restore {
        /// The backup's directory or URL, as given to `backup --to`.
        #[arg(long, value_name = "PATH|URL")]
        from: String,
    },
    /// Delete objects in the blob store that no database row refers to and that are older
    /// than the grace period (uploads that never committed). `serve` also does this hourly.
    Sweep {
        /// Minimum age of an unreferenced object, e.g. 24h.
        #[arg(long, default_value = "24h")]
        grace: String,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show or check the effective configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Module registry client: publish a module directory to a Terrace server.
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// Provider network mirror client: upload a `terraform providers mirror` directory.
    #[command(subcommand)]
    Mirror(mirror::MirrorCommand),
    /// Claim runs from a Terrace server and execute them with Terraform.
    Runner(runner::RunnerArgs),
    /// Manage runner tokens.
    #[command(subcommand)]
    RunnerToken(runner::RunnerTokenCommand),
    /// Blueprint catalogue client: publish a module version and its catalogue entry.
    #[command(subcommand)]
    Blueprint(blueprint::BlueprintCommand),
    /// Price catalogues: import a price file as an org's new catalogue version.
    #[command(subcommand)]
    Prices(costs::PricesCommand),
    /// Actual spend: import a FOCUS billing export.
    #[command(subcommand)]
    Costs(costs::CostsCommand),
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let mut overrides = Overrides {
            data_dir: self.global.data_dir.clone(),
            database_url: self.global.database_url.clone(),
            storage_url: self.global.storage_url.clone(),
            ..Default::default()
        };
        if let Command::Serve(serve) = &self.command {
            overrides.listen = serve.listen.clone();
            overrides.public_url = serve.public_url.clone();
            overrides.max_body_size = serve.max_body_size.clone();
            overrides.tls_cert = serve.tls_cert.clone();
            overrides.tls_key = serve.tls_key.clone();
            overrides.dev_tls = serve.dev_tls.then_some(true);
        }
        overrides
    }
}

async fn database(config: &Config) -> anyhow::Result<Db> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let db = Db::connect(&config.database_url()).await?;
    db.migrate().await?;
    Ok(db)
}

/// The configured database (migrated) and blob store, with the configured master keys.
async fn stores(config: &Config) -> anyhow::Result<(Db, crate::infra::blob::BlobStore)> {
    let (db, blobs) = crate::app::open_stores(config).await?;
    db.migrate().await?;
    Ok((db, blobs))
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = cli.overrides();
    let config = Config::load(cli.global.config.as_deref(), &overrides)?;
    crate::infra::telemetry::init(config.log_format, config.tracing()?.as_ref());
    let result = match cli.command {
        Command::Serve(_) => serve::serve(config).await,
        Command::Migrate => ops::migrate(&config).await,
        Command::Org(command) => orgs::org(&config, command).await,
        Command::Token(command) => orgs::token(&config, command).await,
        Command::User(command) => orgs::user(&config, command).await,
        Command::Keys(command) => keys::keys(&config, command).await,
        Command::Locks(command) => keys::locks(&config, command).await,
        Command::Verify => ops::verify(&config).await,
        Command::Backup { to } => ops::backup(&config, to).await,
        Command::Restore { from } => ops::restore(&config, from).await,
        Command::Sweep { grace, dry_run } => ops::sweep(&config, grace, dry_run).await,
        Command::Config(command) => {
            config::run(&config, cli.global.config.as_deref(), &overrides, command)
        }
        Command::Module(command) => module::run(command).await,
        Command::Mirror(command) => mirror::run(command).await,
        Command::Runner(args) => runner::runner(args).await,
        Command::RunnerToken(command) => runner::runner_token(&config, command).await,
        Command::Blueprint(command) => blueprint::run(command).await,
        Command::Prices(command) => costs::prices(&config, command).await,
        Command::Costs(command) => costs::costs(&config, command).await,
    };
    // Queued spans go out before the process ends.
    let _ = tokio::task::spawn_blocking(crate::infra::telemetry::shutdown).await;
    result
}
