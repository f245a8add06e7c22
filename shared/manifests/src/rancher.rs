//! Rancher image-mirror's `config.yaml` (the format that replaced `images-list` in July 2025),
//! read as rancher/image-mirror's `tools/internal/config` reads it and compiles it into
//! `regsync.yaml`:
//!
//! ```yaml
//! Artifacts:
//! - SourceArtifact: amazon/aws-cli        # Docker-style, no tag
//!   Tags: [2.8.5, 2.9.0]
//!   TargetArtifactName: aws-cli           # default: mirrored-<second-to-last>-<last>
//!   DoNotMirror: [2.8.5]                  # true: skip the artifact; a list: skip those tags
//!   TargetRepositories: [docker.io/rancher]  # default: every DefaultTarget repository
//! Repositories:
//! - BaseUrl: docker.io/rancher            # the destination prefix
//!   DefaultTarget: true
//!   Registry: docker.io                   # whom the credentials are for
//!   Username: '{{ env "DOCKER_USERNAME" }}'
//!   Password: '{{ env "DOCKER_PASSWORD" }}'
//! ```
//!
//! One edge per (artifact, target repository, tag not excluded): `SourceArtifact:tag` →
//! `BaseUrl/<target name>:tag`, the tag pinned to a digest at plan time. A pair whose source
//! and target are the same (after dropping a leading `docker.io/`) is skipped, as upstream does.
//! Upstream ignores unknown keys; Ferry reads past them with a warning (an error under
//! `--strict`). A bad artifact is left out with the reason and never stops the others.

use std::path::Path;
use std::sync::Arc;

use ferry_model::{DesiredState, Entry, Host, Origin, Repository, Tag, TagOrDigest};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::error::ManifestError;
use crate::input::Policy;
use crate::yaml::{self, Pairs, Problems, Spanned, line_of};

const TOP_KEYS: [&str; 2] = ["Artifacts", "Repositories"];
const ARTIFACT_KEYS: [&str; 5] =
    ["SourceArtifact", "Tags", "TargetArtifactName", "DoNotMirror", "TargetRepositories"];
const REPOSITORY_KEYS: [&str; 7] =
    ["BaseUrl", "DefaultTarget", "Registry", "Username", "Password", "RepoAuth", "ReqConcurrent"];

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigYaml {
    #[serde(default)]
    artifacts: Vec<Spanned<ArtifactYaml>>,
    #[serde(default)]
    repositories: Vec<Spanned<RepositoryYaml>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArtifactYaml {
    source_artifact: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    target_artifact_name: Option<Spanned<String>>,
    #[serde(default)]
    do_not_mirror: Option<Spanned<serde_json::Value>>,
    #[serde(default)]
    target_repositories: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RepositoryYaml {
    base_url: Option<Spanned<String>>,
    #[serde(default)]
    default_target: bool,
    #[serde(default)]
    registry: Option<Spanned<String>>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    req_concurrent: Option<u32>,
    #[serde(default)]
    repo_auth: Option<bool>,
}

/// Credentials a `Repositories` entry names for its registry, as written: a literal, or a
/// `{{ env "NAME" }}` template the caller resolves (the values are secrets; they are never
/// logged, and only `ferry-config` reads the environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryCredentials {
    pub registry: Host,
    pub username: Option<Value>,
    pub password: Option<Value>,
    /// `config.yaml:line`, for messages.
    pub origin: String,
    /// How the file names the user and password fields, for messages.
    pub fields: (&'static str, &'static str),
}

/// A credential field's value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Literal(String),
    /// `{{ env "NAME" }}`: the environment variable NAME.
    Env(String),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Literal(_) => f.write_str("Literal(***)"),
            Value::Env(name) => write!(f, "Env({name})"),
        }
    }
}

impl Value {
    /// `{{ env "NAME" }}` (spaces optional) names a variable; anything else is a literal.
    pub fn parse(text: &str) -> Value {
        let inner = text.trim().strip_prefix("{{").and_then(|t| t.strip_suffix("}}")).map(str::trim);
        if let Some(rest) = inner.and_then(|t| t.strip_prefix("env")).map(str::trim)
            && let Some(name) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"'))
            && !name.is_empty()
        {
            return Value::Env(name.to_owned());
        }
        Value::Literal(text.to_owned())
    }
}

