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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_model::{
    DesiredState, Destination, Digest, Entry, Notice, NoticeKind, Origin, RegistryPath, RepoPath, Source,
    Tag, TagOrDigest,
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
    /// Deprecated in kpromo and ignored there; accepted with a warning.
    #[serde(default, rename = "imagesPath")]
    images_path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThinYaml {
    registries: Vec<RegistryYaml>,
    /// Deprecated in kpromo and ignored there; accepted with a warning.
    #[serde(default, rename = "imagesPath")]
    images_path: Option<Spanned<String>>,
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
    /// Ferry's extension (written by `ferry import`): `trusted: false` on the `src: true`
    /// registry marks a source whose signatures are never carried (Docker Hub, for example).
    /// kpromo's source is always its own staging, so kpromo has no such field.
    #[serde(default)]
    trusted: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageYaml {
    name: Spanned<String>,
    /// Ferry's extension (written by `ferry import`): the repository under the source registry
    /// when it differs from `name` (a rename such as Rancher's `mirrored-<org>-<name>`), which
    /// kpromo cannot express.
    #[serde(default, rename = "source-name")]
    source_name: Option<Spanned<String>>,
    /// `dmap:` with no value (a placeholder in real trees) is `None`: no edges, a warning.
    #[serde(default)]
    dmap: Option<Pairs<Spanned<String>, Vec<Spanned<String>>>>,
}

/// The `registries` section, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registries {
    pub source: RegistryPath,
    /// `false` only where the source registry says `trusted: false` (Ferry's extension).
    pub source_trusted: bool,
    /// In file order; the first is the primary destination.
    pub destinations: Vec<RegistryPath>,
}

/// One image of an `images.yaml` (or of a plain manifest's `images`), validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDmap {
    pub name: RepoPath,
    /// The repository under the source registry, when it is not `name` (Ferry's
    /// `source-name`).
    pub source_name: Option<RepoPath>,
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
    let mut notices = images_path_notice(path, doc.images_path.as_ref());
    notices.extend(docker_hub_notice(path, &doc.registries));
    let (images, image_notices) = check_images(path, doc.images)?;
    notices.extend(image_notices);
    let mut desired = expand(path, &registries, &images, policy)?;
    desired.notices.splice(0..0, notices);
    Ok(desired)
}

/// A `src: true` registry on Docker Hub, trusted by kpromo's default: Ferry never trusts Docker
/// Hub, and says so where the manifest implies it (`trusted: false` says it explicitly).
fn docker_hub_notice(path: &Path, registries: &[RegistryYaml]) -> Vec<Notice> {
    let mut problems = Problems::new(path);
    for registry in registries.iter().filter(|r| r.src.as_ref().is_some_and(|s| s.value)) {
        let on_hub = RegistryPath::parse(&registry.name.value).is_ok_and(|r| r.host.is_docker_hub());
        if on_hub && registry.trusted.as_ref().is_none_or(|t| t.value) {
            problems.warn(
                line_of(&registry.name),
                "registries.src",
                "Docker Hub is never a trusted source: its signatures and attestations are not carried \
                 (write `trusted: false` to say so)",
            );
        }
    }
    problems.notices
}

/// kpromo still declares `imagesPath` as a deprecated no-op; so does Ferry.
fn images_path_notice(path: &Path, images_path: Option<&Spanned<String>>) -> Vec<Notice> {
    let mut problems = Problems::new(path);
    if let Some(value) = images_path {
        problems.warn(
            line_of(value),
            "imagesPath",
            "is deprecated and ignored (as kpromo ignores it): images are read from images/<sub>/images.yaml",
        );
    }
    problems.notices
}

/// Parses a thin-manifest directory. Symbolic links anywhere under `dir` are refused, and only
/// the fixed paths `manifests/<sub>/promoter-manifest.yaml` and `images/<sub>/images.yaml` are
/// read, so nothing outside `dir` is ever opened.
pub fn load_thin_dir(dir: &Path, policy: &Policy) -> Result<DesiredState, ManifestError> {
    let (subprojects, notices) = thin_layout(dir)?;
    let mut desired = load_thin_subprojects(dir, &subprojects, policy)?;
    desired.notices.splice(0..0, notices);
    Ok(desired)
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
            // Removed by the change, or an images/<sub> folder kpromo never reads.
            if dir.join("images").join(sub).is_dir() {
                desired.notices.push(orphan_notice(&dir.join("images").join(sub), sub));
            }
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
    // The layout rules of a whole tree (`thin_layout`), for one subproject.
    for (path, what) in [(&manifest_path, "promoter-manifest.yaml"), (&images_path, "images.yaml")] {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(ManifestError::Layout {
                path: path.clone(),
                message: format!("is missing: every manifests/<sub> needs a {what}"),
            });
        }
    }
    let text = yaml::read_file(&manifest_path)?;
    let doc: ThinYaml = yaml::parse(&manifest_path, &text)?;
    let registries = check_registries(&manifest_path, &doc.registries)?;
    let mut notices = images_path_notice(&manifest_path, doc.images_path.as_ref());
    notices.extend(docker_hub_notice(&manifest_path, &doc.registries));
    let (images, image_notices) = read_images_yaml_with_notices(&images_path)?;
    notices.extend(image_notices);
    let mut desired = expand(&images_path, &registries, &images, policy)?;
    desired.notices.splice(0..0, notices);
    Ok(desired)
}

