//! The payloads ingest accepts, parsed strictly, and what each means for Ferry. Pure: no I/O.

use ferry_messages::{CheckMessage, PlanMessage};
use ferry_model::{Digest, Host, RepoPath, Repository, Shown, Tag};
use serde::Deserialize;

pub use ferry_messages::{EcrDetail, EcrEvent};

/// What one delivery asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The id to deduplicate on (a distribution event id, a GitHub delivery id, ...).
    pub event_id: String,
    pub message: Incoming,
}

/// A message ingest enqueues: most go to the planner; pull requests to check, to the checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Plan(PlanMessage),
    Check(CheckMessage),
}

impl From<PlanMessage> for Incoming {
    fn from(message: PlanMessage) -> Self {
        Incoming::Plan(message)
    }
}

/// Why a payload was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a valid payload: HTTP 400, with the reason.
    Malformed(String),
}

fn malformed(reason: impl Into<String>) -> Rejection {
    Rejection::Malformed(reason.into())
}

const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// CNCF distribution notifications (`{"events": [...]}`). Only manifest pushes from a
/// configured registry are kept; blob events, pulls, deletes and other hosts are ignored. The
/// registry host is taken from the event's URL and must be one Ferry is configured for: URLs in
/// payloads are never fetched.
pub fn distribution(body: &[u8], registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    #[derive(Deserialize)]
    struct Notification {
        events: Vec<Event>,
    }
    #[derive(Deserialize)]
    struct Event {
        id: String,
        action: String,
        target: Target,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        digest: Option<String>,
        #[serde(default)]
        repository: Option<String>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        tag: Option<String>,
    }
    let notification: Notification = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a distribution notification: {e}")))?;
    let mut accepted = Vec::new();
    for event in notification.events {
        if event.action != "push" {
            // Pulls (Ferry's own among them) are noise the registry should not send: say so
            // once per process as a warning with the fix, then per event at debug level.
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    event = %Shown(&event.id),
                    action = %Shown(&event.action),
                    "the registry sends {} events, which Ferry ignores; add `ignore: {{mediatypes: [application/octet-stream], actions: [pull]}}` to its notification endpoint (said once)",
                    Shown(&event.action)
                );
            }
            tracing::debug!(event = %Shown(&event.id), action = %Shown(&event.action), "not a push; ignored");
            continue;
        }
        if !MANIFEST_TYPES.contains(&event.target.media_type.as_str()) {
            tracing::debug!(event = %Shown(&event.id), media_type = %Shown(&event.target.media_type), "a blob or artifact push; ignored");
            continue;
        }
        let where_ = |field: &str| format!("event {}: {field}", event.id);
        let url = event.target.url.ok_or_else(|| malformed(where_("target.url is missing")))?;
        let authority = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| malformed(where_("target.url is not an http(s) URL")))?;
        let host = Host::parse(authority).map_err(|e| malformed(where_(&format!("target.url: {e}"))))?;
        if !registries.contains(&host) {
            tracing::warn!(
                %host,
                event = %Shown(&event.id),
                "a push from a registry that is not in pipeline.registries; ignored (add the host there to promote from it)"
            );
            continue;
        }
        let path = RepoPath::parse(event.target.repository.as_deref().unwrap_or_default())
            .map_err(|e| malformed(where_(&format!("target.repository: {e}"))))?;
        let digest = Digest::parse(event.target.digest.as_deref().unwrap_or_default())
            .map_err(|e| malformed(where_(&format!("target.digest: {e}"))))?;
        let tag = event
            .target
            .tag
            .as_deref()
            .map(Tag::parse)
            .transpose()
            .map_err(|e| malformed(where_(&format!("target.tag: {e}"))))?;
        accepted.push(Accepted {
            event_id: event.id.clone(),
            message: Incoming::Plan(PlanMessage::RegistryPush {
                registry: host.clone(),
                repository: Repository::new(host, path),
                digest,
                tag,
            }),
        });
    }
    Ok(accepted)
}

