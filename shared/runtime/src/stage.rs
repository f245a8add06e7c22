use std::future::Future;
use std::time::Duration;

use ferry_messages::envelope::Keyed;
use ferry_messages::{DeadLetter, DeadLetterQueue, Envelope, Next, Queue, Routed};
use ferry_queue::Address;
use ferry_registry::{Classify, ErrorClass};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A pipeline function: it consumes `QUEUE` and returns what to publish next.
pub trait Stage: Send + Sync + 'static {
    type Message: Serialize + DeserializeOwned + Routed + Send + Sync + 'static;

    fn handle(
        &self,
        message: Envelope<Self::Message>,
    ) -> impl Future<Output = Result<Vec<Outgoing>, StageError>> + Send;
}

/// The queue a stage consumes: the one its message type is bound to. It is not an item of
/// [`Stage`], so no stage can consume a queue other than its message's.
pub trait Consumes {
    const QUEUE: Queue;
}

impl<S: Stage> Consumes for S {
    const QUEUE: Queue = <S::Message as Routed>::QUEUE;
}

/// A message to publish once the stage has finished.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub to: Address,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// A new message for the queue its type is bound to, caused by `cause`, in the current
    /// trace.
    pub fn message<T: Serialize + Routed, C>(body: T, cause: &Envelope<C>) -> Result<Self, StageError> {
        let queue = T::QUEUE;
        let envelope = Envelope::new(body, &cause.event_id, crate::telemetry::current_traceparent());
        let bytes = envelope
            .encode()
            .map_err(|e| StageError::permanent(format!("the {queue} message is too large: {e}")))?;
        Ok(Outgoing { to: Address::Stage(queue), body: bytes })
    }

    /// The message a promotion step asked for next, on its own queue.
    pub fn next<C>(next: Next, cause: &Envelope<C>) -> Result<Self, StageError> {
        match next {
            Next::Copy(m) => Self::message(m, cause),
            Next::Sign(m) => Self::message(m, cause),
            Next::Attest(m) => Self::message(m, cause),
            Next::Replicate(m) => Self::message(m, cause),
        }
    }

    /// A dead-letter record for part of a message (e.g. one refused destination), while the
    /// rest goes on.
    pub fn dead_letter<T: Serialize + Keyed>(
        dead_letter_queue: DeadLetterQueue,
        queue: Queue,
        class: ErrorClass,
        error: &str,
        original: &Envelope<T>,
    ) -> Result<Self, StageError> {
        let bytes = original.encode().map_err(|e| StageError::permanent(e.to_string()))?;
        let record = DeadLetter::new(
            dead_letter_queue,
            queue,
            crate::process::failure_class(class),
            error,
            original.attempt + 1,
            &bytes,
        );
        Ok(Outgoing { to: Address::DeadLetter(dead_letter_queue), body: record.encode() })
    }
}

/// Why a stage failed, classified: the runtime routes on [`StageError::class`].
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StageError {
    pub class: ErrorClass,
    pub message: String,
    /// For throttling: when the registry asked to come back.
    pub retry_after: Option<Duration>,
}

impl StageError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self { class, message: message.into(), retry_after: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, message)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }

    pub fn verification(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Verification, message)
    }
}

/// The one conversion: every error that classifies itself becomes a stage error with its class
/// and its `Retry-After`. Stages write `?`, never a converter of their own.
impl<E: Classify> From<E> for StageError {
    fn from(error: E) -> Self {
        StageError { class: error.class(), message: error.to_string(), retry_after: error.retry_after() }
    }
}
