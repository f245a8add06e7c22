//! Rancher charts sync: `dockerToPrime.yaml` and `stagingToPrime.yaml` (repository → tags),
//! with a config that names the registries.
//!
//! ```yaml
//! staging: stgregistry.suse.com          # registry (host[/prefix]) the charts CI pushes to
//! docker-hub: docker.io                  # optional, this is the default
//! prime: registry.rancher.com            # the destination
//! deny-prerelease: true                  # optional, default true: no -rc/-alpha/-beta in Prime
//! docker-to-prime: dockerToPrime.yaml    # paths relative to this file; at least one of the three
//! staging-to-prime: stagingToPrime.yaml
//! custom-to-prime: customToPrime.yaml    # release candidates, with custom-path:
//! custom-path: rc                        # <prime>/<custom-path>/<repository without rancher/>:<tag>
//! ```
//!
//! `customToPrime.yaml` is charts-build-scripts' "rc non-standard release process": each tag
//! comes from staging only and goes to `<prime>/<custom-path>/<repository without "rancher/">`;
//! prerelease tags are allowed there (they are what it is for).
//!
//! Every listed tag is sourced from staging when staging has it and from Docker Hub otherwise,
//! whichever file lists it: the files record where the scan found a tag, but the plan checks
//! again. Staging is a trusted source (its signatures may be copied); Docker Hub never is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_model::{DesiredState, Entry, Origin, RegistryPath, RepoPath, Tag, TagOrDigest};
use serde::Deserialize;

use crate::error::ManifestError;
use crate::input::Policy;
use crate::yaml::{self, Pairs, Problems, Spanned, line_of};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigYaml {
    staging: Spanned<String>,
    #[serde(default)]
    docker_hub: Option<Spanned<String>>,
    prime: Spanned<String>,
    #[serde(default)]
    deny_prerelease: Option<bool>,
    #[serde(default)]
    docker_to_prime: Option<String>,
    #[serde(default)]
    staging_to_prime: Option<String>,
    #[serde(default)]
    custom_to_prime: Option<String>,
    #[serde(default)]
    custom_path: Option<Spanned<String>>,
}

/// The validated charts sync config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartsConfig {
    pub staging: RegistryPath,
    pub docker_hub: RegistryPath,
    pub prime: RegistryPath,
    pub deny_prerelease: bool,
    /// `dockerToPrime.yaml` and `stagingToPrime.yaml`, and `customToPrime.yaml` when set.
    pub sync_files: Vec<PathBuf>,
    /// `customToPrime.yaml` and the path under Prime its images go to.
    pub custom: Option<(PathBuf, RepoPath)>,
    /// `docker-to-prime` and `staging-to-prime`, resolved against the config's directory
    /// (what `ferry charts scan` writes).
    pub docker_to_prime: Option<PathBuf>,
    pub staging_to_prime: Option<PathBuf>,
}

pub fn read_config(path: &Path) -> Result<ChartsConfig, ManifestError> {
    let text = yaml::read_file(path)?;
    let doc: ConfigYaml = yaml::parse(path, &text)?;
    let mut problems = Problems::new(path);
    let mut registry = |field: &'static str, value: &Spanned<String>| {
        RegistryPath::parse(&value.value).map_err(|e| problems.field(line_of(value), field, e)).ok()
    };
    let staging = registry("staging", &doc.staging);
    let prime = registry("prime", &doc.prime);
    let docker_hub = match &doc.docker_hub {
        Some(value) => registry("docker-hub", value),
        None => RegistryPath::parse(ferry_model::name::DOCKER_HUB).ok(),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sync_files: Vec<PathBuf> =
        [&doc.docker_to_prime, &doc.staging_to_prime].into_iter().flatten().map(|f| base.join(f)).collect();
    let custom = match (&doc.custom_to_prime, &doc.custom_path) {
        (None, None) => None,
        (Some(file), Some(custom_path)) => match RepoPath::parse(custom_path.value.trim_matches('/')) {
            Ok(custom_path) => Some((base.join(file), custom_path)),
            Err(e) => {
                problems.field(line_of(custom_path), "custom-path", e);
                None
            }
        },
        (Some(_), None) => {
            problems.field(0, "custom-path", "`custom-to-prime` needs `custom-path`, the path under Prime");
            None
        }
        (None, Some(custom_path)) => {
            problems.field(line_of(custom_path), "custom-to-prime", "`custom-path` needs `custom-to-prime`");
            None
        }
    };
    sync_files.extend(custom.iter().map(|(file, _)| file.clone()));
    if sync_files.is_empty() {
        problems.field(
            0,
            "docker-to-prime",
            "none of `docker-to-prime`, `staging-to-prime` and `custom-to-prime` is set",
        );
    }
    let registries = (staging, prime, docker_hub);
    problems.finish()?;
    // Each `None` above was reported as a problem, so `finish` has already returned.
    let (Some(staging), Some(prime), Some(docker_hub)) = registries else {
        return Err(ManifestError::Layout {
            path: path.to_owned(),
            message: "invalid registry names".into(),
        });
    };
    Ok(ChartsConfig {
        staging,
        docker_hub,
        prime,
        deny_prerelease: doc.deny_prerelease.unwrap_or(true),
        sync_files,
        custom,
        docker_to_prime: doc.docker_to_prime.as_ref().map(|f| base.join(f)),
        staging_to_prime: doc.staging_to_prime.as_ref().map(|f| base.join(f)),
    })
}

