//! OCI 1.1 referrers carried with an image: a trusted source's referrers to the primary, and
//! the primary's to each mirror. Signatures and attestations as Sigstore bundles (cosign v3),
//! SBOMs, vulnerability reports, Notation signatures, artifact types Ferry does not know: each
//! referrer manifest is copied byte for byte with its blobs, after its subject exists, and
//! listed at the target by [`RegistryWrite::put_referrers`], which keeps every entry the target
//! already lists.

use ferry_model::{Digest, Repository, TagOrDigest};
use ferry_registry::manifest::MAX_MANIFEST_BYTES;
use ferry_registry::{RegistryError, RegistryWrite};
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::error::TrustError;
use crate::policy::ReferrerFilter;
use crate::replicate::{Replicated, Skip};

/// Carries every referrer of `subject` from `from` to `to` that `filter` admits: one referrers
/// lookup at each side, then, for each referrer `to` lacks, its blobs and manifest. A listed
/// referrer whose own `subject` is not `subject` (or that has none, or is over the manifest
/// size limit) is skipped with a warning: nothing is ever written to the referrers of a digest
/// the promotion did not carry. With `dry_run`, says what it would do and writes nothing.
/// Returns each referrer's digest and what was done.
pub async fn carry<R: RegistryWrite>(
    registry: &R,
    from: &Repository,
    to: &Repository,
    subject: &Digest,
    filter: &ReferrerFilter,
    dry_run: bool,
) -> Result<Vec<(Digest, Replicated)>, TrustError> {
    let mut wanted = registry.referrers(from, subject, None).await?;
    wanted.retain(|r| filter.admits(r.artifact_type.as_deref()));
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let there: std::collections::BTreeSet<Digest> =
        registry.referrers(to, subject, None).await?.into_iter().map(|r| r.digest).collect();
    let mut done = Vec::with_capacity(wanted.len());
    // Written together at the end: one tag index update per subject, not one per referrer.
    let mut to_list = Vec::new();
    let mut blobs: Vec<ferry_registry::Descriptor> = Vec::new();
    let skip = |done: &mut Vec<(Digest, Replicated)>, referrer: Digest, why: Skip| {
        tracing::warn!(%from, %subject, %referrer, reason = %why, "a listed referrer is skipped, not carried");
        done.push((referrer, Replicated::Skipped(why)));
    };
    for referrer in wanted {
        if there.contains(&referrer.digest) {
            done.push((referrer.digest, Replicated::AlreadyThere));
            continue;
        }
        if referrer.size > MAX_MANIFEST_BYTES as u64 {
            skip(&mut done, referrer.digest, Skip::TooLarge(referrer.size));
            continue;
        }
        let manifest = match registry.get_manifest(from, &TagOrDigest::Digest(referrer.digest)).await {
            Ok(Some(manifest)) => manifest,
            Ok(None) => {
                // Listed, but gone (deleted after it was indexed): nothing to carry.
                tracing::warn!(%from, %subject, referrer = %referrer.digest, "a listed referrer is missing; not carried");
                done.push((referrer.digest, Replicated::NothingToCopy));
                continue;
            }
            // Larger than the listing said, or not a manifest: the source's problem, not the image's.
            Err(RegistryError::InvalidResponse { .. }) => {
                skip(&mut done, referrer.digest, Skip::Unreadable);
                continue;
            }
            Err(other) => return Err(other.into()),
        };
        match ferry_registry::referrers::describe(&manifest) {
            Ok((_, own)) if own == *subject => {}
            Ok((_, other)) => {
                skip(&mut done, referrer.digest, Skip::ForeignSubject(other));
                continue;
            }
            Err(_) if !manifest_has_subject(&manifest.bytes) => {
                skip(&mut done, referrer.digest, Skip::NoSubject);
                continue;
            }
            Err(_) => {
                skip(&mut done, referrer.digest, Skip::Unreadable);
                continue;
            }
        }
        if dry_run {
            done.push((referrer.digest, Replicated::Copied));
            continue;
        }
        blobs.extend(manifest.content()?.blobs().into_iter().cloned());
        to_list.push(manifest);
        done.push((referrer.digest, Replicated::Copied));
    }
    if !to_list.is_empty() {
        // Every referrer's blobs, each once (bundles share their empty config), side by side.
        blobs.sort_by_key(|b| b.digest);
        blobs.dedup_by_key(|b| b.digest);
        futures_util::stream::iter(blobs)
            .map(|blob| async move {
                if registry.needs_upload(to, &blob).await? {
                    registry.transfer_blob(from, to, &blob, None, None).await?;
                }
                Ok::<_, RegistryError>(())
            })
            .buffer_unordered(BLOBS_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;
        registry.put_referrers(to, &to_list).await?;
    }
    Ok(done)
}

/// Blob transfers of one carry running at once.
const BLOBS_AT_ONCE: usize = 8;

/// Whether a manifest document has a `subject` field at all.
fn manifest_has_subject(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|doc| doc.get("subject").is_some())
}
