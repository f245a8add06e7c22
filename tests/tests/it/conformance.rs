//! sigstore-conformance's verification cases (vendored in `shared/trust/tests/data`) through
//! `ferry verify-bundle`, as the suite's `test_verify` runs a client: every case once with the
//! artifact as a file and once as its `sha256:` digest, 140 runs. A `_fail` case must exit
//! non-zero; every other case must exit 0.

use std::path::{Path, PathBuf};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/trust/tests/data/sigstore-conformance/test/assets/bundle-verify")
}

/// The command line the suite's client protocol gives for `case`, with the artifact as given.
fn arguments(case: &Path, artifact: String) -> Vec<String> {
    let read = |name: &str| std::fs::read_to_string(case.join(name)).ok().map(|s| s.trim().to_owned());
    let mut args = vec![
        "verify-bundle".to_owned(),
        "--bundle".into(),
        case.join("bundle.sigstore.json").display().to_string(),
    ];
    if case.join("key.pub").exists() {
        args.extend(["--key".into(), case.join("key.pub").display().to_string()]);
    } else {
        args.extend(["--certificate-identity".into(), read("identity").unwrap_or_else(|| IDENTITY.into())]);
        args.extend(["--certificate-oidc-issuer".into(), read("issuer").unwrap_or_else(|| ISSUER.into())]);
    }
    if case.join("trusted_root.json").exists() {
        args.extend(["--trusted-root".into(), case.join("trusted_root.json").display().to_string()]);
    }
    args.push(artifact);
    args
}

#[test]
fn ferry_verify_bundle_passes_sigstore_conformance_s_verification_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(suite())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bundle.sigstore.json").exists())
        .collect();
    cases.sort();
    let (mut runs, mut wrong) = (0, Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let artifact =
            if case.join("artifact").exists() { case.join("artifact") } else { suite().join("a.txt") };
        let digest = ferry_model::Digest::of(&std::fs::read(&artifact).unwrap()).to_string();
        for given in [artifact.display().to_string(), digest] {
            let out = std::process::Command::new(crate::support::ferry_bin())
                .args(arguments(case, given.clone()))
                .env_remove("FERRY_CONFIG")
                .output()
                .unwrap();
            runs += 1;
            let passed = out.status.success();
            if passed == name.ends_with("_fail") || out.status.code().is_none() {
                wrong.push(format!(
                    "{name} ({given}): exit {:?}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert_eq!(runs, 140, "70 cases, as a file and as a digest");
    assert!(
        wrong.is_empty(),
        "{} of {runs} runs disagree with the suite:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Users' own signatures, as published, verified offline by `ferry verify-bundle` against the
/// embedded public-good root with the identity their signer really has (vendored in
/// `tests/data/sigstore`, sources in its README): a GitHub Actions SLSA provenance (DSSE, bundle
/// v0.3), a PyPI release wheel signed in GitHub Actions (message signature, v0.2) and CPython
/// 3.12.5's release tarball signed by its release manager with a Google identity (v0.1, whose
/// inclusion proof has no checkpoint: its signed entry timestamp is verified). Another
/// identity, another issuer and another digest each fail.
#[test]
fn users_real_signatures_verify_offline_with_their_signers_identities() {
    let data = ferry_testkit::data_dir().join("sigstore");
    let wheel = data.join("rfc8785-0.1.2-py3-none-any.whl");
    let cases = [
        (
            "github-actions-dsse.sigstore.json",
            "sha256:59ed81ee7a2485c47588ebdbad14764bf722c93438b43fe953a651747bc62ad7".to_owned(),
            "https://github.com/wolfv/sigstore-test/.github/workflows/action.yaml@refs/heads/main",
            ISSUER,
        ),
        (
            "rfc8785-0.1.2-py3-none-any.whl.sigstore.json",
            wheel.display().to_string(),
            "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
            ISSUER,
        ),
        (
            // python.org publishes this SHA-256 for Python-3.12.5.tgz.
            "Python-3.12.5.tgz.sigstore.json",
            "sha256:38dc4e2c261d49c661196066edbfb70fdb16be4a79cc8220c224dfeb5636d405".to_owned(),
            "thomas@python.org",
            "https://accounts.google.com",
        ),
    ];
    let run = |bundle: &str, artifact: &str, identity: &str, issuer: &str| {
        let out = std::process::Command::new(crate::support::ferry_bin())
            .args(["verify-bundle", "--bundle", data.join(bundle).to_str().unwrap()])
            .args(["--certificate-identity", identity, "--certificate-oidc-issuer", issuer, artifact])
            .env_remove("FERRY_CONFIG")
            .output()
            .unwrap();
        ferry_testkit::outcome(&out)
    };
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
    for (bundle, artifact, identity, issuer) in &cases {
        let (code, stdout, stderr) = run(bundle, artifact, identity, issuer);
        assert_eq!(code, Some(0), "{bundle}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("verified: certificate of {identity} issued by {issuer}")),
            "{stdout}"
        );
        for (artifact, identity, issuer, why) in [
            (artifact.as_str(), "someone@example.com", *issuer, "another identity"),
            (artifact.as_str(), *identity, "https://issuer.example", "another issuer"),
            (other, *identity, *issuer, "another digest"),
        ] {
            let (code, stdout, stderr) = run(bundle, artifact, identity, issuer);
            assert_eq!(code, Some(7), "{bundle}, {why}: {stdout}{stderr}");
        }
    }
}
