//! `HelmLatest`: the images the latest version of a chart uses.
//!
//! With `helm` on the PATH, as the reference does: `helm repo add` (into a temporary
//! repository config, never the user's), then `helm template` per values set, and every image
//! in the rendered manifests. Without it, the fallback reads the repository's `index.yaml`,
//! downloads the latest stable version's archive and scans its values files
//! ([`crate::chart_values`]); the `--set` values of each set cannot be applied there,
//! and the result says which way was used.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::autoupdate::{ChartOptions, HelmSource};
use crate::chart_values;
use ferry_manifests::semver_range::{Range, Version};
use serde::Deserialize;

use crate::DiscoverError;

/// How the images were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    HelmTemplate,
    ValuesScan,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::HelmTemplate => "helm template",
            Method::ValuesScan => {
                "a scan of the chart's values (helm is not on the PATH; --set values not applied)"
            }
        }
    }
}

/// The largest index and chart archive downloaded.
const MAX_DOWNLOAD: usize = 64 * 1024 * 1024;

#[derive(Deserialize)]
struct IndexYaml {
    #[serde(default)]
    entries: BTreeMap<String, Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
}

fn helm_on_path() -> bool {
    Command::new("helm").arg("version").output().is_ok_and(|o| o.status.success())
}

/// The image references (`repo:tag`, `repo@digest`) in `docs`, a stream of YAML documents.
fn references_in(path: &Path, docs: &str) -> Vec<String> {
    let mut out = Vec::new();
    for doc in docs.split("\n---") {
        let Ok((images, _)) = chart_values::images(path, doc) else { continue };
        for image in images {
            let mut reference = image.repository;
            if let Some(tag) = image.tag {
                reference = format!("{reference}:{tag}");
            }
            if let Some(digest) = image.digest {
                reference = format!("{reference}@{digest}");
            }
            out.push(reference);
        }
    }
    out
}

/// Every image reference `chart` uses, over every values set and every version asked for.
pub async fn images(
    http: &reqwest::Client,
    source: &HelmSource,
    chart: &str,
    options: &ChartOptions,
) -> Result<(Vec<String>, Method), DiscoverError> {
    if helm_on_path() {
        let (source, chart, options) = (source.clone(), chart.to_owned(), options.clone());
        let found = tokio::task::spawn_blocking(move || with_helm(&source, &chart, &options))
            .await
            .map_err(|e| DiscoverError::Helm(e.to_string()))??;
        return Ok((found, Method::HelmTemplate));
    }
    let found = match source {
        HelmSource::Repository(url) => from_repository(http, url, chart, options).await?,
        HelmSource::Directory(dir) => from_directory(&Path::new(dir).join(chart))?,
        HelmSource::Oci => {
            return Err(DiscoverError::Helm(format!(
                "{chart}: helm-oci charts are rendered with helm, which is not on the PATH"
            )));
        }
    };
    Ok((found, Method::ValuesScan))
}

