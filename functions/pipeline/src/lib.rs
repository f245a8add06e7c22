//! Every function in one process.
//!
//! `ferry run` uses [`run`]: one worker per stage queue and the ingest HTTP server, all on one
//! broker (the in-memory one unless a transport is given). `ferry worker --stage S` uses
//! [`run_stage`]. The stages are the same values the function binaries build.
//!
//! Architecture invariant: the pipeline and every stage are built from one configuration; no stage crate depends on another.

use std::future::Future;
use std::sync::Arc;

use ferry_bootstrap::{Context, registry};
use ferry_copy::{Copier, CopyOptions};
use ferry_messages::Queue;
use ferry_planner::Planner;
use ferry_planner::source::AnySource;
use ferry_queue::Broker;
use ferry_runtime::worker::{WorkerOptions, run_worker};

pub use ferry_ingest::IngestConfig;
use tokio::sync::watch;

/// Every stage, built once from one configuration. They share one registry client (its rate
/// limits and tokens).
#[derive(Debug)]
pub struct Stages {
    pub events: ferry_ingest::EventsStage,
    pub planner: Planner<AnySource>,
    pub verifier: ferry_verifier::Verifier,
    pub copier: ferry_copier::CopierStage,
    pub signer: ferry_signer::Signer,
    pub attester: ferry_attester::Attester,
    pub replicator: ferry_replicator::Replicator,
    /// Boxed: it is the largest stage, and futures holding `Stages` stay small.
    pub checker: Box<ferry_checker::Checker<AnySource>>,
}

pub async fn build(context: Context) -> anyhow::Result<Stages> {
    let registry = registry(&context)?;
    let key =
        || ferry_trust::keys::load(context.config.signing.as_ref(), context.env.cosign_password.as_ref());
    let events = ferry_ingest::EventsStage { registries: context.config.pipeline.registries.clone() };
    let signer = ferry_signer::Signer {
        copier: Copier::new(registry.clone(), CopyOptions::default()),
        key: key().await?,
        formats: context.config.signing_formats,
        policy: context.config.trust.clone(),
    };
    let attester = ferry_attester::Attester {
        registry: registry.clone(),
        key: key().await?,
        formats: context.config.signing_formats,
    };
    let verifier =
        ferry_verifier::Verifier { registry: registry.clone(), policy: context.config.trust.clone() };
    let copier = ferry_copier::CopierStage::new(Copier::new(registry.clone(), CopyOptions::default()));
    let replicator = ferry_replicator::Replicator { copier: Copier::new(registry, CopyOptions::default()) };
    // Built behind a box: its future is large, and every caller of `build` would carry it.
    let checker = Box::new(Box::pin(ferry_checker::build(context.clone())).await?);
    let planner = ferry_planner::build(context).await?;
    Ok(Stages { events, planner, verifier, copier, signer, attester, replicator, checker })
}

/// Runs every stage (except those in `skip`) and ingest on `listener` (when given; the caller
/// binds it, so that a test can bind port 0 and know the address before anything runs) until
/// `shutdown`; then stops receiving and finishes every message in flight.
pub async fn run<B: Broker>(
    broker: Arc<B>,
    stages: Stages,
    ingest: Option<(tokio::net::TcpListener, ferry_ingest::IngestConfig)>,
    options: WorkerOptions,
    skip: &[Queue],
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    if !skip.contains(&Queue::Events) {
        tasks.spawn(run_worker(Arc::new(stages.events), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Plan) {
        tasks.spawn(run_worker(Arc::new(stages.planner), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Verify) {
        tasks.spawn(run_worker(Arc::new(stages.verifier), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Copy) {
        tasks.spawn(run_worker(Arc::new(stages.copier), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Sign) {
        tasks.spawn(run_worker(Arc::new(stages.signer), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Attest) {
        tasks.spawn(run_worker(Arc::new(stages.attester), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Replicate) {
        tasks.spawn(run_worker(Arc::new(stages.replicator), broker.clone(), options, until()));
    }
    if !skip.contains(&Queue::Check) {
        let checker: Arc<ferry_checker::Checker<AnySource>> = Arc::from(stages.checker);
        tasks.spawn(run_worker(checker, broker.clone(), options, until()));
    }
    if let Some((listener, config)) = ingest {
        let router = ferry_ingest::router(ferry_ingest::Ingest::new(broker.clone(), config));
        let done = until();
        tracing::info!(address = %listener.local_addr()?, "ingest listening");
        tasks.spawn(async move {
            if let Err(error) = axum_serve(listener, router, done).await {
                tracing::error!(%error, "ingest server failed");
            }
        });
    }
    shutdown.await;
    tracing::info!("stopping: finishing in-flight messages");
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    done: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(done).await
}

/// Runs one stage, chosen by queue or stage name (`copy` or `copier`), until `shutdown`.
/// `ingest`, for the `ingest` stage (the events queue): also serve the webhook endpoints on
/// this listener, until `shutdown`.
pub async fn run_stage<B: Broker>(
    name: &str,
    broker: Arc<B>,
    context: Context,
    ingest: Option<(tokio::net::TcpListener, ferry_ingest::IngestConfig)>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let queue = Queue::from_name(name).ok_or_else(|| anyhow::anyhow!("unknown stage {name:?}"))?;
    // Only the chosen stage is built: a copier worker needs no signing key.
    match queue {
        Queue::Events => {
            let stage = ferry_ingest::EventsStage { registries: context.config.pipeline.registries.clone() };
            let (stop, stopped) = watch::channel(false);
            let server = ingest.map(|(listener, config)| {
                let router = ferry_ingest::router(ferry_ingest::Ingest::new(broker.clone(), config));
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let done = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    if let Err(error) = axum_serve(listener, router, done).await {
                        tracing::error!(%error, "ingest server failed");
                    }
                })
            });
            run_worker(Arc::new(stage), broker, options, shutdown).await;
            let _ = stop.send(true);
            if let Some(server) = server {
                let _ = server.await;
            }
        }
        Queue::Plan => {
            run_worker(Arc::new(ferry_planner::build(context).await?), broker, options, shutdown).await
        }
        Queue::Verify => {
            run_worker(Arc::new(ferry_verifier::build(context).await?), broker, options, shutdown).await
        }
        Queue::Copy => {
            run_worker(Arc::new(ferry_copier::build(context).await?), broker, options, shutdown).await
        }
        Queue::Sign => {
            run_worker(Arc::new(ferry_signer::build(context).await?), broker, options, shutdown).await
        }
        Queue::Attest => {
            run_worker(Arc::new(ferry_attester::build(context).await?), broker, options, shutdown).await
        }
        Queue::Replicate => {
            run_worker(Arc::new(ferry_replicator::build(context).await?), broker, options, shutdown).await
        }
        Queue::Check => {
            run_worker(Arc::new(ferry_checker::build(context).await?), broker, options, shutdown).await
        }
    }
    Ok(())
}
