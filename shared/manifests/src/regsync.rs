//! regclient's `regsync.yaml` (`--regsync FILE`), as regsync reads it (regclient
//! `docs/regsync.md`):
//!
//! ```yaml
//! version: 1
//! creds:
//! - registry: docker.io
//!   user: '{{env "HUB_USER"}}'
//!   pass: '{{env "HUB_PASS"}}'
//! defaults: {parallel: 2}
//! sync:
//! - source: busybox:1.36            # type image: one tag to one tag
//!   target: registry.example/library/busybox:1.36
//!   type: image
//! - source: alpine                  # type repository: every source tag the filters allow
//!   target: registry.example/library/alpine
//!   type: repository
//!   tags: {allow: ["3\\.\\d+"], deny: ["3\\.0"], semverRange: [">=3.18"]}
//! ```
//!
//! `type: image` entries are edges; `type: repository` entries are resolved at plan time by
//! listing the source's tags ([`RepositorySync::entries_for`], pure). regsync's allow/deny
//! patterns are anchored at both ends. Options Ferry does not honour (`backup`, `platform`,
//! schedules, rate limits...) are reported as ignored, each with the reason; `type: registry`
//! is left out with the reason. Keys starting `x-` are regsync's user extensions: skipped.

use std::path::Path;
use std::sync::Arc;

use ferry_model::{DesiredState, Entry, Host, ImageRef, Origin, Repository, Tag, TagOrDigest};
use serde::Deserialize;

use crate::error::ManifestError;
use crate::input::Policy;
use crate::rancher::Value;
use crate::semver_range::Range;
use crate::yaml::{self, Pairs, Problems, Spanned, line_of};

/// Options regsync has and Ferry does not honour, and why.
const IGNORED: [(&str, &str); 13] = [
    ("backup", "Ferry never overwrites a tag, so nothing needs a backup"),
    ("platform", "copying one platform would change the index digest; Ferry copies the whole index"),
    ("interval", "Ferry promotes on events and on each run, not on a schedule"),
    ("schedule", "Ferry promotes on events and on each run, not on a schedule"),
    ("ratelimit", "Ferry slows down on 429 itself; set registries.requests-per-second to cap it"),
    ("parallel", "set --max-images (promote) or --concurrency (run, worker)"),
    ("mediaTypes", "Ferry asks for every manifest media type"),
    ("forceRecursive", "Ferry checks every blob and child itself"),
    ("skipDockerConfig", "Ferry reads config.json credentials as documented in the README"),
    ("userAgent", "Ferry sends its own User-Agent"),
    (
        "digestTags",
        "signatures and attestations are carried from trusted sources (registries.trusted-sources)",
    ),
    ("referrers", "OCI referrers are carried from trusted sources (registries.trusted-sources)"),
    ("referrerFilters", "set trust.sources[].referrer-types in the Ferry config"),
];

/// regclient host options in `creds` that Ferry does not honour, and why.
const CRED_IGNORED: [(&str, &str); 4] = [
    ("reqConcurrent", "set registries.max-in-flight in the Ferry config"),
    ("reqPerSec", "set registries.requests-per-second in the Ferry config"),
    (
        "credHelper",
        "Ferry reads credentials from the environment and config.json as documented in the README",
    ),
    ("hostname", "Ferry connects to the registry named in each reference"),
];

#[derive(Deserialize, Default)]
struct FileYaml {
    #[serde(default)]
    creds: Vec<Spanned<CredYaml>>,
    #[serde(default)]
    sync: Vec<Spanned<SyncYaml>>,
}

#[derive(Deserialize)]
struct CredYaml {
    registry: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    pass: Option<String>,
    #[serde(default)]
    tls: Option<String>,
}

#[derive(Deserialize)]
struct SyncYaml {
    source: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    #[serde(rename = "type", default)]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    tags: Option<TagsYaml>,
    #[serde(default, rename = "tagSets")]
    tag_sets: Vec<TagsYaml>,
}

#[derive(Deserialize, Default)]
struct TagsYaml {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default, rename = "semverRange")]
    semver_range: Vec<String>,
}

