//! The whole promotion in one process: verify → copy → sign → attest → replicate.
//!
//! Per promoted digest (grouped by source): the verifier decides first; an image that fails a
//! check about itself is not copied anywhere. Then the copier runs the digest's edges. If the
//! primary destination has the image, Ferry copies the source's own `.sig`/`.att`/`.sbom` there
//! when the source is trusted (never from an untrusted one such as Docker Hub), signs the digest
//! and each index child, and writes one promotion attestation. Last, the primary's artifacts go
//! to each mirror. The event pipeline runs the same steps as separate stages.

use std::collections::BTreeMap;

use ferry_copy::{Copier, EdgeOutcome, PromotionReport, promote};
use ferry_model::{Digest, Repository, Tag};
use ferry_plan::{Action, Plan, PlannedEdge};
use ferry_registry::RegistryWrite;

use crate::artifacts::Appended;
use crate::attest::{ManifestOrigin, PromotedTo, Promotion, attest, now_rfc3339};
use crate::cosign::ArtifactKind;
use crate::error::TrustError;
use crate::keys::SigningKey;
use crate::policy::TrustPolicy;
use crate::replicate::{Replicated, replicate, replicate_all};
use crate::sign::{Signed, sign};
use crate::verify::{self, Report};

/// What the trust steps need besides the plan.
#[derive(Debug, Default)]
pub struct TrustOptions {
    pub policy: TrustPolicy,
    /// Without a key nothing is signed or attested; that is reported, not hidden.
    pub key: Option<SigningKey>,
    pub origin: Option<ManifestOrigin>,
    pub trigger_event_id: Option<String>,
}

/// What happened to one promoted digest after copying.
#[derive(Debug)]
pub struct DigestOutcome {
    pub source: Repository,
    pub digest: Digest,
    pub report: Report,
    pub primary: Option<Repository>,
    /// The source's own artifacts copied to the primary (trusted sources only).
    pub from_source: Option<Result<Vec<(ArtifactKind, Replicated)>, TrustError>>,
    pub signed: Option<Result<Signed, TrustError>>,
    pub attested: Option<Result<Appended, TrustError>>,
    pub replicated: Vec<(Repository, Result<Vec<(ArtifactKind, Replicated)>, TrustError>)>,
    /// Why the trust steps did not run, when they did not.
    pub skipped: Option<String>,
}

impl DigestOutcome {
    /// Whether any trust step failed.
    pub fn failed(&self) -> bool {
        !self.report.image_passed()
            || matches!(self.from_source, Some(Err(_)))
            || matches!(self.signed, Some(Err(_)))
            || matches!(self.attested, Some(Err(_)))
            || self.replicated.iter().any(|(_, r)| r.is_err())
    }
}

#[derive(Debug, Default)]
pub struct ChainReport {
    /// One outcome per plan edge.
    pub edges: PromotionReport,
    pub digests: Vec<DigestOutcome>,
}

/// The edges of one (source, digest).
struct Group<'p> {
    source: Repository,
    digest: Digest,
    source_tag: Option<Tag>,
    trusted: bool,
    edges: Vec<(usize, &'p PlannedEdge)>,
}

fn groups(plan: &Plan) -> Vec<Group<'_>> {
    let mut by_key: BTreeMap<(Repository, Digest), usize> = BTreeMap::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for (i, edge) in plan.edges.iter().enumerate() {
        let Some(digest) = edge.digest else { continue };
        let slot = *by_key.entry((edge.source.clone(), digest)).or_insert_with(|| {
            groups.push(Group {
                source: edge.source.clone(),
                digest,
                source_tag: edge.source_tag.clone(),
                trusted: edge.source_trusted,
                edges: Vec::new(),
            });
            groups.len() - 1
        });
        groups[slot].edges.push((i, edge));
    }
    groups
}

