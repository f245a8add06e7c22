//! Exit codes and error reporting.

use std::process::ExitCode;

use thiserror::Error;

/// The documented exit codes (see the README's CLI reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// 0: done; the plan has no excluded edges.
    Ok = 0,
    /// 1: a bug or an environment failure Ferry cannot classify.
    Internal = 1,
    // 2 is clap's: the command line itself is wrong.
    /// 3: an input file (manifest, config, credentials) is invalid.
    InvalidInput = 3,
    /// 4: a registry could not be read (unreachable, auth refused, throttled beyond budget).
    Registry = 4,
    /// 5: the plan was made, but some edges are excluded (conflict, missing source, overlap,
    /// prerelease, unchecked).
    ExcludedEdges = 5,
    /// 6: `promote --confirm` (or `replicate-signatures --confirm`, `sign`, `attest`) ran, and
    /// something failed; each failure is listed with its reason.
    PromotionFailed = 6,
    /// 7: `ferry verify` ran, and a check failed.
    VerificationFailed = 7,
    /// 8: `ferry check` ran, and found a problem in the change (each is in the report).
    CheckFailed = 8,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

#[derive(Debug, Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Input(#[from] ferry_manifests::ManifestError),
    #[error(transparent)]
    Config(#[from] ferry_config::ConfigError),
    #[error(transparent)]
    Registry(#[from] ferry_registry::RegistryError),
    #[error(transparent)]
    Trust(#[from] ferry_trust::TrustError),
    /// A registry listing desired state depends on (a regsync source's tags, a catalog).
    #[error("{0}")]
    Listing(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Output(String),
}

impl From<ferry_desired::DesiredError> for CliError {
    fn from(error: ferry_desired::DesiredError) -> Self {
        use ferry_desired::{DesiredError, SourceError};
        match error {
            DesiredError::Source(SourceError::Manifest(e)) => CliError::Input(e),
            DesiredError::Registry { .. } => CliError::Listing(error.to_string()),
            other => CliError::Usage(other.to_string()),
        }
    }
}

impl CliError {
    pub(crate) fn status(&self) -> ExitStatus {
        match self {
            CliError::Input(_) | CliError::Config(_) | CliError::Usage(_) => ExitStatus::InvalidInput,
            CliError::Registry(_) | CliError::Listing(_) => ExitStatus::Registry,
            CliError::Trust(ferry_trust::TrustError::Registry(_)) => ExitStatus::Registry,
            // An unreadable key file or a missing COSIGN_PASSWORD is a configuration problem.
            CliError::Trust(ferry_trust::TrustError::Key(_)) => ExitStatus::InvalidInput,
            CliError::Trust(_) => ExitStatus::PromotionFailed,
            CliError::Output(_) => ExitStatus::Internal,
        }
    }

    /// One line per problem: a manifest with five bad digests prints five lines.
    pub(crate) fn report(&self) {
        match self {
            CliError::Input(e) => e.problems().iter().for_each(|p| report_line(&p.to_string())),
            other => report_line(&other.to_string()),
        }
    }
}

pub(crate) fn report_line(line: &str) {
    use std::io::Write as _;
    // Outside text in an error (a registry's answer, a name) is shown escaped.
    let _ = writeln!(std::io::stderr(), "ferry: error: {}", ferry_model::shown::escaped_lines(line));
}
