//! Typed configuration: defaults, then a TOML file, then `TERRACE_*` variables, then flags.
//!
//! The only module that reads the environment. Loading has no side effects; secrets are
//! redacted from `Debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Default body cap for state uploads: 256 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 256 * 1024 * 1024;

/// Default memory for decrypted state: 64 MiB.
pub const DEFAULT_CACHE_SIZE: u64 = 64 * 1024 * 1024;

/// Settings after all sources are merged.
#[derive(Clone, Deserialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub storage_url: Option<String>,
    pub public_url: Option<String>,
    /// Where state locks live: `database` (the default) or `dynamodb://TABLE`.
    pub locks: Option<String>,
    /// The org whose admins may upload to the provider mirror (uploads are refused when unset).
    pub mirror_org: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a generated local CA and certificate (for trials).
    #[serde(default)]
    pub dev_tls: bool,
    encryption_key: Option<String>,
    /// Comma-separated base64 keys that may still unwrap older data keys.
    previous_encryption_keys: Option<String>,
    #[serde(deserialize_with = "deserialize_size")]
    pub max_body_size: u64,
    /// Memory for decrypted state kept to answer reads without the blob store (0 = off).
    #[serde(deserialize_with = "deserialize_size")]
    pub cache_size: u64,
    pub log_format: LogFormat,
    /// Loopback ports `terraform login` may listen on, `MIN-MAX` (Terraform never picks MAX).
    pub login_ports: String,
    /// Lifetime of tokens issued by `terraform login`, such as `30d`.
    pub login_token_ttl: String,
    /// How long token, namespace and module-version lookups are cached (`0s`: never).
    /// Unset: 2s on SQLite, 60s on PostgreSQL, where replicas announce their changes.
    pub cache_ttl: Option<String>,
    /// In-process runners `serve` starts (0: runs are left to `terrace runner` processes).
    pub runners: u32,
    /// The Terraform binary runners use: a path, or a name looked up on `PATH`.
    pub terraform_bin: String,
    /// A TOML file of pricing rules added to (or replacing) the built-in ones.
    pub cost_rules_file: Option<PathBuf>,
    /// A TOML file of usage amounts and the default region, replacing the built-in one.
    pub cost_usage_file: Option<PathBuf>,
    /// The tag naming a billing line's workspace when its resource is in no state.
    pub cost_attribution_tag: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Values given on the command line; `None` leaves lower layers in charge.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_tls: Option<bool>,
}

#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    data_dir: &'static str,
    max_body_size: u64,
    cache_size: u64,
    log_format: LogFormat,
    login_ports: &'static str,
    login_token_ttl: &'static str,
    runners: u32,
    terraform_bin: &'static str,
    cost_attribution_tag: &'static str,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("storage_url", &self.storage_url)
            .field("public_url", &self.public_url)
            .field("locks", &self.locks)
            .field("mirror_org", &self.mirror_org)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("dev_tls", &self.dev_tls)
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "<redacted>"),
            )
            .field("max_body_size", &self.max_body_size)
            .field("cache_size", &self.cache_size)
            .field("log_format", &self.log_format)
            .field("login_ports", &self.login_ports)
            .field("login_token_ttl", &self.login_token_ttl)
            .field("cache_ttl", &self.cache_ttl)
            .field("runners", &self.runners)
            .field("terraform_bin", &self.terraform_bin)
            .field("cost_rules_file", &self.cost_rules_file)
            .field("cost_usage_file", &self.cost_usage_file)
            .field("cost_attribution_tag", &self.cost_attribution_tag)
            .finish()
    }
}

