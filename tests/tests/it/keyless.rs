//! Keyless verification: bundles signed by a fake Sigstore instance made in the test (its own
//! CA, CT log and Rekor log, `ferry_testkit::keyless`), checked by Ferry against the trusted
//! root the test wrote, a certificate identity and an OIDC issuer.

use ferry_model::{Digest, Repository};
use ferry_testkit::keyless::{FakeSigstore, Faults};
use ferry_testkit::seed::{ImageSpec, Seeder};
use ferry_testkit::world::World;
use ferry_trust::keyless::{KeylessPolicy, Matcher, TrustedRoot};
use ferry_trust::policy::{Requirement, SourcePolicy};
use ferry_trust::verify::{self, Facts, FetchedBundle, Request, Status};
use serde_json::json;

const SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const WORKFLOW: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0";
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const GENERATOR: &str = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0";

fn digest(n: u8) -> Digest {
    Digest::of(&[n])
}

fn facts(bundles: Vec<Vec<u8>>, predicate_type: &str) -> Facts {
    Facts {
        manifest: Ok(Vec::new()),
        tag_now: None,
        signatures: Ok(None),
        attestations: Ok(None),
        bundles: Ok(bundles
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| FetchedBundle {
                referrer: Digest::of(&[200, i as u8]),
                predicate_type: Some(predicate_type.to_owned()),
                bytes: Ok(bytes),
            })
            .collect()),
    }
}

fn policy(root: &FakeSigstore, identity: Matcher, issuer: Matcher) -> SourcePolicy {
    SourcePolicy {
        signatures: Requirement::Required,
        keyless: Some(KeylessPolicy {
            root: TrustedRoot::from_json(&root.trusted_root(), "trusted_root.json").unwrap(),
            identity,
            issuer,
        }),
        ..Default::default()
    }
}

fn request(digest: Digest) -> Request {
    Request {
        source: Repository::parse("staging.example/acme/app").unwrap(),
        digest,
        source_tag: None,
        destination_problems: Vec::new(),
    }
}

/// The check named `name` in the report of deciding `facts` under `policy`.
fn decided(policy: &SourcePolicy, facts: &Facts, digest: Digest, name: &str) -> (Status, String) {
    let report = verify::decide(&request(digest), facts, policy);
    let check = report.checks.iter().find(|c| c.name == name).unwrap();
    (check.status, check.reason.clone())
}

