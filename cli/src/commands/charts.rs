//! `ferry charts scan`: chart archives -> the images they need -> what Prime lacks, written as
//! the charts sync files for review (charts-build-scripts' `scan-registries`).

use std::io::Write as _;

use ferry_config::Env;
use ferry_discover::chart_scan::{self, RepoTags};
use ferry_manifests::Input;
use ferry_model::{DesiredState, RegistryPath, RepoPath};
use ferry_registry::Registry as _;
use futures_util::StreamExt as _;

use super::plan::make_plan;
use crate::args::{ChartsScanArgs, PlanFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn scan(args: ChartsScanArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let charts = ferry_manifests::charts::read_config(&args.charts_sync)?;
    let (Some(docker_file), Some(staging_file)) = (&charts.docker_to_prime, &charts.staging_to_prime) else {
        return Err(CliError::Usage(format!(
            "{}: `charts scan` writes both `docker-to-prime` and `staging-to-prime`; name both",
            args.charts_sync.display()
        )));
    };
    let wanted = chart_scan::wanted(&args.assets_dir)?;
    output::warn_notices(&DesiredState { entries: Vec::new(), notices: wanted.notices.clone() });
    let inputs = [Input::ChartsSync(args.charts_sync.clone())];
    let registry = super::registry_for(&config, env, &inputs)?;

    let lists = [&charts.prime, &charts.staging, &charts.docker_hub];
    let mut held: Vec<RepoTags> = Vec::new();
    for prefix in lists {
        held.push(tags_at(&registry, prefix, &wanted.images, args.registries.concurrency).await?);
    }
    let split = chart_scan::split(&wanted.images, &held[0], &held[1], &held[2]);
    let header = format!(
        "Written by `ferry charts scan {}`: tags the charts need that {} lacks.",
        args.assets_dir.display(),
        charts.prime
    );
    for (file, images, from) in [
        (staging_file, &split.staging_to_prime, &charts.staging),
        (docker_file, &split.docker_to_prime, &charts.docker_hub),
    ] {
        let text = chart_scan::write_sync_file(images, &format!("{header}\nSource: {from}."));
        std::fs::write(file, text).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    }

    let count = |m: &RepoTags| m.values().map(std::collections::BTreeSet::len).sum::<usize>();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "scanned {} archives ({} values files): {} image tags wanted, {} already in {}",
        wanted.archives,
        wanted.values_files,
        count(&wanted.images),
        split.present,
        charts.prime
    );
    for (file, images, from) in [
        (staging_file, &split.staging_to_prime, &charts.staging),
        (docker_file, &split.docker_to_prime, &charts.docker_hub),
    ] {
        let _ = writeln!(out, "{}: {} tags from {from}", file.display(), count(images));
    }
    if !split.missing.is_empty() {
        let _ = writeln!(out, "in no registry ({} tags, left out):", count(&split.missing));
        for (repo, tags) in &split.missing {
            for tag in tags {
                let _ = writeln!(out, "  {repo}:{tag}");
            }
        }
    }
    let left_out = wanted.notices.iter().filter(|n| n.kind == ferry_model::NoticeKind::Invalid).count();
    if left_out > 0 {
        let _ = writeln!(out, "{left_out} values could not be read (invalid entries above)");
    }
    drop(out);
    if args.plan {
        let desired = super::plan::desired(&Default::default(), &inputs, &config.policy, &registry).await?;
        let plan = make_plan(&registry, &desired, &args.registries).await;
        output::print(&output::render_plan(
            &plan,
            PlanFormat::Table,
            false,
            output::request_counts(&registry),
        )?);
    }
    Ok(if split.missing.is_empty() && left_out == 0 { ExitStatus::Ok } else { ExitStatus::ExcludedEdges })
}

/// The tags `prefix` holds for each wanted repository; a repository it lacks lists none.
async fn tags_at(
    registry: &ferry_registry::OciRegistry,
    prefix: &RegistryPath,
    wanted: &RepoTags,
    concurrency: usize,
) -> Result<RepoTags, CliError> {
    let lookups = wanted.keys().filter_map(|repo| {
        let path = RepoPath::parse(repo).ok()?;
        let repository = prefix.join(&path).ok()?;
        Some(
            async move { (repo.clone(), registry.list_tags(&repository).await.map_err(|e| (repository, e))) },
        )
    });
    let results: Vec<_> =
        futures_util::stream::iter(lookups).buffer_unordered(concurrency.max(1)).collect().await;
    let mut out = RepoTags::new();
    for (repo, listed) in results {
        match listed {
            Ok(tags) => {
                out.insert(repo, tags.iter().map(|t| t.as_str().to_owned()).collect());
            }
            Err((repository, e)) => {
                crate::output::stderr_line(&format!("ferry: listing the tags of {repository} failed"));
                return Err(CliError::Registry(e));
            }
        }
    }
    Ok(out)
}
