//! Ferry's configuration, read in one place.
//!
//! [`Env`] captures every environment variable Ferry reads, once, at start-up (this is the only
//! module allowed to call `std::env::var`; clippy enforces it). [`Config`] is the validated
//! config file. Everything else receives typed values built from these two.
//!
//! # The config file
//! ```yaml
//! registries:
//!   insecure: ["127.0.0.1:5001"]          # plain HTTP allowed only for these hosts
//!   deny-prerelease: [registry.rancher.com] # no -rc/-alpha/-beta tags under these
//!   trusted-sources: [stgregistry.suse.com] # signatures from these may be copied
//!   requests-per-second: 50               # per host; unset = unlimited until a 429
//!   retry-budget-seconds: 120             # time one request may spend retrying
//!   hosts:                                # per registry: how to log in, its own rate
//!   - host: 123456789012.dkr.ecr.us-east-1.amazonaws.com
//!     auth:
//!       provider: ecr                     # ecr | ecr-public | gcp | acr | helper | anonymous
//!       role-arn: arn:aws:iam::123456789012:role/ferry-promoter   # optional (ecr, ecr-public)
//!       region: us-east-1                 # optional (ecr): else the host's, else AWS_REGION
//!     requests-per-second: 20
//!   - host: us-docker.pkg.dev
//!     auth: {provider: gcp, service-account: promoter@acme.iam.gserviceaccount.com}  # optional impersonation
//!   - host: acme.azurecr.io
//!     auth: {provider: acr, tenant: 00000000-0000-0000-0000-000000000000}            # optional tenant
//!   - host: registry.example
//!     auth: {provider: helper, helper: pass}                  # docker-credential-pass
//! signing:                                # one of the two; omit to promote without signing
//!   key: cosign.key                       # cosign encrypted key; password in COSIGN_PASSWORD
//!   kms-key-id: alias/ferry-signing       # an AWS KMS ECC_NIST_P256 key (AWS_* variables apply)
//! trust:
//!   sources:                              # the longest matching registry wins
//!   - registry: staging.example/team
//!     signatures: required                # required | if-present | off
//!     keys: [staging.pub]                 # PEM public keys, relative to this file
//!     identity: "^staging\\.example/"       # optional: the signed docker-reference must match
//!     provenance: if-present              # required | if-present | off
//!     provenance-keys: [builder.pub]
//!     builders: ["https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0"]
//!     source-repository: "^https://github.com/acme/"
//!     vulnerabilities:
//!       block-at: high                    # low | medium | high | critical
//!       missing: warn                     # allow | warn | deny
//!       keys: [scanner.pub]
//!     referrer-types:                     # which OCI referrers travel along (default: all)
//!       allow: []
//!       deny: ["application/vnd.example.internal-report+json"]
//! check:                                  # the repository policy of `ferry check` (presubmit)
//!   required-destinations: [us.example/prod]
//!   multi-arch: required                  # required | optional
//!   single-arch-allowed: [pause]
//!   tags: immutable                       # immutable | mutable
//!   allowed-sources: [staging.example]    # sources must be under one of these
//!   allowed-hosts: [mirror.example]       # further registries a check may contact
//! pipeline:                               # the event pipeline (ferry run, workers, Lambda)
//!   registries: ["staging.example"]       # hosts events may name; others are ignored (SSRF guard)
//!   github-repository: acme/k8s.io        # webhooks from other repositories are ignored
//!   manifests:                            # where the planner reads desired state
//!     git: /srv/k8s.io                    # a local checkout (revisions are read with git), or
//!     # github: acme/k8s.io               # the GitHub contents API (GITHUB_TOKEN)
//!     thin-manifest-dirs: [registry.k8s.io]   # inputs, as paths inside that repository
//!     manifests: []
//!     images-lists: []
//!     charts-sync: []
//!     rancher-configs: []                 # image-mirror's config.yaml
//!     regsync-yamls: []                   # regsync.yaml
//!   mirror-rules:                         # Harbor-style replication of pushes
//!   - source: staging.example/team        # images under this path...
//!     repositories: "^app"                # ...whose name matches (optional)...
//!     destinations: [prod.example/team, mirror.example/team]   # ...go here; the first is primary
//!     tags: "^v[0-9]"                     # optional tag pattern
//!     semver: ">=1.0.0"                   # optional constraint (a leading v is allowed)
//!     deny-prerelease: true
//!     trusted: true                       # copy the source's signatures along
//!   pubsub-push:                          # /v1/events/gcr: Artifact Registry's Pub/Sub topic
//!     endpoint: https://ferry.example/v1/events/gcr   # the token's audience (or `audience:`)
//!     service-account: gcr-push@acme.iam.gserviceaccount.com
//!     jwks: https://www.googleapis.com/oauth2/v3/certs  # or a file
//!   ghcr: {owners: [acme, other/app], registry: ghcr.io}    # package webhooks heard
//!   dockerhub: {registry: docker.io}      # the registry Docker Hub payloads mean
//!   quay: {registry: quay.io}             # for self-hosted Quay
//!   acr: {header: X-Ferry-Token}          # where ACR sends FERRY_ACR_TOKEN
//! ```
//!
//! Paths in the file are relative to the file.
//!
//! # Environment variables
//! | variable | meaning |
//! |---|---|
//! | `FERRY_CONFIG` | the config file, when `--config` is not given |
//! | `FERRY_REGISTRY_AUTH` | registry credentials as Docker `config.json` JSON (`{"auths":{...}}`) |
//! | `REGISTRY_AUTH_FILE` | a `config.json`-format credentials file |
//! | `DOCKER_CONFIG` | a directory holding `config.json` |
//! | `HOME` | `~/.docker/config.json` is read from here |
//! | `COSIGN_PASSWORD` | the password of the cosign signing key (as cosign uses it) |
//! | `AWS_*` | AWS region, credentials and endpoints for KMS and ECR logins, read by the AWS SDK itself |
//! | `GOOGLE_APPLICATION_CREDENTIALS`, `CLOUDSDK_CONFIG`, `GCE_METADATA_HOST` | Google Application Default Credentials (Artifact Registry logins) |
//! | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` | Entra ID credentials (ACR logins), as azure-identity reads them |
//! | `PATH` | where `docker-credential-<name>` helpers are found |
//! | `FERRY_CONFIG_YAML` | the config file's contents instead of a path (Lambda) |
//! | `FERRY_TRANSPORT` | `memory://`, `amqp://user:pw@host:5672/%2f`, `sqs://` or `sqs://host:port?region=R` |
//! | `FERRY_QUEUE_PREFIX` | queue name prefix (default `ferry`) |
//! | `FERRY_CONCURRENCY` | messages one worker handles at once (default 8) |
//! | `FERRY_MAX_ATTEMPTS` | attempts for transient failures before `poison` (default 5) |
//! | `FERRY_MAX_THROTTLED_ATTEMPTS` | attempts for HTTP 429 before `throttled` (default 3) |
//! | `FERRY_INGEST_LISTEN` | the ingest HTTP address (default `127.0.0.1:8080`) |
//! | `FERRY_DISTRIBUTION_TOKEN`, `FERRY_HARBOR_TOKEN` | bearer tokens registries must send to ingest |
//! | `FERRY_GITHUB_WEBHOOK_SECRET` | the GitHub webhook secret (`X-Hub-Signature-256`) |
//! | `FERRY_GHCR_WEBHOOK_SECRET` | the secret of GitHub package webhooks (default: the GitHub webhook secret) |
//! | `FERRY_DOCKERHUB_SECRET`, `FERRY_QUAY_TOKEN` | the secret in the Docker Hub and Quay webhook URLs' path |
//! | `FERRY_ACR_TOKEN` | the value ACR's webhook sends in `pipeline.acr.header` |
//! | `GITHUB_TOKEN` | for reading manifests through the GitHub contents API |
//! | `OTEL_*` | OpenTelemetry exporter settings (OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set) |
//! | `FERRY_LOG` | log filter, e.g. `info` or `ferry_registry=debug` |
//! | `FERRY_LOG_FORMAT` | `json` (default on non-terminals) or `text` |
//!
//! Architecture invariant: only this crate reads environment variables (clippy's `disallowed-methods`).
//! Architecture invariant: a config error names its file, line and field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_manifests::Policy;
use ferry_manifests::yaml::{self, Spanned, line_of};
use ferry_model::{Host, RegistryPath};
use ferry_registry::auth::default_files;
use ferry_registry::{CredentialSources, Credentials, LimiterConfig, RetryPolicy, Secret, TransportConfig};
use ferry_trust::keyless::{KeylessPolicy, Matcher, TrustedRoot};
use ferry_trust::keys::VerificationKey;
use ferry_trust::policy::{
    MissingReport, ReferrerFilter, Requirement, Severity, SourcePolicy, TrustPolicy, VulnerabilityGate,
};
use serde::Deserialize;
use thiserror::Error;

