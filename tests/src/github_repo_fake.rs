//! A fake of the parts of GitHub's REST API that `ferry discover` uses, named as a fake: it
//! cannot run here. Releases (listed two per page with a `Link` header, so pagination is
//! exercised; drafts and prereleases among them; `releases/latest` as GitHub picks it), and a
//! repository's git refs, contents and pull requests, kept in memory. Write requests must carry
//! a bearer token and the documented fields, or they are answered 401/422 as GitHub would.
//!
//! Also a fake Helm chart repository (`index.yaml` and chart archives over HTTP).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One release as the fake lists it.
#[derive(Clone, Debug)]
pub struct FakeRelease {
    pub tag: String,
    pub draft: bool,
    pub prerelease: bool,
}

impl FakeRelease {
    pub fn new(tag: &str) -> Self {
        Self { tag: tag.into(), draft: false, prerelease: false }
    }
    pub fn draft(tag: &str) -> Self {
        Self { tag: tag.into(), draft: true, prerelease: false }
    }
    pub fn prerelease(tag: &str) -> Self {
        Self { tag: tag.into(), draft: false, prerelease: true }
    }
}

/// A pull request the fake holds.
#[derive(Clone, Debug)]
pub struct FakePull {
    pub number: u64,
    pub title: String,
    pub head: String,
    pub base: String,
    pub body: String,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
}

#[derive(Default)]
struct State_ {
    port: u16,
    /// `owner/repo` -> releases, newest first (as GitHub lists them).
    releases: BTreeMap<String, Vec<FakeRelease>>,
    /// branch -> commit.
    branches: BTreeMap<String, String>,
    /// (branch, path) -> contents.
    files: BTreeMap<(String, String), Vec<u8>>,
    pulls: Vec<FakePull>,
    /// Every request: method and path.
    requests: Vec<String>,
    commits: u64,
}

type Shared = Arc<Mutex<State_>>;

#[derive(Debug)]
pub struct FakeGitHubRepo {
    port: u16,
    state: Arc<Mutex<State_>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for State_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeGitHubRepo state")
    }
}

const PER_PAGE: usize = 2;

impl FakeGitHubRepo {
    /// A fake whose repository has branch `main` holding `files` (path, contents).
    pub async fn start(files: &[(&str, &[u8])]) -> Self {
        let state: Shared = Arc::new(Mutex::new(State_::default()));
        {
            let mut s = state.lock().expect("state");
            s.branches.insert("main".into(), "0000000000000000000000000000000000000001".into());
            for (path, content) in files {
                s.files.insert(("main".into(), (*path).into()), content.to_vec());
            }
        }
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/releases", get(releases))
            .route("/repos/{owner}/{repo}/releases/latest", get(latest))
            .route("/repos/{owner}/{repo}/git/ref/heads/{*branch}", get(branch))
            .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
            .route("/repos/{owner}/{repo}/contents/{*path}", get(get_file).put(put_file))
            .route("/repos/{owner}/{repo}/pulls", get(list_pulls).post(create_pull))
            .route("/repos/{owner}/{repo}/pulls/{number}/requested_reviewers", post(request_reviewers))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        state.lock().expect("state").port = port;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, state, task }
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_releases(&self, repository: &str, releases: Vec<FakeRelease>) {
        self.state.lock().expect("state").releases.insert(repository.into(), releases);
    }

    /// A file at a reference other than a branch (a release tag), for the contents API.
    pub fn set_file_at(&self, reference: &str, path: &str, content: &[u8]) {
        self.state.lock().expect("state").files.insert((reference.into(), path.into()), content.to_vec());
    }

    pub fn pulls(&self) -> Vec<FakePull> {
        self.state.lock().expect("state").pulls.clone()
    }

    pub fn file(&self, branch: &str, path: &str) -> Option<Vec<u8>> {
        self.state.lock().expect("state").files.get(&(branch.to_owned(), path.to_owned())).cloned()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("state").requests.clone()
    }
}

