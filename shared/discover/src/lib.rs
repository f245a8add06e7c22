//! Tag discovery (`ferry discover`) and the chart scan (`ferry charts scan`): for each entry of
//! image-mirror's `autoupdate.yaml`, the tags its source offers now ([`find`]), what
//! `config.yaml` does not list yet ([`autoupdate::difference`]), and the pull request that
//! proposes them ([`propose`]); and the images chart archives name. Neither ever promotes: a
//! finding is a change for a human to review.
//!
//! # Layout
//! - [`autoupdate`]: `autoupdate.yaml` and the seed's `config.json`, the filters, the
//!   difference with `config.yaml` (read by `ferry_manifests::rancher`, its one reader) and the
//!   in-place edit.
//! - [`chart_scan`], [`chart_values`]: chart archives (a bounded tar walker) and the images
//!   their values name.
//! - [`helm`]: a chart's images, by `helm template` or from its values.
//!
//! Invariant: discovery and the chart scan never write to a registry and never promote.

pub mod autoupdate;
pub mod chart_scan;
pub mod chart_values;
pub mod helm;

use autoupdate::{ArtifactRef, Proposal, Strategy, UpdateEntry};
use ferry_model::{ImageRef, Repository};
use ferry_registry::Registry;
use sha2::Digest as _;

pub use ferry_github::GitHub;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error(transparent)]
    GitHub(#[from] ferry_github::GitHubError),
    #[error("{0}")]
    Request(String),
    #[error("{0}")]
    Helm(String),
    #[error(transparent)]
    Registry(#[from] ferry_registry::RegistryError),
    #[error("{0}")]
    Input(String),
}

/// The HTTP client discovery uses for GitHub and chart repositories: Ferry's user agent, and a
/// timeout per request.
pub fn http_client() -> Result<reqwest::Client, DiscoverError> {
    reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| DiscoverError::Request(e.to_string()))
}

/// What one entry's source offers now.
#[derive(Debug, Default)]
pub struct Found {
    /// Per artifact, the tags found (before the difference with `config.yaml`).
    pub tags: Vec<(ArtifactRef, Vec<String>)>,
    /// Images a chart uses that the entry's `Artifacts` do not name.
    pub unlisted_images: Vec<String>,
    /// What was skipped and why.
    pub notes: Vec<String>,
    /// How a chart's images were found, for `HelmLatest`.
    pub method: Option<helm::Method>,
}

/// The tags `entry`'s source offers now: GitHub releases, the first artifact's tags at its
/// registry (through Ferry's registry client: its credentials, 429 handling and pages), or the
/// images the latest chart uses.
/// A release as discovery's filters read it.
fn release(r: ferry_github::Release) -> autoupdate::Release {
    autoupdate::Release { tag: r.tag, draft: r.draft, prerelease: r.prerelease }
}

/// Every release of `owner/repository`.
async fn releases(
    github: &GitHub,
    owner: &str,
    repository: &str,
) -> Result<Vec<autoupdate::Release>, DiscoverError> {
    Ok(github.releases(&format!("{owner}/{repository}")).await?.into_iter().map(release).collect())
}

