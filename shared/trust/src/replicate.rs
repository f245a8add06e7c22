//! The replicator: cosign artifacts (`.sig`, `.att`, `.sbom`) from one repository to another,
//! from the primary destination to each mirror, and from a trusted source to a destination.
//!
//! An artifact tag is replaced only by a manifest whose layers are a superset of what is there.
//! When the target holds layers the origin lacks, the origin's layers are merged in instead, and
//! nothing is dropped. Image tags are never touched here.

use ferry_copy::Copier;
use ferry_model::{Digest, Repository, TagOrDigest};
use ferry_registry::RegistryWrite;

use crate::artifacts::{self, Artifact};
use crate::cosign::ArtifactKind;
use crate::error::TrustError;

/// Why a listed referrer was not carried. None of these blocks the image: the referrer is the
/// source's problem, reported by name, and nothing is written on its behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Its `subject` names another manifest: carried, it would create a referrers index for
    /// an image this promotion never verified or copied.
    ForeignSubject(Digest),
    /// It has no `subject` at all, so it refers to nothing.
    NoSubject,
    /// The listing says it is larger than any manifest Ferry reads.
    TooLarge(u64),
    /// It could not be read as a manifest.
    Unreadable,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::ForeignSubject(other) => write!(f, "its subject is {other}, another image"),
            Skip::NoSubject => f.write_str("it has no subject"),
            Skip::TooLarge(size) => {
                write!(
                    f,
                    "it is {size} bytes, over the {}-byte manifest limit",
                    ferry_registry::manifest::MAX_MANIFEST_BYTES
                )
            }
            Skip::Unreadable => f.write_str("it cannot be read as a manifest"),
        }
    }
}

/// What replicating one artifact did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replicated {
    /// The origin has no such artifact.
    NothingToCopy,
    /// The target already has exactly this manifest.
    AlreadyThere,
    /// The target had none; the origin's manifest was copied byte for byte.
    Copied,
    /// The target's manifest was replaced by the origin's, a superset of it.
    Replaced,
    /// The target had layers the origin lacks; the origin's were appended to it.
    Merged,
    /// A listed referrer that is not the carried image's own (see
    /// [`Skip`]): left where it is, reported.
    Skipped(Skip),
}

/// Copies the `kind` artifact of `digest` from `from` to `to`. With `dry_run`, reads both sides
/// and says what it would do, writing nothing.
pub async fn replicate<R: RegistryWrite>(
    copier: &Copier<R>,
    from: &Repository,
    to: &Repository,
    digest: &Digest,
    kind: ArtifactKind,
    dry_run: bool,
) -> Result<Replicated, TrustError> {
    let registry = copier.registry();
    let Some(origin) = artifacts::read(registry, from, digest, kind).await? else {
        return Ok(Replicated::NothingToCopy);
    };
    let target = artifacts::read(registry, to, digest, kind).await?;
    let tag = kind.tag_for(digest);
    match target {
        Some(existing) if existing.manifest.digest == origin.manifest.digest => Ok(Replicated::AlreadyThere),
        Some(existing) if !origin.is_superset_of(&existing) => {
            if !dry_run {
                merge_into(registry, from, to, digest, kind, &origin).await?;
            }
            Ok(Replicated::Merged)
        }
        existing if dry_run => Ok(if existing.is_some() { Replicated::Replaced } else { Replicated::Copied }),
        existing => {
            // Its blobs and config first (the copier); the manifest itself goes in with the
            // tag's PUT, which stores it too.
            copier.copy_contents(from, to, origin.manifest.digest).await?;
            // Re-check right before moving the tag: only what we read, or nothing, may be there.
            let now = registry.head_manifest(to, &TagOrDigest::Tag(tag.clone())).await?.map(|h| h.digest);
            if now != existing.as_ref().map(|e| e.manifest.digest) {
                return Err(TrustError::Raced { repository: to.clone(), tag });
            }
            registry.put_manifest(to, &TagOrDigest::Tag(tag.clone()), &origin.manifest).await?;
            Ok(if existing.is_some() { Replicated::Replaced } else { Replicated::Copied })
        }
    }
}

async fn merge_into<R: RegistryWrite>(
    registry: &R,
    from: &Repository,
    to: &Repository,
    digest: &Digest,
    kind: ArtifactKind,
    origin: &Artifact,
) -> Result<(), TrustError> {
    let mut layers = Vec::with_capacity(origin.layers.len());
    for layer in &origin.layers {
        let bytes = artifacts::layer_bytes(registry, from, layer).await?;
        layers.push((layer.clone(), bytes));
    }
    artifacts::append(registry, to, digest, kind, &layers, |_| false).await?;
    Ok(())
}

/// Replicates every artifact kind.
pub async fn replicate_all<R: RegistryWrite>(
    copier: &Copier<R>,
    from: &Repository,
    to: &Repository,
    digest: &Digest,
    dry_run: bool,
) -> Result<Vec<(ArtifactKind, Replicated)>, TrustError> {
    let mut done = Vec::new();
    for kind in ArtifactKind::ALL {
        done.push((kind, replicate(copier, from, to, digest, kind, dry_run).await?));
    }
    Ok(done)
}
