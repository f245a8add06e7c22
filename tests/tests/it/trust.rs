//! The trust stages against real registries (and LocalStack KMS). What Ferry writes is checked
//! with code independent of its signer: hand-parsed JSON and `openssl` for the ECDSA signatures.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use ferry_copy::{Copier, CopyOptions};
use ferry_model::Digest;
use ferry_registry::{Credentials, Registry as _};
use ferry_testkit::cosign::{TestKey, attest_image, openssl_verifies, pae, sign_image};
use ferry_testkit::seed::Seeder;
use ferry_testkit::world::World;
use ferry_trust::Formats;
use ferry_trust::attest::{PromotedTo, Promotion, attest, now_rfc3339};
use ferry_trust::cosign::ArtifactKind;
use ferry_trust::keys::{SigningKey, VerificationKey, generate_key_pair};
use ferry_trust::policy::{Requirement, SourcePolicy};
use ferry_trust::replicate::{Replicated, replicate, replicate_all};
use ferry_trust::sign::sign;
use ferry_trust::verify::{self, Status};
use serde_json::Value;

use crate::support::client;

fn ferry_key() -> (SigningKey, String, String) {
    let (private, public) = generate_key_pair(b"test-password").unwrap();
    (SigningKey::from_encrypted_pem(private.as_bytes(), b"test-password").unwrap(), public, private)
}

/// Writes a new Ferry key pair to `dir` as `ferry.key` (password `test-password`) and
/// `ferry.pub`; returns the public key.
fn write_ferry_key(dir: &std::path::Path) -> String {
    let (_, public, private) = ferry_key();
    std::fs::write(dir.join("ferry.key"), &private).unwrap();
    std::fs::write(dir.join("ferry.pub"), &public).unwrap();
    public
}

