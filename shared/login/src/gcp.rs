//! Google Artifact Registry and Container Registry: an OAuth 2.0 access token presented as
//! the password of the user `oauth2accesstoken`, as `gcloud auth configure-docker` and
//! docker-credential-gcr do.
//!
//! The token comes from Application Default Credentials, looked up as Google's libraries look
//! them up:
//! 1. the file `GOOGLE_APPLICATION_CREDENTIALS` names;
//! 2. gcloud's file, `$CLOUDSDK_CONFIG/application_default_credentials.json` (default
//!    `~/.config/gcloud/`);
//! 3. the metadata server (GCE, GKE with Workload Identity, Cloud Run, Cloud Build), at
//!    `GCE_METADATA_HOST` or `metadata.google.internal`.
//!
//! Files may hold a `service_account` key (a JWT signed RS256 with its key, exchanged at its
//! `token_uri`: RFC 7523), an `authorized_user` (a refresh token), or an
//! `impersonated_service_account` (either of those, then the IAM Credentials
//! `generateAccessToken` URL the file names). With `service-account` configured, the token is
//! that of the named service account, obtained by impersonation.
//!
//! Why not a crate: google-cloud-auth mints self-signed JWTs for service-account keys instead
//! of exchanging them at `token_uri`, so what it sends cannot be checked against a stand-in of
//! the token endpoint here, and gcp_auth brings ring; this is the documented protocol on the
//! TLS and crypto the rest of Ferry already uses.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use ferry_model::Host;
use ferry_registry::auth::{Credential, Login, json_error_without_values};
use ferry_registry::{RegistryError, Secret};
use serde::Deserialize;

use crate::http::{self, Failure};
use crate::renew::{Renewing, fresh_for};

/// The scope Artifact Registry and Container Registry accept.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The registry user an access token is presented as.
pub const USERNAME: &str = "oauth2accesstoken";
/// Google's token endpoint, when a file names none.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Renew this long before expiry (Google's libraries use 3 min 45 s).
pub const MARGIN: Duration = Duration::from_secs(5 * 60);
/// The lifetime of an assertion and of an impersonated token.
const HOUR: u64 = 3600;

/// Whether `host` is a Google registry: `gcr.io`, `*.gcr.io`, `*-docker.pkg.dev`.
pub fn is_google_host(host: &Host) -> bool {
    let name = host.as_str();
    name == "gcr.io" || name.ends_with(".gcr.io") || name.ends_with("-docker.pkg.dev")
}

/// What Google's libraries read from the environment.
#[derive(Clone, Debug, Default)]
pub struct GoogleEnv {
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    pub application_credentials: Option<PathBuf>,
    /// `CLOUDSDK_CONFIG`, else `~/.config/gcloud`.
    pub gcloud_config: Option<PathBuf>,
    /// `GCE_METADATA_HOST` (`host[:port]`).
    pub metadata_host: Option<String>,
}

#[derive(Clone, Debug)]
enum Base {
    File { path: PathBuf, from: &'static str },
    Metadata { host: String },
}

/// A Google login.
pub struct Google {
    base: Base,
    impersonate: Option<String>,
    detected: bool,
    http: reqwest::Client,
    cache: Renewing<Option<Credential>>,
}

impl std::fmt::Debug for Google {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Google").field("base", &self.base).field("impersonate", &self.impersonate).finish()
    }
}

impl Google {
    /// Application Default Credentials from `env`; `impersonate`: a service account's email.
    /// `detected`: only a host's name asked for it, so with no credentials at all the host is
    /// reached anonymously.
    pub fn new(env: &GoogleEnv, impersonate: Option<String>, detected: bool) -> Self {
        let gcloud_file =
            env.gcloud_config.as_ref().map(|dir| dir.join("application_default_credentials.json"));
        let base = match (&env.application_credentials, gcloud_file) {
            (Some(path), _) => Base::File { path: path.clone(), from: "GOOGLE_APPLICATION_CREDENTIALS" },
            (None, Some(path)) if path.is_file() => {
                Base::File { path, from: "gcloud's application default credentials" }
            }
            _ => Base::Metadata {
                host: env.metadata_host.clone().unwrap_or_else(|| "metadata.google.internal".into()),
            },
        };
        Self { base, impersonate, detected, http: http::client(), cache: Renewing::default() }
    }

    /// How many access tokens were fetched.
    pub fn calls(&self) -> u64 {
        self.cache.fetches()
    }

