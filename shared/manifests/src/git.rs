//! Manifest files as they were at a git revision, for diff-only plans.
//!
//! The requested paths are written at a revision into a fresh temporary directory, from
//! `git ls-tree -z` and `git cat-file --batch`: every path is kept as the bytes git holds, so a
//! name that is not UTF-8 reaches the reader as it is (and is reported there), instead of being
//! lost on the way. The working tree, index and refs of the repository are never touched.

use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write as _};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
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
    let mut out = run(dir, &["rev-parse".as_ref(), "--show-toplevel".as_ref()])?;
    while out.last().is_some_and(|b| *b == b'\n') {
        out.pop();
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}

/// The commit `revision` names, refusing revisions that read as options.
fn commit_of(repo: &Path, revision: &str) -> Result<String, ManifestError> {
    let git_err = |message: String| ManifestError::Git { repo: repo.to_owned(), message };
    // A revision that starts with '-' would be read as an option.
    if revision.is_empty() || revision.starts_with('-') || revision.contains(char::is_whitespace) {
        return Err(git_err(format!("invalid revision {revision:?}")));
    }
    let spec = format!("{revision}^{{commit}}");
    let commit = run(repo, &["rev-parse".as_ref(), "--verify".as_ref(), "--quiet".as_ref(), spec.as_ref()])
        .map_err(|_| git_err(format!("revision {revision:?} does not name a commit")))?;
    Ok(String::from_utf8_lossy(&commit).trim().to_owned())
}

/// One entry of `git ls-tree -r -z`.
struct TreeEntry {
    mode: String,
    object: String,
    path: Vec<u8>,
}

/// The blobs (files and symbolic links) under `paths` at `commit`; submodules are left out.
fn tree_entries(repo: &Path, commit: &str, paths: &[PathBuf]) -> Result<Vec<TreeEntry>, ManifestError> {
    let bad = |message: String| ManifestError::Git { repo: repo.to_owned(), message };
    let mut args: Vec<&OsStr> =
        vec!["ls-tree".as_ref(), "-r".as_ref(), "-z".as_ref(), commit.as_ref(), "--".as_ref()];
    let specs: Vec<OsString> = paths.iter().map(|p| tree_path(p)).collect();
    if specs.iter().any(|s| s.is_empty()) {
        // The whole tree: no pathspec.
        args.truncate(4);
    } else {
        args.extend(specs.iter().map(OsString::as_os_str));
    }
    let out = run_literal(repo, &args)?;
    let mut entries = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let tab = record
            .iter()
            .position(|b| *b == b'\t')
            .ok_or_else(|| bad("git ls-tree: malformed output".into()))?;
        let (meta, path) = (&record[..tab], &record[tab + 1..]);
        let meta = String::from_utf8_lossy(meta);
        let mut fields = meta.split(' ');
        let (Some(mode), Some(kind), Some(object)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad("git ls-tree: malformed output".into()));
        };
        if kind == "blob" {
            entries.push(TreeEntry { mode: mode.to_owned(), object: object.to_owned(), path: path.to_vec() });
        }
    }
    Ok(entries)
}

/// The contents of `objects`, by `git cat-file --batch`, in order.
fn blobs(repo: &Path, objects: &[&str]) -> Result<Vec<Vec<u8>>, ManifestError> {
    let git_err = |message: String| ManifestError::Git { repo: repo.to_owned(), message };
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| git_err(format!("cannot run git: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| git_err("git cat-file has no input".into()))?;
    let request: Vec<u8> = objects.iter().flat_map(|o| format!("{o}\n").into_bytes()).collect();
    // Written from a thread: git answers while it reads, and a full pipe would block both.
    let writer = std::thread::spawn(move || stdin.write_all(&request));
    let mut stdout = child.stdout.take().ok_or_else(|| git_err("git cat-file has no output".into()))?;
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).map_err(|e| git_err(format!("git cat-file: {e}")))?;
    let _ = writer.join();
    let status = child.wait().map_err(|e| git_err(format!("git cat-file: {e}")))?;
    if !status.success() {
        return Err(git_err("git cat-file failed".into()));
    }
    let mut contents = Vec::with_capacity(objects.len());
    let mut rest: &[u8] = &out;
    for object in objects {
        let newline = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| git_err("git cat-file: truncated output".into()))?;
        let header = String::from_utf8_lossy(&rest[..newline]).into_owned();
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|_| header.starts_with(object))
            .ok_or_else(|| git_err(format!("git cat-file: unexpected answer {header:?}")))?;
        let body = rest
            .get(newline + 1..newline + 1 + size)
            .ok_or_else(|| git_err("git cat-file: truncated output".into()))?;
        contents.push(body.to_vec());
        rest = rest.get(newline + 2 + size..).unwrap_or_default();
    }
    Ok(contents)
}

