//! The pure planning function.

use std::fmt;
use std::sync::Arc;

use ferry_model::{DesiredState, Digest, Edge, Origin, Repository, Tag, TagOrDigest};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::facts::{Facts, resolve};

/// What must happen for one edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The destination lacks the manifest: copy it (and its blobs and children), then tag.
    Copy,
    /// The destination has the manifest but not the tag: only write the tag.
    AddTag,
    /// Nothing to do.
    Present,
    /// The destination tag points at another digest. Never overwritten.
    Conflict { existing: Digest },
    /// Neither the source nor the destination has the digest (M \ (S ∪ D)), or a source tag
    /// could not be found in any source.
    MissingSource,
    /// Two or more digests are aimed at this destination tag.
    Overlap { digests: Vec<Digest> },
    /// A prerelease tag aimed at a destination that refuses them.
    Prerelease,
    /// A registry lookup this edge depends on failed; nothing was decided.
    Unchecked { reason: Arc<str> },
}

impl Action {
    /// Whether this edge is reported and left out of the promotion.
    pub fn is_excluded(&self) -> bool {
        !matches!(self, Action::Copy | Action::AddTag | Action::Present)
    }

    /// Whether this edge needs work.
    pub fn is_work(&self) -> bool {
        matches!(self, Action::Copy | Action::AddTag)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Copy => "copy",
            Action::AddTag => "add-tag",
            Action::Present => "present",
            Action::Conflict { .. } => "conflict",
            Action::MissingSource => "missing-source",
            Action::Overlap { .. } => "overlap",
            Action::Prerelease => "prerelease",
            Action::Unchecked { .. } => "unchecked",
        }
    }

    /// Every action, in the order reports list them.
    pub const NAMES: [&'static str; 8] =
        ["copy", "add-tag", "present", "conflict", "missing-source", "overlap", "prerelease", "unchecked"];
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Conflict { existing } => write!(f, "conflict: the tag already points at {existing}"),
            Action::Overlap { digests } => {
                let list: Vec<String> = digests.iter().map(ToString::to_string).collect();
                write!(f, "overlap: {} digests are aimed at this tag ({})", digests.len(), list.join(", "))
            }
            Action::MissingSource => {
                write!(f, "missing source: neither the source nor the destination has it")
            }
            Action::Prerelease => {
                write!(f, "refused: prerelease tag for a destination that denies prereleases")
            }
            Action::Unchecked { reason } => write!(f, "unchecked: {reason}"),
            other => f.write_str(other.name()),
        }
    }
}

/// One edge and its action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEdge {
    /// The source the image comes from (the first candidate that has it).
    pub source: Repository,
    /// Signatures from this source may be copied along with the image.
    pub source_trusted: bool,
    /// The tag the input named at the source (images-list, charts sync), if any.
    pub source_tag: Option<Tag>,
    /// The digest promoted; `None` only when a source tag could not be resolved.
    pub digest: Option<Digest>,
    pub destination: Repository,
    /// Whether the destination is its entry's first: signing happens there.
    pub primary: bool,
    pub tag: Option<Tag>,
    pub action: Action,
    pub origin: Origin,
}

impl PlannedEdge {
    /// The model edge, when the digest is known.
    pub fn edge(&self) -> Option<Edge> {
        Some(Edge {
            source: self.source.clone(),
            digest: self.digest?,
            destination: self.destination.clone(),
            tag: self.tag.clone(),
        })
    }
}

impl fmt::Display for PlannedEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.digest, &self.source_tag) {
            (Some(d), _) => write!(f, "{}@{d}", self.source)?,
            (None, Some(t)) => write!(f, "{}:{t}", self.source)?,
            (None, None) => write!(f, "{}", self.source)?,
        }
        write!(f, " -> {}", self.destination)?;
        match &self.tag {
            Some(tag) => write!(f, ":{tag}"),
            None => write!(f, " (tagless)"),
        }
    }
}

/// A complete plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub edges: Vec<PlannedEdge>,
    /// Entries of the input that cannot be valid (a bad digest, tag or name): left out, and
    /// reported with action `invalid`. Counted as excluded.
    pub invalid: Vec<ferry_model::Notice>,
}

impl Plan {
    /// `(action name, count)` for every action, in report order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: FxHashMap<&'static str, usize> = FxHashMap::default();
        for edge in &self.edges {
            *counts.entry(edge.action.name()).or_default() += 1;
        }
        Action::NAMES.iter().map(|name| (*name, counts.get(name).copied().unwrap_or(0))).collect()
    }

    pub fn n_excluded(&self) -> usize {
        self.edges.iter().filter(|e| e.action.is_excluded()).count() + self.invalid.len()
    }
}

