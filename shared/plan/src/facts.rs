//! What the registries hold, as far as a plan needs to know.

use std::sync::Arc;

use ferry_model::{DesiredState, Digest, Repository, Tag, TagOrDigest};
use ferry_registry::Classify;
use ferry_registry::{Registry, RegistryError};
use futures_util::StreamExt as _;
use rustc_hash::{FxHashMap, FxHashSet};

/// The answers to the lookups a plan depends on.
///
/// Contract: [`gather`] records every lookup [`crate::plan()`] makes for the same desired
/// state. A tag or manifest that is not recorded does not exist, unless the lookup failed, in
/// which case the failure is recorded and the edges that depend on it are reported as
/// unchecked rather than guessed.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    tags: FxHashMap<(Repository, Tag), Digest>,
    manifests: FxHashSet<(Repository, Digest)>,
    failed: FxHashMap<Lookup, Arc<str>>,
    /// The worst class among failed lookups (throttled beats transient beats permanent).
    worst_failure: Option<ferry_registry::ErrorClass>,
    /// The longest `Retry-After` a throttling registry asked for.
    retry_after: Option<std::time::Duration>,
    /// The repositories read by listing, and the artifact tags each listing named
    /// (`sha256-<hex>.sig`, `.att`, `.sbom`, referrers indexes): status needs them, and only
    /// them, without listing again.
    listed: FxHashMap<Repository, ferry_registry::ArtifactTags>,
}

/// Why facts are incomplete: the worst failed lookup's class, one reason, and the longest
/// `Retry-After` asked for. Classified as the lookups were, so that a caller retries as the
/// registry asked without converting anything by hand.
#[derive(Clone, Debug, thiserror::Error)]
#[error("a registry lookup failed: {reason}")]
pub struct LookupFailure {
    pub class: ferry_registry::ErrorClass,
    pub reason: Arc<str>,
    pub retry_after: Option<std::time::Duration>,
}

impl Classify for LookupFailure {
    fn class(&self) -> ferry_registry::ErrorClass {
        self.class
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }
}

/// One question asked of a registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lookup {
    Tag(Repository, Tag),
    Manifest(Repository, Digest),
}

impl Facts {
    /// Records what `repository:tag` points at. A tag that resolves to a digest also proves
    /// the manifest exists there.
    pub fn record_tag(&mut self, repository: Repository, tag: Tag, digest: Option<Digest>) {
        if let Some(digest) = digest {
            self.manifests.insert((repository.clone(), digest));
            self.tags.insert((repository, tag), digest);
        }
    }

    pub fn record_manifest(&mut self, repository: Repository, digest: Digest, exists: bool) {
        if exists {
            self.manifests.insert((repository, digest));
        }
    }

    pub fn record_failure(&mut self, lookup: Lookup, reason: &RegistryError) {
        use ferry_registry::ErrorClass::*;
        let rank = |c: ferry_registry::ErrorClass| match c {
            Throttled => 3,
            Transient => 2,
            Permanent => 1,
            Verification => 0,
        };
        let class = reason.class();
        if self.worst_failure.is_none_or(|w| rank(class) > rank(w)) {
            self.worst_failure = Some(class);
        }
        if let Some(wait) = reason.retry_after() {
            self.retry_after = Some(self.retry_after.map_or(wait, |w| w.max(wait)));
        }
        self.failed.insert(lookup, reason.to_string().into());
    }

    /// The artifact tags the listing of `repository` named, when the gathering listed it.
    pub fn listed_artifact_tags(&self, repository: &Repository) -> Option<&ferry_registry::ArtifactTags> {
        self.listed.get(repository)
    }

    /// Why the facts are incomplete, if a lookup failed.
    pub fn failure(&self) -> Option<LookupFailure> {
        let class = self.worst_failure?;
        let reason =
            self.failed.values().next().cloned().unwrap_or_else(|| "a registry lookup failed".into());
        Some(LookupFailure { class, reason, retry_after: self.retry_after })
    }

    /// What `repository:tag` points at. `Err` carries the reason a lookup failed.
    pub fn tag(&self, repository: &Repository, tag: &Tag) -> Result<Option<Digest>, Arc<str>> {
        // The tuple key is built from clones of two Arcs; cheap.
        let key = (repository.clone(), tag.clone());
        if let Some(digest) = self.tags.get(&key) {
            return Ok(Some(*digest));
        }
        match self.failed.get(&Lookup::Tag(key.0, key.1)) {
            Some(reason) => Err(reason.clone()),
            None => Ok(None),
        }
    }

    /// Whether the manifest `digest` exists in `repository`.
    pub fn has_manifest(&self, repository: &Repository, digest: &Digest) -> Result<bool, Arc<str>> {
        let key = (repository.clone(), *digest);
        if self.manifests.contains(&key) {
            return Ok(true);
        }
        match self.failed.get(&Lookup::Manifest(key.0, key.1)) {
            Some(reason) => Err(reason.clone()),
            None => Ok(false),
        }
    }

