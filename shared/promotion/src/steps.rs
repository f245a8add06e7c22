//! Each step of a promotion: a typed message and its ports in, what happened and the next
//! messages out. The pipeline's stages and the in-process driver ([`crate::chain`]) call these
//! and nothing else, so a promotion means the same whichever runs it.
//!
//! The order, for one (source, digest):
//!
//! ```text
//! verify ──pass──> copy to the primary ──> sign ──> attest ──> copy to each mirror ──> replicate
//!        └─(no primary: refused)──> copy to each mirror (nothing is signed, nothing replicated)
//! ```
//!
//! Mirrors are copied after the primary is signed and attested, and a mirror receives the
//! primary's artifacts only after its own copy succeeded: an image never sits at a mirror that
//! could already have its signature and does not.

use ferry_copy::{Copier, CopyError, Job, JobOutcome};
use ferry_messages::{
    AttestMessage, CheckName, CheckResult, CheckSummary, CopyMessage, DestinationTags, ListedReferrer,
    MAX_CARRIED_REFERRERS, Next, Promotion, ReplicateMessage, SignMessage, VerifyMessage,
};
use ferry_model::{Digest, Repository, TagOrDigest};
use ferry_registry::referrers::listing_rules_out;
use ferry_registry::{Registry, RegistryWrite};
use ferry_trust::TrustError;
use ferry_trust::artifacts::Appended;
use ferry_trust::attest::{self, ManifestOrigin, PromotedTo};
use ferry_trust::cosign::ArtifactKind;
use ferry_trust::keys::SigningKey;
use ferry_trust::policy::TrustPolicy;
use ferry_trust::replicate::{Replicated, replicate as replicate_artifact};
use ferry_trust::sign::{self, Signed};
use ferry_trust::verify::{self, Check, Report, Status};

use crate::error::PromotionError;

/// What a step did, in the one shape every step has: what it did (kept even when the step
/// failed part-way, for reports), the messages that follow when it finished, and why it
/// failed. A stage publishes `next` or dead-letters `failure` (classified once, `Retry-After`
/// kept); the in-process driver follows `next` or records `failure`.
#[derive(Clone, Debug)]
pub struct Step<T> {
    pub done: T,
    pub next: Vec<Next>,
    pub failure: Option<PromotionError>,
}

impl<T> Step<T> {
    fn finished(done: T, next: Vec<Next>) -> Self {
        Step { done, next, failure: None }
    }

    fn failed(done: T, failure: PromotionError) -> Self {
        Step { done, next: Vec::new(), failure: Some(failure) }
    }
}

/// What the verify step decided.
#[derive(Clone, Debug)]
pub struct Verified {
    pub report: Report,
    /// Destinations the plan refused, each as the copy message a replay would run (once the
    /// conflict is resolved), with the reason.
    pub refused: Vec<(CopyMessage, String)>,
}

/// Why the image failed, when a check about the image itself failed.
fn verification_failure(report: &Report) -> Option<PromotionError> {
    if report.image_passed() {
        return None;
    }
    let failures: Vec<String> = report
        .failures()
        .filter(|c| c.name != CheckName::Destination)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect();
    Some(PromotionError::Verification {
        source_repository: report.source.clone(),
        digest: report.digest,
        failures: failures.join("; "),
    })
}

