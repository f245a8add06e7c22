//! The signer function: `sign` → `attest`.
//!
//! For a trusted source it first copies the source's own `.sig`/`.att`/`.sbom` to the primary
//! destination (never from an untrusted source). Then it signs the digest and every child of an
//! index with the configured key. Without a key it signs nothing, says so, and goes on.

use ferry_copy::{Copier, CopyOptions};
use ferry_messages::{AttestMessage, Envelope, Queue, SignMessage};
use ferry_registry::OciRegistry;
use ferry_runtime::function::{Context, registry};
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::TrustError;
use ferry_trust::cosign::ArtifactKind;
use ferry_trust::keys::SigningKey;
use ferry_trust::replicate::replicate;
use ferry_trust::sign::sign;

#[derive(Debug)]
pub struct Signer {
    pub copier: Copier<OciRegistry>,
    pub key: Option<SigningKey>,
}

pub async fn build(context: Context) -> anyhow::Result<Signer> {
    let key = context.config.signing_key(None, &context.env).await?;
    Ok(Signer { copier: Copier::new(registry(&context)?, CopyOptions::default()), key })
}

pub fn trust_error(error: TrustError) -> StageError {
    let retry_after = match &error {
        TrustError::Registry(ferry_registry::RegistryError::Throttled { retry_after, .. }) => *retry_after,
        _ => None,
    };
    StageError { class: error.class(), message: error.to_string(), retry_after }
}

impl Stage for Signer {
    type Message = SignMessage;
    const QUEUE: Queue = Queue::Sign;

    async fn handle(&self, message: Envelope<SignMessage>) -> Result<Vec<Outgoing>, StageError> {
        let promotion = &message.body.promotion;
        let primary = &promotion
            .primary()
            .ok_or_else(|| StageError::permanent("the promotion has no primary destination"))?
            .repository;
        if promotion.source_trusted {
            for kind in ArtifactKind::ALL {
                replicate(&self.copier, &promotion.source, primary, &promotion.digest, kind, false)
                    .await
                    .map_err(trust_error)?;
            }
        }
        match &self.key {
            Some(key) => {
                let signed = sign(self.copier.registry(), key, primary, promotion.digest)
                    .await
                    .map_err(trust_error)?;
                tracing::info!(%primary, digest = %promotion.digest, signed = signed.signed.len(), already = signed.already.len(), "signed");
            }
            None => {
                tracing::warn!(%primary, digest = %promotion.digest, "no signing key is configured; not signed")
            }
        }
        let attest =
            AttestMessage { promotion: promotion.clone(), verification: message.body.verification.clone() };
        Ok(vec![Outgoing::message(Queue::Attest, attest, &message)?])
    }
}
