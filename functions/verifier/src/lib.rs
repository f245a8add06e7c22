//! The verifier function: `verify` → `copy` (the primary's; the mirrors follow the attester).
//!
//! An image that fails a check about itself is dead-lettered to `verification-failed` with
//! every failing check, and nothing is copied. Destinations the plan refused (a conflicting
//! tag, a prerelease) are dead-lettered one by one, each as the copy message it would have been,
//! so that a replay after the conflict is resolved does the copy. The decisions are
//! [`ferry_promotion::steps::verify`]'s.
//!
//! Architecture invariant: a thin wrapper of `ferry_promotion::steps::verify`: no decision of its own.

use ferry_bootstrap::{Context, registry};
use ferry_messages::{DeadLetterQueue, Envelope, Queue, VerifyMessage};
use ferry_promotion::steps;
use ferry_registry::{ErrorClass, OciRegistry};
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::policy::TrustPolicy;

#[derive(Debug)]
pub struct Verifier {
    pub registry: OciRegistry,
    pub policy: TrustPolicy,
}

pub async fn build(context: Context) -> anyhow::Result<Verifier> {
    Ok(Verifier { registry: registry(&context)?, policy: context.config.trust.clone() })
}

impl Stage for Verifier {
    type Message = VerifyMessage;

    async fn handle(&self, message: Envelope<VerifyMessage>) -> Result<Vec<Outgoing>, StageError> {
        let step = steps::verify(&self.registry, &self.policy, &message.body).await;
        if let Some(failure) = step.failure {
            return Err(failure.into());
        }
        let mut out = Vec::new();
        for next in step.next {
            out.push(Outgoing::next(next, &message)?);
        }
        for (copy, reason) in step.done.refused {
            let original =
                Envelope::new(copy, &message.event_id, ferry_runtime::telemetry::current_traceparent());
            out.push(Outgoing::dead_letter(
                DeadLetterQueue::VerificationFailed,
                Queue::Copy,
                ErrorClass::Verification,
                &reason,
                &original,
            )?);
        }
        let promotion = &message.body.promotion;
        tracing::debug!(source = %promotion.source, digest = %promotion.digest, destinations = promotion.destinations.len(), "verified");
        Ok(out)
    }
}
