//! `HelmLatest`: the images the latest version of a chart uses.
//!
//! With `helm` on the PATH, as the reference does: `helm repo add` (into a temporary
//! repository config, never the user's), then `helm template` per values set, and every image
//! in the rendered manifests. Without it, the fallback reads the repository's `index.yaml`,
//! downloads the latest stable version's archive and scans its values files
//! ([`ferry_manifests::chart_values`]); the `--set` values of each set cannot be applied there,
//! and the result says which way was used.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use ferry_manifests::chart_values;
use ferry_manifests::semver_range::Version;
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

/// Every image reference the latest `chart` of `helm_repo` uses, over every values set.
pub async fn images(
    http: &reqwest::Client,
    helm_repo: &str,
    chart: &str,
    sets: &BTreeMap<String, Vec<String>>,
) -> Result<(Vec<String>, Method), DiscoverError> {
    if helm_on_path() {
        let repo = helm_repo.to_owned();
        let (chart, sets) = (chart.to_owned(), sets.clone());
        let found = tokio::task::spawn_blocking(move || with_helm(&repo, &chart, &sets))
            .await
            .map_err(|e| DiscoverError::Helm(e.to_string()))??;
        return Ok((found, Method::HelmTemplate));
    }
    Ok((from_values(http, helm_repo, chart).await?, Method::ValuesScan))
}

fn with_helm(
    helm_repo: &str,
    chart: &str,
    sets: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, DiscoverError> {
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
    let name = "ferry-discover";
    run(&["repo".into(), "add".into(), name.into(), helm_repo.into()])?;
    let mut found = Vec::new();
    for (environment, values) in sets {
        let mut args =
            vec!["template".to_owned(), format!("{chart}-{environment}"), format!("{name}/{chart}")];
        for value in values {
            args.push("--set".into());
            args.push(value.clone());
        }
        let rendered = run(&args)?;
        found.extend(references_in(Path::new(&format!("{chart} ({environment})")), &rendered));
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

/// The fallback: the latest stable version in the repository index, its values files scanned.
async fn from_values(
    http: &reqwest::Client,
    helm_repo: &str,
    chart: &str,
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
    let latest = versions
        .iter()
        .filter_map(|e| Some((Version::parse(&e.version)?, e)))
        .filter(|(v, _)| v.pre.is_empty())
        .max_by(|a, b| a.0.cmp(&b.0))
        .ok_or_else(|| DiscoverError::Helm(format!("{index_url}: chart {chart:?} has no stable version")))?
        .1;
    let url = latest
        .urls
        .first()
        .ok_or_else(|| DiscoverError::Helm(format!("{index_url}: {chart} {} has no URL", latest.version)))?;
    let url = if url.contains("://") { url.clone() } else { format!("{base}/{url}") };
    let archive = download(http, &url).await?;
    let mut tar =
        tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()).take(MAX_DOWNLOAD as u64 * 8));
    let mut found = Vec::new();
    let entries = tar.entries().map_err(|e| DiscoverError::Helm(format!("{url}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| DiscoverError::Helm(format!("{url}: {e}")))?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        if !(name.ends_with("/values.yaml") || name.ends_with("/values.yml")) {
            continue;
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(|e| DiscoverError::Helm(format!("{url}!{name}: {e}")))?;
        found.extend(references_in(Path::new(&format!("{url}!{name}")), &text));
    }
    Ok(found)
}
