//! Rancher image-mirror's `autoupdate.yaml`: where new tags of mirrored artifacts are found,
//! read as image-mirror's `tools/internal/autoupdate` reads it, and the pure parts of
//! `ferry discover`: the filters, the difference with `config.yaml`, and the edit that adds the
//! new tags to `config.yaml`.
//!
//! ```yaml
//! - Name: coredns
//!   GithubRelease:                 # the tags of GitHub releases (no drafts, no prereleases)
//!     Owner: coredns
//!     Repository: coredns
//!     LatestOnly: true             # only the latest release (then no VersionConstraint)
//!     VersionRegex: ^v(.*)         # only matching tags; a group is the version
//!     VersionConstraint: '>=1.10'  # Masterminds/semver range
//!     Artifacts:
//!     - SourceArtifact: coredns/coredns
//!   Reviewers: [rancher/k3s]
//! - Name: traefik
//!   Registry:                      # the tags of the first artifact at its registry
//!     Artifacts: [{SourceArtifact: library/traefik}]
//!     VersionFilter: ^2.[0-9]+.[0-9]+$
//!     Latest: true                 # only the highest version
//!   Reviewers: [rancher/k3s]
//! - Name: cilium
//!   HelmLatest:                    # images the latest chart renders, per set of values
//!     HelmRepo: https://helm.cilium.io
//!     Charts: {cilium: {generic: [hubble.enabled=true]}}
//!     ImageDenylist: [quay.io/cilium/operator]
//!     Artifacts: [{SourceArtifact: quay.io/cilium/cilium}]
//!   Reviewers: [rancher/k3s-networking]
//! ```
//!
//! Where Ferry differs from the reference, on purpose: a tag that is not a version never stops
//! an entry (`Latest` skips it and says so; the reference's `Latest` fails the entry), `Latest`
//! proposes the tag as the registry names it (the reference writes the version normalised, so
//! `v3.1` would become `3.1.0`), and an image that is not in `config.yaml` yet is reported, not
//! added: a new image needs a human.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ferry_model::{Notice, NoticeKind, Origin};
use serde::Deserialize;

use ferry_manifests::ManifestError;
use ferry_manifests::rancher::default_target_name;
use ferry_manifests::semver_range::{Range, Version};
use ferry_manifests::yaml::{self, Spanned, line_of};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EntryYaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    github_release: Option<GithubReleaseYaml>,
    #[serde(default)]
    helm_latest: Option<HelmLatestYaml>,
    #[serde(default)]
    registry: Option<RegistryYaml>,
    #[serde(default)]
    reviewers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ArtifactRefYaml {
    source_artifact: String,
    #[serde(default)]
    target_artifact_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct GithubReleaseYaml {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    artifacts: Option<Vec<ArtifactRefYaml>>,
    #[serde(default)]
    latest_only: bool,
    #[serde(default)]
    version_constraint: Option<String>,
    #[serde(default)]
    version_regex: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct HelmLatestYaml {
    #[serde(default)]
    artifacts: Vec<ArtifactRefYaml>,
    #[serde(default)]
    helm_repo: String,
    #[serde(default)]
    charts: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    image_denylist: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RegistryYaml {
    #[serde(default)]
    artifacts: Vec<ArtifactRefYaml>,
    #[serde(default)]
    latest: bool,
    #[serde(default)]
    version_filter: Option<String>,
}

/// An artifact an entry updates: `config.yaml`'s (SourceArtifact, target name) pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArtifactRef {
    pub source: String,
    /// The effective target name (`TargetArtifactName`, or the default). `None` where the
    /// discovery config names no target (the seed's `images`): whichever single artifact
    /// `config.yaml` lists for the source.
    pub target_name: Option<String>,
}

impl std::fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target_name {
            Some(target) => write!(f, "{} ({target})", self.source),
            None => f.write_str(&self.source),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Strategy {
    GithubRelease {
        owner: String,
        repository: String,
        latest_only: bool,
        version_constraint: Option<Range>,
        version_regex: Option<regex::Regex>,
    },
    HelmLatest {
        source: HelmSource,
        /// chart -> how to render it.
        charts: BTreeMap<String, ChartOptions>,
        image_denylist: Vec<String>,
    },
    Registry {
        latest: bool,
        version_filter: Option<regex::Regex>,
    },
    /// `github-tagged-images-file` (the seed's `config.json`): the images listed in a file of
    /// the repository, at the tag of each selected release.
    TaggedImagesFile {
        owner: String,
        repository: String,
        path: String,
    },
}

/// Where a chart comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelmSource {
    /// A chart repository URL (`helm-latest:URL`, autoupdate's `HelmRepo`).
    Repository(String),
    /// `oci://` chart references as the chart names (`helm-oci`).
    Oci,
    /// A directory holding `<chart>/` (`helm-directory:PATH`).
    Directory(String),
}

/// How one chart is rendered: named value sets (`--set` values, `--kube-version`), and which
/// versions (`devel`: prereleases too; `version`: a constraint instead of the latest;
/// `additional_versions`: more versions to render besides).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChartOptions {
    pub sets: BTreeMap<String, ChartSet>,
    pub devel: bool,
    pub version: Option<String>,
    pub additional_versions: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChartSet {
    pub values: Vec<String>,
    pub kube_version: Option<String>,
}

/// The seed's (`retrieve-image-tags/config.json`) tag filters, applied after the source.
#[derive(Clone, Debug, Default)]
pub struct SeedFilters {
    /// `versionFilter`: tags the regex finds a match in (Python's `re.search`).
    pub version_filter: Option<regex::Regex>,
    /// `versionConstraint`.
    pub version_constraint: Option<Range>,
    /// `latest`: only the highest version.
    pub latest: bool,
    /// `latest_entry`: the newest tag by the registry's own order, which the OCI tag list does
    /// not give; read as `latest`, with a note.
    pub latest_entry: bool,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::GithubRelease { .. } => "GithubRelease",
            Strategy::HelmLatest { .. } => "HelmLatest",
            Strategy::Registry { .. } => "Registry",
            Strategy::TaggedImagesFile { .. } => "github-tagged-images-file",
        }
    }
}

