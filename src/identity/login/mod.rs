//! `terraform login`: the login.v1 service (OAuth 2.0 authorization code with PKCE, for a
//! public client on a loopback redirect) and the invitation pages where new users set their
//! password.
//!
//! The browser-facing pages are HTML forms protected by a double-submit CSRF cookie; a signed
//! session cookie lets a browser that already signed in skip to a consent page.

mod limits;
pub mod oidc;
mod pkce;
mod routes;
mod service;
mod sso;
mod store;
mod views;

use std::time::Duration;

pub use limits::{LoginLimits, Quota};
pub use routes::routes;
pub use service::{SignIn, password_sign_in, sign_in_options};

use crate::config::{Config, LocalPasswords, OidcSettings};

/// The OAuth client id Terraform sends (advertised in discovery).
pub const CLIENT_ID: &str = "terraform-cli";

#[derive(Clone, Debug)]
pub struct LoginSettings {
    /// `[min, max]` of the loopback ports a redirect URI may use.
    pub ports: (u16, u16),
    pub token_ttl: Duration,
    pub user_quota: Quota,
    pub address_quota: Quota,
    /// Single sign-on through an OpenID Connect issuer, when configured.
    pub oidc: Option<OidcSettings>,
    /// Who may sign in with a password.
    pub local_passwords: LocalPasswords,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            ports: (10000, 10010),
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            // A person mistypes a few times; a guesser needs thousands.
            user_quota: Quota {
                burst: 5,
                per: Duration::from_secs(60),
            },
            address_quota: Quota {
                burst: 30,
                per: Duration::from_secs(60),
            },
            oidc: None,
            local_passwords: LocalPasswords::On,
        }
    }
}

impl LoginSettings {
    pub fn from_config(config: &Config) -> anyhow::Result<LoginSettings> {
        Ok(LoginSettings {
            ports: config.login_ports()?,
            token_ttl: config.login_token_ttl()?,
            oidc: config.oidc()?,
            local_passwords: config.local_passwords()?,
            ..LoginSettings::default()
        })
    }

    /// The `login.v1` discovery object.
    pub fn discovery(&self) -> serde_json::Value {
        serde_json::json!({
            "client": CLIENT_ID,
            "grant_types": ["authz_code"],
            "authz": "/oauth/authorize",
            "token": "/oauth/token",
            "ports": [self.ports.0, self.ports.1],
        })
    }
}

/// Settings and the attempt limits shared by every request of this process.
#[derive(Debug)]
pub struct LoginState {
    pub settings: LoginSettings,
    pub limits: LoginLimits,
    /// The OpenID Connect relying party, when single sign-on is configured.
    pub oidc: Option<oidc::Oidc>,
}

impl LoginState {
    pub fn new(settings: LoginSettings) -> LoginState {
        let limits = LoginLimits::new(settings.user_quota, settings.address_quota);
        let oidc = settings
            .oidc
            .clone()
            .and_then(|s| match oidc::Oidc::new(s) {
                Ok(oidc) => Some(oidc),
                Err(e) => {
                    tracing::error!(error = %e, "single sign-on is off: no HTTP client");
                    None
                }
            });
        LoginState {
            settings,
            limits,
            oidc,
        }
    }
}
