//! Every HTTP request Ferry sends to a registry goes through [`Transport::send`]: the per-host
//! [`Limiter`], authentication (basic or bearer token, learnt from the registry's challenge),
//! and retries with jittered exponential backoff (backon) for 429, 5xx and connection errors
//! within a per-operation time budget. A 429's `Retry-After` (seconds or HTTP date) sets the
//! delay before the retry and pauses the whole host.
//!
//! Why not oci-client's HTTP calls: oci-client drops `Retry-After`, turns 429 into an opaque
//! error, ignores `Link` pagination and hides status codes, so it could neither honour registry
//! throttling nor classify failures. It is used for its manifest model instead (see
//! `manifest.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use ferry_model::{Host, RepoPath};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use tokio::time::Instant;

use crate::auth::{Challenge, Credential, Credentials, Secret, parse_challenge};
use crate::error::{RegistryError, describe_error_body, short_message};
use crate::guard::HostGuard;
use crate::limiter::{Limiter, LimiterConfig};

/// How hard to try before giving up on one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Attempts in total, the first included.
    pub max_attempts: usize,
    /// The total time one operation may spend waiting between attempts.
    pub budget: Duration,
    /// Attempts of a streamed blob upload, which the transport cannot replay: a failed one
    /// restarts the transfer (`OciRegistry::transfer_blob`), within the same budget.
    pub stream_attempts: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            max_attempts: 8,
            budget: Duration::from_secs(120),
            stream_attempts: 4,
        }
    }
}

/// Everything the transport needs to know, decided by the caller's configuration.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Hosts that may be reached over plain HTTP (like Docker's `--insecure-registry`). Every
    /// other host is HTTPS only.
    pub insecure_hosts: Vec<Host>,
    pub credentials: Credentials,
    pub limiter: LimiterConfig,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// The longest pause between two reads of one response.
    pub read_timeout: Duration,
    pub user_agent: String,
    /// Which hosts may be reached: every host, unless the registry names come from untrusted
    /// input (presubmit). See [`crate::guard`].
    pub guard: HostGuard,
    /// Hosts whose repositories are listed through their registry's own API
    /// (`registries.hosts[].inventory`), instead of `tags/list`.
    pub inventories: HashMap<Host, std::sync::Arc<dyn crate::inventory::InventorySource>>,
    /// Hosts listed with ACR's `/acr/v1/{repo}/_manifests` (with the host's own login, scope
    /// `metadata_read`), besides every `*.azurecr.io`, `*.azurecr.cn` and `*.azurecr.us`.
    pub acr_listings: std::collections::HashSet<Host>,
    /// Hosts listed by `tags/list` only (`inventory: oci`), whatever their name implies.
    pub oci_listings: std::collections::HashSet<Host>,
    /// The listing API a host's name implies (Docker Hub's, Quay's), for hosts the
    /// configuration does not name; asked once per host.
    pub inventory_detect: Option<InventoryDetector>,
    /// Why a host's configured listing API is not used (a missing token): said once, when the
    /// host is first listed, and by `ferry config check`.
    pub inventory_notes: HashMap<Host, String>,
}

/// What turns a host's name into the listing API it implies (see
/// [`TransportConfig::inventory_detect`]).
#[derive(Clone)]
pub struct InventoryDetector(
    #[allow(clippy::type_complexity)]
    pub  std::sync::Arc<
        dyn Fn(&Host) -> Option<std::sync::Arc<dyn crate::inventory::InventorySource>> + Send + Sync,
    >,
);

impl std::fmt::Debug for InventoryDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InventoryDetector")
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            credentials: Credentials::none(),
            limiter: LimiterConfig::default(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")).to_owned(),
            guard: HostGuard::default(),
            inventories: HashMap::new(),
            acr_listings: std::collections::HashSet::new(),
            oci_listings: std::collections::HashSet::new(),
            inventory_detect: None,
            inventory_notes: HashMap::new(),
        }
    }
}

/// The access a request needs, as a token scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Pull(RepoPath),
    /// Push to the first repository, and pull from the second (a cross-repository mount).
    Push(RepoPath, Option<RepoPath>),
    Catalog,
    /// Read a repository's metadata through ACR's listing API (`metadata_read`).
    Metadata(RepoPath),
    /// No repository: a token only proves the credential, as `docker login` asks for one.
    Login,
}

