//! The planner function: `plan` → `verify` (one message per promoted digest).
//!
//! A registry push is matched against the mirror rules and the manifests' own entries; a
//! manifest change is planned diff-only between its base and head commits, reading only the
//! files the change touched. Either way the registries are asked what the plan needs, then
//! [`promotions`] groups the plan into messages. A large change becomes many small messages.

pub mod reconcile;
pub mod source;

use std::collections::BTreeMap;

use ferry_manifests::rules::{MirrorRule, desired_for_push};
use ferry_messages::{
    DeadLetterQueue, DestinationTags, Envelope, ManifestOrigin, PlanMessage, Promotion, Queue, Refused,
    VerifyMessage,
};
use ferry_model::{DesiredState, Digest, Host, Repository};
use ferry_plan::{Action, GatherOptions, Plan, diff, gather, plan};
use ferry_registry::{ErrorClass, OciRegistry};
use ferry_runtime::function::{Context, registry};
use ferry_runtime::{Outgoing, Stage, StageError};

use crate::source::{AnySource, GitCheckout, GitHubSource, HttpGitHub, ManifestSource, SourceError};

#[derive(Debug)]
pub struct Planner<S> {
    pub registry: OciRegistry,
    pub source: Option<S>,
    pub rules: Vec<MirrorRule>,
    /// Events naming other registry hosts are ignored (the SSRF guard, again).
    pub registries: Vec<Host>,
    /// Where the manifest repository lives, for attestations.
    pub repository_name: Option<String>,
}

pub async fn build(context: Context) -> anyhow::Result<Planner<AnySource>> {
    let pipeline = &context.config.pipeline;
    let policy = context.config.policy.clone();
    let source = match &pipeline.manifests {
        None => None,
        Some(m) => Some(match &m.source {
            ferry_config::ManifestSource::Git(top) => {
                AnySource::Git(GitCheckout::new(top.clone(), m.inputs.clone(), policy))
            }
            ferry_config::ManifestSource::GitHub { repository, api } => AnySource::GitHub(GitHubSource::new(
                HttpGitHub::new(api, repository, context.env.github_token.clone())?,
                m.inputs.clone(),
                policy,
            )),
        }),
    };
    Ok(Planner {
        registry: registry(&context)?,
        source,
        rules: pipeline.mirror_rules.clone(),
        registries: pipeline.registries.clone(),
        repository_name: pipeline.github_repository.clone(),
    })
}

fn source_error(error: SourceError) -> StageError {
    if error.is_transient() {
        StageError::transient(error.to_string())
    } else {
        StageError::permanent(error.to_string())
    }
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
                let manifests = match &self.source {
                    Some(source) => source.current().await.map_err(source_error)?,
                    None => DesiredState::default(),
                };
                Ok((
                    desired_for_push(
                        &self.rules,
                        &manifests,
                        repository,
                        digest,
                        tag.as_ref(),
                        &message.event_id,
                    ),
                    None,
                ))
            }
            PlanMessage::ManifestChange { repository, base, head } => {
                let source = self.source.as_ref().ok_or_else(|| {
                    StageError::permanent("a manifest change arrived, but no manifest source is configured")
                })?;
                let change = source.change(base, head).await.map_err(source_error)?;
                let origin = ManifestOrigin {
                    repository: Some(repository.clone()),
                    commit: Some(head.clone()),
                    path: None,
                };
                Ok((diff(&change.base, &change.head), Some(origin)))
            }
            PlanMessage::Reconcile { .. } => {
                let source = self.source.as_ref().ok_or_else(|| {
                    StageError::permanent("a reconcile arrived, but no manifest source is configured")
                })?;
                Ok((source.current().await.map_err(source_error)?, None))
            }
        }
    }

    /// The messages that finish every promotion of `plan` that stopped part way.
    async fn reconcile(
        &self,
        plan: &Plan,
        message: &Envelope<PlanMessage>,
    ) -> Result<Vec<Outgoing>, StageError> {
        let holdings =
            reconcile::Holdings::gather(&self.registry, plan, GatherOptions::default().concurrency).await;
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
            out.push(Outgoing::message(Queue::Verify, m, message)?);
        }
        for m in repair.sign {
            out.push(Outgoing::message(Queue::Sign, m, message)?);
        }
        for m in repair.attest {
            out.push(Outgoing::message(Queue::Attest, m, message)?);
        }
        for m in repair.replicate {
            out.push(Outgoing::message(Queue::Replicate, m, message)?);
        }
        Ok(out)
    }
}

impl<S: ManifestSource> Stage for Planner<S> {
    type Message = PlanMessage;
    const QUEUE: Queue = Queue::Plan;