    pub fn n_failures(&self) -> usize {
        self.failed.len()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct GatherOptions {
    /// Lookups in flight at once, across all registries.
    pub concurrency: usize,
    /// Read a destination repository by listing it (one request, or one per page) instead of
    /// one `HEAD` per tag, when at least this many lookups concern it; `None`: never list.
    /// Where the registry serves the extended tag list (GCR, Artifact Registry), the listing
    /// answers every lookup; elsewhere it answers which tags are absent, and the listed ones
    /// are still read with `HEAD`.
    pub list_from: Option<usize>,
}

/// The default [`GatherOptions::list_from`]: below this, `HEAD`s cost no more than a listing.
pub const LIST_FROM: usize = 8;

impl Default for GatherOptions {
    fn default() -> Self {
        Self { concurrency: 32, list_from: Some(LIST_FROM) }
    }
}

/// Asks the registries what `plan` will need, in three rounds, each deduplicated:
/// 1. source tags (for tag-pinned entries), in each entry's source order until one has it;
/// 2. destination tags, then destination manifests for edges whose tag is absent or that are
///    tagless;
/// 3. source manifests, only for edges the destination lacks.
///
/// When everything is already promoted this costs one HEAD per destination tag (and one per
/// tagless edge), and nothing at the source.
pub async fn gather<R: Registry>(registry: &R, desired: &DesiredState, options: GatherOptions) -> Facts {
    let mut facts = Facts::default();

    // Round 1: resolve source tags, one candidate source at a time.
    let mut pending: Vec<(usize, usize)> = desired
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.pin, TagOrDigest::Tag(_)))
        .map(|(i, _)| (i, 0))
        .collect();
    while !pending.is_empty() {
        let lookups: FxHashSet<Lookup> = pending
            .iter()
            .filter_map(|&(i, s)| {
                let entry = &desired.entries[i];
                let TagOrDigest::Tag(tag) = &entry.pin else { return None };
                Some(Lookup::Tag(entry.sources.get(s)?.repository.clone(), tag.clone()))
            })
            .collect();
        run(registry, lookups, options, &mut facts).await;
        pending = pending
            .into_iter()
            .filter_map(|(i, s)| {
                let entry = &desired.entries[i];
                let TagOrDigest::Tag(tag) = &entry.pin else { return None };
                let found = facts.tag(&entry.sources[s].repository, tag);
                (matches!(found, Ok(None)) && s + 1 < entry.sources.len()).then_some((i, s + 1))
            })
            .collect();
    }

    // The digest each entry names, now that tags are resolved.
    let digests: Vec<Option<Digest>> =
        desired.entries.iter().map(|e| resolve(e, &facts).map(|(_, d)| d)).collect();

    // Round 2a: destination tags; repositories with many of them are listed first.
    let mut lookups = FxHashSet::default();
    for entry in &desired.entries {
        for destination in entry.destinations.iter() {
            for tag in &entry.tags {
                lookups.insert(Lookup::Tag(destination.repository.clone(), tag.clone()));
            }
        }
    }
    let listings = list(registry, &lookups, options).await;
    let lookups = answer_from_listings(lookups, &listings, &mut facts);
    run(registry, lookups, options, &mut facts).await;

    // Round 2b: destination manifests, where the tag did not settle the question.
    let mut lookups = FxHashSet::default();
    for (entry, digest) in desired.entries.iter().zip(&digests) {
        let Some(digest) = digest else { continue };
        for destination in entry.destinations.iter() {
            let needed = entry.tags.is_empty()
                || entry.tags.iter().any(|tag| matches!(facts.tag(&destination.repository, tag), Ok(None)));
            if needed {
                lookups.insert(Lookup::Manifest(destination.repository.clone(), *digest));
            }
        }
    }
    let lookups = answer_from_listings(lookups, &listings, &mut facts);
    run(registry, lookups, options, &mut facts).await;
    // Kept for status, which needs the artifact tags too, without listing again.
    for (repository, listing) in listings {
        if let Ok(listing) = listing {
            facts.listed.insert(repository, listing.artifacts);
        }
    }

    // Round 3: source manifests for digest-pinned entries some destination lacks. (A
    // tag-pinned entry's source was established in round 1.)
    let mut lookups = FxHashSet::default();
    for (entry, digest) in desired.entries.iter().zip(&digests) {
        let (TagOrDigest::Digest(_), Some(digest)) = (&entry.pin, digest) else { continue };
        let lacking =
            entry.destinations.iter().any(|d| matches!(facts.has_manifest(&d.repository, digest), Ok(false)));
        if lacking {
            for source in entry.sources.iter() {
                lookups.insert(Lookup::Manifest(source.repository.clone(), *digest));
            }
        }
    }
    run(registry, lookups, options, &mut facts).await;
    facts
}

