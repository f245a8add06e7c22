//! `ferry run`, `ferry worker`, `ferry queues`, `ferry dlq`.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_bootstrap::{Context, Needs, load_config, retry_settings};
use ferry_config::Env;
use ferry_messages::{DeadLetterQueue, Queue, Topology};
use ferry_queue::dlq::{self, Filter};
use ferry_queue::{AnyBroker, Broker};
use ferry_runtime::worker::{WorkerOptions, shutdown_signal};

use crate::args::{DeadLetterName, DlqArgs, DlqCommand, QueuesCommand, RunArgs, TransportArgs, WorkerArgs};
use crate::error::{CliError, ExitStatus};
use crate::output;

fn topology(args: &TransportArgs, env: &Env) -> Topology {
    let prefix =
        args.queue_prefix.clone().or_else(|| env.queue_prefix.clone()).unwrap_or_else(|| "ferry".into());
    Topology { prefix, ..Topology::default() }
}

pub(crate) async fn broker(
    args: &TransportArgs,
    env: &Env,
    default: Option<&str>,
) -> Result<AnyBroker, CliError> {
    let url = args
        .transport
        .clone()
        .or_else(|| env.transport.clone())
        .or_else(|| default.map(str::to_owned))
        .ok_or_else(|| CliError::Usage("give --transport (or FERRY_TRANSPORT): amqp://…, sqs://…".into()))?;
    AnyBroker::connect(&url, topology(args, env)).await.map_err(|e| CliError::Usage(e.to_string()))
}

/// The transport and queue prefix a command reads, in words (the URL without credentials).
pub(crate) fn reading(args: &TransportArgs, env: &Env) -> String {
    let url = args.transport.clone().or_else(|| env.transport.clone()).unwrap_or_default();
    // `amqp://user:password@host/`: the user information never reaches the terminal.
    let shown = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.clone(),
            }
        }
        None => url.clone(),
    };
    format!("{} (queue prefix {:?})", ferry_model::escaped(&shown), topology(args, env).prefix)
}

/// A dead-letter command's failure: a queue that does not exist or a selection that matches
/// nothing is the operator's input (exit 4), named with the pipeline it looked in.
pub(crate) fn dlq_error(error: ferry_queue::QueueError, reading: &str) -> CliError {
    match error {
        ferry_queue::QueueError::Missing(_) => CliError::Usage(format!("{error}; looked in {reading}")),
        ferry_queue::QueueError::NoRecord(_) => CliError::Usage(error.to_string()),
        other => pipeline_error(other),
    }
}

pub(crate) fn pipeline_error(error: impl std::fmt::Display) -> CliError {
    CliError::Output(error.to_string())
}

fn context(config: &Option<std::path::PathBuf>, env: &Env) -> Result<Context, CliError> {
    let mut env = env.clone();
    if config.is_some() {
        env.config = config.clone();
    }
    let config = load_config(&env).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    Ok(Context { env, config })
}

pub(crate) async fn run(args: RunArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let broker = Arc::new(broker(&args.transport, env, Some("memory://")).await?);
    broker.init().await.map_err(pipeline_error)?;
    let context = context(&args.config, env)?;
    super::check::at_startup(&context.config, &context.env, Needs::ALL).await?;
    let ingest = ferry_pipeline::IngestConfig::from_config(&context.config, &context.env);
    let listen = listen_address(args.listen.clone(), env)?;
    let options = WorkerOptions {
        concurrency: args.concurrency,
        retry: retry_settings(env),
        grace: std::time::Duration::from_secs(args.grace_seconds),
        ..WorkerOptions::default()
    };
    let discovery = discovery_task(&context.config, env)?;
    let stages =
        Box::pin(ferry_pipeline::build(context)).await.map_err(|e| CliError::Usage(format!("{e:#}")))?;
    serve_metrics(args.metrics_listen.as_deref(), &broker).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Usage(format!("--listen {listen}: cannot listen: {e}")))?;
    output::note(&format!("running every stage on {}; ingest on http://{listen}", broker.transport()));
    let discovery = discovery.map(tokio::spawn);
    let ran =
        ferry_pipeline::run(broker, stages, Some((listener, ingest)), options, &[], shutdown_signal()).await;
    if let Some(task) = discovery {
        task.abort();
    }
    ran.map_err(pipeline_error)?;
    Ok(ExitStatus::Ok)
}

