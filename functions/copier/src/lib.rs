//! The copier function: `copy` → `sign` (for the primary destination).

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_copy::{Copier, CopyOptions, Job};
use ferry_messages::{CopyMessage, Envelope, Queue, SignMessage};
use ferry_registry::OciRegistry;
use ferry_runtime::function::{Context, registry};
use ferry_runtime::{Outgoing, Stage, StageError, telemetry};

#[derive(Debug)]
pub struct CopierStage {
    pub copier: Copier<OciRegistry>,
    reported_bytes: AtomicU64,
}

impl CopierStage {
    pub fn new(copier: Copier<OciRegistry>) -> Self {
        Self { copier, reported_bytes: AtomicU64::new(0) }
    }
}

pub async fn build(context: Context) -> anyhow::Result<CopierStage> {
    Ok(CopierStage::new(Copier::new(registry(&context)?, CopyOptions::default())))
}

impl Stage for CopierStage {
    type Message = CopyMessage;
    const QUEUE: Queue = Queue::Copy;

    async fn handle(&self, message: Envelope<CopyMessage>) -> Result<Vec<Outgoing>, StageError> {
        let body = &message.body;
        let destination = &body.destination;
        let job = Job {
            source: body.promotion.source.clone(),
            digest: body.promotion.digest,
            destination: destination.repository.clone(),
            tags: destination.tags.clone(),
            // A redelivered message must look again: an earlier attempt may have copied it.
            known_absent: destination.known_absent && message.attempt == 0,
        };
        let outcome = self.copier.copy(&job).await;
        let total = self.copier.stats().bytes.load(Ordering::Relaxed);
        telemetry::counters().bytes(total.saturating_sub(self.reported_bytes.swap(total, Ordering::Relaxed)));
        let copied = outcome.manifest.map_err(|e| stage_error(&e))?;
        for result in &outcome.tags {
            result.as_ref().map_err(stage_error)?;
        }
        telemetry::counters().promoted(1);
        tracing::info!(destination = %job.destination, digest = %job.digest, copied, tags = ?job.tags, "copied");
        if !destination.primary {
            return Ok(Vec::new());
        }
        let sign = SignMessage { promotion: body.promotion.clone(), verification: body.verification.clone() };
        Ok(vec![Outgoing::message(Queue::Sign, sign, &message)?])
    }
}

fn stage_error(error: &ferry_copy::CopyError) -> StageError {
    let retry_after = match error {
        ferry_copy::CopyError::Registry(ferry_registry::RegistryError::Throttled { retry_after, .. }) => {
            *retry_after
        }
        _ => None,
    };
    StageError { class: error.class(), message: error.to_string(), retry_after }
}
