//! Table tests of the decision and exact-content tests of the outputs.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_model::{
    DesiredState, Destination, Digest, Entry, Notice, NoticeKind, Origin, RegistryPath, Repository, Source,
    Tag, TagOrDigest,
};
use ferry_plan::{Action, Plan, PlannedEdge};
use ferry_trust::policy::{Requirement, SourcePolicy, TrustPolicy};
use ferry_trust::verify;

use crate::github::{self, CheckRun, Request};
use crate::render::{self, Links};
use crate::report::Status;
use crate::{Change, Conclusion, RepositoryPolicy, decide};

fn d(n: u8) -> Digest {
    Digest::from_bytes([n; 32])
}
fn repo(s: &str) -> Repository {
    Repository::parse(s).unwrap()
}
fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

fn edge(n: u8, destination: &str, t: &str, action: Action, line: u32) -> PlannedEdge {
    PlannedEdge {
        source: repo("staging.example/app"),
        source_trusted: true,
        source_tag: None,
        digest: Some(d(n)),
        destination: repo(destination),
        primary: true,
        tag: Some(tag(t)),
        action,
        origin: Origin::new("head@abc:images/app/images.yaml", line),
    }
}

/// Facts of an image that exists: an index of `children` manifests (0: a single image).
fn exists(children: u8) -> verify::Facts {
    verify::Facts {
        manifest: Ok((0..children).map(|c| (d(100 + c), Ok(()))).collect()),
        tag_now: None,
        signatures: Ok(None),
        attestations: Ok(None),
        bundles: Ok(Vec::new()),
    }
}

fn status_of(report: &crate::Report, n: u8, check: &str) -> (Status, String) {
    let row = report.digests.iter().find(|r| r.digest == d(n)).unwrap();
    let c = row.checks.iter().find(|c| c.name == check).unwrap();
    (c.status, c.reason.clone())
}

fn policy() -> RepositoryPolicy {
    RepositoryPolicy {
        required_destinations: vec![
            RegistryPath::parse("us.prod.example").unwrap(),
            RegistryPath::parse("eu.prod.example").unwrap(),
        ],
        multi_arch_required: true,
        single_arch_allowed: vec!["pause".into()],
        immutable_tags: true,
        allowed_sources: vec![RegistryPath::parse("staging.example").unwrap()],
        allowed_hosts: Vec::new(),
    }
}

