//! Desired state at two git revisions, for diff-only plans, parsing only what changed.
//!
//! A pull request that adds one digest to one `images.yaml` should not cost a parse of the
//! whole k8s.io tree. Files the change did not touch cannot add edges, so for a thin-manifest
//! directory only the subprojects with a changed file are read at both revisions, and a
//! single-file input is read only if it (or a file it names) changed.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use ferry_model::{DesiredState, Notice, NoticeKind};

use crate::error::ManifestError;
use crate::git::{self, Snapshot};
use crate::input::{Input, Loaded, Policy};
use crate::kpromo;

/// The two sides of a change.
#[derive(Debug, Default)]
pub struct Change {
    pub base: Loaded,
    pub head: Loaded,
}

/// Where the inputs of one side are read from.
enum Side<'a> {
    Revision(Snapshot),
    WorkingTree(&'a Path),
}

impl Side<'_> {
    fn path(&self, relative: &Path) -> PathBuf {
        match self {
            Side::Revision(snapshot) => snapshot.path(relative),
            Side::WorkingTree(top) => top.join(relative),
        }
    }
}

/// Reads the parts of `inputs` that differ between `base` and `head` (the working tree when
/// `head` is `None`). Every input must live in one git repository.
pub fn load_change(
    inputs: &[Input],
    base: &str,
    head: Option<&str>,
    policy: &Policy,
) -> Result<Change, ManifestError> {
    let Some(first) = inputs.first() else { return Ok(Change::default()) };
    let top = git::toplevel(first.path())?;
    let top = top.canonicalize().unwrap_or(top);
    let mut relative_inputs = Vec::new();
    for input in inputs {
        let relative = relative_to(&top, input.path())?;
        let companions = input
            .companion_paths()
            .unwrap_or_default()
            .iter()
            .map(|c| relative_to(&top, c))
            .collect::<Result<Vec<_>, _>>()?;
        relative_inputs.push((input, relative, companions));
    }
    let watched: Vec<PathBuf> = relative_inputs
        .iter()
        .flat_map(|(_, rel, companions)| std::iter::once(rel.clone()).chain(companions.clone()))
        .collect();
    let changed = git::changed_paths(&top, base, head, &watched)?;

    // What to read at both revisions: per input, either nothing, some subprojects, or all of it.
    let mut plans = Vec::new();
    let mut to_materialize: Vec<PathBuf> = Vec::new();
    // Changed paths Ferry cannot name: reported on the head's side, never silently skipped.
    let mut unnamed = Vec::new();
    for (input, relative, companions) in &relative_inputs {
        match input {
            Input::KpromoThinDir(_) => {
                let (subs, odd) = changed_subprojects(relative, &changed);
                unnamed.extend(odd);
                for sub in &subs {
                    to_materialize.push(relative.join("manifests").join(sub));
                    to_materialize.push(relative.join("images").join(sub));
                }
                if !subs.is_empty() {
                    plans.push((*input, relative.clone(), Some(subs)));
                }
            }
            _ => {
                let touched = std::iter::once(relative).chain(companions.iter()).any(|p| changed.contains(p));
                if touched {
                    to_materialize.push(relative.clone());
                    to_materialize.extend(companions.iter().cloned());
                    plans.push((*input, relative.clone(), None));
                }
            }
        }
    }
    let head_label_text = format!("head@{}", head.unwrap_or("working-tree"));
    let unnamed_notices: Vec<Notice> =
        unnamed.iter().map(|path| unnamed_notice(&head_label_text, path)).collect();
    if plans.is_empty() {
        let mut change = Change::default();
        change.head.state.notices = unnamed_notices;
        return Ok(change);
    }
    let base_side = Side::Revision(git::materialize(&top, base, &to_materialize)?);
    let head_side = match head {
        Some(rev) => Side::Revision(git::materialize(&top, rev, &to_materialize)?),
        None => Side::WorkingTree(&top),
    };
    let load_side = |side: &Side<'_>| -> Result<Loaded, ManifestError> {
        let mut state = Loaded::default();
        for (input, relative, subs) in &plans {
            let path = side.path(relative);
            state.extend(match subs {
                Some(subs) => kpromo::load_thin_subprojects(&path, subs, policy)?.into(),
                None if path.exists() => crate::load(&[input.with_path(path)], policy)?,
                None => Loaded::default(),
            });
        }
        Ok(state)
    };
    // What a side reports names the file as it is in the repository, and the side and
    // revision: `base@<rev>:images/a/images.yaml:12`, never a deleted temporary folder. The
    // working tree's files are real: their paths stay as they are.
    let root = |side: &Side<'_>| match side {
        Side::Revision(snapshot) => Some(snapshot.root().to_path_buf()),
        Side::WorkingTree(_) => None,
    };
    let base_label = Relabel { root: root(&base_side), label: format!("base@{base}") };
    let head_label = Relabel { root: root(&head_side), label: head_label_text };
    let mut head_state = head_label.loaded(load_side(&head_side).map_err(|e| head_label.error(e))?);
    head_state.state.notices.extend(unnamed_notices);
    Ok(Change {
        base: base_label.loaded(load_side(&base_side).map_err(|e| base_label.error(e))?),
        head: head_state,
    })
}

