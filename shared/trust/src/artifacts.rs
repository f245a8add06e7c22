//! Cosign artifact manifests (`.sig`, `.att`, `.sbom`) in a registry: reading their layers and
//! adding layers without ever dropping one.

use std::time::Duration;

use bytes::Bytes;
use ferry_model::{Digest, Repository, TagOrDigest};
use ferry_registry::{RawManifest, Registry, RegistryWrite};

use crate::cosign::{ArtifactKind, Layer, artifact_manifest, layers_of};
use crate::error::TrustError;

/// The largest signature payload or attestation envelope Ferry reads.
pub const MAX_LAYER_BYTES: usize = 4 * 1024 * 1024;

/// An artifact manifest and its layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub manifest: RawManifest,
    pub layers: Vec<Layer>,
}

impl Artifact {
    /// Whether every layer of `other` (digest and annotations) is also here.
    pub fn is_superset_of(&self, other: &Artifact) -> bool {
        other.layers.iter().all(|l| self.layers.contains(l))
    }
}

/// The `kind` artifact for `digest` in `repository`, if there is one.
pub async fn read<R: Registry>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
    kind: ArtifactKind,
) -> Result<Option<Artifact>, TrustError> {
    let tag = kind.tag_for(digest);
    let Some(manifest) = registry.get_manifest(repository, &TagOrDigest::Tag(tag.clone())).await? else {
        return Ok(None);
    };
    let layers = layers_of(&manifest).map_err(|reason| TrustError::Artifact {
        repository: repository.clone(),
        tag: tag.clone(),
        reason,
    })?;
    Ok(Some(Artifact { manifest, layers }))
}

/// A layer's bytes, checked against its digest.
pub async fn layer_bytes<R: Registry>(
    registry: &R,
    repository: &Repository,
    layer: &Layer,
) -> Result<Bytes, TrustError> {
    if layer.size > MAX_LAYER_BYTES as u64 {
        return Err(TrustError::Image {
            repository: repository.clone(),
            digest: layer.digest,
            reason: format!("a {}-byte layer is larger than Ferry reads ({MAX_LAYER_BYTES})", layer.size),
        });
    }
    registry.get_blob(repository, &layer.digest, MAX_LAYER_BYTES).await?.ok_or_else(|| TrustError::Image {
        repository: repository.clone(),
        digest: layer.digest,
        reason: "the layer's blob is missing".into(),
    })
}

/// What [`append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Every layer was already there.
    Unchanged,
    /// The manifest now has the new layers after all the old ones.
    Written,
}

/// Adds `layers` (with their bytes) to the `kind` artifact of `digest` in `repository`,
/// keeping every layer already there. A layer that is already present (the same digest and
/// annotations) is not added again, and nothing is written when `satisfied` says the artifact
/// as it stands already serves the purpose (e.g. it has a layer of the same predicate type).
///
/// The new manifest is read back after it is pushed. If another writer replaced it in between
/// and our layers are missing, the merge is redone from what is there now (up to 4 times), so
/// concurrent writers never lose each other's layers for good.
pub async fn append<R: RegistryWrite>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
    kind: ArtifactKind,
    layers: &[(Layer, Bytes)],
    satisfied: impl Fn(&Artifact) -> bool,
) -> Result<Appended, TrustError> {
    append_to(registry, repository, digest, kind, None, layers, satisfied).await
}

/// [`append`], merging the first round against `just_read`: what the caller read of this very
/// tag a moment ago to decide to write (`Some(None)`: the tag was absent), so that a look-up
/// and the merge's read are one request. Later rounds, after another writer replaced the
/// artifact, read again.
pub async fn append_to<R: RegistryWrite>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
    kind: ArtifactKind,
    just_read: Option<Option<Artifact>>,
    layers: &[(Layer, Bytes)],
    satisfied: impl Fn(&Artifact) -> bool,
) -> Result<Appended, TrustError> {
    let tag = kind.tag_for(digest);
    let mut just_read = just_read;
    for attempt in 0..4u32 {
        let existing = match just_read.take() {
            Some(read) => read,
            None => read(registry, repository, digest, kind).await?,
        };
        if existing.as_ref().is_some_and(&satisfied) {
            return Ok(Appended::Unchanged);
        }
        let mut merged: Vec<Layer> = existing.as_ref().map(|a| a.layers.clone()).unwrap_or_default();
        let missing: Vec<&(Layer, Bytes)> = layers.iter().filter(|(l, _)| !merged.contains(l)).collect();
        if missing.is_empty() {
            return Ok(Appended::Unchanged);
        }
        for (layer, bytes) in &missing {
            registry.put_blob(repository, bytes.clone()).await?;
            merged.push(layer.clone());
        }
        let (config, manifest) = artifact_manifest(&merged);
        registry.put_blob(repository, config).await?;
        registry.put_manifest(repository, &TagOrDigest::Tag(tag.clone()), &manifest).await?;
        let now = read(registry, repository, digest, kind).await?;
        if now.as_ref().is_some_and(|a| layers.iter().all(|(l, _)| a.layers.contains(l)) || satisfied(a)) {
            return Ok(Appended::Written);
        }
        tracing::warn!(%repository, %tag, attempt, "another writer replaced the artifact; merging again");
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
    }
    Err(TrustError::Artifact {
        repository: repository.clone(),
        tag,
        reason: "kept losing a race with another writer".into(),
    })
}
