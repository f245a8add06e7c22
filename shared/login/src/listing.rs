//! Registries' own listing APIs, outside the OCI API: a repository's every tag with its digest
//! in one request per page, instead of a `HEAD` per tag.
//!
//! | API | request | page |
//! |---|---|---|
//! | Docker Hub | `GET {api}/v2/namespaces/{ns}/repositories/{repo}/tags?page_size=100` | `next` URL |
//! | Harbor | `GET {api}/api/v2.0/projects/{project}/repositories/{repo}/artifacts?with_tag=true&page_size=100` | `Link: rel="next"` |
//! | GitHub packages | `GET {api}/orgs/{owner}/packages/container/{name}/versions?per_page=100` (then `/users/`) | `Link: rel="next"` |
//! | Quay | `GET {api}/api/v1/repository/{ns}/{repo}/tag/?onlyActiveTags=true&limit=100&page=N` | `has_additional` |
//!
//! ACR's `_manifests` lives on the registry host, behind the registry's own login, and is in
//! `ferry-registry`. Each answer is read into an [`Inventory`]: Harbor and GitHub list every
//! manifest (tagged or not); Docker Hub and Quay list tags only, so whether an untagged digest
//! is held stays unknown and is read as before.
//!
//! A listing is all or nothing: a page that fails fails the listing. A 401, 403 or 404 of the
//! API as a whole is a refusal (the host falls back to `tags/list`, once, and says so); a 404
//! for one repository is a repository that does not exist; a 429 or 5xx is transient (the
//! listing's edges stay unchecked).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use ferry_model::{Digest, Host, Repository, Tag};
use ferry_registry::auth::Secret;
use ferry_registry::{Inventory, InventoryKind, RegistryError};
use serde::Deserialize;

/// Which listing API a host is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    DockerHub,
    Harbor,
    Ghcr,
    Quay,
}

impl Api {
    /// Where the API lives when the configuration does not say: Docker Hub's and GitHub's
    /// own hosts; Harbor and Quay on the registry's host.
    pub fn default_base(self, host: &Host, insecure: bool) -> String {
        match self {
            Api::DockerHub => "https://hub.docker.com".into(),
            Api::Ghcr => "https://api.github.com".into(),
            Api::Harbor | Api::Quay => {
                format!("{}://{}", if insecure { "http" } else { "https" }, host.api_authority())
            }
        }
    }

    pub fn kind(self) -> InventoryKind {
        match self {
            Api::DockerHub => InventoryKind::DockerHubTags,
            Api::Harbor => InventoryKind::HarborArtifacts,
            Api::Ghcr => InventoryKind::GhcrVersions,
            Api::Quay => InventoryKind::QuayTags,
        }
    }

    /// Whether a listing without a token is worth asking (public repositories of Docker Hub,
    /// Harbor and Quay answer anonymously; GitHub's packages API never does).
    pub fn anonymous(self) -> bool {
        !matches!(self, Api::Ghcr)
    }

    /// The API a host's name implies: Docker Hub and quay.io. (GHCR needs a token, Harbor
    /// and self-hosted Quay can only be named.)
    pub fn implied(host: &Host) -> Option<Api> {
        if host.is_docker_hub() {
            Some(Api::DockerHub)
        } else if host.as_str() == "quay.io" {
            Some(Api::Quay)
        } else if host.as_str() == "ghcr.io" {
            Some(Api::Ghcr)
        } else {
            None
        }
    }
}

/// The listing API a host the configuration does not name implies, asked anonymously (Docker
/// Hub's and Quay's public repositories). GitHub's needs a token, so it is not asked, and
/// that is said.
pub fn implied(host: &Host, insecure: bool) -> Option<std::sync::Arc<dyn ferry_registry::InventorySource>> {
    let api = Api::implied(host)?;
    if !api.anonymous() {
        tracing::info!(%host, "listing by tags/list: the GitHub packages API needs a token (registries.hosts[].inventory-token-env)");
        return None;
    }
    Some(std::sync::Arc::new(VendorListing::new(api, host.clone(), None, None, insecure)))
}

/// Pages before a listing is given up on.
const MAX_PAGES: usize = 100_000;
/// Items asked for per page (each API's maximum).
const PAGE: usize = 100;
/// A page's answer larger than this is refused.
const MAX_PAGE_BYTES: usize = 32 << 20;

