//! Mirror rules: event-based replication, as Harbor does it. When an image is pushed to a
//! source registry with a tag, every rule whose source matches the pushed repository (and whose
//! tag filter matches the tag) asks for it at the rule's destinations, under that tag.
//!
//! Pushes by digest alone do not fire rules: a client pushing an index pushes each child by
//! digest first, and those children travel with their index (copied, signed) rather than as
//! promotions of their own. A manifest entry that names a digest still matches a push of it.

use std::sync::Arc;

use ferry_model::{
    DesiredState, Destination, Digest, Entry, Origin, RegistryPath, Repository, Source, Tag, TagOrDigest,
};

/// One rule.
#[derive(Clone, Debug)]
pub struct MirrorRule {
    /// Images under this registry path are candidates.
    pub source: RegistryPath,
    /// The image name below `source` must match (all names when unset).
    pub repositories: Option<regex::Regex>,
    /// Destination registry paths; the image keeps its name below them. The first is primary.
    pub destinations: Vec<RegistryPath>,
    /// The tag must match this pattern, when set.
    pub tags: Option<regex::Regex>,
    /// The tag, read as a semantic version (a leading `v` allowed), must satisfy this, when set.
    pub semver: Option<semver::VersionReq>,
    pub deny_prerelease: bool,
    /// Signatures from the source may be copied.
    pub trusted: bool,
}

impl MirrorRule {
    /// Whether this rule asks for `repository:tag`; with `Some`, the destinations' repositories.
    pub fn matches(&self, repository: &Repository, tag: Option<&Tag>) -> Option<Vec<Repository>> {
        let name = self.source.name_of(repository)?;
        if self.repositories.as_ref().is_some_and(|r| !r.is_match(name.as_str())) {
            return None;
        }
        let tag = tag?;
        if tag.is_artifact_tag() {
            return None;
        }
        if self.tags.as_ref().is_some_and(|t| !t.is_match(tag.as_str())) {
            return None;
        }
        if let Some(requirement) = &self.semver {
            let version =
                semver::Version::parse(tag.as_str().strip_prefix('v').unwrap_or(tag.as_str())).ok()?;
            if !requirement.matches(&version) {
                return None;
            }
        }
        self.destinations.iter().map(|d| d.join(&name).ok()).collect()
    }

    /// The entry this rule makes for `repository` at `destinations`.
    fn entry(
        &self,
        repository: &Repository,
        destinations: Vec<Repository>,
        pin: TagOrDigest,
        tags: Vec<Tag>,
        origin: &Origin,
    ) -> Entry {
        Entry {
            sources: Arc::from([Source::new(repository.clone(), self.trusted)]),
            pin,
            tags,
            destinations: destinations
                .into_iter()
                .map(|repository| Destination { repository, deny_prerelease: self.deny_prerelease })
                .collect::<Vec<_>>()
                .into(),
            origin: origin.clone(),
        }
    }
}

/// The desired state a push of `repository@digest` (tagged `tag`) creates: from the rules, and
/// from the manifests' own entries that name this source repository and digest (or tag).
pub fn desired_for_push(
    rules: &[MirrorRule],
    manifests: &DesiredState,
    repository: &Repository,
    digest: &Digest,
    tag: Option<&Tag>,
    event: &str,
) -> DesiredState {
    let mut desired = DesiredState::default();
    let origin = Origin::new(format!("event {event}"), 0);
    for rule in rules {
        let Some(destinations) = rule.matches(repository, tag) else { continue };
        desired.entries.push(rule.entry(
            repository,
            destinations,
            TagOrDigest::Digest(*digest),
            tag.cloned().into_iter().collect(),
            &origin,
        ));
    }
    for entry in &manifests.entries {
        if !entry.sources.iter().any(|s| &s.repository == repository) {
            continue;
        }
        let wanted = match &entry.pin {
            TagOrDigest::Digest(d) => d == digest,
            TagOrDigest::Tag(t) => Some(t) == tag,
        };
        if wanted {
            desired.entries.push(entry.clone());
        }
    }
    desired
}

/// The desired state the rules ask for from what `repository` holds now: one entry per rule
/// and tag it matches, pinned by tag (the planner resolves it). This is what the pushes of
/// those tags asked for, so `ferry status` and `ferry reconcile` can check and repair
/// promotions that came from events.
pub fn desired_for_tags(
    rules: &[MirrorRule],
    repository: &Repository,
    tags: &[Tag],
    origin: &str,
) -> DesiredState {
    let mut desired = DesiredState::default();
    let origin = Origin::new(origin.to_owned(), 0);
    for rule in rules {
        for tag in tags {
            let Some(destinations) = rule.matches(repository, Some(tag)) else { continue };
            desired.entries.push(rule.entry(
                repository,
                destinations,
                TagOrDigest::Tag(tag.clone()),
                vec![tag.clone()],
                &origin,
            ));
        }
    }
    desired
}

