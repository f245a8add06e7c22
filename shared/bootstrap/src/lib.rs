//! How a Ferry process starts, the same for `ferry run`, `ferry worker` and every function
//! binary, on Lambda or as a worker:
//! 1. the environment, read once ([`ferry_config::Env`]), and the configuration it names
//!    ([`load_config`]: `FERRY_CONFIG_YAML`'s contents, or the file `FERRY_CONFIG` names);
//! 2. the startup checks ([`checks`]): webhook secrets, the signing key, the manifest source,
//!    every configured registry answering on the right scheme; a fatal problem refuses to start
//!    with [`checks::REFUSAL`];
//! 3. the stage, built from a [`Context`], then served: an SQS batch handler on Lambda, a
//!    worker on `FERRY_TRANSPORT` elsewhere ([`main`], [`http_main`] for ingest).
//!
//! Invariant: a function binary starts only after the same checks `ferry run` makes.
//! Invariant: the runtime (`ferry-runtime`) delivers messages and knows nothing of the
//! configuration file; this crate is where the two meet.

pub mod checks;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_config::{Config, Env};
use ferry_messages::Topology;
use ferry_queue::AnyBroker;
use ferry_runtime::worker::{WorkerOptions, run_worker, shutdown_signal};
use ferry_runtime::{Consumes as _, RetrySettings, Stage};

pub use checks::{Needs, REFUSAL};

/// What a function needs to build its stage.
#[derive(Clone, Debug)]
pub struct Context {
    pub env: Env,
    pub config: Config,
}

/// The configuration: `FERRY_CONFIG_YAML` (contents), or the file `FERRY_CONFIG` names.
pub fn load_config(env: &Env) -> anyhow::Result<Config> {
    if let Some(yaml) = &env.config_yaml {
        let dir = std::env::temp_dir().join(format!("ferry-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("ferry.yaml");
        std::fs::write(&path, yaml)?;
        return Ok(Config::load(Some(&path))?);
    }
    Ok(Config::load(env.config.as_deref())?)
}

/// The registry client the configuration describes.
pub fn registry(context: &Context) -> anyhow::Result<ferry_registry::OciRegistry> {
    Ok(ferry_registry::OciRegistry::new(context.config.transport(&context.env)?)?)
}

pub fn retry_settings(env: &Env) -> RetrySettings {
    let defaults = RetrySettings::default();
    RetrySettings {
        max_attempts: env.max_attempts.unwrap_or(defaults.max_attempts),
        max_throttled_attempts: env.max_throttled_attempts.unwrap_or(defaults.max_throttled_attempts),
        ..defaults
    }
}

pub fn topology(env: &Env) -> Topology {
    Topology { prefix: env.queue_prefix.clone().unwrap_or_else(|| "ferry".into()), ..Topology::default() }
}

/// The transport a process uses: `FERRY_TRANSPORT`, or `sqs://` (the AWS default endpoint) on
/// Lambda.
fn transport(env: &Env) -> anyhow::Result<String> {
    match (&env.transport, env.lambda_runtime_api.is_some()) {
        (Some(url), _) => Ok(url.clone()),
        (None, true) => Ok("sqs://".into()),
        (None, false) => anyhow::bail!("set FERRY_TRANSPORT (amqp://…, sqs://…) to run a worker"),
    }
}

/// Reads the environment and the configuration, and runs the startup checks for `needs`:
/// every problem logged, a fatal one refusing to start.
async fn start(needs: Needs) -> anyhow::Result<Context> {
    let env = Env::from_process();
    let config = load_config(&env)?;
    checks::at_startup(&config, &env, needs, |line| tracing::warn!("{line}")).await?;
    Ok(Context { env, config })
}

/// Runs `body` on a multi-threaded runtime with telemetry named `service`, and turns its
/// outcome into the process's exit code.
fn run_process<F, Fut>(service: &str, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    ferry_runtime::telemetry::init(service, &Env::from_process());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(body());
    ferry_runtime::telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "{service} failed");
            ExitCode::FAILURE
        }
    }
}

/// The `main` of a function binary: the startup checks of its stage, then its stage built with
/// `build`, then Lambda (an SQS event source, when `AWS_LAMBDA_RUNTIME_API` is set) or a worker
/// on `FERRY_TRANSPORT` until SIGTERM.
pub fn main<S, F, Fut>(build: F) -> ExitCode
where
    S: Stage,
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<S>>,
{
    run_process(&format!("ferry-{}", S::QUEUE.stage()), || async move {
        let context = start(Needs::queue(S::QUEUE)).await?;
        let env = context.env.clone();
        let retry = retry_settings(&env);
        let broker = AnyBroker::connect(&transport(&env)?, topology(&env)).await?;
        let stage = Arc::new(build(context).await?);
        match broker {
            AnyBroker::Sqs(sqs) if env.lambda_runtime_api.is_some() => {
                ferry_runtime::lambda::run_lambda(stage, Arc::new(sqs), retry)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            _ if env.lambda_runtime_api.is_some() => {
                anyhow::bail!("on Lambda, FERRY_TRANSPORT must be sqs://… (the event source is SQS)")
            }
            broker => {
                let options = WorkerOptions {
                    concurrency: env.concurrency.unwrap_or(8),
                    retry,
                    ..WorkerOptions::default()
                };
                run_worker(stage, Arc::new(broker), options, shutdown_signal()).await;
            }
        }
        Ok(())
    })
}

/// The `main` of an HTTP function (ingest): the startup checks of ingest, then the router built
/// with `build`, served locally (`FERRY_INGEST_LISTEN`) until SIGTERM, or behind API Gateway or
/// a function URL on Lambda.
pub fn http_main<F>(build: F) -> ExitCode
where
    F: FnOnce(&Context, Arc<AnyBroker>) -> axum::Router,
{
    run_process("ferry-ingest", || async move {
        let context = start(Needs::INGEST).await?;
        let env = &context.env;
        let broker = Arc::new(AnyBroker::connect(&transport(env)?, topology(env)).await?);
        let listen: SocketAddr = env.ingest_listen.as_deref().unwrap_or("127.0.0.1:8080").parse()?;
        let lambda = env.lambda_runtime_api.is_some();
        let router = build(&context, broker);
        ferry_runtime::http::serve_router(router, lambda, listen, shutdown_signal()).await
    })
}