mod policy_change;
pub use policy_change::{PolicyChange, policy_changes};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] ferry_manifests::ManifestError),
    #[error("{path}:{line}: field `{field}`: {message}")]
    Field { path: String, line: u64, field: &'static str, message: String },
    #[error("registry credentials: {0}")]
    Credentials(#[from] ferry_registry::RegistryError),
}

/// Every environment variable Ferry reads.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub config: Option<PathBuf>,
    pub registry_auth: Option<Secret>,
    pub registry_auth_file: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub cosign_password: Option<Secret>,
    /// `FERRY_CONFIG_YAML`: the config file's contents, for Lambda, where a file is awkward.
    pub config_yaml: Option<String>,
    /// `FERRY_TRANSPORT`: `memory://`, `amqp://…` or `sqs://…`.
    pub transport: Option<String>,
    /// `FERRY_QUEUE_PREFIX` (default `ferry`).
    pub queue_prefix: Option<String>,
    /// `FERRY_CONCURRENCY`: messages a worker handles at once.
    pub concurrency: Option<usize>,
    /// `FERRY_MAX_ATTEMPTS`: attempts for transient failures before `poison`.
    pub max_attempts: Option<u32>,
    /// `FERRY_MAX_THROTTLED_ATTEMPTS`: attempts for throttled messages before `throttled`.
    pub max_throttled_attempts: Option<u32>,
    /// Set when running inside AWS Lambda (`AWS_LAMBDA_RUNTIME_API`).
    pub lambda_runtime_api: Option<String>,
    /// `FERRY_INGEST_LISTEN`: where the ingest HTTP server listens (default 127.0.0.1:8080).
    pub ingest_listen: Option<String>,
    /// Ingest secrets: `FERRY_DISTRIBUTION_TOKEN`, `FERRY_HARBOR_TOKEN`, `FERRY_GITHUB_WEBHOOK_SECRET`.
    pub distribution_token: Option<Secret>,
    pub harbor_token: Option<Secret>,
    pub github_webhook_secret: Option<Secret>,
    /// The push routes' secrets: `FERRY_GHCR_WEBHOOK_SECRET` (package webhooks; else the
    /// GitHub secret), `FERRY_DOCKERHUB_SECRET`, `FERRY_QUAY_TOKEN` (both in the URL's path),
    /// `FERRY_ACR_TOKEN` (in `pipeline.acr.header`).
    pub ghcr_webhook_secret: Option<Secret>,
    pub dockerhub_secret: Option<Secret>,
    pub quay_token: Option<Secret>,
    pub acr_token: Option<Secret>,
    /// `GITHUB_TOKEN`: for the GitHub contents API, and `ferry check --github-check`.
    pub github_token: Option<Secret>,
    /// `GITHUB_REPOSITORY`, `GITHUB_API_URL`, `GITHUB_SERVER_URL`: what GitHub Actions sets,
    /// the defaults of `ferry check`'s GitHub flags.
    pub github_repository: Option<String>,
    pub github_api_url: Option<String>,
    pub github_server_url: Option<String>,
    /// Google Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `CLOUDSDK_CONFIG`, `GCE_METADATA_HOST`.
    pub google_application_credentials: Option<PathBuf>,
    pub cloudsdk_config: Option<PathBuf>,
    pub gce_metadata_host: Option<String>,
    /// Entra ID (ACR): `AZURE_*`, `IDENTITY_ENDPOINT`, `IDENTITY_HEADER`.
    pub azure: ferry_login::AzureEnv,
    /// `PATH`: where `docker-credential-<name>` helpers are found.
    pub path: Option<std::ffi::OsString>,
    /// The variables `registries.hosts[].inventory-token-env` may name (listing APIs' tokens):
    /// every variable, kept as secrets, read only by the name the configuration gives.
    pub variables: std::collections::HashMap<String, Secret>,
    /// Whether an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the exporter reads the `OTEL_*` variables itself.
    pub otlp: bool,
}

impl Env {
    /// Reads the process environment. Call once, in `main`.
    #[allow(clippy::disallowed_methods)]
    pub fn from_process() -> Self {
        let text = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let path = |name: &str| text(name).map(PathBuf::from);
        Self {
            config: path("FERRY_CONFIG"),
            registry_auth: text("FERRY_REGISTRY_AUTH").map(Secret::new),
            registry_auth_file: path("REGISTRY_AUTH_FILE"),
            docker_config: path("DOCKER_CONFIG"),
            home: path("HOME"),
            log: text("FERRY_LOG"),
            log_format: text("FERRY_LOG_FORMAT"),
            // An empty password is a legitimate cosign password, so it is kept.
            cosign_password: std::env::var("COSIGN_PASSWORD").ok().map(Secret::new),
            config_yaml: text("FERRY_CONFIG_YAML"),
            transport: text("FERRY_TRANSPORT"),
            queue_prefix: text("FERRY_QUEUE_PREFIX"),
            concurrency: text("FERRY_CONCURRENCY").and_then(|v| v.parse().ok()),
            max_attempts: text("FERRY_MAX_ATTEMPTS").and_then(|v| v.parse().ok()),
            max_throttled_attempts: text("FERRY_MAX_THROTTLED_ATTEMPTS").and_then(|v| v.parse().ok()),
            lambda_runtime_api: text("AWS_LAMBDA_RUNTIME_API"),
            ingest_listen: text("FERRY_INGEST_LISTEN"),
            distribution_token: text("FERRY_DISTRIBUTION_TOKEN").map(Secret::new),
            harbor_token: text("FERRY_HARBOR_TOKEN").map(Secret::new),
            github_webhook_secret: text("FERRY_GITHUB_WEBHOOK_SECRET").map(Secret::new),
            ghcr_webhook_secret: text("FERRY_GHCR_WEBHOOK_SECRET").map(Secret::new),
            dockerhub_secret: text("FERRY_DOCKERHUB_SECRET").map(Secret::new),
            quay_token: text("FERRY_QUAY_TOKEN").map(Secret::new),
            acr_token: text("FERRY_ACR_TOKEN").map(Secret::new),
            github_token: text("GITHUB_TOKEN").map(Secret::new),
            github_repository: text("GITHUB_REPOSITORY"),
            github_api_url: text("GITHUB_API_URL"),
            github_server_url: text("GITHUB_SERVER_URL"),
            google_application_credentials: path("GOOGLE_APPLICATION_CREDENTIALS"),
            cloudsdk_config: path("CLOUDSDK_CONFIG"),
            gce_metadata_host: text("GCE_METADATA_HOST"),
            azure: ferry_login::AzureEnv {
                tenant_id: text("AZURE_TENANT_ID"),
                client_id: text("AZURE_CLIENT_ID"),
                client_secret: text("AZURE_CLIENT_SECRET").map(Secret::new),
                federated_token_file: path("AZURE_FEDERATED_TOKEN_FILE"),
                authority_host: text("AZURE_AUTHORITY_HOST"),
                identity_endpoint: text("IDENTITY_ENDPOINT"),
                identity_header: text("IDENTITY_HEADER").map(Secret::new),
            },
            path: std::env::var_os("PATH"),
            variables: std::env::vars()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
            otlp: text("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some(),
        }
    }

    /// What the registry logins read, with `insecure` hosts reached over plain HTTP.
    pub fn login_env(&self, insecure: &[Host]) -> ferry_login::LoginEnv {
        ferry_login::LoginEnv {
            google: ferry_login::GoogleEnv {
                application_credentials: self.google_application_credentials.clone(),
                gcloud_config: self
                    .cloudsdk_config
                    .clone()
                    .or_else(|| self.home.as_ref().map(|home| home.join(".config/gcloud"))),
                metadata_host: self.gce_metadata_host.clone(),
            },
            azure: self.azure.clone(),
            insecure_hosts: insecure.to_vec(),
            path: self.path.clone(),
        }
    }

    pub fn credential_sources(&self) -> CredentialSources {
        CredentialSources {
            files: default_files(
                self.home.as_deref(),
                self.docker_config.as_deref(),
                self.registry_auth_file.as_deref(),
            ),
            inline_json: self.registry_auth.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileYaml {
    #[serde(default)]
    registries: RegistriesYaml,
    #[serde(default)]
    signing: Option<SigningYaml>,
    #[serde(default)]
    trust: Option<TrustYaml>,
    #[serde(default)]
    pipeline: Option<PipelineYaml>,
    #[serde(default)]
    check: Option<CheckYaml>,
    #[serde(default)]
    discovery: Option<DiscoveryYaml>,
}

/// `discovery:`: tag discovery on a schedule in `ferry run`, proposing pull requests.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DiscoveryYaml {
    every: Spanned<String>,
    autoupdate: Spanned<String>,
    rancher_config: Spanned<String>,
    #[serde(default)]
    regsync_yaml: Option<String>,
    repository: Spanned<String>,
    #[serde(default)]
    base: Option<String>,
}

/// `check:`: the repository policy `ferry check` applies to manifest changes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CheckYaml {
    #[serde(default)]
    required_destinations: Vec<Spanned<String>>,
    #[serde(default)]
    multi_arch: Option<Spanned<String>>,
    #[serde(default)]
    single_arch_allowed: Vec<Spanned<String>>,
    #[serde(default)]
    tags: Option<Spanned<String>>,
    #[serde(default)]
    allowed_sources: Vec<Spanned<String>>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PipelineYaml {
    #[serde(default)]
    registries: Vec<Spanned<String>>,
    #[serde(default)]
    github_repository: Option<String>,
    #[serde(default)]
    github_api: Option<String>,
    #[serde(default)]
    manifests: Option<ManifestsYaml>,
    #[serde(default)]
    mirror_rules: Vec<RuleYaml>,
    #[serde(default)]
    pubsub_push: Option<PubSubPushYaml>,
    #[serde(default)]
    ghcr: Option<GhcrYaml>,
    #[serde(default)]
    dockerhub: Option<RouteYaml>,
    #[serde(default)]
    quay: Option<RouteYaml>,
    #[serde(default)]
    acr: Option<AcrYaml>,
}

/// `pipeline.pubsub-push`: Artifact Registry's `gcr` topic through a push subscription.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PubSubPushYaml {
    #[serde(default)]
    endpoint: Option<Spanned<String>>,
    #[serde(default)]
    audience: Option<Spanned<String>>,
    service_account: Spanned<String>,
    jwks: Spanned<String>,
}

/// `pipeline.ghcr`: GitHub `registry_package`/`package` webhooks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GhcrYaml {
    owners: Vec<Spanned<String>>,
    #[serde(default)]
    registry: Option<Spanned<String>>,
}

/// `pipeline.dockerhub`, `pipeline.quay`: the registry a payload means, when not the vendor's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RouteYaml {
    #[serde(default)]
    registry: Option<Spanned<String>>,
}

/// `pipeline.acr`: the header ACR's webhook sends its token in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AcrYaml {
    #[serde(default)]
    header: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ManifestsYaml {
    #[serde(default)]
    git: Option<String>,
    #[serde(default)]
    github: Option<String>,
    #[serde(default)]
    github_api: Option<String>,
    #[serde(default)]
    thin_manifest_dirs: Vec<String>,
    #[serde(default)]
    manifests: Vec<String>,
    #[serde(default)]
    images_lists: Vec<String>,
    #[serde(default)]
    charts_sync: Vec<String>,
    #[serde(default)]
    rancher_configs: Vec<String>,
    #[serde(default)]
    regsync_yamls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RuleYaml {
    source: Spanned<String>,
    #[serde(default)]
    repositories: Option<Spanned<String>>,
    destinations: Vec<Spanned<String>>,
    #[serde(default)]
    tags: Option<Spanned<String>>,
    #[serde(default)]
    semver: Option<Spanned<String>>,
    #[serde(default)]
    deny_prerelease: bool,
    #[serde(default)]
    trusted: bool,
}

/// Where the planner and the checker read manifests from (`pipeline.manifests`).
pub use ferry_desired::{Location as ManifestSource, ManifestsConfig};

/// The event pipeline's settings.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    pub registries: Vec<Host>,
    pub github_repository: Option<String>,
    /// GitHub's API (`pipeline.github-api`, default `https://api.github.com`): check runs, and
    /// the contents API unless `manifests.github-api` names another.
    pub github_api: String,
    pub manifests: Option<ManifestsConfig>,
    pub mirror_rules: Vec<ferry_desired::MirrorRule>,
    /// How ingest hears registries beyond distribution, Harbor and ECR.
    pub triggers: Triggers,
}

