//! `ferry charts scan`: the images every chart archive's values name, split as Rancher's
//! charts-build-scripts (`scan-registries`) splits them into `stagingToPrime.yaml` and
//! `dockerToPrime.yaml`, keeping only what Prime lacks.
//!
//! Reading: every `*.tgz` under the assets directory (symbolic links refused), gunzipped and
//! untarred in memory (`flate2`, `tar`; no shell-out), every `values.yaml`/`values.yml` in it
//! (subcharts' too), scanned by [`crate::chart_values`]. Archives and values files are bounded in
//! size; an archive that cannot be read is reported and the others are scanned.
//!
//! Deciding ([`split`], pure): a tag Prime has is done; one staging has goes to
//! `stagingToPrime.yaml` (staging's images are signed); one only Docker Hub has goes to
//! `dockerToPrime.yaml`; one nowhere is reported. Before that, what the sync must never copy is
//! dropped with the reason: prerelease tags (`-rc`, `-alpha`, `-beta`, any case) and `sha256-*`
//! tags. Images outside Docker Hub, and images pinned only by digest, are reported and left out:
//! the sync files name Docker Hub repositories and tags.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use ferry_model::{Notice, NoticeKind, Origin};

use crate::chart_values;
use crate::error::ManifestError;

/// The largest chart archive read, and the largest values file inside one.
const MAX_ARCHIVE_BYTES: u64 = 64 * 1024 * 1024;
const MAX_VALUES_BYTES: u64 = 16 * 1024 * 1024;

/// Repository (Docker Hub style, `rancher/fleet`) -> tags.
pub type RepoTags = BTreeMap<String, BTreeSet<String>>;

/// What the archives ask for, and what was left out of it.
#[derive(Debug, Default)]
pub struct Wanted {
    pub images: RepoTags,
    pub notices: Vec<Notice>,
    pub archives: usize,
    pub values_files: usize,
}

/// Every `.tgz` under `dir`, sorted.
pub fn archives(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|source| ManifestError::Read { path: current.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| ManifestError::Read { path: current.clone(), source })?;
            let path = entry.path();
            let kind =
                entry.file_type().map_err(|source| ManifestError::Read { path: path.clone(), source })?;
            if kind.is_symlink() {
                return Err(ManifestError::Layout {
                    path,
                    message: "is a symbolic link; Ferry only reads regular files and directories".into(),
                });
            } else if kind.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "tgz") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The values files of one chart archive: (entry path, text).
pub fn values_files(archive: &Path) -> Result<Vec<(String, String)>, ManifestError> {
    let layout = |message: String| ManifestError::Layout { path: archive.to_owned(), message };
    let meta = std::fs::metadata(archive)
        .map_err(|source| ManifestError::Read { path: archive.to_owned(), source })?;
    if meta.len() > MAX_ARCHIVE_BYTES {
        return Err(layout(format!("is {} bytes; the limit is {MAX_ARCHIVE_BYTES}", meta.len())));
    }
    let file = std::fs::File::open(archive)
        .map_err(|source| ManifestError::Read { path: archive.to_owned(), source })?;
    values_in_archive(file).map_err(layout)
}

