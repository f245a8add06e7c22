//! Write access: the [`RegistryWrite`] port and its implementation for [`OciRegistry`].
//!
//! Blobs move as streams. The copier never holds a whole layer: the source `GET` body is
//! hashed chunk by chunk as it is forwarded into the destination upload, and a digest or size
//! mismatch fails the upload before the registry can commit it. Manifests are pushed as the
//! exact bytes that were read.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use ferry_model::{Digest, Repository, TagOrDigest};
use futures_util::Stream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::client::{OciRegistry, Registry, TagIndex};
use crate::error::RegistryError;
use crate::manifest::{Descriptor, RawManifest};
use crate::referrers::{self, ReferrerWrite, ReferrersMode};
use crate::transport::{Call, Scope};

/// How a blob came to exist at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// A cross-repository mount: no bytes moved.
    Mounted,
    /// Uploaded: streamed from the source, or (a small blob) taken whole from the source or
    /// from the bytes this client holds; this many bytes.
    Streamed(u64),
}

/// Write access to registries.
pub trait RegistryWrite: Registry {
    /// Whether `repository` holds the blob.
    fn blob_exists(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// Makes `blob` exist in `to`, taking it from `from`. When `mount_from` (or `from`) is a
    /// repository on `to`'s host, a cross-repository mount is tried first. If the registry
    /// answers the mount with an upload session instead (202), that session is used for a
    /// normal upload, not abandoned. Otherwise the blob is streamed, hashed on the way, and a
    /// mismatch with `blob.digest` or `blob.size` aborts the upload as a
    /// [`RegistryError::DigestMismatch`]. Bytes streamed are added to `progress`.
    fn transfer_blob(
        &self,
        from: &Repository,
        to: &Repository,
        blob: &Descriptor,
        mount_from: Option<&Repository>,
        progress: Option<Arc<AtomicU64>>,
    ) -> impl Future<Output = Result<Transfer, RegistryError>> + Send;

    /// Whether `blob` must be uploaded to `repository`. A small one (at most
    /// [`UPLOAD_UNASKED_MAX`]) whose bytes are in this client's hands (read and checked, or
    /// uploaded, a moment ago) is, without asking: for content just made a `HEAD` almost
    /// always answers 404, and an upload of bytes already there is harmless. Any other is, when
    /// the repository lacks it (a `HEAD`).
    fn needs_upload(
        &self,
        repository: &Repository,
        blob: &Descriptor,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// Uploads a small blob held in memory (a signature payload, an attestation). One of at
    /// most [`UPLOAD_UNASKED_MAX`] bytes is uploaded without asking whether the repository
    /// holds it; a larger one is checked first.
    fn put_blob(
        &self,
        repository: &Repository,
        bytes: Bytes,
    ) -> impl Future<Output = Result<Digest, RegistryError>> + Send;

    /// PUTs `manifest`'s exact bytes under `reference` and checks the digest the registry
    /// reports.
    fn put_manifest(
        &self,
        repository: &Repository,
        reference: &TagOrDigest,
        manifest: &RawManifest,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// PUTs a referrer manifest (one with a `subject`; its blobs must be there) by digest, and
    /// makes it listed among its subject's referrers: by the registry itself when it answers
    /// with `OCI-Subject`, else in the `sha256-<hex>` tag index, which is read, merged (nothing
    /// in it is dropped), written and read back. A tag that holds anything but a referrers
    /// index is never overwritten: that is an error.
    fn put_referrer(
        &self,
        repository: &Repository,
        manifest: &RawManifest,
    ) -> impl Future<Output = Result<ReferrerWrite, RegistryError>> + Send;

    /// [`RegistryWrite::put_referrer`] for several referrers at once: each is PUT, and those
    /// the registry does not index itself are added to their subject's tag index in one
    /// read-merge-write cycle per subject (one wait for concurrent writers, not one each).
    /// The results are in the order of `manifests`.
    fn put_referrers(
        &self,
        repository: &Repository,
        manifests: &[RawManifest],
    ) -> impl Future<Output = Result<Vec<ReferrerWrite>, RegistryError>> + Send;
}

/// Blobs up to this size are uploaded without a `HEAD` first when their bytes are in hand
/// (see [`RegistryWrite::needs_upload`]).
pub const UPLOAD_UNASKED_MAX: u64 = 64 * 1024;

impl RegistryWrite for OciRegistry {
    async fn needs_upload(&self, repository: &Repository, blob: &Descriptor) -> Result<bool, RegistryError> {
        if blob.size <= UPLOAD_UNASKED_MAX && self.keeps_blob(&blob.digest) {
            return Ok(true);
        }
        Ok(!self.blob_exists(repository, &blob.digest).await?)
    }

    async fn blob_exists(&self, repository: &Repository, digest: &Digest) -> Result<bool, RegistryError> {
        let call = Call::new(
            Method::HEAD,
            repository.host(),
            format!("/v2/{}/blobs/{digest}", repository.path()),
            Scope::Pull(repository.path().clone()),
        )
        .accept(&[404]);
        Ok(self.transport().send(&call).await?.status() != StatusCode::NOT_FOUND)
    }

    async fn transfer_blob(
        &self,
        from: &Repository,
        to: &Repository,
        blob: &Descriptor,
        mount_from: Option<&Repository>,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<Transfer, RegistryError> {
        let mount =
            mount_from.filter(|m| m.host() == to.host()).or((from.host() == to.host()).then_some(from));
        // Every request but the streamed PUT (and the body it reads from the source) is
        // replayable, and the transport retries it. A streamed upload is not, so a failure there
        // (a dropped source stream, a 5xx or a 429 on the PUT) restarts the whole transfer here,
        // up to `stream_attempts` times within the same budget, honouring `Retry-After`.
        let policy = self.transport().retry_policy();
        let started = std::time::Instant::now();
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let session = self.start_upload(to, &blob.digest, mount).await?;
            let location = match session {
                Upload::Mounted => return Ok(Transfer::Mounted),
                Upload::Session(location) => location,
            };
            // A small blob is taken whole: from this client's hands when it read or wrote it a
            // moment ago (the replicators copy what the promotion just wrote at the primary),
            // else read and checked first. A large one is streamed.
            let moved = if blob.size <= crate::cache::MAX_KEPT_BLOB as u64 {
                self.upload_whole(from, to, blob, &location, progress.clone()).await
            } else {
                self.stream_into(from, to, blob, &location, progress.clone()).await
            };
            let error = match moved {
                Ok(bytes) => return Ok(Transfer::Streamed(bytes)),
                Err(failure) => {
                    self.cancel_upload(to, &location).await;
                    match failure {
                        StreamFailure::Final(error) => return Err(error),
                        StreamFailure::Interrupted(error) => error,
                    }
                }
            };
            let backoff = policy.min_delay.saturating_mul(1 << attempt.min(8)).min(policy.max_delay);
            let delay = match &error {
                RegistryError::Throttled { retry_after, .. } => retry_after.unwrap_or(backoff),
                _ => backoff,
            };
            if !error.is_retryable()
                || attempt >= policy.stream_attempts
                || started.elapsed() + delay > policy.budget
            {
                return Err(error);
            }
            tracing::info!(%to, blob = %blob.digest, %error, ?delay, attempt, "restarting a streamed blob transfer");
            tokio::time::sleep(delay).await;
        }
    }

    async fn put_blob(&self, repository: &Repository, bytes: Bytes) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&bytes);
        self.remember_blob(digest, &bytes);
        let blob = Descriptor {
            media_type: "application/octet-stream".into(),
            digest,
            size: bytes.len() as u64,
            platform: None,
        };
        if !self.needs_upload(repository, &blob).await? {
            return Ok(digest);
        }
        let Upload::Session(location) = self.start_upload(repository, &digest, None).await? else {
            return Ok(digest);
        };
        let result = self.complete_upload(repository, &location, &digest, bytes).await;
        if result.is_err() {
            self.cancel_upload(repository, &location).await;
        }
        check_reported_digest(&result?, &digest, &format!("blob {repository}@{digest}"))?;
        Ok(digest)
    }

    async fn put_manifest(
        &self,
        repository: &Repository,
        reference: &TagOrDigest,
        manifest: &RawManifest,
    ) -> Result<(), RegistryError> {
        let content_type =
            HeaderValue::from_str(&manifest.media_type).map_err(|_| RegistryError::InvalidResponse {
                url: format!("{repository}@{}", manifest.digest),
                reason: format!("media type {:?} is not a valid header value", manifest.media_type),
            })?;
        let call = Call::new(
            Method::PUT,
            repository.host(),
            format!("/v2/{}/manifests/{reference}", repository.path()),
            Scope::Push(repository.path().clone(), None),
        )
        .header(CONTENT_TYPE, content_type)
        .body(manifest.bytes.clone())
        .accept(&[201]);
        let response = self.transport().send(&call).await?;
        check_reported_digest(&response, &manifest.digest, &format!("manifest {repository}:{reference}"))?;
        // The registry now holds exactly these bytes under this digest: a later read of them
        // (the signer's list of children) is answered without asking again.
        self.remember_manifest(repository, manifest);
        Ok(())
    }

    async fn put_referrer(
        &self,
        repository: &Repository,
        manifest: &RawManifest,
    ) -> Result<ReferrerWrite, RegistryError> {
        let mut done = self.put_referrers_impl(repository, std::slice::from_ref(manifest)).await?;
        done.pop().ok_or_else(|| RegistryError::Unavailable("no referrer was written".into()))
    }

    async fn put_referrers(
        &self,
        repository: &Repository,
        manifests: &[RawManifest],
    ) -> Result<Vec<ReferrerWrite>, RegistryError> {
        self.put_referrers_impl(repository, manifests).await
    }
}

/// Rounds of read-merge-write-read before a changing tag index is given up on.
const TAG_INDEX_ROUNDS: usize = 6;
/// How long after its write a tag index is read again (off the promotion's path), to catch a
/// concurrent writer whose older read overwrote it.
const TAG_INDEX_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);
/// Read-backs of one update that found entries dropped and merged them back, before giving up
/// to the next reconcile.
const READ_BACKS: usize = 4;

