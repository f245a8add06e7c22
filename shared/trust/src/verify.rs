//! The verifier: fetch facts about a source image, then decide check by check.
//!
//! [`gather`] does all the I/O: the source manifest (and every child of an index) read and
//! hashed, the source tag resolved again, the `.sig` and `.att` layers fetched, and the
//! Sigstore bundles among the digest's OCI referrers (cosign v3) fetched. Signatures,
//! provenance and vulnerability reports are checked in either format, with the same keys: a
//! bundle's DSSE envelope is checked like an `.att` layer's.
//! [`decide`] is pure: given the facts and the policy it returns a [`Report`] with one
//! [`Check`] per concern, each pass, warn, fail or skip, with a reason.

use ferry_model::{CheckName, Digest, Repository, Tag, TagOrDigest};
use ferry_registry::Registry;

use crate::artifacts::{self, Artifact};
use crate::bundle;
use crate::cosign::{
    self, ArtifactKind, COSIGN_VULN_V1, DSSE_MEDIA_TYPE, Envelope, SIMPLE_SIGNING_MEDIA_TYPE,
    SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02, SimpleSigning, Statement,
};
use crate::keyless::{self, KeylessPolicy};
use crate::keys::{VerificationKey, first_verifying};
use crate::policy::{MissingReport, Requirement, Severity, SourcePolicy};

/// What to verify: a source image by digest, and the tag the request named, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub source: Repository,
    pub digest: Digest,
    pub source_tag: Option<Tag>,
    /// Problems the plan found at the destinations (a conflicting tag, a refused prerelease).
    pub destination_problems: Vec<String>,
}

/// One fetched layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedLayer {
    pub media_type: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The layer bytes, or why they could not be read.
    pub bytes: Result<Vec<u8>, String>,
    /// The whole Sigstore bundle, when the layer is the DSSE envelope of a keyless bundle,
    /// which is verified as a whole (certificate, log entry), not just its envelope.
    pub keyless_bundle: Option<Vec<u8>>,
}

/// One Sigstore bundle found among the digest's referrers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedBundle {
    /// The referrer manifest's digest.
    pub referrer: Digest,
    /// The predicate type its manifest's annotation names, if any.
    pub predicate_type: Option<String>,
    /// The bundle JSON, or why it could not be read.
    pub bytes: Result<Vec<u8>, String>,
}

/// Everything the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// `Ok(children)` when the manifest exists and hashes to the digest (children: each child
    /// digest and whether it exists and hashes), else why not.
    pub manifest: Result<Vec<(Digest, Result<(), String>)>, String>,
    /// Where the source tag points now (`Some(None)`: nowhere), when the request names one.
    pub tag_now: Option<Result<Option<Digest>, String>>,
    /// The `.sig` layers; `Ok(None)` when there is no `.sig`.
    pub signatures: Result<Option<Vec<FetchedLayer>>, String>,
    /// The `.att` layers; `Ok(None)` when there is no `.att`.
    pub attestations: Result<Option<Vec<FetchedLayer>>, String>,
    /// The Sigstore bundles among the digest's referrers (empty when the policy looks at no
    /// artifact).
    pub bundles: Result<Vec<FetchedBundle>, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Skip,
    Warn,
    Fail,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: CheckName,
    pub status: Status,
    pub reason: String,
}

/// The verifier's verdict on one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub source: Repository,
    pub digest: Digest,
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// No check about the image itself failed. The `destination` check concerns individual
    /// edges, which the plan already excludes one by one; it does not stop the image from going
    /// to its other destinations.
    pub fn image_passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail || c.name == CheckName::Destination)
    }
}