/// Harbor webhooks: `PUSH_ARTIFACT` events are kept.
pub fn harbor(body: &[u8], registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    #[derive(Deserialize)]
    struct Payload {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        occur_at: i64,
        event_data: Option<EventData>,
    }
    #[derive(Deserialize)]
    struct EventData {
        #[serde(default)]
        resources: Vec<Resource>,
    }
    #[derive(Deserialize)]
    struct Resource {
        digest: String,
        #[serde(default)]
        tag: Option<String>,
        resource_url: String,
    }
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not a Harbor webhook: {e}")))?;
    if payload.kind != "PUSH_ARTIFACT" {
        return Ok(Vec::new());
    }
    let data = payload.event_data.ok_or_else(|| malformed("event_data is missing"))?;
    let mut accepted = Vec::new();
    for resource in data.resources {
        // resource_url: "harbor.example/library/app:v1" or ".../app@sha256:..."
        let without_digest = resource.resource_url.split('@').next().unwrap_or_default();
        let (host, rest) =
            without_digest.split_once('/').ok_or_else(|| malformed("resource_url has no repository"))?;
        let host = Host::parse(host).map_err(|e| malformed(format!("resource_url: {e}")))?;
        if !registries.contains(&host) {
            continue;
        }
        let last_slash = rest.rfind('/').unwrap_or(0);
        let path = match rest[last_slash..].find(':') {
            Some(colon) => &rest[..last_slash + colon],
            None => rest,
        };
        let path = RepoPath::parse(path).map_err(|e| malformed(format!("resource_url: {e}")))?;
        let digest = Digest::parse(&resource.digest).map_err(|e| malformed(format!("digest: {e}")))?;
        let tag = resource
            .tag
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(Tag::parse)
            .transpose()
            .map_err(|e| malformed(format!("tag: {e}")))?;
        accepted.push(Accepted {
            event_id: format!("harbor-{}-{digest}", payload.occur_at),
            message: Incoming::Plan(PlanMessage::RegistryPush {
                registry: host.clone(),
                repository: Repository::new(host, path),
                digest,
                tag,
            }),
        });
    }
    Ok(accepted)
}

pub fn ecr(event: &EcrEvent, registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    if event.source != "aws.ecr" || event.detail_type != "ECR Image Action" {
        return Err(malformed(format!("not an ECR image action: {} / {}", event.source, event.detail_type)));
    }
    if event.detail.action_type != "PUSH" || event.detail.result.as_deref().is_some_and(|r| r != "SUCCESS") {
        return Ok(Vec::new());
    }
    let host = Host::parse(&format!("{}.dkr.ecr.{}.amazonaws.com", event.account, event.region))
        .map_err(|e| malformed(format!("account/region: {e}")))?;
    if !registries.contains(&host) {
        return Ok(Vec::new());
    }
    let path = RepoPath::parse(&event.detail.repository_name)
        .map_err(|e| malformed(format!("repository-name: {e}")))?;
    let digest =
        Digest::parse(&event.detail.image_digest).map_err(|e| malformed(format!("image-digest: {e}")))?;
    let tag = event
        .detail
        .image_tag
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(Tag::parse)
        .transpose()
        .map_err(|e| malformed(format!("image-tag: {e}")))?;
    Ok(vec![Accepted {
        event_id: event.id.clone(),
        message: PlanMessage::RegistryPush {
            registry: host.clone(),
            repository: Repository::new(host, path),
            digest,
            tag,
        }
        .into(),
    }])
}

/// What GitHub delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitHubDelivery<'a> {
    pub event: &'a str,
    pub delivery_id: &'a str,
}