/// One host's listing API, with its token (`inventory-token-env`).
pub struct VendorListing {
    api: Api,
    host: Host,
    /// The API's base URL, without a trailing `/`.
    base: String,
    token: Option<Secret>,
    client: reqwest::Client,
    /// Docker Hub: the JWT `POST /v2/users/login` gave for a `username:token` credential.
    hub_jwt: tokio::sync::Mutex<Option<Secret>>,
    /// GitHub: whether each owner is an organisation or a user, once known.
    owners: Mutex<std::collections::HashMap<String, &'static str>>,
}

impl std::fmt::Debug for VendorListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorListing")
            .field("api", &self.api)
            .field("host", &self.host)
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl VendorListing {
    pub fn new(api: Api, host: Host, base: Option<String>, token: Option<Secret>, insecure: bool) -> Self {
        let base = base.unwrap_or_else(|| api.default_base(&host, insecure)).trim_end_matches('/').to_owned();
        Self {
            api,
            host,
            base,
            token,
            client: crate::http::client(),
            hub_jwt: tokio::sync::Mutex::new(None),
            owners: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn what(&self, repository: &Repository) -> String {
        format!("{} of {repository}", self.api.kind().name())
    }

    /// The `Authorization` header for the API, if any.
    async fn authorization(&self, renew: bool) -> Result<Option<String>, RegistryError> {
        let Some(token) = &self.token else { return Ok(None) };
        let secret = token.expose();
        Ok(Some(match self.api {
            // A robot account or a user: `name:secret` is HTTP Basic; anything else a bearer.
            Api::Harbor if secret.contains(':') => {
                use base64::Engine as _;
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(secret))
            }
            // `username:personal-access-token` is exchanged for a JWT; a JWT is used as it is.
            Api::DockerHub if secret.contains(':') => {
                let mut jwt = self.hub_jwt.lock().await;
                if renew || jwt.is_none() {
                    *jwt = Some(self.hub_login(secret).await?);
                }
                format!("Bearer {}", jwt.as_ref().map(Secret::expose).unwrap_or_default())
            }
            _ => format!("Bearer {secret}"),
        }))
    }

    /// Docker Hub's `POST /v2/users/login`: a username and a personal access token (or
    /// password) for a JWT.
    async fn hub_login(&self, credential: &str) -> Result<Secret, RegistryError> {
        #[derive(Deserialize)]
        struct Answer {
            token: String,
        }
        let (username, password) = credential.split_once(':').unwrap_or((credential, ""));
        let what = format!("Docker Hub's login {}/v2/users/login", self.base);
        let request = self
            .client
            .post(format!("{}/v2/users/login", self.base))
            .json(&serde_json::json!({"username": username, "password": password}));
        let answer: Answer =
            crate::http::json(request, &what).await.map_err(|f| self.failure(f.reason, f.transient))?;
        Ok(Secret::new(answer.token))
    }

    fn failure(&self, reason: String, transient: bool) -> RegistryError {
        if transient { RegistryError::Unavailable(reason) } else { RegistryError::Config(reason) }
    }

    /// One page: its status, `Link: rel="next"` URL and body. A 401 is asked once more with a
    /// renewed login (a Docker Hub JWT lives minutes).
    async fn page(&self, url: &str, what: &str) -> Result<(u16, Option<String>, Vec<u8>), RegistryError> {
        let mut renew = false;
        loop {
            let mut request = self.client.get(url).header("Accept", "application/json");
            if let Some(auth) = self.authorization(renew).await? {
                request = request.header(reqwest::header::AUTHORIZATION, auth);
            }
            let response = request.send().await.map_err(|e| {
                RegistryError::Unavailable(format!(
                    "{what}: {} could not be reached ({})",
                    self.base,
                    crate::http::without_url(&e)
                ))
            })?;
            let status = response.status().as_u16();
            if status == 401 && !renew && self.api == Api::DockerHub && self.hub_jwt.lock().await.is_some() {
                renew = true;
                continue;
            }
            let next = next_link(response.headers());
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response.chunk().await.map_err(|e| {
                RegistryError::Unavailable(format!(
                    "{what}: the answer broke off ({})",
                    crate::http::without_url(&e)
                ))
            })? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_PAGE_BYTES {
                    return Err(RegistryError::InvalidResponse {
                        url: what.to_owned(),
                        reason: format!("a page over {} MiB", MAX_PAGE_BYTES >> 20),
                    });
                }
            }
            return Ok((status, next, body));
        }
    }

    /// Reads every page from `first`, each parsed by `each`, which returns the next page's
    /// URL when the body says it (Docker Hub's `next`, Quay's `has_additional`); else the
    /// `Link` header's. `Ok(None)`: the repository does not exist (404 on the first page).
    async fn pages(
        &self,
        repository: &Repository,
        first: String,
        mut each: impl FnMut(&[u8], usize) -> Result<Option<String>, String>,
    ) -> Result<Option<usize>, RegistryError> {
        let what = self.what(repository);
        let (mut next, mut pages) = (Some(first), 0usize);
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(RegistryError::InvalidResponse {
                    url: what,
                    reason: format!("still paging after {MAX_PAGES} pages"),
                });
            }
            let (status, link, body) = self.page(&url, &what).await?;
            match status {
                200 => {}
                404 if pages == 1 => return Ok(None),
                429 | 408 | 500..=599 => {
                    return Err(RegistryError::Unavailable(format!("{what}: HTTP {status} on page {pages}")));
                }
                // 401, 403 (no token, or one without the right scope), a 404 part-way, or
                // anything else: the API refuses, and the host falls back.
                _ => {
                    return Err(RegistryError::Config(format!(
                        "{what}: HTTP {status}{}",
                        if pages > 1 { format!(" on page {pages}") } else { String::new() }
                    )));
                }
            }
            let said = each(&body, pages).map_err(|reason| RegistryError::InvalidResponse {
                url: format!("{what}, page {pages}"),
                reason,
            })?;
            next = match said.or(link) {
                // Only pages of the same API are followed: a `next` elsewhere is refused.
                Some(url) if url.starts_with(&self.base) => Some(url),
                Some(url) if url.starts_with('/') => Some(format!("{}{url}", self.base)),
                Some(_) => {
                    return Err(RegistryError::InvalidResponse {
                        url: what,
                        reason: "a next page outside the API".into(),
                    });
                }
                None => None,
            };
        }
        Ok(Some(pages))
    }

    async fn list(&self, repository: &Repository) -> Result<Inventory, RegistryError> {
        let path = repository.path().as_str();
        let kind = self.api.kind();
        let invalid = |reason: String| RegistryError::InvalidResponse { url: self.what(repository), reason };
        match self.api {
            Api::DockerHub => {
                let Some((namespace, name)) = path.split_once('/') else {
                    return Err(invalid(format!("{path:?} is not namespace/repository")));
                };
                let first = format!(
                    "{}/v2/namespaces/{}/repositories/{}/tags?page_size={PAGE}",
                    self.base,
                    ferry_model::url::component(namespace),
                    ferry_model::url::component(name)
                );
                let mut tags = Vec::new();
                let Some(pages) = self.pages(repository, first, |body, _| hub_page(body, &mut tags)).await?
                else {
                    return Ok(Inventory::missing());
                };
                Inventory::from_tags(kind, tags, pages).map_err(invalid)
            }
            Api::Quay => {
                let mut tags = Vec::new();
                let base = format!("{}/api/v1/repository/{}/tag/", self.base, ferry_model::url::path(path));
                let first = format!("{base}?onlyActiveTags=true&limit={PAGE}&page=1");
                let found = self
                    .pages(repository, first, |body, n| {
                        let more = quay_page(body, &mut tags)?;
                        Ok(more.then(|| format!("{base}?onlyActiveTags=true&limit={PAGE}&page={}", n + 1)))
                    })
                    .await?;
                let Some(pages) = found else { return Ok(Inventory::missing()) };
                Inventory::from_tags(kind, tags, pages).map_err(invalid)
            }
            Api::Harbor => {
                let Some((project, name)) = path.split_once('/') else {
                    return Err(invalid(format!("{path:?} is not project/repository")));
                };
                // Harbor wants a repository name with `/` encoded twice (`a%252Fb`).
                let first = format!(
                    "{}/api/v2.0/projects/{}/repositories/{}/artifacts?with_tag=true&page_size={PAGE}&page=1",
                    self.base,
                    ferry_model::url::component(project),
                    ferry_model::url::component(&ferry_model::url::component(name))
                );
                let (mut tagged, mut all) = (Vec::new(), Vec::new());
                let found = self
                    .pages(repository, first, |body, _| {
                        harbor_page(body, &mut tagged, &mut all).map(|()| None)
                    })
                    .await?;
                let Some(pages) = found else { return Ok(Inventory::missing()) };
                Inventory::from_pairs(kind, tagged, all, pages).map_err(invalid)
            }
            Api::Ghcr => {
                let Some((owner, name)) = path.split_once('/') else {
                    return Err(invalid(format!("{path:?} is not owner/package")));
                };
                let known = self.owners.lock().unwrap_or_else(|p| p.into_inner()).get(owner).copied();
                let kinds: Vec<&'static str> = match known {
                    Some(kind) => vec![kind],
                    None => vec!["orgs", "users"],
                };
                for owner_kind in kinds {
                    let first = format!(
                        "{}/{owner_kind}/{}/packages/container/{}/versions?per_page={PAGE}&state=active",
                        self.base,
                        ferry_model::url::component(owner),
                        ferry_model::url::component(name)
                    );
                    let (mut tagged, mut all) = (Vec::new(), Vec::new());
                    let found = self
                        .pages(repository, first, |body, _| {
                            ghcr_page(body, &mut tagged, &mut all).map(|()| None)
                        })
                        .await?;
                    if let Some(pages) = found {
                        self.owners
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(owner.to_owned(), owner_kind);
                        return Inventory::from_pairs(kind, tagged, all, pages).map_err(invalid);
                    }
                }
                // Neither an organisation's nor a user's package by that name: it does not
                // exist (GitHub answers 404 for a package the token may not see, too).
                Ok(Inventory::missing())
            }
        }
    }
}

