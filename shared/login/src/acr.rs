//! Azure Container Registry: a Microsoft Entra ID (Azure AD) access token exchanged at the
//! registry for a refresh token (`POST /oauth2/exchange`, as `az acr login` does), which the
//! token handshake then trades for registry tokens (`grant_type=refresh_token`).
//!
//! The Entra token comes, in azure-identity's `DefaultAzureCredential` order, from:
//! 1. a service principal's secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_CLIENT_SECRET`;
//! 2. workload identity (AKS): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_FEDERATED_TOKEN_FILE`;
//! 3. managed identity: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (App Service, Container
//!    Apps, Functions), else the instance metadata service (VMs, VM scale sets);
//!    `AZURE_CLIENT_ID` picks a user-assigned identity.
//!
//! The token service is `AZURE_AUTHORITY_HOST` (default `https://login.microsoftonline.com`).
//! The exchange is sent only to the registry's own host: the `realm` of its challenge must
//! name it.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use ferry_model::Host;
use ferry_registry::auth::{Credential, Login, bearer_realm};
use ferry_registry::{RegistryError, Secret};
use serde::Deserialize;

use crate::http::{self, Failure};
use crate::renew::{Renewing, fresh_for};

/// The resource ACR's exchange accepts Entra tokens for.
const RESOURCE: &str = "https://management.azure.com/";
const SCOPE: &str = "https://management.azure.com/.default";
/// Renew this long before expiry.
pub const MARGIN: Duration = Duration::from_secs(5 * 60);
/// A refresh token's life when it does not say (ACR's are 3 hours).
const REFRESH_LIFETIME: Duration = Duration::from_secs(3 * 3600);
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Whether `host` is an ACR registry (`*.azurecr.io` and the sovereign clouds' suffixes).
pub fn is_acr_host(host: &Host) -> bool {
    let name = host.as_str();
    [".azurecr.io", ".azurecr.cn", ".azurecr.us"].iter().any(|suffix| name.ends_with(suffix))
}

/// What azure-identity reads from the environment.
#[derive(Clone, Debug, Default)]
pub struct AzureEnv {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub federated_token_file: Option<PathBuf>,
    pub authority_host: Option<String>,
    pub identity_endpoint: Option<String>,
    pub identity_header: Option<Secret>,
}

#[derive(Clone, Debug)]
enum Entra {
    Secret { tenant: String, client: String, secret: Secret },
    Workload { tenant: String, client: String, file: PathBuf },
    AppService { endpoint: String, header: Secret, client: Option<String> },
    Imds { client: Option<String> },
}

/// An ACR login.
pub struct Acr {
    entra: Entra,
    authority: String,
    tenant: Option<String>,
    insecure: Vec<Host>,
    detected: bool,
    http: reqwest::Client,
    aad: Renewing<Secret>,
    refresh: Renewing<Option<Credential>>,
}

impl std::fmt::Debug for Acr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acr").field("source", &self.source()).finish()
    }
}

impl Acr {
    /// `tenant` overrides `AZURE_TENANT_ID`; `insecure`: hosts reached over plain HTTP.
    pub fn new(env: &AzureEnv, tenant: Option<String>, insecure: Vec<Host>, detected: bool) -> Self {
        let tenant = tenant.or_else(|| env.tenant_id.clone());
        let entra = match (&tenant, &env.client_id, &env.client_secret, &env.federated_token_file) {
            (Some(tenant), Some(client), Some(secret), _) => {
                Entra::Secret { tenant: tenant.clone(), client: client.clone(), secret: secret.clone() }
            }
            (Some(tenant), Some(client), None, Some(file)) => {
                Entra::Workload { tenant: tenant.clone(), client: client.clone(), file: file.clone() }
            }
            _ => match (&env.identity_endpoint, &env.identity_header) {
                (Some(endpoint), Some(header)) => Entra::AppService {
                    endpoint: endpoint.clone(),
                    header: header.clone(),
                    client: env.client_id.clone(),
                },
                _ => Entra::Imds { client: env.client_id.clone() },
            },
        };
        let authority = env
            .authority_host
            .clone()
            .unwrap_or_else(|| DEFAULT_AUTHORITY.into())
            .trim_end_matches('/')
            .to_owned();
        Self {
            entra,
            authority,
            tenant,
            insecure,
            detected,
            http: http::client(),
            aad: Renewing::default(),
            refresh: Renewing::default(),
        }
    }

    /// How many Entra tokens and refresh tokens were fetched.
    pub fn calls(&self) -> (u64, u64) {
        (self.aad.fetches(), self.refresh.fetches())
    }

