//! `terrace org`, `terrace token` and `terrace user`: bootstrap identities directly on the
//! configured database.

use clap::Subcommand;

use super::database;
use crate::config::Config;
use crate::identity::auth::{Principal, Role};
use crate::names::OrgName;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
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
pub enum UserCommand {
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

pub async fn org(config: &Config, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name } => {
            let name = OrgName::parse_new(&name)?;
            let db = database(config).await?;
            crate::identity::orgs::create_org(&db, &name).await?;
            eprintln!("created organization {name}");
            Ok(())
        }
    }
}

pub async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            org,
            role,
            name,
            expires_in,
            team,
            scope,
        } => {
            let org = OrgName::parse(&org)?;
            let role: Role = role.parse()?;
            let expires_at = crate::identity::orgs::expiry_from(expires_in.as_deref())?;
            let db = database(config).await?;
            let spec = crate::identity::orgs::TokenSpec {
                team: team.as_deref(),
                scopes: (!scope.is_empty()).then_some(scope),
                expires_at,
                ..crate::identity::orgs::TokenSpec::new(&name, role)
            };
            let created =
                crate::identity::orgs::create_token(&db, &Principal::System, &org, spec).await?;
            println!("{}", created.token);
            Ok(())
        }
    }
}

pub async fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { name, org, role } => {
            let org = OrgName::parse(&org)?;
            let name = crate::names::UserName::parse(&name)?;
            let role: Role = role.parse()?;
            let password = read_password_from_stdin()?;
            let db = database(config).await?;
            let base_url = config.advertised_url();
            let created = crate::identity::users::add_member(
                &db,
                &Principal::System,
                &org,
                &name,
                role,
                password.as_deref(),
                &base_url,
            )
            .await?;
            match created.invitation_url {
                Some(url) => println!("{url}"),
                None => eprintln!("created user {name} in {org} as {}", role.as_str()),
            }
            Ok(())
        }
    }
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
