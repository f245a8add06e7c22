//! The startup checks: `ferry config check`, and the same checks when `ferry run`, `ferry
//! worker` and every function binary (Lambda included) start: the configuration and the
//! environment it needs, each problem with its fix. A fatal problem would make the pipeline
//! fail on every message (a refused webhook, a TLS error after retries, an unreadable key), so
//! the process refuses to start instead.

use std::path::Path;
use std::time::Duration;

use ferry_config::{Config, ConfigError, Env, ManifestSource, SigningConfig};
use ferry_messages::Queue;
use ferry_model::Host;
use ferry_registry::RegistryError;
use ferry_registry::transport::Transport;

/// What the process about to start needs.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    pub ingest: bool,
    pub signing: bool,
    pub manifests: bool,
    /// The checker: pull requests get check runs.
    pub checks: bool,
}

impl Needs {
    pub const ALL: Needs = Needs { ingest: true, signing: true, manifests: true, checks: true };

    /// What the webhook endpoints need (the ingest HTTP function, `ferry worker --stage
    /// ingest`): a secret for each sender.
    pub const INGEST: Needs = Needs { ingest: true, signing: false, manifests: false, checks: false };

    /// What the stage consuming `queue` needs (a function binary, a worker). The events stage
    /// consumes EventBridge's messages, not webhooks: it needs no webhook secret.
    pub fn queue(queue: Queue) -> Needs {
        Needs {
            ingest: false,
            signing: matches!(queue, Queue::Sign | Queue::Attest),
            manifests: matches!(queue, Queue::Plan | Queue::Check),
            checks: queue == Queue::Check,
        }
    }
}

/// The one line a process prints when it refuses to start, whichever process it is.
pub const REFUSAL: &str =
    "not starting: the configuration has the problem(s) above (`ferry config check` lists them)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Warning,
}

#[derive(Clone, Debug)]
pub struct Problem {
    pub severity: Severity,
    pub what: String,
    pub fix: String,
}

impl Problem {
    fn fatal(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem { severity: Severity::Fatal, what: what.into(), fix: fix.into() }
    }

    fn warning(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem { severity: Severity::Warning, what: what.into(), fix: fix.into() }
    }

    pub fn line(&self) -> String {
        let level = match self.severity {
            Severity::Fatal => "error",
            Severity::Warning => "warning",
        };
        format!("{level}: {}\n  fix: {}", self.what, self.fix)
    }
}

/// What the checks found: what is fine, and each problem.
#[derive(Debug, Default)]
pub struct Findings {
    pub fine: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Why the checks could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl Findings {
    pub fn fatal(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Fatal)
    }
}

/// The checker posts check runs on pull requests of `pipeline.github-repository`: it needs that,
/// the manifests, and a token. Without them a pull request is never checked, which a
/// repository requiring the check would see as a check that never arrives.
fn checks(config: &Config, env: &Env, found: &mut Findings) {
    let pipeline = &config.pipeline;
    let Some(repository) = &pipeline.github_repository else { return };
    let mut missing = Vec::new();
    if pipeline.manifests.is_none() {
        missing.push("pipeline.manifests");
    }
    if env.github_token.is_none() {
        missing.push("GITHUB_TOKEN");
    }
    if missing.is_empty() {
        found.fine.push(format!(
            "pull requests on {repository} get a `ferry check` check run (GITHUB_TOKEN set; not contacted)"
        ));
    } else {
        found.problems.push(Problem::warning(
            format!(
                "pull requests on {repository} will not be checked: {} not set",
                missing.join(" and ")
            ),
            "set GITHUB_TOKEN (a token with checks: write and contents: read) and pipeline.manifests; without them pull requests are logged and left unchecked",
        ));
    }
}

