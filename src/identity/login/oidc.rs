//! The OpenID Connect relying party: discovery (`{issuer}/.well-known/openid-configuration`),
//! the issuer's signing keys (JWKS, read again when a token names a key not seen yet, which
//! is how a key rotation reaches Terrace), the code exchange and ID token verification.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::config::OidcSettings;

/// How long discovery and keys are trusted before they are read again.
const METADATA_TTL: Duration = Duration::from_secs(600);
/// After a JWKS read that did not have a token's key, how long further unknown keys wait
/// before the JWKS is read again (forged key ids must not make Terrace hammer the issuer).
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Clock skew tolerated between Terrace and the issuer on `exp`, `iat` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// ID tokens are signed with the issuer's private key; shared-secret (HS*) and `none` are
/// never accepted.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What went wrong talking to the issuer, in words for the sign-in page.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The issuer did not answer (down, unreachable, timed out).
    #[error("the identity provider {0} cannot be reached: {1}")]
    Unreachable(String, String),
    /// The issuer answered, but not as OpenID Connect says it must.
    #[error("the identity provider answered unexpectedly: {0}")]
    Provider(String),
    /// The ID token was refused.
    #[error("the ID token was refused: {0}")]
    Token(String),
}

/// The parts of the discovery document Terrace uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

struct Cached {
    metadata: Metadata,
    metadata_at: Instant,
    jwks: JwkSet,
    /// When a JWKS read last failed to find the key a token named.
    last_miss: Option<Instant>,
}

/// The relying party: settings, an HTTP client and what was read from the issuer.
pub struct Oidc {
    pub settings: OidcSettings,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The claims Terrace reads from a verified ID token.
#[derive(Clone, Debug)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    /// The values of the groups claim (empty when the claim is absent).
    pub groups: Vec<String>,
}