/// The values files (entry path, text) of a gzipped chart archive read from `archive`, in
/// memory, bounded: what `charts scan` and discovery's chart fallback both read.
pub fn values_in_archive(archive: impl std::io::Read) -> Result<Vec<(String, String)>, String> {
    // The decompressed stream is bounded too: a small archive may expand without limit.
    let gunzipped = flate2::read::GzDecoder::new(archive).take(MAX_ARCHIVE_BYTES * 8);
    let mut tar = tar::Archive::new(gunzipped);
    let mut out = Vec::new();
    let entries = tar.entries().map_err(|e| format!("is not a gzipped tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("cannot be read: {e}"))?;
        let name =
            entry.path().map_err(|e| format!("has an entry with a bad path: {e}"))?.display().to_string();
        let base = name.rsplit('/').next().unwrap_or_default();
        if !entry.header().entry_type().is_file() || !(base == "values.yaml" || base == "values.yml") {
            continue;
        }
        if entry.size() > MAX_VALUES_BYTES {
            return Err(format!("{name} is {} bytes; the limit is {MAX_VALUES_BYTES}", entry.size()));
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(|e| format!("{name} cannot be read as UTF-8 text: {e}"))?;
        out.push((name, text));
    }
    out.sort();
    Ok(out)
}

/// Where a value came from: `<archive>!<entry>`.
fn origin(archive: &Path, entry: &str) -> PathBuf {
    PathBuf::from(format!("{}!{entry}", archive.display()))
}

/// What every archive under `dir` asks for. One archive or values file that cannot be read is
/// an `invalid` notice; the rest are still scanned.
pub fn wanted(dir: &Path) -> Result<Wanted, ManifestError> {
    let mut out = Wanted::default();
    for archive in archives(dir)? {
        out.archives += 1;
        let files = match values_files(&archive) {
            Ok(files) => files,
            Err(e) => {
                out.notices.push(Notice {
                    kind: NoticeKind::Invalid,
                    origin: Origin::new(archive.display().to_string(), 0),
                    field: "archive".into(),
                    message: format!("{e}; its images are left out"),
                });
                continue;
            }
        };
        for (entry, text) in files {
            out.values_files += 1;
            let path = origin(&archive, &entry);
            match chart_values::images(&path, &text) {
                Ok((images, notices)) => {
                    out.notices.extend(notices);
                    for image in images {
                        add(&mut out, &path, image);
                    }
                }
                Err(e) => out.notices.push(Notice {
                    kind: NoticeKind::Invalid,
                    origin: Origin::new(path.display().to_string(), 0),
                    field: "values".into(),
                    message: format!("{e}; its images are left out"),
                }),
            }
        }
    }
    Ok(out)
}

fn add(out: &mut Wanted, path: &Path, image: chart_values::ImageUse) {
    let mut notice = |kind, field: &str, message: String| {
        out.notices.push(Notice {
            kind,
            origin: Origin::new(path.display().to_string(), u32::try_from(image.line).unwrap_or(u32::MAX)),
            field: field.into(),
            message,
        });
    };
    let Some(tag) = &image.tag else {
        notice(
            NoticeKind::Warning,
            "digest",
            format!("{} is pinned by digest only; the sync files list tags. Left out", image.repository),
        );
        return;
    };
    let first = image.repository.split('/').next().unwrap_or_default();
    let on_hub = !(first.contains('.') || first.contains(':') || first == "localhost");
    let repository = if on_hub {
        image.repository.clone()
    } else if let Some(rest) = image.repository.strip_prefix("docker.io/") {
        rest.to_owned()
    } else {
        notice(
            NoticeKind::Warning,
            "repository",
            format!(
                "{}:{tag} is not a Docker Hub image; the charts sync copies Docker Hub and staging images. Left out",
                image.repository
            ),
        );
        return;
    };
    let lower = tag.to_ascii_lowercase();
    if ["-rc", "-alpha", "-beta"].iter().any(|m| lower.contains(m)) {
        notice(
            NoticeKind::Warning,
            "tag",
            format!("{repository}:{tag} is a prerelease; Prime never gets one. Left out"),
        );
        return;
    }
    if tag.starts_with("sha256-") {
        notice(
            NoticeKind::Warning,
            "tag",
            format!("{repository}:{tag} is a signature or attestation tag, not an image. Left out"),
        );
        return;
    }
    out.images.entry(repository).or_default().insert(tag.clone());
}

/// The split of what is wanted against what each registry holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub staging_to_prime: RepoTags,
    pub docker_to_prime: RepoTags,
    /// Wanted, absent from Prime, staging and Docker Hub.
    pub missing: RepoTags,
    /// Already in Prime.
    pub present: usize,
}

/// Decides, per wanted tag, where it comes from (pure). `prime`, `staging` and `hub` are the
/// tags each registry lists for the wanted repositories.
pub fn split(wanted: &RepoTags, prime: &RepoTags, staging: &RepoTags, hub: &RepoTags) -> Split {
    let mut out = Split::default();
    let has = |map: &RepoTags, repo: &str, tag: &str| map.get(repo).is_some_and(|tags| tags.contains(tag));
    for (repo, tags) in wanted {
        for tag in tags {
            let target = if has(prime, repo, tag) {
                out.present += 1;
                continue;
            } else if has(staging, repo, tag) {
                &mut out.staging_to_prime
            } else if has(hub, repo, tag) {
                &mut out.docker_to_prime
            } else {
                &mut out.missing
            };
            target.entry(repo.clone()).or_default().insert(tag.clone());
        }
    }
    out
}

/// A sync file's text (`repository:` then `- tag` lines, sorted), with a header comment.
pub fn write_sync_file(images: &RepoTags, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if images.is_empty() {
        out.push_str("{}\n");
    }
    for (repo, tags) in images {
        let _ = writeln!(out, "{repo}:");
        for tag in tags {
            let _ = writeln!(out, "  - \"{tag}\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn tags(pairs: &[(&str, &[&str])]) -> RepoTags {
        pairs.iter().map(|(r, t)| ((*r).to_owned(), t.iter().map(|t| (*t).to_owned()).collect())).collect()
    }

    #[test]
    fn what_prime_lacks_comes_from_staging_first_then_docker_hub() {
        let wanted = tags(&[("rancher/fleet", &["v1", "v2", "v3", "v4"]), ("rancher/new", &["1.0"])]);
        let prime = tags(&[("rancher/fleet", &["v1"])]);
        let staging = tags(&[("rancher/fleet", &["v2", "v3"])]);
        let hub = tags(&[("rancher/fleet", &["v3", "v4"]), ("rancher/new", &["0.9"])]);
        let got = split(&wanted, &prime, &staging, &hub);
        assert_eq!(got.present, 1);
        assert_eq!(got.staging_to_prime, tags(&[("rancher/fleet", &["v2", "v3"])]));
        assert_eq!(got.docker_to_prime, tags(&[("rancher/fleet", &["v4"])]));
        assert_eq!(got.missing, tags(&[("rancher/new", &["1.0"])]));
        assert_eq!(
            write_sync_file(&got.docker_to_prime, "written by ferry"),
            "# written by ferry\nrancher/fleet:\n  - \"v4\"\n"
        );
        assert_eq!(write_sync_file(&RepoTags::new(), "x"), "# x\n{}\n");
    }
}
