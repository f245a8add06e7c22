//! A fault-injecting HTTP proxy in front of a registry (toxiproxy is not available here).
//!
//! It forwards every request to the upstream registry, streaming both ways, and preserves the
//! `Host` header so that the registry's `Location` headers point back at the proxy. A [`Rule`]
//! picks requests by method and path pattern and applies a [`Fault`] on the N-th match (or the
//! first N, or every one): answer 429 with `Retry-After`, answer a 5xx, drop the connection
//! part-way through the response body, or flip a byte of the response body.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::registry::RegistryServer;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer 429, with this `Retry-After` value if given.
    TooManyRequests { retry_after: Option<String> },
    /// Answer with this status (e.g. 500, 503) and a distribution-style error body.
    Status(u16),
    /// Answer with this status and distribution error code (`DIGEST_INVALID`,
    /// `MANIFEST_BLOB_UNKNOWN`): a registry refusing what it was sent.
    ErrorCode(u16, &'static str),
    /// Forward the response, but close the connection after this many body bytes.
    DropMidBody { after: usize },
    /// Forward the response with the body byte at this offset inverted.
    FlipByte { at: usize },
    /// Forward the response body at about this many bytes per second.
    Slow { bytes_per_second: usize },
    /// Not a fault: answer a tag list in pages of the `n` the client asks for, after `last`,
    /// with a `Link` to the next page, as the OCI distribution spec (and distribution 3) do;
    /// distribution 2.8, which the tests run, ignores `n` on tag lists.
    PageTags,
    /// Not a fault: answer a tag list as Container Registry and Artifact Registry do, with the
    /// `manifest` map (digest → `{tag, mediaType, imageSizeBytes, timeCreatedMs,
    /// timeUploadedMs}`) and the `child` list, built from upstream's tags (a `HEAD` each) and
    /// catalog: the same state as the registry behind it. Paged as `PageTags`. `lie` puts one
    /// tag at another digest (or, with an empty digest, leaves it out), as a listing that
    /// disagrees with the registry would.
    ExtendedTags { lie: Option<(String, String)> },
}

/// Which matching requests a rule applies to (1-based).
#[derive(Clone, Copy, Debug)]
pub enum Hits {
    Nth(usize),
    FirstN(usize),
    Every,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub method: Option<&'static str>,
    pub path: regex::Regex,
    pub hits: Hits,
    pub fault: Fault,
}

impl Rule {
    pub fn new(method: Option<&'static str>, path_pattern: &str, hits: Hits, fault: Fault) -> Self {
        Self { method, path: regex::Regex::new(path_pattern).expect("valid path pattern"), hits, fault }
    }
}

#[derive(Debug, Default)]
struct Rules {
    rules: Vec<(Rule, usize)>,
    applied: usize,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Rules>,
    rate: Mutex<Option<RateBudget>>,
}

/// A per-host request budget, like Artifact Registry's or Docker Hub's: at most `per_second`
/// requests in each one-second window; beyond it, 429 with `Retry-After: 1`.
#[derive(Debug)]
struct RateBudget {
    per_second: u32,
    window: std::time::Instant,
    used: u32,
    throttled: usize,
    /// Say the budget on every admitted answer (`RateLimit-Limit`, `-Remaining`, `-Reset`).
    advertise: bool,
}

impl RateBudget {
    /// Whether a request may pass now.
    fn admit(&mut self) -> bool {
        if self.window.elapsed() >= std::time::Duration::from_secs(1) {
            self.window = std::time::Instant::now();
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            self.throttled += 1;
            false
        }
    }
}

