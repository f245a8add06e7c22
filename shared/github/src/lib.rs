//! GitHub's REST API, as Ferry uses it, through one client: the contents and compare endpoints
//! (reading the manifest repository), the Checks API (posting presubmit results), releases, git
//! refs, contents writes and pulls (discovery's pull requests).
//!
//! Every request goes through [`GitHub::send`], which applies GitHub's documented rate-limit
//! rules once, for every caller:
//! - a **primary** limit: `403`/`429` with `x-ratelimit-remaining: 0` means waiting until
//!   `x-ratelimit-reset` (epoch seconds);
//! - a **secondary** limit: `403`/`429` with `retry-after` means waiting that many seconds; one
//!   without either header means waiting at least a minute;
//! - `5xx` and connection failures are retried with a doubling backoff.
//!
//! A wait that fits the retry budget is waited here; a longer one is returned as
//! [`GitHubError::RateLimited`] with the time to wait, which the pipeline honours as a 429's
//! `Retry-After` (a delayed redelivery, then the throttled dead-letter queue).
//!
//! Invariant: only this crate builds requests to GitHub; `https://api.github.com` is spelled
//! once ([`DEFAULT_API`]). The token is sent as a bearer header and never printed.

use std::time::Duration;

use ferry_registry::{Classify, ErrorClass, Secret};
use reqwest::Method;
use serde_json::{Value, json};
use thiserror::Error;

/// GitHub's API, unless a configuration names another (GitHub Enterprise:
/// `https://HOST/api/v3`).
pub const DEFAULT_API: &str = "https://api.github.com";

/// The API version every request asks for.
const API_VERSION: &str = "2022-11-28";

#[derive(Clone, Debug, Error)]
pub enum GitHubError {
    #[error("GitHub: {0}")]
    Request(String),
    #[error("GitHub: {method} {url}: HTTP {status}: {body}")]
    Status { method: String, url: String, status: u16, body: String },
    #[error("GitHub: {method} {url}: rate limited ({kind}); retry in {}s", retry_after.as_secs())]
    RateLimited { method: String, url: String, kind: &'static str, retry_after: Duration },
}

impl Classify for GitHubError {
    /// A GitHub outage is worth retrying, a rate limit waits as GitHub asks, and a refused
    /// request is not worth repeating.
    fn class(&self) -> ErrorClass {
        match self {
            GitHubError::Request(_) => ErrorClass::Transient,
            GitHubError::RateLimited { .. } => ErrorClass::Throttled,
            GitHubError::Status { status, .. } if *status >= 500 => ErrorClass::Transient,
            GitHubError::Status { .. } => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

impl GitHubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How long to wait, and which limit said so, for a rate-limited answer; `None` for any other.
/// Pure: the status, the three headers GitHub documents, and the time now.
pub fn rate_limit_wait(
    status: u16,
    remaining: Option<&str>,
    reset: Option<&str>,
    retry_after: Option<&str>,
    now_epoch: u64,
    body: &str,
) -> Option<(&'static str, Duration)> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(seconds) = retry_after.and_then(|r| r.trim().parse::<u64>().ok()) {
        return Some(("secondary", Duration::from_secs(seconds)));
    }
    if remaining.map(str::trim) == Some("0") {
        let reset = reset.and_then(|r| r.trim().parse::<u64>().ok()).unwrap_or(now_epoch + 60);
        return Some(("primary", Duration::from_secs(reset.saturating_sub(now_epoch).max(1))));
    }
    // A 403 is a refusal unless GitHub says it is a limit; a 429 always is one.
    if status == 429 || body.to_ascii_lowercase().contains("rate limit") {
        return Some(("secondary", Duration::from_secs(60)));
    }
    None
}

/// A release, as discovery reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub tag: String,
    pub draft: bool,
    pub prerelease: bool,
}

/// One entry of a directory listing of the contents API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub name: String,
    /// `file`, `dir`, `symlink` or `submodule`.
    pub kind: String,
}

/// The client: an API endpoint and a token (`GITHUB_TOKEN`), shared by every caller.
#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    token: Option<Secret>,
    /// Waits up to this long in total for a rate limit or a retry before returning the error.
    budget: Duration,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.api)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    ferry_model::link::next_link(headers.get(reqwest::header::LINK)?.to_str().ok()?)
}

/// A repository path for a URL (see [`ferry_model::url::path`]).
pub fn url_path(path: &str) -> String {
    ferry_model::url::path(path)
}