/// The pause before writing again after a storage race: short (the race is over once the other
/// write landed), growing with the round.
fn race_pause(round: usize) -> std::time::Duration {
    std::time::Duration::from_millis(25 << round.min(4))
}

/// distribution answers `DIGEST_INVALID` to a manifest PUT whose stored bytes changed under
/// it: two writers of the same path at once. For small documents Ferry rewrites (a referrers
/// tag index, a referrer manifest), that is a race to retry, not a verdict on the content: the
/// bytes sent are hashed by Ferry before sending.
fn store_race(error: &RegistryError) -> bool {
    matches!(error, RegistryError::Status { status: 400, code: Some(code), .. } if code == "DIGEST_INVALID")
}

impl OciRegistry {
    /// PUTs one referrer manifest by digest; `Some(subject, entry)` when the registry did not
    /// index it itself (no `OCI-Subject` answer) and the tag schema must list it.
    async fn put_referrer_manifest(
        &self,
        repository: &Repository,
        manifest: &RawManifest,
    ) -> Result<Option<(Digest, referrers::Referrer)>, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidResponse {
            url: format!("referrer {repository}@{}", manifest.digest),
            reason,
        };
        let (entry, subject) = referrers::describe(manifest).map_err(invalid)?;
        let content_type = HeaderValue::from_str(&manifest.media_type).map_err(|_| {
            invalid(format!("media type {:?} is not a valid header value", manifest.media_type))
        })?;
        let call = Call::new(
            Method::PUT,
            repository.host(),
            format!("/v2/{}/manifests/{}", repository.path(), manifest.digest),
            Scope::Push(repository.path().clone(), None),
        )
        .header(CONTENT_TYPE, content_type)
        .body(manifest.bytes.clone())
        .accept(&[201]);
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            match self.transport().send(&call).await {
                Err(e) if attempt < TAG_INDEX_ROUNDS && store_race(&e) => {
                    tokio::time::sleep(race_pause(attempt)).await;
                }
                other => break other?,
            }
        };
        check_reported_digest(
            &response,
            &manifest.digest,
            &format!("referrer {repository}@{}", manifest.digest),
        )?;
        // As for any manifest written: the replicators read it next, from here.
        self.remember_manifest(repository, manifest);
        let indexed = response
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == subject.to_string());
        if indexed {
            self.remember(repository.host(), ReferrersMode::Api);
            return Ok(None);
        }
        Ok(Some((subject, entry)))
    }

    async fn put_referrers_impl(
        &self,
        repository: &Repository,
        manifests: &[RawManifest],
    ) -> Result<Vec<ReferrerWrite>, RegistryError> {
        let mut results = vec![ReferrerWrite::Indexed; manifests.len()];
        // Subject -> (position in `manifests`, entry), in order.
        let mut by_subject: Vec<(Digest, Vec<(usize, referrers::Referrer)>)> = Vec::new();
        for (i, manifest) in manifests.iter().enumerate() {
            if let Some((subject, entry)) = self.put_referrer_manifest(repository, manifest).await? {
                match by_subject.iter_mut().find(|(s, _)| *s == subject) {
                    Some((_, list)) => list.push((i, entry)),
                    None => by_subject.push((subject, vec![(i, entry)])),
                }
            }
        }
        for (subject, entries) in by_subject {
            let written = self.tag_index_add(repository, &subject, &entries).await?;
            for ((i, _), result) in entries.iter().zip(written) {
                results[*i] = result;
            }
        }
        Ok(results)
    }

    /// Lists `entries` in `subject`'s tag index: the tag schema. One read-merge-write cycle at
    /// a time per tag index in this process (other indexes are updated side by side); across
    /// processes, a writer whose older read dropped an entry is caught by a read-back a moment
    /// later, off the promotion's path ([`Self::read_back_later`]), which merges it back.
    /// Nothing listed is dropped, and no promotion sleeps for it.
    async fn tag_index_add(
        &self,
        repository: &Repository,
        subject: &Digest,
        entries: &[(usize, referrers::Referrer)],
    ) -> Result<Vec<ReferrerWrite>, RegistryError> {
        let (outcomes, wrote) = self.tag_index_merge(repository, subject, entries).await?;
        if wrote {
            self.read_back_later(repository, subject, entries, 1);
        }
        Ok(outcomes)
    }

    /// The read-merge-write cycle (again after a storage race); whether anything was written.
    async fn tag_index_merge(
        &self,
        repository: &Repository,
        subject: &Digest,
        entries: &[(usize, referrers::Referrer)],
    ) -> Result<(Vec<ReferrerWrite>, bool), RegistryError> {
        let _one_at_a_time = self.tag_index_lock(repository, subject).lock().await;
        let tag = TagOrDigest::Tag(referrers::tag_for(subject));
        let mut written: Vec<bool> = vec![false; entries.len()];
        let listed_in =
            |index: &[referrers::Referrer], digest: &Digest| index.iter().any(|e| e.digest == *digest);
        for round in 0..TAG_INDEX_ROUNDS {
            let index = match self.tag_index(repository, subject).await? {
                TagIndex::Absent => Vec::new(),
                TagIndex::Index(index) => index,
                TagIndex::Other(what) => {
                    let digests: Vec<String> = entries.iter().map(|(_, e)| e.digest.to_string()).collect();
                    return Err(RegistryError::Refused(format!(
                        "{repository}:{tag} holds {what}, not a referrers index; it is left alone and {} is not listed there",
                        digests.join(", ")
                    )));
                }
            };
            let missing: Vec<referrers::Referrer> = entries
                .iter()
                .filter(|(_, e)| !listed_in(&index, &e.digest))
                .map(|(_, e)| e.clone())
                .collect();
            if missing.is_empty() {
                return Ok((self.outcomes(&written), written.iter().any(|w| *w)));
            }
            for (flag, (_, entry)) in written.iter_mut().zip(entries) {
                if missing.iter().any(|m| m.digest == entry.digest) {
                    *flag = true;
                }
            }
            let merged = referrers::merge(&index, &missing);
            let bytes = bytes::Bytes::from(referrers::index_bytes(&merged));
            let index = RawManifest {
                digest: Digest::of(&bytes),
                media_type: referrers::OCI_INDEX_MEDIA_TYPE.to_owned(),
                bytes,
            };
            match self.put_manifest(repository, &tag, &index).await {
                Ok(()) => {}
                // Two writes of the same tag at once can make distribution's storage refuse
                // one; read, merge and write again, after a short pause that grows.
                Err(e) if store_race(&e) => {
                    tracing::debug!(%repository, %subject, round, error = %e, "the referrers tag index write was refused; merging again");
                    tokio::time::sleep(race_pause(round)).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            // Not read back here: the read-back a moment later ([`Self::read_back_later`])
            // is the one that can see a writer in another process, and one read is enough.
            return Ok((self.outcomes(&written), true));
        }
        let digests: Vec<String> = entries.iter().map(|(_, e)| e.digest.to_string()).collect();
        Err(RegistryError::Unavailable(format!(
            "{repository}:{tag}: the referrers tag index kept changing over {TAG_INDEX_ROUNDS} rounds; {} not listed yet",
            digests.join(", ")
        )))
    }

    /// A moment after a tag index write, off the promotion's path: reads the index again, and
    /// merges back any of `entries` that a writer in another process (another Ferry, cosign,
    /// Notation) dropped by writing from a read older than this write. Said at WARN when it
    /// happens. Each merge is checked again, up to [`READ_BACKS`] times.
    /// [`crate::OciRegistry::settle_read_backs`] waits for the checks under way.
    fn read_back_later(
        &self,
        repository: &Repository,
        subject: &Digest,
        entries: &[(usize, referrers::Referrer)],
        depth: usize,
    ) {
        if depth > READ_BACKS {
            tracing::warn!(%repository, %subject, "the referrers tag index was rewritten under Ferry's entries {READ_BACKS} times; the next reconcile checks it again");
            return;
        }
        let (me, repository, subject, entries) =
            (self.clone(), repository.clone(), *subject, entries.to_vec());
        let task = tokio::spawn(async move {
            tokio::time::sleep(TAG_INDEX_SETTLE).await;
            let check = async {
                if me.tag_index_lists_all(&repository, &subject, &entries).await? {
                    return Ok(false);
                }
                tracing::warn!(%repository, %subject, "a concurrent writer dropped Ferry's entries from the referrers tag index; merging them back");
                Ok::<bool, RegistryError>(me.tag_index_merge(&repository, &subject, &entries).await?.1)
            };
            match check.await {
                Ok(true) => me.read_back_later(&repository, &subject, &entries, depth + 1),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%repository, %subject, %error, "the read-back of a referrers tag index failed; the next reconcile checks it again");
                }
            }
        });
        let mut read_backs = self.read_backs.lock().unwrap_or_else(|p| p.into_inner());
        read_backs.retain(|t| !t.is_finished());
        read_backs.push(task);
    }

    fn outcomes(&self, written: &[bool]) -> Vec<ReferrerWrite> {
        written
            .iter()
            .map(|w| if *w { ReferrerWrite::Tagged } else { ReferrerWrite::AlreadyListed })
            .collect()
    }

    async fn tag_index_lists_all(
        &self,
        repository: &Repository,
        subject: &Digest,
        entries: &[(usize, referrers::Referrer)],
    ) -> Result<bool, RegistryError> {
        Ok(match self.tag_index(repository, subject).await? {
            TagIndex::Index(index) => entries.iter().all(|(_, e)| index.iter().any(|i| i.digest == e.digest)),
            _ => false,
        })
    }
}

