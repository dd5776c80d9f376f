//! `terrace config check`: the effective configuration, each setting with where it came from
//! and secrets redacted. Loading already validated every setting; an invalid one never gets
//! here (the command exits non-zero with the reason).

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print every setting, its value and its source.
    Check,
}

pub fn run(
    config: &Config,
    file: Option<&std::path::Path>,
    overrides: &crate::config::Overrides,
    command: ConfigCommand,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Check => {
            for (key, value, source) in config.provenance(file, overrides)? {
                println!("{key:<32} {value:<50} ({source})");
            }
            eprintln!("configuration is valid");
            Ok(())
        }
    }
}
