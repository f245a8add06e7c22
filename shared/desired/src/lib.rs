//! Desired state in one place: what the inputs and the configuration ask for.
//!
//! Every entry point that needs to know what should be where asks this crate, and only this
//! crate: `ferry plan`, `promote`, `check`, `status`, `reconcile`, `import`, the planner stage
//! and the checker stage. What they ask differs only by [`Scope`]; how the inputs are read
//! (files, a git checkout, GitHub's contents API) is a [`ManifestSource`].
//!
//! Two steps, so that a caller can decide between them (presubmit screens hostile input
//! before any request):
//! 1. **read** ([`ManifestSource`]): every input kind through its one reader in
//!    `ferry-manifests`, into [`Loaded`]: the image entries, and regsync `type: repository`
//!    entries that still need their source's tags. No registry is asked.
//! 2. **resolve** ([`resolve`], [`desired_state`]): each repository entry against its source's
//!    tags, and the mirror rules against what their sources hold (a push, or the catalog), into
//!    a [`DesiredState`].
//!
//! Invariant: no other crate reads an input file or expands a mirror rule; the CLI and the
//! stages compute desired state by the same functions, so a parity test can compare them.
//! Invariant: reading never contacts a registry; resolving only lists tags and catalogs
//! (reads).
//!
//! # Layout
//! - [`inputs`]: the table of input kinds: CLI flag, config key, what each reads.
//! - [`source`]: the [`ManifestSource`] port and its adapters.
//! - [`rules`]: mirror rules (Harbor-style replication of pushes).

pub mod inputs;
pub mod rules;
pub mod source;

use std::collections::BTreeMap;

use ferry_manifests::revision::Change;
use ferry_manifests::{Loaded, Policy};
use ferry_model::{DesiredState, Digest, Repository, Tag, TagOrDigest};
use ferry_registry::{Classify, ErrorClass, Registry, RegistryError};
use thiserror::Error;

pub use rules::MirrorRule;
pub use source::{AnySource, LocalFiles, Location, ManifestSource, ManifestsConfig, SourceError};

/// The configuration desired state depends on: the policy applied to every entry (trusted
/// sources, destinations refusing prereleases) and the mirror rules.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub policy: Policy,
    pub rules: Vec<MirrorRule>,
}

/// What part of the desired state a caller asks for.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Everything the inputs and the rules ask for now (`reconcile`, a full `status`): every
    /// repository entry resolved, and every tag a rule matches at its source, found through
    /// the source registry's catalog.
    Everything,
    /// What feeds one repository (`status --image`): the inputs, the repository entries whose
    /// source or target it is, and the rules whose source holds it or would copy it there.
    Repository(&'a Repository),
    /// What one push asks for: the input entries naming this source and digest (or tag), the
    /// rules matching it, and the repository entries whose filters select its tag. Nothing else
    /// is re-evaluated.
    Push { repository: &'a Repository, digest: Digest, tag: Option<&'a Tag>, event: &'a str },
}

/// Why desired state could not be computed.
#[derive(Debug, Error)]
pub enum DesiredError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{what}: {error}")]
    Registry { what: String, error: RegistryError },
    #[error("{0}")]
    Nothing(String),
}

impl Classify for DesiredError {
    fn class(&self) -> ErrorClass {
        match self {
            DesiredError::Source(e) => e.class(),
            DesiredError::Registry { error, .. } => error.class(),
            DesiredError::Nothing(_) => ErrorClass::Permanent,
        }
    }

    /// A registry's `Retry-After` travels on (throttled listings wait as the registry asked).
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DesiredError::Registry { error, .. } => error.retry_after(),
            _ => None,
        }
    }
}

