use std::fmt;
use std::time::Duration;

use ferry_model::{Digest, Host};
use thiserror::Error;

/// How the pipeline should treat a failure. Classified once, here, and routed on downstream:
/// throttled work waits and goes to the `throttled` dead-letter queue, verification failures to
/// `verification-failed`, transient ones are retried, permanent ones are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// HTTP 429 beyond the retry budget.
    Throttled,
    /// Content did not match its digest, or a tag points somewhere it must not.
    Verification,
    /// Worth retrying later: 5xx, connection failures, timeouts.
    Transient,
    /// Retrying will not help: 4xx, bad auth, malformed responses.
    Permanent,
}

impl ErrorClass {
    /// The class as records and metrics name it (the serde form).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Verification => "verification",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Verification => "verification failed",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        })
    }
}

/// An error that knows how the pipeline must treat it. Every crate's error enum implements it
/// once, where the error is defined; the runtime routes on it (`StageError: From<E>` for every
/// `E: Classify`), and nothing else inspects error variants to decide about retries.
pub trait Classify: std::error::Error {
    fn class(&self) -> ErrorClass;

    /// For throttling: when the registry asked to come back.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// A registry failure. Messages name the host, method and path but never credentials: request
/// headers are not part of any variant, and registry error bodies are shortened.
#[derive(Clone, Debug, Error)]
pub enum RegistryError {
    #[error("{host}: throttled (HTTP 429) {attempts} times, beyond the retry budget{}", retry_after_note(.retry_after))]
    Throttled { host: Host, attempts: u32, retry_after: Option<Duration> },

    #[error("{method} {url}: HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status { method: &'static str, url: String, status: u16, code: Option<String>, message: String },

    #[error("{host}: authentication failed for {scope}: {reason}")]
    Auth { host: Host, scope: String, reason: String },

    #[error("{method} {url}: {reason}")]
    Connection { method: &'static str, url: String, reason: String },

    #[error("{what}: digest mismatch: expected {expected}, the bytes hash to {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },

    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },

    #[error("{url}: invalid response: {reason}")]
    InvalidResponse { url: String, reason: String },

    #[error("{0}")]
    Config(String),

    /// Ferry refuses to write: the write would overwrite something somebody else wrote.
    #[error("{0}")]
    Refused(String),

    /// A shared document (a referrers tag index) kept changing under the write; try later.
    #[error("{0}")]
    Unavailable(String),

    /// Logging in to a registry failed: a credential helper, a cloud's token service. The source
    /// (`via`) says which (never a secret); `transient` when asking again later may succeed (the
    /// service was unreachable, throttled or failed).
    #[error("{host}: cannot log in with {via}: {reason}")]
    Login { host: Host, via: String, reason: String, transient: bool },

    /// A guarded transport refused to contact a host (see [`crate::guard`]): no request was
    /// sent.
    #[error("{host}: {reason}")]
    NotAllowed { host: String, reason: String },
}

fn retry_after_note(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (last Retry-After: {}s)", d.as_secs_f64()),
        None => String::new(),
    }
}

impl Classify for RegistryError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            RegistryError::Throttled { .. } => ErrorClass::Throttled,
            RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. } => {
                ErrorClass::Verification
            }
            RegistryError::Connection { .. } | RegistryError::Unavailable(_) => ErrorClass::Transient,
            RegistryError::Login { transient: true, .. } => ErrorClass::Transient,
            RegistryError::Refused(_) => ErrorClass::Verification,
            RegistryError::Status { status, .. } if *status >= 500 || *status == 408 => ErrorClass::Transient,
            // The registry itself checked the content against its digest and refused it.
            RegistryError::Status { code: Some(code), .. }
                if code == "DIGEST_INVALID" || code == "SIZE_INVALID" =>
            {
                ErrorClass::Verification
            }
            RegistryError::Status { .. }
            | RegistryError::Auth { .. }
            | RegistryError::Login { .. }
            | RegistryError::InvalidResponse { .. }
            | RegistryError::NotAllowed { .. }
            | RegistryError::Config(_) => ErrorClass::Permanent,
        }
    }
}

impl RegistryError {
    /// Whether the request that failed this way may be sent again within the retry budget.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500 || *status == 408,
            RegistryError::Throttled { .. } | RegistryError::Connection { .. } => true,
            _ => false,
        }
    }
}

/// Registry error bodies can be large or contain anything; keep the first line, shortened.
pub(crate) fn short_message(body: &str) -> String {
    const LIMIT: usize = 300;
    // A registry's answer is outside text: escaped, so that it cannot forge a log line.
    let line = body.lines().next().unwrap_or_default().trim();
    if line.len() <= LIMIT {
        return ferry_model::escaped(line).into_owned();
    }
    let mut end = LIMIT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", ferry_model::escaped(&line[..end]))
}

/// The error code and message of a distribution-spec error body
/// (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}`), or the body's first line.
pub(crate) fn describe_error_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body)
        && let Some(first) = envelope.errors.into_iter().next()
    {
        return (first.code.map(|c| short_message(&c)), short_message(&first.message.unwrap_or_default()));
    }
    (None, short_message(&String::from_utf8_lossy(body)))
}