/// Runs the promotion of every edge of `plan` that needs work, with the trust steps.
pub async fn run<R: RegistryWrite>(copier: &Copier<R>, plan: &Plan, options: &TrustOptions) -> ChainReport {
    let registry = copier.registry();
    let groups = groups(plan);
    // 1. Verify each digest that has work (or a destination problem to report).
    let mut reports = Vec::with_capacity(groups.len());
    let mut blocked = vec![false; plan.edges.len()];
    for group in &groups {
        let destination_problems: Vec<String> = group
            .edges
            .iter()
            .filter(|(_, e)| matches!(e.action, Action::Conflict { .. } | Action::Prerelease))
            .map(|(_, e)| format!("{}: {}", e, e.action))
            .collect();
        let request = verify::Request {
            source: group.source.clone(),
            digest: group.digest,
            source_tag: group.source_tag.clone(),
            destination_problems,
        };
        let policy = options.policy.for_source(&group.source);
        // Only images with work in this run are verified (and later signed): an image already
        // everywhere costs nothing here. `ferry reconcile` repairs the trust artifacts of
        // images promoted earlier.
        let has_work = group.edges.iter().any(|(_, e)| e.action.is_work());
        if !has_work {
            reports.push(None);
            continue;
        }
        let facts = verify::gather(registry, &request, policy).await;
        let report = verify::decide(&request, &facts, policy);
        if !report.image_passed() {
            tracing::warn!(source = %group.source, digest = %group.digest, "verification failed; not promoting");
            for (i, _) in &group.edges {
                blocked[*i] = true;
            }
        }
        reports.push(Some(report));
    }

    // 2. Copy everything that passed.
    let mut copy_plan = plan.clone();
    for (edge, blocked) in copy_plan.edges.iter_mut().zip(&blocked) {
        if *blocked && edge.action.is_work() {
            edge.action = Action::Unchecked { reason: "verification failed".into() };
        }
    }
    let mut edges = promote(copier, &copy_plan).await;
    for (i, blocked) in blocked.iter().enumerate() {
        if *blocked && plan.edges[i].action.is_work() {
            let failed: Vec<String> = reports
                .iter()
                .flatten()
                .find(|r| Some(r.digest) == plan.edges[i].digest && r.source == plan.edges[i].source)
                .map(|r| r.failures().map(|c| format!("{}: {}", c.name, c.reason)).collect())
                .unwrap_or_default();
            edges.outcomes[i] = EdgeOutcome::Failed(ferry_copy::CopyError::Manifest {
                repository: plan.edges[i].source.clone(),
                digest: plan.edges[i].digest.unwrap_or(Digest::of(b"")),
                reason: format!("verification failed: {}", failed.join("; ")),
            });
        }
    }

    // 3-6. Trust steps per digest whose primary destination has the image.
    let mut digests = Vec::with_capacity(groups.len());
    for (group, report) in groups.iter().zip(reports) {
        let Some(report) = report else { continue };
        digests.push(trust_steps(copier, group, report, &edges, options).await);
    }
    ChainReport { edges, digests }
}

async fn trust_steps<R: RegistryWrite>(
    copier: &Copier<R>,
    group: &Group<'_>,
    report: Report,
    edges: &PromotionReport,
    options: &TrustOptions,
) -> DigestOutcome {
    let mut outcome = DigestOutcome {
        source: group.source.clone(),
        digest: group.digest,
        report,
        primary: None,
        from_source: None,
        signed: None,
        attested: None,
        replicated: Vec::new(),
        skipped: None,
    };
    if !outcome.report.image_passed() {
        outcome.skipped = Some("verification failed".into());
        return outcome;
    }
    // Which destinations hold the image now, primary first.
    let holds = |i: usize| matches!(edges.outcomes[i], EdgeOutcome::Done(_) | EdgeOutcome::Present);
    let mut destinations: Vec<PromotedTo> = Vec::new();
    let mut primary_ok = false;
    for (i, edge) in &group.edges {
        if !holds(*i) {
            continue;
        }
        if edge.primary {
            primary_ok = true;
        }
        match destinations.iter_mut().find(|d| d.repository == edge.destination) {
            Some(d) => d.tags.extend(edge.tag.clone()),
            None => {
                let promoted = PromotedTo {
                    repository: edge.destination.clone(),
                    tags: edge.tag.iter().cloned().collect(),
                };
                if edge.primary {
                    destinations.insert(0, promoted);
                } else {
                    destinations.push(promoted);
                }
            }
        }
    }
    if !primary_ok {
        outcome.skipped = Some("the primary destination does not hold the image".into());
        return outcome;
    }
    let primary = destinations[0].repository.clone();
    outcome.primary = Some(primary.clone());
    let registry = copier.registry();

    if group.trusted {
        let mut copied = Vec::new();
        let mut result = Ok(());
        for kind in ArtifactKind::ALL {
            match replicate(copier, &group.source, &primary, &group.digest, kind, false).await {
                Ok(r) => copied.push((kind, r)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        outcome.from_source = Some(result.map(|()| copied));
    }
    match &options.key {
        None => outcome.skipped = Some("no signing key is configured; not signed or attested".into()),
        Some(key) => {
            outcome.signed = Some(sign(registry, key, &primary, group.digest).await);
            let promotion = Promotion {
                source: group.source.clone(),
                digest: group.digest,
                destinations: destinations.clone(),
                origin: options.origin.clone(),
                trigger_event_id: options.trigger_event_id.clone(),
                verification: Some(outcome.report.clone()),
                timestamp: now_rfc3339(),
            };
            outcome.attested = Some(attest(registry, key, &promotion).await);
        }
    }
    for mirror in destinations.iter().skip(1) {
        let result = replicate_all(copier, &primary, &mirror.repository, &group.digest, false).await;
        outcome.replicated.push((mirror.repository.clone(), result));
    }
    outcome
}
