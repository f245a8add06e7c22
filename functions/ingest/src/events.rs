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

/// Says once per process and kind, at WARN, that a kind of event is ignored and how to stop it
/// being sent; later ones at debug level.
pub fn ignored(kind: &str, how_to_stop: &str) {
    static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.iter().any(|k| k == kind) {
        tracing::debug!(kind = %Shown(kind), "ignored");
        return;
    }
    warned.push(kind.to_owned());
    tracing::warn!(kind = %Shown(kind), "{} events are ignored; {how_to_stop} (said once)", Shown(kind));
}

/// `host/path@sha256:…` or `host/path:tag` into its host, path and the rest.
fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let (host, rest) = reference.split_once('/')?;
    Some((host, rest))
}

/// The registry `host` names, when ingest is configured for it; else a WARN and `None`.
fn configured(host: &str, registries: &[Host], route: &str) -> Result<Option<Host>, Rejection> {
    let host = Host::parse(host).map_err(|e| malformed(format!("{route}: {e}")))?;
    if registries.contains(&host) {
        return Ok(Some(host));
    }
    tracing::warn!(
        %host,
        route,
        "a push from a registry that is not in pipeline.registries; ignored (add the host there to promote from it)"
    );
    Ok(None)
}

/// A Pub/Sub push delivery of Artifact Registry's `gcr` topic (its token already checked):
/// `{"message": {"data": base64({"action", "digest", "tag"}), "messageId"}, "subscription"}`.
/// `INSERT` with a digest reference is a push; `tag` is absent for an untagged push.
pub fn gcr(body: &[u8], registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Envelope {
        message: Message,
    }
    // Pub/Sub sends both spellings of the id.
    #[derive(Deserialize)]
    struct Message {
        #[serde(default)]
        data: Option<String>,
        #[serde(default, rename = "messageId")]
        message_id: Option<String>,
        #[serde(default, rename = "message_id")]
        message_id_snake: Option<String>,
    }
    #[derive(Deserialize)]
    struct Notification {
        action: String,
        #[serde(default)]
        digest: Option<String>,
        #[serde(default)]
        tag: Option<String>,
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not a Pub/Sub push: {e}")))?;
    let message = envelope.message;
    let id = message
        .message_id
        .or(message.message_id_snake)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| malformed("message.messageId is missing"))?;
    let data = message.data.ok_or_else(|| malformed("message.data is missing"))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| malformed("message.data is not base64"))?;
    let notification: Notification = serde_json::from_slice(&data)
        .map_err(|e| malformed(format!("message.data is not an Artifact Registry notification: {e}")))?;
    if notification.action != "INSERT" {
        ignored(
            &format!("Artifact Registry {}", notification.action),
            "the gcr topic carries them beside pushes; nothing needs changing",
        );
        return Ok(Vec::new());
    }
    let digest_ref = notification.digest.ok_or_else(|| malformed("an INSERT without digest"))?;
    let (name, digest) =
        digest_ref.split_once('@').ok_or_else(|| malformed("digest is not host/path@sha256:…"))?;
    let (host, path) = split_reference(name).ok_or_else(|| malformed("digest has no registry host"))?;
    let Some(host) = configured(host, registries, "gcr")? else { return Ok(Vec::new()) };
    let path = RepoPath::parse(path).map_err(|e| malformed(format!("digest: {e}")))?;
    let digest = Digest::parse(digest).map_err(|e| malformed(format!("digest: {e}")))?;
    let tag = match notification.tag.filter(|t| !t.is_empty()) {
        None => None,
        Some(tag_ref) => {
            let (tag_name, tag) = tag_ref
                .rsplit_once(':')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| malformed("tag is not host/path:tag"))?;
            if tag_name != name {
                return Err(malformed("tag and digest name different images"));
            }
            Some(Tag::parse(tag).map_err(|e| malformed(format!("tag: {e}")))?)
        }
    };
    Ok(vec![Accepted {
        event_id: format!("gcr-{id}"),
        message: PlanMessage::RegistryPush {
            registry: host.clone(),
            repository: Repository::new(host, path),
            digest,
            tag,
        }
        .into(),
    }])
}

/// Who may announce GHCR pushes, and which registry they mean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhcrRoute<'a> {
    /// Owners (`acme`) and repositories (`acme/app`), lowercase.
    pub owners: &'a [String],
    pub registry: &'a Host,
}

