//! `ferry status` and `ferry reconcile`.

use ferry_config::Env;
use ferry_messages::envelope::Keyed;
use ferry_messages::{DeadLetter, DeadLetterQueue, Envelope, Queue};
use ferry_promotion::reconcile::{Holdings, PromotionStatus, Repair, reconcile as repair_plan};
use ferry_queue::dlq::{self, Filter};
use ferry_queue::{Address, Broker as _};
use serde::Serialize;

use super::pipeline::{broker, pipeline_error};
use super::plan::{inputs, make_plan};
use crate::args::{ReconcileArgs, StatusArgs, StatusFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;

/// Messages per publish call: each batch is confirmed before the next.
const BATCH: usize = 100;

async fn survey(
    inputs_args: &crate::args::InputArgs,
    registries: &crate::args::RegistryArgs,
    env: &Env,
) -> Result<(Vec<PromotionStatus>, Repair), CliError> {
    let config = super::config(registries, env)?;
    let inputs = inputs(inputs_args)?;
    let desired = ferry_manifests::load(&inputs, &config.policy)?;
    let registry = super::registry(&config, env)?;
    let plan = make_plan(&registry, &desired, registries).await;
    let holdings = Holdings::gather(&registry, &plan, registries.concurrency).await;
    Ok(repair_plan(&plan, &holdings, None))
}

pub(crate) async fn status(args: StatusArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let (mut statuses, _) = survey(&args.inputs, &args.registries, env).await?;
    if let Some(image) = &args.image {
        statuses.retain(|s| {
            s.source.to_string().contains(image.as_str())
                || s.digest.to_string().contains(image.as_str())
                || s.destinations.iter().any(|d| d.repository.to_string().contains(image.as_str()))
        });
    }
    let wants_dlq = args.transport.transport.is_some() || env.transport.is_some();
    let mut dead: Vec<(DeadLetterQueue, DeadLetter)> = Vec::new();
    if wants_dlq {
        let broker = broker(&args.transport, env, None).await?;
        for queue in DeadLetterQueue::ALL {
            for entry in dlq::list(&broker, queue, &Filter::default()).await.map_err(pipeline_error)? {
                if let Ok(record) = entry.record {
                    dead.push((queue, record));
                }
            }
        }
    }
    let rows: Vec<Row> = statuses
        .iter()
        .map(|s| {
            let digest = s.digest.to_string();
            let dead_letters = dead
                .iter()
                .filter(|(_, r)| r.original.as_ref().is_some_and(|o| o.to_string().contains(&digest)))
                .map(|(queue, r)| DeadRow {
                    queue: queue.to_string(),
                    stage: r.stage.to_string(),
                    class: r.class.to_string(),
                    error: r.error.clone(),
                    attempts: r.attempts,
                    message_id: r.message_id.clone(),
                })
                .collect();
            Row::new(s, dead_letters)
        })
        .collect();
    let incomplete = rows.iter().filter(|r| !r.complete).count();
    match args.output {
        StatusFormat::Json => {
            output::print(&format!("{}\n", serde_json::to_string_pretty(&rows).map_err(pipeline_error)?))
        }
        StatusFormat::Table => output::print(&table(&rows, args.all)),
    }
    Ok(if incomplete > 0 { ExitStatus::ExcludedEdges } else { ExitStatus::Ok })
}

pub(crate) async fn reconcile(args: ReconcileArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let (_, repair) = survey(&args.inputs, &args.registries, env).await?;
    let event = format!("reconcile-{}", uuid_like());
    let mut text = String::new();
    let mut batches: Vec<(Queue, Vec<Vec<u8>>)> = Vec::new();
    fn encode<T: Keyed + Serialize + Clone>(
        queue: Queue,
        bodies: &[T],
        event: &str,
        text: &mut String,
        describe: impl Fn(&T) -> String,
        out: &mut Vec<(Queue, Vec<Vec<u8>>)>,
    ) -> Result<(), CliError> {
        let mut encoded = Vec::with_capacity(bodies.len());
        for body in bodies {
            text.push_str(&format!("{:<9} {}\n", queue.name(), describe(body)));
            encoded.push(Envelope::new(body.clone(), event, None).encode().map_err(pipeline_error)?);
        }
        for chunk in encoded.chunks(BATCH) {
            out.push((queue, chunk.to_vec()));
        }
        Ok(())
    }
    let promotion = |p: &ferry_messages::Promotion| format!("{}@{}", p.source, p.digest);
    encode(Queue::Verify, &repair.verify, &event, &mut text, |m| promotion(&m.promotion), &mut batches)?;
    encode(Queue::Sign, &repair.sign, &event, &mut text, |m| promotion(&m.promotion), &mut batches)?;
    encode(Queue::Attest, &repair.attest, &event, &mut text, |m| promotion(&m.promotion), &mut batches)?;
    encode(
        Queue::Replicate,
        &repair.replicate,
        &event,
        &mut text,
        |m| format!("{}@{} -> {}", m.primary, m.digest, m.mirror),
        &mut batches,
    )?;
    let summary = format!(
        "{} verify, {} sign, {} attest, {} replicate",
        repair.verify.len(),
        repair.sign.len(),
        repair.attest.len(),
        repair.replicate.len()
    );
    if args.dry_run {
        output::print(&format!("{text}would emit {summary} (dry run)\n"));
        return Ok(ExitStatus::Ok);
    }
    if !repair.is_empty() {
        let broker = broker(&args.transport, env, None).await?;
        for (queue, bodies) in batches {
            broker.publish(Address::Stage(queue), bodies).await.map_err(pipeline_error)?;
        }
    }
    output::print(&format!("{text}emitted {summary}\n"));
    Ok(ExitStatus::Ok)
}

fn uuid_like() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:x}")
}

