//! Running the work of a plan.

use std::collections::HashMap;

use ferry_model::{Digest, Repository};
use ferry_plan::{Action, Plan};
use ferry_registry::Classify as _;
use ferry_registry::RegistryWrite;
use futures_util::StreamExt as _;

use crate::copier::{Copier, Done, Job, JobOutcome};
use crate::error::CopyError;
use crate::stats::CopyStats;

/// What happened to one edge of a plan.
#[derive(Clone, Debug)]
pub enum EdgeOutcome {
    /// The edge needed work, and it was done.
    Done(Done),
    /// The edge needed work, and it failed.
    Failed(CopyError),
    /// The plan found it present; nothing was attempted.
    Present,
    /// The plan excluded it (conflict, missing source, ...); nothing was attempted.
    Excluded,
}

/// One outcome per plan edge, in plan order.
#[derive(Clone, Debug, Default)]
pub struct PromotionReport {
    pub outcomes: Vec<EdgeOutcome>,
}

impl PromotionReport {
    pub fn n_failed(&self) -> usize {
        self.outcomes.iter().filter(|o| matches!(o, EdgeOutcome::Failed(_))).count()
    }
}

/// Which edges of the plan one job serves: the index of its tagless edge, and of each tag's.
struct JobEdges {
    tagless: Vec<usize>,
    tagged: Vec<usize>,
}

/// Copies every edge of `plan` that needs work (`copy`, `add-tag`). Edges that share a source,
/// digest and destination are one job: one copy, then each tag. Jobs run `max_images` at a time;
/// a failed job fails only its own edges.
pub async fn promote<R: RegistryWrite>(copier: &Copier<R>, plan: &Plan) -> PromotionReport {
    let mut outcomes: Vec<EdgeOutcome> = plan
        .edges
        .iter()
        .map(|e| if e.action.is_excluded() { EdgeOutcome::Excluded } else { EdgeOutcome::Present })
        .collect();
    let mut jobs: Vec<(Job, JobEdges)> = Vec::new();
    let mut index: HashMap<(Repository, Digest, Repository), usize> = HashMap::new();
    for (i, edge) in plan.edges.iter().enumerate() {
        let Some(digest) = edge.digest.filter(|_| edge.action.is_work()) else { continue };
        let key = (edge.source.clone(), digest, edge.destination.clone());
        let slot = *index.entry(key).or_insert_with(|| {
            jobs.push((
                Job {
                    source: edge.source.clone(),
                    digest,
                    destination: edge.destination.clone(),
                    tags: Vec::new(),
                    known_absent: edge.action == Action::Copy,
                },
                JobEdges { tagless: Vec::new(), tagged: Vec::new() },
            ));
            jobs.len() - 1
        });
        let (job, edges) = &mut jobs[slot];
        // One edge of the group finding the manifest present is enough to look again.
        job.known_absent &= edge.action == Action::Copy;
        match &edge.tag {
            Some(tag) => {
                job.tags.push(tag.clone());
                edges.tagged.push(i);
            }
            None => edges.tagless.push(i),
        }
    }
    tracing::info!(jobs = jobs.len(), "promoting");
    let mut results = futures_util::stream::iter(jobs)
        .map(|(job, edges)| async move {
            let outcome = copier.copy(&job).await;
            log_job(&job, &outcome);
            (edges, outcome)
        })
        .buffer_unordered(copier.options().max_images.max(1));
    while let Some((edges, outcome)) = results.next().await {
        let mut record = |i: usize, result: Result<Done, CopyError>| {
            let counter =
                if result.is_ok() { &copier.stats().edges_done } else { &copier.stats().edges_failed };
            CopyStats::add(counter, 1);
            outcomes[i] = match result {
                Ok(done) => EdgeOutcome::Done(done),
                Err(error) => EdgeOutcome::Failed(error),
            };
        };
        for &i in &edges.tagless {
            record(i, outcome.tagless());
        }
        for (position, &i) in edges.tagged.iter().enumerate() {
            record(i, outcome.tag(position));
        }
    }
    PromotionReport { outcomes }
}

fn log_job(job: &Job, outcome: &JobOutcome) {
    let tags: Vec<&str> = job.tags.iter().map(|t| t.as_str()).collect();
    match (&outcome.manifest, outcome.tags.iter().find_map(|t| t.as_ref().err())) {
        (Err(error), _) | (Ok(_), Some(error)) => tracing::warn!(
            source = %job.source, digest = %job.digest, destination = %job.destination, ?tags,
            class = %error.class(), %error, "edge failed"
        ),
        (Ok(copied), None) => tracing::info!(
            source = %job.source, digest = %job.digest, destination = %job.destination, ?tags,
            copied, "edge done"
        ),
    }
}
