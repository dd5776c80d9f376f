//! `terrace keys` and `terrace locks`: master keys, login signing keys and the lock backend.

use clap::Subcommand;

use super::database;
use crate::config::{Config, LockSettings};
use crate::infra::keyring::load_keyring;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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
pub enum LocksCommand {
    /// Create the DynamoDB lock table the `locks` setting names (an existing one is fine).
    Init,
}

pub async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::RotateLogin { retire_previous } => {
            let db = database(config).await?;
            let keys = load_keyring(config, &db).await?;
            let kid = crate::identity::auth::jwt::rotate(&db, &keys, retire_previous).await?;
            eprintln!("login tokens are now signed with key {kid}");
            Ok(())
        }
        KeysCommand::Generate => {
            println!("{}", crate::infra::crypto::generate_key()?);
            Ok(())
        }
        KeysCommand::Rotate => {
            let db = database(config).await?;
            let keys = load_keyring(config, &db).await?;
            let provider = config.key_provider()?.url();
            let rotated = crate::ops::keys::rotate(&db, &keys).await;
            let resource = format!("key-provider:{provider}/{}", keys.current_id());
            crate::audit::record_system(&db, "keys:rotate", &resource, rotated.is_ok()).await?;
            let count = rotated?;
            eprintln!(
                "re-wrapped {count} data keys under master key {} ({provider})",
                keys.current_id()
            );
            Ok(())
        }
        KeysCommand::Status => {
            let db = database(config).await?;
            let keys = load_keyring(config, &db).await?;
            println!("current key id: {}", keys.current_id());
            for (key_id, count) in crate::ops::keys::key_usage(&db).await? {
                println!("{key_id}\t{count} blobs");
            }
            Ok(())
        }
    }
}

pub async fn locks(config: &Config, command: LocksCommand) -> anyhow::Result<()> {
    match command {
        LocksCommand::Init => {
            match config.locks()? {
                LockSettings::Database => {
                    eprintln!("locks are kept in the metadata database; there is nothing to create")
                }
                LockSettings::DynamoDb(settings) => {
                    let locks = crate::state::locks::DynamoLocks::connect(&settings);
                    let created = locks.init().await?;
                    let done = if created { "created" } else { "already exists" };
                    eprintln!("DynamoDB lock table {} {done}", settings.table);
                }
                LockSettings::AzureTable(settings) => {
                    let locks = crate::state::locks::AzureTableLocks::connect(&settings);
                    let created = locks.init().await?;
                    let done = if created { "created" } else { "already exists" };
                    eprintln!("Azure lock table {} {done}", settings.table);
                }
            }
            Ok(())
        }
    }
}
