//! The planner function: `plan` → `verify` (one message per promoted digest).
//!
//! A registry push is matched against the mirror rules and the manifests' own entries; a
//! manifest change is planned diff-only between its base and head commits, reading only the
//! files the change touched. Either way the registries are asked what the plan needs, then
//! [`ferry_promotion::promotions`] groups the plan into messages. A large change becomes many
//! small messages.
//!
//! Architecture invariant: the planner computes desired state only through `ferry_desired`.

/// Where manifests are read (moved to `ferry-source`, which the checker shares).
pub use ferry_desired::source;

use ferry_bootstrap::{Context, registry};
use ferry_desired::{Scope, Settings};
use ferry_messages::{DeadLetterQueue, Envelope, ManifestOrigin, PlanMessage, Queue};
use ferry_model::{DesiredState, Host};
use ferry_plan::{GatherOptions, Plan, diff, gather, plan};
use ferry_promotion::reconcile;
use ferry_registry::{ErrorClass, OciRegistry, Registry as _};
use ferry_runtime::{Outgoing, Stage, StageError};

use ferry_desired::{AnySource, ManifestSource};

#[derive(Debug)]
pub struct Planner<S> {
    pub registry: OciRegistry,
    pub source: Option<S>,
    /// The policy and the mirror rules desired state is computed with.
    pub settings: Settings,
    /// Events naming other registry hosts are ignored (the SSRF guard, again).
    pub registries: Vec<Host>,
    /// Where the manifest repository lives, for attestations.
    pub repository_name: Option<String>,
    /// `signing.formats`: what a reconcile counts as signed and attested.
    pub formats: ferry_trust::Formats,
}

pub async fn build(context: Context) -> anyhow::Result<Planner<AnySource>> {
    let pipeline = &context.config.pipeline;
    let policy = context.config.policy.clone();
    let source = pipeline
        .manifests
        .as_ref()
        .map(|m| AnySource::configured(m, &policy, context.env.github_token.clone()))
        .transpose()?;
    Ok(Planner {
        registry: registry(&context)?,
        source,
        settings: Settings { policy, rules: pipeline.mirror_rules.clone() },
        registries: pipeline.registries.clone(),
        repository_name: pipeline.github_repository.clone(),
        formats: context.config.signing_formats,
    })
}

impl<S: ManifestSource> Planner<S> {
    async fn desired(
        &self,
        message: &Envelope<PlanMessage>,
    ) -> Result<(DesiredState, Option<ManifestOrigin>), StageError> {
        match &message.body {
            PlanMessage::RegistryPush { registry, repository, digest, tag } => {
                if !self.registries.contains(registry) || repository.host() != registry {
                    tracing::warn!(%registry, %repository, "a push event for a registry that is not configured; ignored");
                    return Ok((DesiredState::default(), None));
                }
                let scope =
                    Scope::Push { repository, digest: *digest, tag: tag.as_ref(), event: &message.event_id };
                Ok((self.desired_state(scope).await?, None))
            }
            PlanMessage::TagPush { registry, repository, tag } => {
                if !self.registries.contains(registry) || repository.host() != registry {
                    tracing::warn!(%registry, %repository, "a push event for a registry that is not configured; ignored");
                    return Ok((DesiredState::default(), None));
                }
                // The sender named a tag only (Docker Hub, Quay): what it points at now is what
                // was pushed, read with the planner's credentials.
                let reference = ferry_model::TagOrDigest::Tag(tag.clone());
                let digest = match self.registry.head_manifest(repository, &reference).await? {
                    Some(head) => head.digest,
                    None => {
                        return Err(StageError::permanent(format!(
                            "{repository}:{} was announced as pushed, but the registry has no such tag",
                            ferry_model::Shown(tag.as_str())
                        )));
                    }
                };
                tracing::info!(event = %message.event_id, %repository, tag = tag.as_str(), %digest, "the announced tag resolves");
                let scope = Scope::Push { repository, digest, tag: Some(tag), event: &message.event_id };
                Ok((self.desired_state(scope).await?, None))
            }
            PlanMessage::ManifestChange { repository, base, head } => {
                let source = self.source.as_ref().ok_or_else(|| {
                    StageError::permanent("a manifest change arrived, but no manifest source is configured")
                })?;
                let change = source.change(base, head).await?;
                let origin = ManifestOrigin {
                    repository: Some(repository.clone()),
                    commit: Some(head.clone()),
                    path: None,
                };
                let (before, after) =
                    ferry_desired::resolve_change(&self.registry, &self.settings.policy, change).await?;
                Ok((diff(&before, &after), Some(origin)))
            }
            PlanMessage::Reconcile { .. } => Ok((self.desired_state(Scope::Everything).await?, None)),
        }
    }

