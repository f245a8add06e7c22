//! `ferry plan`: the dry run.

use ferry_config::Env;
use ferry_manifests::revision::load_change;
use ferry_manifests::{Input, Policy};
use ferry_model::DesiredState;
use ferry_plan::{GatherOptions, Plan, diff, gather, plan};
use ferry_registry::OciRegistry;

use crate::args::{DiffArgs, InputArgs, PlanArgs, RegistryArgs};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn run(args: PlanArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let inputs = inputs(&args.inputs)?;
    let desired = desired_state(&args.diff, &inputs, &config.policy)?;
    if args.strict {
        ferry_manifests::strict(desired.notices.clone())?;
    }
    output::warn_notices(&desired);
    if args.parse_only {
        output::print(&output::parse_only(&inputs, &desired, args.output)?);
        let invalid = desired.invalid().count();
        return Ok(if invalid > 0 { ExitStatus::ExcludedEdges } else { ExitStatus::Ok });
    }
    let registry = super::registry_for(&config, env, &inputs)?;
    let mut desired = desired;
    desired.extend(repository_entries(&registry, &inputs, &config.policy).await?);
    let plan = make_plan(&registry, &desired, &args.registries).await;
    output::print(&output::render_plan(&plan, args.output, args.show_present)?);
    Ok(plan_status(&plan))
}

/// 4 when a registry could not be read (unreachable, auth refused, throttled beyond the
/// budget: the edges it concerns are `unchecked`), else 5 when edges are excluded, else 0.
pub(crate) fn plan_status(plan: &Plan) -> ExitStatus {
    if plan.edges.iter().any(|e| matches!(e.action, ferry_plan::Action::Unchecked { .. })) {
        ExitStatus::Registry
    } else if plan.n_excluded() > 0 {
        ExitStatus::ExcludedEdges
    } else {
        ExitStatus::Ok
    }
}

/// Gathers the facts the plan needs and decides every edge.
pub(crate) async fn make_plan(registry: &OciRegistry, desired: &DesiredState, args: &RegistryArgs) -> Plan {
    let facts = gather(registry, desired, GatherOptions { concurrency: args.concurrency }).await;
    plan(desired, &facts)
}

/// The entries regsync `type: repository` inputs ask for: each source's tags now, filtered
/// as regsync filters them. A source that cannot be listed is an error naming it.
pub(crate) async fn repository_entries(
    registry: &ferry_registry::OciRegistry,
    inputs: &[Input],
    policy: &ferry_manifests::Policy,
) -> Result<ferry_model::DesiredState, CliError> {
    use ferry_registry::Registry as _;
    let mut desired = ferry_model::DesiredState::default();
    for sync in ferry_manifests::repository_syncs(inputs, policy)? {
        let tags = registry.list_tags(&sync.source).await.map_err(|e| {
            CliError::Usage(format!("{}: listing the tags of {}: {e}", sync.origin, sync.source))
        })?;
        desired.entries.extend(sync.entries_for(&tags, policy));
    }
    Ok(desired)
}

pub(crate) fn inputs(args: &InputArgs) -> Result<Vec<Input>, CliError> {
    let mut inputs: Vec<Input> = Vec::new();
    inputs.extend(args.manifests.iter().cloned().map(Input::KpromoManifest));
    inputs.extend(args.thin_manifest_dirs.iter().cloned().map(Input::KpromoThinDir));
    inputs.extend(
        args.images_lists
            .iter()
            .map(|file| Input::ImagesList { file: file.clone(), target: args.images_list_target.clone() }),
    );
    inputs.extend(args.charts_sync.iter().cloned().map(Input::ChartsSync));
    inputs.extend(args.rancher_configs.iter().cloned().map(Input::RancherConfig));
    inputs.extend(args.regsyncs.iter().cloned().map(Input::Regsync));
    if inputs.is_empty() {
        return Err(CliError::Usage(
            "no input: give --manifest, --thin-manifest-dir, --images-list, --charts-sync, --rancher-config or --regsync"
                .into(),
        ));
    }
    if args.images_list_target.is_some() && args.images_lists.is_empty() {
        return Err(CliError::Usage("--images-list-target needs --images-list".into()));
    }
    Ok(inputs)
}

/// The desired state to plan: everything, or only what changed since a base.
pub(crate) fn desired_state(
    args: &DiffArgs,
    inputs: &[Input],
    policy: &Policy,
) -> Result<DesiredState, CliError> {
    let (base, head) = base_and_head(args, inputs, policy)?;
    Ok(match base {
        Some(base) => diff(&base, &head),
        None => head,
    })
}

/// The inputs at the base the diff flags name (none without them) and at the head. With
/// `--diff-base-rev`, only what changed between the two revisions is read, on both sides.
pub(crate) fn base_and_head(
    args: &DiffArgs,
    inputs: &[Input],
    policy: &Policy,
) -> Result<(Option<DesiredState>, DesiredState), CliError> {
    if let Some(base) = &args.diff_base_dir {
        let [input] = inputs else {
            return Err(CliError::Usage("--diff-base-dir needs exactly one input".into()));
        };
        let base_input = input.with_path(base.clone());
        let base = if base.exists() {
            ferry_manifests::load(&[base_input], policy)?
        } else {
            DesiredState::default()
        };
        return Ok((Some(base), ferry_manifests::load(inputs, policy)?));
    }
    match &args.diff_base_rev {
        Some(rev) => {
            let change = load_change(inputs, rev, args.diff_head_rev.as_deref(), policy)?;
            Ok((Some(change.base), change.head))
        }
        None => Ok((None, ferry_manifests::load(inputs, policy)?)),
    }
}
