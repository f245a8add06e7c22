//! Table tests of the pure planner and of diff-only planning.

use std::sync::Arc;

use ferry_model::{DesiredState, Destination, Digest, Entry, Origin, Repository, Source, Tag, TagOrDigest};
use ferry_registry::RegistryError;

use crate::facts::{Facts, Lookup};
use crate::{Action, diff, plan};

fn d(n: u8) -> Digest {
    Digest::from_bytes([n; 32])
}
fn t(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}
fn repo(s: &str) -> Repository {
    Repository::parse(s).unwrap()
}

struct E<'a> {
    sources: &'a [&'a str],
    pin: TagOrDigest,
    tags: &'a [&'a str],
    destinations: &'a [&'a str],
    deny_prerelease: bool,
}

impl E<'_> {
    fn digest(n: u8, tags: &'static [&'static str]) -> E<'static> {
        E {
            sources: &["s.io/app"],
            pin: TagOrDigest::Digest(d(n)),
            tags,
            destinations: &["p.io/app"],
            deny_prerelease: false,
        }
    }
    fn build(&self, line: u32) -> Entry {
        Entry {
            sources: self
                .sources
                .iter()
                .map(|s| Source { repository: repo(s), trusted: true })
                .collect::<Vec<_>>()
                .into(),
            pin: self.pin.clone(),
            tags: self.tags.iter().map(|s| t(s)).collect(),
            destinations: self
                .destinations
                .iter()
                .map(|s| Destination { repository: repo(s), deny_prerelease: self.deny_prerelease })
                .collect::<Vec<_>>()
                .into(),
            origin: Origin::new("test.yaml", line),
        }
    }
}

