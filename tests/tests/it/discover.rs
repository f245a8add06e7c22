//! `ferry discover`: image-mirror's `autoupdate.yaml` against a fake of GitHub (releases with
//! drafts and prereleases, two per page; a repository to propose pull requests to), a real
//! registry whose tags take several pages, and a fake Helm chart repository.

use std::process::Command;

use ferry_discover::autoupdate;
use ferry_registry::Credentials;
use ferry_testkit::fault::{Fault, FaultProxy, Hits, Rule};
use ferry_testkit::github_repo_fake::{FakeGitHubRepo, FakeHelmRepository, FakeRelease};
use ferry_testkit::seed::{ImageSpec, Seeder};
use ferry_testkit::world::World;

use crate::support::{client, ferry_bin};

struct Setup {
    world: World,
    github: FakeGitHubRepo,
    _helm: FakeHelmRepository,
    dir: tempfile::TempDir,
    config_yaml: String,
}

async fn setup() -> Setup {
    let world = World::new().await;
    let hub = Seeder::new(&world.mirror);
    let pushed = hub.image("library/traefik", Some("2.9.0"), &ImageSpec::small("amd64", 61, 1)).await;
    for tag in ["2.10.4", "2.11.0", "3.0.1", "latest", "2.x-alpine"] {
        hub.tag("library/traefik", &pushed, tag).await;
    }
    let github = FakeGitHubRepo::start(&[]).await;
    github.set_releases(
        "acme/app",
        vec![
            FakeRelease::draft("v1.13.0"),
            FakeRelease::prerelease("v1.12.1-rc.1"),
            FakeRelease::new("v1.12.0"),
            FakeRelease::new("v1.11.0"),
            FakeRelease::new("v1.9.0"),
            FakeRelease::new("helm-chart-4.0"),
        ],
    );
    github.set_releases(
        "acme/tool",
        vec![
            FakeRelease::prerelease("v2.1.0-beta.1"),
            FakeRelease::new("v2.0.0"),
            FakeRelease::new("v1.0.0"),
        ],
    );
    let index = "apiVersion: v1\nentries:\n  mychart:\n  - version: 1.2.0-rc.1\n    urls: [charts/mychart-1.2.0-rc.1.tgz]\n  - version: 1.1.0\n    urls: [charts/mychart-1.1.0.tgz]\n  - version: 1.0.0\n    urls: [charts/mychart-1.0.0.tgz]\n";
    let chart = |tag: &str| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.tgz");
        let values = format!(
            "operator:\n  image:\n    repository: quay.io/acme/operator\n    tag: {tag}\nhelper:\n  image: quay.io/acme/other:1.0\ndenied:\n  image: quay.io/acme/denied:1\n"
        );
        ferry_testkit::chart::archive(
            &path,
            &[("mychart/Chart.yaml", "name: mychart\n"), ("mychart/values.yaml", &values)],
        )
        .unwrap();
        std::fs::read(path).unwrap()
    };
    let helm = FakeHelmRepository::start(vec![
        ("index.yaml".into(), index.as_bytes().to_vec()),
        ("charts/mychart-1.2.0-rc.1.tgz".into(), chart("v3.2.0-rc.1")),
        ("charts/mychart-1.1.0.tgz".into(), chart("v3.1.0")),
        ("charts/mychart-1.0.0.tgz".into(), chart("v3.0.0")),
    ])
    .await;
    let hub_host = world.mirror.host();
    let dir = tempfile::tempdir().unwrap();
    let autoupdate = format!(
        "- Name: app\n  GithubRelease:\n    Owner: acme\n    Repository: app\n    VersionRegex: ^v(.*)\n    VersionConstraint: '>=1.10'\n    Artifacts:\n    - SourceArtifact: acme/app\n  Reviewers: [rancher/k3s, alice]\n\
         - Name: tool\n  GithubRelease:\n    Owner: acme\n    Repository: tool\n    LatestOnly: true\n    Artifacts:\n    - SourceArtifact: acme/tool\n  Reviewers: [bob]\n\
         - Name: traefik\n  Registry:\n    Artifacts:\n    - SourceArtifact: {hub_host}/library/traefik\n    Latest: true\n    VersionFilter: ^2.[0-9]+.[0-9]+$\n  Reviewers: [rancher/k3s]\n\
         - Name: operator\n  HelmLatest:\n    HelmRepo: {}\n    Charts:\n      mychart:\n        default: []\n    ImageDenylist: [quay.io/acme/denied]\n    Artifacts:\n    - SourceArtifact: quay.io/acme/operator\n  Reviewers: [rancher/k3s]\n\
         - Name: broken\n  Registry:\n    Artifacts: [{{SourceArtifact: a/b}}]\n",
        helm.url()
    );
    std::fs::write(dir.path().join("autoupdate.yaml"), autoupdate).unwrap();
    let config_yaml = format!(
        "Artifacts:\n- SourceArtifact: acme/app\n  Tags:\n  - 1.11.0\n- SourceArtifact: {hub_host}/library/traefik\n  Tags:\n  - 2.10.4\n\
         - SourceArtifact: quay.io/acme/operator\n  Tags:\n  - v3.0.0\nRepositories:\n- BaseUrl: {}/rancher\n  DefaultTarget: true\n",
        world.prod.host()
    );
    std::fs::write(dir.path().join("config.yaml"), &config_yaml).unwrap();
    Setup { world, github, _helm: helm, dir, config_yaml }
}

