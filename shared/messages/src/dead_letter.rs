//! Dead-letter records: the original message and why it failed.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::envelope::Header;
use crate::queues::{DeadLetterQueue, Queue, StageName};

/// Why a message was dead-lettered: the class of the stage's error, or `malformed` for a body
/// that never reached a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    Throttled,
    Verification,
    Transient,
    Permanent,
    Malformed,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Throttled => "throttled",
            FailureClass::Verification => "verification",
            FailureClass::Transient => "transient",
            FailureClass::Permanent => "permanent",
            FailureClass::Malformed => "malformed",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a dead-letter queue holds. The original message is kept as JSON when it was JSON (so
/// that replay can put it back), or as base64 bytes when it was not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub version: u32,
    pub dead_letter_queue: DeadLetterQueue,
    /// The stage queue the message came from, where replay puts it back.
    pub queue: Queue,
    pub stage: StageName,
    pub class: FailureClass,
    pub error: String,
    pub attempts: u32,
    /// RFC 3339.
    pub first_failure: String,
    pub last_failure: String,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The original message, when it was JSON.
    #[serde(default)]
    pub original: Option<serde_json::Value>,
    /// The original bytes, base64, when they were not JSON.
    #[serde(default)]
    pub original_base64: Option<String>,
}

impl DeadLetter {
    /// A record for `original` (the bytes as delivered) failing in `queue`'s stage.
    pub fn new(
        dead_letter_queue: DeadLetterQueue,
        queue: Queue,
        class: FailureClass,
        error: &str,
        attempts: u32,
        original: &[u8],
    ) -> Self {
        let header = Header::read(original);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let json: Option<serde_json::Value> = serde_json::from_slice(original).ok();
        DeadLetter {
            version: crate::VERSION,
            dead_letter_queue,
            queue,
            stage: queue.stage_name(),
            class,
            error: error.to_owned(),
            attempts: header.earlier_attempts.saturating_add(attempts),
            first_failure: header.first_failure.clone().unwrap_or_else(|| now.clone()),
            last_failure: now,
            trace_id: header.trace_id(),
            message_id: header.id.clone(),
            idempotency_key: header.idempotency_key.clone(),
            original_base64: json
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(original)),
            original: json,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead letter serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a Ferry dead-letter record: {e}"))
    }

    /// The original message with its attempt count restarted, ready to go back on its queue.
    /// It keeps when the problem began (`first_failure`) and how many deliveries failed in all
    /// (`earlier_attempts`), so that a record written after the replay still says both.
    /// `None` when the original was not JSON: it cannot be replayed, only inspected.
    pub fn replayable(&self) -> Option<Vec<u8>> {
        let mut original = self.original.clone()?;
        let object = original.as_object_mut()?;
        object.insert("earlier_attempts".into(), self.attempts.into());
        let bytes = serde_json::to_vec(&original).ok()?;
        crate::envelope::with_attempt(&bytes, 0, Some(&self.first_failure))
    }

    /// The id `ferry dlq` commands select this record by (the original message's id).
    pub fn id(&self) -> &str {
        self.message_id.as_deref().unwrap_or("-")
    }

    /// The command that replays this one record.
    pub fn replay_command(&self) -> String {
        match &self.message_id {
            Some(id) => format!("ferry dlq replay --queue {} --id {id}", self.dead_letter_queue),
            None => format!("ferry dlq replay --queue {} --stage {}", self.dead_letter_queue, self.stage),
        }
    }
}
