//! Amazon ECR and ECR Public: `GetAuthorizationToken` through the AWS SDK, whose credential
//! chain (environment, profile, web identity, ECS and EC2 roles; on Lambda, the function's
//! role) and endpoint settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECR`) apply as the AWS
//! CLI applies them. With a role ARN, the SDK's credentials assume that role first (STS).
//!
//! A private token is valid for 12 hours for every registry the principal may use, so one
//! token serves every ECR host of one region and role; it is renewed [`MARGIN`] before it
//! expires, or when a registry refuses it. The token is `base64("AWS:" + password)`.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_sdk_ecr::config::Region;
use base64::Engine as _;
use ferry_model::Host;
use ferry_registry::auth::{Credential, Login};
use ferry_registry::{Classify as _, RegistryError, Secret};
use regex::Regex;
use tokio::sync::OnceCell;

use crate::renew::{Renewing, fresh_for};

/// Renew a token this long before it expires (what amazon-ecr-credential-helper's cache does).
pub const MARGIN: Duration = Duration::from_secs(15 * 60);

/// ECR Public's one region.
const PUBLIC_REGION: &str = "us-east-1";
/// ECR Public's registry host.
pub const PUBLIC_HOST: &str = "public.ecr.aws";

/// amazon-ecr-credential-helper's pattern for private registry hosts: account, FIPS, region,
/// partition suffix (IPv4 `dkr.ecr` and dual-stack `dkr-ecr` names).
static PRIVATE_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\.(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$",
    )
    .expect("a valid pattern")
});

/// What a host's name says about its ECR registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcrHost {
    Private { account: String, region: String, fips: bool },
    Public,
}

/// The ECR registry `host` names, if it is one.
pub fn parse_host(host: &Host) -> Option<EcrHost> {
    if host.as_str() == PUBLIC_HOST {
        return Some(EcrHost::Public);
    }
    let captures = PRIVATE_HOST.captures(host.as_str())?;
    Some(EcrHost::Private {
        account: captures[1].to_owned(),
        fips: captures.get(2).is_some(),
        region: captures[3].to_owned(),
    })
}

/// One ECR identity: private or public, a region, optionally a role to assume.
pub struct Ecr {
    public: bool,
    region: Option<String>,
    role_arn: Option<String>,
    /// Detected from a host name rather than configured: no AWS credentials at all means
    /// anonymous access (public.ecr.aws serves anonymous pulls), not an error.
    detected: bool,
    client: OnceCell<Client>,
    cache: Renewing<Option<Credential>>,
}

struct Client {
    service: Service,
    credentials: Option<SharedCredentialsProvider>,
}

enum Service {
    Private(aws_sdk_ecr::Client),
    Public(aws_sdk_ecrpublic::Client),
}

impl std::fmt::Debug for Ecr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ecr").field("public", &self.public).field("region", &self.region).finish()
    }
}

impl Ecr {
    /// A private registry login; `region` `None` means the SDK's (`AWS_REGION`, profile).
    pub fn private(region: Option<String>, role_arn: Option<String>, detected: bool) -> Self {
        Self::new(false, region, role_arn, detected)
    }

    /// ECR Public (always us-east-1).
    pub fn public(role_arn: Option<String>, detected: bool) -> Self {
        Self::new(true, Some(PUBLIC_REGION.into()), role_arn, detected)
    }

    fn new(public: bool, region: Option<String>, role_arn: Option<String>, detected: bool) -> Self {
        Self { public, region, role_arn, detected, client: OnceCell::new(), cache: Renewing::default() }
    }

    /// How many tokens were fetched.
    pub fn calls(&self) -> u64 {
        self.cache.fetches()
    }