/// The largest number of pages read for one listing (100 entries each).
const MAX_PAGES: usize = 50;

impl GitHub {
    /// `api` without a trailing slash; `None` for `token` reads public repositories only.
    pub fn new(api: &str, token: Option<Secret>) -> Result<Self, GitHubError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| GitHubError::Request(e.to_string()))?;
        Ok(Self::with_client(http, api, token))
    }

    /// The same over a client the caller already holds (its connections are shared).
    pub fn with_client(http: reqwest::Client, api: &str, token: Option<Secret>) -> Self {
        Self { http, api: api.trim_end_matches('/').to_owned(), token, budget: Duration::from_secs(90) }
    }

    /// Waits at most `budget` in total (rate limits, retries) before returning an error.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    pub fn api(&self) -> &str {
        &self.api
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `{api}/repos/{repository}/{rest}`.
    pub fn repo_url(&self, repository: &str, rest: &str) -> String {
        format!("{}/repos/{repository}/{rest}", self.api)
    }

    /// One request, GitHub's rate-limit rules and retries applied: the answer's body (`Null`
    /// when empty), its `Link: rel="next"`, or the error.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> Result<(Vec<u8>, Option<String>), GitHubError> {
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let mut request = self
                .http
                .request(method.clone(), url)
                .header("accept", accept)
                .header("x-github-api-version", API_VERSION);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token.expose());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let failure = match request.send().await {
                Err(e) => GitHubError::Request(format!("{method} {url}: {e}")),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let header = |name: &str| {
                        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
                    };
                    let (remaining, reset, retry_after) =
                        (header("x-ratelimit-remaining"), header("x-ratelimit-reset"), header("retry-after"));
                    let next = next_link(response.headers());
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|e| GitHubError::Request(format!("{method} {url}: {e}")))?
                        .to_vec();
                    if (200..300).contains(&status) {
                        return Ok((bytes, next));
                    }
                    let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    match rate_limit_wait(
                        status,
                        remaining.as_deref(),
                        reset.as_deref(),
                        retry_after.as_deref(),
                        now,
                        &text,
                    ) {
                        Some((kind, wait)) => GitHubError::RateLimited {
                            method: method.to_string(),
                            url: url.to_owned(),
                            kind,
                            retry_after: wait,
                        },
                        None => GitHubError::Status {
                            method: method.to_string(),
                            url: url.to_owned(),
                            status,
                            body: ferry_model::escaped(&text).into_owned(),
                        },
                    }
                }
            };
            let wait = match &failure {
                GitHubError::RateLimited { retry_after, .. } => *retry_after,
                GitHubError::Request(_) => backoff,
                GitHubError::Status { status, .. } if *status >= 500 => backoff,
                _ => return Err(failure),
            };
            if started.elapsed() + wait > self.budget {
                return Err(failure);
            }
            tracing::debug!(%failure, ?wait, "retrying a GitHub request");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// A JSON request.
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), GitHubError> {
        let (bytes, next) = self.send(method.clone(), url, "application/vnd.github+json", body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((Value::Null, next));
        }
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| GitHubError::Request(format!("{method} {url}: the answer: {e}")))?;
        Ok((value, next))
    }

    // --- Contents (the manifest repository).

    /// A file's bytes at `reference`, or `None` if it does not exist there.
    pub async fn file(
        &self,
        repository: &str,
        reference: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, GitHubError> {
        let url =
            self.repo_url(repository, &format!("contents/{}?ref={}", url_path(path), url_path(reference)));
        match self.send(Method::GET, &url, "application/vnd.github.raw+json", None).await {
            Ok((bytes, _)) => Ok(Some(bytes)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entries of a directory at `reference` (empty when it does not exist).
    pub async fn directory(
        &self,
        repository: &str,
        reference: &str,
        path: &str,
    ) -> Result<Vec<Item>, GitHubError> {
        let url =
            self.repo_url(repository, &format!("contents/{}?ref={}", url_path(path), url_path(reference)));
        let value = match self.json(Method::GET, &url, None).await {
            Ok((value, _)) => value,
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let list =
            value.as_array().ok_or_else(|| GitHubError::Request(format!("GET {url}: not a directory")))?;
        Ok(list
            .iter()
            .filter_map(|i| {
                Some(Item { name: i["name"].as_str()?.to_owned(), kind: i["type"].as_str()?.to_owned() })
            })
            .collect())
    }

    /// The paths changed between two commits (`compare/{base}...{head}`).
    pub async fn changed_files(
        &self,
        repository: &str,
        base: &str,
        head: &str,
    ) -> Result<Vec<String>, GitHubError> {
        let url = self.repo_url(repository, &format!("compare/{}...{}", url_path(base), url_path(head)));
        let (value, _) = self.json(Method::GET, &url, None).await?;
        Ok(value["files"]
            .as_array()
            .map(|files| files.iter().filter_map(|f| f["filename"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// The commit at the head of the default branch.
    pub async fn head(&self, repository: &str) -> Result<String, GitHubError> {
        let url = self.repo_url(repository, "commits/HEAD");
        let (value, _) = self.json(Method::GET, &url, None).await?;
        value["sha"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| GitHubError::Request(format!("GET {url}: no sha")))
    }

    // --- Checks (presubmit results).

    /// The check runs named `name` on `head_sha` (`GET .../commits/{ref}/check-runs`).
    pub async fn check_runs(
        &self,
        repository: &str,
        head_sha: &str,
        name: &str,
    ) -> Result<Vec<Value>, GitHubError> {
        let url = reqwest::Url::parse_with_params(
            &self.repo_url(repository, &format!("commits/{}/check-runs", url_path(head_sha))),
            &[("check_name", name), ("filter", "all"), ("per_page", "100")],
        )
        .map_err(|e| GitHubError::Request(e.to_string()))?;
        let (value, _) = self.json(Method::GET, url.as_str(), None).await?;
        Ok(value["check_runs"].as_array().cloned().unwrap_or_default())
    }

    /// Creates a check run; returns GitHub's answer (`id`, `html_url`).
    pub async fn create_check_run(&self, repository: &str, body: &Value) -> Result<Value, GitHubError> {
        let url = self.repo_url(repository, "check-runs");
        Ok(self.json(Method::POST, &url, Some(body)).await?.0)
    }

    pub async fn update_check_run(
        &self,
        repository: &str,
        id: u64,
        body: &Value,
    ) -> Result<Value, GitHubError> {
        let url = self.repo_url(repository, &format!("check-runs/{id}"));
        Ok(self.json(Method::PATCH, &url, Some(body)).await?.0)
    }

    // --- Releases, refs, contents writes and pulls (discovery).

    fn release(value: &Value) -> Option<Release> {
        Some(Release {
            tag: value["tag_name"].as_str()?.to_owned(),
            draft: value["draft"].as_bool().unwrap_or(false),
            prerelease: value["prerelease"].as_bool().unwrap_or(false),
        })
    }

    /// Every release of `repository` (`owner/name`), following the `Link` pages.
    pub async fn releases(&self, repository: &str) -> Result<Vec<Release>, GitHubError> {
        let mut url = self.repo_url(repository, "releases?per_page=100");
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (page, next) = self.json(Method::GET, &url, None).await?;
            let list = page
                .as_array()
                .ok_or_else(|| GitHubError::Request(format!("GET {url}: not a list of releases")))?;
            out.extend(list.iter().filter_map(Self::release));
            match next {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Err(GitHubError::Request(format!("{repository} has more than {} releases", MAX_PAGES * 100)))
    }

    /// The latest release (GitHub's choice: not a draft, not a prerelease).
    pub async fn latest_release(&self, repository: &str) -> Result<Release, GitHubError> {
        let url = self.repo_url(repository, "releases/latest");
        let (value, _) = self.json(Method::GET, &url, None).await?;
        Self::release(&value).ok_or_else(|| GitHubError::Request(format!("GET {url}: no tag_name")))
    }

    /// The commit a branch points at.
    pub async fn branch_sha(&self, repository: &str, branch: &str) -> Result<String, GitHubError> {
        let url = self.repo_url(repository, &format!("git/ref/heads/{}", url_path(branch)));
        let (value, _) = self.json(Method::GET, &url, None).await?;
        value["object"]["sha"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| GitHubError::Request(format!("GET {url}: no object.sha")))
    }

    /// The pull requests (any state) from `head` (`owner:branch`) into `base`.
    pub async fn pulls_from(
        &self,
        repository: &str,
        head: &str,
        base: &str,
    ) -> Result<Vec<String>, GitHubError> {
        let url = reqwest::Url::parse_with_params(
            &self.repo_url(repository, "pulls"),
            &[("head", head), ("base", base), ("state", "all")],
        )
        .map_err(|e| GitHubError::Request(e.to_string()))?;
        let (value, _) = self.json(Method::GET, url.as_str(), None).await?;
        Ok(value
            .as_array()
            .map(|list| list.iter().filter_map(|p| p["html_url"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    pub async fn create_branch(&self, repository: &str, branch: &str, sha: &str) -> Result<(), GitHubError> {
        let url = self.repo_url(repository, "git/refs");
        self.json(Method::POST, &url, Some(&json!({"ref": format!("refs/heads/{branch}"), "sha": sha})))
            .await?;
        Ok(())
    }

    /// Commits `content` as `path` on `branch` (the contents API: one commit per file).
    pub async fn put_file(
        &self,
        repository: &str,
        path: &str,
        branch: &str,
        message: &str,
        content: &[u8],
    ) -> Result<(), GitHubError> {
        use base64::Engine as _;
        let url = self.repo_url(repository, &format!("contents/{}", url_path(path)));
        let current = reqwest::Url::parse_with_params(&url, &[("ref", branch)])
            .map_err(|e| GitHubError::Request(e.to_string()))?;
        let sha = match self.json(Method::GET, current.as_str(), None).await {
            Ok((value, _)) => value["sha"].as_str().map(str::to_owned),
            Err(e) if e.status() == Some(404) => None,
            Err(e) => return Err(e),
        };
        let mut body = json!({
            "message": message,
            "content": base64::engine::general_purpose::STANDARD.encode(content),
            "branch": branch,
        });
        if let Some(sha) = sha {
            body["sha"] = json!(sha);
        }
        self.json(Method::PUT, &url, Some(&body)).await?;
        Ok(())
    }

    /// Opens a pull request; returns its number and URL.
    pub async fn open_pull(
        &self,
        repository: &str,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<(u64, String), GitHubError> {
        let url = self.repo_url(repository, "pulls");
        let request =
            json!({"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": true});
        let (value, _) = self.json(Method::POST, &url, Some(&request)).await?;
        let number =
            value["number"].as_u64().ok_or_else(|| GitHubError::Request(format!("POST {url}: no number")))?;
        Ok((number, value["html_url"].as_str().unwrap_or_default().to_owned()))
    }

    /// Asks `reviewers` (users, or `org/team`) to review pull request `number`.
    pub async fn request_reviewers(
        &self,
        repository: &str,
        number: u64,
        reviewers: &[String],
    ) -> Result<(), GitHubError> {
        let (teams, users): (Vec<&String>, Vec<&String>) = reviewers.iter().partition(|r| r.contains('/'));
        let teams: Vec<&str> = teams.iter().filter_map(|t| t.split('/').nth(1)).collect();
        let url = self.repo_url(repository, &format!("pulls/{number}/requested_reviewers"));
        self.json(Method::POST, &url, Some(&json!({"reviewers": users, "team_reviewers": teams}))).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_s_rate_limit_rules() {
        let now = 1_700_000_000;
        let reset = (now + 42).to_string();
        for (status, remaining, reset, retry_after, body, want) in [
            (200, None, None, None, "", None),
            (404, None, None, None, "", None),
            // A plain refusal is not a limit.
            (403, Some("4999"), None, None, "Resource not accessible by integration", None),
            // Primary: the hourly budget is spent; wait until the reset.
            (403, Some("0"), Some(reset.as_str()), None, "API rate limit exceeded", Some(("primary", 42))),
            (429, Some("0"), Some(reset.as_str()), None, "", Some(("primary", 42))),
            // Secondary: retry-after says how long.
            (403, Some("10"), None, Some("17"), "secondary rate limit", Some(("secondary", 17))),
            (429, None, None, Some("5"), "", Some(("secondary", 5))),
            // Secondary without retry-after: at least a minute.
            (
                403,
                Some("10"),
                None,
                None,
                "You have exceeded a secondary rate limit",
                Some(("secondary", 60)),
            ),
            (429, None, None, None, "", Some(("secondary", 60))),
        ] {
            let got = rate_limit_wait(status, remaining, reset, retry_after, now, body)
                .map(|(kind, wait)| (kind, wait.as_secs()));
            assert_eq!(got, want, "{status} {remaining:?} {reset:?} {retry_after:?} {body}");
        }
        let limited = GitHubError::RateLimited {
            method: "GET".into(),
            url: "u".into(),
            kind: "primary",
            retry_after: Duration::from_secs(42),
        };
        assert_eq!(limited.class(), ErrorClass::Throttled);
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(42)));
    }
}
