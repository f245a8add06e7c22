//! The verifier's decision, check by check, from tables. Keys are generated per run.

use std::collections::BTreeMap;

use ferry_model::{Digest, Repository, Tag};
use serde_json::json;

use crate::cosign::{
    self, COSIGN_VULN_V1, DSSE_MEDIA_TYPE, IN_TOTO_STATEMENT_V1, PREDICATE_TYPE_ANNOTATION,
    SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02, SimpleSigning,
    Statement, Subject,
};
use crate::keys::{SigningKey, VerificationKey, generate_key_pair};
use crate::policy::{MissingReport, Requirement, Severity, SourcePolicy, VulnerabilityGate};
use crate::verify::{Facts, FetchedBundle, FetchedLayer, Request, Status, decide};

struct Keys {
    staging: SigningKey,
    other: SigningKey,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let load = || {
            let (private, _) = generate_key_pair(b"pw").unwrap();
            SigningKey::from_encrypted_pem(private.as_bytes(), b"pw").unwrap()
        };
        Keys { staging: load(), other: load() }
    })
}

fn verifier(key: &SigningKey, label: &str) -> VerificationKey {
    VerificationKey::from_pem(label, key.public_key_pem().as_bytes()).unwrap()
}

fn digest() -> Digest {
    Digest::of(b"the image")
}

fn repo() -> Repository {
    Repository::parse("staging.example/app").unwrap()
}

async fn signature_layer(key: &SigningKey, for_digest: Digest, reference: &str) -> FetchedLayer {
    let mut payload = SimpleSigning::new(&repo(), &for_digest);
    payload.critical.identity.docker_reference = reference.to_owned();
    let bytes = payload.to_bytes();
    let signature = key.sign(&bytes).await.unwrap();
    FetchedLayer {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(),
        annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.into(), cosign::b64(&signature))]),
        bytes: Ok(bytes),
        keyless_bundle: None,
    }
}

async fn attestation_layer(
    key: &SigningKey,
    predicate_type: &str,
    predicate: serde_json::Value,
    subject: Digest,
) -> FetchedLayer {
    let statement = Statement {
        statement_type: IN_TOTO_STATEMENT_V1.into(),
        subject: vec![Subject {
            name: "staging.example/app".into(),
            digest: BTreeMap::from([("sha256".into(), subject.hex())]),
        }],
        predicate_type: predicate_type.into(),
        predicate,
    };
    let envelope = crate::attest::envelope(key, &statement).await.unwrap();
    FetchedLayer {
        media_type: DSSE_MEDIA_TYPE.into(),
        annotations: BTreeMap::from([(PREDICATE_TYPE_ANNOTATION.into(), predicate_type.into())]),
        bytes: Ok(serde_json::to_vec(&envelope).unwrap()),
        keyless_bundle: None,
    }
}

fn slsa_v1(builder: &str, repository: &str) -> serde_json::Value {
    json!({
        "buildDefinition": {"buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                            "externalParameters": {"workflow": {"repository": repository, "path": ".github/workflows/release.yml"}}},
        "runDetails": {"builder": {"id": builder}}
    })
}

fn trivy(severities: &[&str]) -> serde_json::Value {
    let vulns: Vec<_> = severities
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"VulnerabilityID": format!("CVE-2026-{i:04}"), "Severity": s}))
        .collect();
    json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy", "version": "0.50", "result": {"Results": [{"Target": "x", "Vulnerabilities": vulns}]}}})
}

/// A cosign v3 bundle referrer of `statement` about `subject`, signed with `key` (built by
/// Ferry's bundle writer, then checked by the verifier: the formats must agree).
async fn bundle_of(key: &SigningKey, statement: Vec<u8>, predicate: &str) -> FetchedBundle {
    let bytes = crate::bundle::build(key, &statement).await.unwrap();
    FetchedBundle { referrer: Digest::of(&bytes), predicate_type: Some(predicate.into()), bytes: Ok(bytes) }
}

fn base_facts() -> Facts {
    Facts {
        manifest: Ok(vec![]),
        tag_now: None,
        signatures: Ok(None),
        attestations: Ok(None),
        bundles: Ok(vec![]),
    }
}

fn request() -> Request {
    Request { source: repo(), digest: digest(), source_tag: None, destination_problems: vec![] }
}

const BUILDER: &str = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0";

