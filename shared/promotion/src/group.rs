//! A plan grouped by (source, digest): the promotions it holds.

use std::collections::{BTreeMap, BTreeSet};

use ferry_messages::{DestinationTags, ManifestOrigin, Promotion, Refused, VerifyMessage};
use ferry_model::{Digest, Repository, Tag};
use ferry_plan::{Action, Plan};

/// The messages a plan turns into.
#[derive(Debug, Default)]
pub struct Promotions {
    /// One per (source, digest) with work or a refused destination: its destinations (present
    /// ones too, so that the primary is always known) and the destinations the plan refused.
    pub verify: Vec<VerifyMessage>,
    /// (source, digest) groups whose source lacks the image: dead-lettered with the reason, as
    /// the verify message a replay should run once the image exists.
    pub missing: Vec<(VerifyMessage, String)>,
}

/// Everything the plan says about one (source, digest).
#[derive(Debug, Default)]
pub(crate) struct Group {
    /// Destinations that hold it or will (copy, add-tag, present), tags merged.
    pub(crate) destinations: Vec<DestinationTags>,
    pub(crate) refused: Vec<Refused>,
    pub(crate) missing: Vec<String>,
    /// Some destination needs a copy or a tag.
    pub(crate) work: bool,
    /// The destinations that need a copy or a tag.
    pub(crate) pending: BTreeSet<Repository>,
    pub(crate) source_tag: Option<Tag>,
    pub(crate) trusted: bool,
    pub(crate) path: Option<String>,
}

impl Group {
    pub(crate) fn promotion(
        &self,
        source: &Repository,
        digest: Digest,
        destinations: Vec<DestinationTags>,
        origin: Option<&ManifestOrigin>,
    ) -> Promotion {
        Promotion {
            source: source.clone(),
            digest,
            source_tag: self.source_tag.clone(),
            source_trusted: self.trusted,
            destinations,
            origin: origin.cloned().map(|mut o| {
                o.path = self.path.clone();
                o
            }),
        }
    }

    /// The primary destination, when the plan did not refuse it.
    pub(crate) fn primary(&self) -> Option<&DestinationTags> {
        self.destinations.iter().find(|d| d.primary)
    }
}

/// A plan grouped by (source, digest). Pure.
pub(crate) fn groups(plan: &Plan) -> BTreeMap<(Repository, Digest), Group> {
    let mut groups: BTreeMap<(Repository, Digest), Group> = BTreeMap::new();
    for edge in &plan.edges {
        let Some(digest) = edge.digest else { continue };
        let group = groups.entry((edge.source.clone(), digest)).or_default();
        group.source_tag = group.source_tag.take().or(edge.source_tag.clone());
        group.trusted |= edge.source_trusted;
        group.path.get_or_insert_with(|| edge.origin.source.to_string());
        let destination = DestinationTags {
            repository: edge.destination.clone(),
            tags: edge.tag.iter().cloned().collect(),
            primary: edge.primary,
            known_absent: edge.action == Action::Copy,
        };
        match &edge.action {
            Action::Copy | Action::AddTag | Action::Present => {
                if edge.action.is_work() {
                    group.work = true;
                    group.pending.insert(edge.destination.clone());
                }
                match group.destinations.iter_mut().find(|d| d.repository == destination.repository) {
                    Some(existing) => {
                        existing.tags.extend(destination.tags);
                        existing.primary |= destination.primary;
                        existing.known_absent &= destination.known_absent;
                    }
                    None => group.destinations.push(destination),
                }
            }
            Action::MissingSource => group.missing.push(format!("{edge}: {}", edge.action)),
            Action::Conflict { .. }
            | Action::Prerelease
            | Action::Overlap { .. }
            | Action::Unchecked { .. } => {
                group.refused.push(Refused { destination, reason: format!("{edge}: {}", edge.action) });
            }
        }
    }
    // One primary per promotion. Entries that each name a single destination (an images-list
    // line, a config.yaml target repository, separate kpromo manifests) all come as "primary":
    // the first in plan order stays the primary, where Ferry signs; the others become its
    // mirrors, copied and given the signatures after it.
    for group in groups.values_mut() {
        let mut seen = false;
        for destination in &mut group.destinations {
            if destination.primary {
                destination.primary = !seen;
                seen = true;
            }
        }
    }
    groups
}

/// Groups a plan by (source, digest) into the messages it turns into. Pure.
pub fn promotions(plan: &Plan, origin: Option<ManifestOrigin>) -> Promotions {
    let mut out = Promotions::default();
    for ((source, digest), group) in groups(plan) {
        if !group.missing.is_empty() && !group.work {
            let verify = VerifyMessage {
                promotion: group.promotion(&source, digest, Vec::new(), origin.as_ref()),
                refused: Vec::new(),
            };
            out.missing.push((verify, group.missing.join("; ")));
            continue;
        }
        if group.work || !group.refused.is_empty() {
            let promotion = group.promotion(&source, digest, group.destinations.clone(), origin.as_ref());
            out.verify.push(VerifyMessage { promotion, refused: group.refused });
        }
    }
    out
}
