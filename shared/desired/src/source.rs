//! Where the inputs are read: the [`ManifestSource`] port, and its adapters: the files a
//! command names ([`LocalFiles`]), a git checkout of the manifest repository ([`GitCheckout`]),
//! and GitHub's contents API ([`GitHubSource`], with [`FakeGitHub`], a stand-in backed by a real
//! git repository, for tests: GitHub itself cannot run here). Each reads with
//! `ferry_manifests::load`, the one reader of every format, and returns what was read without
//! asking a registry ([`Loaded`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_manifests::revision::{Change, Relabel, load_change};
use ferry_manifests::{Input, Loaded, Policy, kpromo};
use ferry_registry::Secret;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error(transparent)]
    Manifest(#[from] ferry_manifests::ManifestError),
    #[error(transparent)]
    GitHub(#[from] ferry_github::GitHubError),
    #[error("{0}")]
    Io(String),
}

impl ferry_registry::Classify for SourceError {
    /// GitHub outages are worth retrying; a broken manifest is not.
    fn class(&self) -> ferry_registry::ErrorClass {
        match self {
            SourceError::GitHub(e) => e.class(),
            SourceError::Manifest(_) | SourceError::Io(_) => ferry_registry::ErrorClass::Permanent,
        }
    }

    /// GitHub's rate limits travel on as a `Retry-After`.
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SourceError::GitHub(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What the inputs hold, wherever they are read from.
pub trait ManifestSource: Send + Sync + 'static {
    /// What the inputs hold at `base` and at `head`, reading only what changed between them.
    fn change(&self, base: &str, head: &str) -> impl Future<Output = Result<Change, SourceError>> + Send;

    /// What the inputs hold now.
    fn current(&self) -> impl Future<Output = Result<Loaded, SourceError>> + Send;
}

/// Where the manifest repository of the pipeline lives (`pipeline.manifests`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local checkout (revisions are read with git).
    Git(PathBuf),
    /// GitHub's contents API.
    GitHub { repository: String, api: String },
}

/// The manifest repository and the inputs inside it (paths relative to its top level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestsConfig {
    pub source: Location,
    pub inputs: Vec<Input>,
}

/// The files a command names, as they are on disk (`ferry plan --thin-manifest-dir DIR ...`),
/// or, for a change, at two git revisions of the repository holding them.
#[derive(Debug)]
pub struct LocalFiles {
    pub inputs: Vec<Input>,
    pub policy: Policy,
}

impl LocalFiles {
    pub fn new(inputs: Vec<Input>, policy: Policy) -> Self {
        Self { inputs, policy }
    }

    /// What the inputs hold now.
    pub fn read(&self) -> Result<Loaded, SourceError> {
        Ok(ferry_manifests::load(&self.inputs, &self.policy)?)
    }

    /// What they hold at git revision `base` and at `head` (the working tree when `None`),
    /// reading only what changed.
    pub fn read_change(&self, base: &str, head: Option<&str>) -> Result<Change, SourceError> {
        Ok(load_change(&self.inputs, base, head, &self.policy)?)
    }

    /// What the single input holds at `base_dir` (a copy of it as it was) and now.
    pub fn read_against_dir(&self, base_dir: &Path) -> Result<Change, SourceError> {
        let [input] = self.inputs.as_slice() else {
            return Err(SourceError::Io("--diff-base-dir needs exactly one input".into()));
        };
        let base = if base_dir.exists() {
            ferry_manifests::load(&[input.with_path(base_dir.to_owned())], &self.policy)?
        } else {
            Loaded::default()
        };
        Ok(Change { base, head: self.read()? })
    }
}

impl ManifestSource for LocalFiles {
    async fn change(&self, base: &str, head: &str) -> Result<Change, SourceError> {
        self.read_change(base, Some(head))
    }

    async fn current(&self) -> Result<Loaded, SourceError> {
        self.read()
    }
}

/// A local checkout of the manifest repository (local runs, workers next to a clone).
#[derive(Debug)]
pub struct GitCheckout {
    top: PathBuf,
    inputs: Vec<Input>,
    policy: Policy,
    cache: Mutex<Option<(Instant, Loaded)>>,
}