enum Upload {
    Mounted,
    Session(String),
}

/// How a streamed transfer failed.
enum StreamFailure {
    /// Already retried by the transport (the source GET), or never worth retrying (content
    /// that does not match its digest).
    Final(RegistryError),
    /// The streamed PUT, or the source stream under it, failed part way: only a restart of the
    /// whole transfer can retry it.
    Interrupted(RegistryError),
}

impl OciRegistry {
    /// Starts an upload session, or mounts the blob from `mount` when that repository holds it.
    async fn start_upload(
        &self,
        to: &Repository,
        digest: &Digest,
        mount: Option<&Repository>,
    ) -> Result<Upload, RegistryError> {
        let (path, scope) = match mount {
            Some(from) => (
                format!("/v2/{}/blobs/uploads/?mount={digest}&from={}", to.path(), from.path()),
                Scope::Push(to.path().clone(), Some(from.path().clone())),
            ),
            None => (format!("/v2/{}/blobs/uploads/", to.path()), Scope::Push(to.path().clone(), None)),
        };
        let call = Call::new(Method::POST, to.host(), path, scope).accept(&[201, 202]);
        let response = self.transport().send(&call).await?;
        if response.status() == StatusCode::CREATED {
            check_reported_digest(&response, digest, &format!("mounted blob {to}@{digest}"))?;
            return Ok(Upload::Mounted);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| RegistryError::InvalidResponse {
                url: format!("{to}/blobs/uploads"),
                reason: "202 without a Location header".into(),
            })?;
        Ok(Upload::Session(location))
    }