    fn error(&self, host: &Host, reason: String, transient: bool) -> RegistryError {
        RegistryError::Login { host: host.clone(), via: self.source(), reason, transient }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let region = RegionProviderChain::first_try(self.region.clone().map(Region::new))
                    .or_default_provider();
                let base = aws_config::defaults(BehaviorVersion::latest()).region(region).load().await;
                let config = match &self.role_arn {
                    Some(role) => {
                        let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                            .session_name("ferry")
                            .configure(&base)
                            .build()
                            .await;
                        base.into_builder()
                            .credentials_provider(SharedCredentialsProvider::new(provider))
                            .build()
                    }
                    None => base,
                };
                let service = if self.public {
                    Service::Public(aws_sdk_ecrpublic::Client::new(&config))
                } else {
                    Service::Private(aws_sdk_ecr::Client::new(&config))
                };
                Client { service, credentials: config.credentials_provider() }
            })
            .await
    }

    async fn fetch(&self, host: &Host) -> Result<(Option<Credential>, Duration), RegistryError> {
        let client = self.client().await;
        if self.detected {
            // Only a name matched: without any AWS credentials, go anonymously.
            let found = match &client.credentials {
                Some(provider) => provider.provide_credentials().await,
                None => Err(CredentialsError::not_loaded("no credentials provider")),
            };
            if let Err(CredentialsError::CredentialsNotLoaded(_)) = found {
                tracing::debug!(%host, "no AWS credentials; reaching the ECR host anonymously");
                return Ok((None, crate::helper::REUSE));
            }
        }
        let (token, expires) = match &client.service {
            Service::Private(client) => {
                let answer =
                    client.get_authorization_token().send().await.map_err(|e| self.sdk_error(host, e))?;
                let data = answer.authorization_data.unwrap_or_default().into_iter().next();
                let data = data.ok_or_else(|| {
                    self.error(host, "ECR answered without authorization data".into(), true)
                })?;
                (data.authorization_token, data.expires_at)
            }
            Service::Public(client) => {
                let answer =
                    client.get_authorization_token().send().await.map_err(|e| self.sdk_error(host, e))?;
                let data = answer.authorization_data.ok_or_else(|| {
                    self.error(host, "ECR Public answered without authorization data".into(), true)
                })?;
                (data.authorization_token, data.expires_at)
            }
        };
        let Some(token) = token else {
            return Err(self.error(host, "the answer has no authorizationToken".into(), true));
        };
        let credential = decode_token(&token).map_err(|reason| self.error(host, reason.into(), false))?;
        let lifetime = expires
            .and_then(|at| SystemTime::try_from(at).ok())
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        tracing::info!(%host, via = %self.source(), expires_in_s = lifetime.as_secs(), "logged in to ECR");
        Ok((Some(credential), fresh_for(lifetime, MARGIN)))
    }

    fn sdk_error<E, R>(&self, host: &Host, error: aws_sdk_ecr::error::SdkError<E, R>) -> RegistryError
    where
        E: std::error::Error + aws_sdk_ecr::error::ProvideErrorMetadata + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        use aws_sdk_ecr::error::SdkError;
        let transient = match &error {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(e) => matches!(
                e.err().code(),
                Some(
                    "ThrottlingException"
                        | "ServerException"
                        | "ServiceUnavailableException"
                        | "InternalFailure"
                )
            ),
            _ => false,
        };
        // The SDK's message names the operation and the service's error code and message;
        // credentials are never part of it.
        let reason = aws_sdk_ecr::error::DisplayErrorContext(&error).to_string();
        self.error(host, reason, transient)
    }
}

/// ECR's `ListImages`, one request per 1,000 images: a repository's every tag with its digest
/// (and its untagged digests), instead of a `HEAD` per tag. Uses the login's client, so the
/// same credentials and role; needs `ecr:ListImages` on the repository.
#[derive(Debug)]
pub struct EcrListing {
    pub(crate) ecr: std::sync::Arc<Ecr>,
}

impl ferry_registry::InventorySource for EcrListing {
    fn source(&self) -> String {
        let mut source = "ECR ListImages".to_owned();
        if let Some(region) = &self.ecr.region {
            source.push_str(&format!(" in {region}"));
        }
        if let Some(role) = &self.ecr.role_arn {
            source.push_str(&format!(" as role {role}"));
        }
        source
    }

    fn kind(&self) -> ferry_registry::InventoryKind {
        ferry_registry::InventoryKind::EcrListImages
    }

    fn list<'a>(
        &'a self,
        repository: &'a ferry_model::Repository,
    ) -> Pin<Box<dyn Future<Output = Result<ferry_registry::Inventory, RegistryError>> + Send + 'a>> {
        Box::pin(self.ecr.list_images(repository))
    }
}

/// Pages of `ListImages` before a listing is given up on (ten million images).
const MAX_LIST_PAGES: usize = 10_000;