/// `discovery:` in the config: a round of tag discovery now and then every `every`, each
/// finding proposed as a pull request in the repository (read there, at its base branch).
/// Never a promotion: review stays human.
fn discovery_task(
    config: &ferry_config::Config,
    env: &Env,
) -> Result<Option<impl std::future::Future<Output = ()> + Send + 'static>, CliError> {
    let Some(discovery) = config.discovery.clone() else { return Ok(None) };
    let Some(token) = env.github_token.clone() else {
        return Err(CliError::Usage(
            "discovery: needs GITHUB_TOKEN, to read the repository and propose pull requests (or remove `discovery:`)".into(),
        ));
    };
    let github = ferry_discover::GitHub::new(&config.pipeline.github_api, Some(token))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let registry = super::registry(config, env)?;
    let http = ferry_discover::http_client().map_err(|e| CliError::Usage(e.to_string()))?;
    output::note(&format!(
        "discovery: {} and {} in {} every {}s, proposing pull requests",
        discovery.autoupdate,
        discovery.rancher_config,
        discovery.repository,
        discovery.every.as_secs()
    ));
    Ok(Some(async move {
        loop {
            let repo = ferry_discover::Repo {
                repository: &discovery.repository,
                base: &discovery.base,
                autoupdate: &discovery.autoupdate,
                rancher_config: &discovery.rancher_config,
                regsync_yaml: discovery.regsync_yaml.as_deref(),
            };
            match ferry_discover::run_repository(&repo, &registry, &github, &http).await {
                Ok(lines) => {
                    for line in lines {
                        tracing::info!(repository = %discovery.repository, "discovery: {line}");
                    }
                }
                Err(e) => {
                    tracing::warn!(repository = %discovery.repository, error = %e, "discovery round failed; next round in {}s", discovery.every.as_secs())
                }
            }
            tokio::time::sleep(discovery.every).await;
        }
    }))
}

pub(crate) async fn worker(args: WorkerArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let broker = Arc::new(broker(&args.transport, env, None).await?);
    let context = context(&args.config, env)?;
    let queue = Queue::from_name(&args.stage)
        .ok_or_else(|| CliError::Usage(format!("unknown stage {:?}", args.stage)))?;
    // The ingest worker serves the webhooks too: their secrets are checked.
    let needs = if queue == Queue::Events { Needs::INGEST } else { Needs::queue(queue) };
    super::check::at_startup(&context.config, &context.env, needs).await?;
    let options = WorkerOptions {
        concurrency: args.concurrency,
        retry: retry_settings(env),
        grace: std::time::Duration::from_secs(args.grace_seconds),
        ..WorkerOptions::default()
    };
    // The ingest worker serves the webhook endpoints too: one process per stage needs no
    // `ferry run` beside it.
    let ingest = match Queue::from_name(&args.stage) {
        Some(Queue::Events) => {
            let listen = listen_address(args.listen.clone(), env)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| CliError::Usage(format!("--listen {listen}: cannot listen: {e}")))?;
            output::note(&format!("ingest on http://{listen}"));
            let config = ferry_pipeline::IngestConfig::from_config(&context.config, &context.env);
            Some((listener, config))
        }
        _ => None,
    };
    serve_metrics(args.metrics_listen.as_deref(), &broker).await?;
    // Boxed: the future holds whichever stage is chosen, the checker among them.
    Box::pin(ferry_pipeline::run_stage(&args.stage, broker, context, ingest, options, shutdown_signal()))
        .await
        .map_err(pipeline_error)?;
    Ok(ExitStatus::Ok)
}

/// `--metrics-listen`: Prometheus metrics, served beside the workers until the process ends.
async fn serve_metrics(address: Option<&str>, broker: &Arc<AnyBroker>) -> Result<(), CliError> {
    let Some(address) = address else { return Ok(()) };
    let address: SocketAddr =
        address.parse().map_err(|e| CliError::Usage(format!("--metrics-listen {address}: {e}")))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| CliError::Usage(format!("--metrics-listen {address}: cannot listen: {e}")))?;
    output::note(&format!("metrics on http://{address}/metrics"));
    let broker = broker.clone();
    tokio::spawn(async move {
        if let Err(error) = ferry_runtime::metrics::serve(listener, broker).await {
            tracing::error!(%error, "the metrics server stopped");
        }
    });
    Ok(())
}

fn listen_address(flag: Option<String>, env: &Env) -> Result<SocketAddr, CliError> {
    flag.or_else(|| env.ingest_listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|e| CliError::Usage(format!("--listen: {e}")))
}

