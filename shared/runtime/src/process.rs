//! Handling one delivery, the same way in every mode.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_messages::envelope::{Keyed as _, with_attempt};
use ferry_messages::{DeadLetter, DeadLetterQueue, Envelope, FailureClass};
use ferry_queue::{Address, Broker, QueueError};
use ferry_registry::ErrorClass;
use futures_util::FutureExt as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::stage::{Consumes as _, Stage};
use crate::telemetry;

/// How many times to try before dead-lettering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySettings {
    /// Transient failures (5xx, connection errors) before `poison`.
    pub max_attempts: u32,
    /// HTTP 429 beyond the transport's budget before `throttled`.
    pub max_throttled_attempts: u32,
    /// The first retry delay; it doubles with each attempt, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_throttled_attempts: 3,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetrySettings {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(16));
        (self.base_delay * factor).min(self.max_delay)
    }
}

/// What to do with the delivery now.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// The stage finished and its output is published: remove the message.
    Done,
    /// Deliver again after `delay`, with `body` (the attempt count raised).
    Retry { body: Vec<u8>, delay: Duration },
    /// A record went to this dead-letter queue: remove the message.
    DeadLettered(DeadLetterQueue),
}

/// Handles one delivery of `stage`'s queue. On `Ok` the caller settles the delivery as the
/// disposition says; on `Err` (the broker failed while publishing) the delivery must not be
/// acked, so that it is delivered again.
pub async fn handle_delivery<S: Stage, B: Broker>(
    stage: &S,
    broker: &B,
    body: &[u8],
    receive_count: u32,
    settings: &RetrySettings,
) -> Result<Disposition, QueueError> {
    let queue = S::QUEUE;
    let envelope = match Envelope::<S::Message>::decode(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(%queue, %error, "malformed message; dead-lettering to poison");
            let record = DeadLetter::new(
                DeadLetterQueue::Poison,
                queue,
                FailureClass::Malformed,
                &error.to_string(),
                receive_count,
                body,
            );
            return dead_letter(broker, record).await;
        }
    };
    let attempt = envelope.attempt.max(receive_count.saturating_sub(1));
    let subject = envelope.body.subject();
    let span = tracing::info_span!(
        "stage",
        otel.name = queue.stage(),
        stage = queue.stage(),
        message_id = %envelope.id,
        event_id = %envelope.event_id,
        attempt,
        image = subject.image.as_deref(),
        digest = subject.digest.as_deref(),
        destination = subject.destination.as_deref(),
        outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = envelope.traceparent.as_deref() {
        let _ = span.set_parent(telemetry::extract(parent, envelope.tracestate.as_deref()));
    }
    // The trace id in every log line of this message (JSON logs carry the current span's
    // fields), with or without a tracing backend.
    if let Some(trace_id) = telemetry::trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    let started = std::time::Instant::now();
    let disposition = handle_instrumented(stage, broker, body, envelope, span, attempt, settings).await;
    let result = match &disposition {
        Ok(Disposition::Done) => "done",
        Ok(Disposition::Retry { .. }) => "retry",
        Ok(Disposition::DeadLettered(_)) => "dead_lettered",
        Err(_) => "error",
    };
    crate::metrics::metrics().stage(queue.stage(), result, started.elapsed().as_secs_f64());
    disposition
}

