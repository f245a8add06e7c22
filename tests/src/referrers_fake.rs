//! **A fake**: the OCI 1.1 referrers API in front of a real CNCF distribution.
//!
//! No registry that serves `GET /v2/<name>/referrers/<digest>` runs here (distribution 2.8
//! answers 404; Harbor, zot and distribution 3 are not packaged for these machines). This proxy
//! forwards every request to a real `docker-registry` and adds what a registry with the
//! referrers API does, as the distribution spec describes it:
//! - a manifest PUT whose body has a `subject` is indexed, and the answer carries
//!   `OCI-Subject: <subject digest>`;
//! - `GET /v2/<name>/referrers/<digest>` answers an OCI index of the indexed referrers
//!   (`artifactType`, `annotations` copied from each manifest), filtered by `?artifactType=`
//!   with `OCI-Filters-Applied: artifactType`, two entries per page with a `Link` header.
//!
//! Everything else (blobs, manifests, tags) is the real registry's behaviour.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::registry::RegistryServer;

/// Entries per page of the fake's referrers answers: small, so that pagination is exercised.
const PAGE: usize = 2;

#[derive(Debug, Default)]
struct Index {
    /// (repository name, subject digest) → referrer descriptors, in push order.
    by_subject: BTreeMap<(String, String), Vec<Value>>,
    /// `GET …/referrers/…` requests served.
    lookups: usize,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    index: Mutex<Index>,
}

/// A fake referrers API over a real registry. Dropping it stops it.
#[derive(Debug)]
pub struct FakeReferrersApi {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeReferrersApi {
    pub async fn start(upstream: &RegistryServer) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.base_url(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            index: Mutex::new(Index::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeReferrersApi { port, shared, task }
    }

    pub fn host(&self) -> ferry_model::Host {
        ferry_model::Host::parse(&format!("127.0.0.1:{}", self.port)).expect("valid host")
    }

    pub fn repository(&self, path: &str) -> ferry_model::Repository {
        ferry_model::Repository::new(self.host(), ferry_model::RepoPath::parse(path).expect("valid path"))
    }

    /// How many referrers lookups the fake has answered.
    pub fn lookups(&self) -> usize {
        self.shared.index.lock().expect("index").lookups
    }
}

impl Drop for FakeReferrersApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    if request.method() == "GET"
        && let Some((name, digest)) = path.strip_prefix("/v2/").and_then(|p| p.split_once("/referrers/"))
    {
        return referrers(&shared, name, digest, &query);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return status(StatusCode::BAD_REQUEST, "body too large");
    };
    let mut upstream = shared.client.request(
        reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).expect("method"),
        format!("{}{}", shared.upstream, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")),
    );
    for (name, value) in &parts.headers {
        if name != "connection" && name != "transfer-encoding" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match upstream.body(bytes.clone()).send().await {
        Ok(answer) => answer,
        Err(e) => return status(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let code = answer.status().as_u16();
    let mut response = Response::builder().status(code);
    for (name, value) in answer.headers() {
        if name != "connection" && name != "transfer-encoding" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    // A manifest PUT with a subject: index it, and say so.
    if parts.method == "PUT" && code == 201 && path.contains("/manifests/") {
        let digest =
            answer.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let media_type =
            parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if let (Some(digest), Ok(doc)) = (digest, serde_json::from_slice::<Value>(&bytes))
            && let Some(subject) = doc["subject"]["digest"].as_str()
            && let Some(name) =
                path.strip_prefix("/v2/").and_then(|p| p.split_once("/manifests/")).map(|(n, _)| n)
        {
            let artifact_type = doc["artifactType"].as_str().or(doc["config"]["mediaType"].as_str());
            let mut entry = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
            if let Some(t) = artifact_type {
                entry["artifactType"] = json!(t);
            }
            if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
                entry["annotations"] = a.clone();
            }
            let mut index = shared.index.lock().expect("index");
            let list = index.by_subject.entry((name.to_owned(), subject.to_owned())).or_default();
            if !list.iter().any(|e| e["digest"] == entry["digest"]) {
                list.push(entry);
            }
            response = response.header("OCI-Subject", subject);
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(body)).expect("response")
}

fn referrers(shared: &Shared, name: &str, digest: &str, query: &str) -> Response<Body> {
    let params: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let wanted = params.get("artifactType").map(|t| decode(t));
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut index = shared.index.lock().expect("index");
    index.lookups += 1;
    let all: Vec<Value> = index
        .by_subject
        .get(&(name.to_owned(), digest.to_owned()))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| wanted.as_deref().is_none_or(|w| e["artifactType"].as_str() == Some(w)))
        .collect();
    let slice: Vec<Value> = all.iter().skip(page * PAGE).take(PAGE).cloned().collect();
    let body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": slice});
    let mut response =
        Response::builder().status(200).header("content-type", "application/vnd.oci.image.index.v1+json");
    if wanted.is_some() {
        response = response.header("OCI-Filters-Applied", "artifactType");
    }
    if (page + 1) * PAGE < all.len() {
        let mut next = format!("/v2/{name}/referrers/{digest}?page={}", page + 1);
        if let Some(t) = params.get("artifactType") {
            next.push_str(&format!("&artifactType={t}"));
        }
        response = response.header("Link", format!("<{next}>; rel=\"next\""));
    }
    response.body(Body::from(body.to_string())).expect("response")
}

fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&value[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(code: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(json!({"errors": [{"code": "UNKNOWN", "message": message}]}).to_string()))
        .expect("response")
}