pub(crate) async fn queues(command: QueuesCommand, env: &Env) -> Result<ExitStatus, CliError> {
    match command {
        QueuesCommand::Init { transport } => {
            let broker = broker(&transport, env, None).await?;
            broker.init().await.map_err(pipeline_error)?;
            output::print(&format!(
                "{} queues ready on {} (created where missing)\n",
                topology(&transport, env).all_names().len(),
                broker.transport()
            ));
        }
        QueuesCommand::Remove { transport, confirm } => {
            let names = topology(&transport, env).all_names();
            if !confirm {
                output::print(&format!(
                    "would delete {} queues (and their delay queues on RabbitMQ), messages included: {}\n\
                     pass --confirm to delete them\n",
                    names.len(),
                    names.join(", ")
                ));
                return Ok(ExitStatus::Ok);
            }
            let broker = broker(&transport, env, None).await?;
            broker.remove().await.map_err(pipeline_error)?;
            output::print(&format!("deleted {} queues on {}\n", names.len(), broker.transport()));
        }
        QueuesCommand::Show { transport } => {
            let topology = topology(&transport, env);
            let mut text = String::new();
            for queue in Queue::ALL {
                text.push_str(&format!(
                    "{:<28} stage {:<10} visibility {:>5}s  redrive to {} after {} receives\n",
                    topology.queue_name(queue),
                    queue.stage(),
                    topology.visibility_timeout(queue).as_secs(),
                    topology.dead_letter_name(DeadLetterQueue::Poison),
                    topology.max_receive_count
                ));
            }
            for dlq in DeadLetterQueue::ALL {
                text.push_str(&format!("{:<28} dead letters\n", topology.dead_letter_name(dlq)));
            }
            output::print(&text);
        }
    }
    Ok(ExitStatus::Ok)
}

pub(crate) fn dead_letter_queue(name: DeadLetterName) -> DeadLetterQueue {
    match name {
        DeadLetterName::Throttled => DeadLetterQueue::Throttled,
        DeadLetterName::VerificationFailed => DeadLetterQueue::VerificationFailed,
        DeadLetterName::Poison => DeadLetterQueue::Poison,
    }
}

pub(crate) fn filter(args: &DlqArgs) -> Result<Filter, CliError> {
    let stage = args
        .stage
        .as_deref()
        .map(|s| Queue::from_name(s).ok_or_else(|| CliError::Usage(format!("--stage: unknown stage {s:?}"))))
        .transpose()?;
    Ok(Filter { stage, id: args.id.clone(), limit: args.limit })
}

pub(crate) async fn dlq_command(command: DlqCommand, env: &Env) -> Result<ExitStatus, CliError> {
    let (args, action) = match &command {
        DlqCommand::List(a) => (a, "list"),
        DlqCommand::Show(a) => (a, "show"),
        DlqCommand::Replay(a) => (a, "replay"),
        DlqCommand::Purge(a) if a.resolved => return super::reconcile::purge_resolved(a, env).await,
        DlqCommand::Purge(a) => (&a.dlq, "purge"),
    };
    let broker = broker(&args.transport, env, None).await?;
    let queue = dead_letter_queue(args.queue);
    let filter = filter(args)?;
    // Which pipeline this is: a wrong prefix or transport otherwise reads as "no records".
    let reading = reading(&args.transport, env);
    output::note(&format!("{action}: dead-letter queue {queue} of {reading}"));
    match action {
        "list" | "show" => {
            let entries = dlq::list(&broker, queue, &filter).await.map_err(|e| dlq_error(e, &reading))?;
            let mut text = String::new();
            for entry in &entries {
                match (&entry.record, action) {
                    (Ok(record), "show") => {
                        text.push_str(&serde_json::to_string_pretty(record).unwrap_or_default());
                        text.push('\n');
                    }
                    (Ok(r), _) => text.push_str(&format!(
                        "{}  {:<10} {:<13} attempts {:<2} {}  {}  trace {}\n",
                        r.message_id.as_deref().unwrap_or("-"),
                        r.stage,
                        r.class,
                        r.attempts,
                        r.last_failure,
                        r.error,
                        r.trace_id.as_deref().unwrap_or("-")
                    )),
                    (Err(raw), _) => text.push_str(&format!("{raw}\n")),
                }
            }
            text.push_str(&format!("{} record(s) in {}\n", entries.len(), queue));
            output::print(&text);
        }
        "replay" => {
            let report = dlq::replay(&broker, queue, &filter).await.map_err(|e| dlq_error(e, &reading))?;
            let mut text: String =
                report.replayed.iter().map(|(q, id)| format!("replayed {id} to {q}\n")).collect();
            for skipped in &report.skipped {
                text.push_str(&format!("skipped: {skipped}\n"));
            }
            text.push_str(&format!("{} replayed, {} skipped\n", report.replayed.len(), report.skipped.len()));
            output::print(&text);
        }
        _ => {
            let purged = dlq::purge(&broker, queue, &filter).await.map_err(|e| dlq_error(e, &reading))?;
            output::print(&format!("{purged} record(s) purged from {queue}\n"));
        }
    }
    Ok(ExitStatus::Ok)
}
