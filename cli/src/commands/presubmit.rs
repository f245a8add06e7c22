//! `ferry check`: presubmit of a manifest change. Plans what the change adds, verifies every
//! new digest, applies the repository policy, and reports (and posts a GitHub check run).

use std::path::Path;

use std::path::PathBuf;

use ferry_check::github::{CheckRun, Checks};
use ferry_check::render::Links;
use ferry_check::report::Status;
use ferry_check::{Conclusion, Problem, Reach, Report};
use ferry_config::{Config, Env, Files};
use ferry_manifests::{Input, ManifestError};
use ferry_model::Origin;
use ferry_registry::OciRegistry;

use super::plan::{Read, inputs, read};
use crate::args::{CheckArgs, CheckFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn run(args: CheckArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let inputs = inputs(&args.inputs)?;
    let github = GitHubTarget::new(&args, env)?;
    let top = inputs.first().and_then(|i| ferry_manifests::git::toplevel(i.path()).ok());
    let top = top.map(|t| t.canonicalize().unwrap_or(t));
    let (config, policy_changes) = policy(&args, env, top.as_deref())?;
    let mut report = match read(&args.diff, &inputs, &config.policy) {
        // An input that cannot be read at all is the change's problem, reported like the rest.
        Err(CliError::Input(error)) => unreadable(&error),
        Err(other) => return Err(other),
        Ok(read) => {
            let (base, head) = match read {
                Read::Everything(head) => (None, head),
                Read::Change(change) => (Some(change.base), change.head),
            };
            // What the check may contact, decided now, before any request: the hosts the
            // configuration names and those the base already uses.
            let reach = Reach::new(config.named_hosts(), base.as_ref());
            let registry = check_registry(&config, env, &inputs, &args, top.as_deref(), &reach)?;
            let concurrency = args.registries.concurrency;
            ferry_check::check(
                &registry,
                base,
                head,
                &config.policy,
                &config.trust,
                &config.check,
                &reach,
                concurrency,
            )
            .await
        }
    };
    report.problems.extend(policy_changes);
    if let Some(top) = &top {
        relative_to_repository(&mut report, top);
    }
    let head_sha = match (&args.head_sha, &args.diff.diff_head_rev, &top) {
        (Some(sha), _, _) => Some(sha.clone()),
        (None, Some(rev), Some(top)) => Some(rev_parse(top, rev)?),
        _ => None,
    };
    let base_sha = match (&args.diff.diff_base_rev, &top) {
        (Some(rev), Some(top)) => Some(rev_parse(top, rev)?),
        _ => None,
    };
    let blob = |sha: &Option<String>| match (&github.repository, sha) {
        (Some(repository), Some(sha)) => Some(format!("{}/{repository}/blob/{sha}", github.server)),
        _ => None,
    };
    let links = Links { blob_base: blob(&head_sha), base_blob_base: blob(&base_sha) };
    let text = match args.output {
        CheckFormat::Markdown => ferry_check::render::markdown(&report, &links),
        CheckFormat::Json => {
            ferry_check::render::json(&report).map_err(|e| CliError::Output(e.to_string()))?
        }
        CheckFormat::Junit => ferry_check::render::junit(&report),
    };
    match &args.output_file {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| CliError::Output(format!("{}: {e}", path.display())))?
        }
        None => output::print(&text),
    }
    if args.github_check {
        let head_sha = head_sha.ok_or_else(|| {
            CliError::Usage(
                "--github-check needs the pull request's head commit: --head-sha or --diff-head-rev".into(),
            )
        })?;
        let url = github.post(&report, &args, head_sha, &links).await?;
        crate::output::stderr_line(&format!("ferry: posted the check run {url}"));
    }
    Ok(match report.conclusion() {
        Conclusion::Success => ExitStatus::Ok,
        Conclusion::Failure => ExitStatus::CheckFailed,
        Conclusion::Neutral => ExitStatus::Registry,
    })
}