/// One valid `autoupdate.yaml` entry.
#[derive(Clone, Debug)]
pub struct UpdateEntry {
    pub name: String,
    pub strategy: Strategy,
    /// The artifacts updated. From the seed's `config.json`, whose `images` name no target,
    /// `target_name` is `None`: whichever single artifact `config.yaml` lists for the source.
    pub artifacts: Vec<ArtifactRef>,
    pub reviewers: Vec<String>,
    pub line: u64,
    /// The seed's filters, for `config.json` entries.
    pub seed: Option<SeedFilters>,
}

fn artifact_refs(list: &[ArtifactRefYaml]) -> Result<Vec<ArtifactRef>, String> {
    list.iter()
        .map(|a| {
            let default = default_target_name(&a.source_artifact).ok_or_else(|| {
                format!("SourceArtifact {:?} has fewer than two path parts", a.source_artifact)
            })?;
            Ok(ArtifactRef {
                source: a.source_artifact.clone(),
                target_name: Some(
                    a.target_artifact_name.clone().filter(|t| !t.is_empty()).unwrap_or(default),
                ),
            })
        })
        .collect()
}

fn validate(entry: &EntryYaml) -> Result<(Strategy, Vec<ArtifactRef>), String> {
    if entry.name.is_empty() {
        return Err("must specify Name".into());
    }
    let count = [entry.github_release.is_some(), entry.helm_latest.is_some(), entry.registry.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    match count {
        0 => return Err("must specify an autoupdate strategy (GithubRelease, HelmLatest or Registry)".into()),
        1 => {}
        _ => return Err("must specify only one autoupdate strategy".into()),
    }
    if entry.reviewers.is_empty() {
        return Err("must specify at least one reviewer".into());
    }
    for reviewer in &entry.reviewers {
        let parts: Vec<&str> = reviewer.split('/').collect();
        if parts.len() > 2 || (parts.len() == 2 && (parts[0].is_empty() || parts[1].is_empty())) {
            return Err(format!("invalid reviewer {reviewer:?}: a username or org/team"));
        }
    }
    let regex = |what: &str, text: &Option<String>| -> Result<Option<regex::Regex>, String> {
        text.as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| regex::Regex::new(t).map_err(|e| format!("invalid {what}: {e}")))
            .transpose()
    };
    if let Some(g) = &entry.github_release {
        if g.owner.is_empty() {
            return Err("GithubRelease: must specify Owner".into());
        }
        if g.repository.is_empty() {
            return Err("GithubRelease: must specify Repository".into());
        }
        let artifacts = match &g.artifacts {
            None => return Err("GithubRelease: must specify Artifacts".into()),
            Some(list) if list.is_empty() => {
                return Err("GithubRelease: must specify at least one element for Artifacts".into());
            }
            Some(list) => artifact_refs(list)?,
        };
        let constraint = g.version_constraint.as_deref().filter(|c| !c.is_empty());
        if g.latest_only && constraint.is_some() {
            return Err("GithubRelease: must not specify VersionConstraint when LatestOnly=true".into());
        }
        let version_constraint = constraint
            .map(|c| Range::parse(c).map_err(|e| format!("GithubRelease: invalid VersionConstraint: {e}")))
            .transpose()?;
        let strategy = Strategy::GithubRelease {
            owner: g.owner.clone(),
            repository: g.repository.clone(),
            latest_only: g.latest_only,
            version_constraint,
            version_regex: regex("VersionRegex", &g.version_regex)?,
        };
        return Ok((strategy, artifacts));
    }
    if let Some(h) = &entry.helm_latest {
        if h.helm_repo.is_empty() {
            return Err("HelmLatest: must specify HelmRepo".into());
        }
        if h.charts.is_empty() {
            return Err("HelmLatest: must specify at least one chart in Charts".into());
        }
        if let Some((chart, _)) = h.charts.iter().find(|(_, envs)| envs.is_empty()) {
            return Err(format!("HelmLatest: chart {chart:?} must have at least one environment"));
        }
        let charts = h
            .charts
            .iter()
            .map(|(chart, sets)| {
                let sets = sets
                    .iter()
                    .map(|(env, values)| {
                        (env.clone(), ChartSet { values: values.clone(), kube_version: None })
                    })
                    .collect();
                (chart.clone(), ChartOptions { sets, ..ChartOptions::default() })
            })
            .collect();
        let strategy = Strategy::HelmLatest {
            source: HelmSource::Repository(h.helm_repo.clone()),
            charts,
            image_denylist: h.image_denylist.clone(),
        };
        return Ok((strategy, artifact_refs(&h.artifacts)?));
    }
    let r = entry.registry.as_ref().ok_or("must specify an autoupdate strategy")?;
    if r.artifacts.is_empty() {
        return Err("Registry: must specify at least one artifact".into());
    }
    let strategy =
        Strategy::Registry { latest: r.latest, version_filter: regex("VersionFilter", &r.version_filter)? };
    Ok((strategy, artifact_refs(&r.artifacts)?))
}