impl GitCheckout {
    /// `inputs` are paths relative to the checkout's top level.
    pub fn new(top: PathBuf, inputs: Vec<Input>, policy: Policy) -> Self {
        Self { top, inputs, policy, cache: Mutex::new(None) }
    }

    fn absolute(&self) -> Vec<Input> {
        self.inputs.iter().map(|i| i.with_path(self.top.join(i.path()))).collect()
    }
}

impl ManifestSource for GitCheckout {
    async fn change(&self, base: &str, head: &str) -> Result<Change, SourceError> {
        let (inputs, policy, base, head) =
            (self.absolute(), self.policy.clone(), base.to_owned(), head.to_owned());
        tokio::task::spawn_blocking(move || load_change(&inputs, &base, Some(&head), &policy))
            .await
            .map_err(|e| SourceError::Io(e.to_string()))?
            .map_err(SourceError::from)
    }

    async fn current(&self) -> Result<Loaded, SourceError> {
        if let Some((at, state)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && at.elapsed() < Duration::from_secs(10)
        {
            return Ok(state.clone());
        }
        let (inputs, policy) = (self.absolute(), self.policy.clone());
        let present: Vec<Input> = inputs.into_iter().filter(|i| i.path().exists()).collect();
        let state = tokio::task::spawn_blocking(move || ferry_manifests::load(&present, &policy))
            .await
            .map_err(|e| SourceError::Io(e.to_string()))??;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), state.clone()));
        Ok(state)
    }
}