    fn error(&self, host: &Host, failure: Failure) -> RegistryError {
        RegistryError::Login {
            host: host.clone(),
            via: self.source(),
            reason: failure.reason,
            transient: failure.transient,
        }
    }

    async fn fetch(&self, host: &Host) -> Result<(Option<Credential>, Duration), RegistryError> {
        let token = match &self.base {
            Base::File { path, .. } => {
                let file = read_file(path).map_err(|f| self.error(host, f))?;
                file_token(&self.http, &file).await.map_err(|f| self.error(host, f))?
            }
            Base::Metadata { host: metadata } => match metadata_token(&self.http, metadata).await {
                Ok(token) => token,
                Err(f) if self.detected && f.transient => {
                    // No metadata server and no file: not on Google Cloud, no credentials.
                    tracing::debug!(%host, reason = %f.reason, "no Google credentials; reaching the host anonymously");
                    return Ok((None, crate::helper::REUSE));
                }
                Err(f) => return Err(self.error(host, f)),
            },
        };
        let token = match &self.impersonate {
            Some(account) => {
                let url = format!(
                    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
                );
                impersonate(&self.http, &url, &token.value, &[]).await.map_err(|f| self.error(host, f))?
            }
            None => token,
        };
        tracing::info!(%host, via = %self.source(), expires_in_s = token.expires_in.as_secs(), "logged in to Google");
        let credential = Credential::Basic { username: USERNAME.into(), password: token.value };
        Ok((Some(credential), fresh_for(token.expires_in, MARGIN)))
    }
}

impl Login for Google {
    fn source(&self) -> String {
        let mut source = match &self.base {
            Base::File { path, from } => format!("Google credentials from {} ({from})", path.display()),
            Base::Metadata { host } => format!("Google credentials from the metadata server {host}"),
        };
        if let Some(account) = &self.impersonate {
            source.push_str(&format!(", impersonating {account}"));
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

/// An access token and how long it lives.
pub(crate) struct Token {
    value: Secret,
    expires_in: Duration,
}

/// A credentials file, by its `type`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CredentialsFile {
    ServiceAccount(ServiceAccountKey),
    AuthorizedUser(AuthorizedUser),
    ImpersonatedServiceAccount {
        service_account_impersonation_url: String,
        source_credentials: Box<CredentialsFile>,
        #[serde(default)]
        delegates: Vec<String>,
    },
    ExternalAccount {},
}

#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Deserialize)]
struct AuthorizedUser {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    #[serde(default)]
    token_uri: Option<String>,
}

fn read_file(path: &Path) -> Result<CredentialsFile, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::permanent(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::permanent(format!(
            "{}: not a Google credentials file (service_account, authorized_user or impersonated_service_account): it {}",
            path.display(),
            json_error_without_values(&e)
        ))
    })
}

fn file_token<'a>(
    http: &'a reqwest::Client,
    file: &'a CredentialsFile,
) -> Pin<Box<dyn Future<Output = Result<Token, Failure>> + Send + 'a>> {
    Box::pin(async move {
        match file {
            CredentialsFile::ServiceAccount(key) => service_account_token(http, key).await,
            CredentialsFile::AuthorizedUser(user) => {
                let uri = user.token_uri.as_deref().unwrap_or(TOKEN_URI);
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", user.client_id.as_str()),
                    ("client_secret", user.client_secret.expose()),
                    ("refresh_token", user.refresh_token.expose()),
                ];
                token_answer(http.post(uri).form(&form), &format!("Google's token endpoint {uri}")).await
            }
            CredentialsFile::ImpersonatedServiceAccount {
                service_account_impersonation_url,
                source_credentials,
                delegates,
            } => {
                if matches!(**source_credentials, CredentialsFile::ImpersonatedServiceAccount { .. }) {
                    return Err(Failure::permanent(
                        "impersonation of an impersonated account is not supported",
                    ));
                }
                let source = file_token(http, source_credentials).await?;
                impersonate(http, service_account_impersonation_url, &source.value, delegates).await
            }
            CredentialsFile::ExternalAccount {} => Err(Failure::permanent(
                "external_account (workload identity federation) files are not supported; on Google Cloud use the metadata server, elsewhere a service account key or impersonation",
            )),
        }
    })
}