/// The push routes' settings (their secrets are in [`Env`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Triggers {
    /// `/v1/events/gcr`: Pub/Sub push deliveries of Artifact Registry's `gcr` topic.
    pub pubsub_push: Option<PubSubPush>,
    /// `registry_package` and `package` webhooks: the owners (`acme`) and repositories
    /// (`acme/app`) heard.
    pub ghcr_owners: Vec<String>,
    /// The registry each route's payloads mean (the vendor's unless configured).
    pub ghcr_registry: Host,
    pub dockerhub_registry: Host,
    pub quay_registry: Option<Host>,
    /// The header ACR's webhook carries `FERRY_ACR_TOKEN` in.
    pub acr_header: String,
}

impl Default for Triggers {
    fn default() -> Self {
        let host = |name: &str| Host::parse(name).expect("a valid host");
        Self {
            pubsub_push: None,
            ghcr_owners: Vec::new(),
            ghcr_registry: host("ghcr.io"),
            dockerhub_registry: host("docker.io"),
            quay_registry: None,
            acr_header: "authorization".into(),
        }
    }
}

/// What a Pub/Sub push's bearer token must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubPush {
    /// The JWT's `aud`: the configured audience, else the endpoint's URL (as Google sets it).
    pub audience: String,
    /// The subscription's push service account (`email`).
    pub service_account: String,
    pub jwks: JwksSource,
}

/// Where the keys that sign Pub/Sub's tokens are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    /// Fetched and cached (`https://www.googleapis.com/oauth2/v3/certs`).
    Url(String),
    File(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SigningYaml {
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    kms_key_id: Option<Spanned<String>>,
    #[serde(default)]
    formats: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TrustYaml {
    #[serde(default)]
    sources: Vec<SourceYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SourceYaml {
    registry: Spanned<String>,
    #[serde(default)]
    signatures: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    identity: Option<Spanned<String>>,
    #[serde(default)]
    provenance: Option<Spanned<String>>,
    #[serde(default)]
    provenance_keys: Vec<Spanned<String>>,
    #[serde(default)]
    builders: Vec<String>,
    #[serde(default)]
    source_repository: Option<Spanned<String>>,
    #[serde(default)]
    vulnerabilities: Option<VulnerabilitiesYaml>,
    #[serde(default)]
    referrer_types: Option<ReferrerTypesYaml>,
    /// Keyless: a Sigstore `trusted_root.json` (relative to the config file) and the
    /// certificate identity and OIDC issuer, with cosign's and kpromo's flag names.
    #[serde(default)]
    trusted_root: Option<Spanned<String>>,
    #[serde(default)]
    certificate_identity: Option<Spanned<String>>,
    #[serde(default)]
    certificate_identity_regexp: Option<Spanned<String>>,
    #[serde(default)]
    certificate_oidc_issuer: Option<Spanned<String>>,
    #[serde(default)]
    certificate_oidc_issuer_regexp: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ReferrerTypesYaml {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VulnerabilitiesYaml {
    block_at: Spanned<String>,
    #[serde(default)]
    missing: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
}

/// Where the signing key comes from (loaded by `ferry_trust::keys::load`).
pub use ferry_trust::keys::KeySource as SigningConfig;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegistriesYaml {
    #[serde(default)]
    insecure: Vec<Spanned<String>>,
    #[serde(default)]
    deny_prerelease: Vec<Spanned<String>>,
    #[serde(default)]
    trusted_sources: Vec<Spanned<String>>,
    #[serde(default)]
    requests_per_second: Option<Spanned<f64>>,
    #[serde(default)]
    retry_budget_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    hosts: Vec<HostYaml>,
}

/// `registries.hosts[]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HostYaml {
    host: Spanned<String>,
    #[serde(default)]
    auth: Option<AuthYaml>,
    #[serde(default)]
    requests_per_second: Option<Spanned<f64>>,
    #[serde(default)]
    inventory: Option<Spanned<String>>,
    #[serde(default)]
    inventory_url: Option<Spanned<String>>,
    #[serde(default)]
    inventory_token_env: Option<Spanned<String>>,
}

/// `registries.hosts[].auth`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct AuthYaml {
    provider: Spanned<String>,
    #[serde(default)]
    region: Option<Spanned<String>>,
    #[serde(default)]
    role_arn: Option<Spanned<String>>,
    #[serde(default)]
    service_account: Option<Spanned<String>>,
    #[serde(default)]
    tenant: Option<Spanned<String>>,
    #[serde(default)]
    helper: Option<Spanned<String>>,
}

/// One registry's own settings (`registries.hosts[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostSettings {
    pub host: Host,
    /// How it logs in; `None`: by the usual precedence (`config.json`, the host's name).
    pub provider: Option<ferry_login::Provider>,
    pub requests_per_second: Option<f64>,
    /// How its repositories are listed (`inventory`).
    pub inventory: Inventory,
    /// Where the listing API lives (`inventory-url`), when not where the API's vendor keeps it.
    pub inventory_url: Option<String>,
    /// The variable holding the listing API's token (`inventory-token-env`).
    pub inventory_token_env: Option<String>,
}

/// What [`Config::listings`] decides for the transport.
struct Listings {
    sources: HashMap<Host, Arc<dyn ferry_registry::InventorySource>>,
    acr: std::collections::HashSet<Host>,
    oci: std::collections::HashSet<Host>,
    notes: HashMap<Host, String>,
    detect: ferry_registry::InventoryDetector,
}

impl Default for Listings {
    fn default() -> Self {
        Self {
            sources: HashMap::new(),
            acr: Default::default(),
            oci: Default::default(),
            notes: HashMap::new(),
            detect: ferry_registry::InventoryDetector(Arc::new(|_: &Host| None)),
        }
    }
}

/// `registries.hosts[].inventory`: which listing reads a host's repositories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Inventory {
    /// The registry's own API where its provider has one (ECR's `ListImages` for
    /// `provider: ecr`), else `tags/list` (the extended one where the registry serves it).
    #[default]
    Auto,
    /// ECR's `ListImages` (needs `provider: ecr`).
    Ecr,
    /// ACR's `/acr/v1/{repo}/_manifests`, with the host's login.
    Acr,
    /// Another vendor's listing API, with `inventory-token-env`'s token.
    Vendor(ferry_login::listing::Api),
    /// `tags/list` only.
    Oci,
}

impl Inventory {
    /// The names `inventory:` accepts.
    const NAMES: &'static str = "auto, ecr, acr, dockerhub, harbor, ghcr, quay, oci";
}

/// The validated configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Credentials inputs name for their registries (image-mirror's `Repositories`), used
    /// before those of `config.json` files.
    pub input_credentials: Vec<(Host, ferry_registry::auth::Credential)>,
    pub insecure_hosts: Vec<Host>,
    pub policy: Policy,
    pub requests_per_second: Option<f64>,
    /// `registries.hosts`: per-registry logins and rates.
    pub hosts: Vec<HostSettings>,
    pub retry: RetryPolicy,
    pub signing: Option<SigningConfig>,
    /// `signing.formats`: the formats signatures and attestations are written in, and that
    /// status and reconcile count (default `[legacy, bundle]`).
    pub signing_formats: ferry_trust::Formats,
    pub trust: TrustPolicy,
    pub pipeline: PipelineConfig,
    /// The repository policy of `ferry check` (`check:`).
    pub check: ferry_check::RepositoryPolicy,
    /// Tag discovery on a schedule (`discovery:`).
    pub discovery: Option<DiscoveryConfig>,
    /// The logins of every transport built from this configuration (and its clones): one
    /// cache per process, so that stages and checks share tokens instead of each logging in.
    logins: Arc<std::sync::OnceLock<Arc<ferry_login::CloudLogins>>>,
}

/// What `ferry run` discovers and where it proposes it: the files are read from `repository`
/// at `base` through GitHub's contents API (paths in that repository), and each finding is a
/// pull request there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub every: Duration,
    pub autoupdate: String,
    pub rancher_config: String,
    pub regsync_yaml: Option<String>,
    pub repository: String,
    pub base: String,
}