/// An `images/<sub>/` folder without `manifests/<sub>/`: kpromo walks only `manifests/` and
/// never reads it; neither does Ferry, but it says so.
fn orphan_notice(path: &Path, sub: &str) -> Notice {
    let mut problems = Problems::new(path);
    problems.warn(
        0,
        "images",
        format!("has no matching manifests/{sub}/promoter-manifest.yaml; it is not read (as kpromo does not read it)"),
    );
    problems.notices.remove(0)
}

/// Lists the subproject names of a thin-manifest directory, checking its layout. Orphan image
/// folders are tolerated (see [`thin_layout`]).
pub fn thin_subprojects(dir: &Path) -> Result<Vec<String>, ManifestError> {
    thin_layout(dir).map(|(subs, _)| subs)
}

/// The subproject names of a thin-manifest directory, and the notices about its layout (an
/// `images/<sub>/` with no `manifests/<sub>/`).
pub fn thin_layout(dir: &Path) -> Result<(Vec<String>, Vec<Notice>), ManifestError> {
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
    let (names, unnamed) =
        list_entries(&manifests).map_err(|source| ManifestError::Read { path: manifests.clone(), source })?;
    let mut notices: Vec<Notice> = unnamed.iter().map(|p| unnamed_entry(p)).collect();
    for name in names {
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
    let (names, unnamed) =
        list_entries(&images).map_err(|source| ManifestError::Read { path: images.clone(), source })?;
    notices.extend(unnamed.iter().map(|p| unnamed_entry(p)));
    for name in names {
        let path = images.join(&name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) && !subs.contains(&name) {
            notices.push(orphan_notice(&path, &name));
        }
    }
    ManifestError::from_problems(problems)?;
    if subs.is_empty() {
        return Err(layout(&manifests, "holds no <sub>/promoter-manifest.yaml".into()));
    }
    Ok((subs, notices))
}

/// The names in `dir`, sorted, and the paths whose names Ferry cannot name (not UTF-8, or
/// holding control characters): those are reported, never read under a lossy name.
fn list_entries(dir: &Path) -> std::io::Result<(Vec<String>, Vec<PathBuf>)> {
    let mut names = Vec::new();
    let mut unnamed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        match name.to_str().filter(|n| ferry_model::shown::is_plain_name(n.as_bytes())) {
            Some(text) => names.push(text.to_owned()),
            None => unnamed.push(dir.join(name)),
        }
    }
    names.sort();
    unnamed.sort();
    Ok((names, unnamed))
}

fn list_names(dir: &Path) -> std::io::Result<Vec<String>> {
    list_entries(dir).map(|(names, _)| names)
}

/// An entry of a thin-manifest tree that Ferry cannot name: left out, and said so.
fn unnamed_entry(path: &Path) -> Notice {
    Notice {
        kind: NoticeKind::Invalid,
        origin: Origin::new(ferry_model::shown::escaped_path(path).into_owned(), 0),
        field: "path".into(),
        message: "the name is not UTF-8 text or holds control characters, so Ferry cannot name or read it; \
                  it is left out (rename it)"
            .into(),
    }
}

/// Reads and validates one `images.yaml`, strictly: every notice is an error.
pub fn read_images_yaml(path: &Path) -> Result<Vec<ImageDmap>, ManifestError> {
    let text = yaml::read_file(path)?;
    parse_images_yaml(path, &text)
}

/// Reads one `images.yaml` as promotion does: invalid entries are left out and reported.
pub fn read_images_yaml_with_notices(path: &Path) -> Result<(Vec<ImageDmap>, Vec<Notice>), ManifestError> {
    let text = yaml::read_file(path)?;
    parse_images_yaml_with_notices(path, &text)
}

/// Validates the text of an `images.yaml` strictly; `path` is used only in error messages.
pub fn parse_images_yaml(path: &Path, text: &str) -> Result<Vec<ImageDmap>, ManifestError> {
    let (images, notices) = parse_images_yaml_with_notices(path, text)?;
    crate::strict(notices)?;
    Ok(images)
}

/// Validates the text of an `images.yaml`: the valid entries, and a notice for each entry left
/// out or tolerated.
pub fn parse_images_yaml_with_notices(
    path: &Path,
    text: &str,
) -> Result<(Vec<ImageDmap>, Vec<Notice>), ManifestError> {
    // An empty file is an empty list, as in kpromo.
    let images: Option<Vec<ImageYaml>> = yaml::parse(path, text)?;
    check_images(path, images.unwrap_or_default())
}

