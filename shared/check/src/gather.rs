//! The I/O of a check: what the verifier needs to know about each new digest.

use futures_util::StreamExt as _;

use ferry_manifests::{Loaded, Policy};
use ferry_model::{DesiredState, Origin};
use ferry_plan::{GatherOptions, Plan};
use ferry_registry::Registry;
use ferry_trust::policy::TrustPolicy;
use ferry_trust::verify;

use crate::decide::{Change, Facts};
use crate::policy::RepositoryPolicy;
use crate::reach::{Reach, screen, screen_syncs};
use crate::report::Report;
use crate::report::{Problem, Status, UNCHECKED};

/// Checks a change end to end: screens what it adds (everything in the head when there is no
/// base) against the policy and the reach, before any request; resolves the repository
/// entries that are left (their sources' tags) and plans what the head adds, gathers the
/// verifier's facts for each new digest, and decides. What `ferry check` and the checker stage
/// both run; only reads. `registry` must be guarded by `reach.guard()`.
#[allow(clippy::too_many_arguments, reason = "the check's inputs, each a different policy")]
pub async fn check<R: Registry>(
    registry: &R,
    base: Option<Loaded>,
    head: Loaded,
    manifests: &Policy,
    trust: &TrustPolicy,
    policy: &RepositoryPolicy,
    reach: &Reach,
    concurrency: usize,
) -> Report {
    let (head, refused_syncs) = screen_syncs(head, base.as_ref(), reach, policy);
    let resolved = match base {
        Some(base) => {
            let change = ferry_manifests::revision::Change { base, head };
            ferry_desired::resolve_change(registry, manifests, change).await.map(|(b, h)| (Some(b), h))
        }
        None => ferry_desired::resolve(registry, manifests, head).await.map(|h| (None, h)),
    };
    let (base, head) = match resolved {
        Ok(states) => states,
        Err(error) => {
            let mut report = Report::default();
            report.problems.push(Problem {
                check: ferry_model::CheckName::Source,
                status: Status::Warn,
                origin: Origin::new("", 0),
                message: format!("{UNCHECKED}{error}"),
            });
            report.problems.extend(refused_syncs);
            return report;
        }
    };
    let new: DesiredState = match &base {
        Some(base) => ferry_plan::diff(base, &head),
        None => head.clone(),
    };
    let (new, refused) = screen(new, reach, policy);
    let facts =
        ferry_plan::gather(registry, &new, GatherOptions { concurrency, ..GatherOptions::default() }).await;
    let plan = ferry_plan::plan(&new, &facts);
    let verified = gather(registry, &plan, trust, concurrency).await;
    let change = Change { base: base.as_ref(), head: &head };
    let mut report = crate::decide(change, &plan, &verified, trust, policy);
    report.problems.extend(refused_syncs);
    report.problems.extend(refused);
    report
}

/// Fetches the verifier's facts for every (source, digest) of `plan`, `concurrency` at a time:
/// the manifest and its children, read and hashed; the source tag resolved again; and the
/// signatures, attestations and bundles the source's policy looks at. Writes nothing.
pub async fn gather<R: Registry>(
    registry: &R,
    plan: &Plan,
    trust: &TrustPolicy,
    concurrency: usize,
) -> Facts {
    let mut tags: std::collections::BTreeMap<_, Option<ferry_model::Tag>> = std::collections::BTreeMap::new();
    for edge in &plan.edges {
        let Some(digest) = edge.digest else { continue };
        let tag = tags.entry((edge.source.clone(), digest)).or_default();
        *tag = tag.take().or(edge.source_tag.clone());
    }
    let requests = tags.into_iter().map(|((source, digest), source_tag)| verify::Request {
        source,
        digest,
        source_tag,
        destination_problems: Vec::new(),
    });
    futures_util::stream::iter(requests)
        .map(|request| async move {
            let facts = verify::gather(registry, &request, trust.for_source(&request.source)).await;
            ((request.source, request.digest), facts)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}