/// Each row: a name, how to change the request/facts/policy, and the expected status of one check.
#[tokio::test]
async fn decide_table() {
    let k = keys();
    let staging = || vec![verifier(&k.staging, "staging.pub")];
    let d = digest();
    let sig_good = signature_layer(&k.staging, d, "staging.example/app").await;
    let sig_other_key = signature_layer(&k.other, d, "staging.example/app").await;
    let sig_other_digest = signature_layer(&k.staging, Digest::of(b"else"), "staging.example/app").await;
    let sig_other_identity = signature_layer(&k.staging, d, "evil.example/app").await;
    let mut sig_tampered = sig_good.clone();
    sig_tampered.bytes = Ok(String::from_utf8(sig_good.bytes.clone().unwrap())
        .unwrap()
        .replace("staging.example", "stagin9.example")
        .into_bytes());
    let prov_good =
        attestation_layer(&k.staging, SLSA_PROVENANCE_V1, slsa_v1(BUILDER, "https://github.com/acme/app"), d)
            .await;
    let prov_v02 = attestation_layer(
        &k.staging,
        SLSA_PROVENANCE_V02,
        json!({"builder": {"id": BUILDER}, "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/tags/v1"}}}),
        d,
    )
    .await;
    let prov_bad_builder = attestation_layer(
        &k.staging,
        SLSA_PROVENANCE_V1,
        slsa_v1("https://evil.example/builder", "https://github.com/acme/app"),
        d,
    )
    .await;
    let prov_bad_repo = attestation_layer(
        &k.staging,
        SLSA_PROVENANCE_V1,
        slsa_v1(BUILDER, "https://github.com/mallory/app"),
        d,
    )
    .await;
    let prov_wrong_key =
        attestation_layer(&k.other, SLSA_PROVENANCE_V1, slsa_v1(BUILDER, "https://github.com/acme/app"), d)
            .await;
    let prov_wrong_subject = attestation_layer(
        &k.staging,
        SLSA_PROVENANCE_V1,
        slsa_v1(BUILDER, "https://github.com/acme/app"),
        Digest::of(b"else"),
    )
    .await;
    let vuln_high = attestation_layer(&k.staging, COSIGN_VULN_V1, trivy(&["LOW", "HIGH"]), d).await;
    let vuln_low = attestation_layer(&k.staging, COSIGN_VULN_V1, trivy(&["LOW", "MEDIUM"]), d).await;
    let grype_critical = attestation_layer(
        &k.staging,
        COSIGN_VULN_V1,
        json!({"scanner": {"result": {"matches": [{"vulnerability": {"id": "GHSA-x", "severity": "Critical"}}]}}}),
        d,
    )
    .await;

    let sign_statement = |of: Digest| crate::bundle::signature_statement(&of);
    let cosign_sign = crate::bundle::COSIGN_SIGN_PREDICATE_TYPE;
    let b_sig_good = bundle_of(&k.staging, sign_statement(d), cosign_sign).await;
    let b_sig_other_key = bundle_of(&k.other, sign_statement(d), cosign_sign).await;
    let b_sig_other_digest = bundle_of(&k.staging, sign_statement(Digest::of(b"else")), cosign_sign).await;
    let mut b_sig_tampered = b_sig_good.clone();
    {
        let mut doc: serde_json::Value = serde_json::from_slice(b_sig_good.bytes.as_ref().unwrap()).unwrap();
        let payload =
            String::from_utf8(sign_statement(d)).unwrap().replace(&d.hex(), &Digest::of(b"else").hex());
        doc["dsseEnvelope"]["payload"] = json!(cosign::b64(payload.as_bytes()));
        b_sig_tampered.bytes = Ok(serde_json::to_vec(&doc).unwrap());
    }
    let slsa_statement = |key_digest: Digest| {
        serde_json::to_vec(&json!({
            "_type": IN_TOTO_STATEMENT_V1,
            "subject": [{"digest": {"sha256": key_digest.hex()}}],
            "predicateType": SLSA_PROVENANCE_V1,
            "predicate": slsa_v1(BUILDER, "https://github.com/acme/app"),
        }))
        .unwrap()
    };
    let b_prov_good = bundle_of(&k.staging, slsa_statement(d), SLSA_PROVENANCE_V1).await;
    let b_prov_wrong_key = bundle_of(&k.other, slsa_statement(d), SLSA_PROVENANCE_V1).await;
    let with_bundles = |bundles: Vec<FetchedBundle>| Facts { bundles: Ok(bundles), ..base_facts() };

    let signatures = |requirement| SourcePolicy {
        signatures: requirement,
        signature_keys: staging(),
        ..Default::default()
    };
    let provenance = |requirement| SourcePolicy {
        provenance: requirement,
        provenance_keys: staging(),
        builders: vec![BUILDER.into()],
        source_repository: Some(regex::Regex::new("^(git\\+)?https://github.com/acme/").unwrap()),
        ..Default::default()
    };
    let gate = |block_at, missing| SourcePolicy {
        vulnerabilities: Some(VulnerabilityGate { block_at, missing, keys: staging() }),
        ..Default::default()
    };
    let with_sigs = |layers: Vec<FetchedLayer>| Facts { signatures: Ok(Some(layers)), ..base_facts() };
    let with_atts = |layers: Vec<FetchedLayer>| Facts { attestations: Ok(Some(layers)), ..base_facts() };

    type Row = (&'static str, Request, Facts, SourcePolicy, &'static str, Status);
    let rows: Vec<Row> = vec![
        ("everything off", request(), base_facts(), SourcePolicy::default(), "signature", Status::Skip),
        ("source present", request(), base_facts(), SourcePolicy::default(), "source-digest", Status::Pass),
        (
            "source missing",
            request(),
            Facts { manifest: Err("does not exist".into()), ..base_facts() },
            SourcePolicy::default(),
            "source-digest",
            Status::Fail,
        ),
        (
            "index child missing",
            request(),
            Facts { manifest: Ok(vec![(Digest::of(b"c"), Err("missing".into()))]), ..base_facts() },
            SourcePolicy::default(),
            "source-digest",
            Status::Fail,
        ),
        ("no source tag", request(), base_facts(), SourcePolicy::default(), "reference", Status::Skip),
        (
            "tag still there",
            Request { source_tag: Some(Tag::parse("v1").unwrap()), ..request() },
            Facts { tag_now: Some(Ok(Some(d))), ..base_facts() },
            SourcePolicy::default(),
            "reference",
            Status::Pass,
        ),
        (
            "tag moved",
            Request { source_tag: Some(Tag::parse("v1").unwrap()), ..request() },
            Facts { tag_now: Some(Ok(Some(Digest::of(b"x")))), ..base_facts() },
            SourcePolicy::default(),
            "reference",
            Status::Fail,
        ),
        (
            "tag gone",
            Request { source_tag: Some(Tag::parse("v1").unwrap()), ..request() },
            Facts { tag_now: Some(Ok(None)), ..base_facts() },
            SourcePolicy::default(),
            "reference",
            Status::Fail,
        ),
        (
            "signature required, none",
            request(),
            base_facts(),
            signatures(Requirement::Required),
            "signature",
            Status::Fail,
        ),
        (
            "signature if-present, none",
            request(),
            base_facts(),
            signatures(Requirement::IfPresent),
            "signature",
            Status::Warn,
        ),
        (
            "signature valid",
            request(),
            with_sigs(vec![sig_good.clone()]),
            signatures(Requirement::Required),
            "signature",
            Status::Pass,
        ),
        (
            "valid among invalid",
            request(),
            with_sigs(vec![sig_other_key.clone(), sig_good.clone()]),
            signatures(Requirement::Required),
            "signature",
            Status::Pass,
        ),
        (
            "signature by another key",
            request(),
            with_sigs(vec![sig_other_key.clone()]),
            signatures(Requirement::IfPresent),
            "signature",
            Status::Fail,
        ),
        (
            "signature for another digest",
            request(),
            with_sigs(vec![sig_other_digest]),
            signatures(Requirement::Required),
            "signature",
            Status::Fail,
        ),
        (
            "tampered payload",
            request(),
            with_sigs(vec![sig_tampered]),
            signatures(Requirement::Required),
            "signature",
            Status::Fail,
        ),
        (
            "identity mismatch",
            request(),
            with_sigs(vec![sig_other_identity]),
            SourcePolicy {
                identity: Some(regex::Regex::new("^staging\\.example/").unwrap()),
                ..signatures(Requirement::Required)
            },
            "signature",
            Status::Fail,
        ),
        (
            "unreadable signatures",
            request(),
            Facts { signatures: Err("HTTP 500".into()), ..base_facts() },
            signatures(Requirement::IfPresent),
            "signature",
            Status::Fail,
        ),
        (
            "bundle signature (cosign v3), right key",
            request(),
            with_bundles(vec![b_sig_good.clone()]),
            signatures(Requirement::Required),
            "signature",
            Status::Pass,
        ),
        (
            "bundle signature, wrong key, if-present: a present bundle must verify",
            request(),
            with_bundles(vec![b_sig_other_key.clone()]),
            signatures(Requirement::IfPresent),
            "signature",
            Status::Fail,
        ),
        (
            "bundle signature of another digest",
            request(),
            with_bundles(vec![b_sig_other_digest]),
            signatures(Requirement::Required),
            "signature",
            Status::Fail,
        ),
        (
            "bundle signature, tampered payload",
            request(),
            with_bundles(vec![b_sig_tampered]),
            signatures(Requirement::Required),
            "signature",
            Status::Fail,
        ),
        (
            "a wrong-key bundle beside a good .sig: one verifying signature is enough",
            request(),
            Facts { signatures: Ok(Some(vec![sig_good.clone()])), ..with_bundles(vec![b_sig_other_key]) },
            signatures(Requirement::Required),
            "signature",
            Status::Pass,
        ),
        (
            "unreadable referrers",
            request(),
            Facts { bundles: Err("HTTP 500".into()), ..base_facts() },
            signatures(Requirement::IfPresent),
            "signature",
            Status::Fail,
        ),
        (
            "bundle provenance",
            request(),
            with_bundles(vec![b_prov_good.clone(), b_sig_good.clone()]),
            provenance(Requirement::Required),
            "provenance",
            Status::Pass,
        ),
        (
            "bundle provenance, wrong key",
            request(),
            with_bundles(vec![b_prov_wrong_key]),
            provenance(Requirement::IfPresent),
            "provenance",
            Status::Fail,
        ),
        (
            "a signature bundle is not provenance",
            request(),
            with_bundles(vec![b_sig_good.clone()]),
            provenance(Requirement::IfPresent),
            "provenance",
            Status::Warn,
        ),
        (
            "provenance v1",
            request(),
            with_atts(vec![prov_good.clone()]),
            provenance(Requirement::Required),
            "provenance",
            Status::Pass,
        ),
        (
            "provenance v0.2",
            request(),
            with_atts(vec![prov_v02]),
            provenance(Requirement::Required),
            "provenance",
            Status::Pass,
        ),
        (
            "provenance missing, if-present",
            request(),
            base_facts(),
            provenance(Requirement::IfPresent),
            "provenance",
            Status::Warn,
        ),
        (
            "provenance missing, required",
            request(),
            base_facts(),
            provenance(Requirement::Required),
            "provenance",
            Status::Fail,
        ),
        (
            "builder not allowed",
            request(),
            with_atts(vec![prov_bad_builder]),
            provenance(Requirement::IfPresent),
            "provenance",
            Status::Fail,
        ),
        (
            "source repository not allowed",
            request(),
            with_atts(vec![prov_bad_repo]),
            provenance(Requirement::Required),
            "provenance",
            Status::Fail,
        ),
        (
            "provenance by another key",
            request(),
            with_atts(vec![prov_wrong_key]),
            provenance(Requirement::Required),
            "provenance",
            Status::Fail,
        ),
        (
            "provenance for another digest",
            request(),
            with_atts(vec![prov_wrong_subject]),
            provenance(Requirement::Required),
            "provenance",
            Status::Fail,
        ),
        (
            "high finding blocks at high",
            request(),
            with_atts(vec![vuln_high.clone()]),
            gate(Severity::High, MissingReport::Warn),
            "vulnerabilities",
            Status::Fail,
        ),
        (
            "high finding passes at critical",
            request(),
            with_atts(vec![vuln_high]),
            gate(Severity::Critical, MissingReport::Warn),
            "vulnerabilities",
            Status::Pass,
        ),
        (
            "low findings pass at high",
            request(),
            with_atts(vec![vuln_low, prov_good]),
            gate(Severity::High, MissingReport::Warn),
            "vulnerabilities",
            Status::Pass,
        ),
        (
            "grype critical",
            request(),
            with_atts(vec![grype_critical]),
            gate(Severity::Critical, MissingReport::Warn),
            "vulnerabilities",
            Status::Fail,
        ),
        (
            "no report, deny",
            request(),
            base_facts(),
            gate(Severity::High, MissingReport::Deny),
            "vulnerabilities",
            Status::Fail,
        ),
        (
            "no report, warn",
            request(),
            base_facts(),
            gate(Severity::High, MissingReport::Warn),
            "vulnerabilities",
            Status::Warn,
        ),
        (
            "no report, allow",
            request(),
            base_facts(),
            gate(Severity::High, MissingReport::Allow),
            "vulnerabilities",
            Status::Pass,
        ),
        ("no gate", request(), base_facts(), SourcePolicy::default(), "vulnerabilities", Status::Skip),
        ("destination clean", request(), base_facts(), SourcePolicy::default(), "destination", Status::Pass),
        (
            "destination conflict",
            Request {
                destination_problems: vec!["prod/app:1.1 already points at sha256:…".into()],
                ..request()
            },
            base_facts(),
            SourcePolicy::default(),
            "destination",
            Status::Fail,
        ),
    ];
    for (name, request, facts, policy, check_name, want) in rows {
        let report = decide(&request, &facts, &policy);
        let check = report.checks.iter().find(|c| c.name == check_name).unwrap();
        assert_eq!(check.status, want, "{name}: {} ({})", check.status, check.reason);
        assert!(!check.reason.is_empty(), "{name}: every check has a reason");
        assert_eq!(report.passed(), report.checks.iter().all(|c| c.status != Status::Fail), "{name}");
    }
}
