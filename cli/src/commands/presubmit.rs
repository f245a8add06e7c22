//! `ferry check`: presubmit of a manifest change. Plans what the change adds, verifies every
//! new digest, applies the repository policy, and reports (and posts a GitHub check run).

use std::io::Write as _;
use std::path::Path;

use ferry_check::github::{CheckRun, Checks};
use ferry_check::render::Links;
use ferry_check::{Change, Conclusion, Report};
use ferry_config::Env;
use ferry_manifests::ManifestError;
use ferry_model::Origin;

use super::plan::{base_and_head, inputs};
use crate::args::{CheckArgs, CheckFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn run(args: CheckArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let inputs = inputs(&args.inputs)?;
    let github = GitHubTarget::new(&args, env)?;
    let top = inputs.first().and_then(|i| ferry_manifests::git::toplevel(i.path()).ok());
    let top = top.map(|t| t.canonicalize().unwrap_or(t));
    let mut report = match base_and_head(&args.diff, &inputs, &config.policy) {
        // An input that cannot be read at all is the change's problem, reported like the rest.
        Err(CliError::Input(error)) => unreadable(&error),
        Err(other) => return Err(other),
        Ok((base, head)) => {
            let registry = super::registry_for(&config, env, &inputs)?;
            let change = Change { base: base.as_ref(), head: &head };
            let concurrency = args.registries.concurrency;
            ferry_check::check(&registry, change, &config.trust, &config.check, concurrency).await
        }
    };
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
        let _ = writeln!(std::io::stderr(), "ferry: posted the check run {url}");
    }
    Ok(match report.conclusion() {
        Conclusion::Success => ExitStatus::Ok,
        Conclusion::Failure => ExitStatus::CheckFailed,
        Conclusion::Neutral => ExitStatus::Registry,
    })
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
                .unwrap_or_else(|| "https://api.github.com".into()),
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