/// Credentials a `creds` entry names (templates resolved by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    pub registry: Host,
    pub user: Option<Value>,
    pub pass: Option<Value>,
    pub origin: String,
}

/// One `tags` (or `tagSets` item) filter of a repository entry.
#[derive(Clone, Debug)]
pub struct TagFilter {
    pub allow: Vec<regex::Regex>,
    pub deny: Vec<regex::Regex>,
    /// Masterminds ranges; a tag satisfying any of them passes.
    pub semver: Vec<Range>,
}

impl TagFilter {
    /// regsync's `filterTagList` for one tag: the semver ranges first (any of them; a tag that
    /// is not a version fails), then an allow pattern (when there are any), then no deny.
    pub fn passes(&self, tag: &str) -> bool {
        (self.semver.is_empty() || self.semver.iter().any(|r| r.matches_tag(tag)))
            && (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(tag)))
            && !self.deny.iter().any(|r| r.is_match(tag))
    }
}

/// A `type: repository` entry: every source tag the filters allow, to the same tag at the
/// target.
#[derive(Clone, Debug)]
pub struct RepositorySync {
    pub source: Repository,
    pub target: Repository,
    /// `tagSets`, then `tags` when it sets anything; no filter at all copies every tag.
    pub filters: Vec<TagFilter>,
    pub origin: Origin,
}

impl RepositorySync {
    /// Whether regsync would copy `tag`: with no filter, every tag; otherwise the union of what
    /// each filter passes.
    pub fn wants(&self, tag: &Tag) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.passes(tag.as_str()))
    }

    /// The entries for the tags the source holds now. Pure.
    pub fn entries_for(&self, tags: &[Tag], policy: &Policy) -> Vec<Entry> {
        tags.iter()
            .filter(|t| self.wants(t))
            .map(|tag| Entry {
                sources: Arc::from([policy.source(self.source.clone(), false)]),
                pin: TagOrDigest::Tag(tag.clone()),
                tags: vec![tag.clone()],
                destinations: Arc::from([policy.destination(self.target.clone(), false)]),
                origin: self.origin.clone(),
            })
            .collect()
    }
}

/// What a `regsync.yaml` holds: its image edges (with notices), its repository entries and its
/// credentials.
#[derive(Debug, Default)]
pub struct Regsync {
    pub desired: DesiredState,
    pub repositories: Vec<RepositorySync>,
    pub creds: Vec<Cred>,
}

pub fn load(path: &Path, policy: &Policy) -> Result<Regsync, ManifestError> {
    let text = yaml::read_file(path)?;
    parse(path, &text, policy)
}

/// A tag pattern bound as regsync binds it: `"^" + pattern + "$"`, with no group around the
/// pattern (so `a|b` is `^a` or `b$`, exactly as regsync reads it).
fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^{pattern}$"))
}

/// One `tags` object as a filter; `None` when it sets nothing (regsync then leaves it out).
fn filter(tags: &TagsYaml) -> Result<Option<TagFilter>, (&'static str, String)> {
    let ranges: Vec<&String> = tags.semver_range.iter().filter(|r| !r.is_empty()).collect();
    if tags.allow.is_empty() && tags.deny.is_empty() && tags.semver_range.is_empty() {
        return Ok(None);
    }
    let regexes = |list: &[String]| -> Result<Vec<regex::Regex>, (&'static str, String)> {
        list.iter()
            .map(|p| anchored(p).map_err(|e| ("tags", format!("not a regular expression: {e}"))))
            .collect()
    };
    Ok(Some(TagFilter {
        allow: regexes(&tags.allow)?,
        deny: regexes(&tags.deny)?,
        semver: ranges
            .into_iter()
            .map(|r| Range::parse(r).map_err(|e| ("tags.semverRange", e.to_string())))
            .collect::<Result<_, _>>()?,
    }))
}