impl ferry_registry::InventorySource for VendorListing {
    fn source(&self) -> String {
        let with = if self.token.is_some() { "with its token" } else { "anonymously" };
        format!("the {} at {} ({with})", self.api.kind().name(), self.base)
    }

    fn kind(&self) -> InventoryKind {
        self.api.kind()
    }

    fn list<'a>(
        &'a self,
        repository: &'a Repository,
    ) -> Pin<Box<dyn Future<Output = Result<Inventory, RegistryError>> + Send + 'a>> {
        Box::pin(VendorListing::list(self, repository))
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    ferry_model::link::next_link(headers.get(reqwest::header::LINK)?.to_str().ok()?)
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| ferry_registry::auth::json_error_without_values(&e))
}

fn digest(text: &str) -> Result<Digest, String> {
    Digest::parse(text).map_err(|e| format!("digest {text:?}: {e}"))
}

/// A tag Ferry can name, else skipped (it cannot be promoted or conflict with a promotion).
fn tag(text: &str) -> Option<Tag> {
    Tag::parse(text).map_err(|e| tracing::debug!(error = %e, "a listed tag Ferry cannot name; skipped")).ok()
}

/// Docker Hub's `paginated_tags`: `{"count", "next", "results": [{"name", "digest", ...}]}`;
/// the next page's URL.
fn hub_page(body: &[u8], tags: &mut Vec<(Tag, Option<Digest>)>) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Page {
        next: Option<String>,
        results: Vec<Result>,
    }
    #[derive(Deserialize)]
    struct Result {
        name: String,
        #[serde(default)]
        digest: Option<String>,
    }
    let page: Page = parse(body)?;
    for result in page.results {
        let digest = match result.digest.as_deref().filter(|d| !d.is_empty()) {
            Some(text) => Some(digest(text)?),
            None => None,
        };
        if let Some(tag) = tag(&result.name) {
            tags.push((tag, digest));
        }
    }
    Ok(page.next.filter(|n| !n.is_empty()))
}