/// The listings of every repository with at least `options.list_from` lookups, read
/// concurrently: a listing, or why it failed.
/// A listing as the gathering keeps it: the artifact tags split off as flags on arrival, so
/// that thousands of listings held between the rounds cost little more than their answers.
struct Listing {
    inventory: ferry_registry::Inventory,
    artifacts: ferry_registry::ArtifactTags,
}

async fn list<R: Registry>(
    registry: &R,
    lookups: &FxHashSet<Lookup>,
    options: GatherOptions,
) -> FxHashMap<Repository, Result<Listing, RegistryError>> {
    let Some(threshold) = options.list_from else { return FxHashMap::default() };
    let mut per_repository: FxHashMap<&Repository, usize> = FxHashMap::default();
    for lookup in lookups {
        let (Lookup::Tag(repository, _) | Lookup::Manifest(repository, _)) = lookup;
        *per_repository.entry(repository).or_default() += 1;
    }
    let chosen: Vec<Repository> =
        per_repository.into_iter().filter(|(_, n)| *n >= threshold.max(1)).map(|(r, _)| r.clone()).collect();
    if chosen.is_empty() {
        return FxHashMap::default();
    }
    tracing::debug!(n = chosen.len(), "repositories listed");
    futures_util::stream::iter(chosen)
        .map(|repository| async move {
            let listing = registry.inventory(&repository).await.map(|inventory| {
                let (inventory, artifacts) = inventory.split_artifacts();
                Listing { inventory, artifacts }
            });
            if let Err(error) = &listing {
                tracing::warn!(%repository, %error, "listing a repository failed; what it would answer stays unchecked");
            }
            (repository, listing)
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

/// Records what the listings answer, and returns the lookups that still need a `HEAD`. A
/// listing that failed leaves its repository's lookups failed with its reason (the edges are
/// unchecked, neither present nor missing).
fn answer_from_listings(
    lookups: FxHashSet<Lookup>,
    listings: &FxHashMap<Repository, Result<Listing, RegistryError>>,
    facts: &mut Facts,
) -> FxHashSet<Lookup> {
    if listings.is_empty() {
        return lookups;
    }
    let mut rest = FxHashSet::default();
    for lookup in lookups {
        let (Lookup::Tag(repository, _) | Lookup::Manifest(repository, _)) = &lookup;
        match listings.get(repository) {
            None => {
                rest.insert(lookup);
            }
            Some(Err(error)) => facts.record_failure(lookup, error),
            Some(Ok(Listing { inventory, .. })) => match &lookup {
                Lookup::Tag(repository, tag) => match inventory.tag(tag) {
                    Some(digest) => facts.record_tag(repository.clone(), tag.clone(), digest),
                    None => {
                        rest.insert(lookup);
                    }
                },
                Lookup::Manifest(repository, digest) => match inventory.has(digest) {
                    Some(exists) => facts.record_manifest(repository.clone(), *digest, exists),
                    None => {
                        rest.insert(lookup);
                    }
                },
            },
        }
    }
    rest
}

/// The source and digest an entry resolves to: for a tag pin, the first source whose tag is
/// known; for a digest pin, the first source known to hold it (or the first source).
pub(crate) fn resolve(entry: &ferry_model::Entry, facts: &Facts) -> Option<(usize, Digest)> {
    match &entry.pin {
        TagOrDigest::Digest(digest) => {
            let index =
                entry.sources.iter().position(|s| facts.has_manifest(&s.repository, digest) == Ok(true));
            Some((index.unwrap_or(0), *digest))
        }
        TagOrDigest::Tag(tag) => entry
            .sources
            .iter()
            .enumerate()
            .find_map(|(i, s)| facts.tag(&s.repository, tag).ok().flatten().map(|d| (i, d))),
    }
}

async fn run<R: Registry>(
    registry: &R,
    lookups: FxHashSet<Lookup>,
    options: GatherOptions,
    facts: &mut Facts,
) {
    if lookups.is_empty() {
        return;
    }
    tracing::debug!(n = lookups.len(), "registry lookups");
    let mut answers = futures_util::stream::iter(lookups)
        .map(|lookup| async move {
            let answer = match &lookup {
                Lookup::Tag(repository, tag) => registry
                    .head_manifest(repository, &TagOrDigest::Tag(tag.clone()))
                    .await
                    .map(|h| h.map(|h| h.digest)),
                Lookup::Manifest(repository, digest) => registry
                    .head_manifest(repository, &TagOrDigest::Digest(*digest))
                    .await
                    .map(|h| h.map(|h| h.digest)),
            };
            (lookup, answer)
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((lookup, answer)) = answers.next().await {
        match (lookup, answer) {
            (Lookup::Tag(repository, tag), Ok(digest)) => facts.record_tag(repository, tag, digest),
            (Lookup::Manifest(repository, digest), Ok(found)) => {
                facts.record_manifest(repository, digest, found.is_some())
            }
            (lookup, Err(error)) => {
                tracing::warn!(?lookup, %error, "registry lookup failed");
                facts.record_failure(lookup, &error);
            }
        }
    }
}