    /// GETs the blob from `from` and PUTs it into the upload session at `location`, hashing as
    /// it goes.
    async fn stream_into(
        &self,
        from: &Repository,
        to: &Repository,
        blob: &Descriptor,
        location: &str,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<u64, StreamFailure> {
        use StreamFailure::{Final, Interrupted};
        let what = format!("blob {from}@{}", blob.digest);
        let get = Call::new(
            Method::GET,
            from.host(),
            format!("/v2/{}/blobs/{}", from.path(), blob.digest),
            Scope::Pull(from.path().clone()),
        );
        let response = self.transport().send(&get).await.map_err(Final)?;
        if let Some(length) = response.content_length()
            && length != blob.size
        {
            return Err(Final(RegistryError::SizeMismatch { what, expected: blob.size, actual: length }));
        }
        let verdict = Arc::new(Mutex::new(None));
        let hashed = HashingStream {
            inner: Box::pin(response.bytes_stream()),
            hasher: Sha256::new(),
            seen: 0,
            expected: blob.digest,
            expected_size: blob.size,
            progress,
            verdict: verdict.clone(),
            verified: blob.size == 0 && blob.digest == Digest::of(b""),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(blob.size));
        let url =
            with_digest(&self.transport().absolute_url(to.host(), location).map_err(Final)?, &blob.digest);
        let result = self
            .transport()
            .send_streaming(
                Method::PUT,
                to.host(),
                &url,
                &Scope::Push(to.path().clone(), None),
                headers,
                reqwest::Body::wrap_stream(hashed),
            )
            .await;
        // A mismatch found by the stream is the real cause, whatever the PUT reported.
        if let Some(mismatch) = verdict.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Final(mismatch));
        }
        check_reported_digest(&result.map_err(Interrupted)?, &blob.digest, &what).map_err(Final)?;
        Ok(blob.size)
    }

    /// Moves a small blob whole into the upload session at `location`: its bytes from this
    /// client's hands, or read from `from` and checked against the digest first. The `PUT` of
    /// bytes in memory can be sent again, so the transport retries it itself.
    async fn upload_whole(
        &self,
        from: &Repository,
        to: &Repository,
        blob: &Descriptor,
        location: &str,
        progress: Option<Arc<AtomicU64>>,
    ) -> Result<u64, StreamFailure> {
        use StreamFailure::{Final, Interrupted};
        let what = format!("blob {from}@{}", blob.digest);
        let bytes = match self.kept_blob(&blob.digest) {
            Some(bytes) => bytes,
            None => self
                .get_blob(from, &blob.digest, crate::cache::MAX_KEPT_BLOB)
                .await
                .map_err(Final)?
                .ok_or_else(|| {
                    Final(RegistryError::Status {
                        method: "GET",
                        url: what.clone(),
                        status: 404,
                        code: Some("BLOB_UNKNOWN".into()),
                        message: "the source does not hold the blob".into(),
                    })
                })?,
        };
        if bytes.len() as u64 != blob.size {
            return Err(Final(RegistryError::SizeMismatch {
                what,
                expected: blob.size,
                actual: bytes.len() as u64,
            }));
        }
        let response = self.complete_upload(to, location, &blob.digest, bytes).await.map_err(Interrupted)?;
        check_reported_digest(&response, &blob.digest, &format!("blob {to}@{}", blob.digest))
            .map_err(Final)?;
        if let Some(progress) = progress {
            progress.fetch_add(blob.size, Ordering::Relaxed);
        }
        Ok(blob.size)
    }

    /// Completes the upload session at `location` with `bytes`, as `digest`.
    async fn complete_upload(
        &self,
        to: &Repository,
        location: &str,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<reqwest::Response, RegistryError> {
        let call = Call::new(
            Method::PUT,
            to.host(),
            with_digest(&self.transport().absolute_url(to.host(), location)?, digest),
            Scope::Push(to.path().clone(), None),
        )
        .header(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
        .body(bytes)
        .accept(&[201]);
        self.transport().send(&call).await
    }

    /// Best effort: a failed cancel only leaves a session the registry expires itself.
    async fn cancel_upload(&self, to: &Repository, location: &str) {
        let Ok(url) = self.transport().absolute_url(to.host(), location) else { return };
        let call =
            Call::new(Method::DELETE, to.host(), url, Scope::Push(to.path().clone(), None)).accept(&[404]);
        if let Err(error) = self.transport().send(&call).await {
            tracing::debug!(%to, %error, "could not cancel an upload session");
        }
    }
}

/// `url` with `digest=<d>` added to its query.
fn with_digest(url: &str, digest: &Digest) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}digest={digest}")
}