/// Verifies the source image under the source's policy. Next: the primary's copy, or every
/// mirror's when the plan refused the primary.
pub async fn verify<R: Registry>(
    registry: &R,
    policy: &TrustPolicy,
    message: &VerifyMessage,
) -> Step<Verified> {
    let promotion = &message.promotion;
    let request = verify::Request {
        source: promotion.source.clone(),
        digest: promotion.digest,
        source_tag: promotion.source_tag.clone(),
        destination_problems: message.refused.iter().map(|r| r.reason.clone()).collect(),
    };
    let policy = policy.for_source(&promotion.source);
    let facts = verify::gather(registry, &request, policy).await;
    let report = verify::decide(&request, &facts, policy);
    if let Some(failure) = verification_failure(&report) {
        return Step::failed(Verified { report, refused: Vec::new() }, failure);
    }
    let verification = summary(&report);
    let copy = |destination: &DestinationTags| CopyMessage {
        promotion: promotion.clone(),
        destination: destination.clone(),
        verification: verification.clone(),
    };
    let copies = match promotion.primary() {
        Some(primary) => vec![copy(primary)],
        None => promotion.destinations.iter().map(copy).collect(),
    };
    // A refused destination's copy carries the whole promotion (every destination, refused ones
    // included): replayed once the conflict is resolved, it goes on to sign, attest and
    // replicate as the promotion would have.
    let whole = message.refused.iter().fold(promotion.clone(), |p, r| p.including(&r.destination));
    let refused = message
        .refused
        .iter()
        .map(|r| {
            let copy = CopyMessage {
                promotion: whole.clone(),
                destination: r.destination.clone(),
                verification: verification.clone(),
            };
            (copy, r.reason.clone())
        })
        .collect();
    Step::finished(Verified { report, refused }, copies.into_iter().map(Next::Copy).collect())
}

/// A copy's first failure: of the manifest, or of a tag.
fn copy_failure(outcome: &JobOutcome) -> Option<CopyError> {
    match &outcome.manifest {
        Err(error) => Some(error.clone()),
        Ok(_) => outcome.tags.iter().find_map(|t| t.as_ref().err().cloned()),
    }
}

/// Copies the image to the message's destination and writes its tags there. `redelivered`: an
/// earlier attempt may have copied it, so the plan's "known absent" no longer holds. Next:
/// after the primary, sign; after a mirror, replicate the primary's artifacts to it.
pub async fn copy<R: RegistryWrite>(
    copier: &Copier<R>,
    message: &CopyMessage,
    redelivered: bool,
) -> Step<JobOutcome> {
    let destination = &message.destination;
    // A record written before refused destinations carried the whole promotion lacks this one.
    let promotion = &message.promotion.including(destination);
    let job = Job {
        source: promotion.source.clone(),
        digest: promotion.digest,
        destination: destination.repository.clone(),
        tags: destination.tags.clone(),
        known_absent: destination.known_absent && !redelivered,
    };
    let outcome = copier.copy(&job).await;
    if let Some(error) = copy_failure(&outcome) {
        return Step::failed(outcome, error.into());
    }
    let mut next = Vec::new();
    if destination.primary {
        next.push(Next::Sign(SignMessage {
            promotion: promotion.clone(),
            verification: message.verification.clone(),
        }));
    } else if let Some(primary) = promotion.primary() {
        next.push(Next::Replicate(ReplicateMessage {
            primary: primary.repository.clone(),
            mirror: destination.repository.clone(),
            digest: promotion.digest,
            // The image was written or found there, and its tags read back, just now.
            copied: true,
        }));
    }
    Step::finished(outcome, next)
}

/// What the sign step did (each part `None` when it did not run).
#[derive(Clone, Debug, Default)]
pub struct Signing {
    /// The source's own artifacts copied to the primary, for the digest and each child
    /// (trusted sources only).
    pub from_source: Option<Replication>,
    /// `None` without a signing key.
    pub signed: Option<Signed>,
}

fn primary_of(promotion: &Promotion) -> Result<&DestinationTags, PromotionError> {
    promotion.primary().ok_or_else(|| {
        PromotionError::Malformed(format!(
            "{}@{}: the promotion has no primary destination",
            promotion.source, promotion.digest
        ))
    })
}