impl Setup {
    fn ferry(&self, extra: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let out = Command::new(ferry_bin())
            .current_dir(self.dir.path())
            .args(["discover", "--autoupdate", "autoupdate.yaml", "--rancher-config", "config.yaml"])
            .args(["--regsync-yaml", "regsync.yaml", "--github-api", &self.github.api()])
            .args(extra)
            .args(self.world.insecure_flags())
            .env_remove("FERRY_CONFIG")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_REPOSITORY")
            .env_remove("GITHUB_API_URL")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        ferry_testkit::outcome(&out)
    }
}

/// One run proposes exactly what the rules select: releases without drafts and prereleases
/// through the regex and the constraint, the latest release, the highest version among the
/// registry's filtered tags (tags that are not versions skipped, not fatal), and the latest
/// stable chart's images without the denied one; tags already listed are not proposed; an
/// image the chart uses but no entry names is reported; a bad entry is left out with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn discovery_proposes_exactly_the_new_tags_and_writes_them_into_config_yaml() {
    let setup = setup().await;
    let (code, stdout, stderr) = setup.ferry(&[], &[]);
    assert_eq!(code, Some(5), "the broken entry is invalid: {stdout}{stderr}");
    assert!(stderr.contains("entry \"broken\": must specify at least one reviewer"), "{stderr}");
    for line in [
        "app (GithubRelease): 1 new tags\n  + acme/app:1.12.0 -> mirrored-acme-app",
        "tool (GithubRelease): 0 new tags\n  ! acme/tool (mirrored-acme-tool) is not in config.yaml yet (or in more than one entry): a new image needs a human",
        "traefik (Registry): 1 new tags\n",
        "library/traefik:2.11.0 -> mirrored-library-traefik",
        "operator (HelmLatest, found by a scan of the chart's values (helm is not on the PATH; --set values not applied)): 1 new tags\n  + quay.io/acme/operator:v3.1.0 -> mirrored-acme-operator",
        "! quay.io/acme/other is used by the chart but not named in the entry's Artifacts",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    assert!(!stdout.contains("quay.io/acme/denied"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(setup.dir.path().join("config.yaml")).unwrap(),
        setup.config_yaml,
        "a plain run writes nothing"
    );

    // --write: the tags go into config.yaml, in place; regsync.yaml is regenerated from it.
    let (code, stdout, _) = setup.ferry(&["--write"], &[]);
    assert_eq!(code, Some(5), "{stdout}");
    let written = std::fs::read_to_string(setup.dir.path().join("config.yaml")).unwrap();
    let hub_host = setup.world.mirror.host();
    assert_eq!(
        written,
        format!(
            "Artifacts:\n- SourceArtifact: acme/app\n  Tags:\n  - 1.11.0\n  - 1.12.0\n- SourceArtifact: {hub_host}/library/traefik\n  Tags:\n  - 2.10.4\n  - 2.11.0\n\
             - SourceArtifact: quay.io/acme/operator\n  Tags:\n  - v3.0.0\n  - v3.1.0\nRepositories:\n- BaseUrl: {}/rancher\n  DefaultTarget: true\n",
            setup.world.prod.host()
        )
    );
    let regsync = std::fs::read_to_string(setup.dir.path().join("regsync.yaml")).unwrap();
    assert!(
        regsync.contains(&format!(
            "- source: acme/app:1.12.0\n  target: {}/rancher/mirrored-acme-app:1.12.0\n  type: image",
            setup.world.prod.host()
        )),
        "{regsync}"
    );
    let (code, stdout, _) = setup.ferry(&[], &[]);
    assert!(
        stdout.contains("app (GithubRelease): 0 new tags")
            && stdout.contains("traefik (Registry): 0 new tags"),
        "{code:?} {stdout}"
    );
}

/// `--pr`: one pull request per entry with new tags, on `autoupdate/<entry>/<hash>`, with the
/// edited config.yaml and regsync.yaml committed and the entry's reviewers asked; the same
/// finding is never proposed twice; without a token nothing is asked.
#[tokio::test(flavor = "multi_thread")]
async fn each_finding_becomes_one_pull_request_once() {
    let setup = setup().await;
    let (code, _, stderr) = setup.ferry(&["--pr", "--github-repository", "acme/mirror"], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("--pr needs GITHUB_TOKEN"), "{stderr}");

    let env = [("GITHUB_TOKEN", "t0ken-never-printed"), ("GITHUB_REPOSITORY", "acme/mirror")];
    let (code, stdout, stderr) = setup.ferry(&["--pr", "--entry", "app", "--entry", "traefik"], &env);
    assert_eq!(code, Some(5), "{stdout}{stderr}");
    assert!(!stdout.contains("t0ken") && !stderr.contains("t0ken"));
    let pulls = setup.github.pulls();
    assert_eq!(pulls.len(), 2, "{stdout}");
    let app = &pulls[0];
    assert!(
        app.head.starts_with("autoupdate/app/") && app.head.len() == "autoupdate/app/".len() + 8,
        "{}",
        app.head
    );
    assert_eq!(app.title, "[autoupdate] Add 1 tag(s) for `app`");
    assert!(app.body.contains("- `acme/app:1.12.0`"), "{}", app.body);
    assert_eq!(
        (app.reviewers.clone(), app.team_reviewers.clone()),
        (vec!["alice".to_owned()], vec!["k3s".to_owned()])
    );
    let config = String::from_utf8(setup.github.file(&app.head, "config.yaml").unwrap()).unwrap();
    assert!(
        config.contains("  - 1.11.0\n  - 1.12.0\n") && !config.contains("2.11.0"),
        "one entry's tags per pull request: {config}"
    );
    let regsync = String::from_utf8(setup.github.file(&app.head, "regsync.yaml").unwrap()).unwrap();
    assert_eq!(
        regsync,
        ferry_manifests::rancher::to_regsync_yaml(std::path::Path::new("config.yaml"), &config).unwrap()
    );
    assert!(stdout.contains("opened https://github.example/pull/1"), "{stdout}");

    let (_, stdout, _) = setup.ferry(&["--pr", "--entry", "app"], &env);
    assert!(stdout.contains("already proposed: https://github.example/pull/1"), "{stdout}");
    assert_eq!(setup.github.pulls().len(), 2);
    assert!(
        setup.github.requests().iter().any(|r| r == "GET releases acme/app page 3"),
        "releases are read page by page"
    );
}

/// The Registry strategy goes through Ferry's registry client: a source with more tags than
/// one page is read to the end. (Distribution 2.8 answers tag lists in one page whatever `n`
/// says, so the registry is reached through the fault proxy's `PageTags`, which pages as the
/// OCI distribution spec says.)
#[tokio::test]
async fn registry_tags_are_read_across_pages() {
    let setup = setup().await;
    let proxy = FaultProxy::start(&setup.world.mirror).await;
    proxy.add(Rule::new(Some("GET"), "/tags/list$", Hits::Every, Fault::PageTags));
    let mut hosts = setup.world.hosts();
    hosts.push(proxy.host());
    let registry = client(&hosts, Credentials::none()).with_page_size(2);
    let text = std::fs::read_to_string(setup.dir.path().join("autoupdate.yaml"))
        .unwrap()
        .replace(&setup.world.mirror.host().to_string(), &proxy.host().to_string());
    let (entries, _) = autoupdate::parse(std::path::Path::new("autoupdate.yaml"), &text).unwrap();
    let traefik = entries.iter().find(|e| e.name == "traefik").unwrap();
    let github = ferry_discover::GitHub::new(&setup.github.api(), None).unwrap();
    let before = setup.world.mirror.access_log().len();
    let found = ferry_discover::find(traefik, &registry, &github, &reqwest::Client::new()).await.unwrap();
    assert_eq!(found.tags[0].1, ["2.11.0"]);
    let pages =
        setup.world.mirror.access_log()[before..].iter().filter(|l| l.path.contains("/tags/list")).count();
    assert_eq!(pages, 3, "6 tags, 2 per page: 3 requests");
}

/// The seed's format, `retrieve-image-tags/config.json`, with its rules: `github-releases`
/// (semantic versions only, drafts and prereleases out, `versionConstraint`; tags kept as
/// named), `registry` with `versionFilter` and `latest`, `github-tagged-images-file` (the images
/// file at each selected release; `rancher/` images and `latest` left out), `helm-latest` with an
/// `imageDenylist`; a key defined twice counts once (the last), with a warning; an unknown source
/// is left out with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_seed_s_config_json_selects_what_its_rules_select() {
    let setup = setup().await;
    for tag in ["v1.12.0", "v1.11.0"] {
        setup.github.set_file_at(tag, "deploy/images.txt", format!("quay.io/acme/operator:v3.1.0\nrancher/skipped:{tag}\ndocker.io/acme/app:1.13.0\nquay.io/acme/operator:latest\n\n").as_bytes());
    }
    let helm_url = std::fs::read_to_string(setup.dir.path().join("autoupdate.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("HelmRepo: ").map(str::to_owned))
        .unwrap();
    let hub = setup.world.mirror.host();
    let json = format!(
        r#"{{
  "app": {{"images": ["acme/app"], "versionSource": "github-releases:acme/app", "versionConstraint": ">=1.10.0"}},
  "traefik": {{"images": ["{hub}/library/traefik"], "versionSource": "registry", "versionFilter": "^2\\.[0-9]+\\.[0-9]+$", "latest": "true"}},
  "images-file": {{"versionSource": "github-tagged-images-file:acme/app", "imagesFilePath": "deploy/images.txt", "versionConstraint": ">=1.11.0"}},
  "operator": {{"versionSource": "helm-latest:{helm_url}", "imageDenylist": ["quay.io/acme/denied"], "helmCharts": {{"mychart": {{}}}}}},
  "bad": {{"images": ["a/b"], "versionSource": "ftp:somewhere"}},
  "traefik": {{"images": ["{hub}/library/traefik"], "versionSource": "registry", "versionFilter": "^3\\.", "latest": true}}
}}"#
    );
    std::fs::write(setup.dir.path().join("config.json"), json).unwrap();
    let out = Command::new(ferry_bin())
        .current_dir(setup.dir.path())
        .args([
            "discover",
            "--autoupdate",
            "config.json",
            "--rancher-config",
            "config.yaml",
            "--github-api",
            &setup.github.api(),
        ])
        .args(setup.world.insecure_flags())
        .env_remove("FERRY_CONFIG")
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(5), "the bad entry: {stdout}{stderr}");
    assert!(stderr.contains("entry \"traefik\" is defined twice; the last one counts"), "{stderr}");
    assert!(stderr.contains("entry \"bad\": versionSource \"ftp\" is not supported"), "{stderr}");
    for line in [
        "app (GithubRelease): 2 new tags\n  + acme/app:v1.11.0 -> mirrored-acme-app\n  + acme/app:v1.12.0 -> mirrored-acme-app",
        "images-file (github-tagged-images-file): 2 new tags\n  + acme/app:1.13.0 -> mirrored-acme-app\n  + quay.io/acme/operator:v3.1.0 -> mirrored-acme-operator",
        "operator (HelmLatest, found by a scan of the chart's values (helm is not on the PATH; --set values not applied)): 1 new tags\n  + quay.io/acme/operator:v3.1.0 -> mirrored-acme-operator",
        "! quay.io/acme/other is not in config.yaml yet (or in more than one entry): a new image needs a human",
        "library/traefik:3.0.1 -> mirrored-library-traefik",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    assert!(!stdout.contains("rancher/skipped") && !stdout.contains(":latest"), "{stdout}");
}

