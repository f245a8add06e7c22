//! kpromo promoter manifests: plain files (`--manifest FILE`) and thin-manifest directories
//! (`--thin-manifest-dir DIR`), plus the `images.yaml` writer used by `ferry snapshot`.
//!
//! A plain manifest holds `registries` and `images`. A thin-manifest directory splits them:
//! `manifests/<sub>/promoter-manifest.yaml` holds the registries and `images/<sub>/images.yaml`
//! the images. Exactly one registry has `src: true`; every other one is a destination. Each
//! image has a `dmap` from digest to tags, where `[]` means tagless.
//!
//! The same image name may appear in several list entries (real kops files repeat names once
//! per release) and one digest may appear under two names; both are legal and are merged by
//! the planner.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use ferry_model::{
    DesiredState, Destination, Digest, Entry, Origin, RegistryPath, RepoPath, Source, Tag, TagOrDigest,
};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::error::ManifestError;
use crate::input::Policy;
use crate::yaml::{self, Pairs, Problems, Spanned, line_of};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainYaml {
    registries: Vec<RegistryYaml>,
    #[serde(default)]
    images: Vec<ImageYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThinYaml {
    registries: Vec<RegistryYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RegistryYaml {
    name: Spanned<String>,
    #[serde(default)]
    src: Option<Spanned<bool>>,
    // Accepted because real manifests carry it; Ferry authenticates differently (see README).
    #[serde(default)]
    #[allow(dead_code)]
    service_account: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageYaml {
    name: Spanned<String>,
    dmap: Pairs<Spanned<String>, Vec<Spanned<String>>>,
}

/// The `registries` section, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registries {
    pub source: RegistryPath,
    /// In file order; the first is the primary destination.
    pub destinations: Vec<RegistryPath>,
}

/// One image of an `images.yaml` (or of a plain manifest's `images`), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDmap {
    pub name: RepoPath,
    pub line: u64,
    pub digests: Vec<DigestTags>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestTags {
    pub digest: Digest,
    /// Empty means tagless.
    pub tags: Vec<Tag>,
    pub line: u64,
}

/// Parses a plain manifest file (`registries` + `images`).
pub fn load_manifest_file(path: &Path, policy: &Policy) -> Result<DesiredState, ManifestError> {
    let text = yaml::read_file(path)?;
    let doc: PlainYaml = yaml::parse(path, &text)?;
    let registries = check_registries(path, &doc.registries)?;
    let images = check_images(path, doc.images)?;
    expand(path, &registries, &images, policy)
}

/// Parses a thin-manifest directory. Symbolic links anywhere under `dir` are refused, and only
/// the fixed paths `manifests/<sub>/promoter-manifest.yaml` and `images/<sub>/images.yaml` are
/// read, so nothing outside `dir` is ever opened.
pub fn load_thin_dir(dir: &Path, policy: &Policy) -> Result<DesiredState, ManifestError> {
    let subprojects = thin_subprojects(dir)?;
    load_thin_subprojects(dir, &subprojects, policy)
}

/// Loads only the named subprojects of a thin-manifest directory. A diff-only plan uses this
/// to parse just the subprojects a change touched; the others cannot contribute new edges.
/// A named subproject that does not exist contributes nothing (it was added or removed by the
/// change).
pub fn load_thin_subprojects(
    dir: &Path,
    subprojects: &[String],
    policy: &Policy,
) -> Result<DesiredState, ManifestError> {
    let mut desired = DesiredState::default();
    let mut problems = Vec::new();
    for sub in subprojects {
        if sub.contains('/') || sub.starts_with('.') {
            problems.push(ManifestError::Layout {
                path: dir.join(sub),
                message: "is not a subproject name".into(),
            });
            continue;
        }
        if !dir.join("manifests").join(sub).exists() {
            continue;
        }
        match load_subproject(dir, sub, policy) {
            Ok(state) => desired.extend(state),
            Err(e) => problems.push(e),
        }
    }
    ManifestError::from_problems(problems)?;
    Ok(desired)
}

fn load_subproject(dir: &Path, sub: &str, policy: &Policy) -> Result<DesiredState, ManifestError> {
    let manifest_path = dir.join("manifests").join(sub).join("promoter-manifest.yaml");
    let images_path = dir.join("images").join(sub).join("images.yaml");
    let text = yaml::read_file(&manifest_path)?;
    let doc: ThinYaml = yaml::parse(&manifest_path, &text)?;
    let registries = check_registries(&manifest_path, &doc.registries)?;
    let images = read_images_yaml(&images_path)?;
    expand(&images_path, &registries, &images, policy)
}

/// Lists the subproject names of a thin-manifest directory, checking its layout.
pub fn thin_subprojects(dir: &Path) -> Result<Vec<String>, ManifestError> {
    let layout = |path: &Path, message: String| ManifestError::Layout { path: path.to_owned(), message };
    let manifests = dir.join("manifests");
    let images = dir.join("images");
    for (sub_dir, name) in [(&manifests, "manifests"), (&images, "images")] {
        match std::fs::symlink_metadata(sub_dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(layout(sub_dir, "is a symbolic link; refusing to follow it".into()));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(layout(sub_dir, "is not a directory".into())),
            Err(_) => {
                let found = list_names(dir).unwrap_or_default();
                return Err(layout(
                    dir,
                    format!(
                        "not a kpromo thin-manifest directory: it has no {name}/ directory (it holds: {}); \
                         expected manifests/<sub>/promoter-manifest.yaml and images/<sub>/images.yaml",
                        if found.is_empty() { "nothing".to_owned() } else { found.join(", ") }
                    ),
                ));
            }
        }
    }
    let mut subs = Vec::new();
    for name in
        list_names(&manifests).map_err(|source| ManifestError::Read { path: manifests.clone(), source })?
    {
        let path = manifests.join(&name);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|source| ManifestError::Read { path: path.clone(), source })?;
        if meta.file_type().is_symlink() {
            return Err(layout(&path, "is a symbolic link; refusing to follow it".into()));
        }
        if meta.is_dir() {
            subs.push(name);
        }
        // Plain files beside the subproject directories (OWNERS, README.md) are not manifests.
    }
    let mut problems = Vec::new();
    for sub in &subs {
        for (path, what) in [
            (manifests.join(sub).join("promoter-manifest.yaml"), "promoter-manifest.yaml"),
            (images.join(sub).join("images.yaml"), "images.yaml"),
        ] {
            if std::fs::symlink_metadata(&path).is_err() {
                problems.push(layout(&path, format!("is missing: every manifests/<sub> needs a {what}")));
            }
        }
        let images_sub = images.join(sub);
        if std::fs::symlink_metadata(&images_sub).is_ok_and(|m| m.file_type().is_symlink()) {
            problems.push(layout(&images_sub, "is a symbolic link; refusing to follow it".into()));
        }
    }
    for name in list_names(&images).map_err(|source| ManifestError::Read { path: images.clone(), source })? {
        let path = images.join(&name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) && !subs.contains(&name) {
            problems.push(layout(&path, format!("has no matching manifests/{name}/promoter-manifest.yaml")));
        }
    }
    ManifestError::from_problems(problems)?;
    if subs.is_empty() {
        return Err(layout(&manifests, "holds no <sub>/promoter-manifest.yaml".into()));
    }
    Ok(subs)
}

fn list_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Reads and validates one `images.yaml`.
pub fn read_images_yaml(path: &Path) -> Result<Vec<ImageDmap>, ManifestError> {
    let text = yaml::read_file(path)?;
    parse_images_yaml(path, &text)
}

/// Validates the text of an `images.yaml`; `path` is used only in error messages.
pub fn parse_images_yaml(path: &Path, text: &str) -> Result<Vec<ImageDmap>, ManifestError> {
    // An empty file is an empty list, as in kpromo.
    let images: Option<Vec<ImageYaml>> = yaml::parse(path, text)?;
    check_images(path, images.unwrap_or_default())
}

fn check_registries(path: &Path, registries: &[RegistryYaml]) -> Result<Registries, ManifestError> {
    let mut problems = Problems::new(path);
    let mut source: Option<(RegistryPath, u64)> = None;
    let mut destinations: Vec<RegistryPath> = Vec::new();
    let mut seen: FxHashMap<RegistryPath, u64> = FxHashMap::default();
    for registry in registries {
        let line = line_of(&registry.name);
        let parsed = match RegistryPath::parse(&registry.name.value) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.field(line, "registries.name", e);
                continue;
            }
        };
        if let Some(first) = seen.insert(parsed.clone(), line) {
            problems.field(
                line,
                "registries.name",
                format!("{parsed} is listed twice (first at line {first})"),
            );
            continue;
        }
        let is_source = registry.src.as_ref().is_some_and(|s| s.value);
        match (&source, is_source) {
            (Some((first, first_line)), true) => problems.field(
                line,
                "registries.src",
                format!("a second `src: true` registry ({parsed}); {first} at line {first_line} is already the source"),
            ),
            (None, true) => source = Some((parsed, line)),
            (_, false) => destinations.push(parsed),
        }
    }
    if problems.list.is_empty() {
        if source.is_none() {
            problems.field(0, "registries", "no registry has `src: true`; exactly one must be the source");
        }
        if destinations.is_empty() {
            problems.field(0, "registries", "no destination registry: only the `src: true` one is listed");
        }
    }
    problems.finish()?;
    let (source, _) = source.expect("checked above");
    Ok(Registries { source, destinations })
}

