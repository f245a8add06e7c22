//! A named fake of registries' own listing APIs, in front of a real distribution registry, so
//! that what a listing says and what the registry serves are the same state. Built from each
//! vendor's documented responses, paging included:
//!
//! - Docker Hub: `POST /v2/users/login` (username and token for a JWT), then
//!   `GET /v2/namespaces/{ns}/repositories/{repo}/tags?page=&page_size=` (`paginated_tags`:
//!   `count`, `next`, `previous`, `results[]` with `name`, `digest`, `media_type`, `images`);
//! - Harbor: `GET /api/v2.0/projects/{p}/repositories/{r}/artifacts?with_tag=true&page=&page_size=`
//!   (`r` URL-encoded twice; an array of artifacts with `digest`, `tags[].name`,
//!   `references[].child_digest`; `Link` and `X-Total-Count`), robot accounts by HTTP Basic;
//! - GitHub packages: `GET /orgs|users/{owner}/packages/container/{name}/versions?page=&per_page=`
//!   (versions named by digest with `metadata.container.tags`; `Link`), a bearer token;
//! - Quay: `GET /api/v1/repository/{ns}/{repo}/tag/?onlyActiveTags=true&page=&limit=`
//!   (`tags[]` with `name`, `manifest_digest`; `page`, `has_additional`), an OAuth bearer;
//! - ACR: `GET /acr/v1/{repo}/_manifests?n=&last=` (`manifests[]` with `digest`, `tags`,
//!   `mediaType`; `Link`), behind the registry's own login; everything else is forwarded to
//!   the registry, so the fake can stand for an ACR host.
//!
//! Each API pages at most `page` items, whatever the client asks, so that paging is exercised.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use base64::Engine as _;

use crate::registry::RegistryServer;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The listing APIs the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    DockerHub,
    Harbor,
    Ghcr,
    Quay,
    Acr,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    upstream_basic: Option<(String, String)>,
    page: usize,
    /// The token each API wants (none: anonymous listings are answered).
    token: Option<String>,
    /// GitHub owners that are users (their packages are under `/users/`, not `/orgs/`).
    users: Vec<String>,
    jwts: Mutex<Vec<String>>,
    counts: Mutex<std::collections::HashMap<Vendor, u32>>,
    logins: AtomicU32,
    client: reqwest::Client,
}

/// The fake; see the module's docs.
#[derive(Debug)]
pub struct FakeVendors {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeVendors {
    /// In front of `upstream` (read with `upstream_basic` when it needs a login), pages of at
    /// most `page`; with `token`, every API but ACR's refuses a request without it (ACR's
    /// wants what the registry wants).
    pub async fn start(
        upstream: &RegistryServer,
        upstream_basic: Option<(&str, &str)>,
        page: usize,
        token: Option<&str>,
        users: &[&str],
    ) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.base_url(),
            upstream_basic: upstream_basic.map(|(u, p)| (u.to_owned(), p.to_owned())),
            page: page.max(1),
            token: token.map(str::to_owned),
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            jwts: Mutex::new(Vec::new()),
            counts: Mutex::new(std::collections::HashMap::new()),
            logins: AtomicU32::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, shared, task }
    }

    pub fn host(&self) -> ferry_model::Host {
        ferry_model::Host::parse(&format!("127.0.0.1:{}", self.port)).expect("valid host")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Listing requests (pages) each API answered with 200.
    pub fn count(&self, vendor: Vendor) -> u32 {
        self.shared.counts.lock().expect("counts").get(&vendor).copied().unwrap_or(0)
    }

    /// Docker Hub logins answered.
    pub fn logins(&self) -> u32 {
        self.shared.logins.load(Ordering::Relaxed)
    }
}

