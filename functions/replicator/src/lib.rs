//! The replicator function: `replicate` → nothing. Copies the primary's `.sig`, `.att` and
//! `.sbom` of one digest and of every child of an index to one mirror, replacing a tag only with
//! a superset ([`ferry_promotion::steps::replicate`]).
//!
//! Architecture invariant: a thin wrapper of `ferry_promotion::steps::replicate`: no decision of its own.

use ferry_bootstrap::{Context, registry};
use ferry_copy::{Copier, CopyOptions};
use ferry_messages::{Envelope, ReplicateMessage};
use ferry_promotion::steps;
use ferry_registry::OciRegistry;
use ferry_runtime::{Outgoing, Stage, StageError};

#[derive(Debug)]
pub struct Replicator {
    pub copier: Copier<OciRegistry>,
}

pub async fn build(context: Context) -> anyhow::Result<Replicator> {
    Ok(Replicator { copier: Copier::new(registry(&context)?, CopyOptions::default()) })
}

impl Stage for Replicator {
    type Message = ReplicateMessage;

    async fn handle(&self, message: Envelope<ReplicateMessage>) -> Result<Vec<Outgoing>, StageError> {
        let m = &message.body;
        // A redelivered message looks the image up again.
        let step = steps::replicate(&self.copier, m, message.delivered_before()).await;
        if let Some(failure) = step.failure {
            return Err(failure.into());
        }
        let done = step.done;
        let written = done.wrote();
        let skipped = done.skipped_text();
        if !skipped.is_empty() {
            tracing::warn!(primary = %m.primary, destination = %m.mirror, digest = %m.digest, %skipped, "referrers not carried to the mirror");
        }
        // The promotion's outcome at this mirror, in one line.
        ferry_runtime::metrics::metrics().promoted("mirror");
        tracing::info!(
            outcome = "promoted",
            primary = %m.primary,
            destination = %m.mirror,
            digest = %m.digest,
            artifacts = done.tags.len(),
            referrers = done.referrers.len(),
            written,
            "promoted to a mirror: copied, with the primary's signatures and attestation"
        );
        Ok(Vec::new())
    }
}
