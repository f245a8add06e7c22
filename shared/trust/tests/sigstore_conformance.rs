//! sigstore-conformance's verification suite (`test/assets/bundle-verify`, vendored under
//! `tests/data/sigstore-conformance`), run against Ferry's keyless verifier the way the suite's
//! `test_verify` runs a client: each case directory holds `bundle.sigstore.json`, and may hold
//! `artifact` (else the suite's `a.txt`), `identity` and `issuer` (else the suite's defaults),
//! `trusted_root.json` (else Sigstore's public-good root) and `key.pub`. A name ending in
//! `_fail` must fail; every other case must verify.
//! Cases with `key.pub` are managed-key bundles, verified with the key and against the logs.

#![allow(clippy::print_stderr, reason = "the suite prints its table of cases")]

use std::path::{Path, PathBuf};

use ferry_model::Digest;
use ferry_trust::keyless::{KeylessPolicy, Matcher, TrustedRoot};

const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigstore-conformance/test/assets/bundle-verify")
}

/// The outcome of one case: `Ok(())` verified, `Err(why)` refused.
fn run(case: &Path) -> Result<(), String> {
    let read = |name: &str| std::fs::read_to_string(case.join(name)).ok().map(|s| s.trim().to_owned());
    let bundle = std::fs::read(case.join("bundle.sigstore.json")).map_err(|e| format!("no bundle: {e}"))?;
    let artifact = std::fs::read(case.join("artifact"))
        .or_else(|_| std::fs::read(suite().join("a.txt")))
        .map_err(|e| format!("no artifact: {e}"))?;
    // Without a root of its own, a case is verified against the production root, as the
    // suite's clients do (the one `sigstore-trust-root` embeds).
    let root = if case.join("trusted_root.json").exists() {
        TrustedRoot::load(&case.join("trusted_root.json"))?
    } else {
        TrustedRoot::production()?
    };
    if let Some(key) = read("key.pub") {
        return root.verify_with_key(&bundle, &Digest::of(&artifact), &key);
    }
    let policy = KeylessPolicy {
        root,
        identity: Matcher::Exact(read("identity").unwrap_or_else(|| IDENTITY.to_owned())),
        issuer: Matcher::Exact(read("issuer").unwrap_or_else(|| ISSUER.to_owned())),
    };
    policy.verify_artifact_bundle(&bundle, &Digest::of(&artifact)).map(|_| ())
}

#[test]
fn sigstore_conformance_bundle_verification_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(suite())
        .expect("the vendored suite")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bundle.sigstore.json").exists())
        .collect();
    cases.sort();
    let (mut agreed, mut disagreed) = (Vec::new(), Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let should_fail = name.ends_with("_fail");
        let outcome = std::panic::catch_unwind(|| run(case)).unwrap_or_else(|_| Err("PANIC".into()));
        let line = match &outcome {
            Ok(()) => format!("{name}: verified"),
            Err(why) => format!("{name}: refused: {why}"),
        };
        if outcome.is_err() == should_fail && !line.contains("PANIC") {
            agreed.push(line);
        } else {
            disagreed.push(line);
        }
    }
    eprintln!("agreed with the suite ({}):\n  {}", agreed.len(), agreed.join("\n  "));
    eprintln!("DISAGREED ({}):\n  {}", disagreed.len(), disagreed.join("\n  "));
    assert_eq!(agreed.len(), 70, "every case of the pinned suite");
    assert!(disagreed.is_empty(), "{} cases disagree with sigstore-conformance", disagreed.len());
}
