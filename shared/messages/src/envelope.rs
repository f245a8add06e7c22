//! The envelope around every stage message.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The current message version. A message with another version goes to `poison`.
pub const VERSION: u32 = 1;

/// SQS accepts 256 KiB. Ferry's own messages stay under 192 KiB, so that a dead-letter record
/// wrapping one still fits.
pub const MAX_MESSAGE_BYTES: usize = 192 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub version: u32,
    /// Unique per message (a UUID).
    pub id: String,
    /// The same for every message asking for the same work.
    pub idempotency_key: String,
    /// Deliveries that failed before this one.
    #[serde(default)]
    pub attempt: u32,
    /// The event that started the promotion (a webhook's id, a commit).
    pub event_id: String,
    /// W3C trace context, so that one promotion is one trace across every stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// When this message first failed (RFC 3339), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    /// Deliveries that failed before the message was last replayed from a dead-letter queue
    /// (`attempt` restarts at 0 on replay; a record's `attempts` counts both).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub earlier_attempts: u32,
    pub body: T,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<T> Envelope<T> {
    /// Whether an earlier delivery may have done part of the work: a retry, or a replay.
    pub fn delivered_before(&self) -> bool {
        self.attempt > 0 || self.earlier_attempts > 0
    }
}

/// A message body that knows what makes it the same work.
pub trait Keyed {
    /// The fields that identify the work, in a fixed order.
    fn identity(&self) -> String;

    /// What the message is about, for spans and logs.
    fn subject(&self) -> Subject {
        Subject::default()
    }
}

/// The image, digest and destination a message is about (each when it has one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub image: Option<String>,
    pub digest: Option<String>,
    pub destination: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("the message is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// Why a delivery could not be read. Either way it goes to `poison` with this reason.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown message version {0} (this Ferry reads version {VERSION})")]
    Version(u32),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl<T: Keyed> Envelope<T> {
    /// A new message for `body`, caused by `event_id`, in the trace `traceparent`.
    pub fn new(body: T, event_id: &str, traceparent: Option<String>) -> Self {
        let identity = body.identity();
        Envelope {
            version: VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: hex::encode(&Sha256::digest(identity.as_bytes())[..16]),
            attempt: 0,
            event_id: event_id.to_owned(),
            traceparent,
            tracestate: None,
            first_failure: None,
            earlier_attempts: 0,
            body,
        }
    }
}

impl<T: Serialize> Envelope<T> {
    /// The JSON bytes, refusing anything over [`MAX_MESSAGE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let bytes = serde_json::to_vec(self).expect("messages always serialise");
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge { size: bytes.len(), limit: MAX_MESSAGE_BYTES });
        }
        Ok(bytes)
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    /// Reads a delivery: first the version, then the whole message. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let version: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if version.version != VERSION {
            return Err(DecodeError::Version(version.version));
        }
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// The parts of an envelope that do not depend on its body, read from any JSON message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Header {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub first_failure: Option<String>,
    #[serde(default)]
    pub earlier_attempts: u32,
}

impl Header {
    /// Whatever header fields `bytes` has; empty for bytes that are not a JSON object.
    pub fn read(bytes: &[u8]) -> Header {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The trace id of the traceparent (`00-<trace id>-<span id>-<flags>`).
    pub fn trace_id(&self) -> Option<String> {
        self.traceparent.as_deref().and_then(|t| t.split('-').nth(1)).map(str::to_owned)
    }
}

/// Sets the attempt count (and the first failure time) of an encoded message without knowing
/// its body type: used to requeue a message after a failure and to reset it on replay.
pub fn with_attempt(bytes: &[u8], attempt: u32, first_failure: Option<&str>) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let object = value.as_object_mut()?;
    object.insert("attempt".into(), attempt.into());
    match first_failure {
        Some(time) => object.insert("first_failure".into(), time.into()),
        None => object.remove("first_failure"),
    };
    serde_json::to_vec(&value).ok()
}