fn check_images(path: &Path, images: Vec<ImageYaml>) -> Result<Vec<ImageDmap>, ManifestError> {
    let mut problems = Problems::new(path);
    let mut out = Vec::with_capacity(images.len());
    for image in images {
        let line = line_of(&image.name);
        let name = match RepoPath::parse(&image.name.value) {
            Ok(name) => Some(name),
            Err(e) => {
                problems.field(line, "images.name", e);
                None
            }
        };
        let mut digests = Vec::with_capacity(image.dmap.0.len());
        for (digest_text, tag_texts) in image.dmap.0 {
            let digest_line = line_of(&digest_text);
            let digest = match Digest::parse(&digest_text.value) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.field(digest_line, "images.dmap", e);
                    None
                }
            };
            let mut tags: Vec<Tag> = Vec::with_capacity(tag_texts.len());
            for tag_text in tag_texts {
                match Tag::parse(&tag_text.value) {
                    Ok(tag) if tags.contains(&tag) => {
                        problems.field(
                            line_of(&tag_text),
                            "images.dmap",
                            format!("tag {tag} is listed twice"),
                        );
                    }
                    Ok(tag) => tags.push(tag),
                    Err(e) => problems.field(line_of(&tag_text), "images.dmap", e),
                }
            }
            if let Some(digest) = digest {
                digests.push(DigestTags { digest, tags, line: digest_line });
            }
        }
        if let Some(name) = name {
            out.push(ImageDmap { name, line, digests });
        }
    }
    problems.finish()?;
    Ok(out)
}