impl Scope {
    fn as_token_scopes(&self) -> Vec<String> {
        match self {
            Scope::Pull(repo) => vec![format!("repository:{repo}:pull")],
            Scope::Push(repo, None) => vec![format!("repository:{repo}:pull,push")],
            Scope::Push(repo, Some(from)) => {
                vec![format!("repository:{repo}:pull,push"), format!("repository:{from}:pull")]
            }
            Scope::Catalog => vec!["registry:catalog:*".to_owned()],
            Scope::Metadata(repo) => vec![format!("repository:{repo}:metadata_read")],
            Scope::Login => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Scope::Login => "login".to_owned(),
            _ => self.as_token_scopes().join(" "),
        }
    }
}

/// One request. `accept` lists the statuses the caller handles itself (all 2xx are accepted
/// unless listed otherwise); anything else becomes an error.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) host: &'a Host,
    /// Starts with `/v2/`.
    pub(crate) path_and_query: String,
    pub(crate) scope: Scope,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    pub(crate) accept: &'static [u16],
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, host: &'a Host, path_and_query: String, scope: Scope) -> Self {
        Self { method, host, path_and_query, scope, headers: HeaderMap::new(), body: None, accept: &[] }
    }

    pub(crate) fn header(mut self, name: reqwest::header::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }

    pub(crate) fn accept(mut self, statuses: &'static [u16]) -> Self {
        self.accept = statuses;
        self
    }
}

#[derive(Clone)]
struct Token {
    value: Secret,
    expires: Instant,
}

/// HTTP 429 answers by registry host, in this process, for every transport (`/metrics`).
static THROTTLED_HOSTS: Mutex<std::collections::BTreeMap<String, u64>> =
    Mutex::new(std::collections::BTreeMap::new());

fn count_throttled(host: &Host) {
    let mut hosts = THROTTLED_HOSTS.lock().unwrap_or_else(|p| p.into_inner());
    *hosts.entry(host.to_string()).or_default() += 1;
}

/// How many 429s each registry host answered in this process.
pub fn throttled_by_host() -> Vec<(String, u64)> {
    THROTTLED_HOSTS.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(h, n)| (h.clone(), *n)).collect()
}

/// Counts of what the transport did, for benchmarks and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU32,
    pub throttled: AtomicU32,
    pub retries: AtomicU32,
}

