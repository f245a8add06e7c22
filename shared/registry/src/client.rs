//! The [`Registry`] port and its adapter for the OCI distribution API, [`OciRegistry`].

use std::future::Future;
use std::sync::Arc;

use ferry_model::{Digest, RegistryPath, Repository, Tag, TagOrDigest};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Response};

use crate::error::RegistryError;
use crate::manifest::{ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES, ManifestHead, RawManifest, is_index_media_type};
use crate::referrers::{Referrer, ReferrersMode, parse_index, tag_for};
use crate::transport::{Call, Scope, Transport, TransportConfig, read_capped};

/// Read access to registries. One value serves every host: the host is part of each
/// [`Repository`].
pub trait Registry: Send + Sync {
    /// The digest, media type and size of a manifest, or `None` if it does not exist.
    fn head_manifest(
        &self,
        repository: &Repository,
        reference: &TagOrDigest,
    ) -> impl Future<Output = Result<Option<ManifestHead>, RegistryError>> + Send;

    /// A manifest's exact bytes, checked to hash to its digest, or `None` if it does not exist.
    fn get_manifest(
        &self,
        repository: &Repository,
        reference: &TagOrDigest,
    ) -> impl Future<Output = Result<Option<RawManifest>, RegistryError>> + Send;

    /// Every tag of a repository (all pages); empty if the repository does not exist.
    fn list_tags(
        &self,
        repository: &Repository,
    ) -> impl Future<Output = Result<Vec<Tag>, RegistryError>> + Send;

    /// What `repository` holds, from one listing: every tag with its digest where the registry
    /// serves the extended tag list, else which tags exist (see [`crate::inventory`]).
    fn inventory(
        &self,
        repository: &Repository,
    ) -> impl Future<Output = Result<crate::inventory::Inventory, RegistryError>> + Send;

    /// Every repository under a registry path, from the catalog API (all pages).
    fn list_repositories(
        &self,
        under: &RegistryPath,
    ) -> impl Future<Output = Result<Vec<Repository>, RegistryError>> + Send;

    /// The referrers of `digest` in `repository` (every page), only those of `artifact_type`
    /// when given: from the referrers API where the registry serves it, else from the
    /// `sha256-<hex>` tag index (see [`crate::referrers`]).
    fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Referrer>, RegistryError>> + Send;

    /// How `host` keeps referrers, once this client has found out (`None` before).
    fn referrers_mode(&self, host: &ferry_model::Host) -> Option<ReferrersMode> {
        let _ = host;
        None
    }

    /// A small blob (a signature payload, an attestation envelope), at most `limit` bytes,
    /// checked against its digest; `None` if it does not exist.
    fn get_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, RegistryError>> + Send;
}

/// The OCI distribution API over HTTP. Cheap to clone; clones share connections, tokens and
/// rate limits.
#[derive(Clone, Debug)]
pub struct OciRegistry {
    transport: Arc<Transport>,
    page_size: usize,
    /// How each host keeps referrers, learnt once (the referrers API, or the tag schema).
    referrers_modes: Arc<std::sync::Mutex<std::collections::HashMap<ferry_model::Host, ReferrersMode>>>,
    /// Updates of one referrers tag index in this process run one at a time (a
    /// read-merge-write cycle); updates of different indexes run side by side. Striped: a
    /// (repository, subject) always takes the same lock.
    pub(crate) tag_index_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Held while a host's referrers support is being found out.
    probe_lock: Arc<tokio::sync::Mutex<()>>,
    /// One read of a manifest by digest at a time per (repository, digest) stripe: a second
    /// reader of the same manifest waits for the first and is answered from the cache.
    digest_read_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Manifests read by digest, reused for a short while (see [`crate::cache`]).
    manifests: Arc<std::sync::Mutex<crate::cache::ManifestCache>>,
    /// Small blobs read and checked, or uploaded, a moment ago: the bytes of the next upload of
    /// the same digest (see [`crate::cache`]).
    blobs: Arc<std::sync::Mutex<crate::cache::BlobCache>>,
    /// Read-backs of referrers tag indexes under way, off the promotions' path.
    pub(crate) read_backs: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

const PAGE_SIZE: usize = 1000;
/// Locks for referrers tag index updates; two indexes share one only by hash collision.
const TAG_INDEX_STRIPES: usize = 64;
/// Stripes of the locks that make concurrent reads of one manifest by digest one request.
const DIGEST_READ_STRIPES: usize = 256;
const MAX_LIST_BYTES: usize = 32 * 1024 * 1024;

/// Which of `stripes` locks guards (`repository`, `digest`): two keys share one only by hash
/// collision.
fn stripe(repository: &Repository, digest: &Digest, stripes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    repository.to_string().hash(&mut hasher);
    digest.to_string().hash(&mut hasher);
    usize::try_from(hasher.finish() % stripes as u64).unwrap_or(0)
}

impl OciRegistry {
    /// The lock a referrers tag index update of `subject` in `repository` holds.
    pub(crate) fn tag_index_lock(
        &self,
        repository: &Repository,
        subject: &Digest,
    ) -> &tokio::sync::Mutex<()> {
        &self.tag_index_locks[stripe(repository, subject, TAG_INDEX_STRIPES)]
    }

