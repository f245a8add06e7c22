//! Which registries a check may contact, decided before it contacts any.
//!
//! A pull request is hostile input: whatever registry it names, a check that simply planned
//! it would connect there (with retries) and post how that went on the pull request. So
//! everything that can be decided from the change alone is decided first, by the pure
//! [`screen`]: a source outside `check.allowed-sources`, and any host the [`Reach`] does not
//! allow, is a failed problem at its place and is left out of the plan. Only then is anything
//! read, through a registry client whose [`HostGuard`] admits exactly the same hosts, so that a
//! mistake here is a refused request, not a packet.

use std::collections::BTreeSet;

use ferry_manifests::Loaded;
use ferry_manifests::regsync::RepositorySync;
use ferry_model::{CheckName, DesiredState, Entry, Host, Origin};
use ferry_registry::HostGuard;
use ferry_trust::verify::Status;

use crate::policy::RepositoryPolicy;
use crate::report::Problem;

/// The registry hosts a check may contact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Hosts the configuration names: trust sources, `check.allowed-sources`,
    /// `check.required-destinations`, `check.allowed-hosts`, `pipeline.registries`, mirror
    /// rules, `registries.*`. Their addresses are trusted, private ones included.
    pub named: BTreeSet<Host>,
    /// Hosts the base already uses, as a source or a destination: reviewed when they were
    /// added. A name among them that resolves to a loopback, private, link-local or metadata
    /// address is still refused when it is resolved, unless the configuration names it.
    pub base: BTreeSet<Host>,
}

impl Reach {
    /// What a change may reach: `named` (from the configuration) and every host `base` uses
    /// (its entries and its regsync repository entries).
    pub fn new(named: impl IntoIterator<Item = Host>, base: Option<&Loaded>) -> Self {
        let mut used = BTreeSet::new();
        for entry in base.iter().flat_map(|b| &b.state.entries) {
            used.extend(hosts_of(entry));
        }
        for sync in base.iter().flat_map(|b| &b.syncs) {
            used.insert(sync.source.host().clone());
            used.insert(sync.target.host().clone());
        }
        Self { named: named.into_iter().collect(), base: used }
    }

    pub fn allows(&self, host: &Host) -> bool {
        self.named.contains(host) || self.base.contains(host)
    }

    /// The transport guard that admits exactly what this reach allows.
    pub fn guard(&self) -> HostGuard {
        HostGuard::only(self.base.iter().cloned(), self.named.iter().cloned())
    }
}

fn hosts_of(entry: &Entry) -> impl Iterator<Item = Host> + '_ {
    let sources = entry.sources.iter().map(|s| s.repository.host().clone());
    sources.chain(entry.destinations.iter().map(|d| d.repository.host().clone()))
}

/// Leaves out of `new` everything the policy rules out before any request, and says why: a
/// source outside `check.allowed-sources` (check `allowed-source`), a registry host that the
/// reach does not allow (check `policy`). An entry keeps its other sources and destinations;
/// one with no source or no destination left is left out whole. Pure.
pub fn screen(new: DesiredState, reach: &Reach, policy: &RepositoryPolicy) -> (DesiredState, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut problem = |check: CheckName, origin: &Origin, message: String| {
        let problem = Problem { check, status: Status::Fail, origin: origin.clone(), message };
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    };
    let mut kept = Vec::with_capacity(new.entries.len());
    for mut entry in new.entries {
        let sources: Vec<_> = entry
            .sources
            .iter()
            .filter(|source| {
                let repository = &source.repository;
                if !policy.allowed_sources.is_empty()
                    && !policy.allowed_sources.iter().any(|a| a.contains(repository))
                {
                    problem(
                        CheckName::AllowedSource,
                        &entry.origin,
                        format!(
                            "{repository} is not under an allowed source registry ({}); it was not contacted",
                            list(&policy.allowed_sources)
                        ),
                    );
                    return false;
                }
                if !reach.allows(repository.host()) {
                    problem(CheckName::Policy, &entry.origin, not_allowed(repository.host(), "source"));
                    return false;
                }
                true
            })
            .cloned()
            .collect();
        let destinations: Vec<_> = entry
            .destinations
            .iter()
            .filter(|destination| {
                let host = destination.repository.host();
                let allowed = reach.allows(host);
                if !allowed {
                    problem(CheckName::Policy, &entry.origin, not_allowed(host, "destination"));
                }
                allowed
            })
            .cloned()
            .collect();
        if sources.is_empty() || destinations.is_empty() {
            continue;
        }
        entry.sources = sources.into();
        entry.destinations = destinations.into();
        kept.push(entry);
    }
    (DesiredState { entries: kept, notices: new.notices }, problems)
}

