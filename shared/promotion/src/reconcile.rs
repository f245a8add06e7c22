//! `ferry status` and `ferry reconcile`: desired state against what the registries hold, past
//! the copy. kpromo never retries a failed signing once the image is in prod (kpromo#1946);
//! this finds every promotion that stopped part way and says which stage message would finish
//! it.
//!
//! The plan already knows whether each destination holds the image. What it does not know is
//! whether the primary holds the signatures (`sha256-<hex>.sig` of the digest and of every child
//! of an index) and the promotion attestation (`.att`), and whether each mirror holds every
//! artifact tag the primary holds for the digest and its children. Those are tags, so one tag
//! listing per destination repository answers them for every digest at once; the children of a
//! promoted digest come from one read of its manifest at the primary. When nothing is missing a
//! reconcile costs the plan's one manifest request per edge, one manifest read per promoted
//! digest, and one listing per repository.
//!
//! OCI referrers (cosign v3 bundles, SBOMs, ...) are compared too: a mirror lacking a referrer
//! the primary lists for the digest or a child is incomplete, and a replicate message carries
//! it. On a registry that keeps referrers in `sha256-<hex>` tags, the tag listing already says
//! which digests have any, so only those are looked up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ferry_messages::{
    AttestMessage, CheckName, CheckResult, CheckSummary, ManifestOrigin, ReplicateMessage, SignMessage,
    VerifyMessage,
};
use ferry_model::{Digest, Repository, Tag, TagOrDigest};
use ferry_plan::Plan;
use ferry_registry::ArtifactTags;
use ferry_registry::Registry;
use futures_util::StreamExt as _;

use crate::group::groups;

/// The artifact tags Ferry writes or carries per digest, in the order a stage writes them.
const KINDS: [&str; 3] = ["sig", "att", "sbom"];

/// How deeply `ferry status` and `reconcile` look.
#[derive(Clone, Copy, Debug)]
pub struct Survey {
    pub concurrency: usize,
    /// Read the children of every promoted index and every referrer list, instead of trusting
    /// the listed artifact tags of the digest.
    pub deep: bool,
    /// `signing.formats`: a digest is signed (attested) when it is in every format named.
    pub formats: ferry_trust::Formats,
}

/// The tag names each destination repository holds, and the children of each promoted digest
/// at its primary, or why they could not be read.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    /// Only artifact tags, as flags per digest (millions of tags at k8s.io's scale).
    tags: BTreeMap<Repository, Result<ArtifactTags, String>>,
    children: BTreeMap<(Repository, Digest), Result<Vec<Digest>, String>>,
    /// The referrers each destination lists for a digest (the image or a child).
    referrers: BTreeMap<(Repository, Digest), Result<BTreeSet<Digest>, String>>,
    /// The predicate types of the Sigstore bundles among them.
    bundles: BTreeMap<(Repository, Digest), BTreeSet<String>>,
    /// `signing.formats` (see [`Survey::formats`]).
    formats: ferry_trust::Formats,
}

