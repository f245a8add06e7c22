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
}

impl Default for GatherOptions {
    fn default() -> Self {
        Self { concurrency: 32 }
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

    // Round 2a: destination tags.
    let mut lookups = FxHashSet::default();
    for entry in &desired.entries {
        for destination in entry.destinations.iter() {
            for tag in &entry.tags {
                lookups.insert(Lookup::Tag(destination.repository.clone(), tag.clone()));
            }
        }
    }
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
    run(registry, lookups, options, &mut facts).await;

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