/// The configuration the check applies, and how the change alters it.
///
/// When the config file lies in the checked repository, the pull request can edit it. The
/// check then reads it, and every file it names, at the base (or `--config-rev`): never the
/// head's. Any difference between the two is a `policy-change` failure naming each changed
/// rule, so that a human approves a change of policy.
fn policy(args: &CheckArgs, env: &Env, top: Option<&Path>) -> Result<(Config, Vec<Problem>), CliError> {
    let path = args.registries.config.as_deref().or(env.config.as_deref());
    let flags = |config: Config| {
        config.with_flags(&args.registries.insecure_registries, &args.registries.deny_prerelease)
    };
    let (Some(path), Some(top)) = (path, top) else {
        return Ok((super::config(&args.registries, env)?, Vec::new()));
    };
    let absolute = absolute(path);
    let Ok(inside) = absolute.strip_prefix(top) else {
        // The deployment's own file: the pull request cannot touch it.
        return Ok((super::config(&args.registries, env)?, Vec::new()));
    };
    let Some(rev) = args.config_rev.as_deref().or(args.diff.diff_base_rev.as_deref()) else {
        return Err(CliError::Usage(format!(
            "{} lies in the checked repository, so a pull request could edit the policy it is \
             checked with; give --diff-base-rev (or --config-rev) so that the base's is read",
            path.display()
        )));
    };
    let base = AtRevision { top: top.to_owned(), rev: rev.to_owned() };
    let head: Box<dyn Files> = match args.diff.diff_head_rev.as_deref() {
        Some(head) => Box::new(AtRevision { top: top.to_owned(), rev: head.to_owned() }),
        None => Box::new(ferry_config::Disk),
    };
    let shown = inside.display().to_string();
    let problems = ferry_config::policy_changes(&absolute, &base, head.as_ref())
        .into_iter()
        .map(|change| Problem {
            check: ferry_model::CheckName::PolicyChange,
            status: Status::Fail,
            origin: Origin::new(shown.clone(), change.line),
            message: format!(
                "{}; a change of policy needs a human's approval (the check applied {rev}'s)",
                change.message
            ),
        })
        .collect();
    let config = match base.read(&absolute) {
        Ok(_) => ferry_config::Config::load_from(&absolute, &base)?,
        // No config at the base: the defaults, and the new file is a policy change above.
        Err(_) => Config::default(),
    };
    Ok((flags(config), problems))
}

