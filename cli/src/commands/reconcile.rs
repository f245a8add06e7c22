//! `ferry status` and `ferry reconcile`.

use ferry_config::Env;
use ferry_desired::{AnySource, LocalFiles, Scope, Settings};
use ferry_messages::envelope::Keyed;
use ferry_messages::{DeadLetter, DeadLetterQueue, Envelope, Queue};
use ferry_model::ImageRef;
use ferry_plan::{GatherOptions, gather, plan};
use ferry_promotion::reconcile::{Holdings, PromotionStatus, Repair, Survey, reconcile as repair_plan};
use ferry_queue::dlq::{self, Filter};
use ferry_queue::{Address, Broker as _};
use serde::Serialize;

use super::pipeline::{broker, dead_letter_queue, dlq_error, filter, pipeline_error, reading};
use super::plan::inputs;
use crate::args::{PurgeArgs, ReconcileArgs, StatusArgs, StatusFormat};
use crate::error::{CliError, ExitStatus};
use crate::output;

/// Messages per publish call: each batch is confirmed before the next.
const BATCH: usize = 100;

async fn survey(
    inputs_args: &crate::args::InputArgs,
    registries: &crate::args::RegistryArgs,
    image: Option<&ImageRef>,
    deep: bool,
    env: &Env,
) -> Result<(Vec<PromotionStatus>, Repair, Vec<output::RequestCount>), CliError> {
    let config = super::config(registries, env)?;
    let given = if has_inputs(inputs_args) { inputs(inputs_args)? } else { Vec::new() };
    // The credentials the inputs name for their registries (config.yaml, regsync.yaml) too.
    let registry = super::registry_for(&config, env, &given)?;
    let scope = match image {
        Some(image) => Scope::Repository(&image.repository),
        None => Scope::Everything,
    };
    let desired = if !given.is_empty() {
        let files = LocalFiles::new(given, config.policy.clone());
        let settings = Settings { policy: config.policy.clone(), rules: Vec::new() };
        ferry_desired::desired_state(Some(&files), &settings, &registry, scope).await?
    } else {
        // No manifest flags: what the configuration asks for, as the pipeline sees it. The
        // manifest source's current state, and every tag a mirror rule matches at its source.
        if registries.config.is_none() && env.config.is_none() {
            return Err(CliError::Usage(
                "nothing to check: give --config (pipeline.manifests, pipeline.mirror-rules) or manifest \
                 inputs (--manifest, --thin-manifest-dir, --images-list, --charts-sync, --rancher-config, --regsync)"
                    .into(),
            ));
        }
        let source = config
            .pipeline
            .manifests
            .as_ref()
            .map(|m| AnySource::configured(m, &config.policy, env.github_token.clone()))
            .transpose()
            .map_err(super::plan::source_error)?;
        let settings =
            Settings { policy: config.policy.clone(), rules: config.pipeline.mirror_rules.clone() };
        ferry_desired::desired_state(source.as_ref(), &settings, &registry, scope).await?
    };
    for notice in &desired.notices {
        output::note(&format!("{notice}"));
    }
    let options = GatherOptions { concurrency: registries.concurrency, ..GatherOptions::default() };
    let facts = gather(&registry, &desired, options).await;
    let plan = plan(&desired, &facts);
    let survey = Survey { concurrency: registries.concurrency, deep, formats: config.signing_formats };
    let holdings = Holdings::gather(&registry, &plan, &facts, survey).await;
    let (statuses, repair) = repair_plan(&plan, &holdings, None);
    Ok((statuses, repair, output::request_counts(&registry)))
}

fn has_inputs(args: &crate::args::InputArgs) -> bool {
    !(args.manifests.is_empty()
        && args.thin_manifest_dirs.is_empty()
        && args.images_lists.is_empty()
        && args.charts_sync.is_empty()
        && args.rancher_configs.is_empty()
        && args.regsyncs.is_empty())
}

/// Whether a promotion is about `image`: its source or a destination is that repository, with
/// that digest and that tag when the reference names them.
fn about(status: &PromotionStatus, image: &ImageRef) -> bool {
    if image.digest.is_some_and(|d| d != status.digest) {
        return false;
    }
    let tag = image.tag.as_ref().map(|t| t.as_str());
    let at_destination = status
        .destinations
        .iter()
        .any(|d| d.repository == image.repository && tag.is_none_or(|t| d.tags.iter().any(|x| x == t)));
    let at_source = status.source == image.repository
        && tag.is_none_or(|t| status.destinations.iter().any(|d| d.tags.iter().any(|x| x == t)));
    at_destination || at_source
}

pub(crate) async fn status(args: StatusArgs, env: &Env) -> Result<ExitStatus, CliError> {
    // A full reference (host/path[:tag][@digest]) selects exactly; any other text selects the
    // promotions whose source, digest or a destination contains it.
    let reference = args.image.as_deref().and_then(|i| ImageRef::parse(i).ok());
    let (mut statuses, _, requests) =
        survey(&args.inputs, &args.registries, reference.as_ref(), args.deep, env).await?;
    match (&reference, &args.image) {
        (Some(reference), _) => statuses.retain(|s| about(s, reference)),
        (None, Some(image)) => statuses.retain(|s| {
            s.source.to_string().contains(image.as_str())
                || s.digest.to_string().contains(image.as_str())
                || s.destinations.iter().any(|d| d.repository.to_string().contains(image.as_str()))
        }),
        (None, None) => {}
    }
    if args.image.is_some() && statuses.is_empty() {
        output::note(&format!(
            "no promotion found for {}: the configuration or the manifests do not ask for it",
            args.image.as_deref().unwrap_or_default()
        ));
        return Ok(ExitStatus::ExcludedEdges);
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
                    stale: false,
                })
                .collect();
            Row::new(s, dead_letters, wants_dlq)
        })
        .collect();
    if !wants_dlq {
        output::note(
            "dead letters were not read (no --transport or FERRY_TRANSPORT): an incomplete promotion's record, if any, is not shown",
        );
    }
    let incomplete = rows.iter().filter(|r| !r.complete).count();
    match args.output {
        StatusFormat::Json => {
            // The JSON stays an array of promotions (scripts read it); the cost goes to stderr.
            output::print(&format!("{}\n", serde_json::to_string_pretty(&rows).map_err(pipeline_error)?));
            output::note(&output::cost_line(&requests));
        }
        StatusFormat::Table => {
            output::print(&(table(&rows, args.all) + &output::cost_line(&requests) + "\n"))
        }
    }
    Ok(if incomplete > 0 { ExitStatus::ExcludedEdges } else { ExitStatus::Ok })
}