/// One artifact of a `config.yaml` as written: what `ferry discover`'s in-place edit needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedArtifact {
    pub source: String,
    /// `TargetArtifactName`, else the name image-mirror derives from the source.
    pub target_name: String,
    /// Each tag with the line it is on.
    pub tags: Vec<(String, u64)>,
    pub line: u64,
}

/// Every artifact `config.yaml` lists, as written, with its tags' lines: the same reading of
/// the file as [`parse`] (this module is the one reader of `config.yaml`).
pub fn listed(path: &Path, text: &str) -> Result<Vec<ListedArtifact>, ManifestError> {
    let config: Option<ConfigYaml> = yaml::parse(path, text)?;
    Ok(config
        .unwrap_or_default()
        .artifacts
        .into_iter()
        .filter_map(|a| {
            let line = line_of(&a);
            let source = a.value.source_artifact?.value;
            let target_name = a
                .value
                .target_artifact_name
                .map(|t| t.value)
                .filter(|t| !t.is_empty())
                .or_else(|| default_target_name(&source))?;
            let tags = a.value.tags.iter().map(|t| (t.value.clone(), line_of(t))).collect();
            Some(ListedArtifact { source, target_name, tags, line })
        })
        .collect())
}

/// Reads a `config.yaml`. See [`parse`].
pub fn load(path: &Path, policy: &Policy) -> Result<DesiredState, ManifestError> {
    let text = yaml::read_file(path)?;
    Ok(parse(path, &text, policy)?.0)
}

/// The registry credentials a `config.yaml` names.
pub fn credentials(path: &Path) -> Result<Vec<RepositoryCredentials>, ManifestError> {
    let text = yaml::read_file(path)?;
    Ok(parse(path, &text, &Policy::default())?.1)
}

/// The default target name: `mirrored-<second-to-last>-<last>` of the source path, or
/// `appco-<last>` for `dp.apps.rancher.io/...`; `None` for a source with fewer than two parts.
pub fn default_target_name(source: &str) -> Option<String> {
    let parts: Vec<&str> = source.split('/').collect();
    if parts.len() < 2 {
        return None;
    }
    let last = parts[parts.len() - 1];
    if parts[0] == "dp.apps.rancher.io" {
        return Some(format!("appco-{last}"));
    }
    Some(format!("mirrored-{}-{last}", parts[parts.len() - 2]))
}

/// A scalar as go-yaml writes it: plain when that reads back as the same string, else in
/// single quotes (`'{{ env "X" }}'`).
fn go_yaml_string(text: &str) -> String {
    if yaml::plain_scalar(text) { text.to_owned() } else { format!("'{}'", text.replace('\'', "''")) }
}