pub(crate) fn sync_file_paths(config: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    Ok(read_config(config)?.sync_files)
}

/// Loads the config at `path` and both sync files it names.
pub fn load(path: &Path, policy: &Policy) -> Result<DesiredState, ManifestError> {
    let config = read_config(path)?;
    let mut desired = DesiredState::default();
    let mut problems = Vec::new();
    for file in &config.sync_files {
        match yaml::read_file(file).and_then(|text| parse_sync_file(file, &text, &config, policy)) {
            Ok(state) => desired.extend(state),
            Err(e) => problems.push(e),
        }
    }
    ManifestError::from_problems(problems)?;
    Ok(desired)
}

/// Parses one sync file (`repository: [tags]`).
pub fn parse_sync_file(
    path: &Path,
    text: &str,
    config: &ChartsConfig,
    policy: &Policy,
) -> Result<DesiredState, ManifestError> {
    let doc: Option<Pairs<Spanned<String>, Vec<Spanned<String>>>> = yaml::parse(path, text)?;
    let file: Arc<str> = path.display().to_string().into();
    let mut problems = Problems::new(path);
    let mut entries = Vec::new();
    for (repo_text, tag_texts) in doc.map(|d| d.0).unwrap_or_default() {
        let line = line_of(&repo_text);
        let custom = config.custom.as_ref().filter(|(file, _)| file == path).map(|(_, p)| p);
        let ends = RepoPath::parse(&repo_text.value).and_then(|name| {
            let prime = match custom {
                // `<prime>/<custom path>/<repository without "rancher/">`.
                Some(custom_path) => {
                    let short = repo_text.value.strip_prefix("rancher/").unwrap_or(&repo_text.value);
                    config.prime.join(&custom_path.join(&RepoPath::parse(short)?)?)?
                }
                None => config.prime.join(&name)?,
            };
            Ok((config.staging.join(&name)?, config.docker_hub.join(&name)?, prime))
        });
        let (staging, docker_hub, prime) = match ends {
            Ok(ends) => ends,
            Err(e) => {
                problems.invalid(line, "repository", format!("{e}; the repository is left out"));
                continue;
            }
        };
        if tag_texts.is_empty() {
            problems.warn(line, "tags", format!("{} lists no tags", repo_text.value));
        }
        // The custom (release candidate) file syncs from staging only, and allows prereleases.
        let sources: Arc<[_]> = match custom {
            Some(_) => Arc::from([policy.source(staging, true)]),
            None => Arc::from([policy.source(staging, true), policy.source(docker_hub, false)]),
        };
        let destinations: Arc<[_]> =
            Arc::from([policy.destination(prime, config.deny_prerelease && custom.is_none())]);
        let mut tags: Vec<Tag> = Vec::new();
        for tag_text in tag_texts {
            let tag_line = line_of(&tag_text);
            match Tag::parse(&tag_text.value) {
                // The charts sync never treats a cosign artifact tag as an image.
                Ok(tag) if tag.as_str().starts_with("sha256-") => problems.warn(
                    tag_line,
                    "tags",
                    format!("{tag} is a signature or attestation tag, not an image; skipped"),
                ),
                Ok(tag) if tags.contains(&tag) => {
                    problems.warn(tag_line, "tags", format!("tag {tag} is listed twice; read once"))
                }
                Ok(tag) => {
                    tags.push(tag.clone());
                    entries.push(Entry {
                        sources: sources.clone(),
                        pin: TagOrDigest::Tag(tag.clone()),
                        tags: vec![tag],
                        destinations: destinations.clone(),
                        origin: Origin {
                            source: file.clone(),
                            line: u32::try_from(tag_line).unwrap_or(u32::MAX),
                        },
                    });
                }
                Err(e) => problems.invalid(tag_line, "tags", format!("{e}; this tag is left out")),
            }
        }
    }
    let notices = problems.finish_with_notices()?;
    Ok(DesiredState { entries, notices })
}