fn b64d(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// The `.sig`/`.att` manifest of `digest` in `repo`, parsed by hand.
async fn artifact(seeder: &Seeder, repo: &str, digest: &Digest, suffix: &str) -> Option<(Digest, Value)> {
    let bytes = seeder.get_manifest(repo, &format!("{}.{suffix}", digest.tag_form())).await?;
    Some((Digest::of(&bytes), serde_json::from_slice(&bytes).unwrap()))
}

#[tokio::test]
async fn signatures_are_cosign_format_and_verify_with_openssl() {
    let world = World::new().await;
    let registry = client(&world.hosts(), Credentials::none());
    let prod = Seeder::new(&world.prod);
    prod.index(
        "signed/app",
        Some("1.0"),
        &[
            ferry_testkit::seed::ImageSpec::small("amd64", 1, 1),
            ferry_testkit::seed::ImageSpec::small("arm64", 2, 1),
        ],
    )
    .await;
    let digest = prod.tag_digest("signed/app", "1.0").await.unwrap();
    let (key, public, _) = ferry_key();
    let repo = world.prod.repository("signed/app");
    let signed = sign(&registry, &key, Formats::default(), &repo, digest).await.unwrap();
    assert_eq!(signed.signed.len(), 3, "the index and both children: {signed:?}");

    let (_, manifest) = artifact(&prod, "signed/app", &digest, "sig").await.expect("a .sig tag");
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    let payload = prod.get_blob("signed/app", layer["digest"].as_str().unwrap()).await;
    let parsed: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(parsed["critical"]["type"], "cosign container image signature");
    assert_eq!(parsed["critical"]["image"]["docker-manifest-digest"], digest.to_string());
    assert_eq!(parsed["critical"]["identity"]["docker-reference"], repo.to_string());
    let signature = b64d(layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap());
    assert!(
        openssl_verifies(&public, &payload, &signature),
        "openssl accepts the signature over the exact payload bytes"
    );
    let (_, other_public) = generate_key_pair(b"x").unwrap();
    assert!(!openssl_verifies(&other_public, &payload, &signature), "a wrong key is rejected");
    let mut tampered = payload.clone();
    tampered[10] ^= 1;
    assert!(!openssl_verifies(&public, &tampered, &signature));

    // Ferry's verifier agrees, and rejects a wrong key.
    let request =
        verify::Request { source: repo.clone(), digest, source_tag: None, destination_problems: vec![] };
    let policy = |pem: &str| SourcePolicy {
        signatures: Requirement::Required,
        signature_keys: vec![VerificationKey::from_pem("k", pem.as_bytes()).unwrap()],
        ..Default::default()
    };
    let facts = verify::gather(&registry, &request, &policy(&public)).await;
    assert!(verify::decide(&request, &facts, &policy(&public)).passed());
    let facts = verify::gather(&registry, &request, &policy(&other_public)).await;
    let report = verify::decide(&request, &facts, &policy(&other_public));
    assert_eq!(report.checks.iter().find(|c| c.name == "signature").unwrap().status, Status::Fail);
}

#[tokio::test]
async fn resigning_adds_nothing_and_existing_layers_are_kept() {
    let world = World::new().await;
    let registry = client(&world.hosts(), Credentials::none());
    let prod = Seeder::new(&world.prod);
    let digest = world.prod_11.digest;
    let repo = world.prod.repository("demo/app");
    // A signature someone else made first.
    let other = TestKey::generate();
    sign_image(&prod, "demo/app", &digest, &repo.to_string(), &other).await;
    let (key, _, _) = ferry_key();
    sign(&registry, &key, Formats::default(), &repo, digest).await.unwrap();
    let (first, manifest) = artifact(&prod, "demo/app", &digest, "sig").await.unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2, "the existing layer is kept, ours appended");
    let again = sign(&registry, &key, Formats::default(), &repo, digest).await.unwrap();
    assert_eq!(again.signed, vec![], "{again:?}");
    assert_eq!(again.already, vec![digest]);
    let (second, _) = artifact(&prod, "demo/app", &digest, "sig").await.unwrap();
    assert_eq!(first, second, "re-signing changed nothing");
    // A second key appends; nothing is dropped.
    let (key2, _, _) = ferry_key();
    sign(&registry, &key2, Formats::default(), &repo, digest).await.unwrap();
    let (_, manifest) = artifact(&prod, "demo/app", &digest, "sig").await.unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_attestation_is_written_once_under_redelivery() {
    let world = World::new().await;
    let registry = client(&world.hosts(), Credentials::none());
    let prod = Seeder::new(&world.prod);
    let (key, public, _) = ferry_key();
    let promotion = || Promotion {
        source: world.staging.repository("demo/single"),
        digest: world.single.digest,
        destinations: vec![
            PromotedTo {
                repository: world.prod.repository("demo/single"),
                tags: vec!["2.0".parse().unwrap()],
            },
            PromotedTo {
                repository: world.mirror.repository("demo/single"),
                tags: vec!["2.0".parse().unwrap()],
            },
        ],
        origin: None,
        trigger_event_id: Some("event-1".into()),
        verification: Some(verify::Report {
            source: world.staging.repository("demo/single"),
            digest: world.single.digest,
            checks: vec![
                verify::Check {
                    name: ferry_model::CheckName::Signature,
                    status: Status::Pass,
                    reason: "signed".into(),
                },
                verify::Check {
                    name: ferry_model::CheckName::Provenance,
                    status: Status::Pass,
                    reason: "built".into(),
                },
                verify::Check {
                    name: ferry_model::CheckName::Vulnerabilities,
                    status: Status::Skip,
                    reason: "no gate".into(),
                },
            ],
        }),
        timestamp: now_rfc3339(),
    };
    attest(&registry, &key, Formats::default(), &promotion(), None).await.unwrap();
    let (first, manifest) = artifact(&prod, "demo/single", &world.single.digest, "att").await.unwrap();
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        attest(&registry, &key, Formats::default(), &promotion(), None).await.unwrap();
    }
    let (after, _) = artifact(&prod, "demo/single", &world.single.digest, "att").await.unwrap();
    assert_eq!(first, after, "redelivery adds no duplicate");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "the promotion attestation and the verification summary");
    // The SLSA verification summary: signed with Ferry's key, about the promoted digest.
    let vsa = &layers[1];
    assert_eq!(vsa["annotations"]["predicateType"], "https://slsa.dev/verification_summary/v1");
    let envelope: Value =
        serde_json::from_slice(&prod.get_blob("demo/single", vsa["digest"].as_str().unwrap()).await).unwrap();
    let vsa_bytes = b64d(envelope["payload"].as_str().unwrap());
    assert!(
        openssl_verifies(
            &public,
            &pae("application/vnd.in-toto+json", &vsa_bytes),
            &b64d(envelope["signatures"][0]["sig"].as_str().unwrap())
        ),
        "the VSA's DSSE signature verifies with Ferry's key"
    );
    let vsa: Value = serde_json::from_slice(&vsa_bytes).unwrap();
    assert_eq!(vsa["predicateType"], "https://slsa.dev/verification_summary/v1");
    assert_eq!(vsa["subject"][0]["digest"]["sha256"], world.single.digest.hex());
    assert_eq!(vsa["predicate"]["verificationResult"], "PASSED");
    assert_eq!(
        vsa["predicate"]["verifiedLevels"],
        serde_json::json!(["SLSA_BUILD_LEVEL_1", "FERRY_SIGNATURE_VERIFIED"])
    );
    assert_eq!(
        vsa["predicate"]["resourceUri"],
        format!("{}@{}", world.staging.repository("demo/single"), world.single.digest)
    );
    assert_eq!(vsa["predicate"]["verifier"]["id"], "https://github.com/ferry-promoter/ferry");
    assert_eq!(vsa["predicate"]["ferryChecks"].as_array().unwrap().len(), 3);
    // And as a bundle referrer, once, however often the attester runs.
    let summaries = ferry_testkit::cosign::bundles_in_tag_index(
        &prod,
        "demo/single",
        &world.single.digest,
        "https://slsa.dev/verification_summary/v1",
    )
    .await;
    assert_eq!(summaries.len(), 1);
    ferry_testkit::cosign::verify_bundle(
        &summaries[0],
        &world.single.digest,
        "https://slsa.dev/verification_summary/v1",
        &public,
    )
    .unwrap();
    let layer = &layers[0];
    assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
    assert_eq!(layer["annotations"]["predicateType"], ferry_trust::cosign::PROMOTION_PREDICATE_TYPE);
    let envelope: Value =
        serde_json::from_slice(&prod.get_blob("demo/single", layer["digest"].as_str().unwrap()).await)
            .unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let statement_bytes = b64d(envelope["payload"].as_str().unwrap());
    let signature = b64d(envelope["signatures"][0]["sig"].as_str().unwrap());
    assert!(
        openssl_verifies(&public, &pae("application/vnd.in-toto+json", &statement_bytes), &signature),
        "DSSE PAE signature"
    );
    let statement: Value = serde_json::from_slice(&statement_bytes).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], world.single.digest.hex());
    assert_eq!(statement["subject"][0]["name"], world.prod.repository("demo/single").to_string());
    let predicate = &statement["predicate"];
    assert_eq!(predicate["builder"]["id"], format!("ferry@{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(predicate["triggerEventId"], "event-1");
    assert_eq!(predicate["destinations"].as_array().unwrap().len(), 2);
    assert_eq!(predicate["tags"], serde_json::json!(["2.0"]));
    assert!(predicate["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn replication_to_two_mirrors_is_idempotent_and_never_drops_layers() {
    let world = World::new().await;
    let mirror2 = ferry_testkit::registry::RegistryServer::start().await;
    let mut hosts = world.hosts();
    hosts.push(mirror2.host());
    let registry = client(&hosts, Credentials::none());
    let copier = Copier::new(registry.clone(), CopyOptions::default());
    let (key, _, _) = ferry_key();
    let primary = world.prod.repository("demo/single");
    let digest = world.single.digest;
    sign(&registry, &key, Formats::default(), &primary, digest).await.unwrap();
    attest(
        &registry,
        &key,
        Formats::default(),
        &Promotion {
            source: world.staging.repository("demo/single"),
            digest,
            destinations: vec![PromotedTo { repository: primary.clone(), tags: vec![] }],
            origin: None,
            trigger_event_id: None,
            verification: None,
            timestamp: now_rfc3339(),
        },
        None,
    )
    .await
    .unwrap();
    // The image itself must be at the mirrors first (the copier's job).
    for m in [&world.mirror, &mirror2] {
        copier
            .copy(&ferry_copy::Job {
                source: primary.clone(),
                digest,
                destination: m.repository("demo/single"),
                tags: vec![],
                known_absent: false,
            })
            .await
            .manifest
            .unwrap();
    }
    let prod = Seeder::new(&world.prod);
    let (sig, _) = artifact(&prod, "demo/single", &digest, "sig").await.unwrap();
    let (att, _) = artifact(&prod, "demo/single", &digest, "att").await.unwrap();
    for m in [&world.mirror, &mirror2] {
        let done =
            replicate_all(&copier, &primary, &m.repository("demo/single"), &digest, false).await.unwrap();
        assert_eq!(
            done,
            vec![
                (ArtifactKind::Signature, Replicated::Copied),
                (ArtifactKind::Attestation, Replicated::Copied),
                (ArtifactKind::Sbom, Replicated::NothingToCopy)
            ]
        );
        let seeder = Seeder::new(m);
        assert_eq!(
            artifact(&seeder, "demo/single", &digest, "sig").await.unwrap().0,
            sig,
            "byte-identical .sig"
        );
        assert_eq!(
            artifact(&seeder, "demo/single", &digest, "att").await.unwrap().0,
            att,
            "byte-identical .att"
        );
        let again =
            replicate_all(&copier, &primary, &m.repository("demo/single"), &digest, false).await.unwrap();
        assert!(
            again.iter().all(|(_, r)| matches!(r, Replicated::AlreadyThere | Replicated::NothingToCopy)),
            "{again:?}"
        );
    }
    // A mirror holding a layer the primary lacks is merged into, not replaced.
    let mirror_seeder = Seeder::new(&mirror2);
    let (mirror_key, _, _) = ferry_key();
    sign(&registry, &mirror_key, Formats::default(), &mirror2.repository("demo/single"), digest)
        .await
        .unwrap();
    let (key2, _, _) = ferry_key();
    sign(&registry, &key2, Formats::default(), &primary, digest).await.unwrap();
    let outcome = replicate(
        &copier,
        &primary,
        &mirror2.repository("demo/single"),
        &digest,
        ArtifactKind::Signature,
        false,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Replicated::Merged);
    let (_, merged) = artifact(&mirror_seeder, "demo/single", &digest, "sig").await.unwrap();
    assert_eq!(merged["layers"].as_array().unwrap().len(), 3, "the mirror's own layer and the primary's two");
    // The first mirror, a strict subset of the primary, is replaced by the primary's manifest.
    let outcome = replicate(
        &copier,
        &primary,
        &world.mirror.repository("demo/single"),
        &digest,
        ArtifactKind::Signature,
        false,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Replicated::Replaced);
}

#[tokio::test]
async fn kms_signing_through_localstack() {
    let sdk = ferry_testkit::localstack::sdk_config().await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let created = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let key_id = created.key_metadata().unwrap().key_id().to_owned();
    let key = SigningKey::from_kms(kms, key_id).await.unwrap();
    let world = World::new().await;
    let registry = client(&world.hosts(), Credentials::none());
    let repo = world.prod.repository("demo/single");
    let digest = Seeder::new(&world.prod).tag_digest("demo/single", "2.0").await.unwrap();
    sign(&registry, &key, Formats::default(), &repo, digest).await.unwrap();
    let prod = Seeder::new(&world.prod);
    let (_, manifest) = artifact(&prod, "demo/single", &digest, "sig").await.unwrap();
    let layer = &manifest["layers"][0];
    let payload = prod.get_blob("demo/single", layer["digest"].as_str().unwrap()).await;
    let signature = b64d(layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap());
    assert!(
        openssl_verifies(key.public_key_pem(), &payload, &signature),
        "the KMS signature verifies with its public key"
    );
    let again = sign(&registry, &key, Formats::default(), &repo, digest).await.unwrap();
    assert_eq!(again.already, vec![digest], "a KMS key is also idempotent");
}

#[tokio::test]
async fn a_tampered_signature_fails_verification() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let key = TestKey::generate();
    let digest = world.single.digest;
    sign_image(&stage, "demo/single", &digest, "x", &key).await;
    // Replace the .sig with one whose payload was changed after signing.
    let (_, manifest) = artifact(&stage, "demo/single", &digest, "sig").await.unwrap();
    let layer = &manifest["layers"][0];
    let mut payload = stage.get_blob("demo/single", layer["digest"].as_str().unwrap()).await;
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap().to_owned();
    payload.extend_from_slice(b" ");
    let payload_digest = stage.blob("demo/single", &payload).await;
    let mut tampered = manifest.clone();
    tampered["layers"][0]["digest"] = Value::String(payload_digest.to_string());
    tampered["layers"][0]["size"] = Value::from(payload.len());
    tampered["layers"][0]["annotations"] =
        serde_json::json!({"dev.cosignproject.cosign/signature": signature});
    stage
        .manifest(
            "demo/single",
            &format!("{}.sig", digest.tag_form()),
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&tampered).unwrap(),
        )
        .await;
    let registry = client(&world.hosts(), Credentials::none());
    let request = verify::Request {
        source: world.staging.repository("demo/single"),
        digest,
        source_tag: None,
        destination_problems: vec![],
    };
    let policy = SourcePolicy {
        signatures: Requirement::IfPresent,
        signature_keys: vec![VerificationKey::from_pem("staging", key.public_pem().as_bytes()).unwrap()],
        ..Default::default()
    };
    let report = verify::decide(&request, &verify::gather(&registry, &request, &policy).await, &policy);
    let check = report.checks.iter().find(|c| c.name == "signature").unwrap();
    assert_eq!(check.status, Status::Fail, "{}", check.reason);
    assert!(check.reason.contains("does not verify"), "{}", check.reason);
}

/// Used by the end-to-end test below and by other modules.
pub(crate) fn provenance_v1(repository: &str) -> Value {
    serde_json::json!({
        "buildDefinition": {"buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                            "externalParameters": {"workflow": {"repository": repository, "path": ".github/workflows/release.yml"}}},
        "runDetails": {"builder": {"id": BUILDER}}
    })
}

pub(crate) const BUILDER: &str = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0";

#[tokio::test]
async fn promote_confirm_runs_the_whole_chain_and_is_idempotent() {
    let world = World::new().await;
    let mirror2 = ferry_testkit::registry::RegistryServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Staging: demo/app:1.0 signed and attested by the build, with a clean vuln report.
    let staging_key = TestKey::generate();
    let stage = Seeder::new(&world.staging);
    let staging_repo = world.staging.repository("demo/app").to_string();
    sign_image(&stage, "demo/app", &world.index.digest, &staging_repo, &staging_key).await;
    attest_image(
        &stage,
        "demo/app",
        &world.index.digest,
        "https://slsa.dev/provenance/v1",
        provenance_v1("https://github.com/acme/app"),
        &staging_key,
    )
    .await;
    std::fs::write(dir.path().join("staging.pub"), staging_key.public_pem()).unwrap();
    // And, as cosign v3 writes them, OCI referrers: a bundle signature and a bundle provenance
    // of the index, an SBOM of the index, and an SBOM of one child. Built by the testkit.
    let index_referrers = [
        ferry_testkit::cosign::bundle_referrer(
            &stage,
            "demo/app",
            &world.index,
            ferry_testkit::cosign::COSIGN_SIGN_PREDICATE,
            serde_json::json!({}),
            &staging_key,
        )
        .await,
        ferry_testkit::cosign::bundle_referrer(
            &stage,
            "demo/app",
            &world.index,
            "https://slsa.dev/provenance/v1",
            provenance_v1("https://github.com/acme/app"),
            &staging_key,
        )
        .await,
        stage
            .referrer(
                "demo/app",
                &world.index,
                "application/spdx+json",
                b"{\"spdxVersion\":\"SPDX-2.3\"}",
                &[],
            )
            .await,
    ];
    let child_sbom = stage
        .referrer("demo/app", &world.index.children[0], "application/spdx+json", b"{\"child\":true}", &[])
        .await;
    // A type the policy keeps at staging (`referrer-types.deny`).
    let internal = stage
        .referrer("demo/app", &world.index, "application/vnd.example.internal-report+json", b"{}", &[])
        .await;
    // The build's own tag indexes, as cosign maintains them on a registry without the API.
    for referrer in index_referrers.iter().chain([&internal]) {
        stage.list_referrer("demo/app", &world.index.digest, referrer).await;
    }
    stage.list_referrer("demo/app", &world.index.children[0].digest, &child_sbom).await;
    let public = write_ferry_key(dir.path());
    // Manifests: demo/app:1.0 from staging to prod (primary), mirror and mirror2.
    let manifests = dir.path().join("manifests");
    ferry_testkit::write_thin_manifest(
        &manifests,
        "a",
        &world.staging.host(),
        &[world.prod.host(), world.mirror.host(), mirror2.host()],
        &format!("- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", world.index.digest),
    )
    .unwrap();
    let hosts: Vec<String> = [world.staging.host(), world.prod.host(), world.mirror.host(), mirror2.host()]
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  insecure: [{}]\n  trusted-sources: [\"{}\"]\nsigning:\n  key: ferry.key\ntrust:\n  sources:\n  \
             - registry: \"{}\"\n    signatures: required\n    keys: [staging.pub]\n    provenance: required\n    provenance-keys: [staging.pub]\n    \
               builders: [\"{BUILDER}\"]\n    source-repository: \"^https://github.com/acme/\"\n    \
               referrer-types:\n      deny: [\"application/vnd.example.internal-report+json\"]\n{}",
            hosts.join(", "),
            world.staging.host(),
            world.staging.host(),
            [world.prod.host(), world.mirror.host(), mirror2.host()]
                .iter()
                .map(|h| format!("  - registry: \"{h}\"\n    signatures: required\n    keys: [ferry.pub]\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    let ferry = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::ferry_bin())
            .args(args)
            .args(["--config", config.to_str().unwrap()])
            .env("COSIGN_PASSWORD", "test-password")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = ferry(&[
        "promote",
        "--confirm",
        "--thin-manifest-dir",
        manifests.to_str().unwrap(),
        "--progress",
        "never",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("verify signature        pass"), "{stdout}");
    assert!(stdout.contains("verify provenance       pass"), "{stdout}");

    let snapshot = || async {
        let mut all = BTreeMap::new();
        for (name, server) in [("prod", &world.prod), ("mirror", &world.mirror), ("mirror2", &mirror2)] {
            let seeder = Seeder::new(server);
            for suffix in ["sig", "att"] {
                all.insert(
                    format!("{name}.{suffix}"),
                    artifact(&seeder, "demo/app", &world.index.digest, suffix).await.map(|a| a.0),
                );
            }
            all.insert(
                format!("{name}.referrers"),
                seeder.tag_digest("demo/app", &world.index.digest.tag_form()).await,
            );
        }
        all
    };
    let first = snapshot().await;
    assert!(first.values().all(Option::is_some), "{first:?}");
    // Every referrer arrived at prod and both mirrors, byte-identical, and listed in the
    // subject's referrers index there.
    for server in [&world.prod, &world.mirror, &mirror2] {
        let seeder = Seeder::new(server);
        for (subject, referrer) in index_referrers
            .iter()
            .map(|r| (&world.index.digest, r))
            .chain(std::iter::once((&world.index.children[0].digest, &child_sbom)))
        {
            let bytes = seeder.get_manifest("demo/app", &referrer.digest.to_string()).await;
            assert_eq!(
                bytes.as_deref(),
                Some(referrer.bytes.as_slice()),
                "{}: {}",
                server.host(),
                referrer.digest
            );
            let index: Value =
                serde_json::from_slice(&seeder.get_manifest("demo/app", &subject.tag_form()).await.unwrap())
                    .unwrap();
            assert!(
                index["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["digest"] == referrer.digest.to_string()),
                "{}: {subject} lists {}",
                server.host(),
                referrer.digest
            );
        }
        assert_eq!(
            seeder.get_manifest("demo/app", &internal.digest.to_string()).await,
            None,
            "{}: a denied referrer type stays at staging",
            server.host()
        );
        // Ferry's own signature and promotion attestation as bundles too (cosign v3's format),
        // for the index and each child, checked with openssl.
        for digest in
            std::iter::once(&world.index.digest).chain(world.index.children.iter().map(|c| &c.digest))
        {
            assert!(
                ferry_testkit::cosign::has_bundle_signature(&seeder, "demo/app", digest, &public).await,
                "{}: Ferry's bundle signature of {digest}",
                server.host()
            );
        }
        let attestations = ferry_testkit::cosign::bundles_in_tag_index(
            &seeder,
            "demo/app",
            &world.index.digest,
            ferry_trust::cosign::PROMOTION_PREDICATE_TYPE,
        )
        .await;
        assert_eq!(attestations.len(), 1, "{}: one promotion attestation bundle", server.host());
        ferry_testkit::cosign::verify_bundle(
            &attestations[0],
            &world.index.digest,
            ferry_trust::cosign::PROMOTION_PREDICATE_TYPE,
            &public,
        )
        .unwrap();
        // The build's bundle signature still verifies there, with an independent check.
        let bundle_manifest: Value = serde_json::from_slice(
            &seeder.get_manifest("demo/app", &index_referrers[0].digest.to_string()).await.unwrap(),
        )
        .unwrap();
        let bundle =
            seeder.get_blob("demo/app", bundle_manifest["layers"][0]["digest"].as_str().unwrap()).await;
        ferry_testkit::cosign::verify_bundle(
            &bundle,
            &world.index.digest,
            ferry_testkit::cosign::COSIGN_SIGN_PREDICATE,
            &staging_key.public_pem(),
        )
        .unwrap();
    }
    assert_eq!(first["prod.sig"], first["mirror.sig"]);
    assert_eq!(first["prod.att"], first["mirror2.att"]);
    let (_, att) = artifact(&Seeder::new(&world.prod), "demo/app", &world.index.digest, "att").await.unwrap();
    let predicates: Vec<&str> = att["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["annotations"]["predicateType"].as_str().unwrap())
        .collect();
    assert_eq!(
        predicates,
        [
            "https://slsa.dev/provenance/v1",
            ferry_trust::cosign::PROMOTION_PREDICATE_TYPE,
            ferry_trust::attest::VSA_PREDICATE_TYPE
        ],
        "staging's provenance came along from a trusted source; one promotion attestation and one verification summary"
    );

    // `ferry verify` passes on each mirror with Ferry's key.
    for server in [&world.mirror, &mirror2] {
        let reference = format!("{}/demo/app@{}", server.host(), world.index.digest);
        let (code, stdout, stderr) = ferry(&["verify", &reference]);
        assert_eq!(code, Some(0), "{reference}: {stdout}{stderr}");
    }
    // Children of the index are signed too, at prod and at every mirror (checked with openssl,
    // not with Ferry's verifier).
    for server in [&world.prod, &world.mirror, &mirror2] {
        for child in &world.index.children {
            ferry_testkit::cosign::verify_signature(&Seeder::new(server), "demo/app", &child.digest, &public)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", server.host()));
        }
    }

    // A second run changes nothing.
    let (code, stdout, stderr) = ferry(&[
        "promote",
        "--confirm",
        "--thin-manifest-dir",
        manifests.to_str().unwrap(),
        "--progress",
        "never",
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(snapshot().await, first, "every .sig/.att digest is unchanged");

    // Replicate-signatures dry run: nothing to do.
    let (code, stdout, _) =
        ferry(&["replicate-signatures", "--thin-manifest-dir", manifests.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(!stdout.contains("Copied") && stdout.contains("AlreadyThere"), "{stdout}");
}

#[tokio::test]
async fn signatures_from_untrusted_sources_are_never_copied() {
    let world = World::new().await;
    let registry = client(&world.hosts(), Credentials::none());
    let copier = Copier::new(registry.clone(), CopyOptions::default());
    // "Docker Hub" (the mirror registry plays it) signs its own image.
    let hub = Seeder::new(&world.mirror);
    let image = hub
        .image("rancher/hubonly", Some("v1.0.0"), &ferry_testkit::seed::ImageSpec::small("amd64", 7, 1))
        .await;
    sign_image(&hub, "rancher/hubonly", &image.digest, "docker.io/rancher/hubonly", &TestKey::generate())
        .await;
    let sbom = hub.referrer("rancher/hubonly", &image, "application/spdx+json", b"{}", &[]).await;
    hub.list_referrer("rancher/hubonly", &image.digest, &sbom).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dockerToPrime.yaml"), "rancher/hubonly:\n  - v1.0.0\n").unwrap();
    std::fs::write(
        dir.path().join("charts.yaml"),
        format!(
            "staging: {}\ndocker-hub: {}\nprime: {}\ndocker-to-prime: dockerToPrime.yaml\n",
            world.staging.host(),
            world.mirror.host(),
            world.prod.host()
        ),
    )
    .unwrap();
    let desired = ferry_manifests::load(
        &[ferry_manifests::Input::ChartsSync(dir.path().join("charts.yaml"))],
        &Default::default(),
    )
    .unwrap()
    .state;
    let plan = ferry_plan::plan(&desired, &ferry_plan::gather(&registry, &desired, Default::default()).await);
    assert!(!plan.edges[0].source_trusted);
    let (key, _, _) = ferry_key();
    let options = ferry_promotion::chain::TrustOptions { key: Some(key), ..Default::default() };
    let report = ferry_promotion::chain::run(&copier, &plan, &options).await;
    assert!(report.digests[0].from_source.is_none(), "no artifact is taken from an untrusted source");
    let (_, sig) =
        artifact(&Seeder::new(&world.prod), "rancher/hubonly", &image.digest, "sig").await.unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 1, "only Ferry's own signature, not Docker Hub's");
    let prod = world.prod.repository("rancher/hubonly");
    let at_prod = ferry_registry::Registry::referrers(&registry, &prod, &image.digest, None).await.unwrap();
    assert!(
        at_prod.iter().all(|r| {
            r.artifact_type.as_deref() == Some(ferry_trust::bundle::BUNDLE_MEDIA_TYPE)
                && r.digest != sbom.digest
        }),
        "no referrer is taken from an untrusted source; only Ferry's own bundles are there: {at_prod:?}"
    );
    assert_eq!(
        Seeder::new(&world.prod).get_manifest("rancher/hubonly", &sbom.digest.to_string()).await,
        None
    );
}

/// cosign v3 signatures (bundle referrers only, no `.sig`) are verified with the policy's keys:
/// the right key passes and `ferry verify` lists the bundle; a bundle signed with another key
/// fails, and `promote --confirm` copies that image nowhere.
#[tokio::test]
async fn bundle_signatures_are_verified_and_a_wrong_key_is_rejected() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let staging_key = TestKey::generate();
    let ok =
        stage.image("demo/v3ok", Some("1.0"), &ferry_testkit::seed::ImageSpec::small("amd64", 901, 1)).await;
    let bad =
        stage.image("demo/v3bad", Some("1.0"), &ferry_testkit::seed::ImageSpec::small("amd64", 902, 1)).await;
    for (repo, image, key) in [("demo/v3ok", &ok, &staging_key), ("demo/v3bad", &bad, &TestKey::generate())] {
        let referrer = ferry_testkit::cosign::bundle_referrer(
            &stage,
            repo,
            image,
            ferry_testkit::cosign::COSIGN_SIGN_PREDICATE,
            serde_json::json!({}),
            key,
        )
        .await;
        stage.list_referrer(repo, &image.digest, &referrer).await;
    }
    let config = crate::support::TrustConfig::new(
        &world,
        "    signatures: required\n    keys: [staging.pub]\n",
        &[("staging.pub", &staging_key.public_pem())],
    );
    let ferry = |args: &[&str]| config.ferry(args);
    let (code, stdout, stderr) =
        ferry(&["verify", &format!("{}/demo/v3ok@{}", world.staging.host(), ok.digest)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("signed with staging.pub (bundle referrer sha256:"), "{stdout}");
    assert!(stdout.contains("Sigstore bundle (https://sigstore.dev/cosign/sign/v1) as referrer"), "{stdout}");

    let (code, stdout, stderr) =
        ferry(&["verify", &format!("{}/demo/v3bad@{}", world.staging.host(), bad.digest)]);
    assert_eq!(code, Some(7), "{stdout}{stderr}");
    assert!(stdout.contains("a signature is present but none verifies"), "{stdout}");

    config.promote_only_the_first(&world, ("demo/v3ok", &ok.digest), ("demo/v3bad", &bad.digest)).await;
}

/// `signing.formats: [bundle]`, the cosign-v4 path: `ferry promote` signs and attests at prod
/// with Sigstore bundle referrers only (no `.sig` or `.att` tag anywhere), the mirror receives
/// them, and `ferry status` counts the promotion complete by its bundles. With the default
/// `[legacy, bundle]`, the same status finds the legacy tags missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bundles_only_nothing_legacy_is_written_and_status_counts_bundles() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    write_ferry_key(dir.path());
    let manifests = dir.path().join("manifests");
    ferry_testkit::write_thin_manifest(
        &manifests,
        "a",
        &world.staging.host(),
        &[world.prod.host(), world.mirror.host()],
        &format!("- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", world.index.digest),
    )
    .unwrap();
    let hosts: Vec<String> = [world.staging.host(), world.prod.host(), world.mirror.host()]
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect();
    let config = dir.path().join("ferry.yaml");
    let write_config = |formats: &str| {
        std::fs::write(
            &config,
            format!(
                "registries:\n  insecure: [{}]\nsigning:\n  key: ferry.key\n  formats: {formats}\n",
                hosts.join(", ")
            ),
        )
        .unwrap();
    };
    let ferry = |args: &[&str]| {
        let out = std::process::Command::new(crate::support::ferry_bin())
            .args(args)
            .args(["--thin-manifest-dir", manifests.to_str().unwrap(), "--config", config.to_str().unwrap()])
            .env("COSIGN_PASSWORD", "test-password")
            .output()
            .unwrap();
        ferry_testkit::outcome(&out)
    };
    write_config("[bundle]");
    let (code, stdout, stderr) = ferry(&["promote", "--confirm", "--progress", "never"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");

    let targets: Vec<Digest> =
        std::iter::once(world.index.digest).chain(world.index.children.iter().map(|c| c.digest)).collect();
    for server in [&world.prod, &world.mirror] {
        let seeder = Seeder::new(server);
        for target in &targets {
            for suffix in ["sig", "att"] {
                assert_eq!(
                    artifact(&seeder, "demo/app", target, suffix).await,
                    None,
                    "{}: no .{suffix}",
                    server.host()
                );
            }
        }
        let registry = client(&[server.host()], Credentials::none());
        let predicates = |list: Vec<ferry_registry::Referrer>| -> BTreeSet<String> {
            list.iter()
                .filter_map(|r| r.annotations.get(ferry_trust::bundle::PREDICATE_TYPE_ANNOTATION).cloned())
                .collect()
        };
        let repo = server.repository("demo/app");
        let at_image = predicates(registry.referrers(&repo, &world.index.digest, None).await.unwrap());
        assert!(
            at_image.contains(ferry_trust::bundle::COSIGN_SIGN_PREDICATE_TYPE),
            "{}: {at_image:?}",
            server.host()
        );
        assert!(
            at_image.contains(ferry_trust::cosign::PROMOTION_PREDICATE_TYPE),
            "{}: {at_image:?}",
            server.host()
        );
        for child in &world.index.children {
            let at_child = predicates(registry.referrers(&repo, &child.digest, None).await.unwrap());
            assert!(
                at_child.contains(ferry_trust::bundle::COSIGN_SIGN_PREDICATE_TYPE),
                "{}: a child's signature",
                server.host()
            );
        }
    }
    // Fast (the listed referrers tags count) and deep (the bundles' predicate types are read).
    for args in [&["status"][..], &["status", "--deep"]] {
        let (code, stdout, stderr) = ferry(args);
        assert_eq!(code, Some(0), "{args:?}: complete by its bundles: {stdout}\n{stderr}");
    }
    write_config("[legacy, bundle]");
    let (code, stdout, stderr) = ferry(&["status"]);
    assert_eq!(code, Some(5), "the legacy tags are missing: {stdout}\n{stderr}");
}

/// The copy step's read-back travels to the replicator as a hint (`ReplicateMessage::copied`):
/// on a first delivery the replicator does not look the image up at the mirror again; a
/// redelivered message ignores the hint and looks up, and a mirror without the image gets
/// nothing.
#[tokio::test]
async fn the_replicator_trusts_the_copy_s_hint_only_on_a_first_delivery() {
    use ferry_messages::ReplicateMessage;
    use ferry_promotion::steps;
    let world = World::new().await;
    let registry = client(&world.hosts(), Credentials::none());
    let copier = Copier::new(registry.clone(), CopyOptions::default());
    let (key, _, _) = ferry_key();
    let digest = world.single.digest;
    let primary = world.prod.repository("demo/single");
    sign(&registry, &key, Formats::default(), &primary, digest).await.unwrap();
    // The mirror holds the image: the copy step has just written it.
    let job = ferry_copy::Job {
        source: primary.clone(),
        digest,
        destination: world.mirror.repository("demo/single"),
        tags: vec![],
        known_absent: false,
    };
    copier.copy(&job).await.manifest.unwrap();
    let message = |repo: &str, copied| ReplicateMessage {
        primary: primary.clone(),
        mirror: world.mirror.repository(repo),
        digest,
        copied,
    };
    let head_of_image = |from: usize| {
        let image = format!("/manifests/{digest}");
        world.mirror.access_log()[from..]
            .iter()
            .filter(|l| l.method == "HEAD" && l.path.ends_with(&image))
            .count()
    };
    let mark = world.mirror.access_log().len();
    let step = steps::replicate(&copier, &message("demo/single", true), false).await;
    assert!(step.failure.is_none(), "{:?}", step.failure);
    assert!(step.done.wrote() > 0, "the signature was carried: {:?}", step.done);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the registry logs after answering
    assert_eq!(head_of_image(mark), 0, "the hint replaced the look-up of the image");

    // Redelivered, the same hint is not trusted: the image is looked up, and a mirror
    // repository that lacks it gets nothing.
    for (copied, redelivered) in [(true, true), (false, false)] {
        let mark = world.mirror.access_log().len();
        let step = steps::replicate(&copier, &message("demo/elsewhere", copied), redelivered).await;
        assert!(
            matches!(step.failure, Some(ferry_promotion::PromotionError::NotAtMirror { .. })),
            "copied {copied}, redelivered {redelivered}: {:?}",
            step.failure
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(head_of_image(mark), 1, "looked up once");
        let seeder = Seeder::new(&world.mirror);
        assert_eq!(seeder.tag_digest("demo/elsewhere", &format!("{}.sig", digest.tag_form())).await, None);
    }
}
