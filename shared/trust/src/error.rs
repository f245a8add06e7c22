use ferry_copy::CopyError;
use ferry_model::{Digest, Repository, Tag};
use ferry_registry::{Classify, ErrorClass, RegistryError};
use thiserror::Error;

/// Why a trust stage failed.
#[derive(Clone, Debug, Error)]
pub enum TrustError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("key: {0}")]
    Key(String),
    #[error("AWS KMS: {0}")]
    Kms(String),
    #[error("{repository}:{tag}: {reason}")]
    Artifact { repository: Repository, tag: Tag, reason: String },
    /// Another writer moved the tag between Ferry's read and its write (two replications of the
    /// same digest at once). Retrying reads the new state and converges.
    #[error("{repository}:{tag}: changed while it was being replicated; will be retried")]
    Raced { repository: Repository, tag: Tag },
    #[error(
        "{repository}:{tag} at the mirror holds layers the primary lacks; it is not replaced by a manifest that would drop them"
    )]
    NotASuperset { repository: Repository, tag: Tag },
    #[error("{repository}@{digest}: {reason}")]
    Image { repository: Repository, digest: Digest, reason: String },
}

impl TrustError {
    pub(crate) fn key(error: impl std::fmt::Display) -> Self {
        TrustError::Key(error.to_string())
    }
}

impl Classify for TrustError {
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            TrustError::Registry(e) => e.retry_after(),
            TrustError::Copy(e) => e.retry_after(),
            _ => None,
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            TrustError::Registry(e) => e.class(),
            TrustError::Copy(e) => e.class(),
            TrustError::NotASuperset { .. } => ErrorClass::Verification,
            // KMS throttling and outages are worth retrying; a missing key is not, but the
            // error text does not say which, and a retry is harmless.
            TrustError::Kms(_) | TrustError::Raced { .. } => ErrorClass::Transient,
            TrustError::Key(_) | TrustError::Artifact { .. } | TrustError::Image { .. } => {
                ErrorClass::Permanent
            }
        }
    }
}
