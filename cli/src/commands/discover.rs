//! `ferry discover`: new tags for the artifacts image-mirror's `autoupdate.yaml` follows,
//! printed, written into `config.yaml`, or proposed as pull requests. Never a promotion.

use std::io::Write as _;
use std::path::Path;

use ferry_config::Env;
use ferry_discover::autoupdate::{self, Listed, Proposal};
use ferry_discover::{Found, GitHub, Proposed};
use ferry_model::DesiredState;

use crate::args::DiscoverArgs;
use crate::error::{CliError, ExitStatus};
use crate::output;

fn read(path: &Path) -> Result<String, CliError> {
    Ok(ferry_manifests::yaml::read_file(path)?)
}

/// `config.yaml` with `proposals` added, and the regsync file regenerated from it.
fn edited(
    args: &DiscoverArgs,
    text: &str,
    listed: &[Listed],
    proposals: &[Proposal],
) -> Result<(Vec<(String, Vec<u8>)>, Vec<String>), CliError> {
    let regsync = args.regsync_yaml.as_deref().map(repo_path);
    ferry_discover::edited_files(
        &repo_path(&args.rancher_config),
        text,
        listed,
        proposals,
        regsync.as_deref(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))
}

pub(crate) async fn run(args: DiscoverArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let (entries, notices) = autoupdate::load_any(&args.autoupdate)?;
    output::warn_notices(&DesiredState { entries: Vec::new(), notices: notices.clone() });
    let unknown: Vec<&String> =
        args.entries.iter().filter(|n| !entries.iter().any(|e| &e.name == *n)).collect();
    if !unknown.is_empty() {
        return Err(CliError::Usage(format!("{}: no entry named {unknown:?}", args.autoupdate.display())));
    }
    let text = read(&args.rancher_config)?;
    let listed = autoupdate::listed(&args.rancher_config, &text)?;
    let api = args
        .github_api
        .clone()
        .or_else(|| env.github_api_url.clone())
        .unwrap_or_else(|| ferry_github::DEFAULT_API.into());
    let github = GitHub::new(&api, env.github_token.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
    let repository = args.github_repository.clone().or_else(|| env.github_repository.clone());
    if args.pr && (repository.is_none() || env.github_token.is_none()) {
        return Err(CliError::Usage(
            "--pr needs GITHUB_TOKEN and the repository (--github-repository or GITHUB_REPOSITORY)".into(),
        ));
    }
    let inputs = [ferry_manifests::Input::RancherConfig(args.rancher_config.clone())];
    let registry = super::registry_for(&config, env, &inputs)?;
    let http = ferry_discover::http_client().map_err(|e| CliError::Usage(e.to_string()))?;

    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    let mut all_proposals: Vec<Proposal> = Vec::new();
    for entry in entries.iter().filter(|e| args.entries.is_empty() || args.entries.contains(&e.name)) {
        let found: Found = match ferry_discover::find(entry, &registry, &github, &http).await {
            Ok(found) => found,
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "{} ({}): failed: {e}", entry.name, entry.strategy.name());
                continue;
            }
        };
        let (proposals, unlisted) = autoupdate::difference(&found.tags, &listed);
        let how = found.method.map(|m| format!(", found by {}", m.describe())).unwrap_or_default();
        let count: usize = proposals.iter().map(|p| p.new_tags.len()).sum();
        let _ = writeln!(out, "{} ({}{how}): {count} new tags", entry.name, entry.strategy.name());
        for proposal in &proposals {
            for tag in &proposal.new_tags {
                let target = proposal.artifact.target_name.as_deref().unwrap_or_default();
                let _ = writeln!(out, "  + {}:{tag} -> {target}", proposal.artifact.source);
            }
        }
        for artifact in &unlisted {
            let _ = writeln!(
                out,
                "  ! {artifact} is not in {} yet (or in more than one entry): a new image needs a human",
                args.rancher_config.display()
            );
        }
        for image in &found.unlisted_images {
            let _ = writeln!(out, "  ! {image} is used by the chart but not named in the entry's Artifacts");
        }
        for note in &found.notes {
            let _ = writeln!(out, "  - {note}");
        }
        if args.pr && !proposals.is_empty() {
            let (files, refused) = edited(&args, &text, &listed, &proposals)?;
            for why in &refused {
                let _ = writeln!(out, "  ! not proposed: {why}");
            }
            let repo = repository.as_deref().unwrap_or_default();
            match ferry_discover::propose(&github, repo, &args.base, entry, &proposals, &files).await {
                Ok(Proposed::Opened(url)) => {
                    let _ = writeln!(out, "  opened {url}");
                }
                Ok(Proposed::Existing(url)) => {
                    let _ = writeln!(out, "  already proposed: {url}");
                }
                Err(e) => {
                    failed += 1;
                    let _ = writeln!(out, "  the pull request failed: {e}");
                }
            }
        }
        all_proposals.extend(proposals);
    }
    if args.write && !all_proposals.is_empty() {
        let (files, refused) = edited(&args, &text, &listed, &all_proposals)?;
        for why in &refused {
            let _ = writeln!(out, "not written: {why}");
        }
        // Written where they were read (the paths as given).
        let targets = std::iter::once(&args.rancher_config).chain(args.regsync_yaml.as_ref());
        for (target, (_, bytes)) in targets.zip(&files) {
            write(target, &String::from_utf8_lossy(bytes))?;
        }
        let _ = writeln!(out, "wrote {}", args.rancher_config.display());
    }
    let invalid = notices.iter().any(|n| n.kind == ferry_model::NoticeKind::Invalid);
    Ok(if failed > 0 {
        ExitStatus::Registry
    } else if invalid {
        ExitStatus::ExcludedEdges
    } else {
        ExitStatus::Ok
    })
}

/// The path a file is committed at: as given, relative to the repository root.
fn repo_path(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches("./").to_owned()
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}
