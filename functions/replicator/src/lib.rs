//! The replicator function: `replicate` → nothing. Copies `.sig`, `.att` and `.sbom` of one
//! digest from the primary destination to one mirror, replacing a tag only with a superset.

use ferry_copy::{Copier, CopyOptions};
use ferry_messages::{Envelope, Queue, ReplicateMessage};
use ferry_registry::OciRegistry;
use ferry_runtime::function::{Context, registry};
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::replicate::replicate_all;

#[derive(Debug)]
pub struct Replicator {
    pub copier: Copier<OciRegistry>,
}

pub async fn build(context: Context) -> anyhow::Result<Replicator> {
    Ok(Replicator { copier: Copier::new(registry(&context)?, CopyOptions::default()) })
}

impl Stage for Replicator {
    type Message = ReplicateMessage;
    const QUEUE: Queue = Queue::Replicate;

    async fn handle(&self, message: Envelope<ReplicateMessage>) -> Result<Vec<Outgoing>, StageError> {
        let m = &message.body;
        let done = replicate_all(&self.copier, &m.primary, &m.mirror, &m.digest, false)
            .await
            .map_err(ferry_signer::trust_error)?;
        tracing::info!(primary = %m.primary, mirror = %m.mirror, digest = %m.digest, ?done, "replicated");
        Ok(Vec::new())
    }
}