fn unreachable(issuer: &str, e: reqwest::Error) -> OidcError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    OidcError::Unreachable(issuer.to_string(), message)
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Oidc> {
        // reqwest is built without a default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("terrace/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // The issuer's endpoints are fixed by discovery; never follow elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Oidc {
            settings,
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// "Sign in with …": the issuer's host.
    pub fn label(&self) -> String {
        url::Url::parse(&self.settings.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| self.settings.issuer.clone())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let issuer = &self.settings.issuer;
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unreachable(issuer, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OidcError::Provider(format!("{url} answered {status}")));
        }
        let bytes = response.bytes().await.map_err(|e| unreachable(issuer, e))?;
        if bytes.len() > 1024 * 1024 {
            return Err(OidcError::Provider(format!("{url} answered too much")));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| OidcError::Provider(format!("{url} is not what was expected: {e}")))
    }

    async fn fetch_metadata(&self) -> Result<Metadata, OidcError> {
        let issuer = self.settings.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let metadata: Metadata = self.get_json(&url).await?;
        // OpenID Connect Discovery §4.3: the document must name the issuer it was read from.
        if metadata.issuer.trim_end_matches('/') != issuer {
            return Err(OidcError::Provider(format!(
                "discovery names issuer {}, not {issuer}",
                metadata.issuer
            )));
        }
        Ok(metadata)
    }

    /// The discovery document and keys, read when missing or older than [`METADATA_TTL`].
    pub async fn metadata(&self) -> Result<Metadata, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && cached.metadata_at.elapsed() < METADATA_TTL
        {
            return Ok(cached.metadata.clone());
        }
        let metadata = self.fetch_metadata().await?;
        let jwks: JwkSet = self.get_json(&metadata.jwks_uri).await?;
        *cache = Some(Cached {
            metadata: metadata.clone(),
            metadata_at: Instant::now(),
            jwks,
            last_miss: None,
        });
        Ok(metadata)
    }

    /// The issuer's key `kid` (or its only key of that algorithm family when the token names
    /// none); an unknown id makes Terrace read the JWKS again (the issuer rotated its keys),
    /// unless a read found no such key moments ago.
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OidcError> {
        self.metadata().await?;
        let mut cache = self.cache.lock().await;
        let Some(cached) = cache.as_mut() else {
            return Err(OidcError::Provider("no discovery document".into()));
        };
        if let Some(key) = pick(&cached.jwks, kid, alg)? {
            return Ok(key);
        }
        if cached
            .last_miss
            .is_none_or(|at| at.elapsed() >= JWKS_REFRESH_INTERVAL)
        {
            let jwks: JwkSet = self.get_json(&cached.metadata.jwks_uri).await?;
            cached.jwks = jwks;
            if let Some(key) = pick(&cached.jwks, kid, alg)? {
                return Ok(key);
            }
            cached.last_miss = Some(Instant::now());
        }
        Err(OidcError::Token(
            "it is signed with a key the identity provider does not publish".into(),
        ))
    }

    /// Exchanges an authorization code (with its PKCE verifier) for the ID token.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let metadata = self.metadata().await?;
        let settings = &self.settings;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let methods = &metadata.token_endpoint_auth_methods_supported;
        let post = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        let mut request = self.http.post(&metadata.token_endpoint);
        if post {
            form.push(("client_id", settings.client_id.as_str()));
            form.push(("client_secret", settings.client_secret.as_str()));
        } else {
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            let id: String = encode(&settings.client_id);
            let secret: String = encode(&settings.client_secret);
            request = request.basic_auth(id, Some(secret));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(&settings.issuer, e))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("unknown error");
            return Err(OidcError::Provider(format!(
                "the code exchange failed ({status}: {error})"
            )));
        }
        body["id_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| OidcError::Provider("the token endpoint sent no id_token".into()))
    }

    /// Verifies an ID token: an asymmetric signature by one of the issuer's published keys,
    /// `iss`, `aud` (and `azp` when there are several audiences), `exp`, `iat` and the
    /// sign-in's `nonce`.
    pub async fn verify(&self, id_token: &str, nonce: &str) -> Result<Identity, OidcError> {
        let refused = |why: &str| OidcError::Token(why.to_string());
        // `alg: none` is not an algorithm jsonwebtoken knows: it fails here.
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| refused("it is not a signed JWT (alg none, or malformed)"))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(refused("it is not signed with the issuer's private key"));
        }
        let metadata = self.metadata().await?;
        let listed = &metadata.id_token_signing_alg_values_supported;
        let alg_name = format!("{:?}", header.alg);
        if !listed.is_empty() && !listed.contains(&alg_name) {
            return Err(refused("its algorithm is not one the issuer signs with"));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[metadata.issuer.as_str()]);
        validation.set_audience(&[self.settings.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => refused("it has expired"),
                    ErrorKind::InvalidAudience => refused("it was issued to another client (aud)"),
                    ErrorKind::InvalidIssuer => refused("it comes from another issuer (iss)"),
                    ErrorKind::InvalidSignature => refused("its signature does not verify"),
                    ErrorKind::ImmatureSignature => refused("it is not valid yet"),
                    _ => OidcError::Token(format!("it is invalid: {e}")),
                }
            })?
            .claims;
        // Several audiences: the token must have been issued to this client (OIDC Core §3.1.3.7).
        if claims["aud"].as_array().is_some_and(|a| a.len() > 1)
            && claims.get("azp").and_then(Value::as_str) != Some(self.settings.client_id.as_str())
        {
            return Err(refused("it was issued to another client (azp)"));
        }
        let token_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(token_nonce.as_bytes().ct_eq(nonce.as_bytes())) {
            return Err(refused(
                "its nonce is not this sign-in's (a replayed token?)",
            ));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let subject = text("sub").unwrap_or_default();
        if subject.is_empty() || subject.len() > 255 {
            return Err(refused("its subject is empty or too long"));
        }
        let groups = match claims.get(&self.settings.groups_claim) {
            Some(Value::Array(values)) => values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            issuer: metadata.issuer.clone(),
            subject,
            preferred_username: text("preferred_username"),
            email: text("email")
                .filter(|_| claims.get("email_verified") != Some(&Value::Bool(false))),
            groups,
        })
    }
}

/// The key for `kid` (or the only usable one when the token names none).
fn pick(
    jwks: &JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Option<DecodingKey>, OidcError> {
    let jwk = match kid {
        Some(kid) => jwks.find(kid),
        None => {
            let mut usable = jwks.keys.iter().filter(|k| {
                k.common
                    .key_algorithm
                    .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"))
            });
            match (usable.next(), usable.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    };
    jwk.map(|jwk| {
        DecodingKey::from_jwk(jwk)
            .map_err(|e| OidcError::Provider(format!("the issuer publishes an unusable key: {e}")))
    })
    .transpose()
}