/// RFC 7523: a JWT signed with the service account's key, exchanged at its `token_uri`.
async fn service_account_token(http: &reqwest::Client, key: &ServiceAccountKey) -> Result<Token, Failure> {
    let uri = key.token_uri.as_deref().unwrap_or(TOKEN_URI);
    let now = chrono::Utc::now().timestamp();
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(id) = &key.private_key_id {
        header["kid"] = serde_json::Value::String(id.clone());
    }
    let claims = serde_json::json!({
        "iss": key.client_email, "scope": SCOPE, "aud": uri, "iat": now, "exp": now + HOUR as i64,
    });
    let assertion = sign_rs256(&header, &claims, &key.private_key)?;
    let form =
        [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.expose())];
    token_answer(http.post(uri).form(&form), &format!("Google's token endpoint {uri}")).await
}

/// `header.claims.signature`, RS256 with a PKCS#8 PEM key.
fn sign_rs256(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    pem: &Secret,
) -> Result<Secret, Failure> {
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let der = pem_body(pem.expose())
        .ok_or_else(|| Failure::permanent("the private_key is not a PEM \"PRIVATE KEY\""))?;
    let key = RsaKeyPair::from_pkcs8(&der)
        .map_err(|_| Failure::permanent("the private_key is not a PKCS#8 RSA key"))?;
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut signature)
        .map_err(|_| Failure::permanent("cannot sign with the private_key"))?;
    Ok(Secret::new(format!("{input}.{}", b64(&signature))))
}

/// The DER inside `-----BEGIN PRIVATE KEY-----`.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = pem[start..].find("-----END PRIVATE KEY-----")? + start;
    let body: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

async fn metadata_token(http: &reqwest::Client, host: &str) -> Result<Token, Failure> {
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let request = http
        .get(&url)
        .query(&[("scopes", SCOPE)])
        .header("Metadata-Flavor", "Google")
        .timeout(Duration::from_secs(5));
    token_answer(request, &format!("the metadata server {host}")).await
}

/// `{"access_token": …, "expires_in": …}`.
async fn token_answer(request: reqwest::RequestBuilder, what: &str) -> Result<Token, Failure> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Secret,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let answer: Answer = http::json(request, what).await?;
    Ok(Token {
        value: answer.access_token,
        expires_in: Duration::from_secs(answer.expires_in.unwrap_or(HOUR)),
    })
}

/// IAM Credentials `generateAccessToken` at `url`, authorized by `source`.
async fn impersonate(
    http: &reqwest::Client,
    url: &str,
    source: &Secret,
    delegates: &[String],
) -> Result<Token, Failure> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        access_token: Secret,
        expire_time: String,
    }
    let mut body = serde_json::json!({"scope": [SCOPE], "lifetime": format!("{HOUR}s")});
    if !delegates.is_empty() {
        body["delegates"] = serde_json::json!(delegates);
    }
    let request = http.post(url).bearer_auth(source.expose()).json(&body);
    let answer: Answer = http::json(request, &format!("IAM Credentials {url}")).await?;
    let expires_in = chrono::DateTime::parse_from_rfc3339(&answer.expire_time)
        .ok()
        .and_then(|at| (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok())
        .unwrap_or_default();
    Ok(Token { value: answer.access_token, expires_in })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_hosts() {
        for (host, google) in [
            ("gcr.io", true),
            ("eu.gcr.io", true),
            ("us-docker.pkg.dev", true),
            ("europe-west1-docker.pkg.dev", true),
            ("pkg.dev", false),
            ("gcr.io.evil.example", false),
            ("notgcr.io", false),
        ] {
            assert_eq!(is_google_host(&Host::parse(host).unwrap()), google, "{host}");
        }
    }

    #[test]
    fn credentials_files_are_told_apart_without_showing_secrets() {
        let user: CredentialsFile = serde_json::from_str(
            r#"{"type":"authorized_user","client_id":"id","client_secret":"cs","refresh_token":"rt"}"#,
        )
        .unwrap();
        assert!(matches!(user, CredentialsFile::AuthorizedUser(_)));
        let dir = std::env::temp_dir().join(format!("ferry-gcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.json");
        std::fs::write(&path, r#"{"type":"service_account","client_email":"a@b","private_key":12345}"#)
            .unwrap();
        let Err(failure) = read_file(&path) else { panic!("a bad file is refused") };
        assert!(
            failure.reason.contains("bad.json") && !failure.reason.contains("12345"),
            "{}",
            failure.reason
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_key_is_refused_by_name() {
        let header = serde_json::json!({});
        let failure = sign_rs256(&header, &header, &Secret::new("not a key")).unwrap_err();
        assert!(failure.reason.contains("PEM"));
    }
}