/// The `regsync.yaml` image-mirror's `artifact-mirror-tools generate-regsync` writes for this
/// `config.yaml` text, byte for byte: the credentials of the repositories (deduplicated, by
/// registry), `defaults.userAgent`, and one `type: image` entry per artifact, target repository
/// and tag, in file order. What `parse` leaves out with a reason (a bad DoNotMirror) is an
/// error here, as it is for the generator.
pub fn to_regsync_yaml(path: &Path, text: &str) -> Result<String, ManifestError> {
    use std::fmt::Write as _;
    let config: Option<ConfigYaml> = yaml::parse(path, text)?;
    let config = config.unwrap_or_default();
    let mut problems = Problems::new(path);
    type Cred = (String, String, Option<bool>, Option<u32>, String);
    let mut creds: Vec<Cred> = Vec::new();
    for repository in &config.repositories {
        let r = &repository.value;
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.value.clone()).unwrap_or_default();
        let cred = (
            text(&r.password),
            text(&r.registry),
            r.repo_auth.filter(|b| *b),
            r.req_concurrent.filter(|n| *n > 0),
            text(&r.username),
        );
        if !creds.contains(&cred) {
            creds.push(cred);
        }
    }
    creds.sort_by(|a, b| a.1.cmp(&b.1));
    let mut out = String::from(
        "##################################################\n# THIS FILE IS AUTO-GENERATED. DO NOT MODIFY IT.\n##################################################\n",
    );
    out.push_str(if creds.is_empty() { "creds: []\n" } else { "creds:\n" });
    for (pass, registry, repo_auth, req_concurrent, user) in &creds {
        let mut fields: Vec<String> = Vec::new();
        if !pass.is_empty() {
            fields.push(format!("pass: {}", go_yaml_string(pass)));
        }
        if !registry.is_empty() {
            fields.push(format!("registry: {}", go_yaml_string(registry)));
        }
        if repo_auth.is_some() {
            fields.push("repoAuth: true".into());
        }
        if let Some(n) = req_concurrent {
            fields.push(format!("reqConcurrent: {n}"));
        }
        if !user.is_empty() {
            fields.push(format!("user: {}", go_yaml_string(user)));
        }
        for (i, field) in fields.iter().enumerate() {
            let _ = writeln!(out, "{}{field}", if i == 0 { "- " } else { "  " });
        }
    }
    out.push_str("defaults:\n  userAgent: rancher-artifact-mirror\n");
    let mut sync = String::new();
    for artifact in &config.artifacts {
        let a = &artifact.value;
        let line = line_of(artifact);
        let Some(source) = &a.source_artifact else {
            problems.invalid(line, "Artifacts.SourceArtifact", "an artifact needs a SourceArtifact");
            continue;
        };
        let Some(default_name) = default_target_name(&source.value) else {
            problems.invalid(line, "Artifacts.SourceArtifact", "fewer than two path parts");
            continue;
        };
        let name = a
            .target_artifact_name
            .as_ref()
            .map(|t| t.value.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or(default_name);
        let mut excluded: Vec<&str> = Vec::new();
        let mut all = false;
        match a.do_not_mirror.as_ref().map(|d| &d.value) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Bool(b)) => all = *b,
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(tag) if !excluded.contains(&tag) => excluded.push(tag),
                        _ => problems.invalid(
                            line,
                            "Artifacts.DoNotMirror",
                            format!("{item} is not a tag, or is listed twice"),
                        ),
                    }
                }
            }
            Some(other) => {
                problems.invalid(line, "Artifacts.DoNotMirror", format!("{other} is not a bool or a list"))
            }
        }
        let targets: Vec<&str> = a.target_repositories.iter().map(|t| t.value.as_str()).collect();
        for repository in &config.repositories {
            let Some(base_url) = &repository.value.base_url else { continue };
            let base_url = base_url.value.as_str();
            if (!repository.value.default_target && targets.is_empty())
                || (!targets.is_empty() && !targets.contains(&base_url))
            {
                continue;
            }
            let target = format!("{base_url}/{name}");
            if source.value.strip_prefix("docker.io/").unwrap_or(&source.value)
                == target.strip_prefix("docker.io/").unwrap_or(&target)
            {
                continue;
            }
            if all {
                continue;
            }
            for tag in a.tags.iter().map(|t| t.value.as_str()).filter(|t| !excluded.contains(t)) {
                let _ = writeln!(
                    sync,
                    "- source: {}\n  target: {}\n  type: image",
                    go_yaml_string(&format!("{}:{tag}", source.value)),
                    go_yaml_string(&format!("{target}:{tag}"))
                );
            }
        }
    }
    problems.finish()?;
    out.push_str(if sync.is_empty() { "sync: []\n" } else { "sync:\n" });
    out.push_str(&sync);
    Ok(out)
}