enum F {
    Tag(&'static str, &'static str, u8),
    Manifest(&'static str, u8),
    TagFails(&'static str, &'static str),
    ManifestFails(&'static str, u8),
}

fn facts(list: &[F]) -> Facts {
    let mut facts = Facts::default();
    let failure = || RegistryError::Config("connection refused".into());
    for f in list {
        match f {
            F::Tag(r, tag, n) => facts.record_tag(repo(r), t(tag), Some(d(*n))),
            F::Manifest(r, n) => facts.record_manifest(repo(r), d(*n), true),
            F::TagFails(r, tag) => facts.record_failure(Lookup::Tag(repo(r), t(tag)), &failure()),
            F::ManifestFails(r, n) => facts.record_failure(Lookup::Manifest(repo(r), d(*n)), &failure()),
        }
    }
    facts
}

fn actions(entries: &[E<'_>], known: &[F]) -> Vec<String> {
    let desired = DesiredState {
        entries: entries.iter().enumerate().map(|(i, e)| e.build(i as u32 + 1)).collect(),
        ..Default::default()
    };
    plan(&desired, &facts(known))
        .edges
        .iter()
        .map(|e| {
            format!(
                "{}:{} {}",
                e.destination,
                e.tag.as_ref().map(Tag::as_str).unwrap_or("-"),
                e.action.name()
            )
        })
        .collect()
}

#[test]
fn planner_table() {
    use F::*;
    // (name, entries, registry facts, expected `destination:tag action` per edge)
    type Case<'a> = (&'a str, Vec<E<'a>>, Vec<F>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "copy: source has it, destination lacks it",
            vec![E::digest(1, &["v1"])],
            vec![Manifest("s.io/app", 1)],
            vec!["p.io/app:v1 copy"],
        ),
        ("present", vec![E::digest(1, &["v1"])], vec![Tag("p.io/app", "v1", 1)], vec!["p.io/app:v1 present"]),
        (
            "add-tag",
            vec![E::digest(1, &["v1"])],
            vec![Manifest("p.io/app", 1), Manifest("s.io/app", 1)],
            vec!["p.io/app:v1 add-tag"],
        ),
        (
            "add-tag needs no source",
            vec![E::digest(1, &["v1"])],
            vec![Manifest("p.io/app", 1)],
            vec!["p.io/app:v1 add-tag"],
        ),
        (
            "conflict",
            vec![E::digest(1, &["v1"])],
            vec![Tag("p.io/app", "v1", 2), Manifest("s.io/app", 1)],
            vec!["p.io/app:v1 conflict"],
        ),
        ("missing source", vec![E::digest(1, &["v1"])], vec![], vec!["p.io/app:v1 missing-source"]),
        ("tagless copy", vec![E::digest(1, &[])], vec![Manifest("s.io/app", 1)], vec!["p.io/app:- copy"]),
        (
            "tagless present",
            vec![E::digest(1, &[])],
            vec![Manifest("p.io/app", 1)],
            vec!["p.io/app:- present"],
        ),
        ("tagless missing", vec![E::digest(1, &[])], vec![], vec!["p.io/app:- missing-source"]),
        (
            "overlap: two digests at one tag, even when one is present",
            vec![E::digest(1, &["v1"]), E::digest(2, &["v1", "v2"])],
            vec![Tag("p.io/app", "v1", 1), Manifest("s.io/app", 2)],
            vec!["p.io/app:v1 overlap", "p.io/app:v1 overlap", "p.io/app:v2 copy"],
        ),
        (
            "a repeated image is merged",
            vec![E::digest(1, &["v1"]), E::digest(1, &["v1"])],
            vec![Manifest("s.io/app", 1)],
            vec!["p.io/app:v1 copy"],
        ),
        (
            "one digest under two names is two edges",
            vec![
                E::digest(1, &["v1"]),
                E {
                    sources: &["s.io/app-amd64"],
                    destinations: &["p.io/app-amd64"],
                    ..E::digest(1, &["v1"])
                },
            ],
            vec![Manifest("s.io/app", 1), Manifest("s.io/app-amd64", 1)],
            vec!["p.io/app:v1 copy", "p.io/app-amd64:v1 copy"],
        ),
        (
            "prerelease refused only where denied",
            vec![
                E { deny_prerelease: true, ..E::digest(1, &["v1.0.0-rc.1", "v1.0.0"]) },
                E { destinations: &["m.io/app"], ..E::digest(1, &["v1.0.0-rc.1"]) },
            ],
            vec![Manifest("s.io/app", 1)],
            vec!["p.io/app:v1.0.0-rc.1 prerelease", "p.io/app:v1.0.0 copy", "m.io/app:v1.0.0-rc.1 copy"],
        ),
        (
            "a conflict does not block other edges",
            vec![E { destinations: &["p.io/app", "m.io/app"], ..E::digest(1, &["v1"]) }],
            vec![Tag("p.io/app", "v1", 9), Manifest("s.io/app", 1)],
            vec!["p.io/app:v1 conflict", "m.io/app:v1 copy"],
        ),
        (
            "tag pin resolved from the first source that has it",
            vec![E {
                sources: &["stg.io/app", "docker.io/app"],
                pin: TagOrDigest::Tag(t("v1")),
                ..E::digest(0, &["v1"])
            }],
            vec![Tag("docker.io/app", "v1", 5)],
            vec!["p.io/app:v1 copy"],
        ),
        (
            "tag pin found nowhere",
            vec![E {
                sources: &["stg.io/app", "docker.io/app"],
                pin: TagOrDigest::Tag(t("v1")),
                ..E::digest(0, &["v1"])
            }],
            vec![],
            vec!["p.io/app:v1 missing-source"],
        ),
        (
            "failed lookups give unchecked edges, not guesses",
            vec![
                E::digest(1, &["v1"]),
                E::digest(2, &[]),
                E { pin: TagOrDigest::Tag(t("v3")), ..E::digest(0, &["v3"]) },
            ],
            vec![TagFails("p.io/app", "v1"), ManifestFails("p.io/app", 2), TagFails("s.io/app", "v3")],
            vec!["p.io/app:v1 unchecked", "p.io/app:- unchecked", "p.io/app:v3 unchecked"],
        ),
    ];
    for (name, entries, known, want) in cases {
        assert_eq!(actions(&entries, &known), want, "{name}");
    }
}

#[test]
fn edge_details() {
    let entries = [E {
        sources: &["stg.io/app", "docker.io/app"],
        pin: TagOrDigest::Tag(t("v1")),
        destinations: &["p.io/app", "m.io/app"],
        ..E::digest(0, &["v1"])
    }];
    let desired =
        DesiredState { entries: entries.iter().map(|e| e.build(7)).collect(), ..Default::default() };
    let plan = plan(&desired, &facts(&[F::Tag("docker.io/app", "v1", 5), F::Tag("m.io/app", "v1", 5)]));
    let first = &plan.edges[0];
    assert_eq!(first.source, repo("docker.io/app"));
    assert_eq!(first.source_tag, Some(t("v1")));
    assert_eq!(first.digest, Some(d(5)));
    assert!(first.primary);
    assert!(!plan.edges[1].primary);
    assert_eq!(plan.edges[1].action, Action::Present);
    assert_eq!(first.origin.to_string(), "test.yaml:7");
    assert_eq!(plan.counts()[0], ("copy", 1));
    assert_eq!(plan.n_excluded(), 0);
    let conflict = Action::Conflict { existing: d(9) };
    assert!(conflict.is_excluded() && conflict.to_string().contains(&d(9).to_string()));
}

#[test]
fn diff_table() {
    let base = [
        E::digest(1, &["v1"]),
        E::digest(2, &[]),
        E { destinations: &["p.io/app", "m.io/app"], ..E::digest(3, &["v3"]) },
    ];
    type Case<'a> = (&'a str, Vec<E<'a>>, Vec<(&'a str, Vec<&'a str>)>);
    let cases: Vec<Case<'_>> = vec![
        ("unchanged", vec![E::digest(1, &["v1"]), E::digest(2, &[])], vec![]),
        ("new digest", vec![E::digest(1, &["v1"]), E::digest(4, &["v4"])], vec![("s.io/app@4", vec!["v4"])]),
        (
            "new tag on an old digest",
            vec![E::digest(1, &["v1", "latest"])],
            vec![("s.io/app@1", vec!["latest"])],
        ),
        ("tag moved to another digest", vec![E::digest(5, &["v1"])], vec![("s.io/app@5", vec!["v1"])]),
        ("old tagless digest now tagged", vec![E::digest(2, &["v2"])], vec![("s.io/app@2", vec!["v2"])]),
        (
            "destination added",
            vec![E { destinations: &["p.io/app", "m.io/app", "n.io/app"], ..E::digest(3, &["v3"]) }],
            vec![("s.io/app@3", vec!["v3"])],
        ),
        ("removal plans nothing", vec![], vec![]),
    ];
    let base = DesiredState { entries: base.iter().map(|e| e.build(1)).collect(), ..Default::default() };
    for (name, head, want) in cases {
        let head = DesiredState { entries: head.iter().map(|e| e.build(1)).collect(), ..Default::default() };
        let got: Vec<(String, Vec<String>)> = diff(&base, &head)
            .entries
            .iter()
            .map(|e| {
                let TagOrDigest::Digest(digest) = &e.pin else { panic!() };
                let n = digest.as_bytes()[0];
                (format!("{}@{n}", e.sources[0].repository), e.tags.iter().map(ToString::to_string).collect())
            })
            .collect();
        let want: Vec<(String, Vec<String>)> = want
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

proptest::proptest! {
    /// Whatever the facts, every edge gets exactly one action and the plan never panics.
    #[test]
    fn plan_is_total(
        n_entries in 1usize..6,
        digests in proptest::collection::vec(0u8..4, 6),
        present in proptest::collection::vec(proptest::bool::ANY, 12),
    ) {
        let entries: Vec<Entry> = (0..n_entries)
            .map(|i| E::digest(digests[i], &["v1", "v2"]).build(i as u32))
            .collect();
        let mut facts = Facts::default();
        for (i, p) in present.iter().enumerate() {
            if *p {
                facts.record_manifest(repo(if i % 2 == 0 { "p.io/app" } else { "s.io/app" }), d((i / 2) as u8 % 4), true);
            }
        }
        let desired = DesiredState { entries: Arc::new(entries).as_ref().clone(), ..Default::default() };
        let plan = plan(&desired, &facts);
        proptest::prop_assert!(plan.edges.len() <= desired.n_edges());
        proptest::prop_assert_eq!(plan.counts().iter().map(|(_, n)| n).sum::<usize>(), plan.edges.len());
    }
}