/// `30s`, `15m`, `6h`, `1d`.
fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration such as 30s, 15m, 6h or 1d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?} is not a duration such as 30s, 15m, 6h or 1d")),
    };
    if seconds == 0 {
        return Err("must be longer than 0s".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// Where a config file and the files it names (keys, trusted roots) are read from: the disk,
/// or a git revision (`ferry check` reads the base's policy, never the pull request's).
pub trait Files {
    /// The bytes of `path`.
    fn read(&self, path: &Path) -> Result<Vec<u8>, String>;

    /// The text of the config file itself.
    fn read_text(&self, path: &Path) -> Result<String, ConfigError> {
        let bytes = self
            .read(path)
            .map_err(|message| ferry_manifests::ManifestError::Layout { path: path.to_owned(), message })?;
        String::from_utf8(bytes).map_err(|_| {
            ConfigError::File(ferry_manifests::ManifestError::Layout {
                path: path.to_owned(),
                message: "is not UTF-8 text".into(),
            })
        })
    }
}

/// The files on disk.
#[derive(Clone, Copy, Debug)]
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn read_text(&self, path: &Path) -> Result<String, ConfigError> {
        Ok(yaml::read_file(path)?)
    }
}

impl Config {
    /// Reads `path`, or returns the defaults when there is no config file.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Self::load_from(path, &Disk),
            None => Ok(Config::default()),
        }
    }

    /// Reads `path` and every file it names through `files`.
    pub fn load_from(path: &Path, files: &dyn Files) -> Result<Config, ConfigError> {
        let text = files.read_text(path)?;
        let file: Option<FileYaml> = yaml::parse(path, &text)?;
        let file = file.unwrap_or_default();
        let display = path.display().to_string();
        let field = |line: u64, field: &'static str, message: String| ConfigError::Field {
            path: display.clone(),
            line,
            field,
            message,
        };
        let registries = file.registries;
        let mut config = Config::default();
        for host in &registries.insecure {
            let parsed = Host::parse(&host.value)
                .map_err(|e| field(line_of(host), "registries.insecure", e.to_string()))?;
            config.insecure_hosts.push(parsed);
        }
        for value in &registries.trusted_sources {
            if RegistryPath::parse(&value.value).is_ok_and(|r| r.host.is_docker_hub()) {
                return Err(field(
                    line_of(value),
                    "registries.trusted-sources",
                    "Docker Hub is never a trusted source (anyone can push a signature beside anyone's image); remove it"
                        .into(),
                ));
            }
        }
        for (list, name, out) in [
            (&registries.deny_prerelease, "registries.deny-prerelease", &mut config.policy.deny_prerelease),
            (&registries.trusted_sources, "registries.trusted-sources", &mut config.policy.trusted_sources),
        ] {
            for value in list {
                out.push(
                    RegistryPath::parse(&value.value)
                        .map_err(|e| field(line_of(value), name, e.to_string()))?,
                );
            }
        }
        if let Some(rate) = &registries.requests_per_second {
            if !(rate.value.is_finite() && rate.value > 0.0) {
                return Err(field(
                    line_of(rate),
                    "registries.requests-per-second",
                    "must be a positive number".into(),
                ));
            }
            config.requests_per_second = Some(rate.value);
        }
        for entry in &registries.hosts {
            let settings = host_settings(entry, &field)?;
            if config.hosts.iter().any(|h| h.host == settings.host) {
                return Err(field(
                    line_of(&entry.host),
                    "registries.hosts",
                    format!("{} is listed twice", settings.host),
                ));
            }
            config.hosts.push(settings);
        }
        if let Some(budget) = &registries.retry_budget_seconds {
            config.retry.budget = Duration::from_secs(budget.value);
        }
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(signing) = &file.signing {
            if let Some(formats) = &signing.formats {
                config.signing_formats =
                    ferry_trust::Formats::parse(formats.value.iter().map(String::as_str))
                        .map_err(|e| field(line_of(formats), "signing.formats", e))?;
            }
            config.signing = match (&signing.key, &signing.kms_key_id) {
                (Some(key), None) => Some(SigningConfig::KeyFile(base.join(&key.value))),
                (None, Some(id)) => Some(SigningConfig::Kms(id.value.clone())),
                (Some(key), Some(_)) => {
                    return Err(field(
                        line_of(key),
                        "signing",
                        "give `key` or `kms-key-id`, not both".into(),
                    ));
                }
                (None, None) => None,
            };
        }
        if let Some(trust) = &file.trust {
            for source in &trust.sources {
                config.trust.sources.push(source_policy(source, base, files, &field)?);
            }
        }
        if let Some(pipeline) = &file.pipeline {
            config.pipeline = pipeline_config(pipeline, base, &field)?;
        }
        if let Some(discovery) = &file.discovery {
            let every = parse_every(&discovery.every.value)
                .map_err(|e| field(line_of(&discovery.every), "discovery.every", e))?;
            if discovery.repository.value.split('/').filter(|p| !p.is_empty()).count() != 2 {
                return Err(field(
                    line_of(&discovery.repository),
                    "discovery.repository",
                    format!("{:?} is not owner/name", discovery.repository.value),
                ));
            }
            config.discovery = Some(DiscoveryConfig {
                every,
                autoupdate: discovery.autoupdate.value.clone(),
                rancher_config: discovery.rancher_config.value.clone(),
                regsync_yaml: discovery.regsync_yaml.clone(),
                repository: discovery.repository.value.clone(),
                base: discovery.base.clone().unwrap_or_else(|| "main".into()),
            });
        }
        if let Some(check) = &file.check {
            config.check = check_policy(check, &field)?;
        }
        Ok(config)
    }

    /// Loads the signing key the configuration (or `flag`, which wins) names, if any.
    /// Adds command-line settings (`--insecure-registry`, `--deny-prerelease`) to the file's.
    pub fn with_flags(mut self, insecure: &[Host], deny_prerelease: &[RegistryPath]) -> Self {
        self.insecure_hosts.extend(insecure.iter().cloned());
        self.policy.deny_prerelease.extend(deny_prerelease.iter().cloned());
        self
    }

    /// Every registry host this configuration names: trust sources, `registries.*`, the
    /// `check:` policy's sources, destinations and allowed hosts, `pipeline.registries` and
    /// mirror rules. What a presubmit check may contact without the base naming it (see
    /// `ferry_check::Reach`).
    pub fn named_hosts(&self) -> std::collections::BTreeSet<Host> {
        let mut hosts = std::collections::BTreeSet::new();
        hosts.extend(self.insecure_hosts.iter().cloned());
        let paths = self
            .policy
            .deny_prerelease
            .iter()
            .chain(&self.policy.trusted_sources)
            .chain(self.trust.sources.iter().filter_map(|s| s.registry.as_ref()))
            .chain(&self.check.required_destinations)
            .chain(&self.check.allowed_sources)
            .chain(
                self.pipeline
                    .mirror_rules
                    .iter()
                    .flat_map(|r| std::iter::once(&r.source).chain(&r.destinations)),
            );
        hosts.extend(paths.map(|p| p.host.clone()));
        hosts.extend(self.check.allowed_hosts.iter().cloned());
        hosts.extend(self.pipeline.registries.iter().cloned());
        hosts.extend(self.hosts.iter().map(|h| h.host.clone()));
        hosts
    }

    /// How each host's repositories are listed: the listing API `registries.hosts[].inventory`
    /// names (or its host's name implies), with its token; why a named one cannot be used.
    fn listings(&self, env: &Env, logins: &Arc<ferry_login::CloudLogins>) -> Listings {
        use ferry_login::listing::{Api, VendorListing};
        let mut listings = Listings::default();
        for settings in &self.hosts {
            let host = &settings.host;
            let insecure = self.insecure_hosts.contains(host);
            // `auto`: what the login's provider, else the host's name, implies.
            let inventory = match (settings.inventory, &settings.provider) {
                (Inventory::Auto, Some(ferry_login::Provider::Ecr { .. })) => Inventory::Ecr,
                (Inventory::Auto, Some(ferry_login::Provider::Acr { .. })) => Inventory::Acr,
                (Inventory::Auto, _) => Api::implied(host).map_or(Inventory::Auto, Inventory::Vendor),
                (named, _) => named,
            };
            let vendor = match inventory {
                Inventory::Oci => {
                    listings.oci.insert(host.clone());
                    None
                }
                Inventory::Acr => {
                    listings.acr.insert(host.clone());
                    None
                }
                Inventory::Ecr => {
                    if let Some(source) = logins.inventory(host, settings.provider.as_ref()) {
                        listings.sources.insert(host.clone(), source);
                    }
                    None
                }
                Inventory::Vendor(api) => Some(api),
                Inventory::Auto => None,
            };
            let Some(api) = vendor else { continue };
            let token = match &settings.inventory_token_env {
                Some(name) => match env.variables.get(name) {
                    Some(token) => Some(token.clone()),
                    None => {
                        listings.notes.insert(
                            host.clone(),
                            format!("{name} (registries.hosts[].inventory-token-env) is not set, so the {} is not used", api.kind().name()),
                        );
                        continue;
                    }
                },
                None if !api.anonymous() => {
                    listings.notes.insert(
                        host.clone(),
                        format!(
                            "the {} needs a token with read:packages: name its variable in registries.hosts[].inventory-token-env",
                            api.kind().name()
                        ),
                    );
                    continue;
                }
                None => None,
            };
            let source =
                VendorListing::new(api, host.clone(), settings.inventory_url.clone(), token, insecure);
            listings.sources.insert(host.clone(), Arc::new(source));
        }
        // Hosts the configuration does not name: the API their name implies, anonymously
        // (Docker Hub's and Quay's public repositories); GHCR's needs a token, so it is not
        // asked and `tags/list` serves.
        let insecure = self.insecure_hosts.clone();
        listings.detect = ferry_registry::InventoryDetector(Arc::new(move |host: &Host| {
            ferry_login::listing::implied(host, insecure.contains(host))
        }));
        listings
    }

    /// The registry transport this configuration asks for, with credentials from `env`: in
    /// the precedence `ferry_registry::Credentials` documents, `registries.hosts[].auth`
    /// first, with logins (helpers, ECR, Google, ACR) from `ferry_login`.
    pub fn transport(&self, env: &Env) -> Result<TransportConfig, ConfigError> {
        let logins = self
            .logins
            .get_or_init(|| Arc::new(ferry_login::CloudLogins::new(env.login_env(&self.insecure_hosts))))
            .clone();
        let mut credentials = Credentials::load(&env.credential_sources())?.with_logins(logins.clone());
        for (host, credential) in &self.input_credentials {
            credentials.insert_input(host.clone(), credential.clone());
        }
        for settings in &self.hosts {
            if let Some(provider) = &settings.provider {
                credentials.configure(settings.host.clone(), logins.configured(&settings.host, provider));
            }
        }
        let per_host = self
            .hosts
            .iter()
            .filter_map(|h| h.requests_per_second.map(|rate| (h.host.clone(), rate)))
            .collect();
        let listings = self.listings(env, &logins);
        Ok(TransportConfig {
            insecure_hosts: self.insecure_hosts.clone(),
            credentials,
            limiter: LimiterConfig {
                max_rate: self.requests_per_second,
                per_host,
                ..LimiterConfig::default()
            },
            retry: self.retry,
            inventories: listings.sources,
            acr_listings: listings.acr,
            oci_listings: listings.oci,
            inventory_notes: listings.notes,
            inventory_detect: Some(listings.detect),
            ..TransportConfig::default()
        })
    }
}

type FieldError<'a> = dyn Fn(u64, &'static str, String) -> ConfigError + 'a;