/// The source repositories whose pushes could have put `repository` where it is: itself when
/// a rule's source holds it, and the source a rule would copy it from when it lies under one of
/// that rule's destinations. `ferry status --image` asks about one image without listing a
/// registry's whole catalog.
pub fn sources_of(rules: &[MirrorRule], repository: &Repository) -> Vec<Repository> {
    let mut out = Vec::new();
    for rule in rules {
        if rule.source.contains(repository) {
            out.push(repository.clone());
        }
        for destination in &rule.destinations {
            if let Some(name) = destination.name_of(repository)
                && let Ok(source) = rule.source.join(&name)
            {
                out.push(source);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tags: Option<&str>, semver: Option<&str>) -> MirrorRule {
        MirrorRule {
            source: RegistryPath::parse("staging.example/team").unwrap(),
            repositories: Some(regex::Regex::new("^app").unwrap()),
            destinations: vec![
                RegistryPath::parse("prod.example").unwrap(),
                RegistryPath::parse("mirror.example/m").unwrap(),
            ],
            tags: tags.map(|t| regex::Regex::new(t).unwrap()),
            semver: semver.map(|s| semver::VersionReq::parse(s).unwrap()),
            deny_prerelease: true,
            trusted: true,
        }
    }

    #[test]
    fn rule_table() {
        let repo = |s: &str| Repository::parse(s).unwrap();
        let tag = |s: &str| Tag::parse(s).unwrap();
        let cases: Vec<(MirrorRule, Repository, Option<Tag>, Option<Vec<&str>>)> = vec![
            (
                rule(None, None),
                repo("staging.example/team/app"),
                Some(tag("1.0")),
                Some(vec!["prod.example/app", "mirror.example/m/app"]),
            ),
            (rule(None, None), repo("staging.example/team/app"), None, None),
            (rule(None, None), repo("staging.example/team/lib"), Some(tag("1.0")), None),
            (rule(None, None), repo("staging.example/other/app"), Some(tag("1.0")), None),
            (
                rule(Some("^v[0-9]"), None),
                repo("staging.example/team/app"),
                Some(tag("v1.2.3")),
                Some(vec!["prod.example/app", "mirror.example/m/app"]),
            ),
            (rule(Some("^v[0-9]"), None), repo("staging.example/team/app"), Some(tag("latest")), None),
            (rule(Some("^v[0-9]"), None), repo("staging.example/team/app"), None, None),
            (
                rule(None, Some(">=1.2.0")),
                repo("staging.example/team/app"),
                Some(tag("v1.2.3")),
                Some(vec!["prod.example/app", "mirror.example/m/app"]),
            ),
            (rule(None, Some(">=1.2.0")), repo("staging.example/team/app"), Some(tag("1.1.9")), None),
            (rule(None, Some(">=1.2.0")), repo("staging.example/team/app"), Some(tag("nightly")), None),
        ];
        for (rule, repository, tag, want) in cases {
            let got = rule
                .matches(&repository, tag.as_ref())
                .map(|v| v.iter().map(|r| r.to_string()).collect::<Vec<_>>());
            let want = want.map(|v| v.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(got, want, "{repository} {tag:?}");
        }
    }

    #[test]
    fn push_matches_manifest_entries_by_digest_or_tag() {
        let repository = Repository::parse("staging.example/team/app").unwrap();
        let digest = Digest::of(b"d");
        let entry = |pin: TagOrDigest| Entry {
            sources: Arc::from([Source { repository: repository.clone(), trusted: true }]),
            pin,
            tags: vec![Tag::parse("1.0").unwrap()],
            destinations: Arc::from([Destination {
                repository: Repository::parse("prod.example/app").unwrap(),
                deny_prerelease: false,
            }]),
            origin: Origin::new("m.yaml", 3),
        };
        let manifests = DesiredState {
            entries: vec![
                entry(TagOrDigest::Digest(digest)),
                entry(TagOrDigest::Digest(Digest::of(b"other"))),
                entry(TagOrDigest::Tag(Tag::parse("1.0").unwrap())),
            ],
            ..Default::default()
        };
        let desired =
            desired_for_push(&[], &manifests, &repository, &digest, Some(&Tag::parse("1.0").unwrap()), "e1");
        assert_eq!(desired.entries.len(), 2, "the digest entry and the tag entry");
        let rules = [rule(None, None)];
        let desired = desired_for_push(
            &rules,
            &DesiredState::default(),
            &repository,
            &digest,
            Some(&Tag::parse("2.0").unwrap()),
            "e1",
        );
        assert_eq!(desired.entries.len(), 1);
        assert_eq!(desired.entries[0].destinations.len(), 2);
        assert_eq!(
            desired.entries[0].tags,
            vec![Tag::parse("2.0").unwrap()],
            "a rule promotes under the pushed tag"
        );
        let desired = desired_for_push(&rules, &manifests, &repository, &digest, None, "e1");
        assert_eq!(
            desired.entries.len(),
            1,
            "a push by digest fires no rule, but matches the manifest's digest entry"
        );
    }

    #[test]
    fn tags_held_now_become_entries_and_a_destination_leads_back_to_its_source() {
        let r = rule(Some("^v"), None);
        let repo = Repository::parse("staging.example/team/app").unwrap();
        let tags: Vec<Tag> = ["v1", "latest", "v2"].iter().map(|t| Tag::parse(t).unwrap()).collect();
        let desired = desired_for_tags(std::slice::from_ref(&r), &repo, &tags, "status");
        let pins: Vec<String> = desired.entries.iter().map(|e| e.pin.to_string()).collect();
        assert_eq!(pins, ["v1", "v2"]);
        assert_eq!(desired.entries[0].destinations[0].repository.to_string(), "prod.example/app");
        assert!(desired.entries[0].sources[0].trusted);
        // Another repository's tags are not this rule's.
        let other = Repository::parse("staging.example/other/app").unwrap();
        assert!(desired_for_tags(std::slice::from_ref(&r), &other, &tags, "status").entries.is_empty());

        let from_mirror =
            sources_of(std::slice::from_ref(&r), &Repository::parse("mirror.example/m/app").unwrap());
        assert_eq!(from_mirror, vec![repo.clone()]);
        assert_eq!(sources_of(std::slice::from_ref(&r), &repo), vec![repo.clone()]);
        assert!(sources_of(&[r], &Repository::parse("elsewhere.example/app").unwrap()).is_empty());
    }
}