    /// The lock a read of `digest` in `repository` holds (striped: unrelated reads rarely share one).
    fn digest_read_lock(&self, repository: &Repository, digest: &Digest) -> &tokio::sync::Mutex<()> {
        &self.digest_read_locks[stripe(repository, digest, DIGEST_READ_STRIPES)]
    }

    pub fn new(config: TransportConfig) -> Result<Self, RegistryError> {
        Ok(Self {
            transport: Arc::new(Transport::new(config)?),
            page_size: PAGE_SIZE,
            referrers_modes: Arc::default(),
            tag_index_locks: Arc::new((0..TAG_INDEX_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect()),
            probe_lock: Arc::default(),
            digest_read_locks: Arc::new(
                (0..DIGEST_READ_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            ),
            manifests: Arc::default(),
            blobs: Arc::default(),
            read_backs: Arc::default(),
        })
    }

    /// Waits for the referrers tag index read-backs under way (each a moment after its write,
    /// merging back what a concurrent writer dropped): before a process exits, and in tests.
    pub async fn settle_read_backs(&self) {
        loop {
            let pending: Vec<_> =
                std::mem::take(&mut *self.read_backs.lock().unwrap_or_else(|p| p.into_inner()));
            if pending.is_empty() {
                return;
            }
            for task in pending {
                let _ = task.await;
            }
        }
    }

    /// Asks for list pages of `n` entries (the default is 1000); registries may return fewer.
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Keeps `raw`, which `repository` holds, for reads by digest (see [`crate::cache`]).
    pub(crate) fn remember_manifest(&self, repository: &Repository, raw: &RawManifest) {
        self.manifests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((repository.clone(), raw.digest), raw.clone());
    }

    /// Keeps a small blob's bytes, which hash to `digest`, as the source of a later upload.
    pub(crate) fn remember_blob(&self, digest: Digest, bytes: &bytes::Bytes) {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).insert(digest, bytes.clone());
    }

    /// The bytes of `digest`, when this client read or wrote them a moment ago.
    pub(crate) fn kept_blob(&self, digest: &Digest) -> Option<bytes::Bytes> {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(digest)
    }

    /// Whether this client holds the bytes of `digest` (see [`Self::kept_blob`]).
    pub(crate) fn keeps_blob(&self, digest: &Digest) -> bool {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).holds(digest)
    }

    async fn manifest_request(
        &self,
        method: Method,
        repository: &Repository,
        reference: &TagOrDigest,
    ) -> Result<Option<Response>, RegistryError> {
        let call = Call::new(
            method,
            repository.host(),
            format!("/v2/{}/manifests/{reference}", repository.path()),
            Scope::Pull(repository.path().clone()),
        )
        .header(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS))
        .accept(&[404]);
        let response = self.transport.send(&call).await?;
        Ok((response.status() != reqwest::StatusCode::NOT_FOUND).then_some(response))
    }