pub fn parse(path: &Path, text: &str, policy: &Policy) -> Result<Regsync, ManifestError> {
    let file: Option<FileYaml> = yaml::parse(path, text)?;
    let file = file.unwrap_or_default();
    let mut problems = Problems::new(path);
    report_options(path, text, &mut problems)?;
    let origin_of =
        |line: u64| Origin::new(path.display().to_string(), u32::try_from(line).unwrap_or(u32::MAX));
    let mut out = Regsync::default();
    for cred in &file.creds {
        let line = line_of(cred);
        let Some(registry) = &cred.value.registry else {
            problems.invalid(line, "creds.registry", "a creds entry needs a registry; it is left out");
            continue;
        };
        let host = match Host::parse(registry) {
            Ok(host) => host,
            Err(e) => {
                problems.invalid(line, "creds.registry", e);
                continue;
            }
        };
        if cred.value.tls.as_deref() == Some("disabled") {
            problems.warn(
                line,
                "creds.tls",
                format!("`tls: disabled` (plain HTTP) is not taken from an input; add \"{host}\" to registries.insecure in the Ferry config"),
            );
        }
        if cred.value.user.is_some() || cred.value.pass.is_some() {
            out.creds.push(Cred {
                registry: host,
                user: cred.value.user.as_deref().map(Value::parse),
                pass: cred.value.pass.as_deref().map(Value::parse),
                origin: format!("{}:{line}", path.display()),
            });
        }
    }
    for sync in &file.sync {
        let line = line_of(sync);
        let s = &sync.value;
        let (Some(source), Some(target)) = (&s.source, &s.target) else {
            problems.invalid(line, "sync", "a sync entry needs a source and a target; it is left out");
            continue;
        };
        let kind = s.kind.as_ref().map(|k| k.value.as_str()).unwrap_or("repository");
        match kind {
            "image" => {
                let parsed = ImageRef::parse_docker_style(&source.value)
                    .map_err(|e| ("source", e.to_string()))
                    .and_then(|s| ImageRef::parse_docker_style(&target.value).map(|t| (s, t)).map_err(|e| ("target", e.to_string())));
                let (src, dst) = match parsed {
                    Ok(pair) => pair,
                    Err((field, e)) => {
                        problems.invalid(line, &format!("sync.{field}"), format!("{e}; the entry is left out"));
                        continue;
                    }
                };
                let latest = || Tag::parse("latest").expect("`latest` is a valid tag");
                let pin = match (&src.digest, &src.tag) {
                    (Some(digest), _) => TagOrDigest::Digest(*digest),
                    (None, Some(tag)) => TagOrDigest::Tag(tag.clone()),
                    (None, None) => TagOrDigest::Tag(latest()),
                };
                let tag = dst.tag.clone().or_else(|| src.tag.clone()).unwrap_or_else(latest);
                out.desired.entries.push(Entry {
                    sources: Arc::from([policy.source(src.repository, false)]),
                    pin,
                    tags: vec![tag],
                    destinations: Arc::from([policy.destination(dst.repository, false)]),
                    origin: origin_of(line_of(source)),
                });
            }
            "repository" => {
                let repositories = Repository::parse_docker_style(&source.value)
                    .map_err(|e| ("source", e.to_string()))
                    .and_then(|s| Repository::parse_docker_style(&target.value).map(|t| (s, t)).map_err(|e| ("target", e.to_string())));
                let (src, dst) = match repositories {
                    Ok(pair) => pair,
                    Err((field, e)) => {
                        problems.invalid(line, &format!("sync.{field}"), format!("{e}; the entry is left out"));
                        continue;
                    }
                };
                let filters: Result<Vec<TagFilter>, _> =
                    s.tag_sets.iter().chain(s.tags.as_ref()).filter_map(|t| filter(t).transpose()).collect();
                match filters {
                    Ok(filters) => out.repositories.push(RepositorySync {
                        source: src,
                        target: dst,
                        filters,
                        origin: origin_of(line_of(source)),
                    }),
                    Err((field, e)) => problems.invalid(line, &format!("sync.{field}"), format!("{e}; the entry is left out")),
                }
            }
            "registry" => problems.invalid(
                line,
                "sync.type",
                "`type: registry` copies a whole registry, which Ferry does not do; list its repositories as `type: repository` entries",
            ),
            other => problems.invalid(line, "sync.type", format!("unknown type {other:?}; the entry is left out")),
        }
    }
    out.desired.notices = problems.finish_with_notices()?;
    Ok(out)
}