/// Quay's tag list: `{"tags": [{"name", "manifest_digest", ...}], "page", "has_additional"}`;
/// whether another page follows.
fn quay_page(body: &[u8], tags: &mut Vec<(Tag, Option<Digest>)>) -> Result<bool, String> {
    #[derive(Deserialize)]
    struct Page {
        tags: Vec<QuayTag>,
        #[serde(default)]
        has_additional: bool,
    }
    #[derive(Deserialize)]
    struct QuayTag {
        name: String,
        #[serde(default)]
        manifest_digest: Option<String>,
    }
    let page: Page = parse(body)?;
    for entry in page.tags {
        let digest = match entry.manifest_digest.as_deref() {
            Some(text) => Some(digest(text)?),
            None => None,
        };
        if let Some(tag) = tag(&entry.name) {
            tags.push((tag, digest));
        }
    }
    Ok(page.has_additional)
}

/// Harbor's artifacts: `[{"digest", "tags": [{"name"}] | null, "references": [{"child_digest"}] | null}]`.
fn harbor_page(body: &[u8], tagged: &mut Vec<(Tag, Digest)>, all: &mut Vec<Digest>) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Artifact {
        digest: String,
        #[serde(default)]
        tags: Option<Vec<Named>>,
        #[serde(default)]
        references: Option<Vec<Reference>>,
    }
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(Deserialize)]
    struct Reference {
        child_digest: String,
    }
    let artifacts: Vec<Artifact> = parse(body)?;
    for artifact in artifacts {
        let at = digest(&artifact.digest)?;
        all.push(at);
        for child in artifact.references.unwrap_or_default() {
            all.push(digest(&child.child_digest)?);
        }
        for named in artifact.tags.unwrap_or_default() {
            if let Some(tag) = tag(&named.name) {
                tagged.push((tag, at));
            }
        }
    }
    Ok(())
}