fn path_text(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// Merges defaults, `file` (if any), `TERRACE_*` variables and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Defaults {
            listen: "127.0.0.1:8080",
            data_dir: "./terrace-data",
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            cache_size: DEFAULT_CACHE_SIZE,
            log_format: LogFormat::Pretty,
            login_ports: "10000-10010",
            login_token_ttl: "30d",
            runners: 1,
            terraform_bin: "terraform",
            cost_attribution_tag: "terrace-workspace",
        }));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(Env::prefixed("TERRACE_").only(&Config::KEYS))
            .merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Every setting, in the order `terrace config check` prints them; each is also read
    /// from `TERRACE_<KEY>`.
    pub const KEYS: [&'static str; 23] = [
        "listen",
        "data_dir",
        "database_url",
        "storage_url",
        "public_url",
        "locks",
        "mirror_org",
        "tls_cert",
        "tls_key",
        "dev_tls",
        "encryption_key",
        "previous_encryption_keys",
        "max_body_size",
        "cache_size",
        "cache_ttl",
        "log_format",
        "login_ports",
        "login_token_ttl",
        "runners",
        "terraform_bin",
        "cost_rules_file",
        "cost_usage_file",
        "cost_attribution_tag",
    ];

    /// Checks every setting that is kept as text, so a bad one stops the process at start
    /// rather than at first use.
    fn validate(&self) -> anyhow::Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key must be given together");
        }
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).context("public_url is not a valid URL")?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                anyhow::bail!("public_url must be an http(s) URL with a host");
            }
        }
        self.cache_ttl()?;
        self.locks()?;
        self.login_ports()?;
        self.login_token_ttl()?;
        self.storage_url()?;
        if self.runners > 64 {
            anyhow::bail!("runners must be at most 64");
        }
        if self.terraform_bin.trim().is_empty() {
            anyhow::bail!("terraform_bin must name a program");
        }
        if self.cost_attribution_tag.trim().is_empty() {
            anyhow::bail!("cost_attribution_tag must name a tag");
        }
        self.cost_files()?;
        Ok(())
    }

    /// The text of `cost_rules_file` and `cost_usage_file`, when set.
    pub fn cost_files(&self) -> anyhow::Result<(Option<String>, Option<String>)> {
        let read = |path: &Option<PathBuf>, name: &str| {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .with_context(|| format!("{name}: reading {}", p.display()))
                })
                .transpose()
        };
        Ok((
            read(&self.cost_rules_file, "cost_rules_file")?,
            read(&self.cost_usage_file, "cost_usage_file")?,
        ))
    }

    /// The `login_ports` range.
    pub fn login_ports(&self) -> anyhow::Result<(u16, u16)> {
        let (min, max) = self
            .login_ports
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("login_ports must look like 10000-10010"))?;
        let ports: (u16, u16) = (
            min.trim().parse().context("login_ports")?,
            max.trim().parse().context("login_ports")?,
        );
        // Terraform refuses ranges outside this and never picks `max` itself.
        if ports.0 < 1024 || ports.0 >= ports.1 {
            anyhow::bail!("login_ports must be MIN-MAX with 1024 <= MIN < MAX");
        }
        Ok(ports)
    }

    /// The `login_token_ttl` duration.
    pub fn login_token_ttl(&self) -> anyhow::Result<std::time::Duration> {
        humantime::parse_duration(&self.login_token_ttl)
            .map_err(|e| anyhow::anyhow!("login_token_ttl: {e}"))
    }

    /// The base URL clients reach this server at, for links made outside a request (such as
    /// an invitation printed by the CLI): `public_url`, else the listen address.
    pub fn advertised_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls_cert.is_some() || self.dev_tls {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    /// Every setting's effective value (secrets redacted) and where it came from: `flag`,
    /// `environment`, `file`, `default` or `unset`.
    pub fn provenance(
        &self,
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> anyhow::Result<Vec<(&'static str, String, &'static str)>> {
        let from_file: toml::Table = match file {
            Some(path) => std::fs::read_to_string(path)?.parse()?,
            None => toml::Table::new(),
        };
        let flags = serde_json::to_value(overrides)?;
        let mut rows = Vec::new();
        for key in Config::KEYS.into_iter().chain(["config"]) {
            let value = match key {
                "listen" => self.listen.to_string(),
                "data_dir" => self.data_dir.display().to_string(),
                "database_url" => redact_url(&self.database_url()),
                "storage_url" => self.storage_url()?,
                "public_url" => self.public_url.clone().unwrap_or_default(),
                "locks" => self.locks.clone().unwrap_or_else(|| "database".into()),
                "mirror_org" => self.mirror_org.clone().unwrap_or_default(),
                "tls_cert" => path_text(&self.tls_cert),
                "tls_key" => path_text(&self.tls_key),
                "dev_tls" => self.dev_tls.to_string(),
                "encryption_key" => match &self.encryption_key {
                    Some(_) => "<redacted>".into(),
                    None => format!("<key file {}>", self.key_file().display()),
                },
                "previous_encryption_keys" => {
                    format!("<{} redacted>", self.previous_keys().len())
                }
                "max_body_size" => self.max_body_size.to_string(),
                "cache_size" => self.cache_size.to_string(),
                "cache_ttl" => self.cache_ttl.clone().unwrap_or_default(),
                "log_format" => format!("{:?}", self.log_format).to_lowercase(),
                "login_ports" => self.login_ports.clone(),
                "login_token_ttl" => self.login_token_ttl.clone(),
                "runners" => self.runners.to_string(),
                "terraform_bin" => self.terraform_bin.clone(),
                "cost_rules_file" => path_text(&self.cost_rules_file),
                "cost_usage_file" => path_text(&self.cost_usage_file),
                "cost_attribution_tag" => self.cost_attribution_tag.clone(),
                _ => file.map(|f| f.display().to_string()).unwrap_or_default(),
            };
            let env = format!("TERRACE_{}", key.to_uppercase());
            let source = if key == "config" {
                if file.is_some() { "flag" } else { "unset" }
            } else if flags.get(key).is_some_and(|v| !v.is_null()) {
                "flag"
            } else if std::env::var_os(&env).is_some() {
                "environment"
            } else if from_file.contains_key(key) {
                "file"
            } else if matches!(
                key,
                "listen"
                    | "data_dir"
                    | "max_body_size"
                    | "cache_size"
                    | "log_format"
                    | "login_ports"
                    | "login_token_ttl"
                    | "runners"
                    | "terraform_bin"
                    | "cost_attribution_tag"
                    | "dev_tls"
            ) {
                "default"
            } else {
                "unset"
            };
            rows.push((key, value, source));
        }
        Ok(rows)
    }

    /// The configured `cache_ttl`, if any.
    pub fn cache_ttl(&self) -> anyhow::Result<Option<std::time::Duration>> {
        self.cache_ttl
            .as_deref()
            .map(|text| {
                humantime::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("cache_ttl must be a duration such as 2s: {e}"))
            })
            .transpose()
    }

    /// `sqlite://<data_dir>/terrace.db` unless a URL is configured.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("terrace.db").display()))
    }

    /// `file://<data_dir>/blobs` unless a URL is configured.
    pub fn storage_url(&self) -> anyhow::Result<String> {
        match &self.storage_url {
            Some(url) => Ok(url.clone()),
            None => {
                let dir = std::path::absolute(self.data_dir.join("blobs"))?;
                Ok(url::Url::from_directory_path(&dir)
                    .map_err(|_| anyhow::anyhow!("data dir {} is not a valid path", dir.display()))?
                    .to_string())
            }
        }
    }

    /// The configured master key and the older ones, if set explicitly.
    pub fn encryption_keys(&self) -> Option<(String, Vec<String>)> {
        let current = self.encryption_key.clone()?;
        Some((current, self.previous_keys()))
    }

    pub fn previous_keys(&self) -> Vec<String> {
        self.previous_encryption_keys
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The lock backend, with the AWS variables a DynamoDB table needs.
    pub fn locks(&self) -> anyhow::Result<LockSettings> {
        LockSettings::parse(self.locks.as_deref(), &AwsEnv::from_env())
            .context("invalid locks setting")
    }

    /// Where the generated master key lives when none is configured.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }
}