/// Complete at every destination, none refused: whatever a dead letter said about it is
/// resolved (replayed since, or repaired by reconcile).
fn resolved(status: &PromotionStatus) -> bool {
    status.missing_source.is_none() && status.destinations.iter().all(|d| d.is_complete())
}

/// Whether a dead letter is about one of `digests` (its original message names it).
fn about_any(record: &DeadLetter, digests: &[String]) -> bool {
    record.original.as_ref().is_some_and(|o| {
        let text = o.to_string();
        digests.iter().any(|d| text.contains(d.as_str()))
    })
}

/// `ferry dlq purge --resolved`: removes the records `ferry status` calls stale, those about a
/// promotion the registries show complete; every other record stays.
pub(crate) async fn purge_resolved(args: &PurgeArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let (statuses, _, requests) = survey(&args.inputs, &args.registries, None, false, env).await?;
    let done: Vec<String> = statuses.iter().filter(|s| resolved(s)).map(|s| s.digest.to_string()).collect();
    let broker = broker(&args.dlq.transport, env, None).await?;
    let queue = dead_letter_queue(args.dlq.queue);
    let reading = reading(&args.dlq.transport, env);
    output::note(&format!("purge --resolved: dead-letter queue {queue} of {reading}"));
    let selected = filter(&args.dlq)?;
    let entries = dlq::list(&broker, queue, &selected).await.map_err(|e| dlq_error(e, &reading))?;
    let (mut text, mut purged, mut kept) = (String::new(), 0, 0);
    for entry in entries {
        let resolved_id = match &entry.record {
            Ok(record) if about_any(record, &done) => record.message_id.clone(),
            _ => None,
        };
        let Some(id) = resolved_id else {
            kept += 1;
            continue;
        };
        let one = Filter { id: Some(id.clone()), ..Filter::default() };
        purged += dlq::purge(&broker, queue, &one).await.map_err(|e| dlq_error(e, &reading))?;
        text.push_str(&format!("purged {id}: its promotion is complete\n"));
    }
    text.push_str(&format!(
        "{purged} record(s) purged from {queue}, {kept} kept\n{}\n",
        output::cost_line(&requests)
    ));
    output::print(&text);
    Ok(ExitStatus::Ok)
}

pub(crate) async fn reconcile(args: ReconcileArgs, env: &Env) -> Result<ExitStatus, CliError> {
    let (_, repair, requests) = survey(&args.inputs, &args.registries, None, args.deep, env).await?;
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
        output::print(&format!("{text}would emit {summary} (dry run)\n{}\n", output::cost_line(&requests)));
        return Ok(ExitStatus::Ok);
    }
    if !repair.is_empty() {
        let broker = broker(&args.transport, env, None).await?;
        for (queue, bodies) in batches {
            broker.publish(Address::Stage(queue), bodies).await.map_err(pipeline_error)?;
        }
    }
    output::print(&format!("{text}emitted {summary}\n{}\n", output::cost_line(&requests)));
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
    /// Whether the dead-letter queues were read (`dead_letters` is empty either way when not).
    dead_letters_read: bool,
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
    /// The registries show the promotion complete: the record is about a problem that is gone
    /// (replayed since, or repaired by reconcile), and can be purged.
    stale: bool,
}

impl Row {
    fn new(s: &PromotionStatus, mut dead_letters: Vec<DeadRow>, dead_letters_read: bool) -> Self {
        let done = resolved(s);
        for dead in &mut dead_letters {
            dead.stale = done;
        }
        Row {
            source: s.source.to_string(),
            digest: s.digest.to_string(),
            children: s.children.iter().map(ToString::to_string).collect(),
            complete: s.missing_source.is_none()
                && dead_letters.iter().all(|d| d.stale)
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
            dead_letters_read,
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
            let id = dead.message_id.as_deref().unwrap_or("-");
            if dead.stale {
                text.push_str(&format!(
                    "  stale dead letter in {} (stage {}, id {id}): the registries show the promotion complete; `ferry dlq purge --queue {} --id {id}` removes it\n",
                    dead.queue, dead.stage, dead.queue
                ));
                continue;
            }
            text.push_str(&format!(
                "  dead letter in {} (stage {}, {}, {} attempts, id {id}): {}\n    once that is fixed: ferry dlq replay --queue {} --id {id}\n",
                dead.queue, dead.stage, dead.class, dead.attempts, dead.error, dead.queue
            ));
        }
        if !row.complete && row.dead_letters.iter().all(|d| d.stale) && row.missing_source.is_none() {
            text.push_str(if row.dead_letters_read {
                "  no dead letter explains it: still in flight, or stopped without a record; `ferry reconcile` drives it again\n"
            } else {
                "  dead letters not read (give --transport to see whether one explains it)\n"
            });
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