/// The GitHub REST API, as far as the planner needs it.
pub trait GitHubApi: Send + Sync + 'static {
    /// A file's bytes at `reference`, or `None` if it does not exist there.
    fn file(
        &self,
        reference: &str,
        path: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, SourceError>> + Send;
    /// The subdirectory names of `path` at `reference` (empty if it does not exist).
    fn subdirectories(
        &self,
        reference: &str,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send;
    /// Files changed between two commits.
    fn changed_files(
        &self,
        base: &str,
        head: &str,
    ) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send;
    /// The commit at the head of the default branch.
    fn head(&self) -> impl Future<Output = Result<String, SourceError>> + Send;
}

/// Manifests read through the GitHub contents API (on AWS, where there is no checkout).
#[derive(Debug)]
pub struct GitHubSource<A> {
    api: A,
    inputs: Vec<Input>,
    policy: Policy,
    cache: tokio::sync::Mutex<Option<(String, Loaded)>>,
}

impl<A: GitHubApi> GitHubSource<A> {
    pub fn new(api: A, inputs: Vec<Input>, policy: Policy) -> Self {
        Self { api, inputs, policy, cache: tokio::sync::Mutex::new(None) }
    }

    /// Writes the files a thin-manifest directory's `subs` need at `reference` under `into`.
    async fn fetch_thin(
        &self,
        reference: &str,
        dir: &str,
        subs: &[String],
        into: &Path,
    ) -> Result<(), SourceError> {
        for sub in subs {
            for (kind, file) in [("manifests", "promoter-manifest.yaml"), ("images", "images.yaml")] {
                let path = format!("{dir}/{kind}/{sub}/{file}");
                if let Some(bytes) = self.api.file(reference, &path).await? {
                    let target = into.join(&path);
                    std::fs::create_dir_all(target.parent().unwrap_or(into))
                        .map_err(|e| SourceError::Io(e.to_string()))?;
                    std::fs::write(&target, bytes).map_err(|e| SourceError::Io(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// The repository paths of the files `input` (fetched to `dir`/`rel`) names besides itself.
    fn companions(&self, input: &Input, rel: &str, dir: &Path) -> Result<Vec<String>, SourceError> {
        let names = input.with_path(dir.join(rel)).companion_paths()?;
        Ok(names
            .iter()
            .filter_map(|path| path.strip_prefix(dir).ok())
            .filter_map(|path| path.to_str().map(str::to_owned))
            .collect())
    }

    async fn fetch_file(&self, reference: &str, path: &str, into: &Path) -> Result<bool, SourceError> {
        let Some(bytes) = self.api.file(reference, path).await? else { return Ok(false) };
        let target = into.join(path);
        std::fs::create_dir_all(target.parent().unwrap_or(into))
            .map_err(|e| SourceError::Io(e.to_string()))?;
        std::fs::write(&target, bytes).map_err(|e| SourceError::Io(e.to_string()))?;
        Ok(true)
    }

    /// Reads the inputs at `reference`, limited to `subs_for` per thin directory (all
    /// subprojects when `None`) and to `files` for single-file inputs (all when `None`).
    /// What it reports names `<side>@<reference>:<path in the repository>`, never the
    /// temporary folder the files were fetched into.
    async fn load_at(
        &self,
        side: &str,
        reference: &str,
        only: Option<&(Vec<(String, Vec<String>)>, Vec<String>)>,
    ) -> Result<Loaded, SourceError> {
        let dir = tempfile::tempdir().map_err(|e| SourceError::Io(e.to_string()))?;
        let relabel = Relabel { root: Some(dir.path().to_path_buf()), label: format!("{side}@{reference}") };
        match self.load_into(reference, only, dir.path()).await {
            Ok(state) => Ok(relabel.loaded(state)),
            Err(SourceError::Manifest(error)) => Err(SourceError::Manifest(relabel.error(error))),
            Err(other) => Err(other),
        }
    }

    async fn load_into(
        &self,
        reference: &str,
        only: Option<&(Vec<(String, Vec<String>)>, Vec<String>)>,
        dir: &Path,
    ) -> Result<Loaded, SourceError> {
        let mut state = Loaded::default();
        for input in &self.inputs {
            let rel = input.path().display().to_string();
            match input {
                Input::KpromoThinDir(_) => {
                    let subs = match only {
                        Some((thin, _)) => {
                            thin.iter().find(|(d, _)| *d == rel).map(|(_, s)| s.clone()).unwrap_or_default()
                        }
                        None => self.api.subdirectories(reference, &format!("{rel}/manifests")).await?,
                    };
                    if subs.is_empty() {
                        continue;
                    }
                    self.fetch_thin(reference, &rel, &subs, dir).await?;
                    state.extend(kpromo::load_thin_subprojects(&dir.join(&rel), &subs, &self.policy)?.into());
                }
                other => {
                    if only.is_some_and(|(_, files)| !files.contains(&rel)) {
                        continue;
                    }
                    if self.fetch_file(reference, &rel, dir).await? {
                        // The files it names (a charts config's sync files), fetched beside it.
                        for companion in self.companions(other, &rel, dir)? {
                            self.fetch_file(reference, &companion, dir).await?;
                        }
                        state
                            .extend(ferry_manifests::load(&[other.with_path(dir.join(&rel))], &self.policy)?);
                    }
                }
            }
        }
        Ok(state)
    }
}

impl<A: GitHubApi> ManifestSource for GitHubSource<A> {
    async fn change(&self, base: &str, head: &str) -> Result<Change, SourceError> {
        let changed = self.api.changed_files(base, head).await?;
        let mut thin = Vec::new();
        let mut files = Vec::new();
        // Names GitHub's API cannot carry (a name that is not UTF-8 arrives with U+FFFD in it)
        // or Ferry cannot name: reported at the head, never read under a name that is not theirs.
        let mut unnamed = Vec::new();
        for input in &self.inputs {
            let rel = input.path().display().to_string();
            match input {
                Input::KpromoThinDir(_) => {
                    let mut subs: Vec<String> = changed
                        .iter()
                        .filter_map(|path| {
                            let rest = path.strip_prefix(&format!("{rel}/"))?;
                            let mut parts = rest.split('/');
                            let kind = parts.next()?;
                            let sub = parts.next()?;
                            if kind != "manifests" && kind != "images" {
                                return None;
                            }
                            if sub.contains('\u{fffd}') || !ferry_model::shown::is_plain_name(sub.as_bytes())
                            {
                                unnamed.push(path.clone());
                                return None;
                            }
                            Some(sub.to_owned())
                        })
                        .collect();
                    subs.sort();
                    subs.dedup();
                    thin.push((rel, subs));
                }
                other => {
                    let mut touched = changed.contains(&rel);
                    if !touched && matches!(other, Input::ChartsSync(_)) {
                        // A change to a file it names (a charts config's sync files) counts too:
                        // read the input at the head to know them.
                        let dir = tempfile::tempdir().map_err(|e| SourceError::Io(e.to_string()))?;
                        if self.fetch_file(head, &rel, dir.path()).await? {
                            touched =
                                self.companions(other, &rel, dir.path())?.iter().any(|c| changed.contains(c));
                        }
                    }
                    if touched {
                        files.push(rel);
                    }
                }
            }
        }
        let only = (thin, files);
        let mut head_state = self.load_at("head", head, Some(&only)).await?;
        unnamed.sort();
        unnamed.dedup();
        head_state.state.notices.extend(unnamed.iter().map(|path| {
            ferry_model::Notice {
                kind: ferry_model::NoticeKind::Invalid,
                origin: ferry_model::Origin::new(format!("head@{head}:{}", ferry_model::escaped(path)), 0),
                field: "path".into(),
                message: "GitHub's API cannot carry this name exactly (it is not UTF-8 text, or holds \
                      control characters), so the checker cannot read it; rename it (it is left out)"
                    .into(),
            }
        }));
        Ok(Change { base: self.load_at("base", base, Some(&only)).await?, head: head_state })
    }

    async fn current(&self) -> Result<Loaded, SourceError> {
        let head = self.api.head().await?;
        let mut cache = self.cache.lock().await;
        if let Some((sha, state)) = cache.as_ref()
            && *sha == head
        {
            return Ok(state.clone());
        }
        let state = self.load_at("head", &head, None).await?;
        *cache = Some((head, state.clone()));
        Ok(state)
    }
}

/// The real GitHub REST API (one repository), through Ferry's one GitHub client.
#[derive(Debug, Clone)]
pub struct HttpGitHub {
    github: ferry_github::GitHub,
    repository: String,
}

impl HttpGitHub {
    pub fn new(api: &str, repository: &str, token: Option<Secret>) -> Result<Self, SourceError> {
        Ok(Self { github: ferry_github::GitHub::new(api, token)?, repository: repository.to_owned() })
    }

    /// The same over a client the caller already holds (its connections are shared).
    pub fn with_client(github: ferry_github::GitHub, repository: &str) -> Self {
        Self { github, repository: repository.to_owned() }
    }
}

impl GitHubApi for HttpGitHub {
    async fn file(&self, reference: &str, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(self.github.file(&self.repository, reference, path).await?)
    }

    async fn subdirectories(&self, reference: &str, path: &str) -> Result<Vec<String>, SourceError> {
        let items = self.github.directory(&self.repository, reference, path).await?;
        Ok(items.into_iter().filter(|i| i.kind == "dir").map(|i| i.name).collect())
    }

    async fn changed_files(&self, base: &str, head: &str) -> Result<Vec<String>, SourceError> {
        Ok(self.github.changed_files(&self.repository, base, head).await?)
    }

    async fn head(&self) -> Result<String, SourceError> {
        Ok(self.github.head(&self.repository).await?)
    }
}

/// A stand-in for the GitHub API, answering from a local git repository with `git` itself.
/// GitHub cannot run here; this fake implements the same [`GitHubApi`] trait as
/// [`HttpGitHub`], so the GitHub code path of the planner is exercised against real commits.
#[derive(Debug, Clone)]
pub struct FakeGitHub {
    repository: PathBuf,
}

impl FakeGitHub {
    pub fn new(repository: PathBuf) -> Self {
        Self { repository }
    }

    fn git(&self, args: &[&str]) -> Result<Option<Vec<u8>>, SourceError> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.repository)
            .args(args)
            .output()
            .map_err(|e| SourceError::Io(e.to_string()))?;
        Ok(out.status.success().then_some(out.stdout))
    }
}

impl GitHubApi for FakeGitHub {
    async fn file(&self, reference: &str, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        self.git(&["show", &format!("{reference}:{path}")])
    }

    async fn subdirectories(&self, reference: &str, path: &str) -> Result<Vec<String>, SourceError> {
        let Some(out) = self.git(&["ls-tree", "--name-only", "-d", &format!("{reference}:{path}")])? else {
            return Ok(Vec::new());
        };
        Ok(String::from_utf8_lossy(&out).lines().map(str::to_owned).collect())
    }

    async fn changed_files(&self, base: &str, head: &str) -> Result<Vec<String>, SourceError> {
        let out = self
            .git(&["diff", "--name-only", "-z", base, head])?
            .ok_or_else(|| SourceError::Io(format!("git diff {base} {head}: bad revisions")))?;
        // GitHub's JSON carries names as UTF-8 strings: bytes that are not UTF-8 arrive as
        // U+FFFD, as they do here.
        Ok(out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    async fn head(&self) -> Result<String, SourceError> {
        let out = self.git(&["rev-parse", "HEAD"])?.ok_or_else(|| SourceError::Io("no HEAD".into()))?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }
}

/// The source a configuration names.
#[derive(Debug)]
pub enum AnySource {
    Git(GitCheckout),
    GitHub(GitHubSource<HttpGitHub>),
}

impl AnySource {
    /// The source `pipeline.manifests` names (a checkout, or the contents API with `token`).
    pub fn configured(
        manifests: &ManifestsConfig,
        policy: &Policy,
        token: Option<Secret>,
    ) -> Result<Self, SourceError> {
        Ok(match &manifests.source {
            Location::Git(top) => {
                AnySource::Git(GitCheckout::new(top.clone(), manifests.inputs.clone(), policy.clone()))
            }
            Location::GitHub { repository, api } => AnySource::GitHub(GitHubSource::new(
                HttpGitHub::new(api, repository, token)?,
                manifests.inputs.clone(),
                policy.clone(),
            )),
        })
    }
}

impl ManifestSource for AnySource {
    async fn change(&self, base: &str, head: &str) -> Result<Change, SourceError> {
        match self {
            AnySource::Git(s) => s.change(base, head).await,
            AnySource::GitHub(s) => s.change(base, head).await,
        }
    }

    async fn current(&self) -> Result<Loaded, SourceError> {
        match self {
            AnySource::Git(s) => s.current().await,
            AnySource::GitHub(s) => s.current().await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn write(dir: &Path, sub: &str, images: &str) {
        let top = dir.join("promotion");
        std::fs::create_dir_all(top.join("manifests").join(sub)).unwrap();
        std::fs::create_dir_all(top.join("images").join(sub)).unwrap();
        std::fs::write(
            top.join("manifests").join(sub).join("promoter-manifest.yaml"),
            "registries:\n- name: staging.example/team\n  src: true\n- name: prod.example/team\n",
        )
        .unwrap();
        std::fs::write(top.join("images").join(sub).join("images.yaml"), images).unwrap();
    }

    /// The GitHub contents-API source, driven through `FakeGitHub` over real commits, reads the
    /// same desired state as a local checkout, for a change and for the head.
    #[tokio::test]
    async fn the_github_source_reads_what_a_checkout_reads() {
        let repo = tempfile::tempdir().unwrap();
        let digest = |n: u8| ferry_model::Digest::of(&[n]);
        git(repo.path(), &["init", "-q"]);
        write(repo.path(), "a", &format!("- name: app\n  dmap:\n    \"{}\": [\"1.0\"]\n", digest(1)));
        write(repo.path(), "b", &format!("- name: tool\n  dmap:\n    \"{}\": [\"0.1\"]\n", digest(2)));
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "-qm", "base"]);
        let base = git(repo.path(), &["rev-parse", "HEAD"]);
        write(
            repo.path(),
            "a",
            &format!(
                "- name: app\n  dmap:\n    \"{}\": [\"1.0\"]\n    \"{}\": [\"2.0\"]\n",
                digest(1),
                digest(3)
            ),
        );
        git(repo.path(), &["commit", "-qam", "add 2.0"]);
        let head = git(repo.path(), &["rev-parse", "HEAD"]);

        let inputs = vec![Input::KpromoThinDir(PathBuf::from("promotion"))];
        let github =
            GitHubSource::new(FakeGitHub::new(repo.path().to_path_buf()), inputs.clone(), Policy::default());
        let checkout = GitCheckout::new(repo.path().to_path_buf(), inputs, Policy::default());
        let (from_github, from_checkout) =
            (github.change(&base, &head).await.unwrap(), checkout.change(&base, &head).await.unwrap());
        // Origins name each source's own temporary copy; the rest must be identical.
        let text = |state: &ferry_model::DesiredState| {
            state
                .entries
                .iter()
                .map(|e| {
                    let origin = e.origin.to_string();
                    // `head@<rev>:promotion/…`, a checkout's path, or one relative to the
                    // thin directory: compare from `images/` on.
                    let relative =
                        origin.find("images/").map_or(origin.clone(), |at| origin[at..].to_owned());
                    format!("{:?} {:?} {:?} {:?} {relative}", e.sources, e.pin, e.tags, e.destinations)
                })
                .collect::<Vec<_>>()
        };
        let same = |a: &ferry_model::DesiredState, b: &ferry_model::DesiredState| text(a) == text(b);
        assert!(
            same(&from_github.head.state, &from_checkout.head.state),
            "{from_github:?} / {from_checkout:?}"
        );
        assert!(
            same(&from_github.base.state, &from_checkout.base.state),
            "{from_github:?} / {from_checkout:?}"
        );
        // Only subproject `a` changed, so only it is read: its two digests, not `b`'s.
        assert_eq!(from_github.head.state.entries.len(), 2, "{:?}", from_github.head.state.entries);
        let (a, b) = (github.current().await.unwrap().state, checkout.current().await.unwrap().state);
        assert!(same(&a, &b), "{:?}\n{:?}", text(&a), text(&b));
        assert_eq!(github.current().await.unwrap().state.entries.len(), 3);
    }

    /// A subproject whose name is not UTF-8 cannot travel through GitHub's API: the change
    /// says so at the head, and the rest of it is read.
    #[tokio::test]
    async fn the_github_source_names_what_it_cannot_read() {
        use std::os::unix::ffi::OsStrExt as _;
        let repo = tempfile::tempdir().unwrap();
        let digest = |n: u8| ferry_model::Digest::of(&[n]);
        git(repo.path(), &["init", "-q"]);
        write(repo.path(), "a", &format!("- name: app\n  dmap:\n    \"{}\": [\"1.0\"]\n", digest(1)));
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "-qm", "base"]);
        let base = git(repo.path(), &["rev-parse", "HEAD"]);
        let bad = std::ffi::OsStr::from_bytes(b"x\xff")
            .to_str()
            .map_or_else(|| "x\u{fffd}".to_owned(), str::to_owned);
        let top = repo.path().join("promotion");
        for kind in ["manifests", "images"] {
            std::fs::create_dir_all(top.join(kind).join(std::ffi::OsStr::from_bytes(b"x\xff"))).unwrap();
        }
        std::fs::write(
            top.join("manifests").join(std::ffi::OsStr::from_bytes(b"x\xff")).join("promoter-manifest.yaml"),
            "registries:\n- name: staging.example/team\n  src: true\n- name: prod.example/team\n",
        )
        .unwrap();
        std::fs::write(
            top.join("images").join(std::ffi::OsStr::from_bytes(b"x\xff")).join("images.yaml"),
            format!("- name: app\n  dmap:\n    \"{}\": [\"2.0\"]\n", digest(2)),
        )
        .unwrap();
        write(repo.path(), "b", &format!("- name: tool\n  dmap:\n    \"{}\": [\"0.1\"]\n", digest(3)));
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "-qm", "head"]);
        let head = git(repo.path(), &["rev-parse", "HEAD"]);
        let inputs = vec![Input::KpromoThinDir(PathBuf::from("promotion"))];
        let github = GitHubSource::new(FakeGitHub::new(repo.path().to_path_buf()), inputs, Policy::default());
        let change = github.change(&base, &head).await.unwrap();
        assert_eq!(change.head.state.entries.len(), 1, "subproject b is read");
        assert_eq!(change.head.state.notices.len(), 2, "{:?}", change.head.state.notices);
        let place = change.head.state.notices[0].origin.source.to_string();
        assert!(place.contains(&format!("promotion/images/{bad}")) && place.starts_with("head@"), "{place}");
        assert!(change.head.state.notices[0].message.contains("GitHub's API cannot carry this name"));
    }
}