/// Reads `autoupdate.yaml`. Its YAML must parse and name only known keys (as the reference's
/// strict reading); an entry that fails validation is left out with the reason, and the
/// others are read.
pub fn parse(path: &Path, text: &str) -> Result<(Vec<UpdateEntry>, Vec<Notice>), ManifestError> {
    let list: Option<Vec<Spanned<EntryYaml>>> = yaml::parse(path, text)?;
    let mut entries = Vec::new();
    let mut notices = Vec::new();
    for entry in list.unwrap_or_default() {
        let line = line_of(&entry);
        match validate(&entry.value) {
            Ok((strategy, artifacts)) => entries.push(UpdateEntry {
                name: entry.value.name.clone(),
                strategy,
                artifacts,
                reviewers: entry.value.reviewers.clone(),
                line,
                seed: None,
            }),
            Err(reason) => notices.push(Notice {
                kind: NoticeKind::Invalid,
                origin: Origin::new(path.display().to_string(), u32::try_from(line).unwrap_or(u32::MAX)),
                field: "entry".into(),
                message: format!("entry {:?}: {reason}; it is left out", entry.value.name),
            }),
        }
    }
    Ok((entries, notices))
}

pub fn load(path: &Path) -> Result<(Vec<UpdateEntry>, Vec<Notice>), ManifestError> {
    parse(path, &yaml::read_file(path)?)
}

/// Reads the seed's `retrieve-image-tags/config.json` (an object of named entries with
/// `images`, `versionSource` and filters) into the same entries. An entry that cannot be read
/// is left out with the reason; a key used twice is a warning (the last one counts, as Python's
/// `json` reads it).
pub fn parse_config_json(path: &Path, text: &str) -> Result<(Vec<UpdateEntry>, Vec<Notice>), ManifestError> {
    let syntax = |e: serde_json::Error| ManifestError::Syntax {
        path: path.to_owned(),
        line: e.line() as u64,
        column: e.column() as u64,
        message: e.to_string(),
    };
    let pairs: ferry_manifests::yaml::Pairs<String, serde_json::Value> =
        serde_json::from_str(text).map_err(syntax)?;
    let mut entries: Vec<UpdateEntry> = Vec::new();
    let mut notices = Vec::new();
    let line_of_key = |key: &str| -> u64 {
        text.lines()
            .position(|l| l.trim_start().starts_with(&format!("\"{key}\"")))
            .map_or(0, |i| i as u64 + 1)
    };
    let notice = |notices: &mut Vec<Notice>, kind, key: &str, message: String| {
        notices.push(Notice {
            kind,
            origin: Origin::new(
                path.display().to_string(),
                u32::try_from(line_of_key(key)).unwrap_or(u32::MAX),
            ),
            field: "versionSource".into(),
            message,
        });
    };
    for (key, value) in pairs.0 {
        if let Some(at) = entries.iter().position(|e| e.name == key) {
            notice(
                &mut notices,
                NoticeKind::Warning,
                &key,
                format!("entry {key:?} is defined twice; the last one counts"),
            );
            entries.remove(at);
        }
        match seed_entry(&key, &value) {
            Ok(mut entry) => {
                entry.line = line_of_key(&key);
                entries.push(entry);
            }
            Err(reason) => notice(
                &mut notices,
                NoticeKind::Invalid,
                &key,
                format!("entry {key:?}: {reason}; it is left out"),
            ),
        }
    }
    Ok((entries, notices))
}