/// The `locks` setting, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockSettings {
    Database,
    DynamoDb(DynamoSettings),
}

impl LockSettings {
    /// `None` or `database`: the metadata database; `dynamodb://TABLE[?region=…&endpoint=…]`:
    /// a DynamoDB table, with what the URL leaves out taken from the AWS variables in `env`.
    pub fn parse(url: Option<&str>, env: &AwsEnv) -> anyhow::Result<LockSettings> {
        match url.map(str::trim) {
            None | Some("" | "database") => Ok(LockSettings::Database),
            Some(url) if url.starts_with("dynamodb://") => {
                Ok(LockSettings::DynamoDb(DynamoSettings::parse(url, env)?))
            }
            Some(other) => {
                anyhow::bail!("locks must be `database` or dynamodb://TABLE, not {other:?}")
            }
        }
    }
}

/// Where the table is and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct DynamoSettings {
    pub table: String,
    pub region: String,
    /// `None`: the regional AWS endpoint.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for DynamoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoSettings")
            .field("table", &self.table)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl DynamoSettings {
    /// `dynamodb://TABLE[?region=…&endpoint=…]`; parameters win over the AWS variables.
    pub fn parse(url: &str, env: &AwsEnv) -> anyhow::Result<DynamoSettings> {
        let rest = url.strip_prefix("dynamodb://").unwrap_or(url);
        let (table, query) = rest.split_once('?').unwrap_or((rest, ""));
        let table = table.strip_suffix('/').unwrap_or(table);
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            anyhow::bail!(
                "{url}: a DynamoDB table name has 3 to 255 letters, digits, `_`, `-` or `.`"
            );
        }
        let (mut region, mut endpoint) = (env.region.clone(), env.endpoint.clone());
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "region" => region = Some(value.into_owned()),
                "endpoint" => endpoint = Some(value.into_owned()),
                other => anyhow::bail!("{url}: unknown parameter {other:?} (region, endpoint)"),
            }
        }
        let region = region
            .filter(|r| !r.is_empty())
            .ok_or_else(|| anyhow::anyhow!("{url}: no region (set AWS_REGION or add ?region=…)"))?;
        if let Some(endpoint) = &endpoint {
            let parsed = url::Url::parse(endpoint)
                .map_err(|e| anyhow::anyhow!("{url}: endpoint {endpoint:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!("{url}: the endpoint must be an http(s) URL");
            }
        }
        let (Some(access_key_id), Some(secret_access_key)) =
            (env.access_key_id.clone(), env.secret_access_key.clone())
        else {
            anyhow::bail!("DynamoDB locks need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        };
        Ok(DynamoSettings {
            table: table.to_string(),
            region,
            endpoint,
            access_key_id,
            secret_access_key,
            session_token: env.session_token.clone(),
        })
    }
}

/// The standard AWS variables, read for DynamoDB locks.
#[derive(Clone, Default)]
pub struct AwsEnv {
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL_DYNAMODB`, else `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl AwsEnv {
    pub fn from_env() -> AwsEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        AwsEnv {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL_DYNAMODB").or_else(|| var("AWS_ENDPOINT_URL")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
        }
    }
}

impl std::fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsEnv")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Accepts `268435456`, `"256MiB"`, `"10 MB"`, `"1GiB"`.
fn deserialize_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(text) => parse_size(&text).map_err(serde::de::Error::custom),
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid size unit in {text:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail fixes the closure error type"
)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 * 1024 * 1024));
        assert_eq!(parse_size("10 MB"), Ok(10_000_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn defaults_give_the_embedded_setup() {
        figment::Jail::expect_with(|_| {
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(config.max_body_size, DEFAULT_MAX_BODY_SIZE);
            assert!(config.database_url().starts_with("sqlite://"));
            assert!(config.storage_url().unwrap().starts_with("file:///"));
            Ok(())
        });
    }

    #[test]
    fn flags_override_environment_which_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "t.toml",
                "listen = \"127.0.0.1:1\"\nmax_body_size = \"1KiB\"",
            )?;
            jail.set_env("TERRACE_LISTEN", "127.0.0.1:2");
            let overrides = Overrides {
                max_body_size: Some("2KiB".into()),
                ..Default::default()
            };
            let config = Config::load(Some(Path::new("t.toml")), &overrides).unwrap();
            assert_eq!(config.listen.port(), 2);
            assert_eq!(config.max_body_size, 2048);
            Ok(())
        });
    }

    #[test]
    fn provenance_names_each_source_and_redacts_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "cache_ttl = \"5s\"\nmirror_org = \"acme\"")?;
            jail.set_env("TERRACE_ENCRYPTION_KEY", "c2VjcmV0");
            jail.set_env("TERRACE_DATABASE_URL", "postgres://u:pw@h/db");
            jail.set_env("TERRACE_MIRROR_ORG", "ops");
            let overrides = Overrides {
                listen: Some("127.0.0.1:9999".into()),
                ..Default::default()
            };
            let file = Path::new("t.toml");
            let config = Config::load(Some(file), &overrides).unwrap();
            let rows = config.provenance(Some(file), &overrides).unwrap();
            let row = |key: &str| {
                rows.iter()
                    .find(|(k, _, _)| *k == key)
                    .map(|(_, v, s)| (v.clone(), *s))
                    .unwrap()
            };
            assert_eq!(row("listen"), ("127.0.0.1:9999".into(), "flag"));
            assert_eq!(row("mirror_org"), ("ops".into(), "environment"));
            assert_eq!(row("cache_ttl"), ("5s".into(), "file"));
            assert_eq!(row("login_ports"), ("10000-10010".into(), "default"));
            assert_eq!(row("public_url").1, "unset");
            assert_eq!(row("encryption_key"), ("<redacted>".into(), "environment"));
            let text = format!("{rows:?}");
            assert!(
                !text.contains("c2VjcmV0") && !text.contains("pw@"),
                "{text}"
            );
            assert_eq!(rows.len(), Config::KEYS.len() + 1);
            Ok(())
        });
    }

    #[test]
    fn every_text_setting_is_checked_at_load() {
        for (key, value) in [
            ("TERRACE_CACHE_TTL", "soon"),
            ("TERRACE_LOGIN_PORTS", "80-90"),
            ("TERRACE_LOGIN_TOKEN_TTL", "forever"),
            ("TERRACE_LOCKS", "redis://x"),
            ("TERRACE_PUBLIC_URL", "ftp://x"),
            ("TERRACE_MAX_BODY_SIZE", "12 parsecs"),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(key, value);
                assert!(
                    Config::load(None, &Overrides::default()).is_err(),
                    "{key}={value} was accepted"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TERRACE_ENCRYPTION_KEY", "c2VjcmV0");
            jail.set_env("TERRACE_DATABASE_URL", "postgres://u:pw@h/db");
            let config = Config::load(None, &Overrides::default()).unwrap();
            let text = format!("{config:?}");
            assert!(!text.contains("c2VjcmV0") && !text.contains("pw@"));
            Ok(())
        });
    }

    // The `locks` setting.

    fn env() -> AwsEnv {
        AwsEnv {
            region: Some("eu-west-1".into()),
            endpoint: None,
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("secret".into()),
            session_token: None,
        }
    }

    #[test]
    fn the_database_is_the_default() {
        for url in [None, Some(""), Some("database")] {
            assert_eq!(
                LockSettings::parse(url, &AwsEnv::default()).unwrap(),
                LockSettings::Database
            );
        }
        assert!(LockSettings::parse(Some("redis://x"), &env()).is_err());
    }

    #[test]
    fn dynamodb_urls_name_a_table_and_take_the_rest_from_the_environment() {
        let LockSettings::DynamoDb(s) =
            LockSettings::parse(Some("dynamodb://Terrace_Locks-1.prod"), &env()).unwrap()
        else {
            panic!("not dynamodb");
        };
        assert_eq!(s.table, "Terrace_Locks-1.prod");
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.endpoint, None);
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn query_parameters_override_the_environment() {
        let env = AwsEnv {
            endpoint: Some("http://from-env:1".into()),
            ..env()
        };
        let url = "dynamodb://locks?region=us-east-2&endpoint=http%3A%2F%2F127.0.0.1%3A5000";
        let LockSettings::DynamoDb(s) = LockSettings::parse(Some(url), &env).unwrap() else {
            panic!("not dynamodb");
        };
        assert_eq!(s.table, "locks");
        assert_eq!(s.region, "us-east-2");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        let url = "dynamodb://locks/?endpoint=http://127.0.0.1:5000";
        let LockSettings::DynamoDb(s) = LockSettings::parse(Some(url), &env).unwrap() else {
            panic!("not dynamodb");
        };
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn bad_dynamodb_settings_are_refused() {
        let no_region = AwsEnv {
            region: None,
            ..env()
        };
        let no_keys = AwsEnv {
            access_key_id: None,
            ..env()
        };
        for (url, env) in [
            ("dynamodb://", env()),
            ("dynamodb://ab", env()),
            ("dynamodb://a b c", env()),
            ("dynamodb://locks/extra", env()),
            ("dynamodb://locks?colour=blue", env()),
            ("dynamodb://locks?endpoint=ftp://x", env()),
            ("dynamodb://locks", no_region),
            ("dynamodb://locks", no_keys),
        ] {
            assert!(LockSettings::parse(Some(url), &env).is_err(), "{url}");
        }
    }
}
