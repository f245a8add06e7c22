//! The result as a GitHub check run on the head commit, through the Checks API
//! (`POST /repos/{owner}/{repo}/check-runs`, then `PATCH …/check-runs/{id}` for the
//! annotations beyond the first 50, which is all one request may carry).

use serde_json::{Value, json};

use crate::render::{self, Links};
use crate::report::{Report, Status};

/// GitHub's limits on one check run's output.
const MAX_ANNOTATIONS_PER_REQUEST: usize = 50;
const MAX_OUTPUT_TEXT: usize = 65_535;

pub use ferry_github::{GitHub, GitHubError};

/// What the check run is about.
#[derive(Clone, Debug)]
pub struct CheckRun {
    /// The check run's name on the pull request (`ferry check`).
    pub name: String,
    /// The commit it is attached to: the pull request's head.
    pub head_sha: String,
    /// A link to more detail (a CI job's log), if any.
    pub details_url: Option<String>,
    /// What this run is of (the pipeline names the base and head), so that a redelivered
    /// event finds the run it already posted.
    pub external_id: Option<String>,
}

/// One request of a check run: the create, then updates carrying more annotations.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Create(Value),
    Update(Value),
}

/// Cuts `text` to GitHub's limit, on a character boundary, saying so.
fn limited(text: String) -> String {
    if text.len() <= MAX_OUTPUT_TEXT {
        return text;
    }
    const NOTE: &str = "\n\n… (cut at GitHub's limit; `ferry check --output json` has everything)\n";
    let mut end = MAX_OUTPUT_TEXT - NOTE.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{NOTE}", &text[..end])
}

/// Every annotation: a failed or warned check at its digest's `file:line`, and every problem
/// at its own. Places with no file in the repository are left out (they are in the text).
pub fn annotations(report: &Report) -> Vec<Value> {
    let level = |status: Status| if status == Status::Fail { "failure" } else { "warning" };
    let mut out = Vec::new();
    let mut push = |origin: &ferry_model::Origin, status: Status, title: String, message: &str| {
        let (path, line) = render::repository_path(origin);
        if path.is_empty() || path.starts_with('/') {
            return;
        }
        // An annotation belongs to the head's file; a line only the base has is named in the
        // message, and the annotation goes to the file's first line.
        let message = ferry_model::escaped(message);
        let (line, message) = if render::in_base(origin) {
            (1, format!("at the base, line {line}: {message}"))
        } else {
            (line.max(1), message.into_owned())
        };
        out.push(json!({
            "path": path,
            "start_line": line,
            "end_line": line,
            "annotation_level": level(status),
            "title": title,
            "message": message,
        }));
    };
    for digest in &report.digests {
        for check in digest.checks.iter().filter(|c| matches!(c.status, Status::Fail | Status::Warn)) {
            push(&digest.origin, check.status, format!("{}: {}", check.name, digest.image()), &check.reason);
        }
    }
    for problem in report.problems.iter().filter(|p| matches!(p.status, Status::Fail | Status::Warn)) {
        push(&problem.origin, problem.status, problem.check.to_string(), &problem.message);
    }
    out
}

/// The requests that post `report` as a completed check run. Pure.
pub fn requests(report: &Report, run: &CheckRun, links: &Links) -> Vec<Request> {
    let title = report.title();
    let summary = limited(render::summary(report));
    let text = limited(render::details(report, links));
    let annotations = annotations(report);
    let mut chunks = annotations.chunks(MAX_ANNOTATIONS_PER_REQUEST);
    let first: Vec<Value> = chunks.next().map(<[Value]>::to_vec).unwrap_or_default();
    let mut create = json!({
        "name": run.name,
        "head_sha": run.head_sha,
        "status": "completed",
        "conclusion": report.conclusion().as_str(),
        "output": {
            "title": title,
            "summary": summary,
            "text": text,
            "annotations": first,
        },
    });
    if let Some(url) = &run.details_url {
        create["details_url"] = json!(url);
    }
    if let Some(id) = &run.external_id {
        create["external_id"] = json!(id);
    }
    let mut out = vec![Request::Create(create)];
    for chunk in chunks {
        out.push(Request::Update(json!({
            "output": { "title": title, "summary": summary, "annotations": chunk },
        })));
    }
    out
}

/// The Checks API of one repository, through Ferry's one GitHub client.
#[derive(Clone, Debug)]
pub struct Checks {
    github: GitHub,
    /// `owner/name`.
    repository: String,
}

impl Checks {
    pub fn new(api: &str, repository: &str, token: ferry_registry::Secret) -> Result<Self, GitHubError> {
        if repository.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(GitHubError::Request(format!("repository {repository:?} is not owner/name")));
        }
        Ok(Self { github: GitHub::new(api, Some(token))?, repository: repository.to_owned() })
    }

    /// The URL of a check run named `name` on `head_sha` with this `external_id`, if one was
    /// posted already (`GET /repos/{owner}/{repo}/commits/{ref}/check-runs`).
    pub async fn posted(
        &self,
        head_sha: &str,
        name: &str,
        external_id: &str,
    ) -> Result<Option<String>, GitHubError> {
        let runs = self.github.check_runs(&self.repository, head_sha, name).await?;
        Ok(runs
            .iter()
            .find(|r| r["external_id"].as_str() == Some(external_id))
            .map(|r| r["html_url"].as_str().unwrap_or_default().to_owned()))
    }

    /// Posts `report` as a completed check run; returns its URL on GitHub.
    pub async fn post(&self, report: &Report, run: &CheckRun, links: &Links) -> Result<String, GitHubError> {
        let mut id = None;
        let mut url = String::new();
        for request in requests(report, run, links) {
            match request {
                Request::Create(body) => {
                    let created = self.github.create_check_run(&self.repository, &body).await?;
                    id = created["id"].as_u64();
                    url = created["html_url"].as_str().unwrap_or_default().to_owned();
                    if id.is_none() {
                        return Err(GitHubError::Request("the created check run has no id".into()));
                    }
                }
                Request::Update(body) => {
                    let Some(id) = id else { continue };
                    self.github.update_check_run(&self.repository, id, &body).await?;
                }
            }
        }
        Ok(url)
    }
}
