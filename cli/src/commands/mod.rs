//! One module per subcommand; each turns parsed arguments into library calls.

mod charts;
mod check;
mod discover;
mod import;
mod pipeline;
mod plan;
mod presubmit;
mod promote;
mod reconcile;
mod snapshot;
mod trust;

use ferry_config::{Config, Env};
use ferry_registry::OciRegistry;

use crate::args::{ChartsCommand, Command, ConfigCommand, RegistryArgs};
use crate::error::{CliError, ExitStatus};

pub(crate) async fn run(command: Command, env: Env) -> Result<ExitStatus, CliError> {
    match command {
        Command::Plan(args) => plan::run(args, &env).await,
        Command::Promote(args) => promote::run(args, &env).await,
        Command::Snapshot(args) => snapshot::run(args, &env).await,
        Command::Keys(command) => trust::keys(command, &env).await,
        Command::Verify(args) => trust::verify(args, &env).await,
        Command::VerifyBundle(args) => trust::verify_bundle(&args),
        Command::Sign(args) => trust::sign_command(args, &env).await,
        Command::Attest(args) => trust::attest_command(args, &env).await,
        Command::ReplicateSignatures(args) => trust::replicate_command(args, &env).await,
        Command::Run(args) => Box::pin(pipeline::run(args, &env)).await,
        // Boxed: the worker future holds every stage type, and clippy (large_futures) asks for it.
        Command::Worker(args) => Box::pin(pipeline::worker(args, &env)).await,
        Command::Queues(command) => pipeline::queues(command, &env).await,
        Command::Dlq(command) => pipeline::dlq_command(command, &env).await,
        Command::Status(args) => reconcile::status(args, &env).await,
        Command::Reconcile(args) => reconcile::reconcile(args, &env).await,
        Command::Config(ConfigCommand::Check { config }) => check::command(config, &env).await,
        Command::Check(args) => presubmit::run(args, &env).await,
        Command::Import(args) => import::run(args, &env).await,
        Command::Charts(ChartsCommand::Scan(args)) => charts::scan(args, &env).await,
        Command::Discover(args) => discover::run(args, &env).await,
    }
}

/// The config file and flags, merged.
pub(crate) fn config(args: &RegistryArgs, env: &Env) -> Result<Config, CliError> {
    let path = args.config.as_deref().or(env.config.as_deref());
    Ok(Config::load(path)?.with_flags(&args.insecure_registries, &args.deny_prerelease))
}

pub(crate) fn registry(config: &Config, env: &Env) -> Result<OciRegistry, CliError> {
    Ok(OciRegistry::new(config.transport(env)?)?)
}

/// The registry client, with the credentials `inputs` name for their registries added.
pub(crate) fn registry_for(
    config: &Config,
    env: &Env,
    inputs: &[ferry_manifests::Input],
) -> Result<OciRegistry, CliError> {
    let mut config = config.clone();
    config.input_credentials = ferry_config::input_credentials(inputs)?;
    registry(&config, env)
}