/// Fetches the facts `decide` needs for `request` under `policy`. Artifacts the policy does
/// not look at are not fetched.
pub async fn gather<R: Registry>(registry: &R, request: &Request, policy: &SourcePolicy) -> Facts {
    let source = &request.source;
    let manifest = match registry.get_manifest(source, &TagOrDigest::Digest(request.digest)).await {
        Ok(None) => Err(format!("{source}@{} does not exist", request.digest)),
        Err(e) => Err(e.to_string()),
        Ok(Some(raw)) => match raw.content() {
            Err(e) => Err(e.to_string()),
            Ok(content) => {
                let mut distinct: Vec<Digest> = content.children().iter().map(|c| c.digest).collect();
                distinct.sort();
                distinct.dedup();
                if distinct.len() > ferry_registry::MAX_INDEX_CHILDREN {
                    return Facts {
                        manifest: Err(format!(
                            "the index lists {} distinct children; Ferry promotes at most {}",
                            distinct.len(),
                            ferry_registry::MAX_INDEX_CHILDREN
                        )),
                        tag_now: None,
                        signatures: Ok(None),
                        attestations: Ok(None),
                        bundles: Ok(Vec::new()),
                    };
                }
                let mut children = Vec::new();
                for child in content.children() {
                    let state = match registry.get_manifest(source, &TagOrDigest::Digest(child.digest)).await
                    {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => Err("missing".to_owned()),
                        Err(e) => Err(e.to_string()),
                    };
                    children.push((child.digest, state));
                }
                Ok(children)
            }
        },
    };
    let tag_now = match &request.source_tag {
        None => None,
        Some(tag) => Some(
            registry
                .head_manifest(source, &TagOrDigest::Tag(tag.clone()))
                .await
                .map(|h| h.map(|h| h.digest))
                .map_err(|e| e.to_string()),
        ),
    };
    let wants_attestations = policy.provenance != Requirement::Off || policy.vulnerabilities.is_some();
    let signatures = if policy.signatures == Requirement::Off {
        Ok(None)
    } else {
        fetch_layers(registry, source, &request.digest, ArtifactKind::Signature).await
    };
    let attestations = if wants_attestations {
        fetch_layers(registry, source, &request.digest, ArtifactKind::Attestation).await
    } else {
        Ok(None)
    };
    let bundles = if policy.signatures == Requirement::Off && !wants_attestations {
        Ok(Vec::new())
    } else {
        fetch_bundles(registry, source, &request.digest).await
    };
    Facts { manifest, tag_now, signatures, attestations, bundles }
}

/// Every Sigstore bundle among the referrers of `digest`: one referrers lookup, then each
/// bundle's manifest and layer.
async fn fetch_bundles<R: Registry>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<FetchedBundle>, String> {
    let referrers = registry.referrers(repository, digest, None).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for referrer in referrers {
        if !referrer.artifact_type.as_deref().is_some_and(|t| bundle::BUNDLE_MEDIA_TYPES.contains(&t)) {
            continue;
        }
        let fetched = bundle_bytes(registry, repository, &referrer.digest).await;
        // The index entry may carry no annotations (cosign writes them so); the manifest does.
        let predicate_type = referrer
            .annotations
            .get(bundle::PREDICATE_TYPE_ANNOTATION)
            .cloned()
            .or_else(|| fetched.as_ref().ok().and_then(|(_, p)| p.clone()));
        out.push(FetchedBundle { referrer: referrer.digest, predicate_type, bytes: fetched.map(|(b, _)| b) });
    }
    Ok(out)
}

/// A bundle referrer's bundle, and the predicate type its manifest's annotation names.
async fn bundle_bytes<R: Registry>(
    registry: &R,
    repository: &Repository,
    referrer: &Digest,
) -> Result<(Vec<u8>, Option<String>), String> {
    let manifest = registry
        .get_manifest(repository, &TagOrDigest::Digest(*referrer))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the referrer {referrer} is listed but missing"))?;
    let content = manifest.content().map_err(|e| e.to_string())?;
    let layer = content
        .blobs()
        .into_iter()
        .find(|b| bundle::BUNDLE_MEDIA_TYPES.contains(&b.media_type.as_str()))
        .ok_or_else(|| format!("the referrer {referrer} has no bundle layer"))?;
    let predicate = serde_json::from_slice::<serde_json::Value>(&manifest.bytes)
        .ok()
        .and_then(|m| m["annotations"][bundle::PREDICATE_TYPE_ANNOTATION].as_str().map(str::to_owned));
    let bytes = registry
        .get_blob(repository, &layer.digest, 4 * 1024 * 1024)
        .await
        .map_err(|e| e.to_string())?
        .map(|b| b.to_vec())
        .ok_or_else(|| format!("the bundle blob {} is missing", layer.digest))?;
    Ok((bytes, predicate))
}