impl Drop for FakeGitHubRepo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7)
}

fn record(state: &Shared, what: String) {
    state.lock().expect("state").requests.push(what);
}

fn release_json(r: &FakeRelease) -> Value {
    json!({"tag_name": r.tag, "draft": r.draft, "prerelease": r.prerelease, "name": r.tag})
}

async fn releases(
    State(state): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    record(
        &state,
        format!("GET releases {owner}/{repo} page {}", query.get("page").map_or("1", String::as_str)),
    );
    let s = state.lock().expect("state");
    let Some(all) = s.releases.get(&format!("{owner}/{repo}")) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let items: Vec<Value> = all.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).map(release_json).collect();
    let mut response = Json(Value::Array(items)).into_response();
    if page * PER_PAGE < all.len() {
        let next = format!(
            "<http://127.0.0.1:{}/repos/{owner}/{repo}/releases?per_page=100&page={}>; rel=\"next\"",
            s.port,
            page + 1
        );
        if let Ok(value) = next.parse() {
            response.headers_mut().insert("link", value);
        }
    }
    response
}

async fn latest(State(state): State<Shared>, Path((owner, repo)): Path<(String, String)>) -> Response {
    record(&state, format!("GET latest {owner}/{repo}"));
    let s = state.lock().expect("state");
    match s
        .releases
        .get(&format!("{owner}/{repo}"))
        .and_then(|all| all.iter().find(|r| !r.draft && !r.prerelease))
    {
        Some(r) => Json(release_json(r)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn branch(
    State(state): State<Shared>,
    Path((_, _, branch)): Path<(String, String, String)>,
) -> Response {
    let s = state.lock().expect("state");
    match s.branches.get(&branch) {
        Some(sha) => {
            Json(json!({"ref": format!("refs/heads/{branch}"), "object": {"sha": sha, "type": "commit"}}))
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn create_ref(State(state): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    }
    let (Some(reference), Some(sha)) = (body["ref"].as_str(), body["sha"].as_str()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "ref and sha are required");
    };
    let Some(branch) = reference.strip_prefix("refs/heads/") else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "ref must start with refs/heads/");
    };
    record(&state, format!("POST ref {branch}"));
    let mut s = state.lock().expect("state");
    if s.branches.contains_key(branch) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
    }
    let Some(base) = s.branches.iter().find(|(_, v)| *v == sha).map(|(k, _)| k.clone()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
    };
    s.branches.insert(branch.to_owned(), sha.to_owned());
    let copied: Vec<((String, String), Vec<u8>)> = s
        .files
        .iter()
        .filter(|((b, _), _)| *b == base)
        .map(|((_, p), c)| ((branch.to_owned(), p.clone()), c.clone()))
        .collect();
    s.files.extend(copied);
    (StatusCode::CREATED, Json(json!({"ref": reference, "object": {"sha": sha}}))).into_response()
}

fn blob_sha(content: &[u8]) -> String {
    use sha2::Digest as _;
    hex_string(&sha2::Sha256::digest(content))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn get_file(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((_, _, path)): Path<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let branch = query.get("ref").cloned().unwrap_or_else(|| "main".into());
    let s = state.lock().expect("state");
    // `application/vnd.github.raw+json` asks for the bytes themselves, as GitHub answers it.
    let raw = headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("raw"));
    match s.files.get(&(branch, path.clone())) {
        Some(content) if raw => (StatusCode::OK, content.clone()).into_response(),
        Some(content) => {
            use base64::Engine as _;
            // GitHub wraps the base64 at 60 columns.
            let encoded = base64::engine::general_purpose::STANDARD.encode(content);
            let wrapped: Vec<String> =
                encoded.as_bytes().chunks(60).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            Json(json!({"path": path, "sha": blob_sha(content), "type": "file", "encoding": "base64", "content": wrapped.join("\n")}))
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn put_file(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((_, _, path)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    use base64::Engine as _;
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    }
    let (Some(message), Some(content), Some(branch)) =
        (body["message"].as_str(), body["content"].as_str(), body["branch"].as_str())
    else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "message, content and branch are required");
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(content) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "content is not base64");
    };
    record(&state, format!("PUT contents {branch} {path}: {message}"));
    let mut s = state.lock().expect("state");
    if !s.branches.contains_key(branch) {
        return error(StatusCode::NOT_FOUND, "Branch not found");
    }
    let key = (branch.to_owned(), path.clone());
    match (s.files.get(&key), body["sha"].as_str()) {
        (Some(existing), Some(sha)) if blob_sha(existing) != sha => {
            return error(StatusCode::CONFLICT, "sha does not match");
        }
        (Some(_), None) => return error(StatusCode::UNPROCESSABLE_ENTITY, "\"sha\" wasn't supplied"),
        _ => {}
    }
    s.files.insert(key, bytes);
    s.commits += 1;
    let commit = format!("{:040x}", s.commits + 100);
    s.branches.insert(branch.to_owned(), commit.clone());
    Json(json!({"commit": {"sha": commit}})).into_response()
}

async fn list_pulls(
    State(state): State<Shared>,
    Path((owner, _)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let s = state.lock().expect("state");
    let head = query.get("head").cloned().unwrap_or_default();
    let base = query.get("base").cloned();
    let list: Vec<Value> = s
        .pulls
        .iter()
        .filter(|p| head.is_empty() || format!("{owner}:{}", p.head) == head)
        .filter(|p| base.as_ref().is_none_or(|b| *b == p.base))
        .map(|p| json!({"number": p.number, "html_url": format!("https://github.example/pull/{}", p.number), "state": "open"}))
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn create_pull(State(state): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    }
    let (Some(title), Some(head), Some(base)) =
        (body["title"].as_str(), body["head"].as_str(), body["base"].as_str())
    else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "title, head and base are required");
    };
    let mut s = state.lock().expect("state");
    if !s.branches.contains_key(head) || !s.branches.contains_key(base) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "head or base does not exist");
    }
    let number = s.pulls.len() as u64 + 1;
    s.pulls.push(FakePull {
        number,
        title: title.into(),
        head: head.into(),
        base: base.into(),
        body: body["body"].as_str().unwrap_or_default().into(),
        reviewers: Vec::new(),
        team_reviewers: Vec::new(),
    });
    s.requests.push(format!("POST pull {head}"));
    (
        StatusCode::CREATED,
        Json(json!({"number": number, "html_url": format!("https://github.example/pull/{number}")})),
    )
        .into_response()
}

async fn request_reviewers(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((_, _, number)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Requires authentication");
    }
    let names = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut s = state.lock().expect("state");
    let Some(pull) = s.pulls.iter_mut().find(|p| p.number == number) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    pull.reviewers = names("reviewers");
    pull.team_reviewers = names("team_reviewers");
    (StatusCode::CREATED, Json(json!({"number": number}))).into_response()
}

/// A fake Helm chart repository: `index.yaml` and the archives it names, over HTTP.
#[derive(Debug)]
pub struct FakeHelmRepository {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl FakeHelmRepository {
    /// Serves `files` (path under the repository URL, bytes).
    pub async fn start(files: Vec<(String, Vec<u8>)>) -> Self {
        let files: Arc<BTreeMap<String, Vec<u8>>> = Arc::new(files.into_iter().collect());
        let app = axum::Router::new()
            .route(
                "/{*path}",
                get(|State(files): State<Arc<BTreeMap<String, Vec<u8>>>>, Path(path): Path<String>| async move {
                    match files.get(&path) {
                        Some(bytes) => (StatusCode::OK, bytes.clone()).into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }),
            )
            .with_state(files);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeHelmRepository {
    fn drop(&mut self) {
        self.task.abort();
    }
}
