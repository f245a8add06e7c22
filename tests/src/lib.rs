//! Ferry's test harness.
//!
//! Tests talk to real services on loopback, never to mocks of them:
//! - [`registry::RegistryServer`] runs CNCF distribution (`docker-registry`) on a free port with
//!   its own storage, optionally behind htpasswd auth or with push notifications.
//! - [`seed::Seeder`] pushes test images over the plain registry API, independently of Ferry's
//!   own registry code, so that a bug in Ferry cannot hide itself by seeding wrong data.
//!
//! - [`fault::FaultProxy`] sits in front of a registry and injects 429s, 5xx, dropped
//!   connections and flipped bytes on chosen requests.
//! - [`cosign`] builds signed and attested staging fixtures by hand, and verifies Ferry's
//!   signatures with `openssl`.
//! - [`keyless::FakeSigstore`] is a fake Fulcio CA, CT log and Rekor log, and their trusted
//!   root, for keyless bundles (none of those services can run here).
//! - [`github_fake::FakeGitHubChecks`] is a fake of GitHub's Checks API that records requests
//!   and checks them against the documented schema.
//! - [`localstack`] starts LocalStack (KMS, SQS) once per test process.
//! - [`rabbit::RabbitNode`] runs a private RabbitMQ node, for tests that restart the broker.
//! - [`world::World`] is a seeded staging/prod/mirror set that makes a plan hit every action.
//! - [`token::TokenServer`] issues bearer tokens for a registry in token-auth mode, accepting
//!   what its [`token::Book`] holds (with expiry), and serves ACR's refresh-token exchange.
//! - [`clouds`]: fakes of Google's and Entra ID's token services, and moto for ECR and STS.
//! - [`canary::Canary`] records every connection it gets: a host hostile input names, and the
//!   proxy for every non-loopback host, so that a request that must not be sent is counted
//!   instead of leaving the machine.
//!
//! The integration tests live in `tests/` and run with `--features services`.
//!
//! Architecture invariant: no mock registry: tests run CNCF distribution; the fakes stand only for what cannot run here (GitHub, cloud APIs), each named so.

pub mod canary;
pub mod chart;
pub mod clouds;
pub mod cosign;
pub mod fault;
pub mod github_fake;
pub mod github_repo_fake;
pub mod keyless;
pub mod localstack;
pub mod rabbit;
pub mod referrers_fake;
pub mod registry;
pub mod seed;
pub mod tcp;
pub mod token;
pub mod vendors;
pub mod world;

/// This process's peak resident memory so far (`VmHWM`), in MiB; NaN where `/proc` is absent.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The repository's own test data (copied from `../shared/reference-data`).
pub fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Finds `binary` on PATH, or panics with the install hint `.ci/run` would have applied.
#[allow(clippy::disallowed_methods, reason = "test tooling, not configuration")]
pub fn require_binary(binary: &str, package: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(binary);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{binary}` is not installed; run `.ci/install-deps` (Debian package `{package}`)");
}

/// The `cargo-lambda` binary (its `watch --only-lambda-apis` is a Lambda Runtime API
/// emulator), installed by `.ci/install-cargo-lambda` when missing.
pub fn cargo_lambda() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/install-cargo-lambda");
        let out =
            std::process::Command::new(&script).output().map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
    .clone()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes a kpromo thin-manifest directory with one subproject `sub`: `source` is the `src`
/// registry, `destinations` follow in order (the first is the primary), and `images` is the
/// `images.yaml` text.
pub fn write_thin_manifest(
    dir: &std::path::Path,
    sub: &str,
    source: &ferry_model::Host,
    destinations: &[ferry_model::Host],
    images: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("manifests").join(sub))?;
    std::fs::create_dir_all(dir.join("images").join(sub))?;
    let mut registries = format!("registries:\n- name: {source}\n  src: true\n");
    for destination in destinations {
        registries.push_str(&format!("- name: {destination}\n"));
    }
    std::fs::write(dir.join("manifests").join(sub).join("promoter-manifest.yaml"), registries)?;
    std::fs::write(dir.join("images").join(sub).join("images.yaml"), images)
}

/// Runs `git ARGS` in `dir` as a throwaway committer, asserts it succeeded, and returns its
/// trimmed stdout: the manifest repositories the tests build.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Polls `condition` every `interval` until it holds (`true`) or `timeout` passes (`false`):
/// the waiting the tests and the demo share.
pub async fn poll_until<F, Fut>(
    timeout: std::time::Duration,
    interval: std::time::Duration,
    mut condition: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(interval).await;
    }
    false
}

/// A finished command's exit code, stdout and stderr, as the CLI tests compare them.
pub fn outcome(out: &std::process::Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
