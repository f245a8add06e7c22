//! `ferry plan`: the dry run.

use ferry_config::Env;
use ferry_desired::LocalFiles;
use ferry_manifests::{Input, Loaded, Policy};
use ferry_model::DesiredState;
use ferry_plan::{GatherOptions, Plan, diff, gather, plan};
use ferry_registry::OciRegistry;

use crate::args::{DiffArgs, InputArgs, PlanArgs, RegistryArgs};
use crate::error::{CliError, ExitStatus};
use crate::output;

pub(crate) async fn run(args: PlanArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let config = super::config(&args.registries, env)?;
    let inputs = inputs(&args.inputs)?;
    let read = read(&args.diff, &inputs, &config.policy)?;
    let unresolved = read.unresolved();
    if args.strict {
        ferry_manifests::strict(unresolved.notices.clone())?;
    }
    output::warn_notices(&unresolved);
    if args.parse_only {
        output::print(&output::parse_only(&inputs, &unresolved, args.output)?);
        let invalid = unresolved.invalid().count();
        return Ok(if invalid > 0 { ExitStatus::ExcludedEdges } else { ExitStatus::Ok });
    }
    let registry = super::registry_for(&config, env, &inputs)?;
    let desired = read.resolve(&registry, &config.policy).await?;
    let plan = make_plan(&registry, &desired, &args.registries).await;
    output::print(&output::render_plan(
        &plan,
        args.output,
        args.show_present,
        output::request_counts(&registry),
    )?);
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
    let facts = gather(
        registry,
        desired,
        GatherOptions { concurrency: args.concurrency, ..GatherOptions::default() },
    )
    .await;
    plan(desired, &facts)
}

/// The inputs the flags name, through the one table of input kinds.
pub(crate) fn inputs(args: &InputArgs) -> Result<Vec<Input>, CliError> {
    let named = [
        ("--manifest", args.manifests.as_slice()),
        ("--thin-manifest-dir", args.thin_manifest_dirs.as_slice()),
        ("--images-list", args.images_lists.as_slice()),
        ("--charts-sync", args.charts_sync.as_slice()),
        ("--rancher-config", args.rancher_configs.as_slice()),
        ("--regsync", args.regsyncs.as_slice()),
    ];
    let mut inputs = ferry_desired::inputs::inputs_from(named);
    for input in &mut inputs {
        if let Input::ImagesList { target, .. } = input {
            target.clone_from(&args.images_list_target);
        }
    }
    if inputs.is_empty() {
        let flags: Vec<&str> = ferry_desired::inputs::KINDS.iter().map(|k| k.flag).collect();
        return Err(CliError::Usage(format!("no input: give {}", flags.join(", "))));
    }
    if args.images_list_target.is_some() && args.images_lists.is_empty() {
        return Err(CliError::Usage("--images-list-target needs --images-list".into()));
    }
    Ok(inputs)
}

/// What the inputs hold, read without asking a registry: everything, or both sides of the
/// change the diff flags name.
pub(crate) enum Read {
    Everything(Loaded),
    Change(ferry_manifests::revision::Change),
}

impl Read {
    /// What is asked for before the registries are read: regsync repository entries are not
    /// entries yet. For a change, what it adds.
    pub(crate) fn unresolved(&self) -> DesiredState {
        match self {
            Read::Everything(loaded) => loaded.state.clone(),
            Read::Change(change) => diff(&change.base.state, &change.head.state),
        }
    }

    /// What is asked for: every repository entry resolved against its source's tags; for a
    /// change, what the head adds to the base.
    pub(crate) async fn resolve(
        self,
        registry: &OciRegistry,
        policy: &Policy,
    ) -> Result<DesiredState, CliError> {
        Ok(match self {
            Read::Everything(loaded) => ferry_desired::resolve(registry, policy, loaded).await?,
            Read::Change(change) => {
                let (base, head) = ferry_desired::resolve_change(registry, policy, change).await?;
                diff(&base, &head)
            }
        })
    }
}

/// Reads the inputs: as they are, or at the base the diff flags name and at the head. With
/// `--diff-base-rev`, only what changed between the two revisions is read, on both sides.
pub(crate) fn read(args: &DiffArgs, inputs: &[Input], policy: &Policy) -> Result<Read, CliError> {
    let files = LocalFiles::new(inputs.to_vec(), policy.clone());
    if let Some(base) = &args.diff_base_dir {
        return Ok(Read::Change(files.read_against_dir(base).map_err(source_error)?));
    }
    Ok(match &args.diff_base_rev {
        Some(rev) => {
            Read::Change(files.read_change(rev, args.diff_head_rev.as_deref()).map_err(source_error)?)
        }
        None => Read::Everything(files.read().map_err(source_error)?),
    })
}

/// Reads the inputs (everything, or the change the diff flags name), reports what reading
/// tolerated, and resolves them against the registries: what `promote`, `import`, `charts scan
/// --plan` and `replicate-signatures` plan.
pub(crate) async fn desired(
    diff_args: &DiffArgs,
    inputs: &[Input],
    policy: &Policy,
    registry: &OciRegistry,
) -> Result<DesiredState, CliError> {
    let read = read(diff_args, inputs, policy)?;
    output::warn_notices(&read.unresolved());
    read.resolve(registry, policy).await
}

/// A file that cannot be read is the input's problem (exit 3), with every place named.
pub(crate) fn source_error(error: ferry_desired::SourceError) -> CliError {
    match error {
        ferry_desired::SourceError::Manifest(e) => CliError::Input(e),
        other => CliError::Usage(other.to_string()),
    }
}