/// `pipeline.pubsub-push`, `ghcr`, `dockerhub`, `quay`, `acr`.
fn triggers(pipeline: &PipelineYaml, base: &Path, field: &FieldError<'_>) -> Result<Triggers, ConfigError> {
    let mut out = Triggers::default();
    let host = |v: &Spanned<String>, name: &'static str| {
        Host::parse(&v.value).map_err(|e| field(line_of(v), name, e.to_string()))
    };
    if let Some(push) = &pipeline.pubsub_push {
        let audience = push.audience.as_ref().or(push.endpoint.as_ref()).ok_or_else(|| {
            field(
                line_of(&push.service_account),
                "pipeline.pubsub-push",
                "give `endpoint` (the push endpoint's URL, the token's default audience) or `audience`"
                    .into(),
            )
        })?;
        if let Some(endpoint) = &push.endpoint
            && !endpoint.value.starts_with("https://")
            && !endpoint.value.starts_with("http://")
        {
            return Err(field(
                line_of(endpoint),
                "pipeline.pubsub-push.endpoint",
                format!("{:?} is not the push endpoint's URL", endpoint.value),
            ));
        }
        if !push.service_account.value.contains('@') {
            return Err(field(
                line_of(&push.service_account),
                "pipeline.pubsub-push.service-account",
                format!("{:?} is not a service account's email", push.service_account.value),
            ));
        }
        let jwks = &push.jwks.value;
        let jwks = if jwks.starts_with("https://") || jwks.starts_with("http://") {
            JwksSource::Url(jwks.clone())
        } else {
            JwksSource::File(base.join(jwks))
        };
        out.pubsub_push = Some(PubSubPush {
            audience: audience.value.clone(),
            service_account: push.service_account.value.clone(),
            jwks,
        });
    }
    if let Some(ghcr) = &pipeline.ghcr {
        for owner in &ghcr.owners {
            let parts: Vec<&str> = owner.value.split('/').collect();
            let name_ok = |p: &str| {
                !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            };
            if parts.len() > 2 || !parts.iter().all(|p| name_ok(p)) {
                return Err(field(
                    line_of(owner),
                    "pipeline.ghcr.owners",
                    format!("{:?} is not an owner (acme) or a repository (acme/app)", owner.value),
                ));
            }
            out.ghcr_owners.push(owner.value.to_ascii_lowercase());
        }
        if let Some(registry) = &ghcr.registry {
            out.ghcr_registry = host(registry, "pipeline.ghcr.registry")?;
        }
    }
    if let Some(registry) = pipeline.dockerhub.as_ref().and_then(|d| d.registry.as_ref()) {
        out.dockerhub_registry = host(registry, "pipeline.dockerhub.registry")?;
    }
    if let Some(registry) = pipeline.quay.as_ref().and_then(|d| d.registry.as_ref()) {
        out.quay_registry = Some(host(registry, "pipeline.quay.registry")?);
    }
    if let Some(header) = pipeline.acr.as_ref().and_then(|a| a.header.as_ref()) {
        let valid = !header.value.is_empty()
            && header.value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(field(
                line_of(header),
                "pipeline.acr.header",
                format!("{:?} is not a header name", header.value),
            ));
        }
        out.acr_header = header.value.to_ascii_lowercase();
    }
    Ok(out)
}