impl Drop for FakeVendors {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One manifest the registry holds, as the listings describe it.
#[derive(Clone, Debug)]
struct Held {
    digest: String,
    media_type: String,
    tags: Vec<String>,
}

impl Shared {
    fn upstream(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.upstream_basic {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Every tag of `name` with its digest (sorted by tag), and every manifest (tagged ones
    /// and the children of indexes, sorted by digest); `None`: no such repository.
    async fn state(&self, name: &str) -> Result<Option<(Vec<(String, Held)>, Vec<Held>)>, String> {
        let answer = self
            .upstream(self.client.get(format!("{}/v2/{name}/tags/list?n=100000", self.upstream)))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if answer.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status().is_success() {
            return Err(format!("the registry behind the fake answered HTTP {}", answer.status()));
        }
        let list: serde_json::Value = answer.json().await.map_err(|e| e.to_string())?;
        let mut tags: Vec<String> = list["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        tags.sort();
        let mut by_tag = Vec::new();
        let mut manifests: std::collections::BTreeMap<String, Held> = Default::default();
        for tag in tags {
            let get = self
                .upstream(self.client.get(format!("{}/v2/{name}/manifests/{tag}", self.upstream)))
                .header("accept", ACCEPT)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let header =
                |h: &str| get.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let (digest, media_type) = (header("docker-content-digest"), header("content-type"));
            let body: serde_json::Value = get.json().await.unwrap_or_default();
            for child in body["manifests"].as_array().into_iter().flatten() {
                if let Some(d) = child["digest"].as_str() {
                    manifests.entry(d.to_owned()).or_insert_with(|| Held {
                        digest: d.to_owned(),
                        media_type: child["mediaType"].as_str().unwrap_or_default().to_owned(),
                        tags: Vec::new(),
                    });
                }
            }
            let held = manifests.entry(digest.clone()).or_insert_with(|| Held {
                digest: digest.clone(),
                media_type: media_type.clone(),
                tags: Vec::new(),
            });
            held.tags.push(tag.clone());
            by_tag.push((tag, Held { digest, media_type, tags: Vec::new() }));
        }
        Ok(Some((by_tag, manifests.into_values().collect())))
    }

    fn counted(&self, vendor: Vendor) {
        *self.counts.lock().expect("counts").entry(vendor).or_insert(0) += 1;
    }
}

fn query(uri: &axum::http::Uri) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect()
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .expect("response")
}

fn refused(message: &str) -> Response<Body> {
    json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"message": message, "errors": [{"code": "UNAUTHORIZED", "message": message}]}),
    )
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let uri = request.uri().clone();
    let path = uri.path().to_owned();
    // Where the client reached the fake, for the absolute `next` URLs Docker Hub and GitHub give.
    let here = request.headers().get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let auth =
        request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bearer_ok = |auth: &str| shared.token.as_ref().is_none_or(|t| auth == format!("Bearer {t}"));
    if request.method() == "POST" && path == "/v2/users/login" {
        let body = axum::body::to_bytes(request.into_body(), 1 << 16).await.unwrap_or_default();
        let login: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if shared.token.as_deref().is_some_and(|t| login["password"].as_str() != Some(t)) {
            return refused("Incorrect authentication credentials");
        }
        shared.logins.fetch_add(1, Ordering::Relaxed);
        let jwt = format!("jwt-{}", crate::token::random_suffix());
        shared.jwts.lock().expect("jwts").push(jwt.clone());
        return json(StatusCode::OK, serde_json::json!({"token": jwt}));
    }
    let q = query(&uri);
    let number = |key: &str, default: usize| q.get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
    let page_size = |key: &str| number(key, 10).min(shared.page).max(1);

