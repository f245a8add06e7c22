use ferry_model::{Digest, Repository, Tag};
use ferry_registry::{Classify, ErrorClass, RegistryError};
use thiserror::Error;

/// Why one copy failed. [`CopyError::class`] is what the pipeline routes on.
#[derive(Clone, Debug, Error)]
pub enum CopyError {
    #[error(transparent)]
    Registry(#[from] RegistryError),

    #[error("{destination}:{tag} already points at {existing}; Ferry never overwrites a tag")]
    Conflict { destination: Repository, tag: Tag, existing: Digest },

    #[error("{destination}:{tag} was written as {expected} but reads back as {}", found.map(|d| d.to_string()).unwrap_or_else(|| "nothing".into()))]
    ReadBack { destination: Repository, tag: Tag, expected: Digest, found: Option<Digest> },

    #[error("{source_repository}@{digest} does not exist in the source")]
    SourceMissing { source_repository: Repository, digest: Digest },

    #[error("{repository}@{digest}: {reason}")]
    Manifest { repository: Repository, digest: Digest, reason: String },

    /// The source serves something Ferry will not promote (an index nested too deep, too many
    /// children): a verification failure, dead-lettered with the reason.
    #[error("{repository}@{digest}: refused: {reason}")]
    Refused { repository: Repository, digest: Digest, reason: String },
}

impl Classify for CopyError {
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            CopyError::Registry(e) => e.retry_after(),
            _ => None,
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            CopyError::Registry(e) => e.class(),
            CopyError::Conflict { .. } | CopyError::ReadBack { .. } | CopyError::Refused { .. } => {
                ErrorClass::Verification
            }
            CopyError::SourceMissing { .. } | CopyError::Manifest { .. } => ErrorClass::Permanent,
        }
    }
}
