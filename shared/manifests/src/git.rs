//! Manifest files as they were at a git revision, for diff-only plans.
//!
//! `git archive` writes the requested paths at a revision into a fresh temporary directory.
//! The working tree, index and refs of the repository are never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::ManifestError;

/// A directory holding some paths of a repository as of one revision. Deleted on drop.
#[derive(Debug)]
pub struct Snapshot {
    dir: tempfile::TempDir,
}

impl Snapshot {
    /// Where `relative` (a path inside the repository) lives in this snapshot.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The temporary directory the snapshot lives in (gone once the snapshot is dropped).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The top level of the git work tree containing `path`.
pub fn toplevel(path: &Path) -> Result<PathBuf, ManifestError> {
    let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let out = run(dir, &["rev-parse", "--show-toplevel"])?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim()))
}

/// Writes `paths` (relative to the repository top level) as of `revision` into a temporary
/// directory. A path that does not exist at that revision is simply absent from the snapshot,
/// which reads as "no manifests there yet".
pub fn materialize(repo: &Path, revision: &str, paths: &[PathBuf]) -> Result<Snapshot, ManifestError> {
    let git_err = |message: String| ManifestError::Git { repo: repo.to_owned(), message };
    // A revision that starts with '-' would be read as an option.
    if revision.is_empty() || revision.starts_with('-') || revision.contains(char::is_whitespace) {
        return Err(git_err(format!("invalid revision {revision:?}")));
    }
    let commit = run(repo, &["rev-parse", "--verify", "--quiet", &format!("{revision}^{{commit}}")])
        .map_err(|_| git_err(format!("revision {revision:?} does not name a commit")))?;
    let commit = String::from_utf8_lossy(&commit).trim().to_owned();
    let dir = tempfile::Builder::new()
        .prefix("ferry-git-")
        .tempdir()
        .map_err(|e| git_err(format!("cannot create a temporary directory: {e}")))?;
    // Keep only the paths that exist at that commit; `git archive` fails on unknown paths.
    let mut present = Vec::new();
    for path in paths {
        let path = tree_path(path);
        let spec = format!("{commit}:{path}");
        if run(repo, &["cat-file", "-e", &spec]).is_ok() {
            present.push(pathspec(&path));
        }
    }
    if present.is_empty() {
        return Ok(Snapshot { dir });
    }
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", &commit, "--"])
        .args(&present)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| git_err(format!("cannot run git: {e}")))?;
    let stdout = archive.stdout.take().ok_or_else(|| git_err("git archive produced no output".into()))?;
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir.path())
        .stdin(stdout)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| git_err(format!("cannot run tar: {e}")))?;
    let archived = archive.wait_with_output().map_err(|e| git_err(format!("git archive failed: {e}")))?;
    if !archived.status.success() {
        return Err(git_err(format!(
            "git archive failed: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        )));
    }
    if !untar.status.success() {
        return Err(git_err(format!("tar failed: {}", String::from_utf8_lossy(&untar.stderr).trim())));
    }
    Ok(Snapshot { dir })
}

fn run(dir: &Path, args: &[&str]) -> Result<Vec<u8>, ManifestError> {
    let out =
        Command::new("git").arg("-C").arg(dir).args(args).output().map_err(|e| ManifestError::Git {
            repo: dir.to_owned(),
            message: format!("cannot run git: {e}"),
        })?;
    if !out.status.success() {
        return Err(ManifestError::Git {
            repo: dir.to_owned(),
            message: format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// The paths (relative to the top level) that differ between `base` and `head`, or between
/// `base` and the working tree (untracked files included) when `head` is `None`, restricted
/// to `under`.
pub fn changed_paths(
    repo: &Path,
    base: &str,
    head: Option<&str>,
    under: &[PathBuf],
) -> Result<Vec<PathBuf>, ManifestError> {
    for revision in std::iter::once(base).chain(head) {
        if revision.is_empty() || revision.starts_with('-') || revision.contains(char::is_whitespace) {
            return Err(ManifestError::Git {
                repo: repo.to_owned(),
                message: format!("invalid revision {revision:?}"),
            });
        }
    }
    let under: Vec<String> = under.iter().map(|p| pathspec(&tree_path(p))).collect();
    let mut args: Vec<&str> = vec!["diff", "--name-only", "-z", "--no-renames", base];
    args.extend(head);
    args.push("--");
    args.extend(under.iter().map(String::as_str));
    let mut paths: Vec<PathBuf> = split_nul(&run(repo, &args)?);
    if head.is_none() {
        let mut untracked: Vec<&str> = vec!["ls-files", "-z", "--others", "--exclude-standard", "--"];
        untracked.extend(under.iter().map(String::as_str));
        paths.extend(split_nul(&run(repo, &untracked)?));
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// A path inside the repository as git's `<commit>:<path>` syntax wants it: the top level is
/// the empty path (an input at the repository's root may be given as `""` or `.`).
fn tree_path(path: &Path) -> String {
    let text = path.display().to_string();
    let trimmed = text.trim_start_matches("./").trim_end_matches('/');
    if trimmed == "." { String::new() } else { trimmed.to_owned() }
}

/// A pathspec for `path` (from [`tree_path`]): git refuses the empty pathspec, and `:/` means
/// the whole tree wherever git runs.
fn pathspec(path: &str) -> String {
    if path.is_empty() { ":/".to_owned() } else { path.to_owned() }
}

fn split_nul(bytes: &[u8]) -> Vec<PathBuf> {
    bytes
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .collect()
}