fn check_registries(path: &Path, registries: &[RegistryYaml]) -> Result<Registries, ManifestError> {
    let mut problems = Problems::new(path);
    let mut source: Option<(RegistryPath, u64)> = None;
    let mut source_trusted = true;
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
        if let Some(trusted) = &registry.trusted {
            if is_source {
                source_trusted = trusted.value;
            } else {
                problems.field(
                    line_of(trusted),
                    "registries.trusted",
                    "only the `src: true` registry can be marked `trusted`",
                );
            }
        }
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
    Ok(Registries { source, source_trusted, destinations })
}

/// Checks every image, digest and tag. What cannot be valid is left out and reported (only the
/// edges it would have produced); nothing here is fatal but the YAML itself.
fn check_images(path: &Path, images: Vec<ImageYaml>) -> Result<(Vec<ImageDmap>, Vec<Notice>), ManifestError> {
    let mut problems = Problems::new(path);
    let mut out = Vec::with_capacity(images.len());
    for image in images {
        let line = line_of(&image.name);
        let name = match RepoPath::parse(&image.name.value) {
            Ok(name) => Some(name),
            Err(e) => {
                problems.invalid(line, "images.name", format!("{e}; the image is left out"));
                None
            }
        };
        let source_name = match image.source_name.as_ref().map(|s| (line_of(s), RepoPath::parse(&s.value))) {
            None => Ok(None),
            Some((_, Ok(source))) => Ok(Some(source)),
            Some((at, Err(e))) => {
                problems.invalid(at, "images.source-name", format!("{e}; the image is left out"));
                Err(())
            }
        };
        let Some(dmap) = image.dmap else {
            problems.warn(
                line,
                "images.dmap",
                format!("{} has an empty `dmap:`; it has no edges", image.name.value),
            );
            continue;
        };
        let mut digests = Vec::with_capacity(dmap.0.len());
        for (digest_text, tag_texts) in dmap.0 {
            let digest_line = line_of(&digest_text);
            let digest = match Digest::parse(&digest_text.value) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.invalid(digest_line, "images.dmap", format!("{e}; this digest is left out"));
                    None
                }
            };
            let listed = tag_texts.len();
            let mut tags: Vec<Tag> = Vec::with_capacity(listed);
            for tag_text in tag_texts {
                match Tag::parse(&tag_text.value) {
                    Ok(tag) if tags.contains(&tag) => {
                        problems.warn(
                            line_of(&tag_text),
                            "images.dmap",
                            format!("tag {tag} is listed twice"),
                        );
                    }
                    Ok(tag) => tags.push(tag),
                    Err(e) => problems.invalid(
                        line_of(&tag_text),
                        "images.dmap",
                        format!("{e}; this tag is left out"),
                    ),
                }
            }
            // Tags were listed and none is valid: the entry is not turned into a tagless one.
            if listed > 0 && tags.is_empty() {
                continue;
            }
            if let Some(digest) = digest {
                digests.push(DigestTags { digest, tags, line: digest_line });
            }
        }
        if let (Some(name), Ok(source_name)) = (name, source_name) {
            out.push(ImageDmap { name, source_name, line, digests });
        }
    }
    let notices = problems.finish_with_notices()?;
    Ok((out, notices))
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
    let mut by_name: FxHashMap<(&RepoPath, Option<&RepoPath>), Ends> = FxHashMap::default();
    let mut entries = Vec::with_capacity(images.iter().map(|i| i.digests.len()).sum());
    for image in images {
        let key = (&image.name, image.source_name.as_ref());
        let ends = match by_name.get(&key) {
            Some(ends) => ends.clone(),
            None => {
                // Joining fails only when prefix + name exceed the 255-character path limit.
                let source_name = image.source_name.as_ref().unwrap_or(&image.name);
                let joined = registries.source.join(source_name).and_then(|source| {
                    let destinations = registries
                        .destinations
                        .iter()
                        .map(|d| d.join(&image.name).map(|repo| policy.destination(repo, false)))
                        .collect::<Result<Vec<_>, _>>()?;
                    // `trusted: false` leaves the decision to the configuration's trusted sources.
                    Ok((
                        Arc::from([policy.source(source, registries.source_trusted)]),
                        Arc::from(destinations),
                    ))
                });
                match joined {
                    Ok(ends) => by_name.entry(key).or_insert(ends).clone(),
                    Err(e) => {
                        problems.invalid(image.line, "images.name", format!("{e}; the image is left out"));
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
    let notices = problems.finish_with_notices()?;
    Ok(DesiredState { entries, notices })
}

/// Writes images in `images.yaml` form, sorted by name and digest, one flow list of tags per
/// digest (the style of the k8s.io files).
pub fn write_images_yaml(images: &[ImageDmap]) -> String {
    let mut sorted: Vec<&ImageDmap> = images.iter().collect();
    sorted.sort_by_key(|i| &i.name);
    let mut out = String::new();
    for image in sorted {
        let _ = writeln!(out, "- name: {}", image.name);
        if let Some(source) = &image.source_name {
            let _ = writeln!(out, "  source-name: {source}");
        }
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