#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &RegistryServer) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.base_url(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            rules: Mutex::new(Rules::default()),
            rate: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { port, shared, task }
    }

    pub fn host(&self) -> ferry_model::Host {
        ferry_model::Host::parse(&format!("127.0.0.1:{}", self.port)).expect("valid host")
    }

    pub fn repository(&self, path: &str) -> ferry_model::Repository {
        ferry_model::Repository::new(self.host(), ferry_model::RepoPath::parse(path).expect("valid path"))
    }

    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().expect("rules").rules.push((rule, 0));
    }

    /// Removes every rule: the proxy forwards faithfully from now on.
    pub fn clear(&self) {
        self.shared.rules.lock().expect("rules").rules.clear();
    }

    /// Answers 429 (`Retry-After: 1`) to every request beyond `per_second` in a one-second
    /// window, as a rate-limited registry does.
    pub fn limit_rate(&self, per_second: u32) {
        *self.shared.rate.lock().expect("rate") = Some(RateBudget {
            per_second,
            window: std::time::Instant::now(),
            used: 0,
            throttled: 0,
            advertise: false,
        });
    }

    /// [`FaultProxy::limit_rate`], and every admitted answer says what is left of the window's
    /// budget (`RateLimit-Remaining`) and when it refills (`RateLimit-Reset`), as the IETF
    /// draft's headers do.
    pub fn limit_rate_advertised(&self, per_second: u32) {
        self.limit_rate(per_second);
        if let Some(rate) = self.shared.rate.lock().expect("rate").as_mut() {
            rate.advertise = true;
        }
    }

    /// How many requests the rate limit answered with 429.
    pub fn n_throttled(&self) -> usize {
        self.shared.rate.lock().expect("rate").as_ref().map(|r| r.throttled).unwrap_or(0)
    }

    /// How many faults have been applied so far.
    pub fn n_applied(&self) -> usize {
        self.shared.rules.lock().expect("rules").applied
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn fault_for(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("rules");
        let mut chosen = None;
        for (rule, seen) in rules.rules.iter_mut() {
            if rule.method.is_some_and(|m| m != method) || !rule.path.is_match(path) {
                continue;
            }
            *seen += 1;
            let applies = match rule.hits {
                Hits::Nth(n) => *seen == n,
                Hits::FirstN(n) => *seen <= n,
                Hits::Every => true,
            };
            if applies && chosen.is_none() {
                chosen = Some(rule.fault.clone());
            }
        }
        if chosen.is_some() {
            rules.applied += 1;
        }
        chosen
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let path_and_query =
        request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let (admitted, advertised) = match shared.rate.lock().expect("rate").as_mut() {
        None => (true, None),
        Some(rate) => {
            let admitted = rate.admit();
            let left = rate.per_second - rate.used.min(rate.per_second);
            (admitted, rate.advertise.then_some((rate.per_second, left)))
        }
    };
    if !admitted {
        // Read what the client sends first, as a registry's front end does, so that the 429 is
        // an answer and not a connection reset in the middle of an upload.
        let _ = axum::body::to_bytes(request.into_body(), usize::MAX).await;
        let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        return response;
    }
    let fault = shared.fault_for(method.as_str(), request.uri().path());
    match &fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
            if let Some(value) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_str(value).expect("header value"));
            }
            return response;
        }
        Some(Fault::Status(code)) => {
            return error_response(StatusCode::from_u16(*code).expect("status"), "UNKNOWN");
        }
        Some(Fault::ErrorCode(status, code)) => {
            return error_response(StatusCode::from_u16(*status).expect("status"), code);
        }
        _ => {}
    }
    if matches!(fault, Some(Fault::PageTags)) {
        return page_tags(&shared, request.uri()).await;
    }
    if let Some(Fault::ExtendedTags { lie }) = &fault {
        return extended_tags(&shared, request.uri(), lie.as_ref()).await;
    }
    let (parts, body) = request.into_parts();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method");
    let mut upstream = shared.client.request(method, format!("{}{path_and_query}", shared.upstream));
    for (name, value) in &parts.headers {
        if name != "connection" && name != "transfer-encoding" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let upstream = upstream.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return error_response(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "connection" && name != "transfer-encoding" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some((limit, left)) = advertised {
        response = response
            .header("ratelimit-limit", limit.to_string())
            .header("ratelimit-remaining", left.to_string())
            .header("ratelimit-reset", "1");
    }
    let mut offset = 0usize;
    let fault = fault.clone();
    let slow = match fault {
        Some(Fault::Slow { bytes_per_second }) => Some(bytes_per_second.max(1)),
        _ => None,
    };
    let stream = answer.bytes_stream().then(move |chunk| async move {
        if let (Some(rate), Ok(bytes)) = (slow, &chunk) {
            tokio::time::sleep(std::time::Duration::from_secs_f64(bytes.len() as f64 / rate as f64)).await;
        }
        chunk
    });
    let stream = stream.map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let start = offset;
        offset += chunk.len();
        match fault {
            Some(Fault::DropMidBody { after }) if offset > after => {
                Err(std::io::Error::other("fault proxy: connection dropped mid-body"))
            }
            Some(Fault::FlipByte { at }) if (start..offset).contains(&at) => {
                let mut bytes = chunk.to_vec();
                bytes[at - start] ^= 0xff;
                Ok(Bytes::from(bytes))
            }
            _ => Ok(chunk),
        }
    });
    response.body(Body::from_stream(stream)).expect("response")
}

