//! The `main` of a function binary.
//!
//! One binary serves two modes: inside AWS Lambda (when `AWS_LAMBDA_RUNTIME_API` is set) it
//! handles SQS event batches; elsewhere it is a worker on `FERRY_TRANSPORT` until SIGTERM.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_config::{Config, Env};
use ferry_messages::Topology;
use ferry_queue::AnyBroker;
use ferry_queue::sqs::SqsBroker;

use crate::process::RetrySettings;
use crate::stage::{Consumes as _, Stage};
use crate::worker::{WorkerOptions, run_worker, shutdown_signal};

/// What a function needs to build its stage.
#[derive(Clone, Debug)]
pub struct Context {
    pub env: Env,
    pub config: Config,
}

/// The configuration: `FERRY_CONFIG_YAML` (contents), or the file `FERRY_CONFIG` names.
pub fn load_config(env: &Env) -> anyhow::Result<Config> {
    if let Some(yaml) = &env.config_yaml {
        let dir = tempfile_dir()?;
        let path = dir.join("ferry.yaml");
        std::fs::write(&path, yaml)?;
        return Ok(Config::load(Some(&path))?);
    }
    Ok(Config::load(env.config.as_deref())?)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ferry-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
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

/// Runs a function: builds its stage with `build`, then serves Lambda or works as a worker.
pub fn main<S, F, Fut>(build: F) -> ExitCode
where
    S: Stage,
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<S>>,
{
    let env = Env::from_process();
    crate::telemetry::init(&format!("ferry-{}", S::QUEUE.stage()), &env);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        let config = load_config(&env)?;
        let retry = retry_settings(&env);
        let topology = topology(&env);
        let lambda = env.lambda_runtime_api.is_some();
        let transport = env.transport.clone();
        let concurrency = env.concurrency.unwrap_or(8);
        let stage = Arc::new(build(Context { env, config }).await?);
        if lambda {
            let endpoint =
                transport.as_deref().and_then(|t| t.strip_prefix("sqs://")).filter(|a| !a.is_empty()).map(
                    |a| {
                        let authority = a.split('?').next().unwrap_or(a);
                        format!("http://{authority}")
                    },
                );
            let broker = Arc::new(SqsBroker::connect(endpoint.as_deref(), None, topology).await);
            crate::lambda::run_lambda(stage, broker, retry).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        } else {
            let url = transport
                .ok_or_else(|| anyhow::anyhow!("set FERRY_TRANSPORT (amqp://…, sqs://…) to run a worker"))?;
            let broker = Arc::new(AnyBroker::connect(&url, topology).await?);
            run_worker(
                stage,
                broker,
                WorkerOptions { concurrency, retry, ..WorkerOptions::default() },
                shutdown_signal(),
            )
            .await;
        }
        Ok(())
    });
    crate::telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "function failed");
            ExitCode::FAILURE
        }
    }
}