/// Parses `config.yaml` text; `path` names the file in messages and origins.
pub fn parse(
    path: &Path,
    text: &str,
    policy: &Policy,
) -> Result<(DesiredState, Vec<RepositoryCredentials>), ManifestError> {
    let config: Option<ConfigYaml> = yaml::parse(path, text)?;
    let config = config.unwrap_or_default();
    let mut problems = Problems::new(path);
    unknown_keys(path, text, &mut problems)?;
    let file: Arc<str> = path.display().to_string().into();

    // Repositories first: artifacts refer to them by BaseUrl.
    struct Target {
        base_url: String,
        default: bool,
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut credentials = Vec::new();
    for repository in &config.repositories {
        let line = line_of(repository);
        let Some(base_url) = &repository.value.base_url else {
            problems.invalid(line, "Repositories.BaseUrl", "a repository needs a BaseUrl; it is left out");
            continue;
        };
        targets.push(Target {
            base_url: base_url.value.trim_end_matches('/').to_owned(),
            default: repository.value.default_target,
        });
        if repository.value.req_concurrent.is_some() {
            problems.warn(
                line,
                "Repositories.ReqConcurrent",
                "ignored: Ferry does not cap requests in flight per registry; set registries.requests-per-second in the Ferry config to limit its rate",
            );
        }
        if repository.value.username.is_some() || repository.value.password.is_some() {
            let registry = repository
                .value
                .registry
                .as_ref()
                .map(|r| r.value.clone())
                .unwrap_or_else(|| base_url.value.split('/').next().unwrap_or_default().to_owned());
            match Host::parse(&registry) {
                Ok(registry) => credentials.push(RepositoryCredentials {
                    registry,
                    username: repository.value.username.as_ref().map(|u| Value::parse(&u.value)),
                    password: repository.value.password.as_ref().map(|p| Value::parse(&p.value)),
                    origin: format!("{}:{line}", path.display()),
                    fields: ("Repositories.Username", "Repositories.Password"),
                }),
                Err(e) => problems.invalid(line, "Repositories.Registry", e),
            }
        }
    }

    let mut seen: FxHashMap<(Repository, Repository, Tag), u64> = FxHashMap::default();
    let mut targets_seen: FxHashMap<(Repository, Tag), (Repository, u64)> = FxHashMap::default();
    let mut entries = Vec::new();
    for artifact in &config.artifacts {
        let line = line_of(artifact);
        let a = &artifact.value;
        let Some(source_text) = &a.source_artifact else {
            problems.invalid(
                line,
                "Artifacts.SourceArtifact",
                "an artifact needs a SourceArtifact; it is left out",
            );
            continue;
        };
        let line = line_of(source_text);
        let Some(default_name) = default_target_name(&source_text.value) else {
            problems.invalid(
                line,
                "Artifacts.SourceArtifact",
                format!("{:?} has fewer than two path parts; the artifact is left out", source_text.value),
            );
            continue;
        };
        let source = match Repository::parse_docker_style(&source_text.value) {
            Ok(source) => source,
            Err(e) => {
                problems.invalid(line, "Artifacts.SourceArtifact", e);
                continue;
            }
        };
        // DoNotMirror: true skips the artifact, a list of tags skips those tags.
        let mut excluded: Vec<String> = Vec::new();
        match a.do_not_mirror.as_ref().map(|d| (line_of(d), &d.value)) {
            None | Some((_, serde_json::Value::Null)) | Some((_, serde_json::Value::Bool(false))) => {}
            Some((_, serde_json::Value::Bool(true))) => continue,
            Some((at, serde_json::Value::Array(items))) => {
                let mut bad = None;
                for item in items {
                    match item.as_str() {
                        Some(tag) if excluded.iter().any(|e| e == tag) => {
                            bad = Some(format!("DoNotMirror lists {tag:?} twice"));
                        }
                        Some(tag) => excluded.push(tag.to_owned()),
                        None => bad = Some(format!("DoNotMirror lists {item}, which is not a tag")),
                    }
                }
                if let Some(reason) = bad {
                    problems.invalid(
                        at,
                        "Artifacts.DoNotMirror",
                        format!("{reason}; the artifact is left out"),
                    );
                    continue;
                }
            }
            Some((at, other)) => {
                problems.invalid(
                    at,
                    "Artifacts.DoNotMirror",
                    format!("must be true, false or a list of tags, not {other}; the artifact is left out"),
                );
                continue;
            }
        }
        let name = a.target_artifact_name.as_ref().map(|n| n.value.clone()).unwrap_or(default_name);
        // Where it goes: the named repositories, or every default target.
        let chosen: Vec<&Target> = if a.target_repositories.is_empty() {
            targets.iter().filter(|t| t.default).collect()
        } else {
            let mut chosen = Vec::new();
            for wanted in &a.target_repositories {
                match targets.iter().find(|t| t.base_url == wanted.value.trim_end_matches('/')) {
                    Some(t) => chosen.push(t),
                    None => problems.warn(
                        line_of(wanted),
                        "Artifacts.TargetRepositories",
                        format!("{:?} is no BaseUrl under Repositories; nothing goes there", wanted.value),
                    ),
                }
            }
            chosen
        };
        for target in chosen {
            let target_text = format!("{}/{name}", target.base_url);
            if source_text.value.trim_start_matches("docker.io/")
                == target_text.trim_start_matches("docker.io/")
            {
                continue;
            }
            let destination = match Repository::parse_docker_style(&target_text) {
                Ok(d) => d,
                Err(e) => {
                    problems.invalid(line, "Artifacts.TargetArtifactName", format!("{target_text}: {e}"));
                    continue;
                }
            };
            for tag_text in &a.tags {
                if excluded.contains(&tag_text.value) {
                    continue;
                }
                let tag = match Tag::parse(&tag_text.value) {
                    Ok(tag) => tag,
                    Err(e) => {
                        problems.invalid(line_of(tag_text), "Artifacts.Tags", e);
                        continue;
                    }
                };
                let at = line_of(tag_text);
                if let Some(first) = seen.insert((source.clone(), destination.clone(), tag.clone()), at) {
                    problems.warn(
                        at,
                        "Artifacts.Tags",
                        format!(
                            "{source}:{tag} -> {destination} is also asked for at line {first}; read once"
                        ),
                    );
                    continue;
                }
                // A target tag has one source: regsync would let the last writer win, Ferry
                // never overwrites, so the first in the file is kept and the other named.
                match targets_seen.get(&(destination.clone(), tag.clone())) {
                    Some((other, first)) if *other != source => {
                        problems.invalid(
                            at,
                            "Artifacts.Tags",
                            format!(
                                "{destination}:{tag} is also the target of {other}:{tag} at line {first}; a target tag has one source, so this one is left out"
                            ),
                        );
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        targets_seen.insert((destination.clone(), tag.clone()), (source.clone(), at));
                    }
                }
                entries.push(Entry {
                    sources: Arc::from([policy.source(source.clone(), false)]),
                    pin: TagOrDigest::Tag(tag.clone()),
                    tags: vec![tag],
                    destinations: Arc::from([policy.destination(destination.clone(), false)]),
                    origin: Origin { source: file.clone(), line: u32::try_from(at).unwrap_or(u32::MAX) },
                });
            }
        }
    }
    let notices = problems.finish_with_notices()?;
    Ok((DesiredState { entries, notices }, credentials))
}

/// Warns about each key upstream would ignore, with its line.
fn unknown_keys(path: &Path, text: &str, problems: &mut Problems<'_>) -> Result<(), ManifestError> {
    type Keys = Pairs<Spanned<String>, serde::de::IgnoredAny>;
    let top: Option<Keys> = yaml::parse(path, text)?;
    let Some(top) = top else { return Ok(()) };
    for (key, _) in &top.0 {
        if !TOP_KEYS.contains(&key.value.as_str()) {
            problems.warn(line_of(key), &key.value, "not a config.yaml key (upstream ignores it); ignored");
        }
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Lists {
        #[serde(default)]
        artifacts: Vec<Keys>,
        #[serde(default)]
        repositories: Vec<Keys>,
    }
    let lists: Option<Lists> = yaml::parse(path, text)?;
    let lists = lists.unwrap_or_default();
    for (items, known, what) in [
        (&lists.artifacts, &ARTIFACT_KEYS[..], "Artifacts"),
        (&lists.repositories, &REPOSITORY_KEYS[..], "Repositories"),
    ] {
        for item in items {
            for (key, _) in &item.0 {
                if !known.contains(&key.value.as_str()) {
                    problems.warn(
                        line_of(key),
                        &format!("{what}.{}", key.value),
                        "not a config.yaml key (upstream ignores it); ignored",
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use ferry_model::NoticeKind;

    fn run(text: &str) -> (Vec<String>, Vec<(NoticeKind, u32, String)>, Vec<RepositoryCredentials>) {
        let (desired, credentials) = parse(Path::new("config.yaml"), text, &Policy::default()).unwrap();
        let edges = desired
            .entries
            .iter()
            .map(|e| format!("{}:{} -> {}", e.sources[0].repository, e.pin, e.destinations[0].repository))
            .collect();
        let notices = desired.notices.iter().map(|n| (n.kind, n.origin.line, n.field.to_string())).collect();
        (edges, notices, credentials)
    }

    #[test]
    fn default_target_names() {
        let cases = [
            ("amazon/aws-cli", Some("mirrored-amazon-aws-cli")),
            ("library/busybox", Some("mirrored-library-busybox")),
            ("quay.io/jetstack/cert-manager-controller", Some("mirrored-jetstack-cert-manager-controller")),
            ("dp.apps.rancher.io/containers/openjdk", Some("appco-openjdk")),
            ("busybox", None),
        ];
        for (source, expected) in cases {
            assert_eq!(default_target_name(source).as_deref(), expected, "{source}");
        }
    }

    #[test]
    fn env_templates() {
        let cases = [
            (r#"{{ env "DOCKER_USERNAME" }}"#, Value::Env("DOCKER_USERNAME".into())),
            (r#"{{env "X"}}"#, Value::Env("X".into())),
            ("plain", Value::Literal("plain".into())),
            (r#"{{ env "" }}"#, Value::Literal(r#"{{ env "" }}"#.into())),
        ];
        for (text, expected) in cases {
            assert_eq!(Value::parse(text), expected, "{text}");
        }
        assert_eq!(format!("{:?}", Value::Literal("secret".into())), "Literal(***)", "never shown");
    }

    const REPOSITORIES: &str = "Repositories:
- BaseUrl: docker.io/rancher
  DefaultTarget: true
  Registry: docker.io
  Username: '{{ env \"DOCKER_USERNAME\" }}'
  Password: '{{ env \"DOCKER_PASSWORD\" }}'
- BaseUrl: registry.suse.com/rancher
  DefaultTarget: true
  Registry: registry.suse.com
- BaseUrl: stgregistry.suse.com/rancher
  DefaultTarget: false
";

    /// Each row: an `Artifacts` list, the edges it asks for, and the notices (kind, line
    /// counted from the top of the file, field).
    #[test]
    fn artifacts_table() {
        type Row = (&'static str, &'static str, Vec<&'static str>, Vec<(NoticeKind, u32, &'static str)>);
        let rows: Vec<Row> = vec![
            (
                "default targets, default name",
                "- SourceArtifact: amazon/aws-cli\n  Tags: [2.8.5]\n",
                vec![
                    "docker.io/amazon/aws-cli:2.8.5 -> docker.io/rancher/mirrored-amazon-aws-cli",
                    "docker.io/amazon/aws-cli:2.8.5 -> registry.suse.com/rancher/mirrored-amazon-aws-cli",
                ],
                vec![],
            ),
            (
                "named target repository (not a default one) and a target name",
                "- SourceArtifact: quay.io/a/b\n  TargetArtifactName: b\n  TargetRepositories: [stgregistry.suse.com/rancher]\n  Tags: [v1]\n",
                vec!["quay.io/a/b:v1 -> stgregistry.suse.com/rancher/b"],
                vec![],
            ),
            (
                "DoNotMirror: true",
                "- SourceArtifact: appscode/kubed\n  DoNotMirror: true\n  Tags: [v0.13.2]\n",
                vec![],
                vec![],
            ),
            (
                "DoNotMirror as a list of tags",
                "- SourceArtifact: a/b\n  TargetRepositories: [docker.io/rancher]\n  DoNotMirror: [v1]\n  Tags: [v1, v2]\n",
                vec!["docker.io/a/b:v2 -> docker.io/rancher/mirrored-a-b"],
                vec![],
            ),
            (
                "DoNotMirror of a wrong type: that artifact is left out, the next is read",
                "- SourceArtifact: a/b\n  DoNotMirror: yes-please\n  Tags: [v1]\n- SourceArtifact: c/d\n  TargetRepositories: [docker.io/rancher]\n  Tags: [v1]\n",
                vec!["docker.io/c/d:v1 -> docker.io/rancher/mirrored-c-d"],
                vec![(NoticeKind::Invalid, 14, "Artifacts.DoNotMirror")],
            ),
            (
                "DoNotMirror lists a tag twice",
                "- SourceArtifact: a/b\n  DoNotMirror: [v1, v1]\n  Tags: [v1]\n",
                vec![],
                vec![(NoticeKind::Invalid, 14, "Artifacts.DoNotMirror")],
            ),
            (
                "source = target (docker.io/ dropped) is skipped",
                "- SourceArtifact: rancher/shell\n  TargetArtifactName: shell\n  Tags: [v1]\n",
                vec!["docker.io/rancher/shell:v1 -> registry.suse.com/rancher/shell"],
                vec![],
            ),
            (
                "appco naming",
                "- SourceArtifact: dp.apps.rancher.io/containers/openjdk\n  TargetRepositories: [docker.io/rancher]\n  Tags: ['21']\n",
                vec!["dp.apps.rancher.io/containers/openjdk:21 -> docker.io/rancher/appco-openjdk"],
                vec![],
            ),
            (
                "the same source under two target names",
                "- SourceArtifact: bats/bats\n  TargetArtifactName: bats-bats\n  TargetRepositories: [docker.io/rancher]\n  Tags: [v1.1.0]\n- SourceArtifact: bats/bats\n  TargetRepositories: [docker.io/rancher]\n  Tags: [v1.1.0]\n",
                vec![
                    "docker.io/bats/bats:v1.1.0 -> docker.io/rancher/bats-bats",
                    "docker.io/bats/bats:v1.1.0 -> docker.io/rancher/mirrored-bats-bats",
                ],
                vec![],
            ),
            (
                "an unknown key is a warning; a bad tag is left out alone; an unknown target repository is a warning",
                "- SourceArtifact: a/b\n  Flavour: mint\n  TargetRepositories: [docker.io/rancher, nowhere.example/x]\n  Tags: [v1, 'bad tag']\n",
                vec!["docker.io/a/b:v1 -> docker.io/rancher/mirrored-a-b"],
                vec![
                    (NoticeKind::Warning, 14, "Artifacts.Flavour"),
                    (NoticeKind::Warning, 15, "Artifacts.TargetRepositories"),
                    (NoticeKind::Invalid, 16, "Artifacts.Tags"),
                ],
            ),
            (
                "two sources for one target tag: the first is kept, the second named and left out",
                "- SourceArtifact: a/tool\n  TargetArtifactName: tool\n  TargetRepositories: [docker.io/rancher]\n  Tags: [v1, v2]\n- SourceArtifact: quay.io/b/tool\n  TargetArtifactName: tool\n  TargetRepositories: [docker.io/rancher]\n  Tags: [v2, v3]\n",
                vec![
                    "docker.io/a/tool:v1 -> docker.io/rancher/tool",
                    "docker.io/a/tool:v2 -> docker.io/rancher/tool",
                    "quay.io/b/tool:v3 -> docker.io/rancher/tool",
                ],
                vec![(NoticeKind::Invalid, 20, "Artifacts.Tags")],
            ),
            (
                "a source with one path part",
                "- SourceArtifact: busybox\n  Tags: [v1]\n",
                vec![],
                vec![(NoticeKind::Invalid, 13, "Artifacts.SourceArtifact")],
            ),
        ];
        for (name, artifacts, edges, notices) in rows {
            let text = format!("{REPOSITORIES}Artifacts:\n{artifacts}");
            let (got, got_notices, _) = run(&text);
            assert_eq!(got, edges, "{name}");
            let expected: Vec<(NoticeKind, u32, String)> =
                notices.into_iter().map(|(k, l, f)| (k, l, f.to_owned())).collect();
            assert_eq!(got_notices, expected, "{name}");
        }
    }

    #[test]
    fn repositories_name_their_credentials() {
        let (_, _, credentials) = run(REPOSITORIES);
        assert_eq!(credentials.len(), 1);
        assert_eq!(credentials[0].registry.to_string(), "docker.io");
        assert_eq!(credentials[0].username, Some(Value::Env("DOCKER_USERNAME".into())));
        assert_eq!(credentials[0].origin, "config.yaml:2");
    }

    #[test]
    fn rancher_s_own_file_parses() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/data/rancher/image-mirror_config.yaml.head60.txt");
        let text = std::fs::read_to_string(&sample).unwrap();
        // The sample is the head of the file: its Artifacts, without the Repositories section.
        let text = format!("{text}\n{REPOSITORIES}");
        let (edges, notices, _) = run(&text);
        assert!(notices.is_empty(), "{notices:?}");
        assert!(edges.contains(
            &"docker.io/amazon/aws-cli:2.0.52 -> docker.io/rancher/mirrored-amazon-aws-cli".to_owned()
        ));
        assert!(edges.contains(&"docker.io/banzaicloud/logging-operator:3.6.0 -> registry.suse.com/rancher/banzaicloud-logging-operator".to_owned()));
        assert!(!edges.iter().any(|e| e.contains("kubed")), "DoNotMirror: true");
    }
}