    /// ACR's listing: `/acr/v1/{repo}/_manifests`, every manifest with its tags, paged by
    /// `Link` as the OCI API pages. Needs `metadata_read` on the repository (a token that may
    /// only pull is refused, and the host falls back to `tags/list`).
    async fn acr_inventory(
        &self,
        repository: &Repository,
    ) -> Result<crate::inventory::Inventory, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            manifests: Vec<Manifest>,
        }
        #[derive(serde::Deserialize)]
        struct Manifest {
            digest: String,
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let host = repository.host();
        let first = format!("/acr/v1/{}/_manifests?n={}", repository.path(), self.page_size);
        let scope = Scope::Metadata(repository.path().clone());
        let (mut tagged, mut untagged, mut pages, mut bad) = (Vec::new(), Vec::new(), 0usize, None);
        let found = self
            .list_pages(host, first, scope, |page: Page| {
                pages += 1;
                for manifest in page.manifests {
                    let digest = match Digest::parse(&manifest.digest) {
                        Ok(digest) => digest,
                        Err(e) => {
                            bad.get_or_insert(format!("a manifest's digest {:?}: {e}", manifest.digest));
                            continue;
                        }
                    };
                    untagged.push(digest);
                    for text in manifest.tags.unwrap_or_default() {
                        match Tag::parse(&text) {
                            Ok(tag) => tagged.push((tag, digest)),
                            Err(e) => tracing::debug!(error = %e, "a listed tag Ferry cannot name; skipped"),
                        }
                    }
                }
            })
            .await?;
        let url = || format!("{}/acr/v1/{}/_manifests", self.transport.base_url(host), repository.path());
        if let Some(reason) = bad {
            return Err(RegistryError::InvalidResponse { url: url(), reason });
        }
        if !found {
            return Ok(crate::inventory::Inventory::missing());
        }
        crate::inventory::Inventory::from_pairs(crate::InventoryKind::AcrManifests, tagged, untagged, pages)
            .map_err(|reason| RegistryError::InvalidResponse { url: url(), reason })
    }

    /// Follows `Link: <...>; rel="next"` pages of a JSON list endpoint.
    async fn list_pages<T: serde::de::DeserializeOwned>(
        &self,
        host: &ferry_model::Host,
        first: String,
        scope: Scope,
        mut each: impl FnMut(T),
    ) -> Result<bool, RegistryError> {
        let mut next = Some(first);
        let mut pages = 0usize;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 100_000 {
                return Err(RegistryError::InvalidResponse {
                    url: path,
                    reason: "more than 100000 pages".into(),
                });
            }
            let call = Call::new(Method::GET, host, path.clone(), scope.clone()).accept(&[404]);
            let response = self.transport.send(&call).await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                if pages > 1 {
                    return Err(RegistryError::InvalidResponse {
                        url: path,
                        reason: format!("the listing broke off at page {pages} (HTTP 404)"),
                    });
                }
                // Nothing there: a repository (or a catalog) that does not exist.
                return Ok(false);
            }
            next = next_link(response.headers(), &path)?;
            let url = response.url().to_string();
            let body = read_capped(response, MAX_LIST_BYTES).await?;
            let page: T = serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
                url,
                reason: format!("not a list response: {e}"),
            })?;
            each(page);
        }
        Ok(true)
    }
}

