//! Copying one manifest tree and writing its tags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_model::{Digest, Host, Repository, Tag, TagOrDigest};
use ferry_registry::{Descriptor, RawManifest, RegistryWrite, Transfer};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::OnceCell;

use crate::error::CopyError;

/// Manifest PUTs refused as a storage race (see [`Copier::put_manifest`]) before the refusal is
/// reported as transient: waits of 0.2, 0.4, 0.8 and 1.6 s between them.
const STORAGE_RACE_ROUNDS: u32 = 5;

/// The distribution error code of a manifest PUT refusal that can be a storage race.
fn storage_race(error: &ferry_registry::RegistryError) -> Option<&str> {
    match error {
        ferry_registry::RegistryError::Status { status: 400, code: Some(code), .. }
            if code == "DIGEST_INVALID" || code == "MANIFEST_BLOB_UNKNOWN" || code == "BLOB_UNKNOWN" =>
        {
            Some(code)
        }
        _ => None,
    }
}
use crate::stats::CopyStats;

/// A child image of an index the destination lacks: its bytes, its blobs and its config.
struct ChildImage {
    raw: RawManifest,
    blobs: Vec<Descriptor>,
    config: Option<Digest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// Manifests (edges grouped by destination) copied at once.
    pub max_images: usize,
    /// Blobs and child manifests of one image transferred at once.
    pub max_blobs: usize,
    /// Indexes nested deeper than this are refused (a verification failure). The OCI ecosystem
    /// nests at most two or three (an index of indexes of images).
    pub max_index_depth: usize,
    /// An index with more distinct children than this is refused.
    pub max_index_children: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            max_images: 8,
            max_blobs: 4,
            max_index_depth: ferry_registry::MAX_INDEX_DEPTH,
            max_index_children: ferry_registry::MAX_INDEX_CHILDREN,
        }
    }
}

/// One manifest to make exist at one destination, and the tags to point at it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub source: Repository,
    pub digest: Digest,
    pub destination: Repository,
    pub tags: Vec<Tag>,
    /// The plan found the manifest absent at the destination, so there is no point asking
    /// again before copying. (If it appeared meanwhile, pushing the same bytes again is
    /// harmless: a manifest PUT by digest is idempotent.)
    pub known_absent: bool,
}

/// What a finished edge needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// The manifest (and whatever it referenced) was copied, then tagged.
    Copied,
    /// The manifest was there; only the tag was written.
    Tagged,
    /// Nothing: it was all there already.
    Present,
}

/// The result of one [`Job`]: for the manifest, and for each of its tags in order.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    /// `true` if the manifest was copied, `false` if it was already there.
    pub manifest: Result<bool, CopyError>,
    /// `true` if the tag was written, `false` if it already pointed at the digest.
    pub tags: Vec<Result<bool, CopyError>>,
}

impl JobOutcome {
    /// The outcome for the job's tagless edge, if it has one.
    pub fn tagless(&self) -> Result<Done, CopyError> {
        self.manifest.clone().map(|copied| if copied { Done::Copied } else { Done::Present })
    }

    /// The outcome for the edge of the `i`-th tag.
    pub fn tag(&self, i: usize) -> Result<Done, CopyError> {
        let copied = self.manifest.clone()?;
        let written = self.tags[i].clone()?;
        Ok(match (copied, written) {
            (true, _) => Done::Copied,
            (false, true) => Done::Tagged,
            (false, false) => Done::Present,
        })
    }
}

/// Copies manifests between registries. One `Copier` serves a whole promotion: it remembers
/// which repository on each destination host already holds each blob, so later images mount
/// instead of uploading again.
#[derive(Debug)]
pub struct Copier<R> {
    registry: R,
    options: CopyOptions,
    stats: Arc<CopyStats>,
    /// (destination host, blob) → a repository on that host known to hold it. The cell is the
    /// single flight: the first caller transfers, the others wait for it.
    blobs: Mutex<HashMap<(Host, Digest), Arc<OnceCell<Repository>>>>,
}

/// How much of a tree to write and check.
#[derive(Clone, Copy, Debug)]
struct Tree {
    /// The plan found the root absent at the destination: children are not looked up first.
    known_absent: bool,
    /// The root will be written by a tag PUT, not by digest.
    root_by_tag: bool,
}

impl<R: RegistryWrite> Copier<R> {
    pub fn new(registry: R, options: CopyOptions) -> Self {
        Self { registry, options, stats: Arc::new(CopyStats::default()), blobs: Mutex::new(HashMap::new()) }
    }