impl Holdings {
    /// Lists the tags of every destination repository in `plan` (reusing what the plan's
    /// gathering listed), and, when `survey.deep`, reads the manifest of each promoted digest at
    /// its primary for its children and every referrer list; `concurrency` at a time. Without
    /// `deep`, the listed artifact tags of the digest count as its signature and attestation:
    /// one listing per repository and nothing else.
    pub async fn gather<R: Registry>(
        registry: &R,
        plan: &Plan,
        facts: &ferry_plan::Facts,
        survey: Survey,
    ) -> Self {
        let concurrency = survey.concurrency;
        let repositories: BTreeSet<Repository> = plan.edges.iter().map(|e| e.destination.clone()).collect();
        let listed: Vec<(Repository, Result<ArtifactTags, String>)> =
            futures_util::stream::iter(repositories)
                .map(|repository| async move {
                    // Only artifact tags are ever asked about: keep only those.
                    if let Some(tags) = facts.listed_artifact_tags(&repository) {
                        return (repository, Ok(tags.clone()));
                    }
                    let tags = registry
                        .list_tags(&repository)
                        .await
                        .map(|tags| tags.iter().map(Tag::as_str).collect())
                        .map_err(|e| e.to_string());
                    (repository, tags)
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        if !survey.deep {
            return Self { tags: listed.into_iter().collect(), formats: survey.formats, ..Self::default() };
        }
        let at_primary: Vec<(Repository, Digest)> = groups(plan)
            .into_iter()
            .filter_map(|((_, digest), group)| {
                let primary = group.primary()?;
                (!group.pending.contains(&primary.repository)).then(|| (primary.repository.clone(), digest))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let children: Vec<((Repository, Digest), Result<Vec<Digest>, String>)> =
            futures_util::stream::iter(at_primary)
                .map(|(repository, digest)| async move {
                    let children =
                        match registry.get_manifest(&repository, &TagOrDigest::Digest(digest)).await {
                            Ok(Some(raw)) => raw
                                .content()
                                .map(|c| c.children().iter().map(|d| d.digest).collect())
                                .map_err(|e| e.to_string()),
                            Ok(None) => Err(format!("{repository}@{digest} is gone")),
                            Err(e) => Err(e.to_string()),
                        };
                    ((repository, digest), children)
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
        let mut holdings = Self {
            tags: listed.into_iter().collect(),
            children: children.into_iter().collect(),
            ..Self::default()
        };
        // The referrers of every target at every destination that holds the image.
        let mut wanted: BTreeSet<(Repository, Digest)> = BTreeSet::new();
        for ((_, digest), group) in groups(plan) {
            let Some(primary) = group.primary() else { continue };
            let Ok(targets) = holdings.targets(&primary.repository, digest) else { continue };
            for destination in group.destinations.iter().filter(|d| !group.pending.contains(&d.repository)) {
                for target in &targets {
                    wanted.insert((destination.repository.clone(), *target));
                }
            }
        }
        let holdings_ref = &holdings;
        #[allow(clippy::type_complexity, reason = "a lookup's key and its answer, collected once")]
        let looked_up: Vec<(
            (Repository, Digest),
            Result<(BTreeSet<Digest>, BTreeSet<String>), String>,
        )> = futures_util::stream::iter(wanted)
            .map(|(repository, target)| async move {
                // The tag schema: no `sha256-<hex>` tag, no referrers; no request.
                let untagged = holdings_ref.listing(&repository).is_ok_and(|held| {
                    ferry_registry::referrers::listing_rules_out(
                        registry.referrers_mode(repository.host()),
                        &target,
                        |tag| held.contains(tag.as_str()),
                    )
                });
                let listed = if untagged {
                    Ok((BTreeSet::new(), BTreeSet::new()))
                } else {
                    registry
                        .referrers(&repository, &target, None)
                        .await
                        .map(|list| {
                            let bundles = list
                                .iter()
                                .filter(|r| {
                                    r.artifact_type
                                        .as_deref()
                                        .is_some_and(|t| t.starts_with("application/vnd.dev.sigstore.bundle"))
                                })
                                .filter_map(|r| {
                                    r.annotations.get(ferry_trust::bundle::PREDICATE_TYPE_ANNOTATION).cloned()
                                })
                                .collect();
                            (list.into_iter().map(|r| r.digest).collect(), bundles)
                        })
                        .map_err(|e| e.to_string())
                };
                ((repository, target), listed)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (key, listed) in looked_up {
            let listed = listed.map(|(digests, bundles)| {
                holdings.bundles.insert(key.clone(), bundles);
                digests
            });
            holdings.referrers.insert(key, listed);
        }
        holdings.formats = survey.formats;
        holdings
    }

    /// Whether `repository` lists a Sigstore bundle of `predicate_type` for every one of
    /// `targets` (the bundle format of a signature or an attestation).
    /// Read (`--deep`): the bundles' predicate types. Not read (fast status): the listed
    /// referrers tag (`sha256-<hex>`) of each target counts, as listed `.sig` tags do for the
    /// legacy format; a registry that serves the referrers API has no such tag, and there only
    /// `--deep` sees bundles.
    fn has_bundles(&self, repository: &Repository, targets: &[Digest], predicate_type: &str) -> Held {
        for target in targets {
            let key = (repository.clone(), *target);
            match self.referrers.get(&key) {
                Some(Err(reason)) => return Held::Unknown(reason.clone()),
                Some(Ok(_)) if self.bundles.get(&key).is_some_and(|b| b.contains(predicate_type)) => {}
                Some(Ok(_)) => return Held::No,
                None => match self.listing(repository) {
                    Ok(held) if held.contains(target.tag_form().as_str()) => {}
                    Ok(_) => return Held::No,
                    Err(reason) => return Held::Unknown(reason),
                },
            }
        }
        Held::Yes
    }

    /// Signed (or attested) in every format `signing.formats` names: the legacy tags
    /// `tags`, and bundles of `predicate_type` for `targets`.
    fn in_formats(
        &self,
        repository: &Repository,
        tags: &[String],
        targets: &[Digest],
        predicate_type: &str,
    ) -> Held {
        let legacy = if self.formats.legacy { self.has_all(repository, tags) } else { Held::Yes };
        let bundle = if self.formats.bundle {
            self.has_bundles(repository, targets, predicate_type)
        } else {
            Held::Yes
        };
        match (legacy, bundle) {
            (Held::Unknown(r), _) | (_, Held::Unknown(r)) => Held::Unknown(r),
            (Held::Yes, Held::Yes) => Held::Yes,
            _ => Held::No,
        }
    }

    /// Counts signed and attested in `formats` (the default: both formats).
    pub fn with_formats(mut self, formats: ferry_trust::Formats) -> Self {
        self.formats = formats;
        self
    }

    /// Records the predicate types of the Sigstore bundles `repository` lists for `digest`
    /// (with [`Self::insert_referrers`]).
    pub fn insert_bundles(&mut self, repository: Repository, digest: Digest, predicate_types: &[&str]) {
        self.bundles.insert((repository, digest), predicate_types.iter().map(|p| (*p).to_owned()).collect());
    }

    /// Records the referrers `repository` lists for `digest`.
    pub fn insert_referrers(
        &mut self,
        repository: Repository,
        digest: Digest,
        referrers: Result<BTreeSet<Digest>, String>,
    ) {
        self.referrers.insert((repository, digest), referrers);
    }

    /// The referrers `repository` lists for each of `targets`, as `(subject, referrer)` pairs;
    /// nothing for a pair that was not looked up.
    fn referrers_of(
        &self,
        repository: &Repository,
        targets: &[Digest],
    ) -> Result<BTreeSet<(Digest, Digest)>, String> {
        let mut out = BTreeSet::new();
        for target in targets {
            match self.referrers.get(&(repository.clone(), *target)) {
                Some(Ok(list)) => out.extend(list.iter().map(|r| (*target, *r))),
                Some(Err(reason)) => return Err(reason.clone()),
                None => {}
            }
        }
        Ok(out)
    }

    /// Records a repository's tags (tests, and callers that listed them already).
    pub fn insert(&mut self, repository: Repository, tags: Result<BTreeSet<String>, String>) {
        let tags = tags.map(|tags| tags.iter().map(String::as_str).collect());
        self.tags.insert(repository, tags);
    }

    /// Records the children of `digest` at `primary`.
    pub fn insert_children(
        &mut self,
        primary: Repository,
        digest: Digest,
        children: Result<Vec<Digest>, String>,
    ) {
        self.children.insert((primary, digest), children);
    }

    fn listing(&self, repository: &Repository) -> Result<&ArtifactTags, String> {
        match self.tags.get(repository) {
            Some(Ok(tags)) => Ok(tags),
            Some(Err(reason)) => Err(reason.clone()),
            None => Err(format!("{repository} was not listed")),
        }
    }

    /// Whether `repository` has every one of `tags`.
    fn has_all(&self, repository: &Repository, tags: &[String]) -> Held {
        match self.listing(repository) {
            Ok(held) if tags.iter().all(|t| held.contains(t.as_str())) => Held::Yes,
            Ok(_) => Held::No,
            Err(reason) => Held::Unknown(reason),
        }
    }

    /// The digest and its children at the primary (the digest alone when it was not read).
    fn targets(&self, primary: &Repository, digest: Digest) -> Result<Vec<Digest>, String> {
        match self.children.get(&(primary.clone(), digest)) {
            Some(Ok(children)) => Ok(std::iter::once(digest).chain(children.iter().copied()).collect()),
            Some(Err(reason)) => Err(reason.clone()),
            None => Ok(vec![digest]),
        }
    }
}

/// Whether a destination holds something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    Yes,
    No,
    /// The registry could not be asked; nothing is decided or emitted for it.
    Unknown(String),
    /// Not applicable: a refused destination gets nothing.
    NotApplicable,
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Yes => f.write_str("yes"),
            Held::No => f.write_str("no"),
            Held::Unknown(reason) => write!(f, "unknown ({reason})"),
            Held::NotApplicable => f.write_str("-"),
        }
    }
}

/// One destination of one promotion, as the registries show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationStatus {
    pub repository: Repository,
    pub primary: bool,
    pub tags: Vec<String>,
    /// The image and its tags are there.
    pub copied: Held,
    /// The signatures of the digest and of every child of an index are there.
    pub signed: Held,
    /// Its promotion attestation (`.att`) is there.
    pub attested: Held,
    /// At a mirror: the artifact tags the primary holds for the digest and its children and
    /// this mirror lacks.
    pub missing: Vec<String>,
    /// Why the plan refused this destination (a conflicting tag, a prerelease, an overlap).
    pub refused: Option<String>,
}

impl DestinationStatus {
    /// Copied, signed and attested, with every artifact the primary has (or refused, and left
    /// alone).
    pub fn is_complete(&self) -> bool {
        self.refused.is_none()
            && self.missing.is_empty()
            && [&self.copied, &self.signed, &self.attested].iter().all(|h| **h == Held::Yes)
    }
}

/// One (source, digest) and where it stands at each destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionStatus {
    pub source: Repository,
    pub digest: Digest,
    /// The children of an index, as the primary holds them.
    pub children: Vec<Digest>,
    pub destinations: Vec<DestinationStatus>,
    /// Why the source lacks it, when it does.
    pub missing_source: Option<String>,
}

/// The stage messages that finish what stopped part way. Each is the first stage still
/// missing; the stages after it follow on their own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Repair {
    /// Some destination lacks the image or a tag: verify, then copy, sign, attest, replicate.
    pub verify: Vec<VerifyMessage>,
    /// Everything is copied but the primary lacks a signature (of the digest or a child): sign,
    /// then attest, copy to the mirrors (present: cheap), replicate.
    pub sign: Vec<SignMessage>,
    /// Signed but not attested: attest, then the rest.
    pub attest: Vec<AttestMessage>,
    /// Signed and attested at the primary, but a mirror lacks one of the primary's artifacts.
    pub replicate: Vec<ReplicateMessage>,
}

impl Repair {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.verify.len() + self.sign.len() + self.attest.len() + self.replicate.len()
    }
}

/// Re-emitted sign and attest messages did not pass through the verifier in this run; the
/// attestation says so rather than inventing checks.
fn reconcile_note() -> Vec<CheckSummary> {
    vec![CheckSummary {
        check: CheckName::Reconcile,
        result: CheckResult::Skip,
        reason: "re-emitted by ferry reconcile: the image was already at every destination, \
                 verified when it was first copied"
            .into(),
    }]
}

fn artifact_tags(targets: &[Digest], kind: &str) -> Vec<String> {
    targets.iter().map(|d| format!("{}.{kind}", d.tag_form())).collect()
}

/// Where every promotion in `plan` stands, and the messages that would finish it. Pure.
pub fn reconcile(
    plan: &Plan,
    holdings: &Holdings,
    origin: Option<ManifestOrigin>,
) -> (Vec<PromotionStatus>, Repair) {
    let mut statuses = Vec::new();
    let mut repair = Repair::default();
    for ((source, digest), group) in groups(plan) {
        let primary = group.primary();
        let targets = match primary {
            Some(p) => holdings.targets(&p.repository, digest),
            None => Ok(vec![digest]),
        };
        let att = artifact_tags(&[digest], "att");
        // What the primary holds of every artifact kind, for the digest and its children.
        let primary_artifacts: Result<Vec<String>, String> = match (primary, &targets) {
            (Some(p), Ok(targets)) => holdings.listing(&p.repository).map(|held| {
                KINDS
                    .iter()
                    .flat_map(|kind| artifact_tags(targets, kind))
                    .filter(|t| held.contains(t.as_str()))
                    .collect()
            }),
            (_, Err(reason)) => Err(reason.clone()),
            (None, Ok(_)) => Ok(Vec::new()),
        };
        let mut destinations: Vec<DestinationStatus> = group
            .destinations
            .iter()
            .map(|d| {
                let copied = if group.pending.contains(&d.repository) { Held::No } else { Held::Yes };
                let signed = match &targets {
                    Ok(targets) => holdings.in_formats(
                        &d.repository,
                        &artifact_tags(targets, "sig"),
                        targets,
                        ferry_trust::bundle::COSIGN_SIGN_PREDICATE_TYPE,
                    ),
                    Err(reason) => Held::Unknown(reason.clone()),
                };
                let mut missing: Vec<String> = match (&primary_artifacts, holdings.listing(&d.repository)) {
                    (Ok(wanted), Ok(held)) if !d.primary && copied == Held::Yes => {
                        wanted.iter().filter(|t| !held.contains(t.as_str())).cloned().collect()
                    }
                    _ => Vec::new(),
                };
                // Referrers the primary lists and this mirror does not.
                if let (Some(p), Ok(targets)) = (primary, &targets)
                    && !d.primary
                    && copied == Held::Yes
                    && let (Ok(at_primary), Ok(here)) = (
                        holdings.referrers_of(&p.repository, targets),
                        holdings.referrers_of(&d.repository, targets),
                    )
                {
                    missing.extend(
                        at_primary
                            .difference(&here)
                            .map(|(subject, referrer)| format!("referrer {referrer} of {subject}")),
                    );
                }
                DestinationStatus {
                    repository: d.repository.clone(),
                    primary: d.primary,
                    tags: d.tags.iter().map(|t| t.as_str().to_owned()).collect(),
                    copied,
                    signed,
                    attested: holdings.in_formats(
                        &d.repository,
                        &att,
                        &[digest],
                        ferry_trust::cosign::PROMOTION_PREDICATE_TYPE,
                    ),
                    missing,
                    refused: None,
                }
            })
            .collect();
        destinations.extend(group.refused.iter().map(|r| DestinationStatus {
            repository: r.destination.repository.clone(),
            primary: r.destination.primary,
            tags: r.destination.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            copied: Held::NotApplicable,
            signed: Held::NotApplicable,
            attested: Held::NotApplicable,
            missing: Vec::new(),
            refused: Some(r.reason.clone()),
        }));
        let children = targets.as_ref().map(|t| t[1..].to_vec()).unwrap_or_default();
        let promotion = group.promotion(&source, digest, group.destinations.clone(), origin.as_ref());
        let primary_status = destinations.iter().find(|d| d.primary && d.refused.is_none()).cloned();
        let mirrors_missing: Vec<Repository> = destinations
            .iter()
            .filter(|d| !d.primary && d.refused.is_none() && !d.missing.is_empty())
            .map(|d| d.repository.clone())
            .collect();
        statuses.push(PromotionStatus {
            source: source.clone(),
            digest,
            children,
            destinations,
            missing_source: (!group.missing.is_empty()).then(|| group.missing.join("; ")),
        });

        if group.destinations.is_empty() {
            continue;
        }
        if group.work {
            repair.verify.push(VerifyMessage { promotion, refused: group.refused.clone() });
            continue;
        }
        // Everything is copied. Signing happens at the primary; without one (it was refused)
        // there is nothing to sign or replicate from.
        let (Some(primary), Some(status)) = (primary, primary_status) else { continue };
        match (&status.signed, &status.attested) {
            (Held::No, _) => repair.sign.push(SignMessage { promotion, verification: reconcile_note() }),
            (Held::Yes, Held::No) => {
                repair.attest.push(AttestMessage {
                    promotion,
                    verification: reconcile_note(),
                    primary_referrers: None,
                });
            }
            (Held::Yes, Held::Yes) => {
                for mirror in mirrors_missing {
                    repair.replicate.push(ReplicateMessage {
                        primary: primary.repository.clone(),
                        mirror,
                        digest,
                        copied: false,
                    });
                }
            }
            // A listing or a read failed: decide nothing about this promotion.
            _ => {}
        }
    }
    (statuses, repair)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use ferry_model::{Origin, Tag};
    use ferry_plan::{Action, PlannedEdge};

    use super::*;

    fn repo(s: &str) -> Repository {
        Repository::parse(s).unwrap()
    }

    /// One digest promoted from staging to prod (primary) and two mirrors, tagged 1.0.
    fn plan(actions: [Action; 3]) -> Plan {
        let destinations = ["prod.example/app", "m1.example/app", "m2.example/app"];
        Plan {
            edges: destinations
                .iter()
                .zip(actions)
                .enumerate()
                .map(|(i, (d, action))| PlannedEdge {
                    source: repo("staging.example/app"),
                    source_trusted: false,
                    source_tag: None,
                    digest: Some(Digest::of(b"app")),
                    destination: repo(d),
                    primary: i == 0,
                    tag: Some(Tag::parse("1.0").unwrap()),
                    action,
                    origin: Origin::new("images.yaml", 1),
                })
                .collect(),
            invalid: Vec::new(),
        }
    }

    /// `held[i]` lists what destination i has besides the image: "sig", "att".
    const LEGACY: ferry_trust::Formats = ferry_trust::Formats { legacy: true, bundle: false };

    fn holdings(held: [&[&str]; 3]) -> Holdings {
        let digest = Digest::of(b"app");
        let mut h = Holdings::default().with_formats(LEGACY);
        for (d, have) in ["prod.example/app", "m1.example/app", "m2.example/app"].iter().zip(held) {
            let mut tags: BTreeSet<String> = BTreeSet::from(["1.0".to_owned()]);
            tags.extend(have.iter().map(|kind| format!("{}.{kind}", digest.tag_form())));
            h.insert(repo(d), Ok(tags));
        }
        h
    }

    #[test]
    fn only_the_first_missing_stage_is_emitted() {
        use Action::{Copy, Present};
        let all: &[&str] = &["sig", "att"];
        let none: &[&str] = &[];
        let sig: &[&str] = &["sig"];
        /// (case, plan actions, holdings, verify, sign, attest, replicate to)
        type Case<'a> = (&'a str, [Action; 3], [&'a [&'a str]; 3], usize, usize, usize, Vec<&'a str>);
        let table: Vec<Case> = vec![
            ("complete: nothing", [Present, Present, Present], [all, all, all], 0, 0, 0, vec![]),
            ("a mirror lacks the image", [Present, Copy, Present], [all, none, all], 1, 0, 0, vec![]),
            ("prod lacks the image", [Copy, Present, Present], [none, all, all], 1, 0, 0, vec![]),
            (
                "copied, never signed (kpromo#1946)",
                [Present, Present, Present],
                [none, none, none],
                0,
                1,
                0,
                vec![],
            ),
            ("signed, not attested", [Present, Present, Present], [sig, none, none], 0, 0, 1, vec![]),
            (
                "one mirror lacks both",
                [Present, Present, Present],
                [all, all, none],
                0,
                0,
                0,
                vec!["m2.example/app"],
            ),
            (
                "mirrors lack the attestation",
                [Present, Present, Present],
                [all, sig, sig],
                0,
                0,
                0,
                vec!["m1.example/app", "m2.example/app"],
            ),
        ];
        for (case, actions, held, verify, sign, attest, replicate) in table {
            let (status, repair) = reconcile(&plan(actions), &holdings(held), None);
            assert_eq!(repair.verify.len(), verify, "{case}: verify");
            assert_eq!(repair.sign.len(), sign, "{case}: sign");
            assert_eq!(repair.attest.len(), attest, "{case}: attest");
            let to: Vec<String> = repair.replicate.iter().map(|r| r.mirror.to_string()).collect();
            assert_eq!(to, replicate, "{case}: replicate");
            assert!(repair.replicate.iter().all(|r| r.primary == repo("prod.example/app")), "{case}");
            assert_eq!(status.len(), 1, "{case}");
            let complete = status[0].destinations.iter().all(DestinationStatus::is_complete);
            assert_eq!(complete, repair.is_empty(), "{case}: status agrees with the repair");
        }
    }