/// GitHub `pull_request` and `push` events on the configured repository.
/// - A pull request opened, updated (`synchronize`) or reopened is to be checked: a
///   [`CheckMessage`] for the checker, which posts a check run on its head commit. Its files
///   are not in the payload, so every one is checked; the checker's diff finds what changed.
/// - A merged pull request is to be promoted: a manifest change from its base to its merge
///   commit, for the planner.
/// - A push is kept only if a commit touched one of `manifest_paths`.
pub fn github(
    delivery: &GitHubDelivery<'_>,
    body: &[u8],
    repository: Option<&str>,
    manifest_paths: &[String],
) -> Result<Vec<Accepted>, Rejection> {
    #[derive(Deserialize)]
    struct Repo {
        full_name: String,
        #[serde(default)]
        default_branch: Option<String>,
    }
    #[derive(Deserialize)]
    struct PullRequestEvent {
        action: String,
        #[serde(default)]
        number: u64,
        pull_request: PullRequest,
        repository: Repo,
    }
    #[derive(Deserialize)]
    struct PullRequest {
        #[serde(default)]
        merged: bool,
        #[serde(default)]
        merge_commit_sha: Option<String>,
        base: Ref,
        #[serde(default)]
        head: Option<Ref>,
    }
    #[derive(Deserialize)]
    struct Ref {
        sha: String,
    }
    #[derive(Deserialize)]
    struct PushEvent {
        #[serde(rename = "ref")]
        git_ref: String,
        before: String,
        after: String,
        #[serde(default)]
        commits: Vec<Commit>,
        repository: Repo,
    }
    #[derive(Deserialize)]
    struct Commit {
        #[serde(default)]
        added: Vec<String>,
        #[serde(default)]
        modified: Vec<String>,
        #[serde(default)]
        removed: Vec<String>,
    }
    let repository_ok = |name: &str| repository.is_none_or(|r| r == name);
    let sha = |s: &str| s.len() >= 7 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match delivery.event {
        "pull_request" => {
            let event: PullRequestEvent = serde_json::from_slice(body)
                .map_err(|e| malformed(format!("not a pull_request event: {e}")))?;
            if matches!(event.action.as_str(), "opened" | "synchronize" | "reopened")
                && repository_ok(&event.repository.full_name)
            {
                let head = event
                    .pull_request
                    .head
                    .ok_or_else(|| malformed("an open pull request without head.sha"))?
                    .sha;
                let base = event.pull_request.base.sha;
                if !sha(&head) || !sha(&base) {
                    return Err(malformed("commit ids must be hexadecimal"));
                }
                return Ok(vec![Accepted {
                    event_id: delivery.delivery_id.to_owned(),
                    message: Incoming::Check(CheckMessage {
                        repository: event.repository.full_name,
                        pull_request: event.number,
                        base,
                        head,
                    }),
                }]);
            }
            if event.action != "closed"
                || !event.pull_request.merged
                || !repository_ok(&event.repository.full_name)
            {
                return Ok(Vec::new());
            }
            let head = event
                .pull_request
                .merge_commit_sha
                .ok_or_else(|| malformed("a merged pull request without merge_commit_sha"))?;
            let base = event.pull_request.base.sha;
            if !sha(&head) || !sha(&base) {
                return Err(malformed("commit ids must be hexadecimal"));
            }
            Ok(vec![Accepted {
                event_id: delivery.delivery_id.to_owned(),
                message: PlanMessage::ManifestChange { repository: event.repository.full_name, base, head }
                    .into(),
            }])
        }
        "push" => {
            let event: PushEvent =
                serde_json::from_slice(body).map_err(|e| malformed(format!("not a push event: {e}")))?;
            if !repository_ok(&event.repository.full_name) {
                return Ok(Vec::new());
            }
            let default_branch = event.repository.default_branch.as_deref().unwrap_or("main");
            if event.git_ref != format!("refs/heads/{default_branch}") {
                return Ok(Vec::new());
            }
            let touched =
                event.commits.iter().flat_map(|c| c.added.iter().chain(&c.modified).chain(&c.removed));
            let relevant = touched
                .into_iter()
                .any(|file| manifest_paths.iter().any(|p| file == p || file.starts_with(&format!("{p}/"))));
            if !relevant || !sha(&event.before) || !sha(&event.after) {
                return Ok(Vec::new());
            }
            Ok(vec![Accepted {
                event_id: delivery.delivery_id.to_owned(),
                message: PlanMessage::ManifestChange {
                    repository: event.repository.full_name,
                    base: event.before,
                    head: event.after,
                }
                .into(),
            }])
        }
        _ => Ok(Vec::new()),
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), compared in constant time.
pub fn github_signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    use hmac::Mac as _;
    let Some(hex_signature) = header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Ok(signature) = hex::decode(hex_signature) else { return false };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Constant-time comparison of a presented secret with the expected one. The caller decides the
/// form: `Authorization: Bearer <token>` for distribution and ECR (a raw token is refused), the
/// header value exactly as configured for Harbor, which sends its "Auth Header" verbatim.
pub fn token_ok(expected: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented else { return false };
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