fn seed_entry(key: &str, value: &serde_json::Value) -> Result<UpdateEntry, String> {
    let text = |field: &str| value.get(field).and_then(|v| v.as_str()).map(str::to_owned);
    // `"latest": "true"` and `"latest": true` both turn it on, as the key's presence does there.
    let flag = |field: &str| {
        value
            .get(field)
            .is_some_and(|v| !matches!(v, serde_json::Value::Bool(false) | serde_json::Value::Null))
    };
    let source = text("versionSource").ok_or("no versionSource")?;
    let (kind, argument) = match source.split_once(':') {
        Some((kind, argument)) => (kind.to_owned(), Some(argument.to_owned())),
        None => (source.clone(), None),
    };
    let images: Vec<ArtifactRef> = value
        .get("images")
        .and_then(|v| v.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|i| i.as_str())
                .map(|i| ArtifactRef { source: i.to_owned(), target_name: None })
                .collect()
        })
        .unwrap_or_default();
    let seed = SeedFilters {
        version_filter: text("versionFilter")
            .map(|f| regex::Regex::new(&f).map_err(|e| format!("invalid versionFilter: {e}")))
            .transpose()?,
        version_constraint: text("versionConstraint")
            .map(|c| Range::parse(&c).map_err(|e| format!("invalid versionConstraint: {e}")))
            .transpose()?,
        latest: flag("latest"),
        latest_entry: flag("latest_entry"),
    };
    let owner_repo = |argument: &Option<String>| -> Result<(String, String), String> {
        argument
            .as_deref()
            .and_then(|a| a.split_once('/'))
            .map(|(o, r)| (o.to_owned(), r.to_owned()))
            .ok_or_else(|| format!("versionSource {source:?} needs owner/repository"))
    };
    let strategy = match kind.as_str() {
        "github-releases" | "github-latest-release" => {
            let (owner, repository) = owner_repo(&argument)?;
            Strategy::GithubRelease {
                owner,
                repository,
                latest_only: kind == "github-latest-release",
                version_constraint: None,
                version_regex: None,
            }
        }
        "github-tagged-images-file" => {
            let (owner, repository) = owner_repo(&argument)?;
            let path = text("imagesFilePath").ok_or("github-tagged-images-file needs imagesFilePath")?;
            Strategy::TaggedImagesFile { owner, repository, path }
        }
        "registry" => Strategy::Registry { latest: false, version_filter: None },
        "helm-latest" | "helm-oci" | "helm-directory" => {
            let source = match (kind.as_str(), argument) {
                ("helm-latest", Some(url)) => HelmSource::Repository(url),
                ("helm-directory", Some(dir)) => HelmSource::Directory(dir),
                ("helm-oci", _) => HelmSource::Oci,
                _ => return Err(format!("versionSource {source:?} needs its argument")),
            };
            let additional: Vec<String> = value
                .get("additionalVersionFilter")
                .and_then(|v| v.as_array())
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let charts_json =
                value.get("helmCharts").and_then(|v| v.as_object()).ok_or("helm sources need helmCharts")?;
            let mut charts = BTreeMap::new();
            for (chart, options) in charts_json {
                let mut sets = BTreeMap::new();
                if let Some(config) = options.get("chartConfig").and_then(|c| c.as_object()) {
                    for (name, set) in config {
                        let values = set
                            .get("values")
                            .and_then(|v| v.as_array())
                            .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                            .unwrap_or_default();
                        let kube_version = set.get("kubeVersion").and_then(|v| v.as_str()).map(str::to_owned);
                        sets.insert(name.clone(), ChartSet { values, kube_version });
                    }
                }
                if sets.is_empty() {
                    sets.insert("default".into(), ChartSet::default());
                }
                charts.insert(
                    chart.clone(),
                    ChartOptions {
                        sets,
                        devel: options.get("devel").and_then(|v| v.as_bool()).unwrap_or(false),
                        version: options.get("versionFilter").and_then(|v| v.as_str()).map(str::to_owned),
                        additional_versions: additional.clone(),
                    },
                );
            }
            let image_denylist = value
                .get("imageDenylist")
                .and_then(|v| v.as_array())
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            Strategy::HelmLatest { source, charts, image_denylist }
        }
        other => return Err(format!("versionSource {other:?} is not supported")),
    };
    if matches!(strategy, Strategy::GithubRelease { .. } | Strategy::Registry { .. }) && images.is_empty() {
        return Err(format!("{kind} needs images"));
    }
    Ok(UpdateEntry {
        name: key.to_owned(),
        strategy,
        artifacts: images,
        reviewers: Vec::new(),
        line: 0,
        seed: Some(seed),
    })
}

/// Reads `autoupdate.yaml`, or the seed's `config.json` when the file is JSON.
pub fn load_any(path: &Path) -> Result<(Vec<UpdateEntry>, Vec<Notice>), ManifestError> {
    let text = yaml::read_file(path)?;
    if path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{') {
        parse_config_json(path, &text)
    } else {
        parse(path, &text)
    }
}