/// Writes `paths` (relative to the repository top level) as of `revision` into a temporary
/// directory. A path that does not exist at that revision is simply absent from the snapshot,
/// which reads as "no manifests there yet". Symbolic links are written as symbolic links, for
/// the readers to refuse as they refuse them in a working tree.
pub fn materialize(repo: &Path, revision: &str, paths: &[PathBuf]) -> Result<Snapshot, ManifestError> {
    let git_err = |message: String| ManifestError::Git { repo: repo.to_owned(), message };
    let commit = commit_of(repo, revision)?;
    let dir = tempfile::Builder::new()
        .prefix("ferry-git-")
        .tempdir()
        .map_err(|e| git_err(format!("cannot create a temporary directory: {e}")))?;
    if paths.is_empty() {
        return Ok(Snapshot { dir });
    }
    let entries = tree_entries(repo, &commit, paths)?;
    let objects: Vec<&str> = entries.iter().map(|e| e.object.as_str()).collect();
    let contents = blobs(repo, &objects)?;
    for (entry, bytes) in entries.iter().zip(contents) {
        let relative = Path::new(OsStr::from_bytes(&entry.path));
        // git never stores `..` or absolute paths; refuse them anyway rather than write outside.
        if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(git_err(format!(
                "refusing the path {}",
                ferry_model::shown::escaped_bytes(&entry.path)
            )));
        }
        let target = dir.path().join(relative);
        let write_err = |e: std::io::Error| git_err(format!("cannot write {}: {e}", target.display()));
        std::fs::create_dir_all(target.parent().unwrap_or(dir.path())).map_err(write_err)?;
        if entry.mode == "120000" {
            std::os::unix::fs::symlink(OsStr::from_bytes(&bytes), &target).map_err(write_err)?;
        } else {
            std::fs::write(&target, bytes).map_err(write_err)?;
        }
    }
    Ok(Snapshot { dir })
}

/// One file at a revision: `Ok(None)` when it does not exist there. A symbolic link is
/// refused, as the readers refuse one in a working tree.
pub fn read_at(repo: &Path, revision: &str, relative: &Path) -> Result<Option<Vec<u8>>, ManifestError> {
    let commit = commit_of(repo, revision)?;
    let entries = tree_entries(repo, &commit, &[relative.to_owned()])?;
    let wanted = tree_path(relative);
    let Some(entry) = entries.into_iter().find(|e| e.path == wanted.as_bytes()) else { return Ok(None) };
    if entry.mode == "120000" {
        return Err(ManifestError::Layout {
            path: relative.to_owned(),
            message: format!("is a symbolic link at {revision}; Ferry only reads regular files"),
        });
    }
    Ok(blobs(repo, &[entry.object.as_str()])?.pop())
}

fn run(dir: &Path, args: &[&OsStr]) -> Result<Vec<u8>, ManifestError> {
    git(dir, args, false)
}

/// `run` with pathspecs taken literally: `*`, `?` and `:(...)` in a name are characters.
fn run_literal(dir: &Path, args: &[&OsStr]) -> Result<Vec<u8>, ManifestError> {
    git(dir, args, true)
}

fn git(dir: &Path, args: &[&OsStr], literal: bool) -> Result<Vec<u8>, ManifestError> {
    let mut command = Command::new("git");
    if literal {
        command.arg("--literal-pathspecs");
    }
    let out =
        command.arg("-C").arg(dir).args(args).output().map_err(|e| ManifestError::Git {
            repo: dir.to_owned(),
            message: format!("cannot run git: {e}"),
        })?;
    if !out.status.success() {
        let shown: Vec<String> =
            args.iter().map(|a| ferry_model::shown::escaped_bytes(a.as_bytes()).into_owned()).collect();
        return Err(ManifestError::Git {
            repo: dir.to_owned(),
            message: format!(
                "git {} failed: {}",
                shown.join(" "),
                ferry_model::escaped(String::from_utf8_lossy(&out.stderr).trim())
            ),
        });
    }
    Ok(out.stdout)
}

/// The paths (relative to the top level) that differ between `base` and `head`, or between
/// `base` and the working tree (untracked files included) when `head` is `None`, restricted
/// to `under`. Paths are kept as git holds them, bytes and all.
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
    let under: Vec<OsString> = under.iter().map(|p| pathspec(&tree_path(p))).collect();
    let mut args: Vec<&OsStr> =
        vec!["diff".as_ref(), "--name-only".as_ref(), "-z".as_ref(), "--no-renames".as_ref(), base.as_ref()];
    args.extend(head.map(OsStr::new));
    args.push("--".as_ref());
    args.extend(under.iter().map(OsString::as_os_str));
    let mut paths: Vec<PathBuf> = split_nul(&run_literal(repo, &args)?);
    if head.is_none() {
        let mut untracked: Vec<&OsStr> = vec![
            "ls-files".as_ref(),
            "-z".as_ref(),
            "--others".as_ref(),
            "--exclude-standard".as_ref(),
            "--".as_ref(),
        ];
        untracked.extend(under.iter().map(OsString::as_os_str));
        paths.extend(split_nul(&run_literal(repo, &untracked)?));
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// A path inside the repository as git's tree paths spell it, bytes kept: the top level is
/// the empty path (an input at the repository's root may be given as `""` or `.`).
fn tree_path(path: &Path) -> OsString {
    let mut bytes = path.as_os_str().as_bytes();
    while let Some(rest) = bytes.strip_prefix(b"./") {
        bytes = rest;
    }
    while let Some(rest) = bytes.strip_suffix(b"/") {
        bytes = rest;
    }
    if bytes == b"." { OsString::new() } else { OsStr::from_bytes(bytes).to_owned() }
}

/// A pathspec for `path` (from [`tree_path`]): git refuses the empty pathspec, and `.` under
/// `--literal-pathspecs` at the top level means the whole tree.
fn pathspec(path: &OsStr) -> OsString {
    if path.is_empty() { OsString::from(".") } else { path.to_owned() }
}

fn split_nul(bytes: &[u8]) -> Vec<PathBuf> {
    bytes
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(OsString::from_vec(p.to_vec())))
        .collect()
}