pub async fn find<R: Registry>(
    entry: &UpdateEntry,
    registry: &R,
    github: &GitHub,
    http: &reqwest::Client,
) -> Result<Found, DiscoverError> {
    let mut found = Found::default();
    let every = |tags: &[String]| entry.artifacts.iter().map(|a| (a.clone(), tags.to_vec())).collect();
    match &entry.strategy {
        Strategy::GithubRelease { owner, repository, latest_only, version_constraint, version_regex } => {
            let versions = if *latest_only {
                let latest = github.latest_release(&format!("{owner}/{repository}")).await?;
                match &entry.seed {
                    // The seed takes the latest release's tag as it is.
                    Some(_) => vec![latest.tag],
                    None => autoupdate::release_version(
                        &latest.tag,
                        version_regex.as_ref(),
                        version_constraint.as_ref(),
                        &mut found.notes,
                    )
                    .into_iter()
                    .collect(),
                }
            } else {
                let releases = releases(github, owner, repository).await?;
                match &entry.seed {
                    Some(seed) => autoupdate::seed_releases(&releases, seed),
                    None => autoupdate::release_versions(
                        &releases,
                        version_regex.as_ref(),
                        version_constraint.as_ref(),
                        &mut found.notes,
                    ),
                }
            };
            found.tags = every(&versions);
        }
        Strategy::Registry { latest, version_filter } => {
            let first = entry.artifacts.first().ok_or_else(|| DiscoverError::Input("no artifact".into()))?;
            let repository: Repository = ImageRef::parse_docker_style(&first.source)
                .map_err(|e| DiscoverError::Input(format!("SourceArtifact {:?}: {e}", first.source)))?
                .repository;
            let listed = registry.list_tags(&repository).await?;
            let tags: Vec<String> = listed.iter().map(|t| t.as_str().to_owned()).collect();
            if tags.is_empty() {
                return Err(DiscoverError::Input(format!("{repository} lists no tags")));
            }
            let chosen = match &entry.seed {
                Some(seed) => autoupdate::seed_registry_tags(&tags, seed, &mut found.notes),
                None => autoupdate::registry_tags(&tags, version_filter.as_ref(), *latest, &mut found.notes),
            };
            found.tags = every(&chosen);
        }
        Strategy::HelmLatest { source, charts, image_denylist } => {
            let mut references = Vec::new();
            for (chart, options) in charts {
                let (images, method) = helm::images(http, source, chart, options).await?;
                found.method = Some(method);
                references.extend(images);
            }
            if entry.seed.is_some() {
                found.tags = autoupdate::seed_images(&references, image_denylist, &mut found.notes);
            } else {
                let (tags, unlisted) =
                    autoupdate::helm_images(&references, &entry.artifacts, image_denylist, &mut found.notes);
                found.tags = tags;
                found.unlisted_images = unlisted;
            }
        }
        Strategy::TaggedImagesFile { owner, repository, path } => {
            let releases = releases(github, owner, repository).await?;
            let seed = entry.seed.clone().unwrap_or_default();
            let mut references = Vec::new();
            for tag in autoupdate::seed_releases(&releases, &seed) {
                match github.file(&format!("{owner}/{repository}"), &tag, path).await? {
                    Some(bytes) => references.extend(
                        String::from_utf8_lossy(&bytes)
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    ),
                    None => found.notes.push(format!("{path} is not in {owner}/{repository} at {tag}")),
                }
            }
            found.tags = autoupdate::seed_images(&references, &[], &mut found.notes);
        }
    }
    Ok(found)
}

/// The branch a proposal goes on: `autoupdate/<entry>/<hash>`, where the hash names the set of
/// `source:tag` pairs (as image-mirror's `hashArtifactSet`: sha256 of the sorted pairs, base32,
/// lowercase, 8 characters), so the same finding is proposed once.
pub fn branch_name(entry: &str, proposals: &[Proposal]) -> String {
    let mut sorted: Vec<&Proposal> = proposals.iter().collect();
    sorted.sort_by(|a, b| a.artifact.cmp(&b.artifact));
    let mut hasher = sha2::Sha256::new();
    for proposal in sorted {
        let mut tags = proposal.new_tags.clone();
        tags.sort();
        for tag in tags {
            hasher.update(format!("{}:{tag}", proposal.artifact.source).as_bytes());
        }
    }
    let hash = data_encoding::BASE32.encode(&hasher.finalize()).to_ascii_lowercase();
    format!("autoupdate/{entry}/{}", &hash[..8])
}

/// The files a proposal commits: `config.yaml` with the tags added in place, and, when the
/// repository keeps one, the `regsync.yaml` generated from it. Proposals that cannot be written
/// in place are returned with the reason.
pub fn edited_files(
    config_path: &str,
    config_text: &str,
    listed: &[autoupdate::Listed],
    proposals: &[Proposal],
    regsync_path: Option<&str>,
) -> Result<(Vec<(String, Vec<u8>)>, Vec<String>), DiscoverError> {
    let (config, refused) = autoupdate::add_tags(config_text, listed, proposals);
    let refused = refused.into_iter().map(|(a, why)| format!("{a}: {why}")).collect();
    let mut files = Vec::new();
    if let Some(regsync) = regsync_path {
        let text = ferry_manifests::rancher::to_regsync_yaml(std::path::Path::new(config_path), &config)
            .map_err(|e| DiscoverError::Input(e.to_string()))?;
        files.push((regsync.to_owned(), text.into_bytes()));
    }
    files.insert(0, (config_path.to_owned(), config.into_bytes()));
    Ok((files, refused))
}

/// Where a scheduled discovery reads and proposes: paths in `repository` at `base`.
#[derive(Clone, Debug)]
pub struct Repo<'a> {
    pub repository: &'a str,
    pub base: &'a str,
    pub autoupdate: &'a str,
    pub rancher_config: &'a str,
    pub regsync_yaml: Option<&'a str>,
}