/// The seed's release selection (`github-releases`, `github-tagged-images-file`): not a draft
/// or prerelease, a valid semantic version once a leading `v` is dropped, `versionFilter`
/// found in the tag, `versionConstraint` satisfied. The tag is kept as named.
pub fn seed_releases(releases: &[Release], filters: &SeedFilters) -> Vec<String> {
    releases
        .iter()
        .filter(|r| !r.draft && !r.prerelease)
        .filter(|r| semver::Version::parse(r.tag.strip_prefix('v').unwrap_or(&r.tag)).is_ok())
        .filter(|r| filters.version_filter.as_ref().is_none_or(|f| f.is_match(&r.tag)))
        .filter(|r| filters.version_constraint.as_ref().is_none_or(|c| c.matches_tag(&r.tag)))
        .map(|r| r.tag.clone())
        .collect()
}

/// The seed's `registry` selection: `versionFilter`, `versionConstraint` (which the seed
/// documents for every source), then `latest`/`latest_entry`: the highest version, tags that
/// are not versions skipped with a note (the reference's sort fails on them).
pub fn seed_registry_tags(tags: &[String], filters: &SeedFilters, notes: &mut Vec<String>) -> Vec<String> {
    let filtered: Vec<String> = tags
        .iter()
        .filter(|t| filters.version_filter.as_ref().is_none_or(|f| f.is_match(t)))
        .filter(|t| filters.version_constraint.as_ref().is_none_or(|c| c.matches_tag(t)))
        .cloned()
        .collect();
    if filters.latest_entry {
        notes.push("latest_entry: the OCI tag list has no upload order; the highest version is taken".into());
    }
    if filters.latest || filters.latest_entry {
        return registry_tags(&filtered, None, true, notes);
    }
    filtered
}

/// A chart's or an images file's image references, as the seed keeps them: `docker.io/`
/// dropped, `rancher/` images and `latest` tags left out, a reference without exactly one tag
/// skipped, denied images left out. Grouped by repository, each matched to `config.yaml` later.
pub fn seed_images(
    references: &[String],
    denylist: &[String],
    notes: &mut Vec<String>,
) -> Vec<(ArtifactRef, Vec<String>)> {
    let mut by_repository: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for reference in references {
        let full = reference.strip_prefix("docker.io/").unwrap_or(reference);
        let full = full.split('@').next().unwrap_or_default();
        if full.starts_with("rancher/") {
            continue;
        }
        let (repository, tag, _) = crate::chart_values::split_reference(full);
        let Some(tag) = tag else {
            notes.push(format!("{reference}: no tag; skipped"));
            continue;
        };
        if tag == "latest" || denylist.contains(&repository) {
            continue;
        }
        by_repository.entry(repository).or_default().insert(tag);
    }
    by_repository
        .into_iter()
        .map(|(source, tags)| (ArtifactRef { source, target_name: None }, tags.into_iter().collect()))
        .collect()
}

/// A GitHub release, as the releases API lists it.
/// A GitHub release, as the filters read it.
pub use ferry_github::Release;

/// `GithubRelease`'s tag to version: `VersionRegex` (its first group, else the whole match;
/// no match drops the tag), then `VersionConstraint`. A version the constraint cannot read is
/// dropped with a note (the reference fails the whole entry).
pub fn release_version(
    tag: &str,
    version_regex: Option<&regex::Regex>,
    version_constraint: Option<&Range>,
    notes: &mut Vec<String>,
) -> Option<String> {
    let version = match version_regex {
        Some(regex) => {
            let captures = regex.captures(tag)?;
            captures.get(1).or_else(|| captures.get(0))?.as_str().to_owned()
        }
        None => tag.to_owned(),
    };
    if let Some(range) = version_constraint {
        let Some(parsed) = Version::parse(&version) else {
            notes.push(format!("release {tag}: {version:?} is not a version; skipped"));
            return None;
        };
        if !range.matches(&parsed) {
            return None;
        }
    }
    Some(version)
}

/// The versions of every release that is neither a draft nor a prerelease.
pub fn release_versions(
    releases: &[Release],
    version_regex: Option<&regex::Regex>,
    version_constraint: Option<&Range>,
    notes: &mut Vec<String>,
) -> Vec<String> {
    releases
        .iter()
        .filter(|r| !r.draft && !r.prerelease)
        .filter_map(|r| release_version(&r.tag, version_regex, version_constraint, notes))
        .collect()
}