/// Every signed artifact the facts hold, by format and location, for `ferry verify`.
pub fn inventory(request: &Request, facts: &Facts, policy: &SourcePolicy) -> Vec<String> {
    let mut out = Vec::new();
    let tag = |kind: ArtifactKind| format!("{}:{}", request.source, kind.tag_for(&request.digest));
    if let Ok(Some(layers)) = &facts.signatures {
        for layer in layers {
            let verdict = match Signers::signatures(policy).any() {
                false => not_checked(),
                true => verdict(verify_simple_signing(request, layer, policy)),
            };
            out.push(format!(
                "legacy signature ({}) in {}: {verdict}",
                layer.media_type,
                tag(ArtifactKind::Signature)
            ));
        }
    }
    let statement_verdict = |layer: &FetchedLayer| {
        let signers = Signers::for_predicate(policy, claimed_predicate(layer).as_deref());
        match signers.any() {
            false => not_checked(),
            true => verdict(verified_statement(layer, &request.digest, &signers).map(|(_, who)| who)),
        }
    };
    if let Ok(Some(layers)) = &facts.attestations {
        for layer in layers {
            out.push(format!(
                "legacy attestation ({}) in {}: {}",
                layer
                    .annotations
                    .get(cosign::PREDICATE_TYPE_ANNOTATION)
                    .map(String::as_str)
                    .unwrap_or("no predicate type"),
                tag(ArtifactKind::Attestation),
                statement_verdict(layer)
            ));
        }
    }
    if let Ok(bundles) = &facts.bundles {
        for (b, (layer, _)) in bundles.iter().zip(bundle_layers(facts)) {
            out.push(format!(
                "Sigstore bundle ({}) as referrer {}@{}: {}",
                b.predicate_type.as_deref().unwrap_or("no predicate type"),
                request.source,
                b.referrer,
                statement_verdict(&layer)
            ));
        }
    }
    out
}

fn verdict(result: Result<String, String>) -> String {
    match result {
        Ok(who) => format!("verified, signed with {who}"),
        Err(why) => format!("NOT verified: {why}"),
    }
}

fn not_checked() -> String {
    "not checked (the policy names no key or trusted root for it)".to_owned()
}

/// The bundles as DSSE layers, so that one check verifies both formats. A bundle that cannot be
/// read or holds no envelope becomes a layer whose bytes say why.
fn bundle_layers(facts: &Facts) -> Vec<(FetchedLayer, String)> {
    let Ok(bundles) = &facts.bundles else { return Vec::new() };
    bundles
        .iter()
        .map(|b| {
            let parsed = b.bytes.clone().and_then(|bytes| bundle::Bundle::parse(&bytes));
            let keyless_bundle =
                parsed.as_ref().is_ok_and(|p| p.keyless).then(|| b.bytes.clone().ok()).flatten();
            let bytes = parsed.and_then(|parsed| {
                let envelope = parsed.envelope.ok_or("the bundle holds no DSSE envelope")?;
                Ok(serde_json::to_vec(&envelope).expect("an envelope serialises"))
            });
            let mut annotations = std::collections::BTreeMap::new();
            if let Some(p) = &b.predicate_type {
                annotations.insert(cosign::PREDICATE_TYPE_ANNOTATION.to_owned(), p.clone());
            }
            (
                FetchedLayer { media_type: DSSE_MEDIA_TYPE.to_owned(), annotations, bytes, keyless_bundle },
                format!("bundle referrer {}", b.referrer),
            )
        })
        .collect()
}

async fn fetch_layers<R: Registry>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
    kind: ArtifactKind,
) -> Result<Option<Vec<FetchedLayer>>, String> {
    let Some(Artifact { layers, .. }) =
        artifacts::read(registry, repository, digest, kind).await.map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let mut fetched = Vec::with_capacity(layers.len());
    for layer in layers {
        let bytes = artifacts::layer_bytes(registry, repository, &layer)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string());
        fetched.push(FetchedLayer {
            media_type: layer.media_type,
            annotations: layer.annotations,
            bytes,
            keyless_bundle: None,
        });
    }
    Ok(Some(fetched))
}

/// Decides every check. Pure.
pub fn decide(request: &Request, facts: &Facts, policy: &SourcePolicy) -> Report {
    let checks = vec![
        source_digest(facts),
        reference(request, facts),
        signature(request, facts, policy),
        provenance(request, facts, policy),
        vulnerabilities(request, facts, policy),
        destination(request),
    ];
    Report { source: request.source.clone(), digest: request.digest, checks }
}

fn check(name: CheckName, status: Status, reason: impl Into<String>) -> Check {
    Check { name, status, reason: reason.into() }
}