fn with_helm(source: &HelmSource, chart: &str, options: &ChartOptions) -> Result<Vec<String>, DiscoverError> {
    let home = tempfile::tempdir().map_err(|e| DiscoverError::Helm(e.to_string()))?;
    let run = |args: &[String]| -> Result<String, DiscoverError> {
        let out = Command::new("helm")
            .args(args)
            .env("HELM_REPOSITORY_CONFIG", home.path().join("repositories.yaml"))
            .env("HELM_REPOSITORY_CACHE", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path())
            .env("HELM_CACHE_HOME", home.path())
            .output()
            .map_err(|e| DiscoverError::Helm(format!("helm {}: {e}", args.join(" "))))?;
        if !out.status.success() {
            return Err(DiscoverError::Helm(format!(
                "helm {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let reference = match source {
        HelmSource::Repository(url) => {
            run(&["repo".into(), "add".into(), "ferry-discover".into(), url.clone()])?;
            format!("ferry-discover/{chart}")
        }
        HelmSource::Oci => chart.to_owned(),
        HelmSource::Directory(dir) => Path::new(dir).join(chart).display().to_string(),
    };
    let versions: Vec<Option<&String>> = std::iter::once(options.version.as_ref())
        .chain(options.additional_versions.iter().map(Some))
        .collect();
    let mut found = Vec::new();
    for version in versions {
        let mut common = Vec::new();
        if options.devel {
            common.push("--devel".to_owned());
        }
        if let Some(version) = version {
            common.extend(["--version".to_owned(), version.clone()]);
        }
        for (name, set) in &options.sets {
            let mut args = vec!["template".to_owned(), format!("{chart}-{name}"), reference.clone()];
            args.extend(common.iter().cloned());
            for value in &set.values {
                args.extend(["--set".to_owned(), value.clone()]);
            }
            if let Some(kube) = &set.kube_version {
                args.extend(["--kube-version".to_owned(), kube.clone()]);
            }
            found.extend(references_in(Path::new(&format!("{chart} ({name})")), &run(&args)?));
        }
        let mut args = vec!["show".to_owned(), "values".to_owned(), reference.clone()];
        args.extend(common);
        found.extend(references_in(Path::new(&format!("{chart} values")), &run(&args)?));
    }
    Ok(found)
}

/// The values files of a chart directory and its subcharts, scanned.
fn from_directory(dir: &Path) -> Result<Vec<String>, DiscoverError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for name in ["values.yaml", "values.yml"] {
            let path = current.join(name);
            if path.is_file() {
                let text = ferry_manifests::yaml::read_file(&path)
                    .map_err(|e| DiscoverError::Helm(e.to_string()))?;
                found.extend(references_in(&path, &text));
            }
        }
        if let Ok(entries) = std::fs::read_dir(current.join("charts")) {
            pending.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    Ok(found)
}

async fn download(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, DiscoverError> {
    let response =
        http.get(url).send().await.map_err(|e| DiscoverError::Request(format!("GET {url}: {e}")))?;
    if !response.status().is_success() {
        return Err(DiscoverError::Request(format!("GET {url}: {}", response.status())));
    }
    let bytes = response.bytes().await.map_err(|e| DiscoverError::Request(format!("GET {url}: {e}")))?;
    if bytes.len() > MAX_DOWNLOAD {
        return Err(DiscoverError::Request(format!("GET {url}: larger than {MAX_DOWNLOAD} bytes")));
    }
    Ok(bytes.to_vec())
}

/// The fallback for a chart repository: from its `index.yaml`, the latest version (stable
/// unless `devel`), or the highest matching `version` and each additional version (Masterminds
/// constraints, as helm's `--version` reads them), each archive's values files scanned.
async fn from_repository(
    http: &reqwest::Client,
    helm_repo: &str,
    chart: &str,
    options: &ChartOptions,
) -> Result<Vec<String>, DiscoverError> {
    let base = helm_repo.trim_end_matches('/');
    let index_url = format!("{base}/index.yaml");
    let index = download(http, &index_url).await?;
    let text = String::from_utf8(index).map_err(|e| DiscoverError::Helm(format!("{index_url}: {e}")))?;
    let index: IndexYaml =
        serde_saphyr::from_str(&text).map_err(|e| DiscoverError::Helm(format!("{index_url}: {e}")))?;
    let versions = index
        .entries
        .get(chart)
        .ok_or_else(|| DiscoverError::Helm(format!("{index_url} has no chart {chart:?}")))?;
    let pick = |constraint: Option<&String>| -> Result<&IndexEntry, DiscoverError> {
        let range = constraint
            .map(|c| Range::parse(c).map_err(|e| DiscoverError::Helm(format!("{chart}: version {c:?}: {e}"))))
            .transpose()?;
        versions
            .iter()
            .filter_map(|e| Some((Version::parse(&e.version)?, e)))
            .filter(|(v, _)| match &range {
                Some(range) => {
                    range.matches(v)
                        || (options.devel && range.matches(&Version { pre: String::new(), ..v.clone() }))
                }
                None => options.devel || v.pre.is_empty(),
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, e)| e)
            .ok_or_else(|| {
                DiscoverError::Helm(format!(
                    "{index_url}: chart {chart:?} has no version matching {constraint:?}"
                ))
            })
    };
    let mut chosen = vec![pick(options.version.as_ref())?];
    for extra in &options.additional_versions {
        chosen.push(pick(Some(extra))?);
    }
    let mut found = Vec::new();
    for entry in chosen {
        let url = entry.urls.first().ok_or_else(|| {
            DiscoverError::Helm(format!("{index_url}: {chart} {} has no URL", entry.version))
        })?;
        let url = if url.contains("://") { url.clone() } else { format!("{base}/{url}") };
        let archive = download(http, &url).await?;
        let files = crate::chart_scan::values_in_archive(archive.as_slice())
            .map_err(|e| DiscoverError::Helm(format!("{url}: {e}")))?;
        for (name, text) in files {
            found.extend(references_in(Path::new(&format!("{url}!{name}")), &text));
        }
    }
    Ok(found)
}