/// A changed path whose name Ferry cannot name exactly (not UTF-8, or holding control
/// characters): an invalid entry at the head, named with every byte escaped.
pub fn unnamed_notice(label: &str, path: &Path) -> Notice {
    Notice {
        kind: NoticeKind::Invalid,
        origin: ferry_model::Origin::new(format!("{label}:{}", ferry_model::shown::escaped_path(path)), 0),
        field: "path".into(),
        message: "the name is not UTF-8 text or holds control characters, so Ferry cannot name or read it; \
                  rename it (it is left out)"
            .into(),
    }
}

/// Renames what was read from a temporary copy of a repository: a path under `root` becomes
/// `<label>:<path in the repository>` (`head@<rev>:images/a/images.yaml`), in origins, notices
/// and errors alike. Every reader of a revision uses it (a git checkout here, the GitHub
/// contents API in the planner).
#[derive(Clone, Debug)]
pub struct Relabel {
    /// The temporary copy; `None` when the files are real and keep their paths.
    pub root: Option<PathBuf>,
    pub label: String,
}

impl Relabel {
    pub fn path(&self, path: &Path) -> PathBuf {
        match self.root.as_ref().and_then(|root| path.strip_prefix(root).ok()) {
            Some(inside) => PathBuf::from(format!("{}:{}", self.label, inside.display())),
            None => path.to_owned(),
        }
    }

    pub fn state(&self, mut state: DesiredState) -> DesiredState {
        let relabel = |source: &str| -> std::sync::Arc<str> {
            self.path(Path::new(source)).display().to_string().into()
        };
        for entry in &mut state.entries {
            entry.origin.source = relabel(&entry.origin.source);
        }
        for notice in &mut state.notices {
            notice.origin.source = relabel(&notice.origin.source);
        }
        state
    }

    /// [`Relabel::state`] of what was read, the regsync repository entries' origins too.
    pub fn loaded(&self, mut loaded: Loaded) -> Loaded {
        loaded.state = self.state(loaded.state);
        for sync in &mut loaded.syncs {
            sync.origin.source = self.path(Path::new(&*sync.origin.source)).display().to_string().into();
        }
        loaded
    }

    pub fn error(&self, error: ManifestError) -> ManifestError {
        error.relabel(&|path| self.path(path))
    }
}

/// The subprojects of a thin-manifest directory at `dir` that `changed` touches, and the
/// changed paths whose subproject name Ferry cannot name.
fn changed_subprojects(dir: &Path, changed: &[PathBuf]) -> (Vec<String>, Vec<PathBuf>) {
    let mut subs = BTreeSet::new();
    let mut unnamed = Vec::new();
    for path in changed {
        let Ok(rest) = path.strip_prefix(dir) else { continue };
        let mut parts = rest.components();
        if let (Some(Component::Normal(kind)), Some(Component::Normal(sub))) = (parts.next(), parts.next())
            && (kind == "manifests" || kind == "images")
        {
            match sub.to_str().filter(|s| ferry_model::shown::is_plain_name(s.as_bytes())) {
                Some(name) => {
                    subs.insert(name.to_owned());
                }
                None => unnamed.push(path.clone()),
            }
        }
    }
    (subs.into_iter().collect(), unnamed)
}

fn relative_to(top: &Path, path: &Path) -> Result<PathBuf, ManifestError> {
    let absolute =
        path.canonicalize().map_err(|source| ManifestError::Read { path: path.to_owned(), source })?;
    absolute.strip_prefix(top).map(Path::to_owned).map_err(|_| ManifestError::Layout {
        path: path.to_owned(),
        message: format!("is not inside the git repository {}", top.display()),
    })
}