fn source_digest(facts: &Facts) -> Check {
    match &facts.manifest {
        Err(reason) => check(CheckName::SourceDigest, Status::Fail, reason.clone()),
        Ok(children) => {
            let bad: Vec<String> = children
                .iter()
                .filter_map(|(d, state)| state.as_ref().err().map(|e| format!("child {d}: {e}")))
                .collect();
            if bad.is_empty() {
                let what = if children.is_empty() {
                    "the manifest exists and its bytes hash to the digest".to_owned()
                } else {
                    format!("the index and its {} children exist and hash to their digests", children.len())
                };
                check(CheckName::SourceDigest, Status::Pass, what)
            } else {
                check(CheckName::SourceDigest, Status::Fail, bad.join("; "))
            }
        }
    }
}

fn reference(request: &Request, facts: &Facts) -> Check {
    let (Some(tag), Some(now)) = (&request.source_tag, &facts.tag_now) else {
        return check(CheckName::Reference, Status::Skip, "the request names no source tag");
    };
    match now {
        Err(e) => {
            check(CheckName::Reference, Status::Fail, format!("cannot resolve {}:{tag}: {e}", request.source))
        }
        Ok(Some(d)) if *d == request.digest => {
            check(CheckName::Reference, Status::Pass, format!("{tag} still resolves to the digest"))
        }
        Ok(Some(d)) => check(
            CheckName::Reference,
            Status::Fail,
            format!("{tag} now resolves to {d}, not {}", request.digest),
        ),
        Ok(None) => {
            check(CheckName::Reference, Status::Fail, format!("{tag} no longer exists in {}", request.source))
        }
    }
}

/// Absence of an artifact under `requirement`.
fn absent(name: CheckName, requirement: Requirement, what: &str) -> Check {
    match requirement {
        Requirement::Required => check(name, Status::Fail, format!("no {what}, and one is required")),
        _ => check(name, Status::Warn, format!("no {what} (verified if present)")),
    }
}

fn signature(request: &Request, facts: &Facts, policy: &SourcePolicy) -> Check {
    const NAME: CheckName = CheckName::Signature;
    if policy.signatures == Requirement::Off {
        return check(NAME, Status::Skip, "the policy does not check signatures");
    }
    let layers = match &facts.signatures {
        Err(e) => return check(NAME, Status::Fail, format!("cannot read the signatures: {e}")),
        Ok(None) => &Vec::new(),
        Ok(Some(layers)) => layers,
    };
    if let Err(e) = &facts.bundles {
        return check(NAME, Status::Fail, format!("cannot read the referrers: {e}"));
    }
    let mut problems = Vec::new();
    for layer in layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE) {
        match verify_simple_signing(request, layer, policy) {
            Ok(label) => return check(NAME, Status::Pass, format!("signed with {label} (.sig)")),
            Err(problem) => problems.push(format!(".sig: {problem}")),
        }
    }
    // cosign v3 signatures: bundles of a `https://sigstore.dev/cosign/sign/v1` statement.
    for (layer, origin) in bundle_layers(facts) {
        let named = layer.annotations.get(cosign::PREDICATE_TYPE_ANNOTATION).cloned();
        let claimed = claimed_predicate(&layer);
        if named.or(claimed).is_some_and(|p| p != bundle::COSIGN_SIGN_PREDICATE_TYPE) {
            continue;
        }
        match verified_statement(&layer, &request.digest, &Signers::signatures(policy)) {
            Ok((statement, label)) if statement.predicate_type == bundle::COSIGN_SIGN_PREDICATE_TYPE => {
                let note = if policy.identity.is_some() {
                    "; a bundle names no docker-reference, so `identity` does not apply"
                } else {
                    ""
                };
                return check(NAME, Status::Pass, format!("signed with {label} ({origin}){note}"));
            }
            Ok(_) => {}
            Err(problem) => problems.push(format!("{origin}: {problem}")),
        }
    }
    if problems.is_empty() {
        return absent(NAME, policy.signatures, "signature (.sig or bundle)");
    }
    check(NAME, Status::Fail, format!("a signature is present but none verifies: {}", problems.join("; ")))
}