/// Leaves out of `head` the regsync repository entries whose source or target the policy rules
/// out, before their source's tags are listed: each is a failed problem at its place (unless the
/// base has the same entry, which was reviewed). Pure.
pub fn screen_syncs(
    mut head: Loaded,
    base: Option<&Loaded>,
    reach: &Reach,
    policy: &RepositoryPolicy,
) -> (Loaded, Vec<Problem>) {
    let mut problems = Vec::new();
    let in_base = |sync: &RepositorySync| {
        base.is_some_and(|b| b.syncs.iter().any(|s| s.source == sync.source && s.target == sync.target))
    };
    head.syncs.retain(|sync| {
        let refusal = if !policy.allowed_sources.is_empty()
            && !policy.allowed_sources.iter().any(|a| a.contains(&sync.source))
        {
            Some((
                CheckName::AllowedSource,
                format!(
                    "{} is not under an allowed source registry ({}); it was not contacted",
                    sync.source,
                    list(&policy.allowed_sources)
                ),
            ))
        } else if !reach.allows(sync.source.host()) {
            Some((CheckName::Policy, not_allowed(sync.source.host(), "source")))
        } else if !reach.allows(sync.target.host()) {
            Some((CheckName::Policy, not_allowed(sync.target.host(), "destination")))
        } else {
            None
        };
        match refusal {
            None => true,
            Some(_) if in_base(sync) => false,
            Some((check, message)) => {
                problems.push(Problem { check, status: Status::Fail, origin: sync.origin.clone(), message });
                false
            }
        }
    });
    (head, problems)
}

fn not_allowed(host: &Host, role: &str) -> String {
    format!(
        "{host} (a {role}) is not a registry the policy allows: neither the configuration \
         (trust sources, check.allowed-sources, check.allowed-hosts, pipeline.registries, \
         required destinations) nor the base names it; it was not contacted"
    )
}

fn list(items: &[impl std::fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use ferry_model::{Destination, Digest, RegistryPath, Repository, Source, TagOrDigest};

    use super::*;

    fn entry(sources: &[&str], destinations: &[&str], line: u32) -> Entry {
        Entry {
            sources: sources
                .iter()
                .map(|s| Source { repository: Repository::parse(s).unwrap(), trusted: true })
                .collect::<Vec<_>>()
                .into(),
            pin: TagOrDigest::Digest(Digest::of(b"x")),
            tags: Vec::new(),
            destinations: destinations
                .iter()
                .map(|d| Destination { repository: Repository::parse(d).unwrap(), deny_prerelease: false })
                .collect::<Vec<_>>()
                .into(),
            origin: Origin::new("images.yaml", line),
        }
    }

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    #[test]
    fn what_the_policy_rules_out_is_left_out_before_any_request() {
        let base = DesiredState {
            entries: vec![entry(&["stg.example/a"], &["prod.example/a"], 1)],
            notices: vec![],
        };
        let reach = Reach::new([host("staging.example"), host("mirror.example")], Some(&base.into()));
        let policy = RepositoryPolicy {
            allowed_sources: vec![RegistryPath::parse("staging.example/team").unwrap()],
            ..RepositoryPolicy::default()
        };
        let new = DesiredState {
            entries: vec![
                // Allowed whole.
                entry(&["staging.example/team/a"], &["prod.example/a", "mirror.example/a"], 10),
                // A source outside allowed-sources: left out, named, not contacted.
                entry(&["stg.example/a"], &["prod.example/a"], 11),
                // The metadata address as a source: outside allowed-sources first.
                entry(&["169.254.169.254/latest"], &["prod.example/a"], 12),
                // A destination nobody named: that destination only is left out.
                entry(&["staging.example/team/b"], &["prod.example/b", "evil.example/b"], 13),
                // Only unknown destinations: the entry is left out.
                entry(&["staging.example/team/c"], &["127.0.0.1:8080/c"], 14),
            ],
            notices: vec![],
        };
        let (kept, problems) = screen(new, &reach, &policy);
        let kept: Vec<(u32, Vec<String>)> = kept
            .entries
            .iter()
            .map(|e| (e.origin.line, e.destinations.iter().map(|d| d.repository.to_string()).collect()))
            .collect();
        assert_eq!(
            kept,
            vec![
                (10, vec!["prod.example/a".to_owned(), "mirror.example/a".to_owned()]),
                (13, vec!["prod.example/b".to_owned()]),
            ]
        );
        let found: Vec<(u32, &str, bool)> = problems
            .iter()
            .map(|p| (p.origin.line, p.check.as_str(), p.message.contains("it was not contacted")))
            .collect();
        assert_eq!(
            found,
            vec![
                (11, "allowed-source", true),
                (12, "allowed-source", true),
                (13, "policy", true),
                (14, "policy", true)
            ]
        );
        assert!(problems[2].message.starts_with("evil.example (a destination)"), "{}", problems[2].message);
        // The guard admits exactly what the reach allows.
        let guard = reach.guard();
        assert!(guard.admit(&host("prod.example")).is_ok());
        assert!(guard.admit(&host("evil.example")).is_err());
    }

    #[test]
    fn without_allowed_sources_only_the_reach_decides() {
        let reach = Reach::new([host("staging.example"), host("prod.example")], None);
        let new = DesiredState {
            entries: vec![
                entry(&["staging.example/a"], &["prod.example/a"], 1),
                entry(&["metadata.google.internal/a"], &["prod.example/a"], 2),
                entry(&["2852039166.example/a", "staging.example/a"], &["prod.example/a"], 3),
            ],
            notices: vec![],
        };
        let (kept, problems) = screen(new, &reach, &RepositoryPolicy::default());
        assert_eq!(kept.entries.len(), 2);
        assert_eq!(kept.entries[1].sources.len(), 1, "the unknown candidate source is dropped");
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| p.check == "policy"));
    }
}
