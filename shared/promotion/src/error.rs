use std::time::Duration;

use ferry_copy::CopyError;
use ferry_model::{Digest, Repository};
use ferry_registry::{Classify, ErrorClass, RegistryError};
use ferry_trust::TrustError;
use thiserror::Error;

/// Why a step of a promotion failed.
#[derive(Clone, Debug, Error)]
pub enum PromotionError {
    /// A check about the image itself failed: nothing is copied anywhere.
    #[error("{source_repository}@{digest}: {failures}")]
    Verification { source_repository: Repository, digest: Digest, failures: String },
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The message cannot describe a promotion (no primary where one is needed).
    #[error("{0}")]
    Malformed(String),
    /// Artifacts reach a mirror only after its own copy of the image succeeded.
    #[error("{mirror}@{digest} is not at the mirror; its artifacts are replicated after its own copy")]
    NotAtMirror { mirror: Repository, digest: Digest },
}

impl Classify for PromotionError {
    fn class(&self) -> ErrorClass {
        match self {
            PromotionError::Verification { .. } => ErrorClass::Verification,
            PromotionError::Copy(e) => e.class(),
            PromotionError::Trust(e) => e.class(),
            PromotionError::Registry(e) => e.class(),
            PromotionError::Malformed(_) => ErrorClass::Permanent,
            // A replayed or reconciled message can arrive before the mirror's copy finished.
            PromotionError::NotAtMirror { .. } => ErrorClass::Transient,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PromotionError::Copy(e) => e.retry_after(),
            PromotionError::Trust(e) => e.retry_after(),
            PromotionError::Registry(e) => e.retry_after(),
            _ => None,
        }
    }
}
