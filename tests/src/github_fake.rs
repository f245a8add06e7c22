//! A fake of GitHub's Checks API (GitHub cannot run here): an HTTP server that records every
//! request and checks it against the documented schema of "Create a check run" and "Update a
//! check run" (https://docs.github.com/en/rest/checks/runs, API version 2022-11-28), answering
//! 422 with the reason, as GitHub does, for a body that breaks it.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: &'static str,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// Why the body breaks the schema, if it does (the fake answered 422).
    pub invalid: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
}

#[derive(Debug)]
pub struct FakeGitHubChecks {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeGitHubChecks {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/check-runs", post(create))
            .route("/repos/{owner}/{repo}/check-runs/{id}", patch(update))
            .route("/repos/{owner}/{repo}/commits/{reference}/check-runs", get(list))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, shared, task }
    }

    /// The API base URL, as `--github-api` takes it.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// The check runs created (valid `POST`s), in order.
    pub fn created(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == "POST" && r.invalid.is_none()).collect()
    }

    /// How many times check runs were listed.
    pub fn listings(&self) -> usize {
        self.requests().iter().filter(|r| r.method == "GET").count()
    }
}

impl Drop for FakeGitHubChecks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const STATUSES: [&str; 6] = ["queued", "in_progress", "completed", "waiting", "requested", "pending"];
const CONCLUSIONS: [&str; 8] =
    ["action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"];
const CREATE_KEYS: [&str; 10] = [
    "name",
    "head_sha",
    "details_url",
    "external_id",
    "status",
    "started_at",
    "conclusion",
    "completed_at",
    "output",
    "actions",
];
const UPDATE_KEYS: [&str; 9] = [
    "name",
    "details_url",
    "external_id",
    "started_at",
    "status",
    "conclusion",
    "completed_at",
    "output",
    "actions",
];

fn string(body: &Value, key: &str) -> Result<Option<String>, String> {
    match &body[key] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(format!("`{key}` must be a string, not {other}")),
    }
}

/// The rules the documentation states for `output`.
fn check_output(output: &Value) -> Result<(), String> {
    let Value::Object(map) = output else { return Err("`output` must be an object".into()) };
    for key in map.keys() {
        if !["title", "summary", "text", "annotations", "images"].contains(&key.as_str()) {
            return Err(format!("`output.{key}` is not a parameter"));
        }
    }
    for key in ["title", "summary"] {
        if string(output, key)?.is_none() {
            return Err(format!("`output.{key}` is required"));
        }
    }
    for key in ["summary", "text"] {
        if string(output, key)?.is_some_and(|s| s.chars().count() > 65_535) {
            return Err(format!("`output.{key}` is longer than 65535 characters"));
        }
    }
    if let Some(annotations) = output.get("annotations") {
        let Value::Array(list) = annotations else {
            return Err("`output.annotations` must be an array".into());
        };
        if list.len() > 50 {
            return Err(format!("{} annotations in one request; at most 50", list.len()));
        }
        for (i, a) in list.iter().enumerate() {
            for key in ["path", "message", "annotation_level"] {
                if string(a, key).map_err(|e| format!("annotation {i}: {e}"))?.is_none() {
                    return Err(format!("annotation {i}: `{key}` is required"));
                }
            }
            let level = a["annotation_level"].as_str().unwrap_or_default();
            if !["notice", "warning", "failure"].contains(&level) {
                return Err(format!("annotation {i}: annotation_level {level:?}"));
            }
            for key in ["start_line", "end_line"] {
                if a[key].as_u64().is_none_or(|n| n < 1) {
                    return Err(format!("annotation {i}: `{key}` must be a line number"));
                }
            }
            if a["end_line"].as_u64() < a["start_line"].as_u64() {
                return Err(format!("annotation {i}: end_line before start_line"));
            }
        }
    }
    Ok(())
}

