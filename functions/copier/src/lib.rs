//! The copier function: `copy` → `sign` after the primary's copy, `replicate` after a
//! mirror's ([`ferry_promotion::steps::copy`]).
//!
//! Architecture invariant: a thin wrapper of `ferry_promotion::steps::copy`: no decision of its own.

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_bootstrap::{Context, registry};
use ferry_copy::{Copier, CopyOptions};
use ferry_messages::{CopyMessage, Envelope};
use ferry_promotion::steps;
use ferry_registry::OciRegistry;
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

    async fn handle(&self, message: Envelope<CopyMessage>) -> Result<Vec<Outgoing>, StageError> {
        // A redelivered message must look again: an earlier attempt may have copied it.
        let step = steps::copy(&self.copier, &message.body, message.delivered_before()).await;
        let total = self.copier.stats().bytes.load(Ordering::Relaxed);
        telemetry::counters().bytes(total.saturating_sub(self.reported_bytes.swap(total, Ordering::Relaxed)));
        if let Some(failure) = step.failure {
            return Err(failure.into());
        }
        telemetry::counters().promoted(1);
        let destination = &message.body.destination;
        tracing::debug!(destination = %destination.repository, digest = %message.body.promotion.digest, copied = ?step.done.manifest, tags = ?destination.tags, "copied");
        step.next.into_iter().map(|next| Outgoing::next(next, &message)).collect()
    }
}