/// One scheduled round (`ferry run` with `discovery:`): reads the discovery config and
/// `config.yaml` from the repository at its base branch (no checkout), finds each entry's new
/// tags and proposes each finding as a pull request, never twice. Returns one line per entry.
pub async fn run_repository<R: Registry>(
    repo: &Repo<'_>,
    registry: &R,
    github: &GitHub,
    http: &reqwest::Client,
) -> Result<Vec<String>, DiscoverError> {
    if repo.repository.split('/').filter(|p| !p.is_empty()).count() != 2 {
        return Err(DiscoverError::Input(format!("{} is not owner/name", repo.repository)));
    }
    let fetch = |path: String| async move {
        github
            .file(repo.repository, repo.base, &path)
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| {
                DiscoverError::Input(format!("{path} is not in {} at {}", repo.repository, repo.base))
            })
    };
    let discovery_text = fetch(repo.autoupdate.to_owned()).await?;
    let config_text = fetch(repo.rancher_config.to_owned()).await?;
    let discovery_path = std::path::Path::new(repo.autoupdate);
    let (entries, notices) = if repo.autoupdate.ends_with(".json") {
        autoupdate::parse_config_json(discovery_path, &discovery_text)
    } else {
        autoupdate::parse(discovery_path, &discovery_text)
    }
    .map_err(|e| DiscoverError::Input(e.to_string()))?;
    let listed = autoupdate::listed(std::path::Path::new(repo.rancher_config), &config_text)
        .map_err(|e| DiscoverError::Input(e.to_string()))?;
    let mut lines: Vec<String> = notices.iter().map(|n| format!("left out: {n}")).collect();
    for entry in &entries {
        let found = match find(entry, registry, github, http).await {
            Ok(found) => found,
            Err(e) => {
                lines.push(format!("{}: failed: {e}", entry.name));
                continue;
            }
        };
        let (proposals, _) = autoupdate::difference(&found.tags, &listed);
        if proposals.is_empty() {
            lines.push(format!("{}: no new tags", entry.name));
            continue;
        }
        let (files, refused) =
            edited_files(repo.rancher_config, &config_text, &listed, &proposals, repo.regsync_yaml)?;
        for why in refused {
            lines.push(format!("{}: not proposed: {why}", entry.name));
        }
        match propose(github, repo.repository, repo.base, entry, &proposals, &files).await {
            Ok(Proposed::Opened(url)) => lines.push(format!("{}: opened {url}", entry.name)),
            Ok(Proposed::Existing(url)) => lines.push(format!("{}: already proposed: {url}", entry.name)),
            Err(e) => lines.push(format!("{}: the pull request failed: {e}", entry.name)),
        }
    }
    Ok(lines)
}

/// What happened to a proposal on GitHub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposed {
    /// A pull request from the same branch exists already (open or closed): nothing is done.
    Existing(String),
    Opened(String),
}

/// Opens one pull request for `entry`'s proposals: a branch from `base`, the edited files
/// committed on it, the pull request, and the entry's reviewers asked. A pull request from the
/// same branch (the same finding) is never opened twice.
pub async fn propose(
    github: &GitHub,
    repo: &str,
    base: &str,
    entry: &UpdateEntry,
    proposals: &[Proposal],
    files: &[(String, Vec<u8>)],
) -> Result<Proposed, DiscoverError> {
    let branch = branch_name(&entry.name, proposals);
    let owner = repo.split('/').next().unwrap_or_default();
    if let Some(existing) =
        github.pulls_from(repo, &format!("{owner}:{branch}"), base).await?.into_iter().next()
    {
        return Ok(Proposed::Existing(existing));
    }
    let sha = github.branch_sha(repo, base).await?;
    github.create_branch(repo, &branch, &sha).await?;
    let count: usize = proposals.iter().map(|p| p.new_tags.len()).sum();
    let added: Vec<String> = proposals
        .iter()
        .flat_map(|p| p.new_tags.iter().map(move |t| format!("- `{}:{t}`", p.artifact.source)))
        .collect();
    let message = format!("Add {count} tag(s) for {}", entry.name);
    for (path, content) in files {
        github.put_file(repo, path, &branch, &message, content).await?;
    }
    let title = format!("[autoupdate] Add {count} tag(s) for `{}`", entry.name);
    let body = format!(
        "Found by `ferry discover` ({} entry `{}`). It adds the following artifact tags:\n{}\n\nEach tag is pinned to a digest when it is planned; review before merging.",
        entry.strategy.name(),
        entry.name,
        added.join("\n")
    );
    let (number, url) = github.open_pull(repo, &title, &branch, base, &body).await?;
    if !entry.reviewers.is_empty() {
        github.request_reviewers(repo, number, &entry.reviewers).await?;
    }
    Ok(Proposed::Opened(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_names_the_finding_whatever_its_order() {
        let p = |source: &str, tags: &[&str]| Proposal {
            artifact: ArtifactRef { source: source.into(), target_name: Some("t".into()) },
            new_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        };
        let a = branch_name("coredns", &[p("a/b", &["2", "1"]), p("c/d", &["3"])]);
        let b = branch_name("coredns", &[p("c/d", &["3"]), p("a/b", &["1", "2"])]);
        assert_eq!(a, b);
        assert!(a.starts_with("autoupdate/coredns/") && a.len() == "autoupdate/coredns/".len() + 8, "{a}");
        assert_ne!(a, branch_name("coredns", &[p("a/b", &["1"])]));
    }
}