impl Registry for OciRegistry {
    async fn head_manifest(
        &self,
        repository: &Repository,
        reference: &TagOrDigest,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let Some(response) = self.manifest_request(Method::HEAD, repository, reference).await? else {
            return Ok(None);
        };
        let what = format!("{repository}:{reference}");
        let header_digest = digest_header(response.headers(), &what)?;
        let Some(digest) = header_digest else {
            // Some registries omit Docker-Content-Digest on HEAD; then hash the body.
            return Ok(self.get_manifest(repository, reference).await?.map(|raw| ManifestHead {
                digest: raw.digest,
                media_type: raw.media_type,
                size: raw.bytes.len() as u64,
            }));
        };
        if let TagOrDigest::Digest(expected) = reference
            && *expected != digest
        {
            return Err(RegistryError::DigestMismatch { what, expected: *expected, actual: digest });
        }
        Ok(Some(ManifestHead {
            digest,
            media_type: content_type(response.headers()),
            // A HEAD response has no body, so read the header rather than the body length.
            size: response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &TagOrDigest,
    ) -> Result<Option<RawManifest>, RegistryError> {
        let cached = |digest: &Digest| {
            self.manifests.lock().unwrap_or_else(|p| p.into_inner()).get(&(repository.clone(), *digest))
        };
        let _one_reader = match reference {
            TagOrDigest::Digest(digest) => {
                if let Some(raw) = cached(digest) {
                    return Ok(Some(raw));
                }
                // Two steps reading the same manifest at once (the replicators of two mirrors)
                // make one request: the second finds the first's answer in the cache.
                let guard = self.digest_read_lock(repository, digest).lock().await;
                if let Some(raw) = cached(digest) {
                    return Ok(Some(raw));
                }
                Some(guard)
            }
            TagOrDigest::Tag(_) => None,
        };
        let Some(response) = self.manifest_request(Method::GET, repository, reference).await? else {
            return Ok(None);
        };
        let what = format!("{repository}:{reference}");
        let header_digest = digest_header(response.headers(), &what)?;
        let media_type = content_type(response.headers());
        let bytes = read_capped(response, MAX_MANIFEST_BYTES).await?;
        // The bytes must hash to the digest that was asked for, or to the one the registry
        // claims for a tag. With neither, the digest is what the bytes hash to.
        let expected = match reference {
            TagOrDigest::Digest(d) => Some(*d),
            TagOrDigest::Tag(_) => header_digest,
        };
        let raw = match expected {
            Some(expected) => RawManifest::verified(expected, media_type, bytes, &what)?,
            None => RawManifest { digest: Digest::of(&bytes), media_type, bytes },
        };
        // Read by tag or by digest, these bytes are the manifest of `raw.digest` for good (they
        // hash to it): a later read by that digest, such as a copy of what a tag named, is
        // answered without asking again. What a tag names is never cached.
        self.remember_manifest(repository, &raw);
        Ok(Some(raw))
    }

    async fn list_tags(&self, repository: &Repository) -> Result<Vec<Tag>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let first = format!("/v2/{}/tags/list?n={}", repository.path(), self.page_size);
        self.list_pages(repository.host(), first, Scope::Pull(repository.path().clone()), |page: Page| {
            for text in page.tags.unwrap_or_default() {
                match Tag::parse(&text) {
                    Ok(tag) => tags.push(tag),
                    // A tag Ferry cannot name cannot be promoted or conflict with a promotion.
                    Err(e) => tracing::warn!(%repository, error = %e, "skipping a tag the registry listed"),
                }
            }
        })
        .await?;
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    async fn inventory(&self, repository: &Repository) -> Result<crate::inventory::Inventory, RegistryError> {
        if self.transport.acr_listing(repository.host()) {
            match self.acr_inventory(repository).await {
                Ok(inventory) => {
                    self.transport.note_inventory(repository.host(), inventory.kind);
                    return Ok(inventory);
                }
                Err(error) if crate::Classify::class(&error) != crate::ErrorClass::Permanent => {
                    return Err(error);
                }
                Err(error) => {
                    let source = format!("ACR's _manifests API at {}", repository.host());
                    self.transport.inventory_refused(repository.host(), &source, &error);
                }
            }
        }
        if let Some(source) = self.transport.inventory_source(repository.host()) {
            match source.list(repository).await {
                Ok(inventory) => {
                    self.transport.count_external(repository.host(), source.kind().name(), inventory.pages);
                    self.transport.note_inventory(repository.host(), source.kind());
                    return Ok(inventory);
                }
                // A throttled or unavailable API: the listing failed, and its edges stay
                // unchecked. A refusal (no permission): the OCI listing serves instead.
                Err(error) if crate::Classify::class(&error) != crate::ErrorClass::Permanent => {
                    self.transport.count_external(repository.host(), source.kind().name(), 1);
                    return Err(error);
                }
                Err(error) => {
                    self.transport.count_external(repository.host(), source.kind().name(), 1);
                    self.transport.inventory_refused(repository.host(), &source.source(), &error);
                }
            }
        }
        let mut pages = Vec::new();
        let first = format!("/v2/{}/tags/list?n={}", repository.path(), self.page_size);
        let scope = Scope::Pull(repository.path().clone());
        let found = self
            .list_pages(repository.host(), first, scope, |page: crate::inventory::Page| pages.push(page))
            .await?;
        if !found {
            return Ok(crate::inventory::Inventory::missing());
        }
        let inventory = crate::inventory::fold(pages).map_err(|reason| RegistryError::InvalidResponse {
            url: format!("{}/v2/{}/tags/list", self.transport.base_url(repository.host()), repository.path()),
            reason,
        })?;
        self.transport.note_inventory(repository.host(), inventory.kind);
        Ok(inventory)
    }

    async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, RegistryError> {
        // The first lookup on a host finds out how it keeps referrers; lookups that arrive
        // meanwhile wait for the answer rather than ask too.
        let mut mode = self.referrers_mode(repository.host());
        let _probing = match mode {
            Some(_) => None,
            None => {
                let guard = self.probe_lock.lock().await;
                mode = self.referrers_mode(repository.host());
                Some(guard)
            }
        };
        let mut list = match mode {
            Some(ReferrersMode::TagSchema) => self.tag_index(repository, digest).await?.entries(),
            _ => match self.referrers_api(repository, digest, artifact_type).await? {
                Some(list) => {
                    self.remember(repository.host(), ReferrersMode::Api);
                    list
                }
                None => {
                    self.remember(repository.host(), ReferrersMode::TagSchema);
                    self.tag_index(repository, digest).await?.entries()
                }
            },
        };
        // The API may ignore the filter (it says so by omitting `OCI-Filters-Applied`); the
        // tag index has none.
        if let Some(wanted) = artifact_type {
            list.retain(|r| r.artifact_type.as_deref() == Some(wanted));
        }
        Ok(list)
    }

    fn referrers_mode(&self, host: &ferry_model::Host) -> Option<ReferrersMode> {
        self.referrers_modes.lock().unwrap_or_else(|p| p.into_inner()).get(host).copied()
    }

    async fn list_repositories(&self, under: &RegistryPath) -> Result<Vec<Repository>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            repositories: Option<Vec<String>>,
        }
        let mut repositories = Vec::new();
        let first = format!("/v2/_catalog?n={}", self.page_size);
        self.list_pages(&under.host, first, Scope::Catalog, |page: Page| {
            for name in page.repositories.unwrap_or_default() {
                match ferry_model::RepoPath::parse(&name) {
                    Ok(path) => {
                        let repository = Repository::new(under.host.clone(), path);
                        if under.contains(&repository) {
                            repositories.push(repository);
                        }
                    }
                    Err(e) => tracing::warn!(registry = %under, error = %e, "skipping a repository the catalog listed"),
                }
            }
        })
        .await?;
        repositories.sort();
        repositories.dedup();
        Ok(repositories)
    }

    async fn get_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<bytes::Bytes>, RegistryError> {
        self.get_blob_impl(repository, digest, limit).await
    }
}

/// What the `sha256-<hex>` referrers tag holds.
#[derive(Debug)]
pub(crate) enum TagIndex {
    Absent,
    Index(Vec<Referrer>),
    /// Something else: an image manifest, or an index that is not a referrers index. Never
    /// overwritten.
    Other(String),
}

impl TagIndex {
    fn entries(self) -> Vec<Referrer> {
        match self {
            TagIndex::Index(entries) => entries,
            TagIndex::Absent => Vec::new(),
            TagIndex::Other(what) => {
                tracing::warn!(holds = %what, "the referrers tag holds no referrers index; reading it as no referrers");
                Vec::new()
            }
        }
    }
}

impl OciRegistry {
    pub(crate) fn remember(&self, host: &ferry_model::Host, mode: ReferrersMode) {
        self.referrers_modes.lock().unwrap_or_else(|p| p.into_inner()).insert(host.clone(), mode);
    }