    pub fn stats(&self) -> &Arc<CopyStats> {
        &self.stats
    }

    pub fn options(&self) -> CopyOptions {
        self.options
    }

    pub fn registry(&self) -> &R {
        &self.registry
    }

    /// Makes `job.digest` exist at `job.destination` and points each tag at it.
    pub async fn copy(&self, job: &Job) -> JobOutcome {
        let manifest = self.ensure_manifest(job).await;
        let (copied, raw) = match manifest {
            Ok(found) => found,
            Err(error) => {
                return JobOutcome { manifest: Err(error.clone()), tags: vec![Err(error); job.tags.len()] };
            }
        };
        let mut tags = Vec::with_capacity(job.tags.len());
        for tag in &job.tags {
            let result = match &raw {
                Some(raw) => self.write_tag(&job.destination, tag, raw).await,
                None => Err(CopyError::Manifest {
                    repository: job.destination.clone(),
                    digest: job.digest,
                    reason: "the manifest vanished from the destination before it could be tagged".into(),
                }),
            };
            tags.push(result);
        }
        JobOutcome { manifest: Ok(copied), tags }
    }

    /// Copies everything the manifest `digest` at `source` references (its blobs, and its
    /// children with theirs) to `destination`, but not the manifest itself, and returns its
    /// bytes: for a caller that writes it by tag after a check of its own (the replicator
    /// moving an artifact tag), one manifest request fewer than a PUT by digest first.
    pub async fn copy_contents(
        &self,
        source: &Repository,
        destination: &Repository,
        digest: Digest,
    ) -> Result<RawManifest, CopyError> {
        self.copy_tree(source, destination, digest, Tree { known_absent: true, root_by_tag: true }).await
    }

    /// Returns whether the manifest was copied, and its bytes when tags need them.
    async fn ensure_manifest(&self, job: &Job) -> Result<(bool, Option<RawManifest>), CopyError> {
        let reference = TagOrDigest::Digest(job.digest);
        if job.known_absent {
            // Go straight to copying.
        } else if job.tags.is_empty() {
            if self.registry.head_manifest(&job.destination, &reference).await?.is_some() {
                return Ok((false, None));
            }
        } else if let Some(raw) = self.registry.get_manifest(&job.destination, &reference).await? {
            return Ok((false, Some(raw)));
        }
        // A tagged root is written by its first tag's PUT, which puts the manifest and the tag
        // at once, after every child and blob: one request fewer than a PUT by digest first.
        let shape = Tree { known_absent: job.known_absent, root_by_tag: !job.tags.is_empty() };
        let raw = self.copy_tree(&job.source, &job.destination, job.digest, shape).await?;
        Ok((true, Some(raw)))
    }

    /// Copies the manifest `digest` and everything it references, children and blobs first,
    /// and returns its bytes.
    async fn copy_tree(
        &self,
        source: &Repository,
        destination: &Repository,
        digest: Digest,
        shape: Tree,
    ) -> Result<RawManifest, CopyError> {
        self.copy_subtree(source, destination, digest, 1, shape).await
    }

