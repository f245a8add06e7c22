//! `ferry check`: a pull request to a git repository of thin manifests, checked against real
//! registries (staging behind a fault proxy that corrupts one manifest), with key and keyless
//! signatures, and posted to a fake of GitHub's Checks API.

use std::process::Command;

use ferry_model::Digest;
use ferry_testkit::cosign::{self, TestKey};
use ferry_testkit::fault::{Fault, FaultProxy, Hits, Rule};
use ferry_testkit::git;
use ferry_testkit::github_fake::FakeGitHubChecks;
use ferry_testkit::keyless::{FakeSigstore, Faults};
use ferry_testkit::seed::{ImageSpec, Pushed, Seeder};
use ferry_testkit::world::World;
use serde_json::json;

const SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const WORKFLOW: &str = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0";
const EVIL: &str = "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0";
const GITHUB: &str = "https://token.actions.githubusercontent.com";

/// Everything the pull request adds, by name.
struct Fixture {
    world: World,
    proxy: FaultProxy,
    repo: tempfile::TempDir,
    config: std::path::PathBuf,
    head_sha: String,
    /// (name, digest) of every image the tests name, for the placeholders of the golden texts.
    digests: Vec<(&'static str, Digest)>,
}

async fn signed_index(
    stage: &Seeder,
    repo: &str,
    seed: u64,
    key: Option<&TestKey>,
    reference: &str,
) -> Pushed {
    let pushed = stage
        .index(repo, None, &[ImageSpec::small("amd64", seed, 1), ImageSpec::small("arm64", seed + 1, 1)])
        .await;
    if let Some(key) = key {
        cosign::sign_image(stage, repo, &pushed.digest, reference, key).await;
    }
    pushed
}

async fn fixture() -> Fixture {
    let world = World::new().await;
    let proxy = FaultProxy::start(&world.staging).await;
    let stage = Seeder::new(&world.staging);
    let key = TestKey::generate();
    let sigstore = FakeSigstore::new();
    let source = proxy.host();
    let reference = |name: &str| format!("{source}/check/{name}");

    let mut digests = Vec::new();
    for (name, seed) in [("good-a", 1001), ("good-b", 1003), ("good-c", 1005), ("old", 1007)] {
        let pushed = signed_index(&stage, &format!("check/{name}"), seed, Some(&key), &reference(name)).await;
        digests.push((name, pushed.digest));
    }
    let tampered = signed_index(&stage, "check/tampered", 1011, Some(&key), &reference("tampered")).await;
    digests.push(("tampered", tampered.digest));
    proxy.add(Rule::new(
        Some("GET"),
        &format!("^/v2/check/tampered/manifests/{}$", tampered.digest),
        Hits::Every,
        Fault::FlipByte { at: 20 },
    ));
    let unsigned = signed_index(&stage, "check/unsigned", 1013, None, "").await;
    digests.push(("unsigned", unsigned.digest));
    let keyless = signed_index(&stage, "check/keyless", 1015, None, "").await;
    let bundle = sigstore.bundle(&keyless.digest, SIGN, json!({}), EVIL, GITHUB, Faults::default());
    let referrer = cosign::attach_bundle(&stage, "check/keyless", &keyless, &bundle, SIGN).await;
    stage.list_referrer("check/keyless", &keyless.digest, &referrer).await;
    digests.push(("keyless", keyless.digest));
    let conflict = signed_index(&stage, "check/conflict", 1017, Some(&key), &reference("conflict")).await;
    digests.push(("conflict", conflict.digest));
    let at_prod = Seeder::new(&world.prod)
        .image("check/conflict", Some("1.0"), &ImageSpec::small("amd64", 1019, 1))
        .await;
    digests.push(("at-prod", at_prod.digest));
    let single = stage.image("check/single", None, &ImageSpec::small("amd64", 1021, 1)).await;
    cosign::sign_image(&stage, "check/single", &single.digest, &reference("single"), &key).await;
    digests.push(("single", single.digest));
    let ghost = Digest::of(b"never pushed anywhere");
    digests.push(("ghost", ghost));

    let dir = tempfile::tempdir().unwrap();
    let hosts = [source.to_string(), world.prod.host().to_string(), world.mirror.host().to_string()];
    let config = dir.path().join("ferry.yaml");
    std::fs::write(dir.path().join("staging.pub"), key.public_pem()).unwrap();
    std::fs::write(dir.path().join("trusted_root.json"), sigstore.trusted_root()).unwrap();
    std::fs::write(
        &config,
        format!(
            "registries:\n  insecure: [\"{}\", \"{}\", \"{}\"]\n\
             trust:\n  sources:\n  - registry: \"{source}\"\n    signatures: required\n    keys: [staging.pub]\n    \
             trusted-root: trusted_root.json\n    certificate-identity: {WORKFLOW}\n    certificate-oidc-issuer: {GITHUB}\n\
             check:\n  required-destinations: [\"{}\", \"{}\"]\n  multi-arch: required\n  allowed-sources: [\"{source}\"]\n",
            hosts[0], hosts[1], hosts[2], hosts[1], hosts[2]
        ),
    )
    .unwrap();

    // The manifest repository: the base has `check/old`; the pull request adds the rest,
    // drops one of old's tags, and has one entry with a broken digest.
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let d = |name: &str| digests.iter().find(|(n, _)| *n == name).unwrap().1;
    let write = |images: &str| {
        ferry_testkit::write_thin_manifest(
            &repo.path().join("registry"),
            "check",
            &source,
            &[world.prod.host(), world.mirror.host()],
            images,
        )
        .unwrap();
    };
    write(&format!("- name: check/old\n  dmap:\n    \"{}\": [\"0.9\", \"0.9.1\"]\n", d("old")));
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "base"]);
    git(repo.path(), &["tag", "base"]);
    let mut images = format!("- name: check/old\n  dmap:\n    \"{}\": [\"0.9\"]\n", d("old"));
    for name in
        ["good-a", "good-b", "good-c", "ghost", "tampered", "unsigned", "keyless", "conflict", "single"]
    {
        images.push_str(&format!("- name: check/{name}\n  dmap:\n    \"{}\": [\"1.0\"]\n", d(name)));
    }
    images.push_str("- name: check/broken\n  dmap:\n    \"sha256:12\": [\"1.0\"]\n");
    write(&images);
    git(repo.path(), &["commit", "-qam", "add images"]);
    git(repo.path(), &["tag", "head"]);
    let head_sha = git(repo.path(), &["rev-parse", "HEAD"]);
    // The temporary directory holding the config lives as long as the repository.
    std::mem::forget(dir);
    Fixture { world, proxy, repo, config, head_sha, digests }
}

