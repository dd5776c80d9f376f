//! `terrace blueprint publish`: packs and publishes a module version through the module
//! publishing API, then creates the catalogue entry over that module, or updates it when it
//! exists, in one step. Like `module publish`, it is a client of a running server.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use crate::cli::module::{self, PublishArgs as ModuleArgs};

/// Blueprint catalogue client commands (the token needs the admin role).
#[derive(Debug, Subcommand)]
pub enum BlueprintCommand {
    /// Publish a module directory as a new version and make it a blueprint (or update the
    /// blueprint that already exists).
    Publish(PublishBlueprintArgs),
}

#[derive(Debug, Args)]
pub struct PublishBlueprintArgs {
    #[command(flatten)]
    module: ModuleArgs,
    /// The catalogue title.
    #[arg(long)]
    title: String,
    /// The blueprint's name [default: the module name].
    #[arg(long)]
    blueprint: Option<String>,
    /// The version constraint the blueprint follows, e.g. "~> 1.2" [default: any version;
    /// unchanged when the blueprint exists].
    #[arg(long)]
    constraint: Option<String>,
    /// The catalogue category, e.g. networking.
    #[arg(long)]
    category: Option<String>,
    /// [default: the README's first paragraph]
    #[arg(long)]
    description: Option<String>,
    /// Who answers for it, e.g. a team.
    #[arg(long)]
    owner: Option<String>,
    /// A tag (repeatable); given tags replace the blueprint's.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// [default: draft for a new blueprint; unchanged when it exists]
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// Allow deployments of this blueprint to apply without confirmation.
    #[arg(long)]
    auto_apply: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Status {
    Draft,
    Published,
    Deprecated,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Published => "published",
            Status::Deprecated => "deprecated",
        }
    }
}

/// Runs a `terrace blueprint …` command.
pub async fn run(command: BlueprintCommand) -> anyhow::Result<()> {
    match command {
        BlueprintCommand::Publish(args) => publish(args).await,
    }
}

async fn publish(args: PublishBlueprintArgs) -> anyhow::Result<()> {
    let client = crate::cli::client::http_client(args.module.ca_cert.as_deref())?;
    module::upload(&client, &args.module).await?;
    let m = &args.module;
    let name = args.blueprint.clone().unwrap_or_else(|| m.name.clone());
    let list = format!(
        "{}/api/v1/orgs/{}/blueprints",
        m.url.trim_end_matches('/'),
        m.namespace
    );
    let one = format!("{list}/{name}");
    let token = m.token.trim();
    let existing = client
        .get(&one)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("reading {one}"))?;
    let exists = match existing.status() {
        reqwest::StatusCode::OK => true,
        reqwest::StatusCode::NOT_FOUND => false,
        status => {
            let body = existing.text().await.unwrap_or_default();
            bail!(
                "reading blueprint {name} failed with {status}: {}",
                crate::cli::client::error_text(&body)
            );
        }
    };
    let mut body = fields(&args, exists);
    let request = if exists {
        client.patch(&one)
    } else {
        body.insert("name".into(), name.clone().into());
        client.post(&list)
    };
    let request = request.json(&Value::Object(body));
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("saving blueprint {name}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "the module version is published, but saving blueprint {name} failed with {status}: {}",
            crate::cli::client::error_text(&text)
        );
    }
    let saved: Value = serde_json::from_str(&text).unwrap_or_default();
    let resolved = saved["module_version"].as_str().unwrap_or_default();
    eprintln!(
        "blueprint {name} {}: {} {resolved} ({})",
        if exists { "updated" } else { "created" },
        saved["module"].as_str().unwrap_or_default(),
        saved["status"].as_str().unwrap_or_default(),
    );
    if resolved != m.version {
        eprintln!(
            "note: the blueprint's constraint {} resolves to {resolved}, not to the version just \
             published ({})",
            saved["version"], m.version
        );
    }
    println!("{}", saved["source"].as_str().unwrap_or_default());
    Ok(())
}

/// The fields to send: everything given; on create, the flags' defaults too.
fn fields(args: &PublishBlueprintArgs, exists: bool) -> Map<String, Value> {
    let m = &args.module;
    let mut fields = Map::new();
    fields.insert(
        "module".into(),
        format!("{}/{}/{}", m.namespace, m.name, m.system).into(),
    );
    fields.insert("title".into(), args.title.clone().into());
    let optional = [
        ("version", &args.constraint),
        ("category", &args.category),
        ("description", &args.description),
        ("owner", &args.owner),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            fields.insert(key.into(), value.clone().into());
        }
    }
    if !args.tags.is_empty() || !exists {
        fields.insert("tags".into(), args.tags.clone().into());
    }
    if let Some(status) = args.status {
        fields.insert("status".into(), status.as_str().into());
    }
    if args.auto_apply || !exists {
        fields.insert("auto_apply".into(), args.auto_apply.into());
    }
    fields
}
