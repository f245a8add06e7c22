use thiserror::Error;

/// Why a value was rejected. Each variant names the value (shortened if long) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error("invalid digest {value:?}: {reason}")]
    Digest { value: String, reason: &'static str },
    #[error("invalid tag {value:?}: {reason}")]
    Tag { value: String, reason: &'static str },
    #[error("invalid registry host {value:?}: {reason}")]
    Host { value: String, reason: &'static str },
    #[error("invalid repository path {value:?}: {reason}")]
    RepoPath { value: String, reason: &'static str },
    #[error("invalid image reference {value:?}: {reason}")]
    Reference { value: String, reason: &'static str },
}

/// Error messages quote the rejected value; a 2 MB line pasted into a manifest should not be
/// quoted whole.
pub(crate) fn shorten(value: &str) -> String {
    const LIMIT: usize = 160;
    if value.len() <= LIMIT {
        return value.to_owned();
    }
    let mut end = LIMIT;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}