/// Upstream's tag list of `uri`'s repository: the listing, its tags sorted and after the
/// query's `last`, and the query's `n`; an upstream failure as the answer to give.
async fn upstream_tags(
    shared: &Shared,
    uri: &axum::http::Uri,
) -> Result<(serde_json::Value, Vec<String>, Option<usize>), Response<Body>> {
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let answer = match shared.client.get(format!("{}{}", shared.upstream, uri.path())).send().await {
        Ok(answer) if answer.status().is_success() => answer,
        Ok(answer) => {
            return Err(error_response(
                StatusCode::from_u16(answer.status().as_u16()).expect("status"),
                "NAME_UNKNOWN",
            ));
        }
        Err(e) => return Err(error_response(StatusCode::BAD_GATEWAY, &e.to_string())),
    };
    let list: serde_json::Value = answer.json().await.unwrap_or_default();
    let mut tags: Vec<String> = list["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    tags.sort();
    if let Some(last) = get("last") {
        tags.retain(|t| *t > last);
    }
    Ok((list, tags, get("n").and_then(|n| n.parse().ok())))
}

/// The whole tag list from upstream, answered one page at a time.
async fn page_tags(shared: &Shared, uri: &axum::http::Uri) -> Response<Body> {
    let (list, tags, n) = match upstream_tags(shared, uri).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let n = n.unwrap_or(tags.len()).max(1);
    let page: Vec<String> = tags.iter().take(n).cloned().collect();
    let mut response = Response::builder().status(StatusCode::OK).header("content-type", "application/json");
    if tags.len() > n {
        let next =
            format!("<{}?n={n}&last={}>; rel=\"next\"", uri.path(), page.last().cloned().unwrap_or_default());
        response = response.header("link", next);
    }
    response
        .body(Body::from(serde_json::json!({"name": list["name"], "tags": page}).to_string()))
        .expect("response")
}

/// GCR's extended tag list, from upstream's state (see [`Fault::ExtendedTags`]).
async fn extended_tags(
    shared: &Shared,
    uri: &axum::http::Uri,
    lie: Option<&(String, String)>,
) -> Response<Body> {
    let path = uri.path();
    let Some(name) = path.strip_prefix("/v2/").and_then(|p| p.strip_suffix("/tags/list")) else {
        return error_response(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    };
    let (_, mut tags, n) = match upstream_tags(shared, uri).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Some((lied_tag, lied_digest)) = lie
        && lied_digest.is_empty()
    {
        tags.retain(|t| t != lied_tag); // the listing leaves the tag out entirely
    }
    let n = n.unwrap_or(tags.len()).max(1);
    let page: Vec<String> = tags.iter().take(n).cloned().collect();
    // Each tag's digest and media type, as the registry serves them.
    let mut manifest = serde_json::Map::new();
    for tag in &page {
        let head = shared
            .client
            .head(format!("{}/v2/{name}/manifests/{tag}", shared.upstream))
            .header(
                "accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await;
        let Ok(head) = head else { return error_response(StatusCode::BAD_GATEWAY, "HEAD failed") };
        let header =
            |h: &str| head.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let mut digest = header("docker-content-digest");
        if let Some((lied_tag, lied_digest)) = lie
            && lied_tag == tag
        {
            if lied_digest.is_empty() {
                continue; // the listing leaves the tag out
            }
            digest = lied_digest.clone();
        }
        let entry = manifest.entry(digest).or_insert_with(|| {
            serde_json::json!({
                "imageSizeBytes": header("content-length"),
                "layerId": "",
                "mediaType": header("content-type"),
                "tag": [],
                "timeCreatedMs": "0",
                "timeUploadedMs": "1733500000000",
            })
        });
        if let Some(list) = entry["tag"].as_array_mut() {
            list.push(serde_json::Value::String(tag.clone()));
        }
    }
    // Sub-repositories, from the catalog.
    let catalog: serde_json::Value =
        match shared.client.get(format!("{}/v2/_catalog?n=10000", shared.upstream)).send().await {
            Ok(answer) => answer.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
    let prefix = format!("{name}/");
    let mut children: Vec<String> = catalog["repositories"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| {
                    v.as_str()?
                        .strip_prefix(&prefix)
                        .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    children.sort();
    children.dedup();
    let mut response = Response::builder().status(StatusCode::OK).header("content-type", "application/json");
    if tags.len() > n {
        let next = format!("<{path}?n={n}&last={}>; rel=\"next\"", page.last().cloned().unwrap_or_default());
        response = response.header("link", next);
    }
    let body = serde_json::json!({"child": children, "manifest": manifest, "name": name, "tags": page});
    response.body(Body::from(body.to_string())).expect("response")
}

fn error_response(status: StatusCode, code: &str) -> Response<Body> {
    let body =
        serde_json::json!({"errors": [{"code": code, "message": "injected by the fault proxy"}]}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("response")
}