/// `path` made absolute without requiring it to exist (the head may have deleted it).
fn absolute(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

/// Files of the checked repository as they are at one revision; files outside it from disk.
struct AtRevision {
    top: PathBuf,
    rev: String,
}

impl Files for AtRevision {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        let Ok(inside) = path.strip_prefix(&self.top) else { return ferry_config::Disk.read(path) };
        match ferry_manifests::git::read_at(&self.top, &self.rev, inside) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("{}: does not exist at {}", inside.display(), self.rev)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The registry client of a check: guarded by the reach (nothing else is ever contacted), with
/// the deployment's credentials and those the base's inputs name. The head's are never
/// resolved: a pull request could bind any secret of the environment to a registry it names.
fn check_registry(
    config: &Config,
    env: &Env,
    inputs: &[Input],
    args: &CheckArgs,
    top: Option<&Path>,
    reach: &Reach,
) -> Result<OciRegistry, CliError> {
    let mut config = config.clone();
    config.input_credentials = match (&args.diff.diff_base_rev, top) {
        (Some(rev), Some(top)) => base_credentials(inputs, top, rev)?,
        _ => Vec::new(),
    };
    let mut transport = config.transport(env)?;
    transport.guard = reach.guard();
    Ok(OciRegistry::new(transport)?)
}

/// The credentials the base's Rancher `config.yaml` and regsync files name, their templates
/// resolved: reviewed files, unlike the head's.
fn base_credentials(
    inputs: &[Input],
    top: &Path,
    rev: &str,
) -> Result<Vec<(ferry_model::Host, ferry_registry::auth::Credential)>, CliError> {
    let dir = tempfile::tempdir()
        .map_err(|e| CliError::Usage(format!("cannot create a temporary directory: {e}")))?;
    let mut at_base = Vec::new();
    for (n, input) in inputs.iter().enumerate() {
        if !matches!(input, Input::RancherConfig(_) | Input::Regsync(_)) {
            continue;
        }
        let Ok(inside) = absolute(input.path()).strip_prefix(top).map(Path::to_owned) else { continue };
        let Some(bytes) = ferry_manifests::git::read_at(top, rev, &inside)? else { continue };
        let copy = dir.path().join(format!("{n}.yaml"));
        std::fs::write(&copy, bytes).map_err(|e| CliError::Usage(format!("{}: {e}", copy.display())))?;
        at_base.push(input.with_path(copy));
    }
    Ok(ferry_config::input_credentials(&at_base)?)
}

/// A report of inputs that cannot be read: each problem at its place.
fn unreadable(error: &ManifestError) -> Report {
    Report::unreadable(error.problems().into_iter().map(ManifestError::place_and_detail))
}

/// Places in the working tree, named as the repository names them (for links and annotations).
fn relative_to_repository(report: &mut Report, top: &Path) {
    let fix = |origin: &mut Origin| {
        let path = Path::new(&*origin.source);
        if origin.source.starts_with("head@") || origin.source.starts_with("base@") || !path.exists() {
            return;
        }
        let absolute = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Ok(inside) = absolute.strip_prefix(top) {
            origin.source = inside.display().to_string().into();
        }
    };
    report.digests.iter_mut().for_each(|d| fix(&mut d.origin));
    report.problems.iter_mut().for_each(|p| fix(&mut p.origin));
}

fn rev_parse(top: &Path, rev: &str) -> Result<String, CliError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(top)
        .args(["rev-parse", "--verify", "--end-of-options", &format!("{rev}^{{commit}}")])
        .output()
        .map_err(|e| CliError::Usage(format!("git rev-parse {rev}: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "git rev-parse {rev}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Where on GitHub the result goes.
struct GitHubTarget {
    repository: Option<String>,
    api: String,
    server: String,
    token: Option<ferry_registry::Secret>,
}

impl GitHubTarget {
    fn new(args: &CheckArgs, env: &Env) -> Result<Self, CliError> {
        let target = Self {
            repository: args.github_repository.clone().or(env.github_repository.clone()),
            api: args
                .github_api
                .clone()
                .or(env.github_api_url.clone())
                .unwrap_or_else(|| ferry_github::DEFAULT_API.into()),
            server: env.github_server_url.clone().unwrap_or_else(|| "https://github.com".into()),
            token: env.github_token.clone(),
        };
        // Checked before any registry is asked anything: a misconfigured CI job fails at once.
        if args.github_check {
            if target.repository.is_none() {
                return Err(CliError::Usage(
                    "--github-check needs the repository: --github-repository or GITHUB_REPOSITORY".into(),
                ));
            }
            if target.token.is_none() {
                return Err(CliError::Usage(
                    "--github-check needs GITHUB_TOKEN (a token with checks: write, or a GitHub App installation token)"
                        .into(),
                ));
            }
            if args.head_sha.is_none() && args.diff.diff_head_rev.is_none() {
                return Err(CliError::Usage(
                    "--github-check needs the pull request's head commit: --head-sha or --diff-head-rev"
                        .into(),
                ));
            }
        }
        Ok(target)
    }

    async fn post(
        &self,
        report: &Report,
        args: &CheckArgs,
        head_sha: String,
        links: &Links,
    ) -> Result<String, CliError> {
        let (Some(repository), Some(token)) = (&self.repository, &self.token) else {
            return Err(CliError::Usage("--github-check needs GITHUB_REPOSITORY and GITHUB_TOKEN".into()));
        };
        let checks =
            Checks::new(&self.api, repository, token.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
        let run = CheckRun { name: args.check_name.clone(), head_sha, details_url: None, external_id: None };
        checks.post(report, &run, links).await.map_err(|e| CliError::Output(e.to_string()))
    }
}
