//! Desired state: what must be promoted, independent of the manifest format it came from.
//!
//! Every input format (kpromo plain and thin manifests, Rancher `images-list`, Rancher charts
//! sync files) parses into a [`DesiredState`]. The planner knows nothing of the formats.

use std::sync::Arc;

use crate::digest::Digest;
use crate::edge::Origin;
use crate::name::Repository;
use crate::tag::Tag;

/// A manifest named by tag or by digest. On the source side of an entry it is a digest
/// (kpromo's `dmap`) or a tag that is resolved at plan time and pinned in the plan
/// (images-list, charts sync).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TagOrDigest {
    Digest(Digest),
    Tag(Tag),
}

impl std::fmt::Display for TagOrDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagOrDigest::Digest(d) => write!(f, "{d}"),
            TagOrDigest::Tag(t) => write!(f, "{t}"),
        }
    }
}

/// A candidate source repository. When an entry has several, the first that holds the pinned
/// reference is used (charts sync: staging before Docker Hub).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub repository: Repository,
    /// Signatures and attestations from a trusted source may be copied along with the image.
    /// Docker Hub never is (see [`Source::new`]).
    pub trusted: bool,
}

impl Source {
    /// The one rule of source trust, whatever asked for it (an input's default, the config's
    /// `registries.trusted-sources`, a mirror rule's `trusted: true`): trusted when asked, and
    /// never on Docker Hub, where anyone can push a signature next to anyone's image.
    pub fn new(repository: Repository, trusted: bool) -> Self {
        let trusted = trusted && !repository.host().is_docker_hub();
        Source { repository, trusted }
    }
}

/// A destination repository and the policy that applies to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    pub repository: Repository,
    /// Refuse `-rc`, `-alpha` and `-beta` tags here.
    pub deny_prerelease: bool,
}

/// One line of desired state: the `pin`ned image from the first source that has it must exist
/// in every destination, under each of `tags` (or tagless when `tags` is empty).
#[derive(Clone, Debug)]
pub struct Entry {
    pub sources: Arc<[Source]>,
    pub pin: TagOrDigest,
    pub tags: Vec<Tag>,
    /// Ordered: the first destination is the primary one (where signing happens).
    pub destinations: Arc<[Destination]>,
    pub origin: Origin,
}

impl Entry {
    /// How many edges this entry expands to.
    pub fn n_edges(&self) -> usize {
        self.destinations.len() * self.tags.len().max(1)
    }
}

/// How serious a [`Notice`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoticeKind {
    /// Accepted as the tool a user migrates from accepts it (a deprecated field, an empty
    /// placeholder, a folder kpromo never reads), and reported.
    Warning,
    /// An entry that cannot be valid (a bad digest, tag or name): only the edges it would have
    /// produced are excluded, with action `invalid`.
    Invalid,
}

/// Something an input holds that promotion tolerates and lint mode (`--strict`) refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub origin: Origin,
    /// The field, in the input's own terms (`images.dmap`, `imagesPath`).
    pub field: Arc<str>,
    pub message: String,
}

impl std::fmt::Display for Notice {
    /// One line: what an input holds is outside text, shown escaped (see [`crate::shown`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::shown::Shown;
        let (source, field, message) = (Shown(&self.origin.source), Shown(&self.field), Shown(&self.message));
        if self.origin.line > 0 {
            write!(f, "{source}:{}: field `{field}`: {message}", self.origin.line)
        } else {
            write!(f, "{source}: field `{field}`: {message}")
        }
    }
}

/// Everything a set of manifests asks for.
#[derive(Clone, Debug, Default)]
pub struct DesiredState {
    pub entries: Vec<Entry>,
    /// What reading the inputs tolerated: warnings, and invalid entries left out.
    pub notices: Vec<Notice>,
}

impl DesiredState {
    pub fn extend(&mut self, other: DesiredState) {
        self.entries.extend(other.entries);
        self.notices.extend(other.notices);
    }

    /// The invalid entries that were left out.
    pub fn invalid(&self) -> impl Iterator<Item = &Notice> {
        self.notices.iter().filter(|n| n.kind == NoticeKind::Invalid)
    }

    pub fn n_edges(&self) -> usize {
        self.entries.iter().map(Entry::n_edges).sum()
    }
}
