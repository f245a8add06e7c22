//! Rancher image-mirror `images-list`: one `<source> <destination> <tag>` per line.
//!
//! Lines starting with `#` or `//` are comments. Names use Docker Hub shorthand: `org/repo` is
//! `docker.io/org/repo` and a single name gets `library/`. The tag is looked up in the source
//! at plan time and the plan pins the digest it found.

use std::path::Path;
use std::sync::Arc;

use ferry_model::{DesiredState, Entry, Origin, RegistryPath, Repository, Tag, TagOrDigest};
use rustc_hash::FxHashMap;

use crate::error::ManifestError;
use crate::input::Policy;
use crate::yaml::{self, Problems};

/// Reads an images-list file. See [`parse`].
pub fn load(
    path: &Path,
    target: Option<&RegistryPath>,
    policy: &Policy,
) -> Result<DesiredState, ManifestError> {
    let text = yaml::read_file(path)?;
    parse(path, &text, target, policy)
}

/// Parses images-list text; `path` is used in messages and origins. With `target`, each
/// destination's repository path is placed under `target` (host and prefix) instead of the
/// registry its line names.
pub fn parse(
    path: &Path,
    text: &str,
    target: Option<&RegistryPath>,
    policy: &Policy,
) -> Result<DesiredState, ManifestError> {
    let file: Arc<str> = path.display().to_string().into();
    let mut problems = Problems::new(path);
    let mut seen: FxHashMap<(Repository, Repository, Tag), u64> = FxHashMap::default();
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index as u64 + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("//") {
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let [source, destination, tag] = fields[..] else {
            problems.invalid(
                line,
                "line",
                format!(
                    "expected 3 fields `<source> <destination> <tag>`, found {}; the line is left out",
                    fields.len()
                ),
            );
            continue;
        };
        let source = Repository::parse_docker_style(source).map_err(|e| problems.invalid(line, "source", e));
        let destination = Repository::parse_docker_style(destination)
            .and_then(|d| match target {
                Some(target) => target.join(d.path()),
                None => Ok(d),
            })
            .map_err(|e| problems.invalid(line, "destination", e));
        let tag = Tag::parse(tag).map_err(|e| problems.invalid(line, "tag", e));
        let (Ok(source), Ok(destination), Ok(tag)) = (source, destination, tag) else { continue };
        if let Some(first) = seen.insert((source.clone(), destination.clone(), tag.clone()), line) {
            problems.warn(line, "line", format!("duplicate of line {first}; read once"));
            continue;
        }
        entries.push(Entry {
            sources: Arc::from([policy.source(source, false)]),
            pin: TagOrDigest::Tag(tag.clone()),
            tags: vec![tag],
            destinations: Arc::from([policy.destination(destination, false)]),
            origin: Origin { source: file.clone(), line: u32::try_from(line).unwrap_or(u32::MAX) },
        });
    }
    let notices = problems.finish_with_notices()?;
    Ok(DesiredState { entries, notices })
}
