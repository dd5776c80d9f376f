//! Command line: `serve`, `migrate`, `org create`, `token create`, `keys …`, `backup`, `restore`.
//!
//! Everything but `serve` works directly on the configured database, for bootstrap and scripts.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::{AppState, load_keyring};
use crate::auth::{Principal, Role};
use crate::config::{Config, Overrides};
use crate::db::Db;
use crate::names::OrgName;

#[derive(Debug, Parser)]
#[command(
    name = "terrace",
    version,
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
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage master encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the lock backend (the `locks` setting).
    #[command(subcommand)]
    Locks(LocksCommand),
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
    /// Module registry client: publish a module directory to a Terrace server.
    #[command(subcommand)]
    Module(crate::registry::modules::ModuleCommand),
    /// Provider network mirror client: upload a `terraform providers mirror` directory.
    #[command(subcommand)]
    Mirror(crate::registry::mirror::MirrorCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// Externally visible base URL.
    #[arg(long)]
    public_url: Option<String>,
    /// Largest accepted state body, e.g. 256MiB.
    #[arg(long)]
    max_body_size: Option<String>,
    /// PEM certificate (chain) to serve HTTPS with.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a local CA and certificate generated under the data dir.
    #[arg(long)]
    dev_tls: bool,
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create { name: String },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an org token and print it (only the token) on stdout.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["admin", "write", "plan", "read", "outputs"])]
        role: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime such as 30d or 12h; no expiry when absent.
        #[arg(long)]
        expires_in: Option<String>,
        /// Act for this team: its role (capped by --role) and policies apply.
        #[arg(long)]
        team: Option<String>,
        /// Limit the token to resources matching a glob, e.g. `workspace:prod-*` (repeatable).
        #[arg(long)]
        scope: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (or add an existing one to another org). The password is read from
    /// stdin; when stdin is empty or a terminal, an invitation link is printed instead.
    Create {
        name: String,
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["admin", "write", "plan", "read", "outputs"])]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random master key (base64 of 32 bytes).
    Generate,
    /// Re-wrap every data key under the current master key (online; objects are not rewritten).
    Rotate,
    /// Show which master key ids wrap how many blobs.
    Status,
    /// Start signing login tokens with a new key. Tokens signed by older keys keep working
    /// until they expire, unless `--retire-previous` revokes them all at once.
    RotateLogin {
        #[arg(long)]
        retire_previous: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LocksCommand {
    /// Create the DynamoDB lock table the `locks` setting names (an existing one is fine).
    Init,
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

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.global.config.as_deref(), &cli.overrides())?;
    crate::telemetry::init(config.log_format);
    match cli.command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            database(&config).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Org(OrgCommand::Create { name }) => {
            let name = OrgName::parse_new(&name)?;
            let db = database(&config).await?;
            crate::orgs::create_org(&db, &name).await?;
            eprintln!("created organization {name}");
            Ok(())
        }
        Command::Token(TokenCommand::Create {
            org,
            role,
            name,
            expires_in,
            team,
            scope,
        }) => {
            let org = OrgName::parse(&org)?;
            let role: Role = role.parse()?;
            let expires_at = crate::orgs::routes::expiry_from(expires_in.as_deref())?;
            let db = database(&config).await?;
            let spec = crate::orgs::TokenSpec {
                team: team.as_deref(),
                scopes: (!scope.is_empty()).then_some(scope),
                expires_at,
                ..crate::orgs::TokenSpec::new(&name, role)
            };
            let created = crate::orgs::create_token(&db, &Principal::System, &org, spec).await?;
            println!("{}", created.token);
            Ok(())
        }
        Command::User(UserCommand::Create { name, org, role }) => {
            let org = OrgName::parse(&org)?;
            let name = crate::names::UserName::parse(&name)?;
            let role: Role = role.parse()?;
            let password = read_password_from_stdin()?;
            let db = database(&config).await?;
            let base_url = config.public_url.clone().unwrap_or_else(|| {
                let scheme = if config.tls_cert.is_some() || config.dev_tls {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", config.listen)
            });
            let created = crate::identity::users::add_member(
                &db,
                &Principal::System,
                &org,
                &name,
                role,
                password.as_deref(),
                base_url.trim_end_matches('/'),
            )
            .await?;
            match created.invitation_url {
                Some(url) => println!("{url}"),
                None => eprintln!("created user {name} in {org} as {}", role.as_str()),
            }
            Ok(())
        }
        Command::Sweep { grace, dry_run } => {
            let grace = humantime::parse_duration(&grace)
                .map_err(|e| anyhow::anyhow!("--grace: {e}"))
                .and_then(|d| Ok(chrono::Duration::from_std(d)?))?;
            let (db, blobs) = stores(&config).await?;
            let report = crate::sweep::sweep(&db, &blobs, grace, dry_run).await?;
            for key in &report.deleted {
                println!("{key}");
            }
            eprintln!(
                "{} objects, {} unreferenced: {} {}, {} younger than the grace period kept",
                report.objects,
                report.orphans,
                report.deleted.len(),
                if dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                },
                report.kept_young
            );
            Ok(())
        }
        Command::Backup { to } => {
            let to = crate::backup::Location::parse(&to)?;
            // Objects are copied still encrypted: no master key is needed or loaded.
            let keys = std::sync::Arc::new(crate::crypto::Keyring::from_base64(
                &crate::crypto::generate_key()?,
                &[],
            )?);
            let db = database(&config).await?;
            let blobs = crate::blob::BlobStore::from_url(&config.storage_url()?, keys)?;
            let manifest = crate::backup::backup(&db, &blobs, &to).await?;
            let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
            eprintln!(
                "backed up {rows} rows and {} objects ({} bytes) to {}; it needs master key id(s) {}",
                manifest.blobs.count,
                manifest.blobs.bytes,
                to,
                manifest.key_ids.join(", ")
            );
            if !manifest.blobs.missing_objects.is_empty() {
                eprintln!(
                    "{} blobs were deleted while the backup ran and are not in it: {}",
                    manifest.blobs.missing_objects.len(),
                    manifest.blobs.missing_objects.join(", ")
                );
            }
            Ok(())
        }
        Command::Restore { from } => {
            let from = crate::backup::Location::parse(&from)?;
            // Fail on a bad backup before creating anything (such as a key file).
            crate::backup::read_manifest(&from).await?;
            let (db, blobs) = stores(&config).await?;
            let manifest = crate::backup::restore(&db, &blobs, &from).await?;
            let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
            eprintln!(
                "restored {rows} rows and {} objects from {} (taken {} on {})",
                manifest.blobs.count, from, manifest.created_at, manifest.database
            );
            Ok(())
        }
        Command::Verify => {
            let (db, blobs) = stores(&config).await?;
            let report = crate::verify::verify(&db, &blobs).await?;
            for problem in &report.problems {
                println!(
                    "{}\t{}\t{}\t{}",
                    problem.blob_id, problem.used_by, problem.object_key, problem.problem
                );
            }
            eprintln!(
                "checked {} blobs ({} bytes of plaintext): {} problems",
                report.checked,
                report.bytes,
                report.problems.len()
            );
            if report.problems.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} blobs failed verification", report.problems.len())
            }
        }
        Command::Keys(KeysCommand::RotateLogin { retire_previous }) => {
            let keys = load_keyring(&config)?;
            let db = database(&config).await?;
            let kid = crate::auth::jwt::rotate(&db, &keys, retire_previous).await?;
            eprintln!("login tokens are now signed with key {kid}");
            Ok(())
        }
        Command::Keys(KeysCommand::Generate) => {
            println!("{}", crate::crypto::generate_key()?);
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let keys = load_keyring(&config)?;
            let db = database(&config).await?;
            let count = crate::keys::rotate(&db, &keys).await?;
            eprintln!(
                "re-wrapped {count} data keys under master key {}",
                keys.current_id()
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Status) => {
            let keys = load_keyring(&config)?;
            let db = database(&config).await?;
            println!("current key id: {}", keys.current_id());
            for (key_id, count) in crate::keys::key_usage(&db).await? {
                println!("{key_id}\t{count} blobs");
            }
            Ok(())
        }
        Command::Locks(LocksCommand::Init) => {
            match config.locks()? {
                crate::state::locks::LockSettings::Database => {
                    eprintln!("locks are kept in the metadata database; there is nothing to create")
                }
                crate::state::locks::LockSettings::DynamoDb(settings) => {
                    let locks = crate::state::locks::DynamoLocks::connect(&settings);
                    let created = locks.init().await?;
                    let done = if created { "created" } else { "already exists" };
                    eprintln!("DynamoDB lock table {} {done}", settings.table);
                }
            }
            Ok(())
        }
        Command::Module(command) => crate::registry::modules::client::run(command).await,
        Command::Mirror(command) => crate::registry::mirror::client::run(command).await,
    }
}