/// `Registry`'s filter: tags `VersionFilter` finds a match in (unanchored, as Go's
/// `MatchString`), then with `Latest` only the highest version. Tags that are not versions are
/// skipped by `Latest`, with a note.
pub fn registry_tags(
    tags: &[String],
    version_filter: Option<&regex::Regex>,
    latest: bool,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let filtered: Vec<&String> =
        tags.iter().filter(|t| version_filter.is_none_or(|f| f.is_match(t))).collect();
    if !latest {
        return filtered.into_iter().cloned().collect();
    }
    let mut best: Option<(Version, &String)> = None;
    let mut skipped = Vec::new();
    for tag in filtered {
        match Version::parse(tag) {
            Some(version) => {
                if best.as_ref().is_none_or(|(b, _)| version > *b) {
                    best = Some((version, tag));
                }
            }
            None => skipped.push(tag.as_str()),
        }
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "Latest: {} tags are not versions and were skipped ({})",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    best.map(|(_, tag)| vec![tag.clone()]).unwrap_or_default()
}

/// `HelmLatest`'s images: each reference found (`repo:tag`, a digest dropped, `docker.io/`
/// dropped) grouped by repository, without the denied ones. Images the entry's `Artifacts` do
/// not name are returned apart: the reference fails on them; Ferry reports them.
pub fn helm_images(
    references: &[String],
    artifacts: &[ArtifactRef],
    denylist: &[String],
    notes: &mut Vec<String>,
) -> (Vec<(ArtifactRef, Vec<String>)>, Vec<String>) {
    let mut by_repository: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for reference in references {
        let without_digest = reference.split('@').next().unwrap_or_default();
        let (repository, tag, _) = crate::chart_values::split_reference(without_digest);
        let Some(tag) = tag else {
            notes.push(format!("{reference}: no tag; skipped"));
            continue;
        };
        let repository = repository.strip_prefix("docker.io/").unwrap_or(&repository).to_owned();
        by_repository.entry(repository).or_default().insert(tag);
    }
    let mut found = Vec::new();
    let mut unlisted = Vec::new();
    for (repository, tags) in by_repository {
        if denylist.contains(&repository) {
            continue;
        }
        match artifacts.iter().find(|a| a.source == repository) {
            Some(artifact) => found.push((artifact.clone(), tags.into_iter().collect())),
            None => unlisted.push(repository),
        }
    }
    (found, unlisted)
}

/// One artifact of `config.yaml` as listed: what the edit needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub artifact: ArtifactRef,
    /// Each tag with the line it is on.
    pub tags: Vec<(String, u64)>,
    pub line: u64,
}

/// Every artifact `config.yaml` lists, with its tags' lines, through the one reader of
/// `config.yaml` (`ferry_manifests::rancher`).
pub fn listed(path: &Path, text: &str) -> Result<Vec<Listed>, ManifestError> {
    Ok(ferry_manifests::rancher::listed(path, text)?
        .into_iter()
        .map(|a| Listed {
            artifact: ArtifactRef { source: a.source, target_name: Some(a.target_name) },
            tags: a.tags,
            line: a.line,
        })
        .collect())
}

/// What discovery proposes for one artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub artifact: ArtifactRef,
    /// Tags not listed yet, sorted as `config.yaml` keeps them (byte order).
    pub new_tags: Vec<String>,
}

/// The tags found that `config.yaml` does not list yet, per artifact it lists; artifacts it
/// does not list are returned apart (a new image needs a human).
pub fn difference(
    found: &[(ArtifactRef, Vec<String>)],
    listed: &[Listed],
) -> (Vec<Proposal>, Vec<ArtifactRef>) {
    let mut proposals: BTreeMap<ArtifactRef, BTreeSet<String>> = BTreeMap::new();
    let mut unlisted = BTreeSet::new();
    for (artifact, tags) in found {
        // An empty target name (the seed's `images`) is whichever artifact lists the source;
        // as the seed's add-tag script, it must be exactly one.
        let entries: Vec<&Listed> = listed
            .iter()
            .filter(|l| {
                l.artifact.source == artifact.source
                    && (artifact.target_name.is_none() || l.artifact.target_name == artifact.target_name)
            })
            .collect();
        let targets: BTreeSet<&Option<String>> = entries.iter().map(|l| &l.artifact.target_name).collect();
        if entries.is_empty() || targets.len() > 1 {
            unlisted.insert(artifact.clone());
            continue;
        }
        let concrete = entries[0].artifact.clone();
        let known: BTreeSet<&str> =
            entries.iter().flat_map(|l| l.tags.iter().map(|(t, _)| t.as_str())).collect();
        for tag in tags {
            if !known.contains(tag.as_str()) {
                proposals.entry(concrete.clone()).or_default().insert(tag.clone());
            }
        }
    }
    let proposals = proposals
        .into_iter()
        .map(|(artifact, tags)| Proposal { artifact, new_tags: tags.into_iter().collect() })
        .collect();
    (proposals, unlisted.into_iter().collect())
}

/// A tag as `config.yaml`'s writer writes it: plain, or in double quotes (`- "1.10"`).
fn yaml_tag(tag: &str) -> String {
    if yaml::plain_scalar(tag) { tag.to_owned() } else { format!("\"{tag}\"") }
}