fn check_reported_digest(
    response: &reqwest::Response,
    expected: &Digest,
    what: &str,
) -> Result<(), RegistryError> {
    let Some(value) = response.headers().get("docker-content-digest") else { return Ok(()) };
    let reported = value.to_str().ok().and_then(|v| Digest::parse(v).ok()).ok_or_else(|| {
        RegistryError::InvalidResponse {
            url: what.to_owned(),
            reason: "invalid Docker-Content-Digest header".into(),
        }
    })?;
    if reported != *expected {
        return Err(RegistryError::DigestMismatch {
            what: what.to_owned(),
            expected: *expected,
            actual: reported,
        });
    }
    Ok(())
}

/// Forwards a byte stream while hashing it. At the end it compares the digest and size with
/// what was expected; on a mismatch it records the verdict and fails the stream, so that the
/// upload it feeds is never completed.
struct HashingStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    hasher: Sha256,
    seen: u64,
    expected: Digest,
    expected_size: u64,
    progress: Option<Arc<AtomicU64>>,
    verdict: Arc<Mutex<Option<RegistryError>>>,
    /// Set once every expected byte arrived and hashed to the expected digest.
    verified: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the streamed blob did not match its digest")]
struct StreamMismatch;

impl Stream for HashingStream {
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected_size {
                    return Poll::Ready(Some(Err(self.fail(None))));
                }
                self.hasher.update(&chunk);
                // With a Content-Length, the HTTP client stops polling once the last byte is
                // sent, so the digest is checked as soon as the last expected byte arrives, and
                // that final chunk is withheld on a mismatch: the upload can never complete.
                if self.seen == self.expected_size {
                    let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
                    if actual != self.expected {
                        return Poll::Ready(Some(Err(self.fail(Some(actual)))));
                    }
                    self.verified = true;
                }
                if let Some(progress) = &self.progress {
                    progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) if self.verified => Poll::Ready(None),
            // The source ended early.
            Poll::Ready(None) => Poll::Ready(Some(Err(self.fail(None)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl HashingStream {
    fn fail(&mut self, actual: Option<Digest>) -> Box<dyn std::error::Error + Send + Sync> {
        let error = match actual {
            Some(actual) if actual != self.expected => RegistryError::DigestMismatch {
                what: format!("streamed blob {}", self.expected),
                expected: self.expected,
                actual,
            },
            _ => RegistryError::SizeMismatch {
                what: format!("streamed blob {}", self.expected),
                expected: self.expected_size,
                actual: self.seen,
            },
        };
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        Box::new(StreamMismatch)
    }
}