    /// [`Self::copy_tree`] for a manifest `level` indexes deep (the root is level 1). The
    /// recursion is bounded by `max_index_depth`, never by the input: a staging registry
    /// accepts an index nested hundreds deep, and following it would exhaust the stack.
    async fn copy_subtree(
        &self,
        source: &Repository,
        destination: &Repository,
        digest: Digest,
        level: usize,
        shape: Tree,
    ) -> Result<RawManifest, CopyError> {
        let root = self.fetch(source, digest).await?;
        let content = root.content()?;
        let mut blobs: Vec<Descriptor> = content.blobs().into_iter().cloned().collect();
        // Each distinct child once: an index may list the same child many times.
        let mut children: Vec<Descriptor> = content.children().to_vec();
        children.sort_by_key(|c| c.digest);
        children.dedup_by_key(|c| c.digest);
        if children.len() > self.options.max_index_children {
            return Err(CopyError::Refused {
                repository: source.clone(),
                digest,
                reason: format!(
                    "the index lists {} distinct children; Ferry copies at most {}",
                    children.len(),
                    self.options.max_index_children
                ),
            });
        }
        // Children the destination lacks, fetched from the source in parallel.
        let children: Vec<Option<ChildImage>> = futures_util::stream::iter(children)
            .map(|child| async move {
                // When the plan found the root absent, its children are almost always absent
                // too: they are written without asking (a PUT of the same bytes is harmless).
                if !shape.known_absent
                    && self
                        .registry
                        .head_manifest(destination, &TagOrDigest::Digest(child.digest))
                        .await?
                        .is_some()
                {
                    return Ok::<_, CopyError>(None);
                }
                let raw = self.fetch(source, child.digest).await?;
                let child_content = raw.content()?;
                if !child_content.children().is_empty() {
                    if level >= self.options.max_index_depth {
                        return Err(CopyError::Refused {
                            repository: source.clone(),
                            digest,
                            reason: format!(
                                "indexes are nested more than {} deep (at child {})",
                                self.options.max_index_depth, child.digest
                            ),
                        });
                    }
                    // A nested index: copy its subtree fully before the parent.
                    let nested = Tree { root_by_tag: false, ..shape };
                    Box::pin(self.copy_subtree(source, destination, child.digest, level + 1, nested)).await?;
                    return Ok(None);
                }
                let blobs = child_content.blobs().into_iter().cloned().collect();
                let config = child_content.config().map(|c| c.digest);
                Ok(Some(ChildImage { raw, blobs, config }))
            })
            .buffer_unordered(self.options.max_blobs.max(1))
            .try_collect()
            .await?;
        let children: Vec<ChildImage> = children.into_iter().flatten().collect();
        // An image's config is its own: when the plan found the manifest absent, its config
        // almost never is there, so it is uploaded without asking (its layers, often shared,
        // are asked about).
        let configs: Vec<Digest> = match shape.known_absent {
            true => content
                .config()
                .map(|c| c.digest)
                .into_iter()
                .chain(children.iter().filter_map(|c| c.config))
                .collect(),
            false => Vec::new(),
        };
        for child in &children {
            blobs.extend(child.blobs.iter().cloned());
        }
        blobs.sort_by_key(|b| b.digest);
        blobs.dedup_by_key(|b| b.digest);
        let configs = &configs;
        futures_util::stream::iter(blobs)
            .map(|blob| async move {
                self.ensure_blob(source, destination, &blob, configs.contains(&blob.digest)).await
            })
            .buffer_unordered(self.options.max_blobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        futures_util::stream::iter(children)
            .map(|child| async move { self.push_manifest(destination, &child.raw).await })
            .buffer_unordered(self.options.max_blobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        if level == 1 && shape.root_by_tag {
            // Counted here; its first tag's PUT writes it.
            CopyStats::add(&self.stats.manifests_pushed, 1);
        } else {
            self.push_manifest(destination, &root).await?;
        }
        Ok(root)
    }

    async fn fetch(&self, source: &Repository, digest: Digest) -> Result<RawManifest, CopyError> {
        self.registry
            .get_manifest(source, &TagOrDigest::Digest(digest))
            .await?
            .ok_or_else(|| CopyError::SourceMissing { source_repository: source.clone(), digest })
    }

    async fn push_manifest(&self, destination: &Repository, raw: &RawManifest) -> Result<(), CopyError> {
        self.put_manifest(destination, &TagOrDigest::Digest(raw.digest), raw).await?;
        CopyStats::add(&self.stats.manifests_pushed, 1);
        Ok(())
    }

    /// PUTs `raw` as `reference`, waiting out a registry's storage race. distribution answers
    /// `DIGEST_INVALID` or `MANIFEST_BLOB_UNKNOWN` to a manifest PUT while another writer links
    /// a blob it references (many promotions sharing a base layer at once). When Ferry hashed
    /// the bytes itself and every blob and child the manifest names is at the destination,
    /// that answer is not a verdict on the content: the PUT is sent again after a pause, and
    /// if the registry keeps refusing, the failure is transient (retried later), never a
    /// verification failure for a person to look at. Anything missing, and the refusal stands.
    async fn put_manifest(
        &self,
        destination: &Repository,
        reference: &TagOrDigest,
        raw: &RawManifest,
    ) -> Result<(), CopyError> {
        let mut round: u32 = 0;
        loop {
            round += 1;
            let error = match self.registry.put_manifest(destination, reference, raw).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let Some(code) = storage_race(&error) else { return Err(error.into()) };
            if Digest::of(&raw.bytes) != raw.digest || !self.references_present(destination, raw).await? {
                return Err(error.into());
            }
            if round >= STORAGE_RACE_ROUNDS {
                return Err(ferry_registry::RegistryError::Unavailable(format!(
                    "{destination}@{}: the registry answered {code} {round} times, although Ferry hashed the manifest's bytes itself and every blob and child it names is there: a race in the registry's storage; retried later",
                    raw.digest
                ))
                .into());
            }
            tracing::debug!(%destination, digest = %raw.digest, code, round, "manifest PUT refused while its blobs are there; sending it again");
            tokio::time::sleep(std::time::Duration::from_millis(100 << round)).await;
        }
    }

    /// Whether every blob and child `raw` names is at `destination`.
    async fn references_present(
        &self,
        destination: &Repository,
        raw: &RawManifest,
    ) -> Result<bool, CopyError> {
        let Ok(content) = raw.content() else { return Ok(false) };
        for blob in content.blobs() {
            if !self.registry.blob_exists(destination, &blob.digest).await? {
                return Ok(false);
            }
        }
        for child in content.children() {
            if self.registry.head_manifest(destination, &TagOrDigest::Digest(child.digest)).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Makes `blob` exist in `destination`. The first request for a blob on a host uploads it
    /// if [`RegistryWrite::needs_upload`] says so (or, `unasked`, without asking: bytes already
    /// there are harmless); concurrent and later requests for other repositories on that host
    /// mount it from the repository that has it.
    async fn ensure_blob(
        &self,
        source: &Repository,
        destination: &Repository,
        blob: &Descriptor,
        unasked: bool,
    ) -> Result<(), CopyError> {
        let cell = {
            let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
            blobs.entry((destination.host().clone(), blob.digest)).or_default().clone()
        };
        let holder = cell
            .get_or_try_init(|| async {
                if !unasked && !self.registry.needs_upload(destination, blob).await? {
                    CopyStats::add(&self.stats.blobs_present, 1);
                } else {
                    self.transfer(source, destination, blob, None).await?;
                }
                Ok::<_, CopyError>(destination.clone())
            })
            .await?;
        if holder != destination {
            self.transfer(source, destination, blob, Some(holder)).await?;
        }
        Ok(())
    }

    /// One blob transfer, restarted on transient failures (a dropped connection, a 5xx on the
    /// streamed upload). Verification failures are never retried.
    async fn transfer(
        &self,
        source: &Repository,
        destination: &Repository,
        blob: &Descriptor,
        mount_from: Option<&Repository>,
    ) -> Result<(), CopyError> {
        // A failed streamed upload is restarted inside `transfer_blob`; every other request
        // was retried by the transport. Nothing is retried again here.
        let transfer = self
            .registry
            .transfer_blob(source, destination, blob, mount_from, Some(self.stats.bytes.clone()))
            .await?;
        match transfer {
            Transfer::Mounted => CopyStats::add(&self.stats.blobs_mounted, 1),
            Transfer::Streamed(_) => CopyStats::add(&self.stats.blobs_streamed, 1),
        }
        Ok(())
    }

    /// Points `destination:tag` at `raw`, never moving an existing tag: the tag is re-read
    /// immediately before the write and read back after it. Returns whether it was written.
    async fn write_tag(
        &self,
        destination: &Repository,
        tag: &Tag,
        raw: &RawManifest,
    ) -> Result<bool, CopyError> {
        let reference = TagOrDigest::Tag(tag.clone());
        match self.registry.head_manifest(destination, &reference).await? {
            Some(head) if head.digest == raw.digest => return Ok(false),
            Some(head) => {
                tracing::warn!(%destination, %tag, existing = %head.digest, wanted = %raw.digest, "tag conflict; not overwritten");
                return Err(CopyError::Conflict {
                    destination: destination.clone(),
                    tag: tag.clone(),
                    existing: head.digest,
                });
            }
            None => {}
        }
        self.put_manifest(destination, &reference, raw).await?;
        let found = self.registry.head_manifest(destination, &reference).await?.map(|h| h.digest);
        if found != Some(raw.digest) {
            tracing::error!(
                %destination, %tag, expected = %raw.digest, ?found,
                "VERIFICATION FAILED: a tag read back differently from what was written"
            );
            return Err(CopyError::ReadBack {
                destination: destination.clone(),
                tag: tag.clone(),
                expected: raw.digest,
                found,
            });
        }
        CopyStats::add(&self.stats.tags_written, 1);
        Ok(true)
    }
}
