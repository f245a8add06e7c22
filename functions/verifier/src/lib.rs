//! The verifier function: `verify` → `copy` (one message per destination).
//!
//! An image that fails a check about itself is dead-lettered to `verification-failed` with
//! every failing check, and nothing is copied. Destinations the plan refused (a conflicting
//! tag, a prerelease) are dead-lettered one by one, each as the copy message it would have been,
//! so that a replay after the conflict is resolved does the copy.

use ferry_messages::{CheckSummary, CopyMessage, DeadLetterQueue, Envelope, Queue, VerifyMessage};
use ferry_registry::{ErrorClass, OciRegistry};
use ferry_runtime::function::{Context, registry};
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::policy::TrustPolicy;
use ferry_trust::verify::{self, Report};

#[derive(Debug)]
pub struct Verifier {
    pub registry: OciRegistry,
    pub policy: TrustPolicy,
}

pub async fn build(context: Context) -> anyhow::Result<Verifier> {
    Ok(Verifier { registry: registry(&context)?, policy: context.config.trust.clone() })
}

/// The report as it travels with the promotion.
pub fn summary(report: &Report) -> Vec<CheckSummary> {
    report
        .checks
        .iter()
        .map(|c| CheckSummary {
            check: c.name.to_owned(),
            result: c.status.to_string(),
            reason: c.reason.clone(),
        })
        .collect()
}

impl Stage for Verifier {
    type Message = VerifyMessage;
    const QUEUE: Queue = Queue::Verify;

    async fn handle(&self, message: Envelope<VerifyMessage>) -> Result<Vec<Outgoing>, StageError> {
        let promotion = &message.body.promotion;
        let request = verify::Request {
            source: promotion.source.clone(),
            digest: promotion.digest,
            source_tag: promotion.source_tag.clone(),
            destination_problems: message.body.refused.iter().map(|r| r.reason.clone()).collect(),
        };
        let policy = self.policy.for_source(&promotion.source);
        let facts = verify::gather(&self.registry, &request, policy).await;
        let report = verify::decide(&request, &facts, policy);
        if !report.image_passed() {
            let failed: Vec<String> = report
                .failures()
                .filter(|c| c.name != "destination")
                .map(|c| format!("{}: {}", c.name, c.reason))
                .collect();
            return Err(StageError::verification(format!(
                "{}@{}: {}",
                promotion.source,
                promotion.digest,
                failed.join("; ")
            )));
        }
        let verification = summary(&report);
        let mut out = Vec::new();
        for destination in &promotion.destinations {
            let copy = CopyMessage {
                promotion: promotion.clone(),
                destination: destination.clone(),
                verification: verification.clone(),
            };
            out.push(Outgoing::message(Queue::Copy, copy, &message)?);
        }
        for refused in &message.body.refused {
            let copy = CopyMessage {
                promotion: promotion.clone(),
                destination: refused.destination.clone(),
                verification: verification.clone(),
            };
            let original =
                Envelope::new(copy, &message.event_id, ferry_runtime::telemetry::current_traceparent());
            out.push(Outgoing::dead_letter(
                DeadLetterQueue::VerificationFailed,
                Queue::Copy,
                ErrorClass::Verification,
                &refused.reason,
                &original,
            )?);
        }
        tracing::info!(source = %promotion.source, digest = %promotion.digest, destinations = promotion.destinations.len(), "verified");
        Ok(out)
    }
}
