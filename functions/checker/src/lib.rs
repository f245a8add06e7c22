//! The checker function: `check` → a GitHub check run on the pull request's head commit.
//!
//! Ingest turns a `pull_request` event (`opened`, `synchronize`, `reopened`) on the manifest
//! repository into a [`CheckMessage`]. The checker reads what the pull request changes in the
//! manifests (between its base and head commits, only the files it touched), checks every new
//! digest as `ferry check` does ([`ferry_check`]: the same plan, verifier facts, decision and
//! report), and posts the result as a completed check run. Nothing is written to a registry.
//!
//! A check run carries `external_id = ferry-check:<base>..<head>`; a redelivered message finds
//! the run it posted and posts nothing again.
//!
//! Architecture invariant: the checker's policy and credentials are the deployment's; each check gets a registry client guarded to its reach.

use ferry_bootstrap::Context;
use ferry_check::github::{CheckRun, Checks};
use ferry_check::render::Links;
use ferry_check::{Reach, Report, RepositoryPolicy};
use ferry_desired::source::{AnySource, ManifestSource, SourceError};
use ferry_messages::{CheckMessage, Envelope};
use ferry_plan::GatherOptions;
use ferry_registry::{OciRegistry, TransportConfig};
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::policy::TrustPolicy;

/// The check run's name on pull requests.
pub const CHECK_NAME: &str = "ferry check";

#[derive(Debug)]
pub struct Checker<S> {
    /// The deployment's registry settings and credentials. Each check gets its own client from
    /// them, guarded to the hosts its reach allows (a pull request is hostile input).
    pub transport: TransportConfig,
    /// The hosts the configuration names (see [`Reach`]).
    pub named_hosts: std::collections::BTreeSet<ferry_model::Host>,
    /// The manifest repository (`pipeline.manifests`).
    pub source: Option<S>,
    /// Only pull requests on this repository are checked (`pipeline.github-repository`).
    pub repository: Option<String>,
    /// The Checks API, when a token is configured.
    pub checks: Option<Checks>,
    /// `https://github.com`, for links to the files.
    pub server: String,
    /// The policy every entry is read with (trusted sources, prerelease refusals).
    pub manifests: ferry_manifests::Policy,
    pub trust: TrustPolicy,
    pub policy: RepositoryPolicy,
}

pub async fn build(context: Context) -> anyhow::Result<Checker<AnySource>> {
    let pipeline = &context.config.pipeline;
    let policy = context.config.policy.clone();
    let source = pipeline
        .manifests
        .as_ref()
        .map(|m| AnySource::configured(m, &policy, context.env.github_token.clone()))
        .transpose()?;
    let api = if pipeline.github_api.is_empty() { ferry_github::DEFAULT_API } else { &pipeline.github_api };
    let checks = match (&pipeline.github_repository, &context.env.github_token) {
        (Some(repository), Some(token)) => Some(Checks::new(api, repository, token.clone())?),
        _ => None,
    };
    Ok(Checker {
        transport: context.config.transport(&context.env)?,
        named_hosts: context.config.named_hosts(),
        source,
        repository: pipeline.github_repository.clone(),
        checks,
        server: context.env.github_server_url.clone().unwrap_or_else(|| "https://github.com".into()),
        manifests: policy.clone(),
        trust: context.config.trust.clone(),
        policy: context.config.check.clone(),
    })
}

impl<S: ManifestSource> Stage for Checker<S> {
    type Message = CheckMessage;

    async fn handle(&self, message: Envelope<CheckMessage>) -> Result<Vec<Outgoing>, StageError> {
        let pr = &message.body;
        if self.repository.as_deref() != Some(pr.repository.as_str()) {
            tracing::warn!(repository = %ferry_model::Shown(&pr.repository), "a pull request on a repository that is not pipeline.github-repository; not checked");
            return Ok(Vec::new());
        }
        // Not configured for checks (`ferry run` and `ferry config check` say so at startup):
        // the pull request is left unchecked, which is the operator's choice, not a failure.
        let (Some(source), Some(checks)) = (&self.source, &self.checks) else {
            tracing::warn!(
                repository = %ferry_model::Shown(&pr.repository),
                pull_request = pr.pull_request,
                "pull request not checked: the checker needs pipeline.manifests and GITHUB_TOKEN"
            );
            return Ok(Vec::new());
        };
        let external_id = format!("ferry-check:{}..{}", pr.base, pr.head);
        if let Some(url) = checks.posted(&pr.head, CHECK_NAME, &external_id).await? {
            tracing::info!(repository = %ferry_model::Shown(&pr.repository), pull_request = pr.pull_request, head = %ferry_model::Shown(&pr.head), %url, "already checked; not posted again");
            return Ok(Vec::new());
        }
        let report = match source.change(&pr.base, &pr.head).await {
            // Manifests that do not parse are the pull request's problem: reported on it.
            Err(SourceError::Manifest(error)) => Report::unreadable(
                error.problems().into_iter().map(ferry_manifests::ManifestError::place_and_detail),
            ),
            Err(other) => return Err(other.into()),
            Ok(change) => {
                // Decided before any request: the hosts the configuration names and those
                // the base uses. The client is guarded to exactly those.
                let reach = Reach::new(self.named_hosts.iter().cloned(), Some(&change.base));
                let mut transport = self.transport.clone();
                transport.guard = reach.guard();
                let registry = OciRegistry::new(transport)?;
                let concurrency = GatherOptions::default().concurrency;
                let (base, head) = (Some(change.base), change.head);
                ferry_check::check(
                    &registry,
                    base,
                    head,
                    &self.manifests,
                    &self.trust,
                    &self.policy,
                    &reach,
                    concurrency,
                )
                .await
            }
        };
        let blob = |sha: &str| Some(format!("{}/{}/blob/{sha}", self.server, pr.repository));
        let links = Links { blob_base: blob(&pr.head), base_blob_base: blob(&pr.base) };
        let run = CheckRun {
            name: CHECK_NAME.into(),
            head_sha: pr.head.clone(),
            details_url: None,
            external_id: Some(external_id),
        };
        let url = checks.post(&report, &run, &links).await?;
        tracing::info!(
            repository = %ferry_model::Shown(&pr.repository),
            pull_request = pr.pull_request,
            head = %ferry_model::Shown(&pr.head),
            conclusion = report.conclusion().as_str(),
            title = %report.title(),
            %url,
            "check run posted"
        );
        Ok(Vec::new())
    }
}