#[derive(Debug)]
pub struct Transport {
    http: reqwest::Client,
    config: TransportConfig,
    limiter: Limiter,
    challenges: Mutex<HashMap<Host, Challenge>>,
    tokens: Mutex<HashMap<(Host, Scope), Token>>,
    pub counters: Counters,
    /// Requests by host and kind (`manifest HEAD`, `tags/list`, ...), for the cost lines of
    /// `plan`, `status` and `reconcile`.
    by_kind: Mutex<HashMap<(Host, &'static str), u32>>,
    /// How each host's repositories were listed, once known.
    inventories: Mutex<HashMap<Host, crate::inventory::InventoryKind>>,
    /// Hosts whose listing API refused for good (see [`Transport::inventory_refused`]).
    inventory_refused: Mutex<std::collections::HashSet<Host>>,
    /// The listing API each host's name implied, once asked.
    inventory_detected: Mutex<HashMap<Host, Option<std::sync::Arc<dyn crate::inventory::InventorySource>>>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Transport {
    pub fn new(config: TransportConfig) -> Result<Self, RegistryError> {
        let mut http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_max_idle_per_host(64)
            // Registries redirect blob GETs to storage; follow those, but never leak
            // credentials: reqwest drops Authorization on cross-host redirects. A guarded
            // transport never follows one to a reserved address.
            .redirect(config.guard.redirect_policy(5));
        if let Some(resolver) = config.guard.resolver() {
            http = http.dns_resolver(resolver);
        }
        let http =
            http.build().map_err(|e| RegistryError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            limiter: Limiter::new(config.limiter.clone()),
            config,
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            by_kind: Mutex::new(HashMap::new()),
            inventories: Mutex::new(HashMap::new()),
            inventory_refused: Mutex::new(std::collections::HashSet::new()),
            inventory_detected: Mutex::new(HashMap::new()),
        })
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.config.retry
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// `https://host` unless the host is listed as insecure.
    pub(crate) fn base_url(&self, host: &Host) -> String {
        let scheme = if self.config.insecure_hosts.contains(host) { "http" } else { "https" };
        format!("{scheme}://{}", host.api_authority())
    }

    /// One unauthenticated `GET /v2/` on `scheme` (or the scheme this transport would use),
    /// without retries: whether the registry answers there at all. A 401 answers (it asks for
    /// credentials, as registries do); a refused connection or a TLS failure does not.
    pub async fn probe(&self, host: &Host, scheme: Option<&str>) -> Result<u16, String> {
        self.config.guard.admit(host).map_err(|e| e.to_string())?;
        let url = match scheme {
            Some(scheme) => format!("{scheme}://{}/v2/", host.api_authority()),
            None => format!("{}/v2/", self.base_url(host)),
        };
        match self.http.get(&url).timeout(Duration::from_secs(5)).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) => {
                // reqwest's own text is "error sending request"; the cause says what happened.
                let mut causes = Vec::new();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    causes.push(cause.to_string());
                    source = cause.source();
                }
                Err(if causes.is_empty() { error.to_string() } else { causes.join(": ") })
            }
        }
    }

    /// Where `host`'s credential comes from, in words (never the secret).
    pub fn credential_source(&self, host: &Host) -> String {
        self.config.credentials.provided(host).source()
    }

    /// Whether no credential is configured for `host`.
    pub fn is_anonymous(&self, host: &Host) -> bool {
        matches!(self.config.credentials.provided(host), crate::auth::Provided::Anonymous { .. })
    }

    /// Logs in to `host` as `docker login` does: the credential (a login is asked for one),
    /// then `GET /v2/` through the handshake, with a token for no repository. Returns the
    /// status of the authenticated `GET /v2/`, or why logging in failed.
    pub async fn log_in(&self, host: &Host) -> Result<u16, RegistryError> {
        if self.config.credentials.renewable(host) {
            // A login that the registry may never ask for (anonymous reads) is still tried.
            self.config.credentials.credential(host, None).await?;
        }
        let call = Call::new(Method::GET, host, "/v2/".to_owned(), Scope::Login);
        Ok(self.send(&call).await?.status().as_u16())
    }

    /// Counts one request to `host` of `kind` (token requests are counted by kind only: the
    /// `requests` counter has always meant registry API requests).
    fn count(&self, host: &Host, kind: &'static str) {
        if kind != "token" {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
        }
        *self.by_kind.lock().unwrap_or_else(|p| p.into_inner()).entry((host.clone(), kind)).or_insert(0) += 1;
    }

    /// Requests made so far, by host and kind, sorted.
    pub fn requests_by_kind(&self) -> Vec<(Host, &'static str, u32)> {
        let counts = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = counts.iter().map(|((h, k), n)| (h.clone(), *k, *n)).collect();
        out.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
        out
    }

    /// Records how `host` served a listing; said once per host (and again if it changes).
    pub(crate) fn note_inventory(&self, host: &Host, kind: crate::inventory::InventoryKind) {
        if kind == crate::inventory::InventoryKind::Missing {
            return;
        }
        let previous = self.inventories.lock().unwrap_or_else(|p| p.into_inner()).insert(host.clone(), kind);
        if previous != Some(kind) {
            tracing::info!(%host, listing = kind.name(), "repositories at this host are read by listing");
        }
    }

    /// The listing API configured for `host` (or that its name implies), if any, and unless it
    /// was refused before.
    pub(crate) fn inventory_source(
        &self,
        host: &Host,
    ) -> Option<std::sync::Arc<dyn crate::inventory::InventorySource>> {
        if self.inventory_refused.lock().unwrap_or_else(|p| p.into_inner()).contains(host) {
            return None;
        }
        if let Some(source) = self.config.inventories.get(host) {
            return Some(source.clone());
        }
        if self.config.oci_listings.contains(host) {
            return None;
        }
        if let Some(note) = self.config.inventory_notes.get(host)
            && self.inventory_refused.lock().unwrap_or_else(|p| p.into_inner()).insert(host.clone())
        {
            tracing::warn!(%host, reason = %note, "listing this host's repositories by tags/list");
            return None;
        }
        // A guarded transport (presubmit) reaches only the hosts it admits: no vendor API a
        // host's name merely implies.
        if !self.config.guard.is_open() {
            return None;
        }
        let detect = self.config.inventory_detect.as_ref()?;
        let mut detected = self.inventory_detected.lock().unwrap_or_else(|p| p.into_inner());
        detected.entry(host.clone()).or_insert_with(|| (detect.0)(host)).clone()
    }

    /// Whether `host` is listed with ACR's `_manifests` API.
    pub(crate) fn acr_listing(&self, host: &Host) -> bool {
        if self.config.oci_listings.contains(host)
            || self.inventory_refused.lock().unwrap_or_else(|p| p.into_inner()).contains(host)
        {
            return false;
        }
        self.config.acr_listings.contains(host)
            || [".azurecr.io", ".azurecr.cn", ".azurecr.us"].iter().any(|s| host.as_str().ends_with(s))
    }

    /// How `host`'s repositories are listed, as the configuration says (for `ferry config
    /// check`): the configured or implied listing API, or why there is none.
    pub fn configured_inventory(&self, host: &Host) -> Option<String> {
        if let Some(source) = self.config.inventories.get(host) {
            return Some(source.source());
        }
        if self.config.oci_listings.contains(host) {
            return None;
        }
        if let Some(note) = self.config.inventory_notes.get(host) {
            return Some(format!("tags/list ({note})"));
        }
        if self.acr_listing(host) {
            return Some(format!("ACR's /acr/v1/<repository>/_manifests at {host} (scope metadata_read)"));
        }
        let detect = self.config.inventory_detect.as_ref()?;
        (detect.0)(host).map(|source| source.source())
    }

    /// `host`'s listing API refused a listing for good (no permission, not that kind of
    /// registry): its repositories are listed by `tags/list` from now on, and it is said once.
    pub(crate) fn inventory_refused(&self, host: &Host, source: &str, error: &RegistryError) {
        if self.inventory_refused.lock().unwrap_or_else(|p| p.into_inner()).insert(host.clone()) {
            tracing::warn!(%host, listing = source, %error, "the listing API refused; listing this host's repositories by tags/list instead");
        }
    }

    /// Counts requests made outside this transport (a vendor's listing API) for `host`.
    pub(crate) fn count_external(&self, host: &Host, kind: &'static str, n: usize) {
        for _ in 0..n {
            self.count(host, kind);
        }
    }

    /// How `host`'s repositories were listed, once one was.
    pub fn inventory_kind(&self, host: &Host) -> Option<crate::inventory::InventoryKind> {
        self.inventories.lock().unwrap_or_else(|p| p.into_inner()).get(host).copied()
    }

    /// Whether requests to `host` go over plain HTTP.
    pub fn is_insecure(&self, host: &Host) -> bool {
        self.config.insecure_hosts.contains(host)
    }

    /// Sends `call`, retrying 429, 5xx and connection failures within the retry budget.
    pub(crate) async fn send(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        let policy = self.config.retry;
        let started = Instant::now();
        let attempts = AtomicU32::new(0);
        let last_retry_after: Mutex<Option<Duration>> = Mutex::new(None);
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_attempts.saturating_sub(1));
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(call).await
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(RegistryError::is_retryable)
        .adjust(|error, delay| {
            let retry_after = match error {
                RegistryError::Throttled { retry_after, .. } => *retry_after,
                _ => None,
            };
            *last_retry_after.lock().unwrap_or_else(|p| p.into_inner()) = retry_after;
            // Honour Retry-After when the registry gives one; never wait past the budget.
            let delay = retry_after.or(delay)?;
            (started.elapsed() + delay <= policy.budget).then_some(delay)
        })
        .notify(|error, delay| {
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, ?delay, "retrying registry request");
        })
        .await;
        result.map_err(|error| match error {
            RegistryError::Throttled { host, retry_after, .. } => RegistryError::Throttled {
                host,
                attempts: attempts.load(Ordering::Relaxed),
                retry_after: retry_after.or(*last_retry_after.lock().unwrap_or_else(|p| p.into_inner())),
            },
            other => other,
        })
    }

    /// Sends a request whose body is a stream, once: a stream cannot be replayed, so the caller
    /// retries the whole operation instead. The scope's token is fetched beforehand (the
    /// caller's earlier request on the same scope has already learnt the challenge).
    pub(crate) async fn send_streaming(
        &self,
        method: Method,
        host: &Host,
        url_or_path: &str,
        scope: &Scope,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<Response, RegistryError> {
        self.config.guard.admit(host)?;
        self.limiter.acquire(host).await;
        let url = self.absolute_url(host, url_or_path)?;
        let auth = self.authorization(host, scope).await?;
        let mut request = self.http.request(method.clone(), &url).headers(headers).body(body);
        if let Some(auth) = auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        self.count(host, request_kind(&method, &url));
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.connection_error(&method, &url, &e))?;
        tracing::debug!(
            method = method_name(&method),
            url,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "registry request (streamed body)"
        );
        if response.status() == StatusCode::UNAUTHORIZED {
            // A token expired during the upload: forget it and let the caller restart this
            // blob (within its budget); the next token request renews a refused login.
            self.lock_tokens().remove(&(host.clone(), scope.clone()));
            return Err(RegistryError::Connection {
                method: method_name(&method),
                url,
                reason: "the registry refused the credential during the upload (HTTP 401); logging in again"
                    .into(),
            });
        }
        self.check_status(&method, &url, host, response, &[]).await
    }

    /// Resolves a `Location` header or a path against the host, refusing other hosts: a
    /// registry response must not steer Ferry's credentials elsewhere.
    pub(crate) fn absolute_url(&self, host: &Host, url_or_path: &str) -> Result<String, RegistryError> {
        let base = self.base_url(host);
        if url_or_path.starts_with('/') {
            return Ok(format!("{base}{url_or_path}"));
        }
        if let Some(rest) = url_or_path.strip_prefix(&base)
            && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
        {
            return Ok(url_or_path.to_owned());
        }
        Err(RegistryError::InvalidResponse {
            url: base,
            reason: format!("a location on another host ({}) was refused", short_message(url_or_path)),
        })
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Response, RegistryError> {
        self.config.guard.admit(call.host)?;
        self.limiter.acquire(call.host).await;
        let url = self.absolute_url(call.host, &call.path_and_query)?;
        let auth = self.authorization(call.host, &call.scope).await?;
        let mut response = self.raw_send(call, &url, auth.as_ref()).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let Some(challenge) = challenge else {
                return Err(self.auth_error(call, "the registry answered 401 without a usable challenge"));
            };
            self.lock_challenges().insert(call.host.clone(), challenge);
            self.lock_tokens().remove(&(call.host.clone(), call.scope.clone()));
            let authorized = self.authorize(call.host, &call.scope, None).await?;
            if authorized.header.is_none() {
                return Err(self.auth_error(
                    call,
                    &format!(
                        "the registry requires credentials and none are configured for it ({})",
                        self.config.credentials.provided(call.host).source()
                    ),
                ));
            }
            response = self.raw_send(call, &url, authorized.header.as_ref()).await?;
            if response.status() == StatusCode::UNAUTHORIZED
                && self.config.credentials.renewable(call.host)
                && let Some(used) = &authorized.credential
            {
                // The registry itself refused the login's credential (a basic challenge, as
                // ECR's): log in again, once.
                self.lock_tokens().remove(&(call.host.clone(), call.scope.clone()));
                let renewed = self.authorize(call.host, &call.scope, Some(used)).await?;
                response = self.raw_send(call, &url, renewed.header.as_ref()).await?;
            }
            if response.status() == StatusCode::UNAUTHORIZED {
                return Err(self.auth_error(
                    call,
                    &format!(
                        "the registry rejected the credentials ({})",
                        self.config.credentials.provided(call.host).source()
                    ),
                ));
            }
        }
        self.check_status(&call.method, &url, call.host, response, call.accept).await
    }

    async fn raw_send(
        &self,
        call: &Call<'_>,
        url: &str,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, RegistryError> {
        let mut request = self.http.request(call.method.clone(), url).headers(call.headers.clone());
        if let Some(auth) = auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        self.count(call.host, request_kind(&call.method, url));
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.connection_error(&call.method, url, &e))?;
        tracing::debug!(
            method = method_name(&call.method),
            url,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "registry request"
        );
        Ok(response)
    }

    /// Turns an unexpected status into an error (reading the registry's error body), and
    /// records throttling and success with the limiter.
    async fn check_status(
        &self,
        method: &Method,
        url: &str,
        host: &Host,
        response: Response,
        accept: &[u16],
    ) -> Result<Response, RegistryError> {
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after =
                response.headers().get(reqwest::header::RETRY_AFTER).and_then(parse_retry_after);
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            count_throttled(host);
            self.limiter.throttled(host, retry_after);
            return Err(RegistryError::Throttled { host: host.clone(), attempts: 1, retry_after });
        }
        if status.is_success() || accept.contains(&status.as_u16()) {
            self.limiter.succeeded(host);
            if let Some((remaining, reset)) = advertised_budget(response.headers()) {
                self.limiter.advised(host, remaining, reset);
            }
            return Ok(response);
        }
        let body = read_capped(response, 64 * 1024).await.unwrap_or_default();
        let (code, message) = describe_error_body(&body);
        Err(RegistryError::Status {
            method: method_name(method),
            url: url.to_owned(),
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// A connection failure. Behind a guard (the registry names came from a pull request), the
    /// answer goes back to whoever opened it, so it says only that the host could not be
    /// reached: refused, timed out, unreachable or a TLS failure would map the checker's
    /// network for them. The details go to the operator's log.
    fn connection_error(&self, method: &Method, url: &str, error: &reqwest::Error) -> RegistryError {
        let error = connection_error(method, url, error);
        if self.config.guard.is_open() {
            return error;
        }
        if let RegistryError::NotAllowed { .. } = error {
            return error;
        }
        tracing::debug!(%error, "a guarded registry request failed to connect");
        // A refusal by the guard's resolver travels as the cause of a connection error.
        if let RegistryError::Connection { reason, .. } = &error
            && reason.contains("it was not contacted")
        {
            let host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned));
            let detail = reason.rsplit(": ").find(|r| r.contains("not contacted")).unwrap_or("not contacted");
            return RegistryError::NotAllowed { host: host.unwrap_or_default(), reason: detail.to_owned() };
        }
        RegistryError::Connection {
            method: method_name(method),
            url: url.to_owned(),
            reason: "could not be reached".into(),
        }
    }

    fn auth_error(&self, call: &Call<'_>, reason: &str) -> RegistryError {
        RegistryError::Auth {
            host: call.host.clone(),
            scope: call.scope.describe(),
            reason: reason.to_owned(),
        }
    }

    fn lock_challenges(&self) -> std::sync::MutexGuard<'_, HashMap<Host, Challenge>> {
        self.challenges.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<(Host, Scope), Token>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Authorization` header for `scope` on `host`, given what the host has asked for so
    /// far; fetches a bearer token when needed.
    async fn authorization(&self, host: &Host, scope: &Scope) -> Result<Option<HeaderValue>, RegistryError> {
        Ok(self.authorize(host, scope, None).await?.header)
    }

    /// [`Transport::authorization`], and the credential it was made from. `refused`: the
    /// credential the registry just refused, which a login replaces. A token service that
    /// refuses a login's credential gets a renewed one, once.
    async fn authorize(
        &self,
        host: &Host,
        scope: &Scope,
        refused: Option<&Credential>,
    ) -> Result<Authorized, RegistryError> {
        match self.authorize_once(host, scope, refused).await {
            Err((RegistryError::Auth { .. }, Some(used)))
                if refused.is_none() && self.config.credentials.renewable(host) =>
            {
                tracing::info!(
                    %host,
                    via = %self.config.credentials.provided(host).source(),
                    "the token service refused the login's credential; logging in again"
                );
                self.authorize_once(host, scope, Some(&used)).await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// One try of [`Transport::authorize`]; a failure carries the credential it used.
    async fn authorize_once(
        &self,
        host: &Host,
        scope: &Scope,
        refused: Option<&Credential>,
    ) -> Result<Authorized, (RegistryError, Option<Credential>)> {
        let challenge = self.lock_challenges().get(host).cloned();
        match challenge {
            None => Ok(Authorized { header: None, credential: None }),
            Some(Challenge::Basic) => {
                let credential =
                    self.config.credentials.credential(host, refused).await.map_err(|e| (e, None))?;
                let header = match &credential {
                    Some(Credential::Basic { username, password }) => Some(basic_header(username, password)),
                    _ => None,
                };
                Ok(Authorized { header, credential })
            }
            Some(Challenge::Bearer { realm, service }) => {
                let key = (host.clone(), scope.clone());
                let cached = self
                    .lock_tokens()
                    .get(&key)
                    .filter(|t| refused.is_none() && t.expires > Instant::now())
                    .cloned();
                let (token, credential) = match cached {
                    Some(token) => (token, None),
                    None => {
                        // The credential is looked up only when a token is needed: a login
                        // (a helper, a cloud) is asked as rarely as tokens expire.
                        let credential =
                            self.config.credentials.credential(host, refused).await.map_err(|e| (e, None))?;
                        let token = self
                            .fetch_token(host, &realm, service.as_deref(), scope, credential.as_ref())
                            .await
                            .map_err(|e| (e, credential.clone()))?;
                        self.lock_tokens().insert(key, token.clone());
                        (token, credential)
                    }
                };
                let value =
                    HeaderValue::from_str(&format!("Bearer {}", token.value.expose())).map_err(|_| {
                        (self.token_error(host, scope, "the token is not a valid header value"), None)
                    })?;
                Ok(Authorized { header: Some(sensitive(value)), credential })
            }
        }
    }

    fn token_error(&self, host: &Host, scope: &Scope, reason: &str) -> RegistryError {
        RegistryError::Auth { host: host.clone(), scope: scope.describe(), reason: reason.to_owned() }
    }

    async fn fetch_token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        credential: Option<&Credential>,
    ) -> Result<Token, RegistryError> {
        let realm_url = reqwest::Url::parse(realm)
            .map_err(|_| self.token_error(host, scope, &format!("the token realm {realm:?} is not a URL")))?;
        // Credentials go to the realm only over HTTPS, or over HTTP to a host the user listed
        // as insecure.
        let realm_host = realm_url.host_str().unwrap_or_default();
        let realm_authority = match realm_url.port() {
            Some(port) => format!("{realm_host}:{port}"),
            None => realm_host.to_owned(),
        };
        // A realm is the registry's choice, not the input's, but a guarded transport still
        // never asks a reserved address the configuration does not name.
        if realm_host != host.name() {
            self.config.guard.admit_address(realm_host)?;
        }
        let may_send_credentials = realm_url.scheme() == "https"
            || self.config.insecure_hosts.iter().any(|h| h.as_str() == realm_authority);
        let credential = credential.filter(|_| may_send_credentials);
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service.to_owned()));
        }
        for s in scope.as_token_scopes() {
            query.push(("scope", s));
        }
        let request = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = query.clone();
                form.push(("grant_type", "refresh_token".to_owned()));
                form.push(("refresh_token", refresh.expose().to_owned()));
                form.push(("client_id", "ferry".to_owned()));
                self.http.post(realm_url.clone()).form(&form)
            }
            Some(Credential::Basic { username, password }) => self
                .http
                .get(realm_url.clone())
                .query(&query)
                .header(reqwest::header::AUTHORIZATION, basic_header(username, password)),
            None => self.http.get(realm_url.clone()).query(&query),
        };
        let realm_display = format!("{}://{}{}", realm_url.scheme(), realm_authority, realm_url.path());
        if let Ok(realm_host) = Host::parse(&realm_authority) {
            self.count(&realm_host, "token");
        }
        let response =
            request.send().await.map_err(|e| self.connection_error(&Method::GET, &realm_display, &e))?;
        let status = response.status();
        if !status.is_success() {
            let reason = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                format!("the token service at {realm_display} refused the request (HTTP {status})")
            } else {
                format!("the token service at {realm_display} answered HTTP {status}")
            };
            return Err(self.token_error(host, scope, &reason));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = read_capped(response, 1024 * 1024).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            self.token_error(host, scope, "the token service answered with something other than a token")
        })?;
        let value = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.token_error(host, scope, "the token service answered without a token"))?;
        // Renew 10 s early; the spec's default lifetime is 60 s.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(20) - 10);
        Ok(Token { value: Secret::new(value), expires: Instant::now() + lifetime })
    }
}

fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

fn basic_header(username: &str, password: &Secret) -> HeaderValue {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()));
    // Base64 output is always a valid header value.
    sensitive(HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or(HeaderValue::from_static("Basic")))
}

/// What kind of request `method` on `url` is, for the cost lines.
fn request_kind(method: &Method, url: &str) -> &'static str {
    let path = url.split('?').next().unwrap_or(url);
    let path = path.find("/v2/").map(|i| &path[i..]).unwrap_or(path);
    if path == "/v2/" {
        return "ping";
    }
    match (method.as_str(), path) {
        (_, p) if p.contains("/acr/v1/") => "ACR manifests API",
        (_, p) if p.ends_with("/tags/list") => "tags/list",
        (_, p) if p.ends_with("/_catalog") => "catalog",
        (_, p) if p.contains("/referrers/") => "referrers",
        ("HEAD", p) if p.contains("/manifests/") => "manifest HEAD",
        ("GET", p) if p.contains("/manifests/") => "manifest GET",
        ("PUT", p) if p.contains("/manifests/") => "manifest PUT",
        (_, p) if p.contains("/manifests/") => "manifest other",
        (_, p) if p.contains("/blobs/uploads") => "blob upload",
        ("HEAD", p) if p.contains("/blobs/") => "blob HEAD",
        ("GET", p) if p.contains("/blobs/") => "blob GET",
        _ => "other",
    }
}

/// An `Authorization` header, and the credential it was made from (`None`: no credential, or
/// a cached token).
struct Authorized {
    header: Option<HeaderValue>,
    credential: Option<Credential>,
}

pub(crate) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

/// A connection-level failure, described by its cause chain (reqwest's top-level message alone
/// says only "error sending request").
pub(crate) fn connection_error(method: &Method, url: &str, error: &reqwest::Error) -> RegistryError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    RegistryError::Connection { method: method_name(method), url: url.to_owned(), reason }
}

/// The budget a registry advertises: requests left, and when it refills. `RateLimit-Remaining`
/// with `RateLimit-Reset` (delta-seconds; the IETF draft), the draft's combined `RateLimit:
/// limit=…, remaining=…, reset=…`, or Docker Hub's `ratelimit-remaining: 76;w=21600` (no reset:
/// the window is not when it refills, so only a spent budget counts).
fn advertised_budget(headers: &HeaderMap) -> Option<(u64, Option<Duration>)> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let number = |value: &str| value.split(';').next().and_then(|n| n.trim().parse::<u64>().ok());
    if let Some(remaining) = text("ratelimit-remaining").and_then(number) {
        let reset = text("ratelimit-reset").and_then(number).map(Duration::from_secs);
        return Some((remaining, reset));
    }
    let combined = text("ratelimit")?;
    let field = |key: &str| {
        combined.split([',', ';']).find_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            (k.trim() == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    Some((field("remaining")?, field("reset").map(Duration::from_secs)))
}

/// `Retry-After` is either delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(3600)));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

/// Reads a response body, refusing more than `limit` bytes.
pub(crate) async fn read_capped(mut response: Response, limit: usize) -> Result<Bytes, RegistryError> {
    let url = response.url().to_string();
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(RegistryError::InvalidResponse {
            url,
            reason: format!("the body is larger than {limit} bytes"),
        });
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| connection_error(&Method::GET, &url, &e))? {
        if body.len() + chunk.len() > limit {
            return Err(RegistryError::InvalidResponse {
                url,
                reason: format!("the body is larger than {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_budgets() {
        type Case = (&'static [(&'static str, &'static str)], Option<(u64, Option<u64>)>);
        let cases: [Case; 6] = [
            (&[("ratelimit-remaining", "12"), ("ratelimit-reset", "30")], Some((12, Some(30)))),
            (&[("RateLimit-Remaining", "0")], Some((0, None))),
            // Docker Hub: a window, not a reset.
            (&[("ratelimit-limit", "100;w=21600"), ("ratelimit-remaining", "76;w=21600")], Some((76, None))),
            (&[("ratelimit", "limit=100, remaining=5, reset=7")], Some((5, Some(7)))),
            (&[("ratelimit-remaining", "lots")], None),
            (&[], None),
        ];
        for (given, expected) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in given {
                headers.insert(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static(value),
                );
            }
            let found = advertised_budget(&headers).map(|(r, reset)| (r, reset.map(|d| d.as_secs())));
            assert_eq!(found, expected, "{given:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(&HeaderValue::from_static("3")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(&HeaderValue::from_static(" 0 ")), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(5));
        let parsed = parse_retry_after(&HeaderValue::from_str(&soon).unwrap()).unwrap();
        assert!(parsed <= Duration::from_secs(5) && parsed >= Duration::from_secs(3), "{parsed:?}");
        let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&HeaderValue::from_str(&past).unwrap()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
        assert_eq!(parse_retry_after(&HeaderValue::from_static("999999")), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn other_hosts_in_locations_are_refused() {
        let host = Host::parse("127.0.0.1:5000").unwrap();
        let transport =
            Transport::new(TransportConfig { insecure_hosts: vec![host.clone()], ..Default::default() })
                .unwrap();
        assert_eq!(
            transport.absolute_url(&host, "/v2/a/blobs/uploads/x").unwrap(),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x"
        );
        assert!(transport.absolute_url(&host, "http://127.0.0.1:5000/v2/a?x=1").is_ok());
        assert!(transport.absolute_url(&host, "http://127.0.0.1:50000/v2/a").is_err());
        assert!(transport.absolute_url(&host, "http://evil.example/v2/a").is_err());
        let secure = Host::parse("gcr.io").unwrap();
        assert!(transport.absolute_url(&secure, "http://gcr.io/v2/").is_err(), "no downgrade to HTTP");
    }
}
