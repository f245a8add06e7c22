//! What a command was asked to promote, and the policy applied to every input format.

use std::path::{Path, PathBuf};

use ferry_model::{DesiredState, Destination, RegistryPath, Repository, Source};

use crate::error::ManifestError;
use crate::{charts, images_list, kpromo, rancher, regsync};

/// One input a command reads desired state from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A kpromo plain manifest (`--manifest FILE`).
    KpromoManifest(PathBuf),
    /// A kpromo thin-manifest directory (`--thin-manifest-dir DIR`).
    KpromoThinDir(PathBuf),
    /// A Rancher `images-list`. With `target`, destinations are placed under that registry
    /// instead of the one their line names (Docker Hub, in Rancher's own list).
    ImagesList { file: PathBuf, target: Option<RegistryPath> },
    /// A Rancher charts sync config naming the staging, Docker Hub and Prime registries and the
    /// two sync files.
    ChartsSync(PathBuf),
    /// Rancher image-mirror's `config.yaml` (`--rancher-config FILE`).
    RancherConfig(PathBuf),
    /// regclient's `regsync.yaml` (`--regsync FILE`). Its `type: image` entries load here;
    /// its `type: repository` entries need the source's tags ([`Loaded::syncs`]).
    Regsync(PathBuf),
}

impl Input {
    /// The file or directory this input reads.
    pub fn path(&self) -> &Path {
        match self {
            Input::KpromoManifest(p)
            | Input::KpromoThinDir(p)
            | Input::ChartsSync(p)
            | Input::RancherConfig(p)
            | Input::Regsync(p) => p,
            Input::ImagesList { file, .. } => file,
        }
    }

    /// The same input with its path replaced, for reading it from another tree (a git revision).
    pub fn with_path(&self, path: PathBuf) -> Input {
        match self {
            Input::KpromoManifest(_) => Input::KpromoManifest(path),
            Input::KpromoThinDir(_) => Input::KpromoThinDir(path),
            Input::ChartsSync(_) => Input::ChartsSync(path),
            Input::RancherConfig(_) => Input::RancherConfig(path),
            Input::Regsync(_) => Input::Regsync(path),
            Input::ImagesList { target, .. } => Input::ImagesList { file: path, target: target.clone() },
        }
    }

    /// The paths this input reads besides [`Input::path`] itself (the sync files a charts
    /// config names), so that a git revision can be materialised with all of them.
    pub fn companion_paths(&self) -> Result<Vec<PathBuf>, ManifestError> {
        match self {
            Input::ChartsSync(config) => charts::sync_file_paths(config),
            _ => Ok(Vec::new()),
        }
    }
}

/// Registry-level policy that applies whatever format an entry came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Destinations under these registries refuse `-rc`, `-alpha` and `-beta` tags.
    pub deny_prerelease: Vec<RegistryPath>,
    /// Sources under these registries are trusted: their signatures and attestations may be
    /// copied along with images.
    pub trusted_sources: Vec<RegistryPath>,
}

impl Policy {
    pub fn destination(&self, repository: Repository, deny_prerelease: bool) -> Destination {
        let deny = deny_prerelease || self.deny_prerelease.iter().any(|r| r.contains(&repository));
        Destination { repository, deny_prerelease: deny }
    }

    /// A source, trusted when the input says so or `trusted-sources` lists it; never Docker Hub
    /// ([`Source::new`]).
    pub fn source(&self, repository: Repository, trusted: bool) -> Source {
        let trusted = trusted || self.trusted_sources.iter().any(|r| r.contains(&repository));
        Source::new(repository, trusted)
    }
}

/// What the inputs hold, read without asking any registry: the image entries (and the notices
/// about them), and regsync's `type: repository` entries, which need the source's tags to
/// become entries ([`regsync::RepositorySync::entries_for`], done by `ferry-desired`).
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub state: DesiredState,
    pub syncs: Vec<regsync::RepositorySync>,
}

impl Loaded {
    pub fn extend(&mut self, other: Loaded) {
        self.state.extend(other.state);
        self.syncs.extend(other.syncs);
    }
}

/// Reads every input, once: the one reader of each format. All inputs are read even when one
/// fails, so that one run reports every broken file.
pub fn load(inputs: &[Input], policy: &Policy) -> Result<Loaded, ManifestError> {
    let mut loaded = Loaded::default();
    let mut problems = Vec::new();
    for input in inputs {
        let read = match input {
            Input::KpromoManifest(path) => kpromo::load_manifest_file(path, policy).map(Loaded::from),
            Input::KpromoThinDir(dir) => kpromo::load_thin_dir(dir, policy).map(Loaded::from),
            Input::ImagesList { file, target } => {
                images_list::load(file, target.as_ref(), policy).map(Loaded::from)
            }
            Input::ChartsSync(config) => charts::load(config, policy).map(Loaded::from),
            Input::RancherConfig(config) => rancher::load(config, policy).map(Loaded::from),
            Input::Regsync(file) => {
                regsync::load(file, policy).map(|r| Loaded { state: r.desired, syncs: r.repositories })
            }
        };
        match read {
            Ok(read) => loaded.extend(read),
            Err(e) => problems.push(e),
        }
    }
    ManifestError::from_problems(problems)?;
    Ok(loaded)
}

impl From<DesiredState> for Loaded {
    fn from(state: DesiredState) -> Self {
        Loaded { state, syncs: Vec::new() }
    }
}

/// Lint mode: every notice (warning or invalid entry) as an error naming its file, line and
/// field.
pub fn strict(notices: Vec<ferry_model::Notice>) -> Result<(), ManifestError> {
    ManifestError::from_problems(
        notices
            .into_iter()
            .map(|n| ManifestError::Notice {
                kind: n.kind,
                origin: n.origin,
                field: n.field,
                message: n.message,
            })
            .collect(),
    )
}