#[test]
fn each_new_digest_gets_each_check() {
    let both = |n: u8, t: &str, us: Action, line: u32| {
        vec![
            edge(n, "us.prod.example/app", t, us, line),
            edge(n, "eu.prod.example/app", t, Action::Copy, line),
        ]
    };
    let mut edges = Vec::new();
    edges.extend(both(1, "v1", Action::Copy, 3)); // good
    edges.extend(both(2, "v2", Action::Conflict { existing: d(9) }, 5)); // conflicts with prod
    edges.extend(both(3, "v3", Action::Copy, 7)); // single-arch
    edges.push(edge(4, "us.prod.example/app", "v4", Action::Copy, 9)); // one region only
    edges.extend(both(5, "v5", Action::Unchecked { reason: "connection refused".into() }, 11));
    edges.extend(both(6, "v6", Action::Copy, 13)); // not in staging
    edges.extend(both(7, "v7-rc.1", Action::Prerelease, 15));
    let mut pause = both(8, "3.10", Action::Copy, 17);
    for e in &mut pause {
        e.destination = repo(&format!("{}/pause", e.destination.host()));
    }
    edges.extend(pause); // single-arch, allowed
    let plan = Plan { edges, invalid: Vec::new() };
    let mut facts = BTreeMap::new();
    for n in [1, 2, 4, 5, 7] {
        facts.insert((repo("staging.example/app"), d(n)), exists(2));
    }
    facts.insert((repo("staging.example/app"), d(3)), exists(0));
    facts.insert((repo("staging.example/app"), d(8)), exists(0));
    let mut missing = exists(0);
    missing.manifest = Err(format!("staging.example/app@{} does not exist", d(6)));
    facts.insert((repo("staging.example/app"), d(6)), missing);
    let head = DesiredState::default();
    let report =
        decide(Change { base: None, head: &head }, &plan, &facts, &TrustPolicy::default(), &policy());

    assert_eq!(report.digests.len(), 8);
    for row in &report.digests {
        assert_eq!(row.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>(), crate::CHECKS);
    }
    let table: [(u8, &str, Status, &str); 14] = [
        (1, "destination", Status::Pass, "would copy to us.prod.example/app:v1, eu.prod.example/app:v1"),
        (1, "multi-arch", Status::Pass, "an index of 2 manifests"),
        (1, "required-destinations", Status::Pass, "promoted to every required registry (2)"),
        (1, "allowed-source", Status::Pass, "staging.example/app is under staging.example"),
        (1, "signature", Status::Skip, "the policy does not check signatures"),
        (
            2,
            "destination",
            Status::Fail,
            "us.prod.example/app:v2 already points at sha256:0909090909090909090909090909090909090909090909090909090909090909, and Ferry never overwrites a tag",
        ),
        (3, "multi-arch", Status::Fail, "a single-platform image; the repository requires multi-platform"),
        (4, "required-destinations", Status::Fail, "not promoted to eu.prod.example"),
        (5, "destination", Status::Warn, "could not be checked: us.prod.example/app:v5: connection refused"),
        (6, "source-digest", Status::Fail, "does not exist"),
        (6, "multi-arch", Status::Skip, "the manifest could not be read"),
        (7, "destination", Status::Fail, "us.prod.example/app:v7-rc.1 refuses prerelease tags"),
        (8, "multi-arch", Status::Pass, "allowed by check.single-arch-allowed"),
        (1, "source-digest", Status::Pass, "the index and its 2 children exist and hash to their digests"),
    ];
    for (n, check, status, reason) in table {
        let (got, why) = status_of(&report, n, check);
        assert_eq!(got, status, "digest {n} {check}: {why}");
        assert!(why.contains(reason), "digest {n} {check}: {why:?} lacks {reason:?}");
    }
    assert_eq!(report.conclusion(), Conclusion::Failure);
    assert_eq!(
        report.n_verified(),
        3,
        "{:#?}",
        report.digests.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    assert_eq!(report.title(), "8 new digests, 5 with problems");
}

#[test]
fn the_conclusion_is_neutral_when_only_a_lookup_failed_and_success_when_all_pass() {
    let facts: crate::Facts = [((repo("staging.example/app"), d(1)), exists(2))].into();
    let head = DesiredState::default();
    let decide_with = |action: Action| {
        let plan = Plan { edges: vec![edge(1, "p.example/app", "v1", action, 1)], invalid: Vec::new() };
        decide_plainly(&head, &plan, &facts)
    };
    let unchecked = decide_with(Action::Unchecked { reason: "HTTP 503".into() });
    assert_eq!(unchecked.conclusion(), Conclusion::Neutral);
    assert_eq!(unchecked.title(), "1 new digest: all verified (some checks could not be made)");
    let good = decide_with(Action::Copy);
    assert_eq!(good.conclusion(), Conclusion::Success);
    assert_eq!(good.title(), "1 new digest: all verified");
}

#[test]
fn a_required_signature_that_is_missing_fails() {
    let trust = TrustPolicy {
        sources: vec![SourcePolicy {
            registry: Some(RegistryPath::parse("staging.example").unwrap()),
            signatures: Requirement::Required,
            ..SourcePolicy::default()
        }],
    };
    let facts: crate::Facts = [((repo("staging.example/app"), d(1)), exists(2))].into();
    let plan = Plan { edges: vec![edge(1, "p.example/app", "v1", Action::Copy, 1)], invalid: Vec::new() };
    let head = DesiredState::default();
    let report =
        decide(Change { base: None, head: &head }, &plan, &facts, &trust, &RepositoryPolicy::default());
    let (status, reason) = status_of(&report, 1, "signature");
    assert_eq!(status, Status::Fail);
    assert_eq!(reason, "no signature (.sig or bundle), and one is required");
}

fn entry(n: u8, tags: &[&str], line: u32, file: &str) -> Entry {
    Entry {
        sources: Arc::from(vec![Source { repository: repo("staging.example/app"), trusted: true }]),
        pin: TagOrDigest::Digest(d(n)),
        tags: tags.iter().map(|t| tag(t)).collect(),
        destinations: Arc::from(vec![Destination {
            repository: repo("p.example/app"),
            deny_prerelease: false,
        }]),
        origin: Origin::new(file, line),
    }
}

#[test]
fn lint_findings_and_removed_or_moved_tags_are_problems_at_their_lines() {
    let base = DesiredState {
        entries: vec![
            entry(1, &["v1"], 3, "base@m:images/app/images.yaml"),
            entry(2, &["v2"], 5, "base@m:images/app/images.yaml"),
            entry(3, &["v3"], 7, "base@m:images/app/images.yaml"),
        ],
        notices: Vec::new(),
    };
    let head = DesiredState {
        entries: vec![
            entry(1, &["v1"], 3, "head@h:images/app/images.yaml"),
            // v2 removed; v3 moved to digest 4.
            entry(4, &["v3"], 5, "head@h:images/app/images.yaml"),
        ],
        notices: vec![Notice {
            kind: NoticeKind::Warning,
            origin: Origin::new("head@h:images/app/images.yaml", 9),
            field: "dmap".into(),
            message: "an empty tag list".into(),
        }],
    };
    let plan = Plan::default();
    let report = decide(
        Change { base: Some(&base), head: &head },
        &plan,
        &BTreeMap::new(),
        &TrustPolicy::default(),
        &RepositoryPolicy::default(),
    );
    let problems: Vec<(String, &str, String)> =
        report.problems.iter().map(|p| (p.origin.to_string(), p.check.as_str(), p.message.clone())).collect();
    let hex = |n: u8| d(n).to_string();
    assert_eq!(
        problems,
        vec![
            ("head@h:images/app/images.yaml:9".into(), "lint", "field `dmap`: an empty tag list".into()),
            (
                "base@m:images/app/images.yaml:5".into(),
                "immutable-tags",
                format!("p.example/app:v2 (at {}) is removed; a promoted tag stays", hex(2)),
            ),
            (
                "head@h:images/app/images.yaml:5".into(),
                "immutable-tags",
                format!(
                    "p.example/app:v3 is moved from {} to {}; Ferry never overwrites a tag",
                    hex(3),
                    hex(4)
                ),
            ),
        ]
    );
    assert_eq!(report.conclusion(), Conclusion::Failure);
    assert_eq!(report.title(), "no new digests; 3 other problems");
    // Off by policy: only the lint finding stays.
    let lenient = decide(
        Change { base: Some(&base), head: &head },
        &plan,
        &BTreeMap::new(),
        &TrustPolicy::default(),
        &RepositoryPolicy { immutable_tags: false, ..RepositoryPolicy::default() },
    );
    assert_eq!(lenient.problems.len(), 1);
}

/// A small report with one good digest, one bad, and a lint problem.
fn small_report() -> crate::Report {
    let plan = Plan {
        edges: vec![
            edge(1, "p.example/app", "v1", Action::Copy, 3),
            edge(2, "p.example/app", "v2", Action::Conflict { existing: d(9) }, 5),
        ],
        invalid: Vec::new(),
    };
    let facts: crate::Facts =
        [((repo("staging.example/app"), d(1)), exists(2)), ((repo("staging.example/app"), d(2)), exists(2))]
            .into();
    let head = DesiredState {
        entries: Vec::new(),
        notices: vec![Notice {
            kind: NoticeKind::Invalid,
            origin: Origin::new("head@h:images/app/images.yaml", 7),
            field: "dmap".into(),
            message: "\"sha256:12\" is not a digest".into(),
        }],
    };
    decide_plainly(&head, &plan, &facts)
}

/// `decide` with no base, no trust policy and the default repository policy.
fn decide_plainly(head: &DesiredState, plan: &Plan, facts: &crate::Facts) -> crate::Report {
    decide(Change { base: None, head }, plan, facts, &TrustPolicy::default(), &RepositoryPolicy::default())
}

#[test]
fn markdown_has_the_summary_first_then_a_row_per_digest_with_links() {
    let links = Links { blob_base: Some("https://github.com/o/r/blob/h".into()), ..Links::default() };
    let text = render::markdown(&small_report(), &links);
    let expected = format!(
        "**Ferry check: 2 new digests, 1 with problems; 1 other problem**\n\
         \n\
         - 2 new digests: 1 verified, 1 with problems\n\
         - 1 problem outside them\n\
         - conclusion: failure\n\
         \n\
         | | Image | Tags | Where | Checks |\n\
         |---|---|---|---|---|\n\
         | ✅ | `staging.example/app@sha256:010101010101…` | `v1` | [images/app/images.yaml:3](https://github.com/o/r/blob/h/images/app/images.yaml#L3) | \
         ✅ source-digest: the index and its 2 children exist and hash to their digests<br>\
         ✅ destination: would copy to p.example/app:v1<br>\
         ➖ not checked: reference, signature, provenance, vulnerabilities, multi-arch, required-destinations, allowed-source |\n\
         | ❌ | `staging.example/app@sha256:020202020202…` | `v2` | [images/app/images.yaml:5](https://github.com/o/r/blob/h/images/app/images.yaml#L5) | \
         ❌ **destination**: p.example/app:v2 already points at {}, and Ferry never overwrites a tag<br>\
         ✅ source-digest: the index and its 2 children exist and hash to their digests<br>\
         ➖ not checked: reference, signature, provenance, vulnerabilities, multi-arch, required-destinations, allowed-source |\n\
         \n\
         **Other problems**\n\
         \n\
         - ❌ **lint** [images/app/images.yaml:7](https://github.com/o/r/blob/h/images/app/images.yaml#L7): field `dmap`: \"sha256:12\" is not a digest\n",
        d(9)
    );
    assert_eq!(text, expected);
    // Without links, places are printed as code.
    assert!(render::markdown(&small_report(), &Links::default()).contains("| `images/app/images.yaml:3` |"));
}

#[test]
fn junit_has_a_suite_per_digest_and_one_for_the_repository() {
    let text = render::junit(&small_report());
    let image = |n: u8| format!("staging.example/app@{}", d(n));
    let mut expected = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    expected.push_str("<testsuites name=\"ferry check\" tests=\"19\" failures=\"2\" skipped=\"14\">\n");
    for (n, failures, line) in [(1, 0, 3), (2, 1, 5)] {
        expected.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"9\" failures=\"{failures}\" skipped=\"7\">\n",
            image(n)
        ));
        for name in crate::CHECKS {
            let head = format!(
                "    <testcase classname=\"{}\" name=\"{name}\" file=\"images/app/images.yaml\" line=\"{line}\">\n",
                image(n)
            );
            expected.push_str(&head);
            let body = match (n, name.as_str()) {
                (_, "source-digest") => {
                    "      <system-out>the index and its 2 children exist and hash to their digests</system-out>\n"
                        .to_owned()
                }
                (1, "destination") => "      <system-out>would copy to p.example/app:v1</system-out>\n".to_owned(),
                (2, "destination") => {
                    let reason = format!(
                        "p.example/app:v2 already points at {}, and Ferry never overwrites a tag",
                        d(9)
                    );
                    format!(
                        "      <failure message=\"{reason}\" type=\"destination\">images/app/images.yaml:5: {reason}</failure>\n"
                    )
                }
                _ => {
                    let report = small_report();
                    let reason = &report.digests[0].checks.iter().find(|c| c.name == name).unwrap().reason;
                    format!("      <skipped message=\"{reason}\"/>\n")
                }
            };
            expected.push_str(&body);
            expected.push_str("    </testcase>\n");
        }
        expected.push_str("  </testsuite>\n");
    }
    expected.push_str("  <testsuite name=\"repository\" tests=\"1\" failures=\"1\" skipped=\"0\">\n");
    expected.push_str("    <testcase classname=\"repository\" name=\"lint images/app/images.yaml:7\" file=\"images/app/images.yaml\" line=\"7\">\n");
    expected.push_str("      <failure message=\"field `dmap`: &quot;sha256:12&quot; is not a digest\" type=\"lint\">images/app/images.yaml:7: field `dmap`: &quot;sha256:12&quot; is not a digest</failure>\n");
    expected.push_str("    </testcase>\n  </testsuite>\n</testsuites>\n");
    assert_eq!(text, expected);
}