fn check_common(body: &Value, keys: &[&str]) -> Result<(), String> {
    let Value::Object(map) = body else { return Err("the body must be a JSON object".into()) };
    for key in map.keys() {
        if !keys.contains(&key.as_str()) {
            return Err(format!("`{key}` is not a parameter"));
        }
    }
    if let Some(status) = string(body, "status")?
        && !STATUSES.contains(&status.as_str())
    {
        return Err(format!("status {status:?}"));
    }
    if let Some(conclusion) = string(body, "conclusion")?
        && !CONCLUSIONS.contains(&conclusion.as_str())
    {
        return Err(format!("conclusion {conclusion:?}"));
    }
    if string(body, "status")?.as_deref() == Some("completed") && string(body, "conclusion")?.is_none() {
        return Err("a completed check run needs a conclusion".into());
    }
    if body.get("output").is_some() {
        check_output(&body["output"])?;
    }
    Ok(())
}

fn check_headers(headers: &HeaderMap) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !header("authorization").starts_with("Bearer ") {
        return Err("no bearer token".into());
    }
    if header("user-agent").is_empty() {
        return Err("GitHub refuses requests without a User-Agent".into());
    }
    if header("accept") != "application/vnd.github+json" {
        return Err(format!("accept {:?}", header("accept")));
    }
    Ok(())
}

fn record(
    shared: &Shared,
    method: &'static str,
    path: String,
    headers: &HeaderMap,
    body: Value,
    verdict: Result<(), String>,
) -> Option<String> {
    let invalid = verdict.err();
    shared.requests.lock().expect("requests").push(Recorded {
        method,
        path,
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body,
        invalid: invalid.clone(),
    });
    invalid
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let verdict = check_headers(&headers).and_then(|()| {
        check_common(&body, &CREATE_KEYS)?;
        for key in ["name", "head_sha"] {
            if string(&body, key)?.is_none() {
                return Err(format!("`{key}` is required"));
            }
        }
        Ok(())
    });
    let path = format!("/repos/{owner}/{repo}/check-runs");
    let n = shared.requests.lock().expect("requests").len() as u64 + 1;
    if let Some(reason) = record(&shared, "POST", path, &headers, body, verdict) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": reason})));
    }
    let id = 4_000 + n;
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "html_url": format!("https://github.com/{owner}/{repo}/runs/{id}")})),
    )
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let verdict = check_headers(&headers).and_then(|()| check_common(&body, &UPDATE_KEYS));
    let path = format!("/repos/{owner}/{repo}/check-runs/{id}");
    if let Some(reason) = record(&shared, "PATCH", path, &headers, body, verdict) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": reason})));
    }
    (
        StatusCode::OK,
        Json(json!({"id": id, "html_url": format!("https://github.com/{owner}/{repo}/runs/{id}")})),
    )
}

/// "List check runs for a Git reference": the runs created on that commit, filtered by
/// `check_name` as GitHub filters them.
async fn list(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo, reference)): Path<(String, String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    let verdict = check_headers(&headers);
    let path = format!("/repos/{owner}/{repo}/commits/{reference}/check-runs");
    let runs: Vec<Value> = shared
        .requests
        .lock()
        .expect("requests")
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.method == "POST" && r.invalid.is_none() && r.path == format!("/repos/{owner}/{repo}/check-runs")
        })
        .filter(|(_, r)| r.body["head_sha"] == reference.as_str())
        .filter(|(_, r)| query.get("check_name").is_none_or(|name| r.body["name"] == name.as_str()))
        .map(|(i, r)| {
            let id = 4_000 + i as u64 + 1;
            json!({
                "id": id,
                "name": r.body["name"],
                "head_sha": r.body["head_sha"],
                "external_id": r.body["external_id"],
                "status": r.body["status"],
                "conclusion": r.body["conclusion"],
                "html_url": format!("https://github.com/{owner}/{repo}/runs/{id}"),
            })
        })
        .collect();
    if let Some(reason) = record(&shared, "GET", path, &headers, Value::Null, verdict) {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": reason})));
    }
    (StatusCode::OK, Json(json!({"total_count": runs.len(), "check_runs": runs})))
}
