//! The queues, defined once. `ferry queues init`, the workers, the Lambda event source
//! mappings and `infra/template.yaml` all come from this definition (a test checks the
//! template against it).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A stage queue: the input of one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Queue {
    /// Raw external events delivered by AWS (ECR pushes through EventBridge), for ingest.
    Events,
    Plan,
    Verify,
    Copy,
    Sign,
    Attest,
    Replicate,
    /// Pull requests on the manifest repository, for the presubmit check.
    Check,
}

/// A pipeline function, by the name records, spans and `ferry worker --stage` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageName {
    Ingest,
    Planner,
    Verifier,
    Copier,
    Signer,
    Attester,
    Replicator,
    Checker,
}

impl StageName {
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Ingest => "ingest",
            StageName::Planner => "planner",
            StageName::Verifier => "verifier",
            StageName::Copier => "copier",
            StageName::Signer => "signer",
            StageName::Attester => "attester",
            StageName::Replicator => "replicator",
            StageName::Checker => "checker",
        }
    }
}

impl std::fmt::Display for StageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where failed messages go, with their reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterQueue {
    /// HTTP 429 beyond the retry budget. Replay once the registry has recovered.
    Throttled,
    /// A digest did not match, a signature did not verify, a tag conflicts. Needs a person.
    VerificationFailed,
    /// Malformed, an unknown version, a permanent error, or too many failed attempts.
    Poison,
}

impl Queue {
    pub const ALL: [Queue; 8] = [
        Queue::Events,
        Queue::Plan,
        Queue::Verify,
        Queue::Copy,
        Queue::Sign,
        Queue::Attest,
        Queue::Replicate,
        Queue::Check,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Events => "events",
            Queue::Plan => "plan",
            Queue::Verify => "verify",
            Queue::Copy => "copy",
            Queue::Sign => "sign",
            Queue::Attest => "attest",
            Queue::Replicate => "replicate",
            Queue::Check => "check",
        }
    }

    /// The function that consumes this queue.
    pub fn stage(self) -> &'static str {
        self.stage_name().as_str()
    }

    /// The function that consumes this queue, typed.
    pub fn stage_name(self) -> StageName {
        match self {
            Queue::Events => StageName::Ingest,
            Queue::Plan => StageName::Planner,
            Queue::Verify => StageName::Verifier,
            Queue::Copy => StageName::Copier,
            Queue::Sign => StageName::Signer,
            Queue::Attest => StageName::Attester,
            Queue::Replicate => StageName::Replicator,
            Queue::Check => StageName::Checker,
        }
    }

    pub fn from_name(name: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.name() == name || q.stage() == name)
    }

    /// The longest a function may take on one message. The queue's visibility timeout is
    /// longer (see [`Topology::visibility_timeout`]).
    pub fn function_timeout(self) -> Duration {
        match self {
            Queue::Copy => Duration::from_secs(900),
            Queue::Plan | Queue::Check => Duration::from_secs(300),
            _ => Duration::from_secs(120),
        }
    }
}

impl DeadLetterQueue {
    pub const ALL: [DeadLetterQueue; 3] =
        [DeadLetterQueue::Throttled, DeadLetterQueue::VerificationFailed, DeadLetterQueue::Poison];

    pub fn name(self) -> &'static str {
        match self {
            DeadLetterQueue::Throttled => "throttled",
            DeadLetterQueue::VerificationFailed => "verification-failed",
            DeadLetterQueue::Poison => "poison",
        }
    }

    pub fn from_name(name: &str) -> Option<DeadLetterQueue> {
        DeadLetterQueue::ALL.into_iter().find(|q| q.name() == name)
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for DeadLetterQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Physical names and settings of every queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Prefixed to every name: `ferry-copy`, `ferry-dlq-poison`.
    pub prefix: String,
    /// After this many receives the broker itself moves a message to `poison` (a safety net:
    /// the runtime dead-letters with a reason well before).
    pub max_receive_count: u32,
    /// Overrides every queue's visibility timeout (tests that kill workers use a short one).
    pub visibility: Option<Duration>,
}

impl Default for Topology {
    fn default() -> Self {
        Self { prefix: "ferry".into(), max_receive_count: 8, visibility: None }
    }
}

impl Topology {
    pub fn queue_name(&self, queue: Queue) -> String {
        format!("{}-{}", self.prefix, queue.name())
    }

    pub fn dead_letter_name(&self, queue: DeadLetterQueue) -> String {
        format!("{}-dlq-{}", self.prefix, queue.name())
    }

    /// Longer than the function timeout, so that a message is never redelivered while a
    /// function still works on it (AWS recommends six times the timeout for Lambda).
    pub fn visibility_timeout(&self, queue: Queue) -> Duration {
        self.visibility.unwrap_or(queue.function_timeout() * 6)
    }

    /// Every queue name, stage queues first.
    pub fn all_names(&self) -> Vec<String> {
        Queue::ALL
            .iter()
            .map(|q| self.queue_name(*q))
            .chain(DeadLetterQueue::ALL.iter().map(|d| self.dead_letter_name(*d)))
            .collect()
    }
}