impl Ecr {
    async fn list_images(
        &self,
        repository: &ferry_model::Repository,
    ) -> Result<ferry_registry::Inventory, RegistryError> {
        use ferry_registry::{Inventory, InventoryKind};
        let host = repository.host();
        let what = format!("ECR ListImages of {repository}");
        let client = self.client().await;
        let Service::Private(client) = &client.service else {
            return Err(RegistryError::Config(format!(
                "{what}: ECR Public has no ListImages; list it by tags/list"
            )));
        };
        let registry_id = match parse_host(host) {
            Some(EcrHost::Private { account, .. }) => Some(account),
            _ => None,
        };
        let (mut tagged, mut untagged, mut pages, mut next) = (Vec::new(), Vec::new(), 0, None);
        loop {
            pages += 1;
            if pages > MAX_LIST_PAGES {
                return Err(RegistryError::InvalidResponse {
                    url: what,
                    reason: format!("still paging after {MAX_LIST_PAGES} pages"),
                });
            }
            let answer = client
                .list_images()
                .repository_name(repository.path().as_str())
                .set_registry_id(registry_id.clone())
                .max_results(1000)
                .set_next_token(next.take())
                .send()
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_repository_not_found_exception()) => {
                    return Ok(Inventory::missing());
                }
                Err(e) => {
                    let listing = self.sdk_error(host, e);
                    let transient = listing.class() == ferry_registry::ErrorClass::Transient;
                    let reason = match listing {
                        RegistryError::Login { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    return Err(if transient {
                        RegistryError::Unavailable(format!("{what}: {reason}"))
                    } else {
                        RegistryError::InvalidResponse { url: what, reason }
                    });
                }
            };
            for id in answer.image_ids() {
                let digest = id.image_digest().map(ferry_model::Digest::parse).transpose().map_err(|e| {
                    RegistryError::InvalidResponse {
                        url: what.clone(),
                        reason: format!("an imageDigest: {e}"),
                    }
                })?;
                let Some(digest) = digest else { continue };
                match id.image_tag().map(ferry_model::Tag::parse) {
                    Some(Ok(tag)) => tagged.push((tag, digest)),
                    Some(Err(e)) => {
                        tracing::warn!(%repository, error = %e, "skipping a tag ECR listed");
                        untagged.push(digest);
                    }
                    None => untagged.push(digest),
                }
            }
            next = answer.next_token;
            if next.is_none() {
                break;
            }
        }
        Inventory::from_pairs(InventoryKind::EcrListImages, tagged, untagged, pages)
            .map_err(|reason| RegistryError::InvalidResponse { url: what, reason })
    }
}

/// `base64("AWS:" + password)` into a basic credential.
fn decode_token(token: &str) -> Result<Credential, &'static str> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "the authorizationToken is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "the authorizationToken is not UTF-8")?;
    let (username, password) =
        decoded.split_once(':').ok_or("the authorizationToken is not user:password")?;
    Ok(Credential::Basic { username: username.to_owned(), password: Secret::new(password) })
}

impl Login for Ecr {
    fn source(&self) -> String {
        let service = if self.public { "ECR Public" } else { "ECR" };
        let mut source = format!("{service} GetAuthorizationToken");
        if let Some(region) = &self.region {
            source.push_str(&format!(" in {region}"));
        }
        if let Some(role) = &self.role_arn {
            source.push_str(&format!(" as role {role}"));
        } else {
            source.push_str(" with the AWS SDK's default credentials");
        }
        if self.detected {
            source.push_str(", from the host's name");
        }
        source
    }

    fn credential<'a>(
        &'a self,
        host: &'a Host,
        refused: Option<&'a Credential>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Credential>, RegistryError>> + Send + 'a>> {
        Box::pin(async move { self.cache.credential("token", refused, || self.fetch(host)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_recognised_as_the_ecr_credential_helper_does() {
        let private = |account: &str, region: &str, fips: bool| {
            Some(EcrHost::Private { account: account.into(), region: region.into(), fips })
        };
        for (host, expected) in [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", private("123456789012", "us-east-1", false)),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                private("123456789012", "us-gov-west-1", true),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                private("123456789012", "cn-north-1", false),
            ),
            ("123456789012.dkr-ecr.eu-west-1.on.aws", private("123456789012", "eu-west-1", false)),
            ("public.ecr.aws", Some(EcrHost::Public)),
            ("12345678901.dkr.ecr.us-east-1.amazonaws.com", None),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example", None),
            ("gcr.io", None),
        ] {
            assert_eq!(parse_host(&Host::parse(host).unwrap()), expected, "{host}");
        }
    }

    #[test]
    fn tokens_decode_to_basic_credentials() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:secret-password");
        let Credential::Basic { username, password } = decode_token(&token).unwrap() else { panic!() };
        assert_eq!((username.as_str(), password.expose()), ("AWS", "secret-password"));
        assert!(decode_token("%%%").is_err());
        assert!(decode_token(&base64::engine::general_purpose::STANDARD.encode("nocolon")).is_err());
    }
}