/// GitHub `registry_package` and `package` webhooks: a container version `published` or
/// `updated`, from an owner or repository in `route.owners`.
pub fn ghcr(
    delivery: &GitHubDelivery<'_>,
    body: &[u8],
    route: &GhcrRoute<'_>,
    registries: &[Host],
) -> Result<Vec<Accepted>, Rejection> {
    #[derive(Deserialize)]
    struct Event {
        action: String,
        #[serde(default)]
        registry_package: Option<Package>,
        #[serde(default)]
        package: Option<Package>,
        #[serde(default)]
        repository: Option<Named>,
        #[serde(default)]
        organization: Option<Login>,
    }
    #[derive(Deserialize)]
    struct Named {
        full_name: String,
    }
    #[derive(Deserialize)]
    struct Login {
        login: String,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        #[serde(default)]
        package_type: Option<String>,
        #[serde(default)]
        ecosystem: Option<String>,
        #[serde(default)]
        owner: Option<Login>,
        package_version: Option<Version>,
    }
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        container_metadata: Option<ContainerMetadata>,
        #[serde(default)]
        package_url: Option<String>,
    }
    #[derive(Deserialize)]
    struct ContainerMetadata {
        #[serde(default)]
        tag: Option<TagInfo>,
    }
    #[derive(Deserialize)]
    struct TagInfo {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        digest: Option<String>,
    }
    let event: Event = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("not a {} event: {e}", delivery.event)))?;
    let package = event
        .registry_package
        .or(event.package)
        .ok_or_else(|| malformed("no registry_package or package"))?;
    let container = [&package.package_type, &package.ecosystem].iter().any(|k| {
        k.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("container") || k.eq_ignore_ascii_case("docker"))
    });
    if !container {
        ignored(
            &format!("GitHub {} packages", package.package_type.as_deref().unwrap_or("non-container")),
            "subscribe the webhook to container packages only, or leave it: they cost nothing",
        );
        return Ok(Vec::new());
    }
    if !matches!(event.action.as_str(), "published" | "updated") {
        ignored(
            &format!("GitHub package {}", event.action),
            "only published and updated versions are promoted",
        );
        return Ok(Vec::new());
    }
    let owner = package
        .owner
        .map(|o| o.login)
        .or(event.organization.map(|o| o.login))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let repository = event.repository.map(|r| r.full_name.to_ascii_lowercase());
    let heard = route.owners.iter().any(|o| *o == owner || repository.as_deref() == Some(o.as_str()));
    if !heard {
        tracing::warn!(
            owner = %Shown(&owner),
            repository = %Shown(repository.as_deref().unwrap_or("")),
            "a package event from an owner that is not in pipeline.ghcr.owners; ignored (add it there to promote its pushes)"
        );
        return Ok(Vec::new());
    }
    let version = package.package_version.ok_or_else(|| malformed("package_version is missing"))?;
    // The image: `package_url` (`ghcr.io/owner/name:tag`), else owner/name.
    let path = match version.package_url.as_deref().and_then(|u| u.split_once('/')) {
        Some((_, rest)) => {
            let last = rest.rfind('/').unwrap_or(0);
            match rest[last..].find(':') {
                Some(colon) => rest[..last + colon].to_owned(),
                None => rest.to_owned(),
            }
        }
        None => format!("{owner}/{}", package.name),
    };
    let path = RepoPath::parse(&path.to_ascii_lowercase()).map_err(|e| malformed(format!("package: {e}")))?;
    let tag_info = version.container_metadata.and_then(|m| m.tag);
    let digest = [
        version.version.as_deref(),
        version.name.as_deref(),
        tag_info.as_ref().and_then(|t| t.digest.as_deref()),
    ]
    .into_iter()
    .flatten()
    .find_map(|d| Digest::parse(d).ok())
    .ok_or_else(|| malformed("package_version names no sha256 digest"))?;
    let tag = tag_info
        .and_then(|t| t.name)
        .filter(|t| !t.is_empty())
        .map(|t| Tag::parse(&t))
        .transpose()
        .map_err(|e| malformed(format!("container_metadata.tag.name: {e}")))?;
    let Some(host) = configured(route.registry.as_str(), registries, "ghcr")? else { return Ok(Vec::new()) };
    Ok(vec![Accepted {
        event_id: delivery.delivery_id.to_owned(),
        message: PlanMessage::RegistryPush {
            registry: host.clone(),
            repository: Repository::new(host, path),
            digest,
            tag,
        }
        .into(),
    }])
}

/// A Docker Hub webhook: `push_data.tag` of `repository.repo_name`, no digest (the planner
/// resolves the tag). `callback_url` is never called. Docker Hub sends no id: the event id is
/// the repository, tag and `pushed_at`.
pub fn dockerhub(body: &[u8], registry: &Host, registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    #[derive(Deserialize)]
    struct Payload {
        push_data: PushData,
        repository: Repo,
    }
    #[derive(Deserialize)]
    struct PushData {
        #[serde(default)]
        pushed_at: Option<serde_json::Value>,
        #[serde(default)]
        tag: Option<String>,
    }
    #[derive(Deserialize)]
    struct Repo {
        repo_name: String,
    }
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not a Docker Hub webhook: {e}")))?;
    let tag = payload
        .push_data
        .tag
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("push_data.tag is missing"))?;
    let tag = Tag::parse(&tag).map_err(|e| malformed(format!("push_data.tag: {e}")))?;
    // Official images are `library/<name>` on the registry.
    let name = if payload.repository.repo_name.contains('/') {
        payload.repository.repo_name.clone()
    } else {
        format!("library/{}", payload.repository.repo_name)
    };
    let path = RepoPath::parse(&name).map_err(|e| malformed(format!("repository.repo_name: {e}")))?;
    let Some(host) = configured(registry.as_str(), registries, "dockerhub")? else { return Ok(Vec::new()) };
    let pushed_at = payload.push_data.pushed_at.map(|v| v.to_string()).unwrap_or_default();
    Ok(vec![Accepted {
        event_id: format!("dockerhub-{path}:{}-{pushed_at}", tag.as_str()),
        message: Incoming::Plan(PlanMessage::TagPush {
            registry: host.clone(),
            repository: Repository::new(host, path),
            tag,
        }),
    }])
}