    fn error(&self, host: &Host, failure: Failure) -> RegistryError {
        RegistryError::Login {
            host: host.clone(),
            via: self.source(),
            reason: failure.reason,
            transient: failure.transient,
        }
    }

    async fn entra_token(&self) -> Result<(Secret, Duration), Failure> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: Secret,
            #[serde(default)]
            expires_in: Option<serde_json::Value>,
            #[serde(default)]
            expires_on: Option<serde_json::Value>,
        }
        let token_url = |tenant: &str| format!("{}/{tenant}/oauth2/v2.0/token", self.authority);
        let answer: Answer = match &self.entra {
            Entra::Secret { tenant, client, secret } => {
                let url = token_url(tenant);
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client.as_str()),
                    ("client_secret", secret.expose()),
                    ("scope", SCOPE),
                ];
                http::json(self.http.post(&url).form(&form), &format!("Entra ID {url}")).await?
            }
            Entra::Workload { tenant, client, file } => {
                let assertion = std::fs::read_to_string(file).map_err(|e| {
                    Failure::permanent(format!(
                        "cannot read AZURE_FEDERATED_TOKEN_FILE {}: {e}",
                        file.display()
                    ))
                })?;
                let url = token_url(tenant);
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client.as_str()),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", assertion.trim()),
                    ("scope", SCOPE),
                ];
                http::json(self.http.post(&url).form(&form), &format!("Entra ID {url}")).await?
            }
            Entra::AppService { endpoint, header, client } => {
                let mut query = vec![("api-version", "2019-08-01"), ("resource", RESOURCE)];
                if let Some(client) = client {
                    query.push(("client_id", client));
                }
                let request =
                    self.http.get(endpoint).query(&query).header("X-IDENTITY-HEADER", header.expose());
                http::json(request, &format!("the managed identity endpoint {endpoint}")).await?
            }
            Entra::Imds { client } => {
                let mut query = vec![("api-version", "2018-02-01"), ("resource", RESOURCE)];
                if let Some(client) = client {
                    query.push(("client_id", client));
                }
                let request = self
                    .http
                    .get(IMDS)
                    .query(&query)
                    .header("Metadata", "true")
                    .timeout(Duration::from_secs(5));
                http::json(request, "the instance metadata service").await?
            }
        };
        let number = |v: &serde_json::Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        let lifetime = match (
            answer.expires_in.as_ref().and_then(number),
            answer.expires_on.as_ref().and_then(number),
        ) {
            (Some(seconds), _) => Duration::from_secs(seconds),
            (None, Some(at)) => {
                Duration::from_secs(at.saturating_sub(chrono::Utc::now().timestamp().max(0) as u64))
            }
            (None, None) => Duration::from_secs(3600),
        };
        Ok((answer.access_token, lifetime))
    }

    /// The registry's token realm: the exchange is next to it, on the registry's host.
    async fn realm(&self, host: &Host) -> Result<(reqwest::Url, String), Failure> {
        let scheme = if self.insecure.contains(host) { "http" } else { "https" };
        let url = format!("{scheme}://{}/v2/", host.api_authority());
        let response =
            self.http.get(&url).send().await.map_err(|e| Failure {
                reason: format!("{url} could not be reached: {e}"),
                transient: true,
            })?;
        let challenge =
            response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).ok_or_else(|| {
                Failure::permanent(format!("{url} did not ask for a bearer token; is it an ACR registry?"))
            })?;
        let (realm, service) = bearer_realm(challenge).ok_or_else(|| {
            Failure::permanent(format!("{url} did not ask for a bearer token; is it an ACR registry?"))
        })?;
        let realm = reqwest::Url::parse(&realm)
            .map_err(|_| Failure::permanent(format!("the registry's token realm {realm:?} is not a URL")))?;
        if realm.host_str() != Some(host.name()) {
            return Err(Failure::permanent(format!(
                "the registry's token realm is on {}, not on the registry's host; the Entra token is sent only to the registry",
                ferry_model::escaped(realm.host_str().unwrap_or_default())
            )));
        }
        Ok((realm, service.unwrap_or_else(|| host.name().to_owned())))
    }

    async fn exchange(&self, host: &Host) -> Result<(Option<Credential>, Duration), RegistryError> {
        let (realm, service) = match self.realm(host).await {
            Ok(found) => found,
            Err(f) => return Err(self.error(host, f)),
        };
        let mut exchange = realm.clone();
        exchange.set_path("/oauth2/exchange");
        exchange.set_query(None);
        // An Entra token the exchange refuses is fetched again, once.
        let mut refused: Option<Secret> = None;
        for attempt in 0..2 {
            let aad = match self
                .aad
                .get("entra", |t| refused.as_ref() == Some(t), || self.entra_token())
                .await
            {
                Ok(token) => token,
                Err(f) if self.detected && f.transient && matches!(self.entra, Entra::Imds { .. }) => {
                    tracing::debug!(%host, reason = %f.reason, "no Azure credentials; reaching the host anonymously");
                    return Ok((None, crate::helper::REUSE));
                }
                Err(f) => return Err(self.error(host, f)),
            };
            #[derive(Deserialize)]
            struct Answer {
                refresh_token: Secret,
            }
            let mut form = vec![
                ("grant_type", "access_token"),
                ("service", service.as_str()),
                ("access_token", aad.expose()),
            ];
            if let Some(tenant) = &self.tenant {
                form.push(("tenant", tenant));
            }
            let what = format!("the registry's exchange {exchange}");
            match http::json::<Answer>(self.http.post(exchange.clone()).form(&form), &what).await {
                Ok(answer) => {
                    let lifetime = jwt_lifetime(answer.refresh_token.expose()).unwrap_or(REFRESH_LIFETIME);
                    tracing::info!(%host, via = %self.source(), expires_in_s = lifetime.as_secs(), "logged in to ACR");
                    return Ok((
                        Some(Credential::IdentityToken(answer.refresh_token)),
                        fresh_for(lifetime, MARGIN),
                    ));
                }
                Err(f) if attempt == 0 && f.reason.contains("HTTP 401") => refused = Some(aad),
                Err(f) => return Err(self.error(host, f)),
            }
        }
        Err(self.error(host, Failure::permanent("the registry refused a fresh Entra token")))
    }
}

