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
    /// Base URL of an OTLP/HTTP collector (`/v1/traces` is added): traces are exported there.
    /// The standard `OTEL_EXPORTER_OTLP_*` variables work too; unset everywhere: no traces.
    pub otel_exporter_otlp_endpoint: Option<String>,
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
            .field(
                "otel_exporter_otlp_endpoint",
                &self.otel_exporter_otlp_endpoint.as_deref().map(redact_url),
            )
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
    pub const KEYS: [&'static str; 21] = [
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
        "otel_exporter_otlp_endpoint",
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
        self.tracing()?;
        if self.runners > 64 {
            anyhow::bail!("runners must be at most 64");
        }
        if self.terraform_bin.trim().is_empty() {
            anyhow::bail!("terraform_bin must name a program");
        }
        Ok(())
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
                "otel_exporter_otlp_endpoint" => self
                    .otel_exporter_otlp_endpoint
                    .as_deref()
                    .map(redact_url)
                    .unwrap_or_default(),
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

    /// Trace export: `otel_exporter_otlp_endpoint`, else the standard OpenTelemetry
    /// variables; `None` when no endpoint is set or `OTEL_SDK_DISABLED=true` /
    /// `OTEL_TRACES_EXPORTER=none` turn it off.
    pub fn tracing(&self) -> anyhow::Result<Option<TraceSettings>> {
        TraceSettings::resolve(
            self.otel_exporter_otlp_endpoint.as_deref(),
            &OtelEnv::from_env(),
        )
    }

    /// Where the generated master key lives when none is configured.
    pub fn key_file(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }
}

/// Where traces go (OTLP over HTTP with protobuf bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSettings {
    /// The full URL spans are posted to, e.g. `http://collector:4318/v1/traces`.
    pub traces_endpoint: String,
    /// `service.name` when `OTEL_SERVICE_NAME` does not give one.
    pub service_name: Option<String>,
}

impl TraceSettings {
    /// The setting (a base URL) wins, then `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it
    /// is), then `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL), as the OpenTelemetry spec says.
    pub fn resolve(setting: Option<&str>, env: &OtelEnv) -> anyhow::Result<Option<TraceSettings>> {
        if env.sdk_disabled || env.traces_exporter.as_deref() == Some("none") {
            return Ok(None);
        }
        if let Some(exporter) = env.traces_exporter.as_deref()
            && exporter != "otlp"
        {
            anyhow::bail!("OTEL_TRACES_EXPORTER={exporter}: only `otlp` (or `none`) is supported");
        }
        let base = |url: &str| format!("{}/v1/traces", url.trim_end_matches('/'));
        let endpoint = match (
            setting.filter(|s| !s.is_empty()),
            &env.traces_endpoint,
            &env.endpoint,
        ) {
            (Some(url), _, _) => base(url),
            (None, Some(url), _) => url.clone(),
            (None, None, Some(url)) => base(url),
            (None, None, None) => return Ok(None),
        };
        let parsed = url::Url::parse(&endpoint)
            .map_err(|e| anyhow::anyhow!("OTLP endpoint {endpoint:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("the OTLP endpoint must be an http(s) URL, not {endpoint:?}");
        }
        if let Some(protocol) = env.protocol.as_deref()
            && protocol != "http/protobuf"
        {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: Terrace exports OTLP over HTTP \
                 (`http/protobuf`, usually port 4318)"
            );
        }
        Ok(Some(TraceSettings {
            traces_endpoint: endpoint,
            service_name: (!env.service_name_set).then(|| "terrace".to_string()),
        }))
    }
}

/// The standard OpenTelemetry variables that decide whether and where traces go. The SDK
/// reads the others itself (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`,
/// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`, …).
#[derive(Clone, Debug, Default)]
pub struct OtelEnv {
    pub endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub traces_exporter: Option<String>,
    pub sdk_disabled: bool,
    pub service_name_set: bool,
}

impl OtelEnv {
    pub fn from_env() -> OtelEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        OtelEnv {
            endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            traces_endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            protocol: var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")),
            traces_exporter: var("OTEL_TRACES_EXPORTER"),
            sdk_disabled: var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            service_name_set: var("OTEL_SERVICE_NAME").is_some(),
        }
    }
}

/// The `locks` setting, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockSettings {
    Database,
    DynamoDb(DynamoSettings),
    AzureTable(AzureTableSettings),
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
            Some(url) if url.starts_with("azuretable://") => Ok(LockSettings::AzureTable(
                AzureTableSettings::parse(url, &AzureEnv::from_env())?,
            )),
            Some(other) => anyhow::bail!(
                "locks must be `database`, dynamodb://TABLE or azuretable://ACCOUNT/TABLE, \
                 not {other:?}"
            ),
        }
    }
}

/// The Azurite emulator's well-known development account and key (public, documented by
/// Microsoft), used with `AZURE_STORAGE_USE_EMULATOR=true`.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An Azure Storage table for state locks and how to sign calls to it.
#[derive(Clone, PartialEq, Eq)]
pub struct AzureTableSettings {
    pub account: String,
    pub table: String,
    /// The Table service's base URL: `https://ACCOUNT.table.core.windows.net` unless given.
    pub endpoint: String,
    pub auth: AzureTableAuth,
}