/// Every option Ferry does not honour, in `defaults` and in each `sync` entry, as a warning
/// with the reason. `x-` keys are regsync's user extensions and are skipped.
fn report_options(path: &Path, text: &str, problems: &mut Problems<'_>) -> Result<(), ManifestError> {
    type Keys = Pairs<Spanned<String>, serde::de::IgnoredAny>;
    #[derive(Deserialize, Default)]
    struct Shape {
        #[serde(default)]
        creds: Vec<Keys>,
        #[serde(default)]
        defaults: Option<Keys>,
        #[serde(default)]
        sync: Vec<Keys>,
    }
    let shape: Option<Shape> = yaml::parse(path, text)?;
    let shape = shape.unwrap_or_default();
    // `repoAuth` is what Ferry does anyway: a token scoped to each repository.
    let known_creds = ["registry", "user", "pass", "tls", "repoAuth"];
    let known_sync = ["source", "target", "type", "tags", "tagSets"];
    let sections = shape
        .creds
        .iter()
        .map(|c| {
            (
                "creds",
                c,
                &known_creds[..],
                &CRED_IGNORED[..],
                "a regclient host option Ferry does not honour; configure the registry in the Ferry config",
            )
        })
        .chain(
            shape
                .defaults
                .iter()
                .map(|d| ("defaults", d, &[][..], &IGNORED[..], "not a regsync option Ferry knows")),
        )
        .chain(
            shape
                .sync
                .iter()
                .map(|s| ("sync", s, &known_sync[..], &IGNORED[..], "not a regsync option Ferry knows")),
        );
    for (section, keys, known, table, otherwise) in sections {
        for (key, _) in &keys.0 {
            if key.value.starts_with("x-") || known.contains(&key.value.as_str()) {
                continue;
            }
            let reason = table.iter().find(|(name, _)| *name == key.value).map_or(otherwise, |(_, why)| *why);
            problems.warn(line_of(key), &format!("{section}.{}", key.value), format!("ignored: {reason}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use ferry_model::NoticeKind;

    const FILE: &str = r#"version: 1
x-sched: &s "15 01 * * *"
creds:
  - registry: docker.io
    user: '{{env "HUB_USER"}}'
    pass: '{{env "HUB_PASS"}}'
  - registry: registry:5000
    tls: disabled
defaults:
  parallel: 2
  backup: "bkup-{{.Ref.Tag}}"
sync:
  - source: busybox:1.36
    target: registry.example/library/busybox:stable
    type: image
  - source: ghcr.io/regclient/regctl
    target: registry.example/regclient/regctl
    type: image
  - source: alpine
    target: registry.example/library/alpine
    type: repository
    tags:
      allow: ["3", "3\\.\\d+"]
      deny: ["3\\.0"]
    platform: linux/amd64
    schedule: *s
  - source: quay.io/a/b
    target: registry.example/a/b
    type: repository
    tags:
      semverRange: [">=1.2.0, <2.0.0"]
  - source: localreg:5000
    target: localcopy:5000
    type: registry
  - source: a/b
    target: c/d
    type: repository
    tags:
      allow: ["(unclosed"]
  - source: quay.io/sets/app
    target: registry.example/sets/app
    type: repository
    tagSets:
      - semverRange: [">=1.4 <1.6", "2.x"]
      - allow: ["stable|edge"]
    tags:
      allow: ["nightly-.*"]
      deny: ["nightly-old"]
"#;

    #[test]
    fn a_regsync_file() {
        let parsed = parse(Path::new("regsync.yaml"), FILE, &Policy::default()).unwrap();
        let edges: Vec<String> = parsed
            .desired
            .entries
            .iter()
            .map(|e| {
                format!(
                    "{}:{} -> {}:{}",
                    e.sources[0].repository, e.pin, e.destinations[0].repository, e.tags[0]
                )
            })
            .collect();
        assert_eq!(
            edges,
            [
                "docker.io/library/busybox:1.36 -> registry.example/library/busybox:stable",
                "ghcr.io/regclient/regctl:latest -> registry.example/regclient/regctl:latest",
            ]
        );
        let notices: Vec<(NoticeKind, u32, String)> =
            parsed.desired.notices.iter().map(|n| (n.kind, n.origin.line, n.field.to_string())).collect();
        assert_eq!(
            notices,
            [
                (NoticeKind::Warning, 10, "defaults.parallel".to_owned()),
                (NoticeKind::Warning, 11, "defaults.backup".to_owned()),
                (NoticeKind::Warning, 25, "sync.platform".to_owned()),
                (NoticeKind::Warning, 26, "sync.schedule".to_owned()),
                (NoticeKind::Warning, 7, "creds.tls".to_owned()),
                (NoticeKind::Invalid, 32, "sync.type".to_owned()),
                (NoticeKind::Invalid, 35, "sync.tags".to_owned()),
            ]
        );
        assert_eq!(parsed.creds.len(), 1);
        assert_eq!(parsed.creds[0].user, Some(Value::Env("HUB_USER".into())));
        assert_eq!(parsed.repositories.len(), 3);

        let tags = |list: &[&str]| list.iter().map(|t| Tag::parse(t).unwrap()).collect::<Vec<_>>();
        let alpine = &parsed.repositories[0];
        let wanted: Vec<String> = alpine
            .entries_for(&tags(&["3", "3.0", "3.18", "3.18.4", "edge", "13.1"]), &Policy::default())
            .iter()
            .map(|e| e.pin.to_string())
            .collect();
        assert_eq!(wanted, ["3", "3.18"], "anchored allow, then deny");
        let ranged = &parsed.repositories[1];
        let wanted: Vec<String> = ranged
            .entries_for(&tags(&["1.1.9", "1.2.0", "v1.5.3", "2.0.0", "latest"]), &Policy::default())
            .iter()
            .map(|e| e.pin.to_string())
            .collect();
        assert_eq!(wanted, ["1.2.0", "v1.5.3"]);
        // tagSets and tags: the union of what each passes. Masterminds ranges (space for AND,
        // `2.x`, loose versions), and regsync's binding of `stable|edge` as `^stable` or `edge$`.
        let sets = &parsed.repositories[2];
        let wanted: Vec<String> = sets
            .entries_for(
                &tags(&[
                    "1.3.9",
                    "1.4",
                    "v1.5.2",
                    "1.6.0",
                    "2.3.1",
                    "3.0.0",
                    "2.0.0-rc.1",
                    "stable",
                    "stable-1",
                    "unstable",
                    "pre-edge",
                    "edgy",
                    "nightly-1",
                    "nightly-old",
                    "latest",
                ]),
                &Policy::default(),
            )
            .iter()
            .map(|e| e.pin.to_string())
            .collect();
        assert_eq!(wanted, ["1.4", "v1.5.2", "2.3.1", "stable", "stable-1", "pre-edge", "nightly-1"]);
    }

    #[test]
    fn a_repository_entry_without_filters_takes_every_tag_and_a_bad_range_is_named() {
        let text = "sync:\n- source: a/b\n  target: r.example/a/b\n  type: repository\n- source: a/c\n  target: r.example/a/c\n  type: repository\n  tagSets:\n  - semverRange: [\">=foo\"]\n";
        let parsed = parse(Path::new("regsync.yaml"), text, &Policy::default()).unwrap();
        assert_eq!(parsed.repositories.len(), 1);
        assert!(parsed.repositories[0].wants(&Tag::parse("anything").unwrap()));
        let notice = &parsed.desired.notices[0];
        assert_eq!((notice.origin.line, &*notice.field), (5, "sync.tags.semverRange"));
        assert!(notice.message.contains("improper constraint"), "{}", notice.message);
    }
}