async fn handle_instrumented<S: Stage, B: Broker>(
    stage: &S,
    broker: &B,
    body: &[u8],
    envelope: Envelope<S::Message>,
    span: tracing::Span,
    attempt: u32,
    settings: &RetrySettings,
) -> Result<Disposition, QueueError> {
    let queue = S::QUEUE;
    let first_failure = envelope.first_failure.clone();
    // Boxed (type-erased), once for every transport: a stage's future (registry clients,
    // signing) is deep, and nested inline in a worker's or the Lambda runtime's future it
    // overflows rustc's layout query depth when the function binaries are built.
    // A panic in a stage is caught here and dead-letters this message as poison, with the
    // panic's text; it never takes the process (and every message in flight) down.
    let result = match std::panic::AssertUnwindSafe(stage.handle(envelope).instrument(span.clone()).boxed())
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            tracing::error!(parent: &span, %queue, panic = %text, "the stage panicked; dead-lettering the message as poison");
            span.record("outcome", "panicked");
            let record = DeadLetter::new(
                DeadLetterQueue::Poison,
                queue,
                FailureClass::Permanent,
                &format!("the {} stage panicked: {text}", queue.stage()),
                attempt + 1,
                body,
            );
            return dead_letter(broker, record).instrument(span.clone()).await;
        }
    };
    match result {
        Ok(outgoing) => {
            let mut by_address: BTreeMap<Address, Vec<Vec<u8>>> = BTreeMap::new();
            for out in outgoing {
                by_address.entry(out.to).or_default().push(out.body);
            }
            for (address, bodies) in by_address {
                if let Address::DeadLetter(dlq) = address {
                    telemetry::counters().dead_lettered(dlq, bodies.len() as u64);
                    for body in &bodies {
                        match DeadLetter::decode(body) {
                            Ok(record) => announce(&record),
                            Err(_) => crate::metrics::metrics().dead_lettered(queue.stage(), dlq),
                        }
                    }
                }
                broker.publish(address, bodies).await?;
            }
            span.record("outcome", "done");
            Ok(Disposition::Done)
        }
        Err(error) => {
            let next = attempt + 1;
            let retry_body = || {
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                with_attempt(body, next, Some(first_failure.as_deref().unwrap_or(&now)))
                    .unwrap_or_else(|| body.to_vec())
            };
            let record = |dlq: DeadLetterQueue, text: &str| {
                let current = retry_body();
                DeadLetter::new(dlq, queue, failure_class(error.class), text, next, &current)
            };
            span.record("outcome", error.class.name());
            tracing::warn!(parent: &span, %queue, class = %error.class, error = %error.message, attempt = next, "stage failed");
            match error.class {
                ErrorClass::Verification => {
                    dead_letter(broker, record(DeadLetterQueue::VerificationFailed, &error.message))
                        .instrument(span.clone())
                        .await
                }
                ErrorClass::Permanent => {
                    dead_letter(broker, record(DeadLetterQueue::Poison, &error.message))
                        .instrument(span.clone())
                        .await
                }
                ErrorClass::Throttled => {
                    telemetry::counters().throttled(1);
                    if next < settings.max_throttled_attempts {
                        let delay = error
                            .retry_after
                            .unwrap_or_else(|| settings.backoff(attempt))
                            .max(Duration::from_secs(1));
                        Ok(Disposition::Retry { body: retry_body(), delay })
                    } else {
                        dead_letter(broker, record(DeadLetterQueue::Throttled, &error.message))
                            .instrument(span.clone())
                            .await
                    }
                }
                ErrorClass::Transient => {
                    if next < settings.max_attempts {
                        Ok(Disposition::Retry { body: retry_body(), delay: settings.backoff(attempt) })
                    } else {
                        let text = format!("gave up after {next} attempts: {}", error.message);
                        dead_letter(broker, record(DeadLetterQueue::Poison, &text))
                            .instrument(span.clone())
                            .await
                    }
                }
            }
        }
    }
}

async fn dead_letter<B: Broker>(broker: &B, record: DeadLetter) -> Result<Disposition, QueueError> {
    let dlq = record.dead_letter_queue;
    announce(&record);
    telemetry::counters().dead_lettered(dlq, 1);
    broker.publish(Address::DeadLetter(dlq), vec![record.encode()]).await?;
    Ok(Disposition::DeadLettered(dlq))
}

/// Every dead letter, whoever wrote it (the runtime for a failed step, a stage for a refused
/// destination): one ERROR line a person reads at the default level, saying where the promotion
/// stopped, why, and the command that replays this one record; and the metric, labelled with
/// the record's own stage (the one a replay resumes).
pub(crate) fn announce(record: &DeadLetter) {
    let dlq = record.dead_letter_queue;
    crate::metrics::metrics().dead_lettered(record.stage.as_str(), dlq);
    tracing::error!(
        stage = %record.stage,
        dead_letter = %dlq,
        record = %ferry_model::escaped(record.id()),
        "promotion stopped at the {} stage, dead-lettered to {dlq}: {}; once that is fixed, replay it with `{}`",
        record.stage,
        ferry_model::escaped(&record.error),
        ferry_model::escaped(&record.replay_command()),
    );
}

/// A stage error's class as dead-letter records name it.
pub fn failure_class(class: ErrorClass) -> FailureClass {
    match class {
        ErrorClass::Throttled => FailureClass::Throttled,
        ErrorClass::Verification => FailureClass::Verification,
        ErrorClass::Transient => FailureClass::Transient,
        ErrorClass::Permanent => FailureClass::Permanent,
    }
}