/// How often `serve` looks for orphaned objects and applies retention policies.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = AppState::from_config(&config).await?;
    crate::cache::spawn_listener(&app.db, app.caches.clone());
    crate::registry::spawn_download_flusher(app.clone());
    crate::sweep::spawn(app.db.clone(), app.blobs.clone(), SWEEP_INTERVAL);
    crate::state::deletion::spawn_retention(app.clone(), SWEEP_INTERVAL);
    let tls_files = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::server::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ if config.dev_tls => {
            let (files, ca) = crate::server::tls::dev_certificates(&config.data_dir.join("tls"))?;
            eprintln!(
                "serving HTTPS with a development certificate; trust it with SSL_CERT_FILE={}",
                std::path::absolute(&ca)?.display()
            );
            Some(files)
        }
        _ => None,
    };
    let tls = match &tls_files {
        Some(files) => Some(crate::server::tls::rustls_config(files).await?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, database = app.db.backend(), locks = app.locks.backend(), "terrace ready");
    // One line on stdout once bound, for scripts and tests that wait for readiness.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    crate::server::serve(listener, app, tls, crate::server::shutdown_signal()).await?;
    Ok(())
}

/// The configured database and blob store, with the configured master keys.
async fn stores(config: &Config) -> anyhow::Result<(Db, crate::blob::BlobStore)> {
    let keys = std::sync::Arc::new(load_keyring(config)?);
    let db = database(config).await?;
    let blobs = crate::blob::BlobStore::from_url(&config.storage_url()?, keys)?;
    Ok((db, blobs))
}

/// The whole of stdin without its trailing newline; `None` when empty or a terminal.
fn read_password_from_stdin() -> anyhow::Result<Option<String>> {
    use std::io::{IsTerminal, Read};
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut text = String::new();
    stdin.read_to_string(&mut text)?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    Ok((!password.is_empty()).then_some(password))
}
