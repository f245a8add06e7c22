//! The decision: a plan of what the change adds, the verifier's facts about each new digest,
//! and the policies in; a [`Report`] out. Pure.

use std::collections::{BTreeMap, BTreeSet};

use ferry_model::{CheckName, DesiredState, Digest, Origin, Repository, Tag, TagOrDigest};
use ferry_plan::{Action, Plan, PlannedEdge};
use ferry_trust::policy::TrustPolicy;
use ferry_trust::verify::{self, Check, Status};

use crate::policy::RepositoryPolicy;
use crate::report::{DigestReport, Problem, Report, UNCHECKED};

/// The checks of a new digest, in the order every output lists them.
pub const CHECKS: [CheckName; 9] = [
    CheckName::SourceDigest,
    CheckName::Reference,
    CheckName::Signature,
    CheckName::Provenance,
    CheckName::Vulnerabilities,
    CheckName::Destination,
    CheckName::MultiArch,
    CheckName::RequiredDestinations,
    CheckName::AllowedSource,
];

/// What a change is: the inputs at the base (when there is one) and at the head. Only the
/// parts a change touched need be read: what is in neither is equal in both.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub base: Option<&'a DesiredState>,
    pub head: &'a DesiredState,
}

/// The verifier's facts about each new (source, digest), as [`crate::gather`] fetches them.
pub type Facts = BTreeMap<(Repository, Digest), verify::Facts>;

/// Checks what `plan` (the plan of what the change adds) promotes. Pure.
pub fn decide(
    change: Change<'_>,
    plan: &Plan,
    facts: &Facts,
    trust: &TrustPolicy,
    policy: &RepositoryPolicy,
) -> Report {
    let mut report = Report::default();
    // Lint mode: everything reading the head tolerated is a problem here.
    for notice in &change.head.notices {
        report.problems.push(Problem {
            check: CheckName::Lint,
            status: Status::Fail,
            origin: notice.origin.clone(),
            message: format!("field `{}`: {}", notice.field, notice.message),
        });
    }
    if let Some(base) = change.base
        && policy.immutable_tags
    {
        report.problems.extend(tag_changes(base, change.head));
    }
    for edge in plan.edges.iter().filter(|e| e.digest.is_none()) {
        let wanted = edge.source_tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        report.problems.push(Problem {
            check: CheckName::Source,
            status: Status::Fail,
            origin: edge.origin.clone(),
            message: format!("{}{wanted} is not in any source ({})", edge.source, edge.action),
        });
    }
    for ((source, digest), edges) in groups(plan) {
        let source_tag = edges.iter().find_map(|e| e.source_tag.clone());
        let request =
            verify::Request { source: source.clone(), digest, source_tag, destination_problems: Vec::new() };
        let gathered = facts.get(&(source.clone(), digest));
        let mut checks: Vec<Check> = match gathered {
            Some(facts) => verify::decide(&request, facts, trust.for_source(&source))
                .checks
                .into_iter()
                .filter(|c| c.name != CheckName::Destination)
                .collect(),
            None => {
                vec![check(CheckName::SourceDigest, Status::Fail, "no facts were gathered for this digest")]
            }
        };
        checks.push(destination(&edges));
        checks.push(multi_arch(gathered, &source, &edges, policy));
        checks.push(required_destinations(&edges, policy));
        checks.push(allowed_source(&source, policy));
        let mut tags: Vec<Tag> = edges.iter().filter_map(|e| e.tag.clone()).collect();
        tags.sort();
        tags.dedup();
        report.digests.push(DigestReport {
            source,
            digest,
            tags,
            origin: edges.first().map(|e| e.origin.clone()).unwrap_or_else(|| Origin::new("", 0)),
            checks,
        });
    }
    report.digests.sort_by(|a, b| a.origin.cmp(&b.origin).then(a.digest.cmp(&b.digest)));
    report
}

fn check(name: CheckName, status: Status, reason: impl Into<String>) -> Check {
    Check { name, status, reason: reason.into() }
}

/// The plan's edges by (source, digest), in plan order.
fn groups(plan: &Plan) -> BTreeMap<(Repository, Digest), Vec<&PlannedEdge>> {
    let mut groups: BTreeMap<(Repository, Digest), Vec<&PlannedEdge>> = BTreeMap::new();
    for edge in &plan.edges {
        if let Some(digest) = edge.digest {
            groups.entry((edge.source.clone(), digest)).or_default().push(edge);
        }
    }
    groups
}

fn at(edge: &PlannedEdge) -> String {
    match &edge.tag {
        Some(tag) => format!("{}:{tag}", edge.destination),
        None => format!("{} (tagless)", edge.destination),
    }
}