/// Runs every check `needs` asks for. Registries are probed concurrently, once each.
pub async fn check(config: &Config, env: &Env, needs: Needs) -> Result<Findings, CheckError> {
    let mut found = Findings::default();
    let pipeline = &config.pipeline;
    if needs.ingest {
        ingest(config, env, &mut found);
    }
    if needs.signing {
        signing(config, env, &mut found).await;
    }
    if needs.manifests {
        match pipeline.manifests.as_ref().map(|m| &m.source) {
            Some(ManifestSource::Git(path)) => git_checkout(path, &mut found),
            Some(ManifestSource::GitHub { repository, .. }) => {
                if env.github_token.is_none() {
                    found.problems.push(Problem::warning(
                        format!(
                            "pipeline.manifests.github is {repository}, and GITHUB_TOKEN is not set: the contents API allows 60 requests an hour without a token"
                        ),
                        "set GITHUB_TOKEN (read access to contents is enough)",
                    ));
                } else {
                    found.fine.push(format!(
                        "manifests from GitHub {repository} (GITHUB_TOKEN set; not contacted)"
                    ));
                }
            }
            None => {}
        }
    }
    if needs.checks {
        checks(config, env, &mut found);
    }
    let transport = Transport::new(config.transport(env)?)?;
    let hosts = hosts(config);
    let pushed = pushed_hosts(config);
    let probes = futures_util::future::join_all(hosts.iter().map(|h| async {
        let answered = probe(&transport, h).await;
        match answered {
            Ok(line) => {
                let login = log_in(&transport, h, pushed.contains(h)).await;
                (Ok(line), Some(login))
            }
            Err(problem) => (Err(problem), None),
        }
    }))
    .await;
    for (answered, login) in probes {
        for result in std::iter::once(answered).chain(login) {
            match result {
                Ok(line) => found.fine.push(line),
                Err(problem) => found.problems.push(problem),
            }
        }
    }
    // How each configured host's repositories are listed (status, reconcile and plans read
    // destinations by listing); hosts not configured are listed by tags/list.
    for host in &config.hosts {
        let line = match transport.configured_inventory(&host.host) {
            Some(source) => format!("{}: repositories listed with {source}", host.host),
            None => format!(
                "{}: repositories listed with tags/list (the extended one where the registry serves it)",
                host.host
            ),
        };
        found.fine.push(line);
    }
    Ok(found)
}

/// Hosts Ferry pushes to: mirror-rule destinations and the check policy's required
/// destinations.
fn pushed_hosts(config: &Config) -> Vec<Host> {
    let mut hosts: Vec<Host> = config
        .pipeline
        .mirror_rules
        .iter()
        .flat_map(|r| r.destinations.iter().map(|d| d.host.clone()))
        .chain(config.check.required_destinations.iter().map(|d| d.host.clone()))
        .collect();
    hosts.sort_by_key(ToString::to_string);
    hosts.dedup();
    hosts
}

/// Logs in to `host` as `docker login` does and says with what: the source of its credential
/// (a config entry, a helper, a cloud), never the secret.
async fn log_in(transport: &Transport, host: &Host, pushed: bool) -> Result<String, Problem> {
    use ferry_registry::Classify as _;
    let source = transport.credential_source(host);
    let role = if pushed { "pull and push" } else { "pull" };
    match transport.log_in(host).await {
        Ok(status) if transport.is_anonymous(host) => {
            Ok(format!("{host}: reached for {role} with {source} (GET /v2/: {status})"))
        }
        Ok(status) => Ok(format!("{host}: logged in for {role} with {source} (GET /v2/: {status})")),
        Err(error) => {
            let what = format!("{host}: cannot log in for {role}: {error}");
            let fix = "check the credential this names: registries.hosts[].auth, config.json (credHelpers, credsStore, auths), or the cloud credentials in the environment (README: Registries and credentials)";
            Err(match error.class() {
                // Public repositories may still be readable: only say so.
                _ if transport.is_anonymous(host) => Problem::warning(
                    what,
                    "if Ferry reads or writes more than public repositories there, configure a credential for it",
                ),
                ferry_registry::ErrorClass::Permanent => Problem::fatal(what, fix),
                _ => Problem::warning(
                    what,
                    "the login service did not answer; messages that need it will be retried",
                ),
            })
        }
    }
}