    /// Desired state for `scope`, through the one function every entry point uses.
    pub async fn desired_state(&self, scope: Scope<'_>) -> Result<DesiredState, StageError> {
        Ok(ferry_desired::desired_state(self.source.as_ref(), &self.settings, &self.registry, scope).await?)
    }

    /// The messages that finish every promotion of `plan` that stopped part way.
    async fn reconcile(
        &self,
        plan: &Plan,
        facts: &ferry_plan::Facts,
        message: &Envelope<PlanMessage>,
    ) -> Result<Vec<Outgoing>, StageError> {
        // The scheduled safety net reads by listing: the artifact tags it lists count as the
        // signatures and attestations (`ferry reconcile --deep` reads children and referrers).
        let survey = reconcile::Survey {
            concurrency: GatherOptions::default().concurrency,
            deep: false,
            formats: self.formats,
        };
        let holdings = reconcile::Holdings::gather(&self.registry, plan, facts, survey).await;
        let origin = ManifestOrigin { repository: self.repository_name.clone(), commit: None, path: None };
        let (_, repair) = reconcile::reconcile(plan, &holdings, Some(origin));
        tracing::info!(
            event = %message.event_id,
            verify = repair.verify.len(),
            sign = repair.sign.len(),
            attest = repair.attest.len(),
            replicate = repair.replicate.len(),
            "reconciled"
        );
        let mut out = Vec::with_capacity(repair.len());
        for m in repair.verify {
            out.push(Outgoing::message(m, message)?);
        }
        for m in repair.sign {
            out.push(Outgoing::message(m, message)?);
        }
        for m in repair.attest {
            out.push(Outgoing::message(m, message)?);
        }
        for m in repair.replicate {
            out.push(Outgoing::message(m, message)?);
        }
        Ok(out)
    }
}

impl<S: ManifestSource> Stage for Planner<S> {
    type Message = PlanMessage;

    async fn handle(&self, message: Envelope<PlanMessage>) -> Result<Vec<Outgoing>, StageError> {
        let (desired, origin) = self.desired(&message).await?;
        // Tolerated input is reported, never silent: each invalid entry left out, each warning.
        for notice in &desired.notices {
            tracing::warn!(event = %message.event_id, kind = ?notice.kind, %notice, "manifest notice");
        }
        if desired.entries.is_empty() {
            match &message.body {
                // cosign's `.sig`/`.att`/`.sbom` and the referrers tag index: pushed beside an
                // image, and carried with it (from trusted sources), never promoted as images.
                PlanMessage::RegistryPush { repository, tag: Some(tag), .. }
                | PlanMessage::TagPush { repository, tag, .. }
                    if tag.is_artifact_tag() =>
                {
                    tracing::debug!(
                        event = %message.event_id,
                        %repository,
                        tag = tag.as_str(),
                        "a push of an artifact tag (signature, attestation, SBOM or referrers index); it travels with its image"
                    )
                }
                PlanMessage::RegistryPush { repository, tag: Some(tag), .. }
                | PlanMessage::TagPush { repository, tag, .. } => tracing::warn!(
                    event = %message.event_id,
                    %repository,
                    tag = tag.as_str(),
                    "a push that no mirror rule and no manifest entry matches; ignored"
                ),
                // A push by digest alone is usually an index's child, pushed before its index;
                // it travels with the index. Not a mistake, so not a warning.
                PlanMessage::RegistryPush { repository, tag: None, .. } => tracing::debug!(
                    event = %message.event_id,
                    %repository,
                    "a push by digest alone that no manifest entry names; ignored (mirror rules act on tagged pushes)"
                ),
                _ => tracing::info!(event = %message.event_id, "nothing to promote"),
            }
            return Ok(Vec::new());
        }
        let facts = gather(&self.registry, &desired, GatherOptions::default()).await;
        if let Some(failure) = facts.failure() {
            // A lookup failed: plan again later (as the registry asked) rather than decide on
            // half the facts.
            return Err(failure.into());
        }
        let plan = plan(&desired, &facts);
        if let PlanMessage::Reconcile { .. } = message.body {
            return self.reconcile(&plan, &facts, &message).await;
        }
        let grouped = ferry_promotion::promotions(
            &plan,
            origin.map(|mut o| {
                o.repository = o.repository.or(self.repository_name.clone());
                o
            }),
        );
        let mut out = Vec::new();
        for verify in grouped.verify {
            out.push(Outgoing::message(verify, &message)?);
        }
        for (verify, reason) in grouped.missing {
            let original =
                Envelope::new(verify, &message.event_id, ferry_runtime::telemetry::current_traceparent());
            out.push(Outgoing::dead_letter(
                DeadLetterQueue::VerificationFailed,
                Queue::Verify,
                ErrorClass::Verification,
                &reason,
                &original,
            )?);
        }
        tracing::debug!(event = %message.event_id, edges = plan.edges.len(), messages = out.len(), "planned");
        Ok(out)
    }
}