/// The desired state `scope` asks for, read through `source` (none: only the rules) and
/// resolved against `registry`.
pub async fn desired_state<R: Registry, S: ManifestSource>(
    source: Option<&S>,
    settings: &Settings,
    registry: &R,
    scope: Scope<'_>,
) -> Result<DesiredState, DesiredError> {
    let loaded = match source {
        Some(source) => source.current().await?,
        None => Loaded::default(),
    };
    match scope {
        Scope::Push { repository, digest, tag, event } => {
            let mut desired =
                rules::desired_for_push(&settings.rules, &loaded.state, repository, &digest, tag, event);
            // A repository entry whose source was pushed with a tag its filters select: that
            // tag, pinned to the pushed digest.
            if let Some(tag) = tag.filter(|t| !t.is_artifact_tag()) {
                for sync in loaded.syncs.iter().filter(|s| &s.source == repository && s.wants(tag)) {
                    for mut entry in sync.entries_for(std::slice::from_ref(tag), &settings.policy) {
                        entry.pin = TagOrDigest::Digest(digest);
                        desired.entries.push(entry);
                    }
                }
            }
            Ok(desired)
        }
        Scope::Everything => {
            if source.is_none() && settings.rules.is_empty() {
                return Err(DesiredError::Nothing(
                    "the configuration names neither pipeline.manifests nor pipeline.mirror-rules: nothing to check"
                        .into(),
                ));
            }
            let mut desired = resolve(registry, &settings.policy, loaded).await?;
            let mut sources = Vec::new();
            for rule in &settings.rules {
                sources.extend(registry.list_repositories(&rule.source).await.map_err(|error| {
                    DesiredError::Registry {
                        what: format!("listing the repositories under {} (the catalog API)", rule.source),
                        error,
                    }
                })?);
            }
            desired.extend(rule_entries(registry, settings, sources).await?);
            Ok(desired)
        }
        Scope::Repository(repository) => {
            let Loaded { state, syncs } = loaded;
            let syncs =
                syncs.into_iter().filter(|s| &s.source == repository || &s.target == repository).collect();
            let mut desired = resolve(registry, &settings.policy, Loaded { state, syncs }).await?;
            desired.extend(
                rule_entries(registry, settings, rules::sources_of(&settings.rules, repository)).await?,
            );
            Ok(desired)
        }
    }
}

/// Both sides of a change, each resolved: the repository entries of both against the same
/// listing of their sources, so that a diff of the two says exactly what the change adds.
pub async fn resolve_change<R: Registry>(
    registry: &R,
    policy: &Policy,
    change: Change,
) -> Result<(DesiredState, DesiredState), DesiredError> {
    let mut tags = Tags::default();
    let base = tags.resolve(registry, policy, change.base).await?;
    let head = tags.resolve(registry, policy, change.head).await?;
    Ok((base, head))
}

/// What `loaded` asks for, each repository entry resolved against its source's tags now. A
/// source that cannot be listed is an error naming it and the entry.
pub async fn resolve<R: Registry>(
    registry: &R,
    policy: &Policy,
    loaded: Loaded,
) -> Result<DesiredState, DesiredError> {
    Tags::default().resolve(registry, policy, loaded).await
}

/// Source tags listed once per repository, for every resolution in one call.
#[derive(Default)]
struct Tags(BTreeMap<Repository, Vec<Tag>>);

impl Tags {
    async fn resolve<R: Registry>(
        &mut self,
        registry: &R,
        policy: &Policy,
        loaded: Loaded,
    ) -> Result<DesiredState, DesiredError> {
        let Loaded { mut state, syncs } = loaded;
        for sync in syncs {
            if !self.0.contains_key(&sync.source) {
                let tags =
                    registry.list_tags(&sync.source).await.map_err(|error| DesiredError::Registry {
                        what: format!("{}: listing the tags of {}", sync.origin, sync.source),
                        error,
                    })?;
                self.0.insert(sync.source.clone(), tags);
            }
            state.entries.extend(sync.entries_for(&self.0[&sync.source], policy));
        }
        Ok(state)
    }
}

/// The entries the rules ask for from what each of `repositories` holds now.
async fn rule_entries<R: Registry>(
    registry: &R,
    settings: &Settings,
    mut repositories: Vec<Repository>,
) -> Result<DesiredState, DesiredError> {
    repositories.sort();
    repositories.dedup();
    let mut desired = DesiredState::default();
    for repository in &repositories {
        let tags = registry.list_tags(repository).await.map_err(|error| DesiredError::Registry {
            what: format!("listing the tags of {repository}"),
            error,
        })?;
        desired.extend(rules::desired_for_tags(&settings.rules, repository, &tags, "mirror-rules"));
    }
    Ok(desired)
}
