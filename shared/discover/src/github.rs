//! The parts of GitHub's REST API discovery uses: releases (to find tags) and the git data,
//! contents and pulls endpoints (to propose them as a pull request). Tested against a fake of
//! the same HTTP API in the testkit.

use ferry_manifests::autoupdate::Release;
use ferry_registry::Secret;
use reqwest::Method;
use serde_json::{Value, json};

use crate::DiscoverError;

/// A GitHub API endpoint (`https://api.github.com`, or GitHub Enterprise's
/// `https://HOST/api/v3`), with an optional token (`GITHUB_TOKEN`). The token is sent as a
/// bearer header and never printed.
#[derive(Clone)]
pub struct GitHub {
    http: reqwest::Client,
    api: String,
    token: Option<Secret>,
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
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

/// The largest number of release pages read for one repository (100 releases each).
const MAX_PAGES: usize = 50;

impl GitHub {
    pub fn new(api: &str, token: Option<Secret>) -> Result<Self, DiscoverError> {
        Ok(Self { http: crate::http_client()?, api: api.trim_end_matches('/').to_owned(), token })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), DiscoverError> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request.send().await.map_err(|e| DiscoverError::Request(format!("{method} {url}: {e}")))?;
        let status = response.status().as_u16();
        let next = next_link(response.headers());
        let text =
            response.text().await.map_err(|e| DiscoverError::Request(format!("{method} {url}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(DiscoverError::GitHub {
                method: method.to_string(),
                url: url.to_owned(),
                status,
                body: text.chars().take(300).collect(),
            });
        }
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| DiscoverError::Request(format!("{method} {url}: the answer: {e}")))?
        };
        Ok((value, next))
    }

    fn release(value: &Value) -> Option<Release> {
        Some(Release {
            tag: value["tag_name"].as_str()?.to_owned(),
            draft: value["draft"].as_bool().unwrap_or(false),
            prerelease: value["prerelease"].as_bool().unwrap_or(false),
        })
    }

    /// Every release of `owner/repository`, following the `Link` pages.
    pub async fn releases(&self, owner: &str, repository: &str) -> Result<Vec<Release>, DiscoverError> {
        let mut url = format!("{}/repos/{owner}/{repository}/releases?per_page=100", self.api);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (page, next) = self.send(Method::GET, &url, None).await?;
            let list = page
                .as_array()
                .ok_or_else(|| DiscoverError::Request(format!("GET {url}: not a list of releases")))?;
            out.extend(list.iter().filter_map(Self::release));
            match next {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Err(DiscoverError::Request(format!(
            "{owner}/{repository} has more than {} releases",
            MAX_PAGES * 100
        )))
    }

    /// The latest release (GitHub's choice: not a draft, not a prerelease).
    pub async fn latest_release(&self, owner: &str, repository: &str) -> Result<Release, DiscoverError> {
        let url = format!("{}/repos/{owner}/{repository}/releases/latest", self.api);
        let (value, _) = self.send(Method::GET, &url, None).await?;
        Self::release(&value).ok_or_else(|| DiscoverError::Request(format!("GET {url}: no tag_name")))
    }

    /// A file's bytes at `reference` (a tag, branch or commit), or `None` if it is not there:
    /// the contents API as the manifest sources read it (`ferry_desired::source::HttpGitHub`).
    pub async fn file_at(
        &self,
        owner: &str,
        repository: &str,
        path: &str,
        reference: &str,
    ) -> Result<Option<Vec<u8>>, DiscoverError> {
        use ferry_desired::source::GitHubApi as _;
        let contents = ferry_desired::source::HttpGitHub::with_client(
            self.http.clone(),
            &self.api,
            &format!("{owner}/{repository}"),
            self.token.clone(),
        );
        contents.file(reference, path).await.map_err(|e| DiscoverError::Request(e.to_string()))
    }

    /// The commit a branch points at.
    pub async fn branch_sha(&self, repo: &str, branch: &str) -> Result<String, DiscoverError> {
        let url = format!("{}/repos/{repo}/git/ref/heads/{branch}", self.api);
        let (value, _) = self.send(Method::GET, &url, None).await?;
        value["object"]["sha"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DiscoverError::Request(format!("GET {url}: no object.sha")))
    }

    /// The pull requests (any state) from `head` (`owner:branch`) into `base`.
    pub async fn pulls_from(&self, repo: &str, head: &str, base: &str) -> Result<Vec<String>, DiscoverError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/repos/{repo}/pulls", self.api),
            &[("head", head), ("base", base), ("state", "all")],
        )
        .map_err(|e| DiscoverError::Request(e.to_string()))?;
        let (value, _) = self.send(Method::GET, url.as_str(), None).await?;
        Ok(value
            .as_array()
            .map(|list| list.iter().filter_map(|p| p["html_url"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    pub async fn create_branch(&self, repo: &str, branch: &str, sha: &str) -> Result<(), DiscoverError> {
        let url = format!("{}/repos/{repo}/git/refs", self.api);
        self.send(Method::POST, &url, Some(&json!({"ref": format!("refs/heads/{branch}"), "sha": sha})))
            .await?;
        Ok(())
    }

    /// Commits `content` as `path` on `branch` (the contents API: one commit per file).
    pub async fn put_file(
        &self,
        repo: &str,
        path: &str,
        branch: &str,
        message: &str,
        content: &[u8],
    ) -> Result<(), DiscoverError> {
        use base64::Engine as _;
        let url = format!("{}/repos/{repo}/contents/{path}", self.api);
        let current = reqwest::Url::parse_with_params(&url, &[("ref", branch)])
            .map_err(|e| DiscoverError::Request(e.to_string()))?;
        let sha = match self.send(Method::GET, current.as_str(), None).await {
            Ok((value, _)) => value["sha"].as_str().map(str::to_owned),
            Err(DiscoverError::GitHub { status: 404, .. }) => None,
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
        self.send(Method::PUT, &url, Some(&body)).await?;
        Ok(())
    }

    /// Opens a pull request; returns its number and URL.
    pub async fn open_pull(
        &self,
        repo: &str,
        title: &str,
        head: &str,
        base: &str,
        body: &str,
    ) -> Result<(u64, String), DiscoverError> {
        let url = format!("{}/repos/{repo}/pulls", self.api);
        let (value, _) = self
            .send(
                Method::POST,
                &url,
                Some(&json!({"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": true})),
            )
            .await?;
        let number = value["number"]
            .as_u64()
            .ok_or_else(|| DiscoverError::Request(format!("POST {url}: no number")))?;
        Ok((number, value["html_url"].as_str().unwrap_or_default().to_owned()))
    }

    /// Asks `reviewers` (users, or `org/team`) to review pull request `number`.
    pub async fn request_reviewers(
        &self,
        repo: &str,
        number: u64,
        reviewers: &[String],
    ) -> Result<(), DiscoverError> {
        let (teams, users): (Vec<&String>, Vec<&String>) = reviewers.iter().partition(|r| r.contains('/'));
        let teams: Vec<&str> = teams.iter().filter_map(|t| t.split('/').nth(1)).collect();
        let url = format!("{}/repos/{repo}/pulls/{number}/requested_reviewers", self.api);
        self.send(Method::POST, &url, Some(&json!({"reviewers": users, "team_reviewers": teams}))).await?;
        Ok(())
    }
}