/// Adds each proposal's tags to its artifact's `Tags` in `text` (a `config.yaml`), keeping
/// every other byte: the tags of a block list are rewritten sorted (as image-mirror's writer
/// keeps them), a flow list likewise on its line. The first listed entry of an artifact gets
/// the tags. Proposals whose list cannot be edited in place are returned with the reason.
pub fn add_tags(
    text: &str,
    listed: &[Listed],
    proposals: &[Proposal],
) -> (String, Vec<(ArtifactRef, String)>) {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let mut refused = Vec::new();
    // (first line index, last line index, replacement lines), applied bottom-up.
    let mut edits: Vec<(usize, usize, Vec<String>)> = Vec::new();
    for proposal in proposals {
        let Some(entry) = listed.iter().find(|l| l.artifact == proposal.artifact) else {
            refused.push((proposal.artifact.clone(), "not in config.yaml".to_owned()));
            continue;
        };
        let Some(first) = entry.tags.iter().map(|(_, l)| *l).min() else {
            refused.push((
                proposal.artifact.clone(),
                format!("the entry at line {} has no Tags to add to", entry.line),
            ));
            continue;
        };
        let last = entry.tags.iter().map(|(_, l)| *l).max().unwrap_or(first);
        let mut all: BTreeSet<String> = entry.tags.iter().map(|(t, _)| t.clone()).collect();
        all.extend(proposal.new_tags.iter().cloned());
        let (first, last) = (
            usize::try_from(first).unwrap_or(0).saturating_sub(1),
            usize::try_from(last).unwrap_or(0).saturating_sub(1),
        );
        let Some(first_line) = lines.get(first) else { continue };
        if first == last && first_line.contains('[') && first_line.trim_end().ends_with(']') {
            let open = first_line.find('[').unwrap_or(0);
            let items: Vec<String> = all.iter().map(|t| yaml_tag(t)).collect();
            edits.push((first, last, vec![format!("{}[{}]", &first_line[..open], items.join(", "))]));
            continue;
        }
        let block = (first..=last).all(|i| lines.get(i).is_some_and(|l| l.trim_start().starts_with("- ")));
        if !block {
            refused.push((
                proposal.artifact.clone(),
                format!(
                    "the Tags at lines {}-{} are not a plain list; add the tags by hand",
                    first + 1,
                    last + 1
                ),
            ));
            continue;
        }
        let indent = &first_line[..first_line.len() - first_line.trim_start().len()];
        edits.push((first, last, all.iter().map(|t| format!("{indent}- {}", yaml_tag(t))).collect()));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (first, last, replacement) in edits {
        lines.splice(first..=last, replacement);
    }
    (lines.join("\n"), refused)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn a(source: &str, target: &str) -> ArtifactRef {
        ArtifactRef { source: source.into(), target_name: Some(target.into()) }
    }

    #[test]
    fn entries_parse_and_each_bad_entry_is_left_out_with_its_reason() {
        let text = "- Name: coredns\n  GithubRelease:\n    Owner: coredns\n    Repository: coredns\n    LatestOnly: true\n    VersionRegex: ^v(.*)\n    Artifacts:\n    - SourceArtifact: coredns/coredns\n  Reviewers: [rancher/k3s]\n\
                    - Name: both\n  GithubRelease: {Owner: a, Repository: b, Artifacts: [{SourceArtifact: a/b}]}\n  Registry: {Artifacts: [{SourceArtifact: a/b}]}\n  Reviewers: [x]\n\
                    - Name: noreviewer\n  Registry: {Artifacts: [{SourceArtifact: a/b}]}\n\
                    - Name: latestconstraint\n  GithubRelease: {Owner: a, Repository: b, LatestOnly: true, VersionConstraint: '>=1', Artifacts: [{SourceArtifact: a/b}]}\n  Reviewers: [x]\n\
                    - Name: traefik\n  Registry:\n    Artifacts: [{SourceArtifact: library/traefik}]\n    Latest: true\n    VersionFilter: ^2.[0-9]+.[0-9]+$\n  Reviewers: [rancher/k3s]\n\
                    - Name: badteam\n  Registry: {Artifacts: [{SourceArtifact: a/b}]}\n  Reviewers: [a/b/c]\n";
        let (entries, notices) = parse(Path::new("autoupdate.yaml"), text).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["coredns", "traefik"]);
        assert_eq!(entries[0].artifacts, [a("coredns/coredns", "mirrored-coredns-coredns")]);
        let reasons: Vec<(u32, &str)> = notices.iter().map(|n| (n.origin.line, n.message.as_str())).collect();
        assert_eq!(reasons.len(), 4, "{reasons:#?}");
        assert!(reasons[0].1.contains("only one autoupdate strategy") && reasons[0].0 == 10, "{reasons:#?}");
        assert!(reasons[1].1.contains("at least one reviewer"), "{reasons:#?}");
        assert!(reasons[2].1.contains("VersionConstraint when LatestOnly"), "{reasons:#?}");
        assert!(reasons[3].1.contains("invalid reviewer"), "{reasons:#?}");
        assert!(
            parse(Path::new("a.yaml"), "- Name: x\n  Unknown: 1\n").is_err(),
            "unknown keys are refused, as upstream"
        );
    }

    #[test]
    fn github_filters() {
        let releases = [
            Release { tag: "v1.12.0".into(), draft: false, prerelease: false },
            Release { tag: "v1.12.1-rc.1".into(), draft: false, prerelease: true },
            Release { tag: "v1.13.0".into(), draft: true, prerelease: false },
            Release { tag: "v1.9.0".into(), draft: false, prerelease: false },
            Release { tag: "helm-chart-1.0".into(), draft: false, prerelease: false },
            Release { tag: "nightly".into(), draft: false, prerelease: false },
        ];
        let regex = regex::Regex::new("^v(.*)").unwrap();
        let range = Range::parse(">=1.10").unwrap();
        let mut notes = Vec::new();
        assert_eq!(release_versions(&releases, Some(&regex), Some(&range), &mut notes), ["1.12.0"]);
        assert!(notes.is_empty(), "tags the regex does not match are not versions to read: {notes:?}");
        assert_eq!(
            release_versions(&releases, None, None, &mut notes),
            ["v1.12.0", "v1.9.0", "helm-chart-1.0", "nightly"]
        );
        assert_eq!(release_versions(&releases, None, Some(&range), &mut notes), ["v1.12.0"]);
        assert_eq!(notes.len(), 2, "helm-chart-1.0 and nightly are not versions: {notes:?}");
    }

    #[test]
    fn registry_filters_and_latest_never_crash_on_tags_that_are_not_versions() {
        let tags: Vec<String> = ["2.10.4", "2.9.0", "3.0.1", "v2.11.0", "latest", "2.x-alpine", "2.11"]
            .map(String::from)
            .to_vec();
        let filter = regex::Regex::new("^v?2.[0-9]+").unwrap();
        let mut notes = Vec::new();
        assert_eq!(
            registry_tags(&tags, Some(&filter), false, &mut notes),
            ["2.10.4", "2.9.0", "v2.11.0", "2.11"]
        );
        assert_eq!(
            registry_tags(&tags, Some(&filter), true, &mut notes),
            ["v2.11.0"],
            "the tag as named, not 2.11.0"
        );
        assert_eq!(registry_tags(&tags, None, true, &mut notes), ["3.0.1"]);
        assert!(notes.iter().any(|n| n.contains("latest") && n.contains("2.x-alpine")), "{notes:?}");
        assert!(registry_tags(&["latest".to_owned()], None, true, &mut notes).is_empty());
    }

    #[test]
    fn helm_images_are_grouped_denied_and_matched_to_artifacts() {
        let refs: Vec<String> = [
            "quay.io/cilium/cilium:v1.17.2@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "quay.io/cilium/cilium:v1.17.2",
            "quay.io/cilium/operator:v1.17.2",
            "docker.io/library/busybox:1.37",
            "quay.io/cilium/hubble-ui",
        ]
        .map(String::from)
        .to_vec();
        let artifacts = [a("quay.io/cilium/cilium", "mirrored-cilium-cilium")];
        let mut notes = Vec::new();
        let (found, unlisted) =
            helm_images(&refs, &artifacts, &["quay.io/cilium/operator".to_owned()], &mut notes);
        assert_eq!(found, [(artifacts[0].clone(), vec!["v1.17.2".to_owned()])]);
        assert_eq!(unlisted, ["library/busybox"]);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn new_tags_are_added_in_place_sorted_and_quoted_like_the_writer() {
        let text = "Artifacts:\n- SourceArtifact: amazon/aws-cli\n  Tags:\n  - 2.0.52\n  - 2.8.5\n  TargetArtifactName: aws\n\
                    - SourceArtifact: coredns/coredns\n  Tags: ['1.10.1']\n- SourceArtifact: x/y\n  Tags: []\nRepositories: []\n";
        let listed = listed(Path::new("config.yaml"), text).unwrap();
        assert_eq!(listed[0].artifact, a("amazon/aws-cli", "aws"));
        assert_eq!(listed[0].tags, [("2.0.52".to_owned(), 4), ("2.8.5".to_owned(), 5)]);
        let found = vec![
            (a("amazon/aws-cli", "aws"), vec!["2.8.5".to_owned(), "2.9.0".to_owned(), "2.10".to_owned()]),
            (a("coredns/coredns", "mirrored-coredns-coredns"), vec!["1.12.0".to_owned()]),
            (a("x/y", "mirrored-x-y"), vec!["1".to_owned()]),
            (a("new/image", "mirrored-new-image"), vec!["1.0".to_owned()]),
        ];
        let (proposals, unlisted) = difference(&found, &listed);
        assert_eq!(unlisted, [a("new/image", "mirrored-new-image")]);
        assert_eq!(proposals[0].new_tags, ["2.10", "2.9.0"]);
        let (edited, refused) = add_tags(text, &listed, &proposals);
        assert_eq!(
            edited,
            "Artifacts:\n- SourceArtifact: amazon/aws-cli\n  Tags:\n  - 2.0.52\n  - \"2.10\"\n  - 2.8.5\n  - 2.9.0\n  TargetArtifactName: aws\n\
             - SourceArtifact: coredns/coredns\n  Tags: [1.10.1, 1.12.0]\n- SourceArtifact: x/y\n  Tags: []\nRepositories: []\n"
        );
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].1.contains("no Tags to add to"));
    }
}