/// An ACR webhook: `action: push` with `target.repository`, `target.tag`, `target.digest`,
/// and the registry in `request.host`. Other actions (delete, chart_push, quarantine) are
/// ignored.
pub fn acr(body: &[u8], registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    #[derive(Deserialize)]
    struct Payload {
        id: String,
        action: String,
        #[serde(default)]
        target: Option<Target>,
        #[serde(default)]
        request: Option<Request>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        digest: Option<String>,
        repository: String,
        #[serde(default)]
        tag: Option<String>,
    }
    #[derive(Deserialize)]
    struct Request {
        host: String,
    }
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not an ACR webhook: {e}")))?;
    if payload.action != "push" {
        ignored(&format!("ACR {}", payload.action), "set the webhook's actions to push only");
        return Ok(Vec::new());
    }
    let target = payload.target.ok_or_else(|| malformed("target is missing"))?;
    if target.media_type.as_deref().is_some_and(|t| !MANIFEST_TYPES.contains(&t)) {
        ignored("ACR artifact pushes that are not images", "they travel with their image");
        return Ok(Vec::new());
    }
    let request = payload.request.ok_or_else(|| malformed("request.host is missing"))?;
    let Some(host) = configured(&request.host, registries, "acr")? else { return Ok(Vec::new()) };
    let path =
        RepoPath::parse(&target.repository).map_err(|e| malformed(format!("target.repository: {e}")))?;
    let digest = Digest::parse(target.digest.as_deref().unwrap_or_default())
        .map_err(|e| malformed(format!("target.digest: {e}")))?;
    let tag = target
        .tag
        .filter(|t| !t.is_empty())
        .map(|t| Tag::parse(&t))
        .transpose()
        .map_err(|e| malformed(format!("target.tag: {e}")))?;
    Ok(vec![Accepted {
        event_id: format!("acr-{}", payload.id),
        message: PlanMessage::RegistryPush {
            registry: host.clone(),
            repository: Repository::new(host, path),
            digest,
            tag,
        }
        .into(),
    }])
}

/// A Quay repository-push notification: `docker_url` names the image, `updated_tags` the
/// tags, one event each, without digests (the planner resolves them). `registry` (configured
/// for a self-hosted Quay reached under another name) replaces `docker_url`'s host.
pub fn quay(body: &[u8], registry: Option<&Host>, registries: &[Host]) -> Result<Vec<Accepted>, Rejection> {
    use sha2::Digest as _;
    #[derive(Deserialize)]
    struct Payload {
        docker_url: String,
        /// A list of tags; Quay before 2014 sent an object of tag → image id.
        #[serde(default)]
        updated_tags: Option<serde_json::Value>,
    }
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not a Quay notification: {e}")))?;
    let tags: Vec<String> = match payload.updated_tags {
        None => {
            ignored(
                "Quay notifications other than repository pushes",
                "create the notification for \"Push to Repository\" only",
            );
            return Ok(Vec::new());
        }
        Some(serde_json::Value::Array(list)) => list
            .into_iter()
            .map(|t| {
                t.as_str().map(str::to_owned).ok_or_else(|| malformed("updated_tags holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        Some(serde_json::Value::Object(map)) => map.into_iter().map(|(tag, _)| tag).collect(),
        Some(_) => return Err(malformed("updated_tags is neither a list nor an object")),
    };
    let (host, path) =
        split_reference(&payload.docker_url).ok_or_else(|| malformed("docker_url has no registry host"))?;
    let host = match registry {
        Some(registry) => registry.as_str().to_owned(),
        None => host.to_owned(),
    };
    let Some(host) = configured(&host, registries, "quay")? else { return Ok(Vec::new()) };
    let path = RepoPath::parse(path).map_err(|e| malformed(format!("docker_url: {e}")))?;
    // Quay sends no id: one delivery is its body.
    let delivery = hex::encode(&sha2::Sha256::digest(body)[..8]);
    let mut accepted = Vec::new();
    for tag in &tags {
        let tag = Tag::parse(tag).map_err(|e| malformed(format!("updated_tags: {e}")))?;
        accepted.push(Accepted {
            event_id: format!("quay-{path}:{}-{delivery}", tag.as_str()),
            message: Incoming::Plan(PlanMessage::TagPush {
                registry: host.clone(),
                repository: Repository::new(host.clone(), path.clone()),
                tag,
            }),
        });
    }
    Ok(accepted)
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