    // Docker Hub.
    if let Some(rest) = path.strip_prefix("/v2/namespaces/")
        && let Some((namespace, rest)) = rest.split_once("/repositories/")
        && let Some(repo) = rest.strip_suffix("/tags")
    {
        if shared.token.is_some() {
            let jwt = auth.strip_prefix("Bearer ").unwrap_or_default();
            if !shared.jwts.lock().expect("jwts").iter().any(|j| j == jwt) {
                return refused("authentication required");
            }
        }
        let name = format!("{}/{}", decode(namespace), decode(repo));
        let (tags, _) = match shared.state(&name).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                return json(StatusCode::NOT_FOUND, serde_json::json!({"message": "object not found"}));
            }
            Err(e) => return json(StatusCode::BAD_GATEWAY, serde_json::json!({"message": e})),
        };
        shared.counted(Vendor::DockerHub);
        let (page, size) = (number("page", 1).max(1), page_size("page_size"));
        let results: Vec<serde_json::Value> = tags
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .map(|(tag, held)| {
                serde_json::json!({
                    "creator": 1234, "id": 12345, "full_size": 1024, "name": tag, "repository": 5678,
                    "last_updated": "2026-12-01T00:00:00.000000Z", "tag_status": "active",
                    "digest": held.digest, "media_type": held.media_type,
                    "images": [{"architecture": "amd64", "os": "linux", "digest": held.digest, "status": "active"}],
                })
            })
            .collect();
        let base = format!("http://{here}{path}");
        let next = (page * size < tags.len()).then(|| format!("{base}?page={}&page_size={size}", page + 1));
        let previous = (page > 1).then(|| format!("{base}?page={}&page_size={size}", page - 1));
        return json(
            StatusCode::OK,
            serde_json::json!({"count": tags.len(), "next": next, "previous": previous, "results": results}),
        );
    }

    // Harbor.
    if let Some(rest) = path.strip_prefix("/api/v2.0/projects/")
        && let Some((project, rest)) = rest.split_once("/repositories/")
        && let Some(repo) = rest.strip_suffix("/artifacts")
    {
        if let Some(token) = &shared.token {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("robot$ferry:{token}"))
            );
            if auth != expected {
                return json(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}),
                );
            }
        }
        // The repository name arrives encoded twice.
        let name = format!("{}/{}", decode(project), decode(&decode(repo)));
        let (_, manifests) = match shared.state(&name).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "repository not found"}]}),
                );
            }
            Err(e) => return json(StatusCode::BAD_GATEWAY, serde_json::json!({"errors": [{"message": e}]})),
        };
        shared.counted(Vendor::Harbor);
        // Harbor lists an index's children under it (`references`), not as artifacts.
        let children: std::collections::HashSet<String> =
            manifests.iter().filter(|m| m.tags.is_empty()).map(|m| m.digest.clone()).collect();
        let top: Vec<&Held> = manifests.iter().filter(|m| !children.contains(&m.digest)).collect();
        let (page, size) = (number("page", 1).max(1), page_size("page_size"));
        let artifacts: Vec<serde_json::Value> = top
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .enumerate()
            .map(|(i, held)| {
                let tags: Vec<serde_json::Value> = held
                    .tags
                    .iter()
                    .map(|t| serde_json::json!({"id": i, "name": t, "immutable": false, "push_time": "2026-12-01T00:00:00.000Z"}))
                    .collect();
                let references: Vec<serde_json::Value> = if held.media_type.contains("index") || held.media_type.contains("list") {
                    children.iter().map(|c| serde_json::json!({"parent_id": i, "child_id": 0, "child_digest": c})).collect()
                } else {
                    Vec::new()
                };
                serde_json::json!({
                    "id": i, "type": "IMAGE", "media_type": held.media_type, "manifest_media_type": held.media_type,
                    "digest": held.digest, "size": 1024, "push_time": "2026-12-01T00:00:00.000Z",
                    "tags": if tags.is_empty() { serde_json::Value::Null } else { serde_json::Value::Array(tags) },
                    "references": if references.is_empty() { serde_json::Value::Null } else { serde_json::Value::Array(references) },
                })
            })
            .collect();
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("x-total-count", top.len().to_string());
        if page * size < top.len() {
            response = response.header(
                "link",
                format!("<{path}?page={}&page_size={size}&with_tag=true>; rel=\"next\"", page + 1),
            );
        }
        return response.body(Body::from(serde_json::Value::Array(artifacts).to_string())).expect("response");
    }

    // GitHub packages.
    for (kind, prefix) in [("orgs", "/orgs/"), ("users", "/users/")] {
        if let Some(rest) = path.strip_prefix(prefix)
            && let Some((owner, rest)) = rest.split_once("/packages/container/")
            && let Some(package) = rest.strip_suffix("/versions")
        {
            if shared.token.is_none() || !bearer_ok(&auth) {
                return json(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
                );
            }
            let owner = decode(owner);
            if shared.users.contains(&owner) != (kind == "users") {
                return json(StatusCode::NOT_FOUND, serde_json::json!({"message": "Not Found"}));
            }
            let name = format!("{owner}/{}", decode(package));
            let (_, manifests) = match shared.state(&name).await {
                Ok(Some(state)) => state,
                Ok(None) => {
                    return json(StatusCode::NOT_FOUND, serde_json::json!({"message": "Package not found."}));
                }
                Err(e) => return json(StatusCode::BAD_GATEWAY, serde_json::json!({"message": e})),
            };
            shared.counted(Vendor::Ghcr);
            let (page, size) = (number("page", 1).max(1), page_size("per_page"));
            let versions: Vec<serde_json::Value> = manifests
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .enumerate()
                .map(|(i, held)| {
                    serde_json::json!({
                        "id": i, "name": held.digest, "url": "", "package_html_url": "",
                        "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
                        "metadata": {"package_type": "container", "container": {"tags": held.tags}},
                    })
                })
                .collect();
            let mut response =
                Response::builder().status(StatusCode::OK).header("content-type", "application/json");
            if page * size < manifests.len() {
                let base = format!("http://{here}{path}");
                response = response
                    .header("link", format!("<{base}?page={}&per_page={size}>; rel=\"next\"", page + 1));
            }
            return response
                .body(Body::from(serde_json::Value::Array(versions).to_string()))
                .expect("response");
        }
    }

    // Quay.
    if let Some(rest) = path.strip_prefix("/api/v1/repository/")
        && let Some(repo) = rest.strip_suffix("/tag/")
    {
        if !bearer_ok(&auth) {
            return json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "Unauthorized", "error_type": "invalid_token"}),
            );
        }
        let name: Vec<String> = repo.split('/').map(decode).collect();
        let (tags, _) = match shared.state(&name.join("/")).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error_message": "Not Found", "status": 404}),
                );
            }
            Err(e) => return json(StatusCode::BAD_GATEWAY, serde_json::json!({"error_message": e})),
        };
        shared.counted(Vendor::Quay);
        let (page, size) = (number("page", 1).max(1), page_size("limit"));
        let listed: Vec<serde_json::Value> = tags
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .map(|(tag, held)| {
                serde_json::json!({
                    "name": tag, "reference": tag, "manifest_digest": held.digest,
                    "is_manifest_list": held.media_type.contains("index") || held.media_type.contains("list"),
                    "size": 1024, "start_ts": 1764547200, "last_modified": "Mon, 01 Dec 2026 00:00:00 -0000",
                })
            })
            .collect();
        return json(
            StatusCode::OK,
            serde_json::json!({"tags": listed, "page": page, "has_additional": page * size < tags.len()}),
        );
    }

    // ACR: behind the registry's own login.
    if let Some(rest) = path.strip_prefix("/acr/v1/")
        && let Some(repo) = rest.strip_suffix("/_manifests")
    {
        let mut check = shared.client.get(format!("{}/v2/", shared.upstream));
        if !auth.is_empty() {
            check = check.header("authorization", &auth);
        }
        match check.send().await {
            Ok(answer) if answer.status() == reqwest::StatusCode::UNAUTHORIZED => {
                let mut response = Response::builder().status(StatusCode::UNAUTHORIZED);
                if let Some(challenge) = answer.headers().get("www-authenticate") {
                    response = response.header("www-authenticate", challenge.as_bytes());
                }
                return response
                    .body(Body::from(
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                    ))
                    .expect("response");
            }
            Ok(_) => {}
            Err(e) => {
                return json(
                    StatusCode::BAD_GATEWAY,
                    serde_json::json!({"errors": [{"message": e.to_string()}]}),
                );
            }
        }
        let name = decode(repo);
        let (_, manifests) = match shared.state(&name).await {
            Ok(Some(state)) => state,
            Ok(None) => {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]}),
                );
            }
            Err(e) => return json(StatusCode::BAD_GATEWAY, serde_json::json!({"errors": [{"message": e}]})),
        };
        shared.counted(Vendor::Acr);
        let size = page_size("n");
        let last = q.get("last").cloned().unwrap_or_default();
        let page: Vec<&Held> = manifests.iter().filter(|m| m.digest > last).take(size).collect();
        let listed: Vec<serde_json::Value> = page
            .iter()
            .map(|held| {
                serde_json::json!({
                    "digest": held.digest, "imageSize": 1024, "createdTime": "2026-12-01T00:00:00Z",
                    "lastUpdateTime": "2026-12-01T00:00:00Z", "mediaType": held.media_type,
                    "tags": held.tags,
                    "changeableAttributes": {"deleteEnabled": true, "writeEnabled": true, "readEnabled": true, "listEnabled": true},
                })
            })
            .collect();
        let mut response =
            Response::builder().status(StatusCode::OK).header("content-type", "application/json");
        if let Some(end) = page.last()
            && manifests.iter().any(|m| m.digest > end.digest)
        {
            response = response.header(
                "link",
                format!("</acr/v1/{repo}/_manifests?last={}&n={size}>; rel=\"next\"", end.digest),
            );
        }
        let body = serde_json::json!({"registry": "fake.azurecr.io", "imageName": name, "manifests": listed});
        return response.body(Body::from(body.to_string())).expect("response");
    }

    forward(&shared, request).await
}

/// Everything else goes to the registry as it came (so that the fake can stand for an ACR
/// host), keeping the `Host` header so that the registry's `Location`s point back here.
async fn forward(shared: &Shared, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method");
    let mut upstream = shared.client.request(method, format!("{}{path_and_query}", shared.upstream));
    for (name, value) in &parts.headers {
        if name != "connection" && name != "transfer-encoding" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let body = axum::body::to_bytes(body, 1 << 30).await.unwrap_or_default();
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return json(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({"errors": [{"message": e.to_string()}]}),
            );
        }
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "connection" && name != "transfer-encoding" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).expect("response")
}