/// How calls to the Table service are authorized.
#[derive(Clone, PartialEq, Eq)]
pub enum AzureTableAuth {
    /// The account key (decoded): Shared Key Lite signatures.
    SharedKey(Vec<u8>),
    /// A SAS token (the query string, with or without `?`) allowing table entity access.
    Sas(String),
}

impl std::fmt::Debug for AzureTableAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AzureTableAuth::SharedKey(_) => "SharedKey(<redacted>)",
            AzureTableAuth::Sas(_) => "Sas(<redacted>)",
        })
    }
}

impl std::fmt::Debug for AzureTableSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match self.auth {
            AzureTableAuth::SharedKey(_) => "shared key",
            AzureTableAuth::Sas(_) => "SAS",
        };
        f.debug_struct("AzureTableSettings")
            .field("account", &self.account)
            .field("table", &self.table)
            .field("endpoint", &self.endpoint)
            .field("auth", &auth)
            .finish()
    }
}

impl AzureTableSettings {
    /// `azuretable://ACCOUNT/TABLE[?endpoint=…]`, signed with the account key
    /// (`AZURE_STORAGE_ACCOUNT_KEY`) or a SAS token (`AZURE_STORAGE_SAS_TOKEN`).
    pub fn parse(url: &str, env: &AzureEnv) -> anyhow::Result<AzureTableSettings> {
        use base64::Engine;
        let rest = url.strip_prefix("azuretable://").unwrap_or(url);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let Some((account, table)) = path.trim_end_matches('/').split_once('/') else {
            anyhow::bail!("{url}: expected azuretable://ACCOUNT/TABLE");
        };
        if !(3..=24).contains(&account.len())
            || !account
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            anyhow::bail!("{url}: a storage account name has 3 to 24 lowercase letters or digits");
        }
        if !(3..=63).contains(&table.len())
            || !table.starts_with(|c: char| c.is_ascii_alphabetic())
            || !table.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            anyhow::bail!(
                "{url}: a table name has 3 to 63 letters or digits, starting with a letter"
            );
        }
        let mut endpoint = env
            .use_emulator
            .then(|| format!("http://127.0.0.1:10002/{account}"));
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "endpoint" => endpoint = Some(value.into_owned()),
                other => anyhow::bail!("{url}: unknown parameter {other:?} (endpoint)"),
            }
        }
        let endpoint =
            endpoint.unwrap_or_else(|| format!("https://{account}.table.core.windows.net"));
        let parsed = url::Url::parse(&endpoint)
            .map_err(|e| anyhow::anyhow!("{url}: endpoint {endpoint:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("{url}: the endpoint must be an http(s) URL");
        }
        let auth = match (&env.account_key, &env.sas_token) {
            (Some(key), _) => AzureTableAuth::SharedKey(
                base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .map_err(|_| anyhow::anyhow!("AZURE_STORAGE_ACCOUNT_KEY is not base64"))?,
            ),
            (None, Some(sas)) => AzureTableAuth::Sas(sas.clone()),
            (None, None) if env.use_emulator && account == EMULATOR_ACCOUNT => {
                AzureTableAuth::SharedKey(
                    base64::engine::general_purpose::STANDARD.decode(EMULATOR_KEY)?,
                )
            }
            (None, None) => anyhow::bail!(
                "Azure Table locks need AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN"
            ),
        };
        Ok(AzureTableSettings {
            account: account.to_string(),
            table: table.to_string(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            auth,
        })
    }
}

/// The standard Azure Storage variables, read for Azure Table locks.
#[derive(Clone, Default)]
pub struct AzureEnv {
    /// `AZURE_STORAGE_ACCOUNT_KEY`, else `AZURE_STORAGE_ACCESS_KEY` (base64).
    pub account_key: Option<String>,
    /// `AZURE_STORAGE_SAS_TOKEN`, else `AZURE_STORAGE_SAS_KEY`.
    pub sas_token: Option<String>,
    /// `AZURE_STORAGE_USE_EMULATOR=true`: Azurite on its default port and key.
    pub use_emulator: bool,
}