/// At the primary: carries the trusted source's own artifacts (never an untrusted source's),
/// then signs the digest and every child of an index with `key`. Next: attest.
pub async fn sign<R: RegistryWrite>(
    copier: &Copier<R>,
    key: Option<&SigningKey>,
    formats: ferry_trust::Formats,
    policy: &TrustPolicy,
    message: &SignMessage,
) -> Step<Signing> {
    let promotion = &message.promotion;
    let mut done = Signing::default();
    let primary = match primary_of(promotion) {
        Ok(primary) => &primary.repository,
        Err(failure) => return Step::failed(done, failure),
    };
    let targets = match sign::targets(copier.registry(), primary, promotion.digest).await {
        Ok(targets) => targets,
        Err(error) => return Step::failed(done, error.into()),
    };
    if promotion.source_trusted {
        let filter = &policy.for_source(&promotion.source).referrer_types;
        match carry(copier, &promotion.source, primary, &targets, filter, Listing::Use, false).await {
            Ok(carried) => done.from_source = Some(carried),
            Err(error) => return Step::failed(done, error.into()),
        }
    }
    if let Some(key) = key {
        match sign::sign_targets(copier.registry(), key, formats, primary, &targets).await {
            Ok(signed) => done.signed = Some(signed),
            Err(error) => return Step::failed(done, error.into()),
        }
    }
    // What the signer read and wrote of the digest's referrers, carried so that the attester
    // need not look them up again before it writes.
    let primary_referrers = done
        .signed
        .as_ref()
        .and_then(|s| s.listing.as_ref())
        .filter(|listing| listing.len() <= MAX_CARRIED_REFERRERS)
        .map(|listing| listing.iter().map(carried).collect());
    let attest = AttestMessage {
        promotion: promotion.clone(),
        verification: message.verification.clone(),
        primary_referrers,
    };
    Step::finished(done, vec![Next::Attest(attest)])
}

/// Writes the promotion attestation at the primary. It names every destination of the
/// promotion, primary first: the primary holds the image now, and the mirrors are copied next.
/// What it did: `None` without a signing key. Next: each mirror's copy.
///
/// `redelivered`: an earlier attempt may have written part of it, so the signer's listing
/// carried in the message is not used.
pub async fn attest<R: RegistryWrite>(
    registry: &R,
    key: Option<&SigningKey>,
    formats: ferry_trust::Formats,
    message: &AttestMessage,
    trigger_event_id: Option<&str>,
    redelivered: bool,
) -> Step<Option<Appended>> {
    let p = &message.promotion;
    let primary = match primary_of(p) {
        Ok(primary) => primary,
        Err(failure) => return Step::failed(None, failure),
    };
    let mut done = None;
    if let Some(key) = key {
        let mut destinations =
            vec![PromotedTo { repository: primary.repository.clone(), tags: primary.tags.clone() }];
        destinations.extend(
            p.mirrors().map(|m| PromotedTo { repository: m.repository.clone(), tags: m.tags.clone() }),
        );
        let promotion = attest::Promotion {
            source: p.source.clone(),
            digest: p.digest,
            destinations,
            origin: p.origin.as_ref().map(|o| ManifestOrigin {
                repository: o.repository.clone(),
                commit: o.commit.clone(),
                path: o.path.clone(),
            }),
            trigger_event_id: trigger_event_id.map(str::to_owned),
            verification: Some(report(p, &message.verification)),
            timestamp: attest::now_rfc3339(),
        };
        let listed = match redelivered {
            true => None,
            false => message.primary_referrers.as_ref().map(|l| l.iter().map(listed).collect()),
        };
        match attest::attest(registry, key, formats, &promotion, listed).await {
            Ok(appended) => done = Some(appended),
            Err(error) => return Step::failed(None, error.into()),
        }
    }
    let next = p
        .mirrors()
        .map(|mirror| {
            Next::Copy(CopyMessage {
                promotion: p.clone(),
                destination: mirror.clone(),
                verification: message.verification.clone(),
            })
        })
        .collect();
    Step::finished(done, next)
}

/// What carrying artifacts from one repository to another did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replication {
    /// The cosign tags (`.sig`, `.att`, `.sbom`), per digest (the image, then each child) and
    /// kind.
    pub tags: Vec<(Digest, ArtifactKind, Replicated)>,
    /// The OCI 1.1 referrers, per subject digest (the image, then each child) and referrer.
    pub referrers: Vec<(Digest, Digest, Replicated)>,
}

