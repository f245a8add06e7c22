//! The attester: one promotion attestation per promoted digest.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferry_model::{Digest, Repository, Tag};
use ferry_registry::RegistryWrite;
use serde::Serialize;

use crate::artifacts::{self, Appended};
use crate::cosign::{
    self, ArtifactKind, DSSE_MEDIA_TYPE, Envelope, EnvelopeSignature, IN_TOTO_PAYLOAD_TYPE,
    IN_TOTO_STATEMENT_V1, Layer, PREDICATE_TYPE_ANNOTATION, PROMOTION_PREDICATE_TYPE, SIGNATURE_ANNOTATION,
    Statement, Subject,
};
use crate::error::TrustError;
use crate::keys::SigningKey;
use crate::verify::Report;

/// Where the desired state came from, when known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ManifestOrigin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A destination and the tags the digest has there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotedTo {
    pub repository: Repository,
    pub tags: Vec<Tag>,
}

/// What a promotion attestation records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub source: Repository,
    pub digest: Digest,
    /// The primary destination first, then the mirrors.
    pub destinations: Vec<PromotedTo>,
    pub origin: Option<ManifestOrigin>,
    pub trigger_event_id: Option<String>,
    pub verification: Option<Report>,
    /// RFC 3339.
    pub timestamp: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PredicateJson<'a> {
    source: String,
    destinations: Vec<DestinationJson>,
    digest: String,
    tags: Vec<String>,
    timestamp: &'a str,
    builder: BuilderJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest_origin: Option<&'a ManifestOrigin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger_event_id: Option<&'a str>,
    verification: Vec<CheckJson>,
}

#[derive(Serialize)]
struct DestinationJson {
    reference: String,
    tags: Vec<String>,
}

#[derive(Serialize)]
struct BuilderJson {
    id: String,
}

#[derive(Serialize)]
struct CheckJson {
    check: String,
    result: String,
    reason: String,
}

