//! The whole promotion in one process (`ferry promote --confirm`): the same steps as the event
//! pipeline, driven from an in-memory work list instead of queues.
//!
//! The plan is grouped into verify messages exactly as the planner groups it; each finished
//! step's next messages are run in turn, `max_images` steps at a time, the step furthest along
//! its promotion first (so copies overlap the next images' verification). Afterwards every plan
//! edge gets the outcome of the copy that served it, and every promoted digest the outcome of
//! each trust step. A step that fails stops that promotion where it failed, as a dead letter
//! would in the pipeline; the other promotions go on.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;

use ferry_copy::{Copier, CopyError, CopyStats, EdgeOutcome, JobOutcome, PromotionReport};
use ferry_messages::{
    AttestMessage, CopyMessage, ManifestOrigin, Next, ReplicateMessage, SignMessage, VerifyMessage,
};
use ferry_model::{Digest, Repository};
use ferry_plan::Plan;
use ferry_registry::RegistryWrite;
use ferry_trust::artifacts::Appended;
use ferry_trust::keys::SigningKey;
use ferry_trust::policy::TrustPolicy;
use ferry_trust::sign::Signed;
use ferry_trust::verify::Report;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::error::PromotionError;
use crate::group::promotions;
use crate::steps::{self, Replication, Signing, Step, Verified};

/// What the trust steps need besides the plan.
#[derive(Debug, Default)]
pub struct TrustOptions {
    pub policy: TrustPolicy,
    /// Without a key nothing is signed or attested; that is reported, not hidden.
    pub key: Option<SigningKey>,
    /// `signing.formats`.
    pub formats: ferry_trust::Formats,
    pub origin: Option<ManifestOrigin>,
    pub trigger_event_id: Option<String>,
}

/// What happened to one promoted digest.
#[derive(Debug)]
pub struct DigestOutcome {
    pub source: Repository,
    pub digest: Digest,
    pub report: Report,
    pub primary: Option<Repository>,
    /// The source's own artifacts copied to the primary (trusted sources only), per digest (the
    /// image and each child) and kind.
    pub from_source: Option<Result<Replication, PromotionError>>,
    pub signed: Option<Result<Signed, PromotionError>>,
    pub attested: Option<Result<Appended, PromotionError>>,
    /// Per mirror that holds the image: the primary's artifacts replicated there.
    pub replicated: Vec<(Repository, Result<Replication, PromotionError>)>,
    /// Why a step did not run, when one did not.
    pub skipped: Option<String>,
}

impl DigestOutcome {
    fn new(report: Report) -> Self {
        Self {
            source: report.source.clone(),
            digest: report.digest,
            report,
            primary: None,
            from_source: None,
            signed: None,
            attested: None,
            replicated: Vec::new(),
            skipped: None,
        }
    }

    /// Whether any step failed.
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

/// One unit of work, as a queue would carry it.
enum Work {
    Verify(VerifyMessage),
    Copy(CopyMessage),
    Sign(SignMessage),
    Attest(AttestMessage),
    Replicate(ReplicateMessage),
}

impl Work {
    /// How far along its promotion this step is: later steps go first.
    fn depth(&self) -> usize {
        match self {
            Work::Verify(_) => 0,
            Work::Copy(_) => 1,
            Work::Sign(_) => 2,
            Work::Attest(_) => 3,
            Work::Replicate(_) => 4,
        }
    }
}

/// The steps waiting to run, one first-in-first-out list per step kind. The next to run is the
/// one furthest along its promotion: a verified image goes on to its copy while the next image
/// verifies, so the source (read by the verifier) and the destination (written by the copy)
/// are both kept busy, instead of every image being verified before the first copy starts.
#[derive(Default)]
struct WorkList {
    by_depth: [VecDeque<Work>; 5],
}

impl WorkList {
    fn push(&mut self, work: Work) {
        self.by_depth[work.depth()].push_back(work);
    }