impl Fixture {
    fn ferry(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let manifests = self.repo.path().join("registry");
        let out = Command::new(crate::support::ferry_bin())
            .arg("check")
            .args(["--config", self.config.to_str().unwrap()])
            .args(["--thin-manifest-dir", manifests.to_str().unwrap()])
            .args(["--diff-base-rev", "base", "--diff-head-rev", "head"])
            .args(args)
            .env_remove("FERRY_CONFIG")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_REPOSITORY")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        ferry_testkit::outcome(&out)
    }

    /// `text` with every host, digest and commit replaced by a placeholder, so that the
    /// expected outputs can be written out whole. Digests no fixture names (what a corrupted
    /// manifest hashes to, a bundle referrer signed at test time) become `{other}`.
    fn placeholders(&self, text: &str) -> String {
        let base_sha = git(self.repo.path(), &["rev-parse", "base"]);
        let mut text = text.replace(&self.head_sha, "{head}").replace(&base_sha, "{base}");
        for (name, digest) in &self.digests {
            let full = digest.to_string();
            text = text.replace(&full, &format!("{{{name}}}"));
            text = text.replace(&format!("{}…", &full[..19]), &format!("{{{name}}}…"));
        }
        for (host, name) in [
            (self.proxy.host(), "{staging}"),
            (self.world.prod.host(), "{prod}"),
            (self.world.mirror.host(), "{mirror}"),
        ] {
            text = text.replace(&host.to_string(), name);
        }
        let other = regex::Regex::new("sha256:[0-9a-f]{64}").unwrap();
        other.replace_all(&text, "{other}").into_owned()
    }
}