/// Turns validated registries and images into desired-state entries: one entry per
/// (image, digest), whose destinations are the image under every destination registry.
fn expand(
    images_path: &Path,
    registries: &Registries,
    images: &[ImageDmap],
    policy: &Policy,
) -> Result<DesiredState, ManifestError> {
    let file: Arc<str> = images_path.display().to_string().into();
    let mut problems = Problems::new(images_path);
    // Repeated image names share their source and destination lists.
    type Ends = (Arc<[Source]>, Arc<[Destination]>);
    let mut by_name: FxHashMap<&RepoPath, Ends> = FxHashMap::default();
    let mut entries = Vec::with_capacity(images.iter().map(|i| i.digests.len()).sum());
    for image in images {
        let ends = match by_name.get(&image.name) {
            Some(ends) => ends.clone(),
            None => {
                // Joining fails only when prefix + name exceed the 255-character path limit.
                let joined = registries.source.join(&image.name).and_then(|source| {
                    let destinations = registries
                        .destinations
                        .iter()
                        .map(|d| d.join(&image.name).map(|repo| policy.destination(repo, false)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((Arc::from([policy.source(source, true)]), Arc::from(destinations)))
                });
                match joined {
                    Ok(ends) => by_name.entry(&image.name).or_insert(ends).clone(),
                    Err(e) => {
                        problems.field(image.line, "images.name", e);
                        continue;
                    }
                }
            }
        };
        for d in &image.digests {
            entries.push(Entry {
                sources: ends.0.clone(),
                pin: TagOrDigest::Digest(d.digest),
                tags: d.tags.clone(),
                destinations: ends.1.clone(),
                origin: Origin { source: file.clone(), line: u32::try_from(d.line).unwrap_or(u32::MAX) },
            });
        }
    }
    problems.finish()?;
    Ok(DesiredState { entries })
}

/// Writes images in `images.yaml` form, sorted by name and digest, one flow list of tags per
/// digest (the style of the k8s.io files).
pub fn write_images_yaml(images: &[ImageDmap]) -> String {
    let mut sorted: Vec<&ImageDmap> = images.iter().collect();
    sorted.sort_by_key(|i| &i.name);
    let mut out = String::new();
    for image in sorted {
        let _ = writeln!(out, "- name: {}", image.name);
        let _ = writeln!(out, "  dmap:");
        let mut digests: Vec<&DigestTags> = image.digests.iter().collect();
        digests.sort_by_key(|d| d.digest);
        for d in digests {
            let mut tags: Vec<&str> = d.tags.iter().map(Tag::as_str).collect();
            tags.sort_unstable();
            let quoted: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
            let _ = writeln!(out, "    \"{}\": [{}]", d.digest, quoted.join(", "));
        }
    }
    out
}