/// The time left before a JWT's `exp`, read without verifying it (only to know when to renew).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_i64()?;
    let left = exp - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(left.max(0) as u64))
}

impl Login for Acr {
    fn source(&self) -> String {
        let mut source = match &self.entra {
            Entra::Secret { client, .. } => {
                format!("ACR exchange of an Entra ID token (service principal {client}, AZURE_CLIENT_SECRET)")
            }
            Entra::Workload { client, file, .. } => {
                format!("ACR exchange of an Entra ID token (workload identity {client}, {})", file.display())
            }
            Entra::AppService { .. } => {
                "ACR exchange of an Entra ID token (managed identity, IDENTITY_ENDPOINT)".into()
            }
            Entra::Imds { .. } => {
                "ACR exchange of an Entra ID token (managed identity, instance metadata)".into()
            }
        };
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
        Box::pin(async move { self.refresh.credential(host.as_str(), refused, || self.exchange(host)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts() {
        for (host, acr) in [
            ("example.azurecr.io", true),
            ("example.azurecr.cn", true),
            ("azurecr.io", false),
            ("example.azurecr.io.evil.example", false),
        ] {
            assert_eq!(is_acr_host(&Host::parse(host).unwrap()), acr, "{host}");
        }
    }

    #[test]
    fn challenges_and_token_lifetimes_are_read() {
        assert_eq!(
            bearer_realm(r#"Bearer realm="https://x.azurecr.io/oauth2/token",service="x.azurecr.io""#),
            Some(("https://x.azurecr.io/oauth2/token".into(), Some("x.azurecr.io".into())))
        );
        assert_eq!(bearer_realm(r#"Basic realm="x""#), None);
        let exp = chrono::Utc::now().timestamp() + 600;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"));
        let left = jwt_lifetime(&format!("h.{payload}.s")).unwrap();
        assert!(left <= Duration::from_secs(600) && left >= Duration::from_secs(590));
        assert_eq!(jwt_lifetime("opaque"), None);
    }

    #[test]
    fn the_entra_source_follows_default_azure_credential() {
        let env = AzureEnv {
            tenant_id: Some("t".into()),
            client_id: Some("c".into()),
            federated_token_file: Some("/var/run/secrets/azure/tokens/azure-identity-token".into()),
            ..AzureEnv::default()
        };
        assert!(Acr::new(&env, None, vec![], false).source().contains("workload identity c"));
        let env = AzureEnv { client_secret: Some(Secret::new("s")), ..env };
        assert!(Acr::new(&env, None, vec![], false).source().contains("service principal c"));
        assert!(Acr::new(&AzureEnv::default(), None, vec![], true).source().contains("instance metadata"));
    }
}