    /// Every page of `GET /v2/<name>/referrers/<digest>`; `None` when the registry does not
    /// serve the API (404 without a registry error code, 405, 501, or an answer that is not an
    /// image index).
    async fn referrers_api(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let mut path = format!("/v2/{}/referrers/{digest}", repository.path());
        if let Some(wanted) = artifact_type {
            path.push_str("?artifactType=");
            path.push_str(&ferry_model::url::component(wanted));
        }
        let mut out = Vec::new();
        let mut next = Some(path);
        let mut pages = 0usize;
        while let Some(path) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(RegistryError::InvalidResponse {
                    url: path,
                    reason: "more than 10000 pages".into(),
                });
            }
            let call = Call::new(
                Method::GET,
                repository.host(),
                path.clone(),
                Scope::Pull(repository.path().clone()),
            )
            .header(ACCEPT, HeaderValue::from_static(crate::referrers::OCI_INDEX_MEDIA_TYPE))
            .accept(&[404, 405, 501]);
            let response = self.transport.send(&call).await?;
            let status = response.status().as_u16();
            next = next_link(response.headers(), &path)?;
            let body = read_capped(response, MAX_LIST_BYTES).await?;
            if status == 404 {
                // A registry with the API answers 404 with an error code when the repository
                // or manifest is unknown; without one, the route does not exist.
                let text = String::from_utf8_lossy(&body);
                if pages == 1 && (text.contains("NAME_UNKNOWN") || text.contains("MANIFEST_UNKNOWN")) {
                    return Ok(Some(Vec::new()));
                }
                return Ok(None);
            }
            if status != 200 {
                return Ok(None);
            }
            match parse_index(&body) {
                Ok(entries) => out.extend(entries),
                Err(_) if pages == 1 => return Ok(None),
                Err(reason) => return Err(RegistryError::InvalidResponse { url: path, reason }),
            }
        }
        Ok(Some(out))
    }

    /// The `sha256-<hex>` tag, read with every manifest media type accepted, so that a tag
    /// holding an image manifest is seen as such and never taken for absent.
    pub(crate) async fn tag_index(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<TagIndex, RegistryError> {
        let tag = TagOrDigest::Tag(tag_for(digest));
        let Some(raw) = self.get_manifest(repository, &tag).await? else {
            return Ok(TagIndex::Absent);
        };
        let media_type = if raw.media_type.is_empty() {
            serde_json::from_slice::<serde_json::Value>(&raw.bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
                .unwrap_or_default()
        } else {
            raw.media_type.clone()
        };
        if !is_index_media_type(&media_type) {
            return Ok(TagIndex::Other(format!("a {media_type} manifest ({})", raw.digest)));
        }
        match parse_index(&raw.bytes) {
            Ok(entries) => Ok(TagIndex::Index(entries)),
            Err(reason) => Ok(TagIndex::Other(format!("an index that is not a referrers index ({reason})"))),
        }
    }

    async fn get_blob_impl(
        &self,
        repository: &Repository,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<bytes::Bytes>, RegistryError> {
        let call = Call::new(
            Method::GET,
            repository.host(),
            format!("/v2/{}/blobs/{digest}", repository.path()),
            Scope::Pull(repository.path().clone()),
        )
        .accept(&[404]);
        let response = self.transport.send(&call).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let bytes = read_capped(response, limit).await?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob {repository}@{digest}"),
                expected: *digest,
                actual,
            });
        }
        self.remember_blob(actual, &bytes);
        Ok(Some(bytes))
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default()
}