#[test]
fn json_names_every_check_with_file_and_line() {
    let value: serde_json::Value = serde_json::from_str(&render::json(&small_report()).unwrap()).unwrap();
    assert_eq!(value["conclusion"], "failure");
    assert_eq!(value["digests"][1]["file"], "images/app/images.yaml");
    assert_eq!(value["digests"][1]["line"], 5);
    assert_eq!(value["digests"][1]["status"], "fail");
    assert_eq!(value["digests"][1]["checks"].as_array().unwrap().len(), crate::CHECKS.len());
    assert_eq!(value["problems"][0]["check"], "lint");
    assert_eq!(value["problems"][0]["line"], 7);
}

#[test]
fn a_check_run_carries_50_annotations_and_updates_carry_the_rest() {
    let edges: Vec<PlannedEdge> = (1..=60u8)
        .map(|n| {
            edge(n, "p.example/app", &format!("v{n}"), Action::Conflict { existing: d(200) }, u32::from(n))
        })
        .collect();
    let facts: crate::Facts = (1..=60u8).map(|n| ((repo("staging.example/app"), d(n)), exists(2))).collect();
    let head = DesiredState::default();
    let report = decide(
        Change { base: None, head: &head },
        &Plan { edges, invalid: Vec::new() },
        &facts,
        &TrustPolicy::default(),
        &RepositoryPolicy::default(),
    );
    let run = CheckRun {
        name: "ferry check".into(),
        head_sha: "a".repeat(40),
        details_url: None,
        external_id: None,
    };
    let requests = github::requests(&report, &run, &Links::default());
    assert_eq!(requests.len(), 2);
    let Request::Create(create) = &requests[0] else { panic!("the first request creates") };
    assert_eq!(create["name"], "ferry check");
    assert_eq!(create["head_sha"], "a".repeat(40));
    assert_eq!(create["status"], "completed");
    assert_eq!(create["conclusion"], "failure");
    assert_eq!(create["output"]["title"], "60 new digests, 60 with problems");
    let annotations = create["output"]["annotations"].as_array().unwrap();
    assert_eq!(annotations.len(), 50);
    assert_eq!(annotations[0]["path"], "images/app/images.yaml");
    assert_eq!(annotations[0]["start_line"], 1);
    assert_eq!(annotations[0]["end_line"], 1);
    assert_eq!(annotations[0]["annotation_level"], "failure");
    let Request::Update(update) = &requests[1] else { panic!("then updates") };
    assert_eq!(update["output"]["annotations"].as_array().unwrap().len(), 10);
    assert!(update["output"]["summary"].as_str().unwrap().starts_with("**Ferry check: 60 new digests"));
}
