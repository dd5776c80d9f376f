//! AWS credentials found the way the AWS SDKs and CLI find them: `aws-config`'s default chain
//! (environment variables, the shared `credentials`/`config` files with `AWS_PROFILE`, web
//! identity tokens as on EKS with IRSA, ECS container credentials, EC2 instance metadata).
//! DynamoDB locks and the S3 blob store both use it; static keys given explicitly still win.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_smithy_http_client::tls;
use object_store::aws::AwsCredential;
use tokio::sync::{Mutex, OnceCell};

/// An HTTPS client for AWS calls: rustls with ring, like the rest of Terrace (the SDK's own
/// default would build aws-lc).
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The default credential chain, built on first use (building it reads the profile files),
/// so that a client can be made outside async code and nothing is read before it is needed.
#[derive(Debug)]
pub struct DefaultChain {
    region: Option<String>,
    chain: OnceCell<DefaultCredentialsChain>,
}

impl DefaultChain {
    /// `region` is where STS is asked for web identity credentials (else the profile's).
    pub fn new(region: Option<String>) -> DefaultChain {
        DefaultChain {
            region,
            chain: OnceCell::new(),
        }
    }

    async fn chain(&self) -> &DefaultCredentialsChain {
        self.chain
            .get_or_init(|| async {
                let config = ProviderConfig::default().with_http_client(http_client());
                let mut builder = DefaultCredentialsChain::builder().configure(config);
                if let Some(region) = &self.region {
                    builder = builder.region(Region::new(region.clone()));
                }
                builder.build().await
            })
            .await
    }
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(
            async move { self.chain().await.provide_credentials().await },
        )
    }
}

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// The default chain as `object_store`'s S3 credential provider, with the caching that the
/// SDK clients do on their own (temporary credentials are kept until shortly before they
/// expire; refreshes are serialized).
#[derive(Debug)]
pub struct S3Credentials {
    chain: DefaultChain,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl S3Credentials {
    pub fn new(region: Option<String>) -> S3Credentials {
        S3Credentials {
            chain: DefaultChain::new(region),
            cached: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for S3Credentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref()
            && expiry.is_none_or(|at| at > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        {
            return Ok(credential.clone());
        }
        let fresh =
            self.chain
                .provide_credentials()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: format!(
                        "no AWS credentials from the default chain: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                    )
                    .into(),
                })?;
        let credential = Arc::new(AwsCredential {
            key_id: fresh.access_key_id().to_string(),
            secret_key: fresh.secret_access_key().to_string(),
            token: fresh.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), fresh.expiry()));
        Ok(credential)
    }
}