/// With `FERRY_WRITE_GOLDEN=1`, a maintainer who changed the report on purpose rewrites the
/// golden text (and reviews its diff); the test then compares with what it wrote.
#[allow(clippy::disallowed_methods, reason = "test tooling, not configuration")]
fn rewrite_golden(name: &str, text: &str) {
    if std::env::var_os("FERRY_WRITE_GOLDEN").is_some() {
        std::fs::write(ferry_testkit::data_dir().join("presubmit").join(name), text).unwrap();
    }
}

/// The golden text `name` under `tests/data/presubmit/`.
fn golden(name: &str) -> String {
    std::fs::read_to_string(ferry_testkit::data_dir().join("presubmit").join(name)).unwrap()
}

/// The nine digests the pull request adds, each with the right verdict and reason at its
/// `file:line`, and the problems outside them, in Markdown and in JUnit, exactly; then the
/// same result as a check run on the fake GitHub.
// Multi-threaded: the fault proxy runs on this runtime while the test waits for `ferry`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_is_checked_digest_by_digest_with_reasons_at_file_and_line() {
    let fixture = fixture().await;
    let (code, markdown, stderr) = fixture.ferry(&["--github-repository", "acme/manifests"], &[]);
    assert_eq!(code, Some(8), "problems found: {markdown}{stderr}");
    let markdown = fixture.placeholders(&markdown);
    rewrite_golden("check.md", &markdown);
    assert_eq!(markdown, golden("check.md"));

    let out = tempfile::NamedTempFile::new().unwrap();
    let (code, stdout, stderr) =
        fixture.ferry(&["--output", "junit", "--output-file", out.path().to_str().unwrap()], &[]);
    assert_eq!(code, Some(8), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "the report went to the file: {stdout}");
    let junit = fixture.placeholders(&std::fs::read_to_string(out.path()).unwrap());
    rewrite_golden("check.junit.xml", &junit);
    assert_eq!(junit, golden("check.junit.xml"));

    // A CI job missing its token fails before asking any registry anything.
    let (code, _, stderr) = fixture.ferry(&["--github-check"], &[("GITHUB_REPOSITORY", "acme/manifests")]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("--github-check needs GITHUB_TOKEN"), "{stderr}");

    // On GitHub: one check run on the head commit, every body within the documented schema.
    let github = FakeGitHubChecks::start().await;
    let api = github.api();
    let (code, _, stderr) = fixture.ferry(
        &["--output", "json", "--github-check", "--github-api", &api],
        &[("GITHUB_TOKEN", "t0ken"), ("GITHUB_REPOSITORY", "acme/manifests")],
    );
    assert_eq!(code, Some(8), "{stderr}");
    assert!(stderr.contains("posted the check run https://github.com/acme/manifests/runs/"), "{stderr}");
    assert!(!stderr.contains("t0ken"), "the token is never printed");
    let requests = github.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let run = &requests[0];
    assert_eq!((run.method, run.path.as_str()), ("POST", "/repos/acme/manifests/check-runs"));
    assert_eq!(run.invalid, None, "{:#}", run.body);
    assert_eq!(run.authorization.as_deref(), Some("Bearer t0ken"));
    let body = &run.body;
    assert_eq!(body["head_sha"], fixture.head_sha.as_str());
    assert_eq!(body["name"], "ferry check");
    assert_eq!((body["status"].as_str(), body["conclusion"].as_str()), (Some("completed"), Some("failure")));
    assert_eq!(body["output"]["title"], "9 new digests, 6 with problems; 3 other problems");
    assert_eq!(
        fixture.placeholders(body["output"]["summary"].as_str().unwrap()),
        golden("check.md")[..golden("check.md").find("\n\n| |").unwrap() + 1]
    );
    let annotations: Vec<(u64, String, String)> = body["output"]["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["path"], "registry/images/check/images.yaml");
            assert_eq!(a["start_line"], a["end_line"]);
            (
                a["start_line"].as_u64().unwrap(),
                a["annotation_level"].as_str().unwrap().to_owned(),
                fixture.placeholders(a["title"].as_str().unwrap()),
            )
        })
        .collect();
    let failure = |line: u64, title: &str| (line, "failure".to_owned(), title.to_owned());
    assert_eq!(
        annotations,
        vec![
            failure(15, "source-digest: {staging}/check/ghost@{ghost}"),
            failure(15, "signature: {staging}/check/ghost@{ghost}"),
            failure(15, "destination: {staging}/check/ghost@{ghost}"),
            failure(18, "source-digest: {staging}/check/tampered@{tampered}"),
            failure(21, "signature: {staging}/check/unsigned@{unsigned}"),
            failure(24, "signature: {staging}/check/keyless@{keyless}"),
            failure(27, "destination: {staging}/check/conflict@{conflict}"),
            failure(30, "multi-arch: {staging}/check/single@{single}"),
            failure(33, "lint"),
            failure(1, "immutable-tags"),
            failure(1, "immutable-tags"),
        ]
    );
}