impl Promotion {
    /// The in-toto statement: subject is the digest at the primary destination.
    pub fn statement(&self) -> Statement {
        let primary = self.destinations.first().map(|d| d.repository.to_string()).unwrap_or_default();
        let mut all_tags: Vec<String> =
            self.destinations.iter().flat_map(|d| d.tags.iter().map(ToString::to_string)).collect();
        all_tags.sort();
        all_tags.dedup();
        let predicate = PredicateJson {
            source: format!("{}@{}", self.source, self.digest),
            destinations: self
                .destinations
                .iter()
                .map(|d| DestinationJson {
                    reference: format!("{}@{}", d.repository, self.digest),
                    tags: d.tags.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            digest: self.digest.to_string(),
            tags: all_tags,
            timestamp: &self.timestamp,
            builder: BuilderJson { id: format!("ferry@{}", env!("CARGO_PKG_VERSION")) },
            manifest_origin: self.origin.as_ref(),
            trigger_event_id: self.trigger_event_id.as_deref(),
            verification: self
                .verification
                .iter()
                .flat_map(|r| &r.checks)
                .map(|c| CheckJson {
                    check: c.name.as_str().to_owned(),
                    result: c.status.to_string(),
                    reason: c.reason.clone(),
                })
                .collect(),
        };
        Statement {
            statement_type: IN_TOTO_STATEMENT_V1.to_owned(),
            subject: vec![Subject {
                name: primary,
                digest: BTreeMap::from([("sha256".to_owned(), self.digest.hex())]),
            }],
            predicate_type: PROMOTION_PREDICATE_TYPE.to_owned(),
            predicate: serde_json::to_value(predicate).expect("the predicate serialises"),
        }
    }
}

/// SLSA's Verification Summary Attestation, v1.
pub const VSA_PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// The verifier id a VSA names.
pub const VSA_VERIFIER_ID: &str = "https://github.com/ferry-promoter/ferry";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VsaJson<'a> {
    verifier: VsaVerifier,
    time_verified: &'a str,
    resource_uri: String,
    policy: VsaPolicy,
    verification_result: &'static str,
    verified_levels: Vec<&'static str>,
    slsa_version: &'static str,
    /// Ferry's own record of each check (consumers ignore fields they do not know).
    ferry_checks: Vec<CheckJson>,
}

#[derive(Serialize)]
struct VsaVerifier {
    id: &'static str,
    version: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct VsaPolicy {
    uri: String,
}

impl Promotion {
    /// The SLSA Verification Summary Attestation of this promotion, when the verifier ran:
    /// subject the promoted digest at the primary, `resourceUri` the verified source image,
    /// and the levels the checks support. A verified SLSA provenance statement from an allowed
    /// builder is Build Level 1 (provenance exists and is authentic); higher levels depend on
    /// the builder, which Ferry does not judge. A verified signature and a passed vulnerability
    /// gate are recorded as `FERRY_SIGNATURE_VERIFIED` and `FERRY_VULNERABILITIES_GATED`.
    pub fn summary_statement(&self) -> Option<Statement> {
        let report = self.verification.as_ref()?;
        use ferry_model::CheckName;
        let passed = |name: CheckName| {
            report.checks.iter().any(|c| c.name == name && c.status == crate::verify::Status::Pass)
        };
        let mut levels =
            vec![if passed(CheckName::Provenance) { "SLSA_BUILD_LEVEL_1" } else { "SLSA_BUILD_LEVEL_0" }];
        if passed(CheckName::Signature) {
            levels.push("FERRY_SIGNATURE_VERIFIED");
        }
        if passed(CheckName::Vulnerabilities) {
            levels.push("FERRY_VULNERABILITIES_GATED");
        }
        let predicate = VsaJson {
            verifier: VsaVerifier {
                id: VSA_VERIFIER_ID,
                version: BTreeMap::from([("ferry", env!("CARGO_PKG_VERSION"))]),
            },
            time_verified: &self.timestamp,
            resource_uri: format!("{}@{}", self.source, self.digest),
            policy: VsaPolicy { uri: format!("ferry.yaml#trust.sources[{}]", self.source.host()) },
            verification_result: if report.passed() { "PASSED" } else { "FAILED" },
            verified_levels: levels,
            slsa_version: "1.0",
            ferry_checks: report
                .checks
                .iter()
                .map(|c| CheckJson {
                    check: c.name.as_str().to_owned(),
                    result: c.status.to_string(),
                    reason: c.reason.clone(),
                })
                .collect(),
        };
        let mut statement = self.statement();
        statement.predicate_type = VSA_PREDICATE_TYPE.to_owned();
        statement.predicate = serde_json::to_value(predicate).expect("the predicate serialises");
        Some(statement)
    }
}

/// The current time in RFC 3339, for [`Promotion::timestamp`].
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A DSSE envelope over `statement`, signed with `key`.
pub async fn envelope(key: &SigningKey, statement: &Statement) -> Result<Envelope, TrustError> {
    let payload = serde_json::to_vec(statement).expect("a statement serialises");
    let signature = key.sign(&cosign::pae(IN_TOTO_PAYLOAD_TYPE, &payload)).await?;
    Ok(Envelope {
        payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
        payload: cosign::b64(&payload),
        signatures: vec![EnvelopeSignature { keyid: String::new(), sig: cosign::b64(&signature) }],
    })
}

/// Writes the promotion attestation for `promotion.digest` at the primary destination, and the
/// SLSA verification summary when the verifier ran, each as a bundle referrer and an `.att`
/// layer, unless one of that predicate type is there already: redelivery never adds a
/// duplicate. Both bundles are listed in one referrers update, and both layers appended in
/// one `.att` write whose look-up is also its merge's read. `listed`: the digest's referrers
/// as the promotion's signing step left them (a hint that replaces the look-up; `None` looks
/// up). Returns what happened to the promotion attestation.
pub async fn attest<R: RegistryWrite>(
    registry: &R,
    key: &SigningKey,
    formats: crate::Formats,
    promotion: &Promotion,
    listed: Option<Vec<ferry_registry::referrers::Referrer>>,
) -> Result<Appended, TrustError> {
    let primary = &promotion
        .destinations
        .first()
        .ok_or_else(|| TrustError::Image {
            repository: promotion.source.clone(),
            digest: promotion.digest,
            reason: "a promotion without destinations cannot be attested".into(),
        })?
        .repository;
    let digest = &promotion.digest;
    let mut statements = vec![promotion.statement()];
    statements.extend(promotion.summary_statement());
    let encoded: Vec<Vec<u8>> =
        statements.iter().map(|s| serde_json::to_vec(s).expect("a statement serialises")).collect();
    // The bundle referrers (cosign v3's format, written once per key, whatever the `.att`
    // holds) and the `.att` layers are different documents: written side by side.
    let bundles = async {
        if !formats.bundle {
            return Ok(Appended::Unchanged);
        }
        let pairs: Vec<(&str, &[u8])> =
            statements.iter().zip(&encoded).map(|(s, b)| (s.predicate_type.as_str(), b.as_slice())).collect();
        let written = crate::bundle::write_all(registry, key, primary, digest, &pairs, listed).await?;
        Ok::<_, TrustError>(written.appended.first().copied().unwrap_or(Appended::Unchanged))
    };
    let legacy = async {
        match formats.legacy {
            true => append_statements(registry, key, primary, digest, &statements).await.map(Some),
            false => Ok(None),
        }
    };
    let (bundled, legacy) = tokio::try_join!(bundles, legacy)?;
    Ok(legacy.unwrap_or(bundled))
}

/// The `.att` layers of `statements` (one per predicate type not there yet), appended in one
/// write whose look-up is also its merge's read. What happened to the first statement's layer.
async fn append_statements<R: RegistryWrite>(
    registry: &R,
    key: &SigningKey,
    primary: &Repository,
    digest: &Digest,
    statements: &[Statement],
) -> Result<Appended, TrustError> {
    let has = |a: &artifacts::Artifact, predicate_type: &str| {
        a.layers.iter().any(|l| l.predicate_type() == Some(predicate_type))
    };
    let existing = artifacts::read(registry, primary, digest, ArtifactKind::Attestation).await?;
    let mut layers = Vec::new();
    let mut wanted: Vec<&str> = Vec::new();
    for statement in statements {
        let predicate_type = statement.predicate_type.as_str();
        if existing.as_ref().is_some_and(|a| has(a, predicate_type)) {
            continue;
        }
        let envelope = envelope(key, statement).await?;
        let bytes = serde_json::to_vec(&envelope).expect("an envelope serialises");
        let layer = Layer {
            media_type: DSSE_MEDIA_TYPE.to_owned(),
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::from([
                (SIGNATURE_ANNOTATION.to_owned(), String::new()),
                (PREDICATE_TYPE_ANNOTATION.to_owned(), predicate_type.to_owned()),
            ]),
        };
        layers.push((layer, Bytes::from(bytes)));
        wanted.push(predicate_type);
    }
    if layers.is_empty() {
        return Ok(Appended::Unchanged);
    }
    // Checked again inside the merge loop, so that a concurrent attester that got there first
    // wins and this one adds nothing.
    let appended = artifacts::append_to(
        registry,
        primary,
        digest,
        ArtifactKind::Attestation,
        Some(existing),
        &layers,
        |a| wanted.iter().all(|p| has(a, p)),
    )
    .await?;
    tracing::info!(repository = %primary, %digest, predicate_types = ?wanted, ?appended, "attested");
    let first = statements.first().map(|s| s.predicate_type.as_str());
    Ok(if first.is_some_and(|f| wanted.contains(&f)) { appended } else { Appended::Unchanged })
}

/// Whether the `.att` manifest of `digest` has a layer annotated with `predicate_type`.
pub async fn has_predicate<R: RegistryWrite>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
    predicate_type: &str,
) -> Result<bool, TrustError> {
    Ok(artifacts::read(registry, repository, digest, ArtifactKind::Attestation).await?.is_some_and(|a| {
        a.layers
            .iter()
            .any(|l| l.annotations.get(PREDICATE_TYPE_ANNOTATION).is_some_and(|t| t == predicate_type))
    }))
}
