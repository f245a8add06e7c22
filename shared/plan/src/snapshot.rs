//! `ferry snapshot`: every image under a registry path, as a thin-manifest `images.yaml`.

use ferry_manifests::kpromo::{DigestTags, ImageDmap};
use ferry_model::{Digest, RegistryPath, Repository, Tag, TagOrDigest};
use ferry_registry::manifest::is_index_media_type;
use ferry_registry::{InventoryKind, Registry, RegistryError};
use futures_util::{StreamExt as _, TryStreamExt as _};
use rustc_hash::FxHashMap;

#[derive(Clone, Copy, Debug)]
pub struct SnapshotOptions {
    /// Leave out tagless manifests that an index references (kpromo's `--minimal-snapshot`).
    pub minimal: bool,
    pub concurrency: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self { minimal: false, concurrency: 16 }
    }
}

/// Reads every repository under `under` (from the catalog), every tag, and the children of
/// every index. The OCI API cannot list untagged manifests, so a tagless image appears only as
/// an index child; where the registry serves the extended tag list (GCR, Artifact Registry),
/// one listing per repository gives every manifest, untagged ones included.
pub async fn snapshot<R: Registry>(
    registry: &R,
    under: &RegistryPath,
    options: SnapshotOptions,
) -> Result<Vec<ImageDmap>, RegistryError> {
    let repositories = registry.list_repositories(under).await?;
    let images: Vec<Option<ImageDmap>> = futures_util::stream::iter(repositories)
        .map(|repository| async move { snapshot_repository(registry, under, repository, options).await })
        .buffered(options.concurrency.max(1))
        .try_collect()
        .await?;
    Ok(images.into_iter().flatten().collect())
}

async fn snapshot_repository<R: Registry>(
    registry: &R,
    under: &RegistryPath,
    repository: Repository,
    options: SnapshotOptions,
) -> Result<Option<ImageDmap>, RegistryError> {
    let Some(name) = under.name_of(&repository) else { return Ok(None) };
    let inventory = registry.inventory(&repository).await?;
    if let Some(digests) =
        inventory.digests.as_ref().filter(|_| inventory.kind == InventoryKind::ExtendedTagsList)
    {
        // The extended list names every manifest (children and untagged ones too) with its
        // tags: the snapshot is that listing, with no further request (as kpromo reads it).
        let mut by_digest: FxHashMap<Digest, Vec<Tag>> = digests.iter().map(|d| (*d, Vec::new())).collect();
        for (tag, digest) in &inventory.tags {
            if let Some(digest) = digest {
                by_digest.entry(*digest).or_default().push(tag.clone());
            }
        }
        if by_digest.is_empty() {
            return Ok(None);
        }
        let digests = by_digest
            .into_iter()
            .map(|(digest, mut tags)| {
                tags.sort();
                DigestTags { digest, tags, line: 0 }
            })
            .collect();
        return Ok(Some(ImageDmap { name, source_name: None, line: 0, digests }));
    }
    let mut tags: Vec<Tag> = inventory.tags.into_keys().collect();
    tags.sort();
    let heads: Vec<(Tag, Option<ferry_registry::ManifestHead>)> = futures_util::stream::iter(tags)
        .map(|tag| {
            let repository = &repository;
            async move {
                let head = registry.head_manifest(repository, &TagOrDigest::Tag(tag.clone())).await?;
                Ok::<_, RegistryError>((tag, head))
            }
        })
        .buffered(options.concurrency.max(1))
        .try_collect()
        .await?;
    let mut by_digest: FxHashMap<Digest, Vec<Tag>> = FxHashMap::default();
    let mut indexes = Vec::new();
    for (tag, head) in heads {
        // A tag deleted between listing and reading is simply gone.
        let Some(head) = head else { continue };
        if is_index_media_type(&head.media_type) && !indexes.contains(&head.digest) {
            indexes.push(head.digest);
        }
        by_digest.entry(head.digest).or_default().push(tag);
    }
    if !options.minimal {
        for index in indexes {
            let Some(raw) = registry.get_manifest(&repository, &TagOrDigest::Digest(index)).await? else {
                continue;
            };
            for child in raw.content()?.children() {
                by_digest.entry(child.digest).or_default();
            }
        }
    }
    if by_digest.is_empty() {
        return Ok(None);
    }
    let digests = by_digest.into_iter().map(|(digest, tags)| DigestTags { digest, tags, line: 0 }).collect();
    Ok(Some(ImageDmap { name, source_name: None, line: 0, digests }))
}
