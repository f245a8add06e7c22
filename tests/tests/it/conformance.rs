//! sigstore-conformance's verification cases (vendored in `shared/trust/tests/data`) through
//! `ferry verify-bundle`, as the suite's `test_verify` runs a client: every case once with the
//! artifact as a file and once as its `sha256:` digest, 140 runs. A `_fail` case must exit
//! non-zero; every other case must exit 0.

use std::path::{Path, PathBuf};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/trust/tests/data/sigstore-conformance/bundle-verify")
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
