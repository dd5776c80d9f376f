//! The composition root: builds the shared infrastructure and each feature's state from the
//! configuration, and the router and background jobs over them. The only place where concrete
//! backends are chosen.

mod middleware;
mod server;
pub mod tls;

use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context;

pub use server::{router, serve, shutdown_signal};

use crate::config::Config;
use crate::infra::AppState;
use crate::infra::blob::BlobStore;
use crate::infra::db::Db;
use crate::jobs::Jobs;

/// What varies between installations beyond the infrastructure.
#[derive(Debug, Default)]
pub struct Settings {
    /// Where state locks live: the database (default) or DynamoDB.
    pub locks: Option<crate::state::locks::Locks>,
    /// The org whose admins manage the provider mirror.
    pub mirror_org: Option<String>,
    pub login: crate::identity::login::LoginSettings,
    /// In-process runners and the Terraform they use (`runners`, `terraform_bin`).
    pub runners: u32,
    pub terraform_bin: String,
    /// Webhook delivery: private targets, retries, timeout, the stale-lock check.
    pub notifications: crate::notifications::Settings,
    /// Pricing rules, usage defaults and the attribution tag.
    pub costs: crate::costs::Settings,
}

/// Everything a running server holds, cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    pub infra: AppState,
    pub identity: crate::identity::Ctx,
    pub audit: crate::audit::AuditSink,
    pub state: crate::state::Ctx,
    pub registry: crate::registry::Ctx,
    pub blueprints: crate::blueprints::Ctx,
    pub deployments: crate::deployments::Ctx,
    pub notifications: crate::notifications::Ctx,
    pub costs: crate::costs::Ctx,
    pub web: crate::web::Ctx,
    /// In-process runners to start with the jobs, and their Terraform.
    runners: (u32, String),
    /// Background tasks: the audit writer always, maintenance once serving.
    pub jobs: Arc<Jobs>,
}

impl Deref for App {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.infra
    }
}

impl App {
    /// Builds every feature over `infra`. Starts the audit writer on the current runtime.
    pub fn new(infra: AppState, settings: Settings) -> App {
        let jobs = Arc::new(Jobs::new());
        let (audit, writer) = crate::audit::AuditSink::new(&infra);
        jobs.spawn("audit-writer", writer);
        let identity = crate::identity::Ctx::new(&infra, settings.login);
        let locks = settings
            .locks
            .unwrap_or_else(|| crate::state::locks::Locks::Database(infra.db.clone()));
        let state = crate::state::Ctx::new(&identity, locks);
        let registry = crate::registry::Ctx::new(&identity, settings.mirror_org);
        let blueprints = crate::blueprints::Ctx::new(&registry);
        let deployments =
            crate::deployments::Ctx::new(&state, &blueprints, registry.mirror_org.is_some());
        let notifications = crate::notifications::Ctx::new(&identity, settings.notifications);
        // Runs get their cost phase through a check deployments knows only as a trait.
        let costs = crate::costs::Ctx::new(&deployments, &settings.costs);
        crate::deployments::phase::set_plan_check(&deployments, Arc::new(costs.clone()));
        let web = crate::web::Ctx::new(&state, &registry, &costs);
        App {
            web,
            notifications,
            costs,
            state,
            registry,
            blueprints,
            deployments,
            runners: (settings.runners, settings.terraform_bin),
            identity,
            audit,
            infra,
            jobs,
        }
    }

    /// Connects, migrates and opens the blob store described by `config`.
    pub async fn from_config(config: &Config) -> anyhow::Result<App> {
        let (db, blobs) = open_stores(config).await?;
        db.migrate().await.context("migrating the database")?;
        let provider = config.key_provider()?;
        if provider != crate::config::KeyProvider::Local {
            // Unwrapping the master key is a key-provider operation on record.
            crate::audit::record_system(&db, "keys:unwrap", &provider.url(), true).await?;
        }
        let mut infra = AppState::new(
            db,
            blobs.with_cache(config.cache_size),
            config.max_body_size,
        );
        infra.caches = Arc::new(
            crate::infra::cache::Caches::new(crate::infra::cache::ttl_for(
                &infra.db,
                config.cache_ttl()?,
            ))
            .counted(infra.metrics.cache_lookups.clone()),
        );
        infra.public_url = config
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string());
        infra.tls = config.tls_cert.is_some() || config.dev_tls;
        let settings = Settings {
            locks: Some(crate::state::locks::Locks::connect(
                &config.locks()?,
                infra.db.clone(),
            )),
            mirror_org: config.mirror_org.clone(),
            login: crate::identity::login::LoginSettings::from_config(config)?,
            runners: config.runners,
            terraform_bin: config.terraform_bin.clone(),
            notifications: config.notifications()?.into(),
            costs: {
                let (rules, usage) = config.cost_files()?;
                crate::costs::Settings::load(
                    rules.as_deref(),
                    usage.as_deref(),
                    &config.cost_attribution_tag,
                )
                .context("cost_rules_file or cost_usage_file")?
            },
        };
        Ok(App::new(infra, settings))
    }

    /// Starts the periodic maintenance and the cache listener of a serving process.
    pub fn start_jobs(&self) {
        if let Some(listener) = crate::infra::cache::listener(&self.db, self.caches.clone()) {
            self.jobs.spawn("cache-listener", listener);
        }
        crate::jobs::start_maintenance(&self.jobs, &self.state, &self.registry);
        crate::jobs::start_costs(&self.jobs, &self.costs);
        crate::jobs::start_runs(
            &self.jobs,
            &self.deployments,
            self.runners.0,
            &self.runners.1,
        );
        crate::jobs::start_notifications(&self.jobs, &self.notifications, &self.state);
    }
}

/// The configured database and blob store, with the configured master keys (the data dir is
/// created, and a key file generated there, when none is configured).
pub async fn open_stores(config: &Config) -> anyhow::Result<(Db, BlobStore)> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let db = Db::connect(&config.database_url())
        .await
        .context("connecting to the database")?;
    let keys = Arc::new(crate::infra::keyring::load_keyring(config, &db).await?);
    let blobs = BlobStore::from_url(&config.storage_url()?, keys)?;
    Ok((db, blobs))
}