impl AzureEnv {
    pub fn from_env() -> AzureEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        AzureEnv {
            account_key: var("AZURE_STORAGE_ACCOUNT_KEY")
                .or_else(|| var("AZURE_STORAGE_ACCESS_KEY")),
            sas_token: var("AZURE_STORAGE_SAS_TOKEN").or_else(|| var("AZURE_STORAGE_SAS_KEY")),
            use_emulator: var("AZURE_STORAGE_USE_EMULATOR").is_some_and(|v| v == "true"),
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
    /// Static keys from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; `None`: the rest of
    /// the AWS default credential chain (profile files, web identity, ECS, instance metadata).
    pub static_keys: Option<StaticKeys>,
}

/// An access key pair given explicitly.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DynamoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoSettings")
            .field("table", &self.table)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "access_key_id",
                &self.static_keys.as_ref().map(|k| &k.access_key_id),
            )
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
        let static_keys = match (env.access_key_id.clone(), env.secret_access_key.clone()) {
            (Some(access_key_id), Some(secret_access_key)) => Some(StaticKeys {
                access_key_id,
                secret_access_key,
                session_token: env.session_token.clone(),
            }),
            (None, None) => None,
            _ => anyhow::bail!(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be given together (or neither, \
                 for the default credential chain)"
            ),
        };
        Ok(DynamoSettings {
            table: table.to_string(),
            region,
            endpoint,
            static_keys,
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
    fn without_keys_the_default_credential_chain_is_used() {
        let env = AwsEnv {
            access_key_id: None,
            secret_access_key: None,
            ..env()
        };
        let LockSettings::DynamoDb(s) =
            LockSettings::parse(Some("dynamodb://locks"), &env).unwrap()
        else {
            panic!("not dynamodb");
        };
        assert_eq!(s.static_keys, None);
        let LockSettings::DynamoDb(s) =
            LockSettings::parse(Some("dynamodb://locks"), &self::env()).unwrap()
        else {
            panic!("not dynamodb");
        };
        assert_eq!(s.static_keys.unwrap().access_key_id, "AKIDEXAMPLE");
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
    fn azure_table_urls_name_an_account_and_a_table() {
        let env = AzureEnv {
            account_key: Some("c2VjcmV0".into()),
            ..Default::default()
        };
        let s = AzureTableSettings::parse("azuretable://acct1/TerraceLocks", &env).unwrap();
        assert_eq!(s.account, "acct1");
        assert_eq!(s.table, "TerraceLocks");
        assert_eq!(s.endpoint, "https://acct1.table.core.windows.net");
        assert_eq!(s.auth, AzureTableAuth::SharedKey(b"secret".to_vec()));
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        let url =
            "azuretable://devstoreaccount1/locks?endpoint=http://127.0.0.1:10102/devstoreaccount1/";
        let s = AzureTableSettings::parse(url, &env).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:10102/devstoreaccount1");
        let sas = AzureEnv {
            sas_token: Some("?sv=2019-02-02&sig=x".into()),
            ..Default::default()
        };
        let s = AzureTableSettings::parse("azuretable://acct1/locks", &sas).unwrap();
        assert_eq!(s.auth, AzureTableAuth::Sas("?sv=2019-02-02&sig=x".into()));
        let emulator = AzureEnv {
            use_emulator: true,
            ..Default::default()
        };
        let s =
            AzureTableSettings::parse("azuretable://devstoreaccount1/locks", &emulator).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:10002/devstoreaccount1");
        for bad in [
            "azuretable://acct1",
            "azuretable://acct1/",
            "azuretable://Acct/locks",
            "azuretable://acct1/1locks",
            "azuretable://acct1/lo-cks",
            "azuretable://acct1/locks?colour=blue",
            "azuretable://acct1/locks?endpoint=ftp://x",
        ] {
            assert!(AzureTableSettings::parse(bad, &env).is_err(), "{bad}");
        }
        assert!(
            AzureTableSettings::parse("azuretable://acct1/locks", &AzureEnv::default()).is_err()
        );
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        let none = OtelEnv::default();
        assert_eq!(TraceSettings::resolve(None, &none).unwrap(), None);
        let set = TraceSettings::resolve(Some("http://collector:4318/"), &none)
            .unwrap()
            .unwrap();
        assert_eq!(set.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!(set.service_name.as_deref(), Some("terrace"));
        let env = OtelEnv {
            endpoint: Some("http://base:4318".into()),
            service_name_set: true,
            ..Default::default()
        };
        let from_env = TraceSettings::resolve(None, &env).unwrap().unwrap();
        assert_eq!(from_env.traces_endpoint, "http://base:4318/v1/traces");
        assert_eq!(from_env.service_name, None);
        let signal = OtelEnv {
            traces_endpoint: Some("http://exact:4318/custom".into()),
            ..env.clone()
        };
        let exact = TraceSettings::resolve(None, &signal).unwrap().unwrap();
        assert_eq!(exact.traces_endpoint, "http://exact:4318/custom");
        for off in [
            OtelEnv {
                sdk_disabled: true,
                ..env.clone()
            },
            OtelEnv {
                traces_exporter: Some("none".into()),
                ..env.clone()
            },
        ] {
            assert_eq!(
                TraceSettings::resolve(Some("http://x:1"), &off).unwrap(),
                None
            );
        }
        for bad in [
            OtelEnv {
                protocol: Some("grpc".into()),
                ..env.clone()
            },
            OtelEnv {
                traces_exporter: Some("zipkin".into()),
                ..env.clone()
            },
        ] {
            assert!(TraceSettings::resolve(None, &bad).is_err());
        }
        assert!(TraceSettings::resolve(Some("ftp://x"), &none).is_err());
    }

    #[test]
    fn bad_dynamodb_settings_are_refused() {
        let no_region = AwsEnv {
            region: None,
            ..env()
        };
        let half_keys = AwsEnv {
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
            ("dynamodb://locks", half_keys),
        ] {
            assert!(LockSettings::parse(Some(url), &env).is_err(), "{url}");
        }
    }
}