/// `registries.hosts[]`: the host, its login and its rate, each option checked against the
/// provider it belongs to.
fn host_settings(entry: &HostYaml, field: &FieldError<'_>) -> Result<HostSettings, ConfigError> {
    use ferry_login::Provider;
    let host = Host::parse(&entry.host.value)
        .map_err(|e| field(line_of(&entry.host), "registries.hosts.host", e.to_string()))?;
    let requests_per_second = match &entry.requests_per_second {
        Some(rate) if !(rate.value.is_finite() && rate.value > 0.0) => {
            return Err(field(
                line_of(rate),
                "registries.hosts.requests-per-second",
                "must be a positive number".into(),
            ));
        }
        Some(rate) => Some(rate.value),
        None => None,
    };
    use ferry_login::listing::Api;
    let inventory = match entry.inventory.as_ref().map(|i| (i, i.value.as_str())) {
        None | Some((_, "auto")) => Inventory::Auto,
        Some((_, "ecr")) => Inventory::Ecr,
        Some((_, "acr")) => Inventory::Acr,
        Some((_, "dockerhub")) => Inventory::Vendor(Api::DockerHub),
        Some((_, "harbor")) => Inventory::Vendor(Api::Harbor),
        Some((_, "ghcr")) => Inventory::Vendor(Api::Ghcr),
        Some((_, "quay")) => Inventory::Vendor(Api::Quay),
        Some((_, "oci")) => Inventory::Oci,
        Some((value, other)) => {
            return Err(field(
                line_of(value),
                "registries.hosts.inventory",
                format!("{other:?} is not one of {}", Inventory::NAMES),
            ));
        }
    };
    // A listing API's own options belong to a vendor's API (named, or implied by the host).
    let vendor = match inventory {
        Inventory::Vendor(api) => Some(api),
        Inventory::Auto => Api::implied(&host),
        _ => None,
    };
    for option in [
        (&entry.inventory_url, "registries.hosts.inventory-url"),
        (&entry.inventory_token_env, "registries.hosts.inventory-token-env"),
    ] {
        if let (Some(value), None) = (option.0, vendor) {
            return Err(field(
                line_of(value),
                option.1,
                "applies to the listing APIs of dockerhub, harbor, ghcr and quay (`inventory:`)".into(),
            ));
        }
    }
    if let Some(url) = &entry.inventory_url
        && !(url.value.starts_with("https://") || url.value.starts_with("http://"))
    {
        return Err(field(
            line_of(url),
            "registries.hosts.inventory-url",
            format!("{:?} is not an http(s) URL", url.value),
        ));
    }
    if let Some(name) = &entry.inventory_token_env
        && (name.value.is_empty() || !name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(field(
            line_of(name),
            "registries.hosts.inventory-token-env",
            format!("{:?} is not an environment variable's name", name.value),
        ));
    }
    let inventory_url = entry.inventory_url.as_ref().map(|u| u.value.clone());
    let inventory_token_env = entry.inventory_token_env.as_ref().map(|u| u.value.clone());
    if let Some(value) = &entry.inventory
        && inventory == Inventory::Ecr
        && entry.auth.as_ref().is_none_or(|a| a.provider.value != "ecr")
    {
        return Err(field(
            line_of(value),
            "registries.hosts.inventory",
            "ecr lists with the host's ECR login: it needs `auth: {provider: ecr}`".into(),
        ));
    }
    let Some(auth) = &entry.auth else {
        return Ok(HostSettings {
            host,
            provider: None,
            requests_per_second,
            inventory,
            inventory_url,
            inventory_token_env,
        });
    };
    let name = auth.provider.value.as_str();
    // Each option and the providers it belongs to.
    let options: [(&Option<Spanned<String>>, &'static str, &[&str]); 5] = [
        (&auth.region, "registries.hosts.auth.region", &["ecr"]),
        (&auth.role_arn, "registries.hosts.auth.role-arn", &["ecr", "ecr-public"]),
        (&auth.service_account, "registries.hosts.auth.service-account", &["gcp"]),
        (&auth.tenant, "registries.hosts.auth.tenant", &["acr"]),
        (&auth.helper, "registries.hosts.auth.helper", &["helper"]),
    ];
    if !Provider::NAMES.contains(&name) {
        return Err(field(
            line_of(&auth.provider),
            "registries.hosts.auth.provider",
            format!("{:?} is not one of {}", name, Provider::NAMES.join(", ")),
        ));
    }
    for (value, option, providers) in options {
        if let Some(value) = value
            && !providers.contains(&name)
        {
            return Err(field(
                line_of(value),
                option,
                format!("applies to provider {}, not {name}", providers.join(" or ")),
            ));
        }
    }
    let text = |value: &Option<Spanned<String>>| value.as_ref().map(|v| v.value.clone());
    if let Some(role) = &auth.role_arn
        && !(role.value.starts_with("arn:aws") && role.value.contains(":role/"))
    {
        return Err(field(
            line_of(role),
            "registries.hosts.auth.role-arn",
            format!("{:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", role.value),
        ));
    }
    if let Some(account) = &auth.service_account
        && (!account.value.contains('@') || account.value.contains('/'))
    {
        return Err(field(
            line_of(account),
            "registries.hosts.auth.service-account",
            format!("{:?} is not a service account's email", account.value),
        ));
    }
    let provider = match name {
        "ecr" => Provider::Ecr { region: text(&auth.region), role_arn: text(&auth.role_arn) },
        "ecr-public" => Provider::EcrPublic { role_arn: text(&auth.role_arn) },
        "gcp" => Provider::Gcp { service_account: text(&auth.service_account) },
        "acr" => Provider::Acr { tenant: text(&auth.tenant) },
        "anonymous" => Provider::Anonymous,
        _ => {
            let Some(helper) = &auth.helper else {
                return Err(field(
                    line_of(&auth.provider),
                    "registries.hosts.auth.helper",
                    "provider helper needs `helper: <name>` (for docker-credential-<name>)".into(),
                ));
            };
            if !ferry_login::helper::valid_name(&helper.value) {
                return Err(field(
                    line_of(helper),
                    "registries.hosts.auth.helper",
                    format!(
                        "{:?} is not a helper name: the part after docker-credential- (letters, digits, -, _, .)",
                        helper.value
                    ),
                ));
            }
            Provider::Helper { name: helper.value.clone() }
        }
    };
    Ok(HostSettings {
        host,
        provider: Some(provider),
        requests_per_second,
        inventory,
        inventory_url,
        inventory_token_env,
    })
}

/// The registry credentials `inputs` name (Rancher image-mirror's `Repositories`), with their
/// `{{ env "NAME" }}` templates read from the environment now. An unset variable is an error
/// naming the file, line and variable; values are never shown.
#[allow(clippy::disallowed_methods, reason = "the one place templates in inputs read the environment")]
pub fn input_credentials(
    inputs: &[ferry_manifests::Input],
) -> Result<Vec<(Host, ferry_registry::auth::Credential)>, ConfigError> {
    use ferry_manifests::rancher::Value;
    let mut out = Vec::new();
    // regsync's `creds` read as image-mirror's `Repositories` credentials are.
    let mut entries = Vec::new();
    for input in inputs {
        match input {
            ferry_manifests::Input::RancherConfig(path) => {
                entries.extend(ferry_manifests::rancher::credentials(path)?)
            }
            ferry_manifests::Input::Regsync(path) => entries.extend(
                ferry_manifests::regsync::load(path, &ferry_manifests::Policy::default())?
                    .creds
                    .into_iter()
                    .map(|c| ferry_manifests::rancher::RepositoryCredentials {
                        registry: c.registry,
                        username: c.user,
                        password: c.pass,
                        origin: c.origin,
                        fields: ("creds.user", "creds.pass"),
                    }),
            ),
            _ => {}
        }
    }
    {
        for entry in entries {
            let resolve = |value: &Option<Value>,
                           field: &'static str|
             -> Result<Option<String>, ConfigError> {
                match value {
                    None => Ok(None),
                    Some(Value::Literal(text)) => Ok(Some(text.clone())),
                    Some(Value::Env(name)) => std::env::var(name).map(Some).map_err(|_| {
                        let (path, line) = entry.origin.rsplit_once(':').unwrap_or((entry.origin.as_str(), "0"));
                        ConfigError::Field {
                            path: path.to_owned(),
                            line: line.parse().unwrap_or(0),
                            field,
                            message: format!(
                                "the environment variable {name} is not set (the template {{{{ env \"{name}\" }}}} reads it)"
                            ),
                        }
                    }),
                }
            };
            let username = resolve(&entry.username, entry.fields.0)?;
            let password = resolve(&entry.password, entry.fields.1)?;
            if let (Some(username), Some(password)) = (username, password) {
                out.push((
                    entry.registry.clone(),
                    ferry_registry::auth::Credential::Basic { username, password: Secret::new(password) },
                ));
            }
        }
    }
    Ok(out)
}

fn check_policy(
    check: &CheckYaml,
    field: &impl Fn(u64, &'static str, String) -> ConfigError,
) -> Result<ferry_check::RepositoryPolicy, ConfigError> {
    let mut policy = ferry_check::RepositoryPolicy::default();
    for (list, name, out) in [
        (&check.required_destinations, "check.required-destinations", &mut policy.required_destinations),
        (&check.allowed_sources, "check.allowed-sources", &mut policy.allowed_sources),
    ] {
        for value in list {
            out.push(
                RegistryPath::parse(&value.value).map_err(|e| field(line_of(value), name, e.to_string()))?,
            );
        }
    }
    for host in &check.allowed_hosts {
        policy.allowed_hosts.push(
            Host::parse(&host.value)
                .map_err(|e| field(line_of(host), "check.allowed-hosts", e.to_string()))?,
        );
    }
    if let Some(multi_arch) = &check.multi_arch {
        policy.multi_arch_required = match multi_arch.value.as_str() {
            "required" => true,
            "optional" => false,
            other => {
                return Err(field(
                    line_of(multi_arch),
                    "check.multi-arch",
                    format!("{other:?} is not one of required, optional"),
                ));
            }
        };
    }
    for name in &check.single_arch_allowed {
        if name.value.trim_matches('/').is_empty()
            || ferry_model::RepoPath::parse(name.value.trim_matches('/')).is_err()
        {
            return Err(field(
                line_of(name),
                "check.single-arch-allowed",
                format!("{:?} is not an image name (a repository path or its last components)", name.value),
            ));
        }
        policy.single_arch_allowed.push(name.value.clone());
    }
    if !check.single_arch_allowed.is_empty() && !policy.multi_arch_required {
        let first = &check.single_arch_allowed[0];
        return Err(field(
            line_of(first),
            "check.single-arch-allowed",
            "has no effect unless `multi-arch: required`".into(),
        ));
    }
    if let Some(tags) = &check.tags {
        policy.immutable_tags = match tags.value.as_str() {
            "immutable" => true,
            "mutable" => false,
            other => {
                return Err(field(
                    line_of(tags),
                    "check.tags",
                    format!("{other:?} is not one of immutable, mutable"),
                ));
            }
        };
    }
    Ok(policy)
}

fn pipeline_config(
    pipeline: &PipelineYaml,
    base: &Path,
    field: &FieldError<'_>,
) -> Result<PipelineConfig, ConfigError> {
    let github_api = pipeline.github_api.clone().unwrap_or_else(|| ferry_github::DEFAULT_API.into());
    let mut out = PipelineConfig {
        github_repository: pipeline.github_repository.clone(),
        github_api: github_api.clone(),
        ..Default::default()
    };
    for host in &pipeline.registries {
        out.registries.push(
            Host::parse(&host.value)
                .map_err(|e| field(line_of(host), "pipeline.registries", e.to_string()))?,
        );
    }
    if let Some(m) = &pipeline.manifests {
        let source = match (&m.git, &m.github) {
            (Some(git), None) => ManifestSource::Git(base.join(git)),
            (None, Some(repository)) => ManifestSource::GitHub {
                repository: repository.clone(),
                api: m.github_api.clone().unwrap_or(github_api),
            },
            _ => return Err(field(0, "pipeline.manifests", "give exactly one of `git` and `github`".into())),
        };
        // Paths inside the repository, by the keys of the one table of input kinds.
        let paths = |list: &[String]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
        let named = [
            ("manifests", paths(&m.manifests)),
            ("thin-manifest-dirs", paths(&m.thin_manifest_dirs)),
            ("images-lists", paths(&m.images_lists)),
            ("charts-sync", paths(&m.charts_sync)),
            ("rancher-configs", paths(&m.rancher_configs)),
            ("regsync-yamls", paths(&m.regsync_yamls)),
        ];
        let inputs =
            ferry_desired::inputs::inputs_from(named.iter().map(|(key, list)| (*key, list.as_slice())));
        out.manifests = Some(ManifestsConfig { source, inputs });
    }
    out.triggers = triggers(pipeline, base, field)?;
    for rule in &pipeline.mirror_rules {
        let registry = |v: &Spanned<String>, name: &'static str| {
            RegistryPath::parse(&v.value).map_err(|e| field(line_of(v), name, e.to_string()))
        };
        let pattern =
            |v: &Option<Spanned<String>>, name: &'static str| -> Result<Option<regex::Regex>, ConfigError> {
                v.as_ref()
                    .map(|v| {
                        regex::Regex::new(&v.value)
                            .map_err(|e| field(line_of(v), name, format!("not a regular expression: {e}")))
                    })
                    .transpose()
            };
        let destinations = rule
            .destinations
            .iter()
            .map(|d| registry(d, "pipeline.mirror-rules.destinations"))
            .collect::<Result<Vec<_>, _>>()?;
        if destinations.is_empty() {
            return Err(field(
                line_of(&rule.source),
                "pipeline.mirror-rules.destinations",
                "a rule needs a destination".into(),
            ));
        }
        let source = registry(&rule.source, "pipeline.mirror-rules.source")?;
        if rule.trusted && source.host.is_docker_hub() {
            return Err(field(
                line_of(&rule.source),
                "pipeline.mirror-rules.trusted",
                "Docker Hub is never a trusted source; drop `trusted: true` from this rule".into(),
            ));
        }
        out.mirror_rules.push(ferry_desired::MirrorRule {
            source,
            repositories: pattern(&rule.repositories, "pipeline.mirror-rules.repositories")?,
            destinations,
            tags: pattern(&rule.tags, "pipeline.mirror-rules.tags")?,
            semver: rule
                .semver
                .as_ref()
                .map(|v| {
                    semver::VersionReq::parse(&v.value)
                        .map_err(|e| field(line_of(v), "pipeline.mirror-rules.semver", e.to_string()))
                })
                .transpose()?,
            deny_prerelease: rule.deny_prerelease,
            trusted: rule.trusted,
        });
    }
    Ok(out)
}

fn source_policy(
    source: &SourceYaml,
    base: &Path,
    files: &dyn Files,
    field: &FieldError<'_>,
) -> Result<SourcePolicy, ConfigError> {
    let registry = RegistryPath::parse(&source.registry.value)
        .map_err(|e| field(line_of(&source.registry), "trust.sources.registry", e.to_string()))?;
    let requirement = |value: &Option<Spanned<String>>, name: &'static str| match value {
        None => Ok(Requirement::Off),
        Some(v) => match v.value.as_str() {
            "required" => Ok(Requirement::Required),
            "if-present" => Ok(Requirement::IfPresent),
            "off" => Ok(Requirement::Off),
            other => {
                Err(field(line_of(v), name, format!("{other:?} is not one of required, if-present, off")))
            }
        },
    };
    let keys = |list: &[Spanned<String>], name: &'static str| -> Result<Vec<VerificationKey>, ConfigError> {
        list.iter()
            .map(|k| {
                let path = base.join(&k.value);
                let pem = files.read(&path).map_err(|e| field(line_of(k), name, e))?;
                VerificationKey::from_pem(&k.value, &pem).map_err(|e| field(line_of(k), name, e.to_string()))
            })
            .collect()
    };
    let pattern =
        |value: &Option<Spanned<String>>, name: &'static str| -> Result<Option<regex::Regex>, ConfigError> {
            value
                .as_ref()
                .map(|v| {
                    regex::Regex::new(&v.value)
                        .map_err(|e| field(line_of(v), name, format!("not a regular expression: {e}")))
                })
                .transpose()
        };
    let policy = SourcePolicy {
        registry: Some(registry),
        signatures: requirement(&source.signatures, "trust.sources.signatures")?,
        signature_keys: keys(&source.keys, "trust.sources.keys")?,
        identity: pattern(&source.identity, "trust.sources.identity")?,
        provenance: requirement(&source.provenance, "trust.sources.provenance")?,
        provenance_keys: keys(&source.provenance_keys, "trust.sources.provenance-keys")?,
        builders: source.builders.clone(),
        source_repository: pattern(&source.source_repository, "trust.sources.source-repository")?,
        vulnerabilities: match &source.vulnerabilities {
            None => None,
            Some(v) => Some(VulnerabilityGate {
                block_at: Severity::parse(&v.block_at.value).ok_or_else(|| {
                    field(
                        line_of(&v.block_at),
                        "trust.sources.vulnerabilities.block-at",
                        "must be low, medium, high or critical".into(),
                    )
                })?,
                missing: match v.missing.as_ref().map(|m| (m, m.value.as_str())) {
                    None => MissingReport::Warn,
                    Some((_, "allow")) => MissingReport::Allow,
                    Some((_, "warn")) => MissingReport::Warn,
                    Some((_, "deny")) => MissingReport::Deny,
                    Some((m, _)) => {
                        return Err(field(
                            line_of(m),
                            "trust.sources.vulnerabilities.missing",
                            "must be allow, warn or deny".into(),
                        ));
                    }
                },
                keys: keys(&v.keys, "trust.sources.vulnerabilities.keys")?,
            }),
        },
        referrer_types: source
            .referrer_types
            .as_ref()
            .map(|r| ReferrerFilter { allow: r.allow.clone(), deny: r.deny.clone() })
            .unwrap_or_default(),
        keyless: keyless_policy(source, base, files, field)?,
    };
    let keyless = policy.keyless.is_some();
    if policy.signatures != Requirement::Off && policy.signature_keys.is_empty() && !keyless {
        return Err(field(
            line_of(&source.registry),
            "trust.sources.keys",
            "signatures are checked but no key is given, and no trusted-root for keyless signatures".into(),
        ));
    }
    if policy.provenance != Requirement::Off && policy.provenance_keys.is_empty() && !keyless {
        return Err(field(
            line_of(&source.registry),
            "trust.sources.provenance-keys",
            "provenance is checked but no key is given, and no trusted-root for keyless attestations".into(),
        ));
    }
    if policy.vulnerabilities.as_ref().is_some_and(|v| v.keys.is_empty()) && !keyless {
        return Err(field(
            line_of(&source.registry),
            "trust.sources.vulnerabilities.keys",
            "the gate needs the scanner's key, or a trusted-root for a keylessly signed report".into(),
        ));
    }
    Ok(policy)
}

