//! The I/O of a check: what the verifier needs to know about each new digest.

use futures_util::StreamExt as _;

use ferry_model::DesiredState;
use ferry_plan::{GatherOptions, Plan};
use ferry_registry::Registry;
use ferry_trust::policy::TrustPolicy;
use ferry_trust::verify;

use crate::decide::{Change, Facts};
use crate::policy::RepositoryPolicy;
use crate::reach::{Reach, screen};
use crate::report::Report;

/// Checks a change end to end: screens what it adds (everything in the head when there is no
/// base) against the policy and the reach, before any request; plans what is left, gathers the
/// verifier's facts for each new digest, and decides. What `ferry check` and the checker stage
/// both run; only reads. `registry` must be guarded by `reach.guard()`.
pub async fn check<R: Registry>(
    registry: &R,
    change: Change<'_>,
    trust: &TrustPolicy,
    policy: &RepositoryPolicy,
    reach: &Reach,
    concurrency: usize,
) -> Report {
    let new: DesiredState = match change.base {
        Some(base) => ferry_plan::diff(base, change.head),
        None => change.head.clone(),
    };
    let (new, refused) = screen(new, reach, policy);
    let facts = ferry_plan::gather(registry, &new, GatherOptions { concurrency }).await;
    let plan = ferry_plan::plan(&new, &facts);
    let verified = gather(registry, &plan, trust, concurrency).await;
    let mut report = crate::decide(change, &plan, &verified, trust, policy);
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
