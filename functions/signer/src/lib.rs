//! The signer function: `sign` → `attest` ([`ferry_promotion::steps::sign`]).
//!
//! For a trusted source it first copies the source's own `.sig`/`.att`/`.sbom` of the digest
//! and of each child to the primary destination (never from an untrusted source). Then it signs
//! the digest and every child of an index with the configured key. Without a key it signs
//! nothing, says so, and goes on.
//!
//! Architecture invariant: a thin wrapper of `ferry_promotion::steps::sign`: no decision of its own.

use ferry_bootstrap::{Context, registry};
use ferry_copy::{Copier, CopyOptions};
use ferry_messages::{Envelope, SignMessage};
use ferry_promotion::steps;
use ferry_registry::OciRegistry;
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::keys::SigningKey;

#[derive(Debug)]
pub struct Signer {
    pub copier: Copier<OciRegistry>,
    pub key: Option<SigningKey>,
    /// `signing.formats`.
    pub formats: ferry_trust::Formats,
    /// Which referrers each source may send along (`trust.sources[].referrer-types`).
    pub policy: ferry_trust::policy::TrustPolicy,
}

pub async fn build(context: Context) -> anyhow::Result<Signer> {
    let key = ferry_trust::keys::load(context.config.signing.as_ref(), context.env.cosign_password.as_ref())
        .await?;
    Ok(Signer {
        copier: Copier::new(registry(&context)?, CopyOptions::default()),
        key,
        formats: context.config.signing_formats,
        policy: context.config.trust.clone(),
    })
}

impl Stage for Signer {
    type Message = SignMessage;

    async fn handle(&self, message: Envelope<SignMessage>) -> Result<Vec<Outgoing>, StageError> {
        let step =
            steps::sign(&self.copier, self.key.as_ref(), self.formats, &self.policy, &message.body).await;
        if let Some(failure) = step.failure {
            return Err(failure.into());
        }
        let promotion = &message.body.promotion;
        if let Some(carried) = &step.done.from_source {
            let skipped = carried.skipped_text();
            if !skipped.is_empty() {
                tracing::warn!(source = %promotion.source, digest = %promotion.digest, %skipped, "the source's referrers not carried to the primary");
            }
        }
        match &step.done.signed {
            Some(signed) => {
                tracing::debug!(digest = %promotion.digest, signed = signed.signed.len(), already = signed.already.len(), "signed")
            }
            None => tracing::warn!(digest = %promotion.digest, "no signing key is configured; not signed"),
        }
        step.next.into_iter().map(|next| Outgoing::next(next, &message)).collect()
    }
}