/// Decides every edge of `desired` from `facts`. Pure: no I/O, and the same inputs always give
/// the same plan, in input order.
///
/// Identical edges (the same image repeated across list entries) are merged. Then, in order of
/// precedence: a prerelease tag for a `deny_prerelease` destination is refused; two digests
/// aimed at one destination tag are all reported as an overlap; the rest are decided by what
/// the destination and source hold.
pub fn plan(desired: &DesiredState, facts: &Facts) -> Plan {
    let mut edges: Vec<PlannedEdge> = Vec::with_capacity(desired.n_edges());
    let mut seen: FxHashSet<(Repository, Option<Digest>, Repository, Option<Tag>)> = FxHashSet::default();
    seen.reserve(desired.n_edges());
    // Which digests are aimed at each (destination, tag).
    let mut aimed: FxHashMap<(Repository, Tag), Vec<Digest>> = FxHashMap::default();

    for entry in &desired.entries {
        let resolved = resolve(entry, facts);
        let (source_index, digest) = match resolved {
            Some((index, digest)) => (index, Some(digest)),
            None => (0, None),
        };
        let Some(source) = entry.sources.get(source_index) else { continue };
        let source_tag = match &entry.pin {
            TagOrDigest::Tag(tag) => Some(tag.clone()),
            TagOrDigest::Digest(_) => None,
        };
        // A tag pin whose lookup failed is unchecked, not missing.
        let source_failure = match (&entry.pin, digest) {
            (TagOrDigest::Tag(tag), None) => {
                entry.sources.iter().find_map(|s| facts.tag(&s.repository, tag).err())
            }
            _ => None,
        };
        let tags: Vec<Option<&Tag>> =
            if entry.tags.is_empty() { vec![None] } else { entry.tags.iter().map(Some).collect() };
        for (position, destination) in entry.destinations.iter().enumerate() {
            for tag in &tags {
                let key = (source.repository.clone(), digest, destination.repository.clone(), tag.cloned());
                if !seen.insert(key) {
                    continue;
                }
                if let (Some(tag), Some(digest)) = (tag, digest) {
                    let list = aimed.entry((destination.repository.clone(), (*tag).clone())).or_default();
                    if !list.contains(&digest) {
                        list.push(digest);
                    }
                }
                let action = if tag.is_some_and(|t| destination.deny_prerelease && t.is_prerelease()) {
                    Action::Prerelease
                } else if let Some(reason) = &source_failure {
                    Action::Unchecked { reason: reason.clone() }
                } else {
                    match digest {
                        None => Action::MissingSource,
                        Some(digest) => decide(facts, &entry.sources, digest, &destination.repository, *tag),
                    }
                };
                edges.push(PlannedEdge {
                    source: source.repository.clone(),
                    source_trusted: source.trusted,
                    source_tag: source_tag.clone(),
                    digest,
                    destination: destination.repository.clone(),
                    primary: position == 0,
                    tag: tag.cloned(),
                    action,
                    origin: entry.origin.clone(),
                });
            }
        }
    }

    // Overlaps override whatever was decided from the registries: the manifests themselves are
    // ambiguous about what the tag should be. Prerelease refusals stand.
    if aimed.values().any(|digests| digests.len() > 1) {
        for edge in &mut edges {
            if edge.action == Action::Prerelease {
                continue;
            }
            let Some(tag) = &edge.tag else { continue };
            if let Some(digests) = aimed.get(&(edge.destination.clone(), tag.clone()))
                && digests.len() > 1
            {
                let mut digests = digests.clone();
                digests.sort();
                edge.action = Action::Overlap { digests };
            }
        }
    }
    Plan { edges, invalid: desired.invalid().cloned().collect() }
}

/// The action for one resolved edge, from what the destination and the sources hold.
fn decide(
    facts: &Facts,
    sources: &[ferry_model::Source],
    digest: Digest,
    destination: &Repository,
    tag: Option<&Tag>,
) -> Action {
    if let Some(tag) = tag {
        match facts.tag(destination, tag) {
            Err(reason) => return Action::Unchecked { reason },
            Ok(Some(existing)) if existing == digest => return Action::Present,
            Ok(Some(existing)) => return Action::Conflict { existing },
            Ok(None) => {}
        }
    }
    match facts.has_manifest(destination, &digest) {
        Err(reason) => return Action::Unchecked { reason },
        Ok(true) => return if tag.is_some() { Action::AddTag } else { Action::Present },
        Ok(false) => {}
    }
    let mut failure = None;
    for source in sources {
        match facts.has_manifest(&source.repository, &digest) {
            Ok(true) => return Action::Copy,
            Ok(false) => {}
            Err(reason) => failure = Some(reason),
        }
    }
    match failure {
        Some(reason) => Action::Unchecked { reason },
        None => Action::MissingSource,
    }
}