/// GitHub's package versions: `[{"name": "sha256:…", "metadata": {"container": {"tags": [...]}}}]`.
fn ghcr_page(body: &[u8], tagged: &mut Vec<(Tag, Digest)>, all: &mut Vec<Digest>) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Version {
        name: String,
        #[serde(default)]
        metadata: Option<Metadata>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(default)]
        container: Option<Container>,
    }
    #[derive(Deserialize)]
    struct Container {
        #[serde(default)]
        tags: Vec<String>,
    }
    let versions: Vec<Version> = parse(body)?;
    for version in versions {
        let at = digest(&version.name)?;
        all.push(at);
        for text in version.metadata.and_then(|m| m.container).map(|c| c.tags).unwrap_or_default() {
            if let Some(tag) = tag(&text) {
                tagged.push((tag, at));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn each_vendor_s_documented_page_is_read() {
        // Docker Hub's paginated_tags example, with the digest its answers carry.
        let mut hub = Vec::new();
        let next = hub_page(
            format!(
                r#"{{"count":2,"next":"https://hub.docker.com/v2/namespaces/library/repositories/nginx/tags?page=2&page_size=1","previous":null,
                "results":[{{"creator":1234,"full_size":123456,"id":12345,"images":[{{"architecture":"amd64","digest":"{B}","os":"linux"}}],
                "last_updated":"2021-01-05T21:06:53.506400Z","name":"latest","repository":5678,"tag_status":"active","digest":"{A}","media_type":"application/vnd.oci.image.index.v1+json"}}]}}"#
            )
            .as_bytes(),
            &mut hub,
        )
        .unwrap();
        assert!(next.unwrap().ends_with("page=2&page_size=1"));
        assert_eq!(hub, [(Tag::parse("latest").unwrap(), Some(Digest::parse(A).unwrap()))]);

        let mut quay = Vec::new();
        let more = quay_page(
            format!(r#"{{"tags":[{{"name":"v1","reference":"v1","manifest_digest":"{A}","is_manifest_list":true,"start_ts":1}}],"page":1,"has_additional":true}}"#)
                .as_bytes(),
            &mut quay,
        )
        .unwrap();
        assert!(more);
        assert_eq!(quay.len(), 1);

        let (mut tagged, mut all) = (Vec::new(), Vec::new());
        harbor_page(
            format!(r#"[{{"id":1,"digest":"{A}","media_type":"application/vnd.oci.image.index.v1+json","tags":[{{"id":1,"name":"v1","immutable":false}}],"references":[{{"parent_id":1,"child_id":2,"child_digest":"{B}"}}]}},{{"id":3,"digest":"{B}","tags":null}}]"#)
                .as_bytes(),
            &mut tagged,
            &mut all,
        )
        .unwrap();
        assert_eq!(tagged.len(), 1);
        assert_eq!(all.len(), 3);

        let (mut tagged, mut all) = (Vec::new(), Vec::new());
        ghcr_page(
            format!(r#"[{{"id":1,"name":"{A}","package_html_url":"x","metadata":{{"package_type":"container","container":{{"tags":["v1","latest"]}}}}}},{{"id":2,"name":"{B}","metadata":{{"package_type":"container","container":{{"tags":[]}}}}}}]"#)
                .as_bytes(),
            &mut tagged,
            &mut all,
        )
        .unwrap();
        assert_eq!((tagged.len(), all.len()), (2, 2));
    }

    #[test]
    fn a_page_that_is_not_the_vendor_s_shape_is_named_without_its_values() {
        let mut hub = Vec::new();
        let error = hub_page(br#"{"results":[{"name":"v1","digest":"md5:secret"}],"next":null}"#, &mut hub)
            .unwrap_err();
        assert!(error.contains("md5:secret"), "a digest is not a secret: {error}");
        let error = quay_page(br#"{"tagz":[]}"#, &mut Vec::new()).unwrap_err();
        assert!(error.contains("tags"), "{error}");
    }
}