#[test]
fn keyless_signatures_pass_only_for_the_right_identity_issuer_root_and_evidence() {
    let sigstore = FakeSigstore::new();
    let other = FakeSigstore::new();
    let image = digest(1);
    let exact = |s: &str| Matcher::Exact(s.to_owned());
    let good = policy(&sigstore, exact(WORKFLOW), exact(GITHUB));
    let sign = |identity: &str, issuer: &str, faults: Faults| {
        sigstore.bundle(&image, SIGN, json!({}), identity, issuer, faults)
    };
    let ok = Faults::default();
    let cases: Vec<(&str, SourcePolicy, Vec<u8>, Digest, Status, &str)> = vec![
        (
            "the right identity and issuer",
            good.clone(),
            sign(WORKFLOW, GITHUB, ok),
            image,
            Status::Pass,
            WORKFLOW,
        ),
        (
            "an email identity",
            policy(&sigstore, exact("release@acme.example"), exact("https://accounts.google.com")),
            sign("release@acme.example", "https://accounts.google.com", ok),
            image,
            Status::Pass,
            "release@acme.example",
        ),
        (
            "an anchored regexp",
            policy(&sigstore, Matcher::regexp("https://github.com/acme/.*").unwrap(), exact(GITHUB)),
            sign(WORKFLOW, GITHUB, ok),
            image,
            Status::Pass,
            WORKFLOW,
        ),
        (
            "a regexp matching only a substring",
            policy(&sigstore, Matcher::regexp("https://github.com/acme/").unwrap(), exact(GITHUB)),
            sign(WORKFLOW, GITHUB, ok),
            image,
            Status::Fail,
            "does not match /^(?:https://github.com/acme/)$/",
        ),
        (
            "a wrong identity",
            good.clone(),
            sign("https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0", GITHUB, ok),
            image,
            Status::Fail,
            "certificate identity \"https://github.com/evil/app",
        ),
        (
            "an identity that is only a substring of the required one",
            good.clone(),
            sign("https://github.com/acme/app", GITHUB, ok),
            image,
            Status::Fail,
            "certificate identity \"https://github.com/acme/app\" does not match",
        ),
        (
            "a wrong issuer",
            good.clone(),
            sign(WORKFLOW, "https://accounts.google.com", ok),
            image,
            Status::Fail,
            "certificate OIDC issuer \"https://accounts.google.com\" does not match",
        ),
        (
            "another trust root",
            good.clone(),
            other.bundle(&image, SIGN, json!({}), WORKFLOW, GITHUB, ok),
            image,
            Status::Fail,
            "against trusted_root.json failed: invalid inclusion promise: No log key valid",
        ),
        (
            "a certificate expired before the integrated time",
            good.clone(),
            sign(WORKFLOW, GITHUB, Faults { expired_before_log: true, ..ok }),
            image,
            Status::Fail,
            "certificate chain validation failed: CertExpired",
        ),
        (
            "a missing SCT",
            good.clone(),
            sign(WORKFLOW, GITHUB, Faults { no_sct: true, ..ok }),
            image,
            Status::Fail,
            "certificate is missing SCT extension",
        ),
        (
            "a missing tlog entry",
            good.clone(),
            sign(WORKFLOW, GITHUB, Faults { no_tlog: true, ..ok }),
            image,
            Status::Fail,
            "bundle must have an inclusion proof",
        ),
        (
            "a tampered tlog entry",
            good.clone(),
            sign(WORKFLOW, GITHUB, Faults { tampered_tlog: true, ..ok }),
            image,
            Status::Fail,
            "SET verification failed",
        ),
        (
            "a tampered payload",
            good.clone(),
            sign(WORKFLOW, GITHUB, Faults { tampered_payload: true, ..ok }),
            image,
            Status::Fail,
            "DSSE signature verification failed",
        ),
        (
            "a subject of another digest",
            good.clone(),
            sigstore.bundle(&digest(2), SIGN, json!({}), WORKFLOW, GITHUB, ok),
            image,
            Status::Fail,
            "artifact hash does not match any subject",
        ),
        (
            "a keyless bundle where only keys are configured",
            SourcePolicy {
                signatures: Requirement::Required,
                signature_keys: vec![
                    ferry_trust::keys::VerificationKey::from_pem(
                        "staging.pub",
                        ferry_testkit::cosign::TestKey::generate().public_pem().as_bytes(),
                    )
                    .unwrap(),
                ],
                ..Default::default()
            },
            sign(WORKFLOW, GITHUB, ok),
            image,
            Status::Fail,
            "signed keylessly (a Fulcio certificate), and this source has no trusted-root",
        ),
    ];
    let mut failures = Vec::new();
    for (name, policy, bundle, image, status, reason) in cases {
        let (got, why) = decided(&policy, &facts(vec![bundle], SIGN), image, "signature");
        if got != status || !why.contains(reason) {
            failures.push(format!("{name}: expected {status:?} with {reason:?}, got {got:?}: {why}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Keylessly signed provenance: the SLSA generator signs as itself, so an allowed builder is an
/// allowed signer; then the builder and source repository are checked as for keyed provenance.
#[test]
fn keyless_provenance_is_checked_against_builders_and_source_repository() {
    let sigstore = FakeSigstore::new();
    let image = digest(3);
    let provenance = |builder: &str, repository: &str| {
        json!({
            "buildDefinition": {
                "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                "externalParameters": {"workflow": {"repository": repository, "path": ".github/workflows/release.yml", "ref": "refs/tags/v1.0"}},
            },
            "runDetails": {"builder": {"id": builder}},
        })
    };
    let mut policy =
        policy(&sigstore, Matcher::Exact(WORKFLOW.to_owned()), Matcher::Exact(GITHUB.to_owned()));
    policy.signatures = Requirement::Off;
    policy.provenance = Requirement::Required;
    policy.builders = vec![GENERATOR.to_owned()];
    policy.source_repository = Some(regex::Regex::new("^https://github.com/acme/").unwrap());
    let ok = Faults::default();
    let cases = [
        (
            "signed by the generator, built by it from acme",
            sigstore.bundle(
                &image,
                SLSA_V1,
                provenance(GENERATOR, "https://github.com/acme/app"),
                GENERATOR,
                GITHUB,
                ok,
            ),
            Status::Pass,
            "built by https://github.com/slsa-framework/slsa-github-generator",
        ),
        (
            "signed by the release workflow (actions/attest-build-provenance)",
            sigstore.bundle(
                &image,
                SLSA_V1,
                provenance(GENERATOR, "https://github.com/acme/app"),
                WORKFLOW,
                GITHUB,
                ok,
            ),
            Status::Pass,
            WORKFLOW,
        ),
        (
            "signed by someone else",
            sigstore.bundle(
                &image,
                SLSA_V1,
                provenance(GENERATOR, "https://github.com/acme/app"),
                "https://github.com/evil/x/.github/workflows/a.yml@refs/heads/main",
                GITHUB,
                ok,
            ),
            Status::Fail,
            "nor any of",
        ),
        (
            "from another source repository",
            sigstore.bundle(
                &image,
                SLSA_V1,
                provenance(GENERATOR, "https://github.com/evil/app"),
                GENERATOR,
                GITHUB,
                ok,
            ),
            Status::Fail,
            "source repository https://github.com/evil/app does not match",
        ),
    ];
    let mut failures = Vec::new();
    for (name, bundle, status, reason) in cases {
        let (got, why) = decided(&policy, &facts(vec![bundle], SLSA_V1), image, "provenance");
        if got != status || !why.contains(reason) {
            failures.push(format!("{name}: expected {status:?} with {reason:?}, got {got:?}: {why}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// End to end through the CLI, with the README's config keys: `ferry verify` names who signed;
/// `promote --confirm` promotes the right identity's image and copies the other nowhere.
#[tokio::test]
async fn keyless_images_are_promoted_only_for_the_configured_identity() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let sigstore = FakeSigstore::new();
    let ok = stage.image("keyless/ok", Some("1.0"), &ImageSpec::small("amd64", 931, 1)).await;
    let bad = stage.image("keyless/bad", Some("1.0"), &ImageSpec::small("amd64", 932, 1)).await;
    for (repo, image, identity) in [
        ("keyless/ok", &ok, WORKFLOW),
        ("keyless/bad", &bad, "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0"),
    ] {
        let bundle = sigstore.bundle(&image.digest, SIGN, json!({}), identity, GITHUB, Faults::default());
        let referrer = ferry_testkit::cosign::attach_bundle(&stage, repo, image, &bundle, SIGN).await;
        stage.list_referrer(repo, &image.digest, &referrer).await;
    }
    let config = crate::support::TrustConfig::new(
        &world,
        &format!(
            "    signatures: required\n    trusted-root: trusted_root.json\n    certificate-identity-regexp: \"https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v.*\"\n    certificate-oidc-issuer: {GITHUB}\n"
        ),
        &[("trusted_root.json", &sigstore.trusted_root())],
    );
    let ferry = |args: &[&str]| config.ferry(args);
    let (code, stdout, stderr) =
        ferry(&["verify", &format!("{}/keyless/ok@{}", world.staging.host(), ok.digest)]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("signed with certificate of {WORKFLOW} issued by {GITHUB} (trusted root ")),
        "{stdout}"
    );
    let (code, stdout, stderr) =
        ferry(&["verify", &format!("{}/keyless/bad@{}", world.staging.host(), bad.digest)]);
    assert_eq!(code, Some(7), "{stdout}{stderr}");
    assert!(stdout.contains("certificate identity \"https://github.com/evil/app"), "{stdout}");

    config.promote_only_the_first(&world, ("keyless/ok", &ok.digest), ("keyless/bad", &bad.digest)).await;
}

/// Legacy keyless signatures and attestations (cosign before v3): `.sig` and `.att` layers with
/// certificate, chain and Rekor bundle annotations, verified offline as a bundle v0.1. The right identity passes with the
/// signer named; another identity fails naming it; a `.sig` by the same identity for another
/// digest fails.
#[tokio::test]
async fn legacy_keyless_sig_and_att_layers_are_verified_against_the_trusted_root() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let sigstore = FakeSigstore::new();
    let evil = "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0";
    let images = [
        ("legacy/ok", 941, WORKFLOW, None),
        ("legacy/bad", 942, evil, None),
        ("legacy/other-digest", 943, WORKFLOW, Some(digest(9))),
    ];
    let mut pushed = Vec::new();
    for (repo, seed, identity, signed_digest) in images {
        let image = stage.image(repo, Some("1.0"), &ImageSpec::small("amd64", seed, 1)).await;
        let reference = format!("{}/{repo}", world.staging.host());
        // The `.sig` of this image, whose payload may name another digest.
        let payload_digest = signed_digest.unwrap_or(image.digest);
        let sig =
            sigstore.push_legacy_signature(&stage, repo, &payload_digest, &reference, identity, GITHUB).await;
        if signed_digest.is_some() {
            // Move it under this image's `.sig` tag, as a mix-up or an attack would.
            let bytes = stage.get_manifest(repo, &sig.to_string()).await.unwrap();
            stage
                .manifest(
                    repo,
                    &format!("{}.sig", image.digest.tag_form()),
                    "application/vnd.oci.image.manifest.v1+json",
                    &bytes,
                )
                .await;
        }
        pushed.push(image);
    }
    // SLSA v0.2 provenance as slsa-github-generator's container workflow attaches it with
    // `cosign attest` (keyless, signed as the generator's reusable workflow).
    sigstore
        .push_legacy_attestation(
            &stage,
            "legacy/ok",
            &pushed[0].digest,
            "https://slsa.dev/provenance/v0.2",
            json!({
                "builder": {"id": GENERATOR},
                "buildType": "https://github.com/slsa-framework/slsa-github-generator/container@v1",
                "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/tags/v1.0", "entryPoint": ".github/workflows/release.yml"}},
            }),
            GENERATOR,
            GITHUB,
        )
        .await;
    // The README's GitHub example, with this test's trusted root.
    let config = crate::support::TrustConfig::new(
        &world,
        &format!(
            "    signatures: required\n    trusted-root: trusted_root.json\n    certificate-identity: \"{WORKFLOW}\"\n    certificate-oidc-issuer: {GITHUB}\n    provenance: required\n    builders: [\"{GENERATOR}\"]\n    source-repository: \"^git\\\\+https://github.com/acme/app\"\n"
        ),
        &[("trusted_root.json", &sigstore.trusted_root())],
    );
    let verify = |reference: String| {
        let (code, stdout, stderr) = config.ferry(&["verify", &reference]);
        (code, stdout + &stderr)
    };
    let host = world.staging.host();
    let (code, out) = verify(format!("{host}/legacy/ok@{}", pushed[0].digest));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("signed with certificate of {WORKFLOW} issued by {GITHUB}")), "{out}");
    assert!(out.contains("(.sig)"), "{out}");
    assert!(
        out.contains(&format!(
            "https://slsa.dev/provenance/v0.2 signed with certificate of {GENERATOR} issued by {GITHUB}"
        )),
        "{out}"
    );
    assert!(out.contains("from git+https://github.com/acme/app@refs/tags/v1.0"), "{out}");
    // Each artifact is listed with who signed it.
    assert!(
        out.contains(&format!(
            "legacy attestation (https://slsa.dev/provenance/v0.2) in {host}/legacy/ok:{}.att: verified, signed with certificate of {GENERATOR}",
            pushed[0].digest.tag_form()
        )),
        "{out}"
    );
    let (code, out) = verify(format!("{host}/legacy/bad@{}", pushed[1].digest));
    assert_eq!(code, Some(7), "{out}");
    assert!(out.contains("certificate identity \"https://github.com/evil/app"), "{out}");
    assert!(out.contains(".sig: NOT verified: certificate identity \"https://github.com/evil/app"), "{out}");
    let (code, out) = verify(format!("{host}/legacy/other-digest@{}", pushed[2].digest));
    assert_eq!(code, Some(7), "{out}");
    assert!(out.contains("a verified signature is for sha256:"), "{out}");
}

/// A real keyless bundle from the public-good Sigstore instance (a GitHub Actions workflow's
/// SLSA provenance, logged in Rekor in January 2025), verified offline against the public-good
/// trusted root: the signer's exact identity passes; another identity, another issuer, another
/// subject and the test's own root each fail.
#[test]
fn a_real_public_good_bundle_verifies_offline_against_the_public_good_root() {
    let data = ferry_testkit::data_dir().join("sigstore");
    let bundle = std::fs::read(data.join("github-actions-dsse.sigstore.json")).unwrap();
    let root = TrustedRoot::load(&data.join("public-good-trusted_root.json")).unwrap();
    let subject: Digest =
        "sha256:59ed81ee7a2485c47588ebdbad14764bf722c93438b43fe953a651747bc62ad7".parse().unwrap();
    let identity = "https://github.com/wolfv/sigstore-test/.github/workflows/action.yaml@refs/heads/main";
    let policy = |identity: Matcher, issuer: &str, root: &TrustedRoot| KeylessPolicy {
        root: root.clone(),
        identity,
        issuer: Matcher::Exact(issuer.to_owned()),
    };
    let (statement, signer) = policy(Matcher::Exact(identity.to_owned()), GITHUB, &root)
        .verify_bundle(&bundle, &subject, &[])
        .unwrap();
    assert_eq!(statement.predicate_type, "https://slsa.dev/spec/v1.0/provenance");
    assert_eq!((signer.identity.as_str(), signer.issuer.as_str()), (identity, GITHUB));
    let ours = TrustedRoot::from_json(&FakeSigstore::new().trusted_root(), "the test's root").unwrap();
    let cases = [
        (policy(Matcher::Exact(WORKFLOW.to_owned()), GITHUB, &root), subject, "does not match"),
        (
            policy(Matcher::regexp("https://github.com/wolfv/").unwrap(), GITHUB, &root),
            subject,
            "does not match",
        ),
        (
            policy(Matcher::Exact(identity.to_owned()), "https://accounts.google.com", &root),
            subject,
            "OIDC issuer",
        ),
        (
            policy(Matcher::Exact(identity.to_owned()), GITHUB, &root),
            digest(4),
            "artifact hash does not match",
        ),
        (
            policy(Matcher::Exact(identity.to_owned()), GITHUB, &ours),
            subject,
            "against the test's root failed",
        ),
    ];
    for (policy, subject, reason) in cases {
        let error = policy.verify_bundle(&bundle, &subject, &[]).unwrap_err();
        assert!(error.contains(reason), "{reason}: {error}");
    }
}