fn ingest(config: &Config, env: &Env, found: &mut Findings) {
    let pipeline = &config.pipeline;
    let any_secret = env.distribution_token.is_some()
        || env.harbor_token.is_some()
        || env.github_webhook_secret.is_some()
        || env.ghcr_webhook_secret.is_some()
        || env.dockerhub_secret.is_some()
        || env.quay_token.is_some()
        || env.acr_token.is_some()
        || pipeline.triggers.pubsub_push.is_some();
    if !any_secret {
        found.problems.push(Problem::fatal(
            "no webhook secret is set: ingest would refuse every webhook (401)",
            "set FERRY_DISTRIBUTION_TOKEN (distribution and ECR send it as `Authorization: Bearer …`), \
             FERRY_HARBOR_TOKEN (Harbor's auth header), FERRY_GITHUB_WEBHOOK_SECRET, or a route of the README's Triggers table",
        ));
    } else if env.distribution_token.is_none() && !pipeline.registries.is_empty() {
        found.problems.push(Problem::warning(
            "FERRY_DISTRIBUTION_TOKEN is not set: distribution and ECR webhooks will be refused (401)",
            "set FERRY_DISTRIBUTION_TOKEN to the bearer token in the registry's notification headers",
        ));
    }
    if pipeline.github_repository.is_some() && env.github_webhook_secret.is_none() {
        found.problems.push(Problem::warning(
            "pipeline.github-repository is set, and FERRY_GITHUB_WEBHOOK_SECRET is not: GitHub webhooks will be refused (401)",
            "set FERRY_GITHUB_WEBHOOK_SECRET to the webhook's secret",
        ));
    }
    if pipeline.registries.is_empty() {
        found.problems.push(Problem::warning(
            "pipeline.registries is empty: every registry push event will be ignored",
            "list the hosts that send push events under pipeline.registries",
        ));
    } else {
        found.fine.push(format!(
            "push events accepted from {}",
            pipeline.registries.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    routes(config, env, found);
    for rule in &pipeline.mirror_rules {
        if !pipeline.registries.contains(&rule.source.host) {
            found.problems.push(Problem::warning(
                format!(
                    "the mirror rule for {} will never fire: {} is not in pipeline.registries, so its pushes are ignored",
                    rule.source, rule.source.host
                ),
                format!("add \"{}\" to pipeline.registries", rule.source.host),
            ));
        }
    }
}

/// Each push route: enabled, or disabled and why; a route whose registry is not in
/// `pipeline.registries` would ignore every event.
fn routes(config: &Config, env: &Env, found: &mut Findings) {
    let pipeline = &config.pipeline;
    let triggers = &pipeline.triggers;
    let heard = |host: &Host| pipeline.registries.contains(host);
    let mut lines = Vec::new();
    let mut unheard = Vec::new();
    match &triggers.pubsub_push {
        Some(push) => lines.push(format!(
            "/v1/events/gcr enabled (Pub/Sub push tokens for {} with audience {})",
            push.service_account, push.audience
        )),
        None => lines.push("/v1/events/gcr disabled (no pipeline.pubsub-push)".into()),
    }
    let ghcr_secret = env.ghcr_webhook_secret.is_some() || env.github_webhook_secret.is_some();
    match (triggers.ghcr_owners.is_empty(), ghcr_secret) {
        (false, true) => {
            lines.push(format!(
                "GHCR package events enabled on /v1/events/github (owners {}, registry {})",
                triggers.ghcr_owners.join(", "),
                triggers.ghcr_registry
            ));
            if !heard(&triggers.ghcr_registry) {
                unheard.push(("pipeline.ghcr", triggers.ghcr_registry.clone()));
            }
        }
        (false, false) => found.problems.push(Problem::warning(
            "pipeline.ghcr.owners is set, and neither FERRY_GHCR_WEBHOOK_SECRET nor FERRY_GITHUB_WEBHOOK_SECRET is: package webhooks will be refused (401)",
            "set FERRY_GHCR_WEBHOOK_SECRET to the package webhook's secret",
        )),
        (true, _) => lines.push("GHCR package events disabled (no pipeline.ghcr.owners)".into()),
    }
    for (route, secret, variable, registry) in [
        (
            "/v1/events/dockerhub/<secret>",
            &env.dockerhub_secret,
            "FERRY_DOCKERHUB_SECRET",
            Some(&triggers.dockerhub_registry),
        ),
        ("/v1/events/quay/<secret>", &env.quay_token, "FERRY_QUAY_TOKEN", triggers.quay_registry.as_ref()),
        ("/v1/events/acr", &env.acr_token, "FERRY_ACR_TOKEN", None),
    ] {
        if secret.is_some() {
            let on = registry.map(|r| format!(" for {r}")).unwrap_or_default();
            lines.push(format!("{route} enabled{on}"));
            if let Some(registry) = registry
                && !heard(registry)
            {
                unheard.push((route, registry.clone()));
            }
        } else {
            lines.push(format!("{route} disabled ({variable} is not set)"));
        }
    }
    found.fine.extend(lines);
    for (route, registry) in unheard {
        found.problems.push(Problem::warning(
            format!("{route} announces pushes to {registry}, which is not in pipeline.registries: they will be ignored"),
            format!("add \"{registry}\" to pipeline.registries"),
        ));
    }
}

async fn signing(config: &Config, env: &Env, found: &mut Findings) {
    match &config.signing {
        None => found.problems.push(Problem::warning(
            "no signing key is configured: promotions are copied, but not signed or attested",
            "set signing.key (a cosign key; password in COSIGN_PASSWORD) or signing.kms-key-id",
        )),
        Some(source) => {
            let what = match source {
                SigningConfig::KeyFile(path) => format!("signing key {}", path.display()),
                SigningConfig::Kms(id) => format!("KMS signing key {id}"),
            };
            let load = ferry_trust::keys::load(Some(source), env.cosign_password.as_ref());
            match tokio::time::timeout(Duration::from_secs(20), load).await {
                Ok(Ok(_)) => found.fine.push(format!("{what} loads")),
                Ok(Err(e)) => found.problems.push(Problem::fatal(
                    format!("{what} cannot be loaded: {e}"),
                    match source {
                        SigningConfig::KeyFile(_) => {
                            "check the path (relative to the config file) and COSIGN_PASSWORD; `ferry keys generate` makes a pair"
                        }
                        SigningConfig::Kms(_) => "check the key id and the AWS_* credentials and region",
                    },
                )),
                Err(_) => found.problems.push(Problem::fatal(
                    format!("{what}: no answer within 20 s"),
                    "check the AWS_* region, endpoint and network access to KMS",
                )),
            }
        }
    }
}

fn git_checkout(path: &Path, found: &mut Findings) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["rev-parse", "--verify", "HEAD"])
        .output();
    match out {
        Ok(out) if out.status.success() => found.fine.push(format!(
            "manifests from the git checkout {} (HEAD {})",
            path.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(out) => found.problems.push(Problem::fatal(
            format!(
                "pipeline.manifests.git: {} is not a git checkout with a commit: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "clone the manifest repository there (the path is relative to the config file)",
        )),
        Err(e) => found.problems.push(Problem::fatal(
            format!("pipeline.manifests.git needs the git command: {e}"),
            "install git",
        )),
    }
}

/// Every registry host the configuration names.
fn hosts(config: &Config) -> Vec<Host> {
    let pipeline = &config.pipeline;
    let mut hosts: Vec<Host> = pipeline.registries.clone();
    for rule in &pipeline.mirror_rules {
        hosts.push(rule.source.host.clone());
        hosts.extend(rule.destinations.iter().map(|d| d.host.clone()));
    }
    hosts.extend(config.trust.sources.iter().filter_map(|s| s.registry.as_ref().map(|r| r.host.clone())));
    hosts.extend(config.insecure_hosts.iter().cloned());
    hosts.extend(config.hosts.iter().map(|h| h.host.clone()));
    hosts.extend(config.check.required_destinations.iter().map(|d| d.host.clone()));
    hosts.sort_by_key(ToString::to_string);
    hosts.dedup();
    hosts
}

/// `GET /v2/` on the scheme Ferry will use; when that fails, on the other one, to name the fix.
async fn probe(transport: &Transport, host: &Host) -> Result<String, Problem> {
    let insecure = transport.is_insecure(host);
    let (scheme, other) = if insecure { ("http", "https") } else { ("https", "http") };
    match transport.probe(host, Some(scheme)).await {
        Ok(status) => Ok(format!("{host} answers on {scheme} (GET /v2/: {status})")),
        Err(error) => match transport.probe(host, Some(other)).await {
            Ok(_) if insecure => Err(Problem::fatal(
                format!("{host} is in registries.insecure, but it speaks only HTTPS ({scheme}: {error})"),
                format!("remove \"{host}\" from registries.insecure"),
            )),
            Ok(_) => Err(Problem::fatal(
                format!("{host} speaks plain HTTP, and Ferry would use HTTPS ({error})"),
                format!(
                    "add \"{host}\" to registries.insecure (only for a registry you trust on its network)"
                ),
            )),
            Err(_) => Err(Problem::warning(
                format!("{host} does not answer on {scheme}: {error}"),
                "check the address and the network; messages that need it will be retried",
            )),
        },
    }
}

/// Runs the checks `needs` asks for at startup, hands every problem to `report` (a line each),
/// and refuses to start on a fatal one with [`REFUSAL`]: the same for `ferry run`, `ferry
/// worker` and every function binary.
pub async fn at_startup(
    config: &Config,
    env: &Env,
    needs: Needs,
    mut report: impl FnMut(&str),
) -> Result<(), StartError> {
    let found = check(config, env, needs).await?;
    for problem in &found.problems {
        for line in problem.line().lines() {
            report(line);
        }
    }
    if found.fatal() {
        return Err(StartError::Refused);
    }
    Ok(())
}

/// Why a process did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{REFUSAL}")]
    Refused,
}