#[derive(Debug, Serialize)]
struct Row {
    source: String,
    digest: String,
    /// The children of an index, each signed at the primary and replicated to every mirror.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<String>,
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_source: Option<String>,
    destinations: Vec<DestinationRow>,
    dead_letters: Vec<DeadRow>,
}

#[derive(Debug, Serialize)]
struct DestinationRow {
    repository: String,
    primary: bool,
    tags: Vec<String>,
    copied: String,
    signed: String,
    attested: String,
    /// At a mirror: artifact tags the primary holds (for the digest and each child) and this
    /// mirror lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeadRow {
    queue: String,
    stage: String,
    class: String,
    error: String,
    attempts: u32,
    message_id: Option<String>,
}

impl Row {
    fn new(s: &PromotionStatus, dead_letters: Vec<DeadRow>) -> Self {
        Row {
            source: s.source.to_string(),
            digest: s.digest.to_string(),
            children: s.children.iter().map(ToString::to_string).collect(),
            complete: s.missing_source.is_none()
                && dead_letters.is_empty()
                && s.destinations.iter().all(|d| d.is_complete() || d.refused.is_some()),
            missing_source: s.missing_source.clone(),
            destinations: s
                .destinations
                .iter()
                .map(|d| DestinationRow {
                    repository: d.repository.to_string(),
                    primary: d.primary,
                    tags: d.tags.clone(),
                    copied: d.copied.to_string(),
                    signed: d.signed.to_string(),
                    attested: d.attested.to_string(),
                    missing: d.missing.clone(),
                    refused: d.refused.clone(),
                })
                .collect(),
            dead_letters,
        }
    }
}

/// One block per incomplete promotion; complete ones are counted (or listed with `--all`).
fn table(rows: &[Row], all: bool) -> String {
    let mut text = String::new();
    let mut complete = 0;
    for row in rows {
        if row.complete {
            complete += 1;
            if !all {
                continue;
            }
        }
        text.push_str(&format!(
            "{}@{}{}\n",
            row.source,
            row.digest,
            if row.complete { "  complete" } else { "" }
        ));
        if let Some(reason) = &row.missing_source {
            text.push_str(&format!("  source: {reason}\n"));
        }
        for d in &row.destinations {
            let role = if d.primary { "primary" } else { "mirror" };
            match &d.refused {
                Some(reason) => {
                    text.push_str(&format!("  {:<7} {}  refused: {reason}\n", role, d.repository))
                }
                None => text.push_str(&format!(
                    "  {:<7} {}:{}  copied {}  signed {}  attested {}\n",
                    role,
                    d.repository,
                    d.tags.join(","),
                    d.copied,
                    d.signed,
                    d.attested
                )),
            }
            if !d.missing.is_empty() {
                text.push_str(&format!("          lacks {}\n", d.missing.join(", ")));
            }
        }
        for dead in &row.dead_letters {
            text.push_str(&format!(
                "  dead letter in {} (stage {}, {}, {} attempts, id {}): {}\n",
                dead.queue,
                dead.stage,
                dead.class,
                dead.attempts,
                dead.message_id.as_deref().unwrap_or("-"),
                dead.error
            ));
        }
    }
    text.push_str(&format!(
        "{} promotion(s): {} complete, {} incomplete\n",
        rows.len(),
        complete,
        rows.len() - complete
    ));
    text
}