/// `discovery:` in `ferry run`: a round at start and then every `every`; the files are read
/// from the repository at its base branch through the contents API (no checkout), each finding
/// is one pull request, and later rounds find it proposed and open nothing. Without a token
/// `ferry run` refuses to start, naming what is missing.
#[tokio::test(flavor = "multi_thread")]
async fn ferry_run_proposes_discoveries_on_a_schedule_once() {
    let setup = setup().await;
    let autoupdate = std::fs::read_to_string(setup.dir.path().join("autoupdate.yaml")).unwrap();
    let traefik: String = autoupdate
        .split("- Name: ")
        .filter(|e| e.starts_with("traefik"))
        .map(|e| format!("- Name: {e}"))
        .collect();
    setup.github.set_file_at("main", "mirror/autoupdate.yaml", traefik.as_bytes());
    setup.github.set_file_at("main", "config.yaml", setup.config_yaml.as_bytes());
    let hosts: Vec<String> = setup.world.hosts().iter().map(|h| format!("\"{h}\"")).collect();
    let config = setup.dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  insecure: [{}]\npipeline:\n  github-api: {}\ndiscovery:\n  every: 1s\n  autoupdate: mirror/autoupdate.yaml\n  \
             rancher-config: config.yaml\n  regsync-yaml: regsync.yaml\n  repository: acme/mirror\n",
            hosts.join(", "),
            setup.github.api()
        ),
    )
    .unwrap();
    let run = |token: Option<&str>| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = tokio::process::Command::new(ferry_bin());
        command
            .args(["run", "--config", config.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("FERRY_CONFIG")
            .env_remove("GITHUB_TOKEN")
            .env("FERRY_LOG_FORMAT", "text")
            .env("FERRY_DISTRIBUTION_TOKEN", "webhook-token")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("GITHUB_TOKEN", token);
        }
        command.spawn().unwrap()
    };
    let out = run(None).wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("discovery: needs GITHUB_TOKEN"), "{stderr}");

    let child = run(Some("t0ken"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while setup.github.pulls().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no pull request within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Two more rounds: the same finding is found proposed.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut child = child;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let pulls = setup.github.pulls();
    assert_eq!(pulls.len(), 1, "{stderr}");
    assert!(pulls[0].head.starts_with("autoupdate/traefik/"));
    let config_yaml = String::from_utf8(setup.github.file(&pulls[0].head, "config.yaml").unwrap()).unwrap();
    assert!(config_yaml.contains("  - 2.10.4\n  - 2.11.0\n"), "{config_yaml}");
    assert!(setup.github.file(&pulls[0].head, "regsync.yaml").is_some());
    assert!(stderr.contains("discovery: traefik: opened https://github.example/pull/1"), "{stderr}");
    assert!(stderr.contains("discovery: traefik: already proposed"), "{stderr}");
}