fn digest_header(headers: &HeaderMap, what: &str) -> Result<Option<Digest>, RegistryError> {
    match headers.get("docker-content-digest") {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            Digest::parse(text).map(Some).map_err(|e| RegistryError::InvalidResponse {
                url: what.to_owned(),
                reason: format!("Docker-Content-Digest header: {e}"),
            })
        }
    }
}

/// The path of the next page from a `Link: </v2/...?last=x&n=100>; rel="next"` header. Only
/// same-host relative paths are followed.
fn next_link(headers: &HeaderMap, current: &str) -> Result<Option<String>, RegistryError> {
    let Some(target) = headers
        .get(reqwest::header::LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(ferry_model::link::next_link)
    else {
        return Ok(None);
    };
    // The registry API's own prefix: `/v2/`, or `/acr/v1/` for ACR's listing.
    let api = if current.starts_with("/acr/v1/") { "/acr/v1/" } else { "/v2/" };
    let path = match target.find(api) {
        Some(0) => target.as_str(),
        Some(at) if target.starts_with("http://") || target.starts_with("https://") => &target[at..],
        _ => {
            return Err(RegistryError::InvalidResponse {
                url: current.to_owned(),
                reason: "a Link header pointed outside the registry API".into(),
            });
        }
    };
    Ok(Some(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_table() {
        let cases = [
            (r#"</v2/_catalog?last=b&n=2>; rel="next""#, Ok(Some("/v2/_catalog?last=b&n=2"))),
            (
                r#"<https://r.example/v2/a/tags/list?last=x&n=1>; rel="next""#,
                Ok(Some("/v2/a/tags/list?last=x&n=1")),
            ),
            (r#"</v2/x>; rel="prev""#, Ok(None)),
            (r#"<//evil.example/steal>; rel="next""#, Err(())),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(reqwest::header::LINK, HeaderValue::from_str(value).unwrap());
            let got = next_link(&headers, "/v2/_catalog").map_err(|_| ());
            assert_eq!(
                got.as_ref().map(|o| o.as_deref()),
                want.as_ref().map(|o| o.as_deref()).map_err(|_| &()),
                "{value}"
            );
        }
    }
}