    fn pop(&mut self) -> Option<Work> {
        self.by_depth.iter_mut().rev().find_map(VecDeque::pop_front)
    }
}

/// A finished step.
enum Finished {
    Verified(Step<Verified>),
    Copied(CopyMessage, Step<JobOutcome>),
    Signed(SignMessage, Step<Signing>),
    Attested(AttestMessage, Step<Option<Appended>>),
    Replicated(ReplicateMessage, Step<Replication>),
}

type Running<'a> = Pin<Box<dyn Future<Output = Finished> + Send + 'a>>;

fn start<'a, R: RegistryWrite>(copier: &'a Copier<R>, options: &'a TrustOptions, work: Work) -> Running<'a> {
    Box::pin(async move {
        let key = options.key.as_ref();
        match work {
            Work::Verify(m) => {
                Finished::Verified(steps::verify(copier.registry(), &options.policy, &m).await)
            }
            Work::Copy(m) => {
                let copied = steps::copy(copier, &m, false).await;
                Finished::Copied(m, copied)
            }
            Work::Sign(m) => {
                let step = steps::sign(copier, key, options.formats, &options.policy, &m).await;
                Finished::Signed(m, step)
            }
            Work::Attest(m) => {
                let step = steps::attest(
                    copier.registry(),
                    key,
                    options.formats,
                    &m,
                    options.trigger_event_id.as_deref(),
                    false,
                )
                .await;
                Finished::Attested(m, step)
            }
            Work::Replicate(m) => {
                let done = steps::replicate(copier, &m, false).await;
                Finished::Replicated(m, done)
            }
        }
    })
}

/// Runs the promotion of every edge of `plan` that needs work, with the trust steps.
pub async fn run<R: RegistryWrite>(copier: &Copier<R>, plan: &Plan, options: &TrustOptions) -> ChainReport {
    let grouped = promotions(plan, options.origin.clone());
    let mut queue = WorkList::default();
    grouped.verify.into_iter().for_each(|m| queue.push(Work::Verify(m)));
    let mut digests: BTreeMap<(Repository, Digest), DigestOutcome> = BTreeMap::new();
    // (source, digest, destination) → the copy that served those edges: its tags and outcome.
    let mut copies: BTreeMap<(Repository, Digest, Repository), (CopyMessage, JobOutcome)> = BTreeMap::new();
    let limit = copier.options().max_images.max(1);
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < limit
            && let Some(work) = queue.pop()
        {
            running.push(start(copier, options, work));
        }
        let Some(finished) = running.next().await else { break };
        let mut follow = |next: Next| {
            queue.push(match next {
                Next::Copy(m) => Work::Copy(m),
                Next::Sign(m) => Work::Sign(m),
                Next::Attest(m) => Work::Attest(m),
                Next::Replicate(m) => Work::Replicate(m),
            })
        };
        match finished {
            Finished::Verified(step) => {
                let Step { done: verified, next, failure } = step;
                let key = (verified.report.source.clone(), verified.report.digest);
                let mut outcome = DigestOutcome::new(verified.report.clone());
                match failure {
                    Some(error) => {
                        tracing::warn!(%error, "verification failed; not promoting");
                        outcome.skipped = Some("verification failed".into());
                    }
                    None => {
                        let to_primary = |n: &Next| matches!(n, Next::Copy(c) if c.destination.primary);
                        if next.is_empty() {
                            outcome.skipped =
                                Some("the plan refused every destination; nothing was copied".into());
                        } else if !next.iter().any(to_primary) {
                            outcome.skipped = Some(
                                "the plan refused the primary destination, so nothing was signed, attested or \
                                 replicated; the mirrors were copied without Ferry's signature"
                                    .into(),
                            );
                        }
                        next.into_iter().for_each(&mut follow);
                    }
                }
                digests.insert(key, outcome);
            }
            Finished::Copied(message, step) => {
                let promotion = &message.promotion;
                let key =
                    (promotion.source.clone(), promotion.digest, message.destination.repository.clone());
                if let Some(outcome) = digests.get_mut(&(promotion.source.clone(), promotion.digest)) {
                    match &step.failure {
                        Some(error) if message.destination.primary => {
                            outcome.skipped = Some(format!(
                                "the copy to the primary failed, so nothing was signed: {error}"
                            ));
                        }
                        Some(_) => {}
                        None if message.destination.primary => {
                            outcome.primary = Some(message.destination.repository.clone());
                        }
                        None => {}
                    }
                }
                step.next.into_iter().for_each(&mut follow);
                copies.insert(key, (message, step.done));
            }
            Finished::Signed(message, step) => {
                let promotion = &message.promotion;
                let Some(outcome) = digests.get_mut(&(promotion.source.clone(), promotion.digest)) else {
                    continue;
                };
                if options.key.is_none() {
                    outcome.skipped = Some("no signing key is configured; not signed or attested".into());
                }
                let Step { done, next, failure } = step;
                outcome.from_source = done.from_source.map(Ok);
                outcome.signed = done.signed.map(Ok);
                if let Some(error) = failure {
                    // The part that failed is the first that has not run.
                    if outcome.from_source.is_none() && promotion.source_trusted {
                        outcome.from_source = Some(Err(error));
                    } else {
                        outcome.signed = Some(Err(error));
                    }
                }
                next.into_iter().for_each(&mut follow);
            }
            Finished::Attested(message, step) => {
                let promotion = &message.promotion;
                let Some(outcome) = digests.get_mut(&(promotion.source.clone(), promotion.digest)) else {
                    continue;
                };
                outcome.attested = match step.failure {
                    Some(error) => Some(Err(error)),
                    None => step.done.map(Ok),
                };
                step.next.into_iter().for_each(&mut follow);
            }
            Finished::Replicated(message, step) => {
                if let Some(outcome) = digests.iter_mut().find_map(|((_, digest), o)| {
                    (*digest == message.digest && o.primary.as_ref() == Some(&message.primary)).then_some(o)
                }) {
                    let result = match step.failure {
                        Some(error) => Err(error),
                        None => Ok(step.done),
                    };
                    outcome.replicated.push((message.mirror, result));
                }
            }
        }
    }
    let edges = edge_outcomes(copier, plan, &digests, &copies);
    ChainReport { edges, digests: digests.into_values().collect() }
}

