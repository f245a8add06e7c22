//! The attester function: `attest` → `copy` (one message per mirror), via
//! [`ferry_promotion::steps::attest`].
//!
//! Architecture invariant: a thin wrapper of `ferry_promotion::steps::attest`: no decision of its own.

use ferry_bootstrap::{Context, registry};
use ferry_messages::{AttestMessage, Envelope};
use ferry_promotion::steps;
use ferry_registry::OciRegistry;
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::keys::SigningKey;

#[derive(Debug)]
pub struct Attester {
    pub registry: OciRegistry,
    pub key: Option<SigningKey>,
    /// `signing.formats`.
    pub formats: ferry_trust::Formats,
}

pub async fn build(context: Context) -> anyhow::Result<Attester> {
    let key = ferry_trust::keys::load(context.config.signing.as_ref(), context.env.cosign_password.as_ref())
        .await?;
    Ok(Attester { registry: registry(&context)?, key, formats: context.config.signing_formats })
}

impl Stage for Attester {
    type Message = AttestMessage;

    async fn handle(&self, message: Envelope<AttestMessage>) -> Result<Vec<Outgoing>, StageError> {
        let step = steps::attest(
            &self.registry,
            self.key.as_ref(),
            self.formats,
            &message.body,
            Some(&message.event_id),
            message.delivered_before(),
        )
        .await;
        if let Some(failure) = step.failure {
            return Err(failure.into());
        }
        let promotion = &message.body.promotion;
        let digest = promotion.digest;
        match &step.done {
            Some(appended) => tracing::debug!(%digest, ?appended, "attested"),
            None => tracing::warn!(%digest, "no signing key is configured; not attested"),
        }
        // The promotion's outcome at its primary, in one line.
        if let Some(primary) = promotion.destinations.first() {
            ferry_runtime::metrics::metrics().promoted("primary");
            tracing::info!(
                outcome = "promoted",
                source = %promotion.source,
                %digest,
                destination = %primary.repository,
                tags = %primary.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","),
                mirrors = promotion.destinations.len() - 1,
                "promoted to the primary: {}; {} mirror(s) follow",
                if self.key.is_some() {
                    "copied, signed and attested"
                } else {
                    "copied, NOT signed or attested (no signing key is configured)"
                },
                promotion.destinations.len() - 1
            );
        }
        step.next.into_iter().map(|next| Outgoing::next(next, &message)).collect()
    }
}
