//! `ferry promote`: plan, then (with `--confirm`) copy.

use std::io::IsTerminal as _;
use std::time::Instant;

use ferry_config::Env;
use ferry_copy::{Copier, CopyOptions};
use ferry_promotion::chain::{self, TrustOptions};

use super::plan::{desired, inputs, make_plan};
use crate::args::{PlanFormat, ProgressMode, PromoteArgs, PromoteFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;
use crate::progress::Progress;

pub(crate) async fn run(args: PromoteArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let inputs = inputs(&args.inputs)?;
    let registry = super::registry_for(&config, env, &inputs)?;
    let desired = desired(&args.diff, &inputs, &config.policy, &registry).await?;
    let plan = make_plan(&registry, &desired, &args.registries).await;
    let excluded = super::plan::plan_status(&plan);
    if !args.confirm {
        let format = match args.output {
            PromoteFormat::Table => PlanFormat::Table,
            PromoteFormat::Json => PlanFormat::Json,
        };
        output::print(&output::render_plan(&plan, format, false, output::request_counts(&registry))?);
        let work = plan.edges.iter().filter(|e| e.action.is_work()).count();
        output::note(&format!("dry run: nothing was written; pass --confirm to promote {work} edge(s)"));
        return Ok(excluded);
    }
    let key = super::trust::optional_key(&args.key, &config, env).await?;
    let read_backs = registry.clone();
    let copier = Copier::new(
        registry,
        CopyOptions { max_images: args.max_images, max_blobs: args.max_blobs, ..CopyOptions::default() },
    );
    let total = plan.edges.iter().filter(|e| e.action.is_work()).count() as u64;
    let live = match args.progress {
        ProgressMode::Never => None,
        ProgressMode::Always => Some(true),
        ProgressMode::Auto => Some(std::io::stderr().is_terminal()),
    };
    let started = Instant::now();
    let progress = live.map(|live| Progress::start(copier.stats().clone(), total, live));
    let options = TrustOptions {
        policy: config.trust.clone(),
        key,
        formats: config.signing_formats,
        origin: None,
        trigger_event_id: None,
    };
    let report = chain::run(&copier, &plan, &options).await;
    // The referrers tag indexes written are read back a moment later (merging back what a
    // concurrent writer dropped); the command ends after those checks, not before.
    read_backs.settle_read_backs().await;
    if let Some(progress) = progress {
        progress.finish().await;
    }
    let stats = copier.stats().snapshot();
    output::print(&output::render_promotion(&plan, &report, &stats, started.elapsed(), args.output)?);
    let failed = report.edges.n_failed() > 0 || report.digests.iter().any(|d| d.failed());
    Ok(if failed { ExitStatus::PromotionFailed } else { excluded })
}
