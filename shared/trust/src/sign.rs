//! The signer: cosign simple-signing signatures at the primary destination.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_model::{Digest, Repository, TagOrDigest};
use ferry_registry::RegistryWrite;

use crate::artifacts::{self, Appended};
use crate::cosign::{
    self, ArtifactKind, Layer, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SimpleSigning,
};
use crate::error::TrustError;
use crate::keys::{SigningKey, VerificationKey};

/// What signing one promoted image did, per digest signed (the image, then each child of an
/// index).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signed {
    pub signed: Vec<Digest>,
    /// Digests this key had already signed: nothing was written for them.
    pub already: Vec<Digest>,
    /// Digests that got a Sigstore bundle signature referrer (cosign v3's format) now; the
    /// others had one by this key already.
    pub bundled: Vec<Digest>,
    /// The first target's referrers as the bundle write left them (the listing it went by and
    /// what it added): a hint for the promotion's next step, `None` when no bundle was written
    /// or looked up.
    pub listing: Option<Vec<ferry_registry::referrers::Referrer>>,
}

/// Signs `digest` in `repository` (the primary destination), and each child if it is an index.
/// Idempotent: a digest this key has already signed is left alone. Otherwise a layer is
/// appended to the `.sig` manifest; existing layers are never dropped.
pub async fn sign<R: RegistryWrite>(
    registry: &R,
    key: &SigningKey,
    formats: crate::Formats,
    repository: &Repository,
    digest: Digest,
) -> Result<Signed, TrustError> {
    let targets = targets(registry, repository, digest).await?;
    sign_targets(registry, key, formats, repository, &targets).await
}

/// `digest` and, when it is an index, each of its children, as `repository` holds them: what a
/// promotion signs, and what every mirror must carry the signatures of.
pub async fn targets<R: RegistryWrite>(
    registry: &R,
    repository: &Repository,
    digest: Digest,
) -> Result<Vec<Digest>, TrustError> {
    let manifest =
        registry.get_manifest(repository, &TagOrDigest::Digest(digest)).await?.ok_or_else(|| {
            TrustError::Image {
                repository: repository.clone(),
                digest,
                reason: "is not in the destination; nothing to sign".into(),
            }
        })?;
    let mut targets = vec![digest];
    targets.extend(manifest.content()?.children().iter().map(|c| c.digest));
    Ok(targets)
}

/// Signs each of `targets` in `repository` that this key has not signed yet.
pub async fn sign_targets<R: RegistryWrite>(
    registry: &R,
    key: &SigningKey,
    formats: crate::Formats,
    repository: &Repository,
    targets: &[Digest],
) -> Result<Signed, TrustError> {
    let verifier = key.verification_key()?;
    let mut outcome = Signed::default();
    for &target in targets {
        // The legacy `.sig` and the bundle are different documents (a tag, a referrer and the
        // tag index): written side by side.
        let legacy = async {
            match formats.legacy {
                true => sign_one(registry, key, &verifier, repository, target).await.map(Some),
                false => Ok(None),
            }
        };
        // The same signature as cosign v3 writes it: a bundle referrer. cosign v3 reads only
        // bundles once any exist for a digest, so without it Ferry's signature would be
        // invisible next to a builder's bundle.
        let bundle = async {
            if !formats.bundle {
                return Ok(None);
            }
            let statement = crate::bundle::signature_statement(&target);
            crate::bundle::write_all(
                registry,
                key,
                repository,
                &target,
                &[(crate::bundle::COSIGN_SIGN_PREDICATE_TYPE, &statement)],
                None,
            )
            .await
            .map(Some)
        };
        let (legacy, bundle) = tokio::try_join!(legacy, bundle)?;
        match legacy {
            Some(true) => outcome.signed.push(target),
            Some(false) => outcome.already.push(target),
            None => {}
        }
        let Some(written) = bundle else { continue };
        let bundled = written.appended.first().copied().unwrap_or(Appended::Unchanged);
        if Some(&target) == targets.first() {
            outcome.listing = Some(written.listing);
        }
        if bundled == Appended::Written {
            outcome.bundled.push(target);
        }
        // Bundles only: the bundle is the signature.
        if !formats.legacy {
            if bundled == Appended::Written {
                outcome.signed.push(target)
            } else {
                outcome.already.push(target)
            }
        }
    }
    Ok(outcome)
}

/// Whether the `.sig` artifact `existing` (as read) has a valid signature by `verifier` for
/// `digest`.
async fn signed_in<R: RegistryWrite>(
    registry: &R,
    verifier: &VerificationKey,
    repository: &Repository,
    digest: &Digest,
    existing: Option<&artifacts::Artifact>,
) -> Result<bool, TrustError> {
    let Some(existing) = existing else {
        return Ok(false);
    };
    for layer in existing.layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE) {
        let Some(signature) = layer.signature().and_then(|s| cosign::unb64(s).ok()) else { continue };
        let payload = artifacts::layer_bytes(registry, repository, layer).await?;
        if !verifier.verifies(&payload, &signature) {
            continue;
        }
        if serde_json::from_slice::<SimpleSigning>(&payload)
            .is_ok_and(|p| p.critical.image.docker_manifest_digest == digest.to_string())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn sign_one<R: RegistryWrite>(
    registry: &R,
    key: &SigningKey,
    verifier: &VerificationKey,
    repository: &Repository,
    digest: Digest,
) -> Result<bool, TrustError> {
    // One read: what decides whether to sign is also what the new layer is merged into.
    let existing = artifacts::read(registry, repository, &digest, ArtifactKind::Signature).await?;
    if signed_in(registry, verifier, repository, &digest, existing.as_ref()).await? {
        return Ok(false);
    }
    let payload = SimpleSigning::new(repository, &digest).to_bytes();
    let signature = key.sign(&payload).await?;
    let layer = Layer {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        digest: Digest::of(&payload),
        size: payload.len() as u64,
        annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), cosign::b64(&signature))]),
    };
    // A concurrent signer with the same key (a redelivered message handled twice at once) may
    // get there first: its layer for this payload is as good as ours, so ours is not added.
    let payload_digest = layer.digest;
    let signed_by_key = |artifact: &artifacts::Artifact| {
        artifact.layers.iter().any(|l| {
            l.digest == payload_digest
                && l.signature()
                    .and_then(|s| cosign::unb64(s).ok())
                    .is_some_and(|sig| verifier.verifies(&payload, &sig))
        })
    };
    let appended = artifacts::append_to(
        registry,
        repository,
        &digest,
        ArtifactKind::Signature,
        Some(existing),
        &[(layer, Bytes::from(payload.clone()))],
        signed_by_key,
    )
    .await?;
    tracing::info!(%repository, %digest, ?appended, "signed");
    Ok(appended == Appended::Written)
}