/// What promoting would do at each destination, without writing.
fn destination(edges: &[&PlannedEdge]) -> Check {
    const NAME: CheckName = CheckName::Destination;
    let mut copy = Vec::new();
    let mut tag = Vec::new();
    let mut present = Vec::new();
    let mut failed = Vec::new();
    let mut unchecked = Vec::new();
    for edge in edges {
        match &edge.action {
            Action::Copy => copy.push(at(edge)),
            Action::AddTag => tag.push(at(edge)),
            Action::Present => present.push(at(edge)),
            Action::Conflict { existing } => failed
                .push(format!("{} already points at {existing}, and Ferry never overwrites a tag", at(edge))),
            Action::Overlap { digests } => failed.push(format!(
                "{} is asked for by {} digests ({})",
                at(edge),
                digests.len(),
                digests.iter().map(Digest::to_string).collect::<Vec<_>>().join(", ")
            )),
            Action::Prerelease => failed.push(format!("{} refuses prerelease tags", at(edge))),
            Action::MissingSource => {
                failed.push(format!("{}: neither the source nor it has the digest", at(edge)))
            }
            Action::Unchecked { reason } => unchecked.push(format!("{}: {reason}", at(edge))),
        }
    }
    if !failed.is_empty() {
        return check(NAME, Status::Fail, failed.join("; "));
    }
    if !unchecked.is_empty() {
        return check(NAME, Status::Warn, format!("{UNCHECKED}{}", unchecked.join("; ")));
    }
    let mut parts = Vec::new();
    for (verb, list) in [("would copy to", copy), ("would tag", tag), ("already at", present)] {
        if !list.is_empty() {
            parts.push(format!("{verb} {}", list.join(", ")));
        }
    }
    check(NAME, Status::Pass, parts.join("; "))
}

fn multi_arch(
    facts: Option<&verify::Facts>,
    source: &Repository,
    edges: &[&PlannedEdge],
    policy: &RepositoryPolicy,
) -> Check {
    const NAME: CheckName = CheckName::MultiArch;
    if !policy.multi_arch_required {
        return check(NAME, Status::Skip, "not required by the repository policy");
    }
    let Some(Ok(children)) = facts.map(|f| &f.manifest) else {
        return check(NAME, Status::Skip, "the manifest could not be read (see source-digest)");
    };
    if !children.is_empty() {
        return check(NAME, Status::Pass, format!("an index of {} manifests", children.len()));
    }
    let names = std::iter::once(source).chain(edges.iter().map(|e| &e.destination));
    if policy.allows_single_arch(names) {
        check(NAME, Status::Pass, "a single-platform image, allowed by check.single-arch-allowed")
    } else {
        check(
            NAME,
            Status::Fail,
            "a single-platform image; the repository requires multi-platform indexes \
             (or list the image in check.single-arch-allowed)",
        )
    }
}

fn required_destinations(edges: &[&PlannedEdge], policy: &RepositoryPolicy) -> Check {
    const NAME: CheckName = CheckName::RequiredDestinations;
    if policy.required_destinations.is_empty() {
        return check(NAME, Status::Skip, "the repository policy requires no destination");
    }
    let missing: Vec<String> = policy
        .required_destinations
        .iter()
        .filter(|required| !edges.iter().any(|e| required.contains(&e.destination)))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        check(
            NAME,
            Status::Pass,
            format!("promoted to every required registry ({})", policy.required_destinations.len()),
        )
    } else {
        check(NAME, Status::Fail, format!("not promoted to {}", missing.join(", ")))
    }
}

fn allowed_source(source: &Repository, policy: &RepositoryPolicy) -> Check {
    const NAME: CheckName = CheckName::AllowedSource;
    if policy.allowed_sources.is_empty() {
        return check(NAME, Status::Skip, "the repository policy allows every source");
    }
    match policy.allowed_sources.iter().find(|allowed| allowed.contains(source)) {
        Some(allowed) => check(NAME, Status::Pass, format!("{source} is under {allowed}")),
        None => check(
            NAME,
            Status::Fail,
            format!(
                "{source} is not under an allowed source registry ({})",
                policy.allowed_sources.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

/// Tags the base asks for that the head removes, or points at another image, in the base's
/// order.
fn tag_changes(base: &DesiredState, head: &DesiredState) -> Vec<Problem> {
    let mut after: BTreeMap<(&Repository, &Tag), Vec<(&TagOrDigest, &Origin)>> = BTreeMap::new();
    for entry in &head.entries {
        for destination in entry.destinations.iter() {
            for tag in &entry.tags {
                after.entry((&destination.repository, tag)).or_default().push((&entry.pin, &entry.origin));
            }
        }
    }
    let mut before: BTreeMap<(&Repository, &Tag), Vec<&TagOrDigest>> = BTreeMap::new();
    for entry in &base.entries {
        for destination in entry.destinations.iter() {
            for tag in &entry.tags {
                before.entry((&destination.repository, tag)).or_default().push(&entry.pin);
            }
        }
    }
    let mut problems = Vec::new();
    let mut seen: BTreeSet<(Origin, String)> = BTreeSet::new();
    let mut report = |origin: &Origin, message: String| {
        if seen.insert((origin.clone(), message.clone())) {
            problems.push(Problem {
                check: CheckName::ImmutableTags,
                status: Status::Fail,
                origin: origin.clone(),
                message,
            });
        }
    };
    for entry in &base.entries {
        for destination in entry.destinations.iter() {
            let repository = &destination.repository;
            for tag in &entry.tags {
                match after.get(&(repository, tag)) {
                    None => report(
                        &entry.origin,
                        format!("{repository}:{tag} (at {}) is removed; a promoted tag stays", entry.pin),
                    ),
                    Some(new) => {
                        let old = &before[&(repository, tag)];
                        for (pin, origin) in new.iter().filter(|(pin, _)| !old.contains(pin)) {
                            let was = old.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                            report(
                                origin,
                                format!(
                                    "{repository}:{tag} is moved from {was} to {pin}; Ferry never overwrites a tag"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    problems
}