/// Every plan edge's outcome: excluded by the plan, present, or the result of the copy that
/// served it; an edge whose copy never ran says why.
fn edge_outcomes<R: RegistryWrite>(
    copier: &Copier<R>,
    plan: &Plan,
    digests: &BTreeMap<(Repository, Digest), DigestOutcome>,
    copies: &BTreeMap<(Repository, Digest, Repository), (CopyMessage, JobOutcome)>,
) -> PromotionReport {
    let outcomes = plan
        .edges
        .iter()
        .map(|edge| {
            if edge.action.is_excluded() {
                return EdgeOutcome::Excluded;
            }
            let Some(digest) = edge.digest.filter(|_| edge.action.is_work()) else {
                return EdgeOutcome::Present;
            };
            let result = match copies.get(&(edge.source.clone(), digest, edge.destination.clone())) {
                Some((message, outcome)) => match &edge.tag {
                    Some(tag) => match message.destination.tags.iter().position(|t| t == tag) {
                        Some(i) => outcome.tag(i),
                        None => outcome.tagless(),
                    },
                    None => outcome.tagless(),
                },
                None => Err(CopyError::Manifest {
                    repository: edge.source.clone(),
                    digest,
                    reason: not_copied(digests.get(&(edge.source.clone(), digest))),
                }),
            };
            let counter =
                if result.is_ok() { &copier.stats().edges_done } else { &copier.stats().edges_failed };
            CopyStats::add(counter, 1);
            match result {
                Ok(done) => EdgeOutcome::Done(done),
                Err(error) => EdgeOutcome::Failed(error),
            }
        })
        .collect();
    PromotionReport { outcomes }
}

/// Why an edge's copy never ran.
fn not_copied(outcome: Option<&DigestOutcome>) -> String {
    let Some(outcome) = outcome else { return "not copied: the promotion was never verified".into() };
    if !outcome.report.image_passed() {
        let failed: Vec<String> =
            outcome.report.failures().map(|c| format!("{}: {}", c.name, c.reason)).collect();
        return format!("verification failed: {}", failed.join("; "));
    }
    let step = [
        outcome
            .from_source
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .map(|e| format!("copying the source's artifacts failed: {e}")),
        outcome
            .signed
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .map(|e| format!("signing at the primary failed: {e}")),
        outcome
            .attested
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .map(|e| format!("attesting at the primary failed: {e}")),
        outcome.skipped.clone(),
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_else(|| "an earlier step failed".into());
    format!("not copied to this mirror, which is copied only once the primary is signed and attested: {step}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use ferry_messages::{DestinationTags, Promotion};

    use super::*;

    fn promotion(n: u8) -> Promotion {
        let repository = |h: &str| Repository::parse(&format!("{h}/app")).unwrap();
        Promotion {
            source: repository("staging.example"),
            digest: Digest::of(&[n]),
            source_tag: None,
            source_trusted: false,
            destinations: vec![DestinationTags {
                repository: repository("prod.example"),
                tags: vec![],
                primary: true,
                known_absent: true,
            }],
            origin: None,
        }
    }

    fn name(work: &Work) -> (&'static str, u8) {
        let (kind, digest) = match work {
            Work::Verify(m) => ("verify", m.promotion.digest),
            Work::Copy(m) => ("copy", m.promotion.digest),
            Work::Sign(m) => ("sign", m.promotion.digest),
            Work::Attest(m) => ("attest", m.promotion.digest),
            Work::Replicate(m) => ("replicate", m.digest),
        };
        let n = (0..=u8::MAX).find(|n| Digest::of(&[*n]) == digest).unwrap();
        (kind, n)
    }

    #[test]
    fn the_step_furthest_along_runs_first_and_each_kind_in_order() {
        let verify = |n| Work::Verify(VerifyMessage { promotion: promotion(n), refused: vec![] });
        let copy = |n| {
            let p = promotion(n);
            Work::Copy(CopyMessage {
                destination: p.destinations[0].clone(),
                promotion: p,
                verification: vec![],
            })
        };
        let sign = |n| Work::Sign(SignMessage { promotion: promotion(n), verification: vec![] });
        let mut list = WorkList::default();
        for work in [verify(1), verify(2), verify(3), copy(1), sign(4), copy(2)] {
            list.push(work);
        }
        let order: Vec<(&str, u8)> = std::iter::from_fn(|| list.pop()).map(|w| name(&w)).collect();
        assert_eq!(
            order,
            [("sign", 4), ("copy", 1), ("copy", 2), ("verify", 1), ("verify", 2), ("verify", 3)],
            "a verified image's copy runs before the next image's verification"
        );
    }
}