/// `ferry check --output json ARGS` run in `dir`, which must fail (exit 8): its report.
fn failed_check_report(args: &[&str], dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(crate::support::ferry_bin())
        .args(["check", "--output", "json"])
        .args(args)
        .current_dir(dir)
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(8), "{stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// A manifest that cannot be parsed is the change's problem: reported at its line like any
/// other, in the report and (so) on the pull request, not an error that hides the report.
#[test]
fn an_unreadable_manifest_is_a_lint_problem_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let host = ferry_model::Host::parse("staging.example").unwrap();
    ferry_testkit::write_thin_manifest(
        dir.path(),
        "team",
        &host,
        &[ferry_model::Host::parse("prod.example").unwrap()],
        "- name: app\n  dmap:\n    \"sha256:ab\": [1.0\n",
    )
    .unwrap();
    let report = failed_check_report(&["--thin-manifest-dir", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(report["conclusion"], "failure");
    assert_eq!(report["digests"].as_array().unwrap().len(), 0);
    let problem = &report["problems"][0];
    assert_eq!(problem["check"], "lint");
    assert!(problem["file"].as_str().unwrap().ends_with("images/team/images.yaml"), "{problem}");
    assert_eq!(problem["line"], 3, "{problem}");
}

/// The checks Rancher's CI runs on image-mirror's `config.yaml` (`artifact-mirror-tools
/// validate`), through `ferry check`: a duplicate source/target is a `lint` failure at its line,
/// a tag removed since the base is an `immutable-tags` failure, a new tag that is not pullable at
/// its source is a `source` failure, and a new tag that resolves is checked like any digest.
#[tokio::test]
async fn rancher_config_yaml_changes_get_rancher_s_ci_checks() {
    let world = World::new().await;
    let (s, p) = (world.staging.host(), world.prod.host());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let file = repo.path().join("config.yaml");
    let repositories = format!("Repositories:\n- BaseUrl: {p}/rancher\n  DefaultTarget: true\n");
    std::fs::write(
        &file,
        format!("Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.0']\n{repositories}"),
    )
    .unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "base"]);
    git(repo.path(), &["tag", "base"]);
    std::fs::write(
        &file,
        format!(
            "Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.1', '9.9']\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.1']\n{repositories}"
        ),
    )
    .unwrap();
    git(repo.path(), &["commit", "-qam", "head"]);
    git(repo.path(), &["tag", "head"]);
    let file = file.display().to_string();
    let mut args = vec!["--rancher-config", &file, "--diff-base-rev", "base", "--diff-head-rev", "head"];
    let insecure = world.insecure_flags();
    args.extend(insecure.iter().map(String::as_str));
    let report = failed_check_report(&args, repo.path());
    let problems: Vec<(String, u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["check"].as_str().unwrap().to_owned(),
                p["line"].as_u64().unwrap_or(0),
                p["message"].to_string(),
            )
        })
        .collect();
    let has = |check: &str, line: u64, words: &str| {
        problems.iter().any(|(c, l, r)| c == check && *l == line && r.contains(words))
    };
    assert!(has("lint", 5, "is also asked for at line 3"), "the duplicate source/target: {problems:#?}");
    assert!(problems.iter().any(|(c, _, r)| c == "immutable-tags" && r.contains("1.0")), "{problems:#?}");
    assert!(problems.iter().any(|(c, _, r)| c == "source" && r.contains("9.9")), "{problems:#?}");
    let checked: Vec<&str> =
        report["digests"].as_array().unwrap().iter().filter_map(|d| d["digest"].as_str()).collect();
    assert_eq!(checked, [world.app_11.digest.to_string().as_str()], "{report}");
}