    #[test]
    fn a_failed_listing_decides_nothing_and_a_conflict_is_reported() {
        use Action::Present;
        let mut h = holdings([&[], &[], &[]]);
        h.insert(repo("prod.example/app"), Err("503 from prod.example".into()));
        let (status, repair) = reconcile(&plan([Present, Present, Present]), &h, None);
        assert!(repair.is_empty(), "{repair:?}");
        assert!(matches!(&status[0].destinations[0].signed, Held::Unknown(r) if r.contains("503")));

        let conflict = Action::Conflict { existing: Digest::of(b"other") };
        let (status, repair) =
            reconcile(&plan([Present, conflict, Present]), &holdings([&["sig", "att"], &[], &[]]), None);
        let refused = status[0].destinations.iter().find(|d| d.refused.is_some()).unwrap();
        assert_eq!(refused.repository, repo("m1.example/app"));
        assert!(refused.refused.as_ref().unwrap().contains("conflict"));
        // The conflicting mirror gets nothing; the other one gets what it lacks.
        let to: Vec<String> = repair.replicate.iter().map(|r| r.mirror.to_string()).collect();
        assert_eq!(to, ["m2.example/app"]);
    }

    #[test]
    fn every_child_of_an_index_is_part_of_the_promotion() {
        use Action::Present;
        let digest = Digest::of(b"app");
        let children = [Digest::of(b"amd64"), Digest::of(b"arm64")];
        let tag = |d: &Digest, kind: &str| format!("{}.{kind}", d.tag_form());
        let everything: Vec<String> = std::iter::once(&digest)
            .chain(&children)
            .map(|d| tag(d, "sig"))
            .chain([tag(&digest, "att")])
            .collect();
        let without =
            |missing: &str| -> Vec<String> { everything.iter().filter(|t| *t != missing).cloned().collect() };
        let child_sig = tag(&children[1], "sig");
        /// (case, what prod, m1, m2 hold, sign, replicate to, incomplete destinations)
        type Case<'a> = (&'a str, [Vec<String>; 3], usize, Vec<&'a str>, Vec<&'a str>);
        let table: Vec<Case> = vec![
            ("complete", [everything.clone(), everything.clone(), everything.clone()], 0, vec![], vec![]),
            (
                "prod lacks a child's signature: sign again (signing skips what is signed)",
                [without(&child_sig), everything.clone(), everything.clone()],
                1,
                vec![],
                vec!["prod.example/app"],
            ),
            (
                "a mirror lacks a child's signature: replicate to it",
                [everything.clone(), everything.clone(), without(&child_sig)],
                0,
                vec!["m2.example/app"],
                vec!["m2.example/app"],
            ),
        ];
        for (case, held, sign, replicate, incomplete) in table {
            let mut h = Holdings::default().with_formats(LEGACY);
            for (d, have) in ["prod.example/app", "m1.example/app", "m2.example/app"].iter().zip(held) {
                let mut tags: BTreeSet<String> = BTreeSet::from(["1.0".to_owned()]);
                tags.extend(have);
                h.insert(repo(d), Ok(tags));
            }
            h.insert_children(repo("prod.example/app"), digest, Ok(children.to_vec()));
            let (status, repair) = reconcile(&plan([Present, Present, Present]), &h, None);
            assert_eq!(repair.sign.len(), sign, "{case}: sign");
            let to: Vec<String> = repair.replicate.iter().map(|r| r.mirror.to_string()).collect();
            assert_eq!(to, replicate, "{case}: replicate");
            let not_done: Vec<String> = status[0]
                .destinations
                .iter()
                .filter(|d| !d.is_complete())
                .map(|d| d.repository.to_string())
                .collect();
            assert_eq!(not_done, incomplete, "{case}: incomplete");
            assert_eq!(status[0].children, children, "{case}");
        }
        // The children could not be read: nothing is decided.
        let mut h = holdings([&["sig", "att"], &["sig", "att"], &[]]);
        h.insert_children(repo("prod.example/app"), digest, Err("503".into()));
        let (_, repair) = reconcile(&plan([Present, Present, Present]), &h, None);
        assert!(repair.is_empty(), "{repair:?}");
    }

    #[test]
    fn with_bundles_only_a_digest_is_signed_and_attested_by_its_bundles() {
        use Action::Present;
        let digest = Digest::of(b"app");
        let (sign, promotion) =
            (ferry_trust::bundle::COSIGN_SIGN_PREDICATE_TYPE, ferry_trust::cosign::PROMOTION_PREDICATE_TYPE);
        let bundles = ferry_trust::Formats { legacy: false, bundle: true };
        // (case, the predicate types of the bundles each destination lists, sign, attest, replicate)
        type Case<'a> = (&'a str, [&'a [&'a str]; 3], usize, usize, usize);
        let cases: [Case; 4] = [
            (
                "complete, without a single .sig tag",
                [&[sign, promotion], &[sign, promotion], &[sign, promotion]],
                0,
                0,
                0,
            ),
            ("no bundle at prod: sign", [&[], &[], &[]], 1, 0, 0),
            ("signed, the promotion bundle missing: attest", [&[sign], &[sign], &[sign]], 0, 1, 0),
            ("a mirror lacks them: replicate", [&[sign, promotion], &[], &[sign, promotion]], 0, 0, 1),
        ];
        for (case, listed, n_sign, n_attest, n_replicate) in cases {
            let mut h = holdings([&[], &[], &[]]).with_formats(bundles);
            for (d, predicates) in ["prod.example/app", "m1.example/app", "m2.example/app"].iter().zip(listed)
            {
                let referrers = predicates.iter().map(|p| Digest::of(p.as_bytes())).collect();
                h.insert_referrers(repo(d), digest, Ok(referrers));
                h.insert_bundles(repo(d), digest, predicates);
            }
            let (_, repair) = reconcile(&plan([Present, Present, Present]), &h, None);
            assert_eq!(
                (repair.sign.len(), repair.attest.len(), repair.replicate.len()),
                (n_sign, n_attest, n_replicate),
                "{case}"
            );
        }
    }
}