impl Replication {
    /// The listed referrers left behind, each with its subject, digest and why.
    pub fn skipped(&self) -> Vec<(Digest, Digest, ferry_trust::replicate::Skip)> {
        self.referrers
            .iter()
            .filter_map(|(subject, referrer, r)| match r {
                Replicated::Skipped(why) => Some((*subject, *referrer, *why)),
                _ => None,
            })
            .collect()
    }

    /// The skipped referrers in words, for an outcome line (empty when none was skipped).
    pub fn skipped_text(&self) -> String {
        self.skipped()
            .iter()
            .map(|(subject, referrer, why)| format!("{referrer} (listed for {subject}): {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether anything was written (or would be, in a dry run).
    pub fn wrote(&self) -> usize {
        let writes = |r: &Replicated| {
            !matches!(r, Replicated::NothingToCopy | Replicated::AlreadyThere | Replicated::Skipped(_))
        };
        self.tags.iter().filter(|(_, _, r)| writes(r)).count()
            + self.referrers.iter().filter(|(_, _, r)| writes(r)).count()
    }
}

/// Whether [`carry`] lists `from`'s tags once instead of looking up each artifact tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    /// For a source, whose artifacts were written (if at all) before the promotion began.
    Use,
    /// For the primary, whose artifacts this promotion has just written: a registry whose tag
    /// listing lags its writes must not make a mirror miss them.
    LookUpEach,
}

/// Carries every cosign artifact tag and every referrer of each of `targets` (the image and its
/// children) from `from` to `to`.
async fn carry<R: RegistryWrite>(
    copier: &Copier<R>,
    from: &Repository,
    to: &Repository,
    targets: &[Digest],
    filter: &ferry_trust::policy::ReferrerFilter,
    listing: Listing,
    dry_run: bool,
) -> Result<Replication, TrustError> {
    let mut done = Replication::default();
    let listed = match listing {
        Listing::Use => listed_tags(copier.registry(), from).await,
        Listing::LookUpEach => None,
    };
    let absent = |tag: &ferry_model::Tag| listed.as_ref().is_some_and(|l| !l.contains(tag));
    for target in targets {
        // Each artifact tag and the referrers are separate documents at `to`: carried side by
        // side (each kind still reads, merges and writes its own tag as one sequence).
        let kinds =
            futures_util::future::try_join_all(ArtifactKind::ALL.into_iter().map(|kind| async move {
                if absent(&kind.tag_for(target)) {
                    return Ok((*target, kind, Replicated::NothingToCopy));
                }
                let replicated = replicate_artifact(copier, from, to, target, kind, dry_run).await?;
                Ok::<_, TrustError>((*target, kind, replicated))
            }));
        let referrers = async {
            if listed.as_ref().is_some_and(|l| {
                listing_rules_out(copier.registry().referrers_mode(from.host()), target, |tag| {
                    l.contains(tag)
                })
            }) {
                return Ok(Vec::new());
            }
            ferry_trust::referrers::carry(copier.registry(), from, to, target, filter, dry_run).await
        };
        let (tags, referrers) = futures_util::future::try_join(kinds, referrers).await?;
        done.tags.extend(tags);
        done.referrers
            .extend(referrers.into_iter().map(|(referrer, replicated)| (*target, referrer, replicated)));
    }
    Ok(done)
}

/// Every tag of `from`, from one listing, so that the artifact tags of each digest (`.sig`,
/// `.att`, `.sbom`, and the referrers tag index) need no lookup of their own, most of which
/// would answer 404. `None` when the listing fails (a registry may refuse it): then each is
/// looked up.
async fn listed_tags<R: Registry>(
    registry: &R,
    from: &Repository,
) -> Option<std::collections::BTreeSet<ferry_model::Tag>> {
    match registry.list_tags(from).await {
        Ok(tags) => Some(tags.into_iter().collect()),
        Err(e) => {
            tracing::debug!(repository = %from, error = %e, "cannot list tags; looking up each artifact tag");
            None
        }
    }
}

/// Copies the primary's artifacts of the digest and of every child of an index to the mirror,
/// replacing an artifact tag only with a superset of its layers. The mirror must hold the image:
/// it is looked up unless the copy step that sent the message has just written it there (and
/// the message is not a redelivery). Nothing follows: the promotion is complete at this mirror.
pub async fn replicate<R: RegistryWrite>(
    copier: &Copier<R>,
    message: &ReplicateMessage,
    redelivered: bool,
) -> Step<Replication> {
    let registry = copier.registry();
    let held = match message.copied && !redelivered {
        true => Ok(true),
        false => registry
            .head_manifest(&message.mirror, &TagOrDigest::Digest(message.digest))
            .await
            .map(|head| head.is_some()),
    };
    match held {
        Ok(true) => {}
        Ok(false) => {
            let failure =
                PromotionError::NotAtMirror { mirror: message.mirror.clone(), digest: message.digest };
            return Step::failed(Replication::default(), failure);
        }
        Err(error) => return Step::failed(Replication::default(), error.into()),
    }
    match replicate_artifacts(copier, &message.primary, &message.mirror, message.digest, false).await {
        Ok(done) => Step::finished(done, Vec::new()),
        Err(failure) => Step::failed(Replication::default(), failure),
    }
}

/// Replicates every artifact kind and every referrer of `digest` and of each child (as `primary` holds them) from
/// `primary` to `mirror`. With `dry_run`, says what it would do and writes nothing.
pub async fn replicate_artifacts<R: RegistryWrite>(
    copier: &Copier<R>,
    primary: &Repository,
    mirror: &Repository,
    digest: Digest,
    dry_run: bool,
) -> Result<Replication, PromotionError> {
    let targets = sign::targets(copier.registry(), primary, digest).await?;
    // From the primary, everything it holds: the source's filter applied when it came in.
    Ok(carry(copier, primary, mirror, &targets, &Default::default(), Listing::LookUpEach, dry_run).await?)
}

/// A listed referrer as a message carries it.
fn carried(r: &ferry_registry::referrers::Referrer) -> ListedReferrer {
    ListedReferrer {
        media_type: r.media_type.clone(),
        digest: r.digest,
        size: r.size,
        artifact_type: r.artifact_type.clone(),
        annotations: r.annotations.clone(),
    }
}

/// A carried referrer back in the registry's terms.
fn listed(r: &ListedReferrer) -> ferry_registry::referrers::Referrer {
    ferry_registry::referrers::Referrer {
        media_type: r.media_type.clone(),
        digest: r.digest,
        size: r.size,
        artifact_type: r.artifact_type.clone(),
        annotations: r.annotations.clone(),
    }
}

/// The verifier's report as it travels with the promotion: every check, by its name (a check
/// is never dropped for its name, so every one reaches the attestation and the VSA).
pub fn summary(report: &Report) -> Vec<CheckSummary> {
    report
        .checks
        .iter()
        .map(|c| {
            let result = match c.status {
                Status::Pass => CheckResult::Pass,
                Status::Skip => CheckResult::Skip,
                Status::Warn => CheckResult::Warn,
                Status::Fail => CheckResult::Fail,
            };
            CheckSummary { check: c.name.clone(), result, reason: c.reason.clone() }
        })
        .collect()
}

/// The report a message carries, back in the verifier's terms.
pub fn report(promotion: &Promotion, verification: &[CheckSummary]) -> Report {
    let checks = verification
        .iter()
        .map(|c| Check {
            name: c.check.clone(),
            status: match c.result {
                CheckResult::Pass => Status::Pass,
                CheckResult::Skip => Status::Skip,
                CheckResult::Warn => Status::Warn,
                CheckResult::Fail => Status::Fail,
            },
            reason: c.reason.clone(),
        })
        .collect();
    Report { source: promotion.source.clone(), digest: promotion.digest, checks }
}