fn verify_simple_signing(
    request: &Request,
    layer: &FetchedLayer,
    policy: &SourcePolicy,
) -> Result<String, String> {
    let payload = layer.bytes.as_ref().map_err(Clone::clone)?;
    let encoded =
        layer.annotations.get(cosign::SIGNATURE_ANNOTATION).ok_or("a layer has no signature annotation")?;
    let label = if layer.annotations.contains_key(keyless::CERTIFICATE_ANNOTATION) {
        keyless_policy(policy.keyless.as_ref())?
            .verify_legacy_signature(payload, &layer.annotations)?
            .to_string()
    } else {
        let signature =
            cosign::unb64(encoded).map_err(|_| "a signature annotation is not base64".to_owned())?;
        first_verifying(&policy.signature_keys, payload, &signature)
            .ok_or("a signature does not verify with any configured key")?
            .label
            .clone()
    };
    let parsed: SimpleSigning =
        serde_json::from_slice(payload).map_err(|e| format!("a payload is not simple signing: {e}"))?;
    if parsed.critical.image.docker_manifest_digest != request.digest.to_string() {
        return Err(format!(
            "a verified signature is for {}, not this digest",
            parsed.critical.image.docker_manifest_digest
        ));
    }
    if let Some(identity) = &policy.identity
        && !identity.is_match(&parsed.critical.identity.docker_reference)
    {
        return Err(format!(
            "identity {:?} does not match {identity}",
            parsed.critical.identity.docker_reference
        ));
    }
    Ok(label)
}

/// Who may sign one kind of artifact for a source: keys, and a keyless identity.
struct Signers<'p> {
    keys: &'p [VerificationKey],
    keyless: Option<&'p KeylessPolicy>,
    /// Further exact certificate identities a keyless statement may carry.
    also: &'p [String],
}

impl<'p> Signers<'p> {
    fn signatures(policy: &'p SourcePolicy) -> Self {
        Signers { keys: &policy.signature_keys, keyless: policy.keyless.as_ref(), also: &[] }
    }

    /// SLSA generators (slsa-github-generator) sign their provenance as the builder itself, so
    /// an allowed builder id is an allowed certificate identity too.
    fn provenance(policy: &'p SourcePolicy) -> Self {
        Signers { keys: &policy.provenance_keys, keyless: policy.keyless.as_ref(), also: &policy.builders }
    }

    fn vulnerabilities(policy: &'p SourcePolicy, keys: &'p [VerificationKey]) -> Self {
        Signers { keys, keyless: policy.keyless.as_ref(), also: &[] }
    }

    /// Who may sign a statement of `predicate_type`, as the checks decide it: provenance and
    /// vulnerability reports their own way, anything else (a cosign v3 signature, a promotion
    /// attestation) like a signature.
    fn for_predicate(policy: &'p SourcePolicy, predicate_type: Option<&str>) -> Self {
        match predicate_type {
            Some(SLSA_PROVENANCE_V1 | SLSA_PROVENANCE_V02) => Self::provenance(policy),
            Some(COSIGN_VULN_V1) => Self::vulnerabilities(
                policy,
                policy.vulnerabilities.as_ref().map(|g| g.keys.as_slice()).unwrap_or_default(),
            ),
            _ => Self::signatures(policy),
        }
    }

    /// Whether anything could verify with these.
    fn any(&self) -> bool {
        !self.keys.is_empty() || self.keyless.is_some()
    }
}

/// The source's keyless policy, for an artifact signed keylessly (a Fulcio certificate).
fn keyless_policy(keyless: Option<&KeylessPolicy>) -> Result<&KeylessPolicy, String> {
    keyless.ok_or_else(|| {
        "it is signed keylessly (a Fulcio certificate), and this source has no trusted-root with \
         certificate-identity and certificate-oidc-issuer"
            .to_owned()
    })
}

