//! The attester function: `attest` → `replicate` (one message per mirror).

use ferry_messages::{AttestMessage, Envelope, Queue, ReplicateMessage};
use ferry_registry::OciRegistry;
use ferry_runtime::function::{Context, registry};
use ferry_runtime::{Outgoing, Stage, StageError};
use ferry_trust::attest::{ManifestOrigin, PromotedTo, Promotion, attest, now_rfc3339};
use ferry_trust::keys::SigningKey;
use ferry_trust::verify::{Check, Report, Status};

#[derive(Debug)]
pub struct Attester {
    pub registry: OciRegistry,
    pub key: Option<SigningKey>,
}

pub async fn build(context: Context) -> anyhow::Result<Attester> {
    let key = context.config.signing_key(None, &context.env).await?;
    Ok(Attester { registry: registry(&context)?, key })
}

fn status(text: &str) -> Status {
    match text {
        "pass" => Status::Pass,
        "warn" => Status::Warn,
        "fail" => Status::Fail,
        _ => Status::Skip,
    }
}

impl Stage for Attester {
    type Message = AttestMessage;
    const QUEUE: Queue = Queue::Attest;

    async fn handle(&self, message: Envelope<AttestMessage>) -> Result<Vec<Outgoing>, StageError> {
        let p = &message.body.promotion;
        let primary =
            p.primary().ok_or_else(|| StageError::permanent("the promotion has no primary destination"))?;
        match &self.key {
            Some(key) => {
                let mut destinations =
                    vec![PromotedTo { repository: primary.repository.clone(), tags: primary.tags.clone() }];
                destinations.extend(
                    p.mirrors()
                        .map(|m| PromotedTo { repository: m.repository.clone(), tags: m.tags.clone() }),
                );
                // The check names a report carries are the verifier's own; keep them as they
                // arrived.
                let checks: Vec<Check> = message
                    .body
                    .verification
                    .iter()
                    .map(|c| Check {
                        name: leak_check_name(&c.check),
                        status: status(&c.result),
                        reason: c.reason.clone(),
                    })
                    .collect();
                let promotion = Promotion {
                    source: p.source.clone(),
                    digest: p.digest,
                    destinations,
                    origin: p.origin.as_ref().map(|o| ManifestOrigin {
                        repository: o.repository.clone(),
                        commit: o.commit.clone(),
                        path: o.path.clone(),
                    }),
                    trigger_event_id: Some(message.event_id.clone()),
                    verification: Some(Report { source: p.source.clone(), digest: p.digest, checks }),
                    timestamp: now_rfc3339(),
                };
                let appended =
                    attest(&self.registry, key, &promotion).await.map_err(ferry_signer::trust_error)?;
                tracing::info!(primary = %primary.repository, digest = %p.digest, ?appended, "attested");
            }
            None => {
                tracing::warn!(primary = %primary.repository, digest = %p.digest, "no signing key is configured; not attested")
            }
        }
        p.mirrors()
            .map(|mirror| {
                let replicate = ReplicateMessage {
                    primary: primary.repository.clone(),
                    mirror: mirror.repository.clone(),
                    digest: p.digest,
                };
                Outgoing::message(Queue::Replicate, replicate, &message)
            })
            .collect()
    }
}

/// Maps a check name from a message back to the verifier's static names.
fn leak_check_name(name: &str) -> &'static str {
    ["source-digest", "reference", "signature", "provenance", "vulnerabilities", "destination"]
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("other")
}