    async fn handle(&self, message: Envelope<PlanMessage>) -> Result<Vec<Outgoing>, StageError> {
        let (desired, origin) = self.desired(&message).await?;
        if desired.entries.is_empty() {
            tracing::info!(event = %message.event_id, "nothing to promote");
            return Ok(Vec::new());
        }
        let facts = gather(&self.registry, &desired, GatherOptions::default()).await;
        if let Some((class, reason)) = facts.failure() {
            // A lookup failed: plan again later rather than decide on half the facts.
            return Err(StageError::new(class, format!("a registry lookup failed: {reason}")));
        }
        let plan = plan(&desired, &facts);
        if let PlanMessage::Reconcile { .. } = message.body {
            return self.reconcile(&plan, &message).await;
        }
        let grouped = promotions(
            &plan,
            origin.map(|mut o| {
                o.repository = o.repository.or(self.repository_name.clone());
                o
            }),
        );
        let mut out = Vec::new();
        for verify in grouped.verify {
            out.push(Outgoing::message(Queue::Verify, verify, &message)?);
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
        tracing::info!(event = %message.event_id, edges = plan.edges.len(), messages = out.len(), "planned");
        Ok(out)
    }
}

/// The messages a plan turns into.
#[derive(Debug, Default)]
pub struct Promotions {
    /// One per (source, digest) with work: its destinations (present ones too, so that the
    /// primary is always known) and the destinations the plan refused.
    pub verify: Vec<VerifyMessage>,
    /// (source, digest) groups whose source lacks the image: dead-lettered with the reason, as
    /// the verify message a replay should run once the image exists.
    pub missing: Vec<(VerifyMessage, String)>,
}

/// Everything the plan says about one (source, digest).
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Destinations that hold it or will (copy, add-tag, present), tags merged.
    pub(crate) destinations: Vec<DestinationTags>,
    pub(crate) refused: Vec<Refused>,
    pub(crate) missing: Vec<String>,
    /// Some destination needs a copy or a tag.
    pub(crate) work: bool,
    /// The destinations that need a copy or a tag.
    pub(crate) pending: std::collections::BTreeSet<Repository>,
    pub(crate) source_tag: Option<ferry_model::Tag>,
    pub(crate) trusted: bool,
    pub(crate) path: Option<String>,
}

impl Group {
    pub(crate) fn promotion(
        &self,
        source: &Repository,
        digest: Digest,
        destinations: Vec<DestinationTags>,
        origin: Option<&ManifestOrigin>,
    ) -> Promotion {
        Promotion {
            source: source.clone(),
            digest,
            source_tag: self.source_tag.clone(),
            source_trusted: self.trusted,
            destinations,
            origin: origin.cloned().map(|mut o| {
                o.path = self.path.clone();
                o
            }),
        }
    }
}

/// A plan grouped by (source, digest). Pure.
pub(crate) fn groups(plan: &Plan) -> BTreeMap<(Repository, Digest), Group> {
    let mut groups: BTreeMap<(Repository, Digest), Group> = BTreeMap::new();
    for edge in &plan.edges {
        let Some(digest) = edge.digest else { continue };
        let group = groups.entry((edge.source.clone(), digest)).or_default();
        group.source_tag = group.source_tag.take().or(edge.source_tag.clone());
        group.trusted |= edge.source_trusted;
        group.path.get_or_insert_with(|| edge.origin.source.to_string());
        let destination = DestinationTags {
            repository: edge.destination.clone(),
            tags: edge.tag.iter().cloned().collect(),
            primary: edge.primary,
            known_absent: edge.action == Action::Copy,
        };
        match &edge.action {
            Action::Copy | Action::AddTag | Action::Present => {
                if edge.action.is_work() {
                    group.work = true;
                    group.pending.insert(edge.destination.clone());
                }
                match group.destinations.iter_mut().find(|d| d.repository == destination.repository) {
                    Some(existing) => {
                        existing.tags.extend(destination.tags);
                        existing.primary |= destination.primary;
                        existing.known_absent &= destination.known_absent;
                    }
                    None => group.destinations.push(destination),
                }
            }
            Action::MissingSource => group.missing.push(format!("{edge}: {}", edge.action)),
            Action::Conflict { .. }
            | Action::Prerelease
            | Action::Overlap { .. }
            | Action::Unchecked { .. } => {
                group.refused.push(Refused { destination, reason: format!("{edge}: {}", edge.action) });
            }
        }
    }
    groups
}

/// Groups a plan by (source, digest) into the messages it turns into. Pure.
pub fn promotions(plan: &Plan, origin: Option<ManifestOrigin>) -> Promotions {
    let mut out = Promotions::default();
    for ((source, digest), group) in groups(plan) {
        if !group.missing.is_empty() && !group.work {
            let verify = VerifyMessage {
                promotion: group.promotion(&source, digest, Vec::new(), origin.as_ref()),
                refused: Vec::new(),
            };
            out.missing.push((verify, group.missing.join("; ")));
            continue;
        }
        if group.work || !group.refused.is_empty() {
            let promotion = group.promotion(&source, digest, group.destinations.clone(), origin.as_ref());
            out.verify.push(VerifyMessage { promotion, refused: group.refused });
        }
    }
    out
}