/// A DSSE layer whose envelope verifies (with a key, or keylessly for a keyless bundle) and
/// whose statement covers the digest; with who signed it.
fn verified_statement(
    layer: &FetchedLayer,
    digest: &Digest,
    signers: &Signers<'_>,
) -> Result<(Statement, String), String> {
    if let Some(bundle) = &layer.keyless_bundle {
        let (statement, signer) =
            keyless_policy(signers.keyless)?.verify_bundle(bundle, digest, signers.also)?;
        return Ok((statement, signer.to_string()));
    }
    let bytes = layer.bytes.as_ref().map_err(Clone::clone)?;
    if layer.annotations.contains_key(keyless::CERTIFICATE_ANNOTATION) {
        let (statement, signer) = keyless_policy(signers.keyless)?.verify_legacy_attestation(
            bytes,
            &layer.annotations,
            digest,
            signers.also,
        )?;
        return Ok((statement, signer.to_string()));
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
    let (statement, key) = envelope.verified_statement(signers.keys)?;
    if !statement.covers(digest) {
        return Err("the statement's subjects do not include this digest".into());
    }
    Ok((statement, key.label.clone()))
}

/// The DSSE layers of the `.att` and the bundles that may hold one of `predicate_types`, each
/// with where it came from.
fn attestation_layers(
    facts: &Facts,
    predicate_types: &[&str],
) -> Result<Option<Vec<(FetchedLayer, String)>>, String> {
    let legacy = facts.attestations.as_ref().map_err(Clone::clone)?.clone().unwrap_or_default();
    facts.bundles.as_ref().map_err(|e| format!("cannot read the referrers: {e}"))?;
    let matching: Vec<(FetchedLayer, String)> = legacy
        .into_iter()
        .map(|l| (l, ".att".to_owned()))
        .chain(bundle_layers(facts))
        .filter(|(l, _)| l.media_type == DSSE_MEDIA_TYPE)
        .filter(|(l, _)| {
            l.annotations
                .get(cosign::PREDICATE_TYPE_ANNOTATION)
                .is_none_or(|t| predicate_types.contains(&t.as_str()))
                && claimed_predicate(l).is_none_or(|t| predicate_types.contains(&t.as_str()))
        })
        .collect();
    Ok((!matching.is_empty()).then_some(matching))
}

/// The predicate type a DSSE layer's statement claims, read before any signature is checked
/// (only to sort statements; nothing is trusted before verification).
fn claimed_predicate(layer: &FetchedLayer) -> Option<String> {
    let envelope: Envelope = serde_json::from_slice(layer.bytes.as_ref().ok()?).ok()?;
    let payload = envelope.payload_bytes().ok()?;
    let statement: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    statement["predicateType"].as_str().map(str::to_owned)
}

fn provenance(request: &Request, facts: &Facts, policy: &SourcePolicy) -> Check {
    const NAME: CheckName = CheckName::Provenance;
    if policy.provenance == Requirement::Off {
        return check(NAME, Status::Skip, "the policy does not check provenance");
    }
    let layers = match attestation_layers(facts, &[SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02]) {
        Err(e) => return check(NAME, Status::Fail, format!("cannot read the attestations: {e}")),
        Ok(None) => return absent(NAME, policy.provenance, "SLSA provenance attestation"),
        Ok(Some(layers)) => layers,
    };
    let mut problems = Vec::new();
    for (layer, origin) in &layers {
        let (statement, key) = match verified_statement(layer, &request.digest, &Signers::provenance(policy))
        {
            Ok(found) => found,
            Err(problem) => {
                problems.push(format!("{origin}: {problem}"));
                continue;
            }
        };
        if statement.predicate_type != SLSA_PROVENANCE_V1 && statement.predicate_type != SLSA_PROVENANCE_V02 {
            continue;
        }
        let (builder, repository) = slsa_fields(&statement);
        if !policy.builders.is_empty() && !builder.as_ref().is_some_and(|b| policy.builders.contains(b)) {
            problems.push(format!("builder {} is not allowed", builder.as_deref().unwrap_or("(none)")));
            continue;
        }
        if let Some(pattern) = &policy.source_repository
            && !repository.as_ref().is_some_and(|r| pattern.is_match(r))
        {
            problems.push(format!(
                "source repository {} does not match {pattern}",
                repository.as_deref().unwrap_or("(none)")
            ));
            continue;
        }
        return check(
            NAME,
            Status::Pass,
            format!(
                "{} signed with {key} ({origin}), built by {} from {}",
                statement.predicate_type,
                builder.as_deref().unwrap_or("(unnamed builder)"),
                repository.as_deref().unwrap_or("(unnamed source)")
            ),
        );
    }
    if problems.is_empty() {
        return absent(NAME, policy.provenance, "SLSA provenance statement");
    }
    check(NAME, Status::Fail, format!("provenance is present but does not verify: {}", problems.join("; ")))
}

/// The builder id and source repository of an SLSA provenance statement (v1 or v0.2).
fn slsa_fields(statement: &Statement) -> (Option<String>, Option<String>) {
    let p = &statement.predicate;
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if statement.predicate_type == SLSA_PROVENANCE_V1 {
        let builder = text(&p["runDetails"]["builder"]["id"]);
        let params = &p["buildDefinition"]["externalParameters"];
        let repository = text(&params["workflow"]["repository"])
            .or_else(|| text(&params["source"]["uri"]))
            .or_else(|| text(&params["source"]))
            .or_else(|| text(&p["buildDefinition"]["resolvedDependencies"][0]["uri"]));
        (builder, repository)
    } else {
        let builder = text(&p["builder"]["id"]);
        let repository =
            text(&p["invocation"]["configSource"]["uri"]).or_else(|| text(&p["materials"][0]["uri"]));
        (builder, repository)
    }
}

fn vulnerabilities(request: &Request, facts: &Facts, policy: &SourcePolicy) -> Check {
    const NAME: CheckName = CheckName::Vulnerabilities;
    let Some(gate) = &policy.vulnerabilities else {
        return check(NAME, Status::Skip, "no vulnerability gate is configured");
    };
    let missing = |why: &str| match gate.missing {
        MissingReport::Allow => check(NAME, Status::Pass, format!("{why}; allowed by policy")),
        MissingReport::Warn => check(NAME, Status::Warn, why.to_owned()),
        MissingReport::Deny => check(NAME, Status::Fail, format!("{why}; a report is required")),
    };
    let layers = match attestation_layers(facts, &[COSIGN_VULN_V1]) {
        Err(e) => return check(NAME, Status::Fail, format!("cannot read the attestations: {e}")),
        Ok(None) => return missing("no vulnerability report"),
        Ok(Some(layers)) => layers,
    };
    let mut problems = Vec::new();
    for (layer, origin) in &layers {
        match verified_statement(layer, &request.digest, &Signers::vulnerabilities(policy, &gate.keys)) {
            Ok((statement, key)) if statement.predicate_type == COSIGN_VULN_V1 => {
                let findings = findings(&statement.predicate["scanner"]["result"]);
                let blocking: Vec<&(String, Severity)> =
                    findings.iter().filter(|(_, s)| *s >= gate.block_at).collect();
                return if blocking.is_empty() {
                    check(
                        NAME,
                        Status::Pass,
                        format!(
                            "{} findings, none at or above {:?} (report signed with {key}, {origin})",
                            findings.len(),
                            gate.block_at
                        ),
                    )
                } else {
                    let ids: Vec<String> =
                        blocking.iter().take(5).map(|(id, s)| format!("{id} ({s:?})")).collect();
                    check(
                        NAME,
                        Status::Fail,
                        format!(
                            "{} findings at or above {:?}: {}",
                            blocking.len(),
                            gate.block_at,
                            ids.join(", ")
                        ),
                    )
                };
            }
            Ok(_) => {}
            Err(problem) => problems.push(format!("{origin}: {problem}")),
        }
    }
    if problems.is_empty() {
        return missing("no vulnerability report");
    }
    check(
        NAME,
        Status::Fail,
        format!("a vulnerability report is present but does not verify: {}", problems.join("; ")),
    )
}

/// Findings (id, severity) in a scanner result: Trivy (`Results[].Vulnerabilities[]`) or Grype
/// (`matches[].vulnerability`).
pub fn findings(result: &serde_json::Value) -> Vec<(String, Severity)> {
    let mut out = Vec::new();
    for r in result["Results"].as_array().into_iter().flatten() {
        for v in r["Vulnerabilities"].as_array().into_iter().flatten() {
            if let (Some(id), Some(severity)) =
                (v["VulnerabilityID"].as_str(), v["Severity"].as_str().and_then(Severity::parse))
            {
                out.push((id.to_owned(), severity));
            }
        }
    }
    for m in result["matches"].as_array().into_iter().flatten() {
        let v = &m["vulnerability"];
        if let (Some(id), Some(severity)) =
            (v["id"].as_str(), v["severity"].as_str().and_then(Severity::parse))
        {
            out.push((id.to_owned(), severity));
        }
    }
    out
}

fn destination(request: &Request) -> Check {
    if request.destination_problems.is_empty() {
        check(CheckName::Destination, Status::Pass, "no destination conflict or refused tag")
    } else {
        check(CheckName::Destination, Status::Fail, request.destination_problems.join("; "))
    }
}
