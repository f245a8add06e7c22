//! What the verifier demands of images from each source registry.

use ferry_model::{RegistryPath, Repository};

use crate::keyless::KeylessPolicy;
use crate::keys::VerificationKey;

/// How strongly a check is demanded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Requirement {
    /// Not checked.
    #[default]
    Off,
    /// Checked when present (and then it must verify); absence is a warning. kpromo's
    /// provenance semantics.
    IfPresent,
    /// Must be present and verify.
    Required,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "low" | "negligible" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" | "important" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// What to do when an image has no vulnerability report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingReport {
    Allow,
    #[default]
    Warn,
    Deny,
}

/// The vulnerability gate: block findings at or above `block_at` in a cosign vuln attestation.
#[derive(Clone, Debug)]
pub struct VulnerabilityGate {
    pub block_at: Severity,
    pub missing: MissingReport,
    /// Keys the vulnerability attestation must be signed with.
    pub keys: Vec<VerificationKey>,
}

/// The policy for images from one source registry (the longest matching prefix wins).
#[derive(Clone, Debug, Default)]
pub struct SourcePolicy {
    pub registry: Option<RegistryPath>,
    pub signatures: Requirement,
    pub signature_keys: Vec<VerificationKey>,
    /// When set, a signature's `docker-reference` must match.
    pub identity: Option<regex::Regex>,
    pub provenance: Requirement,
    pub provenance_keys: Vec<VerificationKey>,
    /// Allowed SLSA builder ids; empty allows any.
    pub builders: Vec<String>,
    /// When set, the provenance's source repository must match.
    pub source_repository: Option<regex::Regex>,
    pub vulnerabilities: Option<VulnerabilityGate>,
    /// Which OCI referrers of this source travel with its images (all by default).
    pub referrer_types: ReferrerFilter,
    /// Keyless signatures and attestations: the trusted root and who may sign. A keyless
    /// signature or vulnerability report must carry this identity; a keyless provenance
    /// statement this identity or one of `builders` (the SLSA generators sign as themselves).
    pub keyless: Option<KeylessPolicy>,
}

/// An `artifactType` allow and deny list for the referrers carried from a source. A referrer
/// is carried when no deny entry names its type and the allow list is empty or names it. A
/// referrer without an `artifactType` is carried only when the allow list is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferrerFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ReferrerFilter {
    pub fn admits(&self, artifact_type: Option<&str>) -> bool {
        match artifact_type {
            Some(t) => {
                !self.deny.iter().any(|d| d == t)
                    && (self.allow.is_empty() || self.allow.iter().any(|a| a == t))
            }
            None => self.allow.is_empty(),
        }
    }
}

#[cfg(test)]
mod referrer_filter_tests {
    use super::ReferrerFilter;

    #[test]
    fn allow_and_deny_lists() {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cases: [(&[&str], &[&str], Option<&str>, bool); 7] = [
            (&[], &[], Some("application/spdx+json"), true),
            (&[], &[], None, true),
            (&[], &["application/spdx+json"], Some("application/spdx+json"), false),
            (&[], &["application/spdx+json"], Some("application/vnd.dev.sigstore.bundle.v0.3+json"), true),
            (&["application/vnd.dev.sigstore.bundle.v0.3+json"], &[], Some("application/spdx+json"), false),
            (&["application/vnd.dev.sigstore.bundle.v0.3+json"], &[], None, false),
            (&["a"], &["a"], Some("a"), false),
        ];
        for (allow, deny, artifact_type, expected) in cases {
            let filter = ReferrerFilter { allow: list(allow), deny: list(deny) };
            assert_eq!(filter.admits(artifact_type), expected, "{allow:?} {deny:?} {artifact_type:?}");
        }
    }
}

/// Every source policy.
#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    pub sources: Vec<SourcePolicy>,
}

static NO_POLICY: std::sync::LazyLock<SourcePolicy> = std::sync::LazyLock::new(SourcePolicy::default);

impl TrustPolicy {
    /// The policy for `repository`: the source entry with the longest matching registry path,
    /// or one that checks nothing.
    pub fn for_source(&self, repository: &Repository) -> &SourcePolicy {
        self.sources
            .iter()
            .filter(|p| p.registry.as_ref().is_some_and(|r| r.contains(repository)))
            .max_by_key(|p| p.registry.as_ref().map(|r| r.to_string().len()).unwrap_or(0))
            .unwrap_or(&NO_POLICY)
    }
}