/// The keyless part of a source's policy: all of `trusted-root`, one of
/// `certificate-identity[-regexp]` and one of `certificate-oidc-issuer[-regexp]`, or none.
fn keyless_policy(
    source: &SourceYaml,
    base: &Path,
    files: &dyn Files,
    field: &FieldError<'_>,
) -> Result<Option<KeylessPolicy>, ConfigError> {
    let one_of = |exact: &Option<Spanned<String>>,
                  regexp: &Option<Spanned<String>>,
                  name: &'static str,
                  regexp_name: &'static str|
     -> Result<Option<Matcher>, ConfigError> {
        match (exact, regexp) {
            (Some(_), Some(r)) => {
                Err(field(line_of(r), regexp_name, format!("give either {name} or {regexp_name}, not both")))
            }
            (Some(e), None) if e.value.is_empty() => Err(field(line_of(e), name, "is empty".into())),
            (Some(e), None) => Ok(Some(Matcher::Exact(e.value.clone()))),
            (None, Some(r)) => Matcher::regexp(&r.value)
                .map(Some)
                .map_err(|e| field(line_of(r), regexp_name, format!("not a regular expression: {e}"))),
            (None, None) => Ok(None),
        }
    };
    let identity = one_of(
        &source.certificate_identity,
        &source.certificate_identity_regexp,
        "trust.sources.certificate-identity",
        "trust.sources.certificate-identity-regexp",
    )?;
    let issuer = one_of(
        &source.certificate_oidc_issuer,
        &source.certificate_oidc_issuer_regexp,
        "trust.sources.certificate-oidc-issuer",
        "trust.sources.certificate-oidc-issuer-regexp",
    )?;
    match (&source.trusted_root, identity, issuer) {
        (None, None, None) => Ok(None),
        (Some(root), Some(identity), Some(issuer)) => {
            let path = base.join(&root.value);
            let at = line_of(root);
            let bytes = files.read(&path).map_err(|e| field(at, "trust.sources.trusted-root", e))?;
            let json = String::from_utf8(bytes).map_err(|_| {
                field(at, "trust.sources.trusted-root", format!("{}: is not UTF-8 text", path.display()))
            })?;
            let root = TrustedRoot::from_json(&json, path.display().to_string())
                .map_err(|e| field(at, "trust.sources.trusted-root", format!("{}: {e}", path.display())))?;
            Ok(Some(KeylessPolicy { root, identity, issuer }))
        }
        (None, _, _) => Err(field(
            line_of(&source.registry),
            "trust.sources.trusted-root",
            "a certificate identity or issuer is given without the trusted root to verify it against".into(),
        )),
        (Some(root), None, _) => Err(field(
            line_of(root),
            "trust.sources.certificate-identity",
            "keyless verification needs certificate-identity or certificate-identity-regexp".into(),
        )),
        (Some(root), Some(_), None) => Err(field(
            line_of(root),
            "trust.sources.certificate-oidc-issuer",
            "keyless verification needs certificate-oidc-issuer or certificate-oidc-issuer-regexp".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_table() {
        let cases = [
            ("", Ok(0)),
            ("registries:\n  insecure: [\"127.0.0.1:5001\", localhost]\n", Ok(2)),
            ("registries:\n  deny-prerelease: [registry.rancher.com]\n  requests-per-second: 20\n", Ok(0)),
            (
                "registries:\n  insecure: [\"bad host\"]\n",
                Err(":2: field `registries.insecure`: invalid registry host"),
            ),
            ("registries:\n  requests-per-second: 0\n", Err(":2: field `registries.requests-per-second`")),
            ("registries:\n  bogus: 1\n", Err(":2:3: unknown field `bogus`")),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: ecr, role-arn: \"arn:aws:iam::1:role/x\"}\n",
                Ok(0),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: ecs}\n",
                Err(
                    ":4: field `registries.hosts.auth.provider`: \"ecs\" is not one of ecr, ecr-public, gcp, acr, helper, anonymous",
                ),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth:\n      provider: gcp\n      role-arn: arn:aws:iam::1:role/x\n",
                Err(
                    ":6: field `registries.hosts.auth.role-arn`: applies to provider ecr or ecr-public, not gcp",
                ),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: ecr, role-arn: ferry}\n",
                Err(":4: field `registries.hosts.auth.role-arn`: \"ferry\" is not an IAM role ARN"),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: helper}\n",
                Err(":4: field `registries.hosts.auth.helper`: provider helper needs `helper: <name>`"),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: helper, helper: ../../bin/sh}\n",
                Err(":4: field `registries.hosts.auth.helper`: \"../../bin/sh\" is not a helper name"),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: gcp, service-account: projects/x}\n",
                Err(":4: field `registries.hosts.auth.service-account`"),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n  - host: r.example\n",
                Err(":4: field `registries.hosts`: r.example is listed twice"),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    requests-per-second: -1\n",
                Err(":4: field `registries.hosts.requests-per-second`: must be a positive number"),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    auth: {provider: acr, password: x}\n",
                Err("unknown field `password`"),
            ),
            (
                "registries:\n  hosts:\n  - host: harbor.example\n    inventory: harbor\n    inventory-token-env: HARBOR_LISTING\n    inventory-url: https://harbor.example\n",
                Ok(0),
            ),
            ("registries:\n  hosts:\n  - host: ghcr.io\n    inventory-token-env: GH_PACKAGES\n", Ok(0)),
            (
                "registries:\n  hosts:\n  - host: r.example\n    inventory: artifactory\n",
                Err(
                    ":4: field `registries.hosts.inventory`: \"artifactory\" is not one of auto, ecr, acr, dockerhub, harbor, ghcr, quay, oci",
                ),
            ),
            (
                "registries:\n  hosts:\n  - host: r.example\n    inventory-token-env: X\n",
                Err(":4: field `registries.hosts.inventory-token-env`: applies to the listing APIs"),
            ),
            (
                "registries:\n  hosts:\n  - host: quay.example\n    inventory: quay\n    inventory-token-env: \"$(cat /x)\"\n",
                Err(
                    ":5: field `registries.hosts.inventory-token-env`: \"$(cat /x)\" is not an environment variable's name",
                ),
            ),
            (
                "registries:\n  hosts:\n  - host: quay.example\n    inventory: quay\n    inventory-url: quay.example/api\n",
                Err(":5: field `registries.hosts.inventory-url`: \"quay.example/api\" is not an http(s) URL"),
            ),
            (
                "pipeline:\n  pubsub-push:\n    service-account: a@b.iam.gserviceaccount.com\n    jwks: certs.json\n",
                Err(":3: field `pipeline.pubsub-push`: give `endpoint`"),
            ),
            (
                "pipeline:\n  pubsub-push:\n    endpoint: ferry.example\n    service-account: a@b\n    jwks: c.json\n",
                Err(":3: field `pipeline.pubsub-push.endpoint`"),
            ),
            (
                "pipeline:\n  ghcr: {owners: [\"acme/app/x\"]}\n",
                Err(":2: field `pipeline.ghcr.owners`: \"acme/app/x\" is not an owner"),
            ),
            ("pipeline:\n  acr: {header: \"X Token\"}\n", Err(":2: field `pipeline.acr.header`")),
            ("pipeline:\n  dockerhub: {registry: docker.io}\n  quay: {registry: quay.example}\n", Ok(0)),
            ("registry: {}\n", Err(":1:1: unknown field `registry`")),
            (
                "signing:\n  key: a.key\n  kms-key-id: x\n",
                Err(":2: field `signing`: give `key` or `kms-key-id`, not both"),
            ),
            ("signing:\n  key: a.key\n  formats: [bundle]\n", Ok(0)),
            (
                "signing:\n  key: a.key\n  formats: [bundle, sigstore]\n",
                Err(":3: field `signing.formats`: \"sigstore\" is not one of legacy, bundle"),
            ),
            (
                "signing:\n  key: a.key\n  formats: []\n",
                Err(":3: field `signing.formats`: name at least one"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    signatures: maybe\n",
                Err(":4: field `trust.sources.signatures`: \"maybe\" is not one of"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    signatures: required\n",
                Err("signatures are checked but no key is given"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    signatures: required\n    keys: [missing.pub]\n",
                Err(":5: field `trust.sources.keys`: "),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    keys: [bad.pub]\n",
                Err("not an ECDSA P-256 public key"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    identity: \"(\"\n",
                Err("not a regular expression"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    vulnerabilities:\n      block-at: severe\n",
                Err("must be low, medium, high or critical"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    provenance: if-present\n    provenance-keys: [good.pub]\n    builders: [x]\n",
                Ok(0),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    signatures: required\n    provenance: required\n    trusted-root: root.json\n    certificate-identity: me@example.com\n    certificate-oidc-issuer-regexp: \"https://.*\"\n",
                Ok(0),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    trusted-root: root.json\n    certificate-identity: a\n    certificate-identity-regexp: a\n    certificate-oidc-issuer: b\n",
                Err(":6: field `trust.sources.certificate-identity-regexp`: give either"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    trusted-root: root.json\n    certificate-identity: a\n",
                Err(":4: field `trust.sources.certificate-oidc-issuer`: keyless verification needs"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    trusted-root: root.json\n    certificate-oidc-issuer: b\n",
                Err(":4: field `trust.sources.certificate-identity`: keyless verification needs"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    certificate-identity: a\n    certificate-oidc-issuer: b\n",
                Err(
                    ":3: field `trust.sources.trusted-root`: a certificate identity or issuer is given without",
                ),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    trusted-root: good.pub\n    certificate-identity: a\n    certificate-oidc-issuer: b\n",
                Err(":4: field `trust.sources.trusted-root`: "),
            ),
            (
                "check:\n  required-destinations: [us.example/prod, eu.example/prod]\n  multi-arch: required\n  single-arch-allowed: [pause]\n  tags: mutable\n  allowed-sources: [staging.example]\n",
                Ok(0),
            ),
            (
                "discovery:\n  every: 6 hours\n  autoupdate: a.yaml\n  rancher-config: c.yaml\n  repository: a/b\n",
                Err(":2: field `discovery.every`"),
            ),
            (
                "discovery:\n  every: 1h\n  autoupdate: a.yaml\n  rancher-config: c.yaml\n  repository: nope\n",
                Err(":5: field `discovery.repository`"),
            ),
            (
                "check:\n  allowed-hosts: [\"2852039166\"]\n",
                Err(":2: field `check.allowed-hosts`: invalid registry host"),
            ),
            (
                "check:\n  required-destinations: [\"Bad Host\"]\n",
                Err(":2: field `check.required-destinations`"),
            ),
            (
                "check:\n  multi-arch: always\n",
                Err(":2: field `check.multi-arch`: \"always\" is not one of required, optional"),
            ),
            (
                "check:\n  tags: sometimes\n",
                Err(":2: field `check.tags`: \"sometimes\" is not one of immutable, mutable"),
            ),
            (
                "check:\n  single-arch-allowed: [pause]\n",
                Err(":2: field `check.single-arch-allowed`: has no effect unless"),
            ),
            (
                "check:\n  multi-arch: required\n  single-arch-allowed: [\"UPPER\"]\n",
                Err(":3: field `check.single-arch-allowed`: \"UPPER\" is not an image name"),
            ),
            ("check:\n  forbid: x\n", Err(":2:3: unknown field `forbid`")),
            (
                "registries:\n  trusted-sources: [staging.example, index.docker.io/rancher]\n",
                Err(":2: field `registries.trusted-sources`: Docker Hub is never a trusted source"),
            ),
            (
                "pipeline:\n  mirror-rules:\n  - source: registry-1.docker.io/rancher\n    destinations: [prod.example]\n    trusted: true\n",
                Err(":3: field `pipeline.mirror-rules.trusted`: Docker Hub is never a trusted source"),
            ),
            (
                "trust:\n  sources:\n  - registry: a.io\n    trusted-root: root.json\n    certificate-identity-regexp: \"(\"\n    certificate-oidc-issuer: b\n",
                Err(":5: field `trust.sources.certificate-identity-regexp`: not a regular expression"),
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.json"), sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT)
            .unwrap();
        std::fs::write(dir.path().join("bad.pub"), "not a key").unwrap();
        let (_, good) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
        std::fs::write(dir.path().join("good.pub"), good).unwrap();
        for (text, want) in cases {
            let path = dir.path().join("ferry.yaml");
            std::fs::write(&path, text).unwrap();
            match (Config::load(Some(&path)), want) {
                (Ok(config), Ok(n)) => assert_eq!(config.insecure_hosts.len(), n, "{text}"),
                (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Every input kind of the one table is accepted under `pipeline.manifests` by its key.
    #[test]
    fn pipeline_manifests_accept_every_input_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.yaml");
        for kind in ferry_desired::inputs::KINDS.iter() {
            std::fs::write(
                &path,
                format!("pipeline:\n  manifests:\n    git: repo\n    {}: [some/path]\n", kind.config_key),
            )
            .unwrap();
            let config = Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", kind.config_key));
            let inputs = config.pipeline.manifests.unwrap().inputs;
            assert_eq!(inputs, vec![(kind.input)("some/path".into())], "{}", kind.config_key);
        }
    }

    /// `examples/ferry.yaml` documents every section; it must load, and fill every part of
    /// the configuration, so that it cannot drift from the code.
    #[test]
    fn the_commented_example_loads_and_covers_every_section() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ferry.yaml");
        let text = std::fs::read_to_string(&example).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.yaml");
        std::fs::write(&path, &text).unwrap();
        for key in ["staging.pub", "builder.pub", "scanner.pub"] {
            let (_, public) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
            std::fs::write(dir.path().join(key), public).unwrap();
        }
        std::fs::write(
            dir.path().join("trusted_root.json"),
            sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT,
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.insecure_hosts.len(), 1);
        assert!(!config.policy.deny_prerelease.is_empty() && !config.policy.trusted_sources.is_empty());
        assert_eq!(config.requests_per_second, Some(50.0));
        assert_eq!(config.retry.budget, Duration::from_secs(120));
        let providers: Vec<_> = config.hosts.iter().filter_map(|h| h.provider.clone()).collect();
        assert!(matches!(
            providers[..],
            [
                ferry_login::Provider::Ecr { region: Some(_), role_arn: Some(_) },
                ferry_login::Provider::Gcp { service_account: Some(_) },
                ferry_login::Provider::Acr { tenant: Some(_) },
                ferry_login::Provider::Helper { .. },
            ]
        ));
        assert_eq!(config.hosts[0].requests_per_second, Some(20.0));
        assert!(matches!(config.signing, Some(SigningConfig::KeyFile(_))));
        let source = &config.trust.sources[0];
        assert!(source.identity.is_some() && source.source_repository.is_some());
        assert_eq!((source.signature_keys.len(), source.provenance_keys.len()), (1, 1));
        assert!(source.vulnerabilities.as_ref().is_some_and(|v| v.keys.len() == 1));
        assert_eq!(source.referrer_types.deny.len(), 1);
        let keyless = config.trust.sources[1].keyless.as_ref().unwrap();
        assert!(
            keyless
                .identity
                .matches("https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0")
        );
        assert!(keyless.issuer.matches("https://token.actions.githubusercontent.com"));
        let pipeline = &config.pipeline;
        assert_eq!(pipeline.registries.len(), 1);
        assert_eq!(pipeline.github_repository.as_deref(), Some("acme/k8s.io"));
        let manifests = pipeline.manifests.as_ref().unwrap();
        assert!(matches!(manifests.source, ManifestSource::Git(_)));
        assert_eq!(manifests.inputs.len(), 1);
        let triggers = &pipeline.triggers;
        assert!(matches!(
            &triggers.pubsub_push,
            Some(PubSubPush { jwks: JwksSource::Url(_), audience, .. }) if audience == "https://ferry.example.com/v1/events/gcr"
        ));
        assert_eq!(triggers.ghcr_owners, ["acme", "other-org/app"]);
        assert_eq!(triggers.acr_header, "x-ferry-token");
        assert!(triggers.quay_registry.is_some());
        let rule = &pipeline.mirror_rules[0];
        assert!(rule.repositories.is_some() && rule.tags.is_some() && rule.semver.is_some());
        assert!(rule.deny_prerelease && rule.trusted && rule.destinations.len() == 2);
        let check = &config.check;
        assert_eq!((check.required_destinations.len(), check.allowed_sources.len()), (2, 1));
        assert!(check.multi_arch_required && check.immutable_tags && check.single_arch_allowed.len() == 1);
        let discovery = config.discovery.as_ref().unwrap();
        assert_eq!(discovery.every, Duration::from_secs(6 * 3600));
        assert_eq!((discovery.repository.as_str(), discovery.base.as_str()), ("acme/image-mirror", "main"));
        assert_eq!(discovery.regsync_yaml.as_deref(), Some("regsync.yaml"));
        // Every key the file format accepts is spelled out (set or commented) in the example.
        for key in [
            "insecure:",
            "deny-prerelease:",
            "trusted-sources:",
            "requests-per-second:",
            "retry-budget-seconds:",
            "hosts:",
            "host:",
            "auth:",
            "provider:",
            "role-arn:",
            "region:",
            "service-account:",
            "tenant:",
            "helper:",
            "pubsub-push:",
            "endpoint:",
            "audience:",
            "jwks:",
            "ghcr:",
            "owners:",
            "dockerhub:",
            "quay:",
            "acr:",
            "header:",
            "ecr-public",
            "anonymous",
            "key:",
            "kms-key-id:",
            "registry:",
            "signatures:",
            "keys:",
            "identity:",
            "provenance:",
            "provenance-keys:",
            "builders:",
            "source-repository:",
            "block-at:",
            "missing:",
            "registries:",
            "github-repository:",
            "git:",
            "github:",
            "github-api:",
            "thin-manifest-dirs:",
            "manifests:",
            "images-lists:",
            "charts-sync:",
            "rancher-configs:",
            "regsync-yamls:",
            "referrer-types:",
            "trusted-root:",
            "certificate-identity:",
            "certificate-identity-regexp:",
            "certificate-oidc-issuer:",
            "certificate-oidc-issuer-regexp:",
            "allow:",
            "deny:",
            "mirror-rules:",
            "source:",
            "repositories:",
            "tags:",
            "semver:",
            "destinations:",
            "trusted:",
            "check:",
            "required-destinations:",
            "multi-arch:",
            "single-arch-allowed:",
            "allowed-sources:",
            "allowed-hosts:",
            "discovery:",
            "every:",
            "autoupdate:",
            "rancher-config:",
            "regsync-yaml:",
            "repository:",
            "base:",
        ] {
            assert!(text.contains(key), "examples/ferry.yaml does not mention {key}");
        }
    }
}
