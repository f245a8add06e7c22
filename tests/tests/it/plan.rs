//! The planner and `ferry plan` / `ferry snapshot` against seeded real registries.

use std::path::Path;
use std::process::Command;

use ferry_manifests::{Input, Policy};
use ferry_model::{Digest, RegistryPath};
use ferry_plan::{Action, GatherOptions, gather, plan};
use ferry_registry::Credentials;
use ferry_testkit::seed::{ImageSpec, Seeder};
use ferry_testkit::world::World;

use crate::support::{client, ferry_bin};

fn summary(plan: &ferry_plan::Plan) -> Vec<String> {
    let mut lines: Vec<String> = plan
        .edges
        .iter()
        .map(|e| {
            format!(
                "{}:{} {}",
                e.destination.path(),
                e.tag.as_ref().map(|t| t.as_str()).unwrap_or("-"),
                e.action.name()
            )
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn plan_covers_every_action_against_real_registries() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    world.write_thin_dir(dir.path(), "").unwrap();
    let desired = ferry_manifests::load(&[Input::KpromoThinDir(dir.path().to_owned())], &Policy::default())
        .unwrap()
        .state;
    let registry = client(&world.hosts(), Credentials::none());
    let facts = gather(&registry, &desired, GatherOptions::default()).await;
    assert_eq!(facts.n_failures(), 0);
    let plan = plan(&desired, &facts);

    let all = summary(&plan);
    let prod_host = world.prod.host();
    let on = |host: &ferry_model::Host| -> Vec<String> {
        let mut v: Vec<String> = plan
            .edges
            .iter()
            .filter(|e| e.destination.host() == host)
            .map(|e| format!("{}:{} {}", e.destination.path(), e.tag.as_ref().unwrap(), e.action.name()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        on(&prod_host),
        [
            "demo/app:1.0 copy",
            "demo/app:1.1 conflict",
            "demo/app:latest overlap",
            "demo/app:latest overlap",
            "demo/ghost:0.1 missing-source",
            "demo/single:2.0 present",
            "demo/tools:3.0 add-tag",
        ],
        "{all:#?}"
    );
    assert_eq!(
        on(&world.mirror.host()),
        [
            "demo/app:1.0 copy",
            "demo/app:1.1 copy",
            "demo/app:latest overlap",
            "demo/app:latest overlap",
            "demo/ghost:0.1 missing-source",
            "demo/single:2.0 copy",
            "demo/tools:3.0 copy",
        ]
    );
    let conflict = plan
        .edges
        .iter()
        .find(|e| e.destination.host() == &prod_host && e.action.name() == "conflict")
        .unwrap();
    assert_eq!(conflict.action, Action::Conflict { existing: world.prod_11.digest });
    let copy = plan.edges.iter().find(|e| e.tag.as_ref().is_some_and(|t| t.as_str() == "1.0")).unwrap();
    assert_eq!(copy.digest, Some(world.index.digest), "the multi-arch index is promoted by its own digest");
    // Planning is read-only: the conflicting tag is untouched.
    assert_eq!(Seeder::new(&world.prod).tag_digest("demo/app", "1.1").await, Some(world.prod_11.digest));
}

#[tokio::test]
async fn a_noop_plan_costs_one_manifest_request_per_edge() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    // Only what prod already holds, tagged: demo/single:2.0.
    std::fs::create_dir_all(dir.path().join("manifests/a")).unwrap();
    std::fs::create_dir_all(dir.path().join("images/a")).unwrap();
    std::fs::write(
        dir.path().join("manifests/a/promoter-manifest.yaml"),
        format!(
            "registries:\n- name: {}\n  src: true\n- name: {}\n",
            world.staging.host(),
            world.prod.host()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("images/a/images.yaml"),
        format!("- name: demo/single\n  dmap:\n    \"{}\": [\"2.0\"]\n", world.single.digest),
    )
    .unwrap();
    let desired = ferry_manifests::load(&[Input::KpromoThinDir(dir.path().to_owned())], &Policy::default())
        .unwrap()
        .state;
    let before_prod = world.prod.access_log().len();
    let before_staging = world.staging.access_log().len();
    let registry = client(&world.hosts(), Credentials::none());
    let plan = plan(&desired, &gather(&registry, &desired, GatherOptions::default()).await);
    assert_eq!(summary(&plan), ["demo/single:2.0 present"]);
    // One HEAD at prod (plus the /v2/ the client may not even need), none at staging.
    let prod_requests: Vec<_> = world.prod.access_log()[before_prod..].to_vec();
    assert_eq!(
        prod_requests.iter().filter(|l| l.path.contains("/manifests/")).count(),
        1,
        "{prod_requests:?}"
    );
    assert_eq!(world.staging.access_log().len(), before_staging, "no source lookups when nothing is missing");
}

#[tokio::test]
async fn images_list_and_charts_sync_resolve_tags_and_pin_digests() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    // images-list: tag resolved at the source, destination retargeted to prod.
    let list = dir.path().join("images-list");
    std::fs::write(
        &list,
        format!(
            "# comment\n{}/demo/app mirrored/app 1.0\n{}/demo/app mirrored/app 9.9\n",
            world.staging.host(),
            world.staging.host()
        ),
    )
    .unwrap();
    let target = RegistryPath::parse(&world.prod.host().to_string()).unwrap();
    // charts sync: staging = staging, "Docker Hub" = mirror (seeded below), prime = prod.
    Seeder::new(&world.mirror)
        .image("rancher/hubonly", Some("v1.0.0"), &ImageSpec::small("amd64", 7, 1))
        .await;
    Seeder::new(&world.staging)
        .image("rancher/fleet", Some("v0.13.8-rc.1"), &ImageSpec::small("amd64", 8, 1))
        .await;
    Seeder::new(&world.mirror)
        .image("rancher/fleet", Some("v0.13.8"), &ImageSpec::small("amd64", 11, 1))
        .await;
    Seeder::new(&world.staging)
        .image("rancher/fleet", Some("v0.13.8"), &ImageSpec::small("amd64", 10, 1))
        .await;
    std::fs::write(dir.path().join("stagingToPrime.yaml"), "rancher/fleet:\n  - v0.13.8\n  - v0.13.8-rc.1\n")
        .unwrap();
    std::fs::write(dir.path().join("dockerToPrime.yaml"), "rancher/hubonly:\n  - v1.0.0\n").unwrap();
    let charts = dir.path().join("charts.yaml");
    std::fs::write(
        &charts,
        format!(
            "staging: {}\ndocker-hub: {}\nprime: {}\ndocker-to-prime: dockerToPrime.yaml\nstaging-to-prime: stagingToPrime.yaml\n",
            world.staging.host(),
            world.mirror.host(),
            world.prod.host()
        ),
    )
    .unwrap();
    let inputs = [Input::ImagesList { file: list, target: Some(target) }, Input::ChartsSync(charts)];
    let desired = ferry_manifests::load(&inputs, &Policy::default()).unwrap().state;
    let registry = client(&world.hosts(), Credentials::none());
    let plan = plan(&desired, &gather(&registry, &desired, GatherOptions::default()).await);
    let mut rows: Vec<String> = plan
        .edges
        .iter()
        .map(|e| {
            format!(
                "{} -> {}:{} {} {}",
                e.source,
                e.destination.path(),
                e.tag.as_ref().unwrap(),
                e.action.name(),
                e.digest.map(|d| d.to_string()).unwrap_or_default()
            )
        })
        .collect();
    rows.sort_by_key(|r| r.split(" -> ").nth(1).unwrap_or_default().to_owned());
    let s = world.staging.host();
    let m = world.mirror.host();
    let fleet = Seeder::new(&world.staging).tag_digest("rancher/fleet", "v0.13.8").await.unwrap();
    let fleet_rc = Seeder::new(&world.staging).tag_digest("rancher/fleet", "v0.13.8-rc.1").await.unwrap();
    let hubonly = Seeder::new(&world.mirror).tag_digest("rancher/hubonly", "v1.0.0").await.unwrap();
    assert_eq!(
        rows,
        [
            format!("{s}/demo/app -> mirrored/app:1.0 copy {}", world.index.digest),
            format!("{s}/demo/app -> mirrored/app:9.9 missing-source "),
            format!("{s}/rancher/fleet -> rancher/fleet:v0.13.8 copy {fleet}"),
            format!("{s}/rancher/fleet -> rancher/fleet:v0.13.8-rc.1 prerelease {fleet_rc}"),
            format!("{m}/rancher/hubonly -> rancher/hubonly:v1.0.0 copy {hubonly}"),
        ],
        "staging wins over Docker Hub; prereleases are refused for Prime"
    );
    let trusted = |path: &str| {
        plan.edges.iter().find(|e| e.destination.path().as_str() == path).unwrap().source_trusted
    };
    assert!(trusted("rancher/fleet") && !trusted("rancher/hubonly"), "staging is trusted, Docker Hub is not");
}

#[tokio::test]
async fn cli_plan_output_exit_codes_and_diff() {
    let world = World::new().await;
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join("registry.example");
    world.write_thin_dir(&dir, "").unwrap();
    let ferry = |args: &[&str]| {
        let out = Command::new(ferry_bin()).args(args).args(world.insecure_flags()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir_arg = dir.display().to_string();

    let (code, stdout, stderr) = ferry(&["plan", "--thin-manifest-dir", &dir_arg]);
    assert_eq!(code, Some(5), "excluded edges give exit 5: {stderr}");
    for line in
        ["copy (5)", "add-tag (1)", "present (1)", "conflict (1)", "missing-source (2)", "overlap (4)"]
    {
        assert!(stdout.contains(line), "{line} missing from:\n{stdout}");
    }
    assert!(stdout.contains(&format!("the tag already points at {}", world.prod_11.digest)), "{stdout}");

    let (code, stdout, _) = ferry(&["plan", "--thin-manifest-dir", &dir_arg, "--output", "json"]);
    assert_eq!(code, Some(5));
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["summary"]["copy"], 5);
    assert_eq!(json["excluded"], 7);
    assert_eq!(json["edges"].as_array().unwrap().len(), 14);
    let (_, yaml, _) = ferry(&["plan", "--thin-manifest-dir", &dir_arg, "--output", "yaml"]);
    assert!(yaml.contains("summary:") && yaml.contains("action: conflict"), "{yaml}");

    // Diff-only against a git revision: commit, then add one digest.
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(repo.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "."]);
    git(&["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base"]);
    let extra_image =
        Seeder::new(&world.staging).image("demo/extra", Some("5.0"), &ImageSpec::small("amd64", 12, 1)).await;
    let extra = format!("- name: demo/extra\n  dmap:\n    \"{}\": [\"5.0\"]\n", extra_image.digest);
    world.write_thin_dir(&dir, &extra).unwrap();
    let (code, stdout, stderr) =
        ferry(&["plan", "--thin-manifest-dir", &dir_arg, "--diff-base-rev", "HEAD", "--output", "json"]);
    assert_eq!(code, Some(0), "{stderr}\n{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let edges = json["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "only the added digest, to prod and mirror: {stdout}");
    assert!(
        edges
            .iter()
            .all(|e| e["destination"].as_str().unwrap().ends_with("/demo/extra") && e["action"] == "copy")
    );

    // Bad entries: left out and reported, one line per problem (exit 5); in lint mode, one error
    // line per problem (exit 3). Never a panic.
    std::fs::write(
        dir.join("images/demo/images.yaml"),
        "- name: demo/app\n  dmap:\n    \"sha256:1\": [v1]\n    \"sha256:2\": [\"-x\"]\n",
    )
    .unwrap();
    let (code, _, stderr) = ferry(&["plan", "--thin-manifest-dir", &dir_arg]);
    assert_eq!(code, Some(5), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("ferry: invalid entry, left out: ")).count(),
        3,
        "{stderr}"
    );
    let (code, _, stderr) = ferry(&["plan", "--strict", "--thin-manifest-dir", &dir_arg]);
    assert_eq!(code, Some(3));
    assert_eq!(stderr.lines().filter(|l| l.starts_with("ferry: error: ")).count(), 3, "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[tokio::test]
async fn snapshot_parses_back_as_images_yaml() {
    let world = World::new().await;
    let ferry = |args: &[&str]| {
        let out = Command::new(ferry_bin()).args(args).args(world.insecure_flags()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let prefix = format!("{}/demo", world.staging.host());
    let yaml = ferry(&["snapshot", &prefix]);
    let images = ferry_manifests::kpromo::parse_images_yaml(Path::new("snapshot.yaml"), &yaml).unwrap();
    let app = images.iter().find(|i| i.name.as_str() == "app").unwrap();
    let tags_of = |digest: Digest| {
        app.digests
            .iter()
            .find(|d| d.digest == digest)
            .map(|d| d.tags.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    };
    assert_eq!(tags_of(world.index.digest), Some(vec!["1.0".to_owned()]));
    assert_eq!(tags_of(world.app_11.digest), Some(vec!["1.1".to_owned()]));
    assert_eq!(tags_of(world.index.children[0].digest), Some(vec![]), "index children appear tagless");
    assert_eq!(images.len(), 3, "app, single and tools");

    let minimal = ferry(&["snapshot", &prefix, "--minimal"]);
    let images = ferry_manifests::kpromo::parse_images_yaml(Path::new("minimal.yaml"), &minimal).unwrap();
    assert_eq!(images.iter().find(|i| i.name.as_str() == "app").unwrap().digests.len(), 2);

    // kpromo's CSV: no header, `name@digest,name:tag`, tagless rows end in `,-`.
    let csv = ferry(&["snapshot", &prefix, "--output", "csv"]);
    assert!(!csv.starts_with("name,"), "{csv}");
    assert!(csv.contains(&format!("app@{},app:1.0\n", world.index.digest)), "{csv}");
    assert!(csv.contains(&format!("app@{},-\n", world.index.children[0].digest)), "{csv}");
    let csv = ferry(&["snapshot", &prefix, "--output", "csv-header"]);
    assert!(csv.starts_with("name,digest,tag\n"));
    assert!(csv.contains(&format!("app,{},1.0\n", world.index.digest)));

    // A snapshot is a valid thin manifest: plan it from staging to itself and it is all present.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests/x")).unwrap();
    std::fs::create_dir_all(dir.path().join("images/x")).unwrap();
    std::fs::write(dir.path().join("images/x/images.yaml"), &yaml).unwrap();
    std::fs::write(
        dir.path().join("manifests/x/promoter-manifest.yaml"),
        format!("registries:\n- name: {prefix}\n  src: true\n- name: {prefix}-copy\n"),
    )
    .unwrap();
    let desired = ferry_manifests::load(&[Input::KpromoThinDir(dir.path().to_owned())], &Policy::default())
        .unwrap()
        .state;
    // app: the index, its two children and 1.1; single; tools.
    assert_eq!(desired.entries.len(), 4 + 1 + 1);
}

/// A real-shaped tree (an orphan folder, `imagesPath`, an empty `dmap:`, one bad digest):
/// promotion plans every valid edge and reports the rest (exit 5); `--strict` refuses it,
/// naming each problem at file:line (exit 3); `--parse-only --output json` lists every edge
/// and the invalid entry without a registry.
#[tokio::test]
async fn a_real_shaped_tree_plans_and_lint_names_every_problem() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "manifests/a/promoter-manifest.yaml",
        &format!(
            "registries:\n- name: {}\n  src: true\n- name: {}\nimagesPath: images/a\n",
            world.staging.host(),
            world.mirror.host()
        ),
    );
    write(
        "images/a/images.yaml",
        &format!(
            "- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n    \"ha256:3ddf\": [\"9.9\"]\n- name: demo/later\n  dmap:\n",
            world.index.digest
        ),
    );
    write("images/orphan/images.yaml", "# No images yet\n");
    let ferry = |args: &[&str]| {
        let out = Command::new(ferry_bin()).args(args).args(world.insecure_flags()).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tree = root.display().to_string();
    let (code, stdout, stderr) = ferry(&["plan", "--thin-manifest-dir", &tree]);
    assert_eq!(code, Some(5), "{stdout}{stderr}");
    assert!(stdout.contains("copy (1)"), "the valid edge is planned: {stdout}");
    assert!(
        stdout.contains("invalid (1)") && stdout.contains("images/a/images.yaml:4  field `images.dmap`"),
        "{stdout}"
    );
    for warning in ["imagesPath", "images/orphan", "empty `dmap:`"] {
        assert!(stderr.contains(warning), "warned about {warning}: {stderr}");
    }

    let (code, stdout, stderr) = ferry(&["plan", "--parse-only", "--strict", "--thin-manifest-dir", &tree]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    for problem in [
        "promoter-manifest.yaml:5: field `imagesPath`",
        "images/a/images.yaml:4: field `images.dmap`",
        "images/a/images.yaml:5: field `images.dmap`",
        "images/orphan: field `images`",
    ] {
        assert!(stderr.contains(problem), "lint names {problem}: {stderr}");
    }

    let (code, stdout, stderr) =
        ferry(&["plan", "--parse-only", "--output", "json", "--thin-manifest-dir", &tree]);
    assert_eq!(code, Some(5), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["edges"].as_array().unwrap().len(), 1, "{stdout}");
    assert_eq!(report["invalid"][0]["action"], "invalid");
    assert_eq!(report["warnings"].as_array().unwrap().len(), 3, "{stdout}");
}

/// Rancher image-mirror's `config.yaml`: an image and an OCI Helm chart to two default target
/// repositories are planned and promoted, digests identical; a credential template naming an
/// unset variable is an error naming the file, line and variable.
#[tokio::test]
async fn rancher_config_yaml_plans_and_promotes_to_two_target_repositories() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    // An OCI Helm chart: any config media type copies byte for byte.
    let config =
        stage.blob("charts/mychart", br#"{"name":"mychart","version":"1.2.3","apiVersion":"v2"}"#).await;
    let content = stage.blob("charts/mychart", b"not really a tarball, but bytes").await;
    let chart = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": config.to_string(), "size": 54},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": content.to_string(), "size": 31}],
    }))
    .unwrap();
    let chart_digest =
        stage.manifest("charts/mychart", "1.2.3", "application/vnd.oci.image.manifest.v1+json", &chart).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        format!(
            "Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.0']\n- SourceArtifact: {s}/charts/mychart\n  \
             TargetArtifactName: charts/mychart\n  Tags: [1.2.3]\nRepositories:\n- BaseUrl: {p}/rancher\n  DefaultTarget: true\n\
             - BaseUrl: {m}/rancher\n  DefaultTarget: true\n",
            s = world.staging.host(),
            p = world.prod.host(),
            m = world.mirror.host()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec![
        "promote".into(),
        "--confirm".into(),
        "--progress".into(),
        "never".into(),
        "--rancher-config".into(),
    ];
    args.push(file.display().to_string());
    args.extend(world.insecure_flags());
    let out = Command::new(ferry_bin()).args(&args).env_remove("FERRY_CONFIG").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for server in [&world.prod, &world.mirror] {
        let seeder = Seeder::new(server);
        assert_eq!(seeder.tag_digest("rancher/mirrored-demo-app", "1.0").await, Some(world.index.digest));
        assert_eq!(seeder.tag_digest("rancher/charts/mychart", "1.2.3").await, Some(chart_digest));
    }

    // A credential template whose variable is unset.
    std::fs::write(
        &file,
        format!(
            "Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.0']\nRepositories:\n- BaseUrl: {p}/rancher\n  DefaultTarget: true\n  \
             Registry: {p}\n  Username: '{{{{ env \"FERRY_TEST_UNSET_USER\" }}}}'\n  Password: '{{{{ env \"FERRY_TEST_UNSET_PASSWORD\" }}}}'\n",
            s = world.staging.host(),
            p = world.prod.host()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec!["plan".into(), "--rancher-config".into(), file.display().to_string()];
    args.extend(world.insecure_flags());
    let out = Command::new(ferry_bin())
        .args(&args)
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_TEST_UNSET_USER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("config.yaml:5: field `Repositories.Username`"), "{stderr}");
    assert!(stderr.contains("FERRY_TEST_UNSET_USER is not set"), "{stderr}");
}

/// regsync's `regsync.yaml`: an image entry and a repository entry whose anchored allow list
/// picks one of the source's tags are promoted; the rest of the source is left alone.
#[tokio::test]
async fn regsync_yaml_image_and_repository_entries_are_promoted() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regsync.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\ndefaults:\n  parallel: 4\nsync:\n- source: {s}/demo/single:2.0\n  target: {m}/regsync/single:2.0\n  type: image\n\
             - source: {s}/demo/app\n  target: {m}/regsync/app\n  type: repository\n  tags:\n    allow: ['1\\.0']\n",
            s = world.staging.host(),
            m = world.mirror.host()
        ),
    )
    .unwrap();
    let mut args: Vec<String> =
        vec!["promote".into(), "--confirm".into(), "--progress".into(), "never".into(), "--regsync".into()];
    args.push(file.display().to_string());
    args.extend(world.insecure_flags());
    let out = Command::new(ferry_bin()).args(&args).env_remove("FERRY_CONFIG").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("defaults.parallel") && stderr.contains("ignored: set --max-images"), "{stderr}");
    let mirror = Seeder::new(&world.mirror);
    assert_eq!(mirror.tag_digest("regsync/app", "1.0").await, Some(world.index.digest));
    assert_eq!(mirror.tag_digest("regsync/app", "1.1").await, None, "not allowed: `1\\.0` is anchored");
    assert!(mirror.tag_digest("regsync/single", "2.0").await.is_some());

    // `ferry status` reads the same file, repository entries resolved the same way: both
    // images copied, neither signed (no key was given), so incomplete.
    let mut status: Vec<String> = vec!["status".into(), "--regsync".into(), file.display().to_string()];
    status.extend(world.insecure_flags());
    let out = Command::new(ferry_bin()).args(&status).env_remove("FERRY_CONFIG").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("regsync/app:1.0  copied yes  signed no"), "{stdout}");
    assert!(stdout.contains("regsync/single:2.0  copied yes  signed no"), "{stdout}");
    assert!(stdout.contains("2 promotion(s): 0 complete, 2 incomplete"), "{stdout}");

    // A `creds` template whose variable is unset: an error naming the file, line and field.
    std::fs::write(
        &file,
        format!(
            "creds:\n- registry: {m}\n  user: '{{{{env \"FERRY_TEST_UNSET_HUB_USER\"}}}}'\n  pass: x\nsync: []\n",
            m = world.mirror.host()
        ),
    )
    .unwrap();
    let out = Command::new(ferry_bin())
        .args(["plan", "--regsync", file.to_str().unwrap()])
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_TEST_UNSET_HUB_USER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("regsync.yaml:2: field `creds.user`"), "{stderr}");
    assert!(stderr.contains("FERRY_TEST_UNSET_HUB_USER is not set"), "{stderr}");
}

/// `ferry import` of every input format, then planning the thin manifests it wrote, gives the
/// same digest-pinned edges (source, digest, destination, tag, primary, trust, action) as
/// planning the inputs directly. A tag missing at its source is listed as not pinned (exit 5);
/// regsync's dropped options are named; a rename and an untrusted source use Ferry's
/// `source-name` and `trusted: false`; an occupied output directory is refused.
#[tokio::test]
async fn import_writes_thin_manifests_that_plan_identically() {
    let world = World::new().await;
    let (s, p, m) = (world.staging.host(), world.prod.host(), world.mirror.host());
    Seeder::new(&world.staging)
        .image("rancher/fleet", Some("v0.13.8"), &ImageSpec::small("amd64", 31, 1))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let list =
        write("images-list", format!("{s}/demo/app mirrored/app 1.0\n{s}/demo/app mirrored/app 9.9\n"));
    let rancher = write(
        "config.yaml",
        format!(
            "Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.0', '1.1']\n- SourceArtifact: {s}/demo/tools\n  \
             TargetArtifactName: tools\n  Tags: ['3.0']\nRepositories:\n- BaseUrl: {p}/rancher\n  DefaultTarget: true\n\
             - BaseUrl: {m}/rancher\n  DefaultTarget: true\n"
        ),
    );
    let regsync = write(
        "regsync.yaml",
        format!(
            "version: 1\ndefaults:\n  parallel: 4\nsync:\n- source: {s}/demo/single:2.0\n  target: {m}/regsync/single:2.0\n  type: image\n\
             - source: {s}/demo/app\n  target: {m}/regsync/app\n  type: repository\n  tagSets:\n  - semverRange: ['>=1.1 <2']\n  \
             - allow: ['1\\.0']\n"
        ),
    );
    write("stagingToPrime.yaml", "rancher/fleet:\n  - v0.13.8\n".into());
    write("dockerToPrime.yaml", String::new());
    let charts = write(
        "charts.yaml",
        format!(
            "staging: {s}\ndocker-hub: {m}\nprime: {p}\ndocker-to-prime: dockerToPrime.yaml\nstaging-to-prime: stagingToPrime.yaml\n"
        ),
    );
    let inputs: Vec<String> = [
        ("--images-list", &list),
        ("--rancher-config", &rancher),
        ("--regsync", &regsync),
        ("--charts-sync", &charts),
    ]
    .iter()
    .flat_map(|(flag, path)| [(*flag).to_owned(), (*path).clone()])
    .chain(["--images-list-target".to_owned(), p.to_string()])
    .collect();
    let run = |args: &[String]| {
        let mut all = args.to_vec();
        all.extend(world.insecure_flags());
        ferry_testkit::outcome(
            &Command::new(ferry_bin()).args(&all).env_remove("FERRY_CONFIG").output().unwrap(),
        )
    };
    let edges = |json: &str| -> Vec<String> {
        let report: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut rows: Vec<String> = report["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.get("digest").is_some())
            .map(|e| {
                format!(
                    "{} {} -> {}:{} primary={} trusted={} {}",
                    e["source"],
                    e["digest"],
                    e["destination"],
                    e["tag"],
                    e["primary"],
                    e["source_trusted"],
                    e["action"]
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let plan_args = |rest: &[String]| -> Vec<String> {
        ["plan".to_owned(), "--output".to_owned(), "json".to_owned()]
            .into_iter()
            .chain(rest.iter().cloned())
            .collect()
    };

    let (code, direct, stderr) = run(&plan_args(&inputs));
    assert_eq!(code, Some(5), "9.9 is missing at the source: {stderr}");
    let direct = edges(&direct);
    assert_eq!(direct.len(), 11, "{direct:#?}");

    let out_dir = dir.path().join("imported");
    let mut import: Vec<String> = vec!["import".into(), "--output-dir".into(), out_dir.display().to_string()];
    import.extend(inputs.iter().cloned());
    let (code, stdout, stderr) = run(&import);
    assert_eq!(code, Some(5), "9.9 cannot be pinned: {stdout}{stderr}");
    assert!(stdout.contains("imported 11 edges"), "{stdout}");
    assert!(stdout.contains("could not pin 1 edges") && stdout.contains("demo/app:9.9"), "{stdout}");
    assert!(stdout.contains("written with Ferry's `source-name`"), "{stdout}");
    assert!(stdout.contains("1 options have no equivalent and were dropped"), "{stdout}");
    assert!(stderr.contains("defaults.parallel"), "{stderr}");

    let (code, imported, stderr) = run(&plan_args(&[
        "--strict".to_owned(),
        "--thin-manifest-dir".to_owned(),
        out_dir.display().to_string(),
    ]));
    assert_eq!(code, Some(0), "nothing is excluded once 9.9 is left out: {stderr}");
    assert_eq!(edges(&imported), direct, "planning the import gives the same edges");

    // The tree reads as kpromo's: the rename and the untrusted source are the only extensions.
    let mut texts = String::new();
    for kind in ["manifests", "images"] {
        for sub in std::fs::read_dir(out_dir.join(kind)).unwrap() {
            for file in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                texts.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
            }
        }
    }
    assert!(texts.contains("source-name: demo/app") && texts.contains("trusted: false"), "{texts}");

    let (code, _, stderr) = run(&import);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("is not empty; ferry import writes a new tree and overwrites nothing"),
        "{stderr}"
    );
}

/// `ferry charts scan`: chart archives built here (nested values, an image split over
/// registry/repository/tag, a digest instead of a tag, a prerelease, a `sha256-` tag, a
/// subchart) become `stagingToPrime.yaml` and `dockerToPrime.yaml` with exactly what Prime
/// lacks, staging first; a tag in no registry is named; the files parse back through
/// `--charts-sync` and promote.
#[tokio::test]
async fn chart_archives_become_the_two_sync_files_which_then_promote() {
    let world = World::new().await;
    let (s, hub, prime) = (&world.staging, &world.mirror, &world.prod);
    let small = |seed| ImageSpec::small("amd64", seed, 1);
    Seeder::new(s).image("rancher/fleet", Some("v0.13.8"), &small(41)).await;
    Seeder::new(hub).image("rancher/fleet", Some("v0.13.8"), &small(42)).await;
    Seeder::new(hub).image("rancher/hubonly", Some("v1.0.0"), &small(43)).await;
    Seeder::new(hub).image("rancher/sub", Some("2.0"), &small(44)).await;
    Seeder::new(prime).image("rancher/done", Some("1.0"), &small(45)).await;
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    let values = format!(
        "global:\n  cattle:\n    systemDefaultRegistry: \"\"\nimage:\n  repository: rancher/fleet\n  tag: v0.13.8\n\
         agent:\n  image:\n    registry: docker.io\n    repository: rancher/hubonly\n    tag: v1.0.0\n\
         helper:\n  image: rancher/pinned@{digest}\nrc:\n  repository: rancher/fleet\n  tag: v0.14.0-rc.1\n\
         sig:\n  repository: rancher/fleet\n  tag: sha256-abc.sig\ndone:\n  repository: rancher/done\n  tag: \"1.0\"\n\
         ghost:\n  repository: rancher/ghost\n  tag: \"9.9\"\n"
    );
    ferry_testkit::chart::archive(
        &assets.join("fleet/fleet-1.0.0.tgz"),
        &[
            ("fleet/Chart.yaml", "apiVersion: v2\nname: fleet\nversion: 1.0.0\n"),
            ("fleet/values.yaml", &values),
            ("fleet/templates/deployment.yaml", "image: {{ .Values.image.repository }}\n"),
            ("fleet/charts/sub/values.yaml", "image: rancher/sub:2.0\n"),
        ],
    )
    .unwrap();
    let config = dir.path().join("charts.yaml");
    std::fs::write(
        &config,
        format!(
            "staging: {}\ndocker-hub: {}\nprime: {}\ndocker-to-prime: dockerToPrime.yaml\nstaging-to-prime: stagingToPrime.yaml\n",
            s.host(),
            hub.host(),
            prime.host()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(world.insecure_flags());
        ferry_testkit::outcome(
            &Command::new(ferry_bin()).args(&all).env_remove("FERRY_CONFIG").output().unwrap(),
        )
    };
    let (code, stdout, stderr) = run(&[
        "charts",
        "scan",
        assets.to_str().unwrap(),
        "--charts-sync",
        config.to_str().unwrap(),
        "--plan",
    ]);
    assert_eq!(code, Some(5), "rancher/ghost:9.9 is in no registry: {stdout}{stderr}");
    assert!(
        stdout.contains("scanned 1 archives (2 values files): 5 image tags wanted, 1 already in"),
        "{stdout}"
    );
    assert!(stdout.contains("in no registry (1 tags, left out):\n  rancher/ghost:9.9"), "{stdout}");
    for reason in [
        "v0.14.0-rc.1 is a prerelease",
        "sha256-abc.sig is a signature",
        "rancher/pinned is pinned by digest only",
    ] {
        assert!(stderr.contains(reason), "{reason}: {stderr}");
    }
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let body = |text: String| text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    assert_eq!(body(read("stagingToPrime.yaml")), "rancher/fleet:\n  - \"v0.13.8\"");
    assert_eq!(
        body(read("dockerToPrime.yaml")),
        "rancher/hubonly:\n  - \"v1.0.0\"\nrancher/sub:\n  - \"2.0\""
    );
    assert!(stdout.contains("copy (3)"), "--plan prints the plan of the written files: {stdout}");

    // The files are the charts sync's own: they plan and promote.
    let (code, stdout, stderr) =
        run(&["promote", "--confirm", "--progress", "never", "--charts-sync", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let prime_seeder = Seeder::new(prime);
    assert_eq!(
        prime_seeder.tag_digest("rancher/fleet", "v0.13.8").await,
        Seeder::new(s).tag_digest("rancher/fleet", "v0.13.8").await
    );
    assert_eq!(
        prime_seeder.tag_digest("rancher/hubonly", "v1.0.0").await,
        Seeder::new(hub).tag_digest("rancher/hubonly", "v1.0.0").await
    );
    assert!(prime_seeder.tag_digest("rancher/sub", "2.0").await.is_some());

    // Scanning again finds everything in Prime: both files empty, exit 0 except the ghost.
    let (code, stdout, _) =
        run(&["charts", "scan", assets.to_str().unwrap(), "--charts-sync", config.to_str().unwrap()]);
    assert_eq!(code, Some(5), "{stdout}");
    assert!(stdout.contains("4 already in"), "{stdout}");
    assert_eq!(body(read("dockerToPrime.yaml")), "{}");
}

/// The regression guard of the desired-state refactor: `ferry plan --parse-only --output json`
/// of the real reference trees (the k8s.io thin manifests, image-mirror's `config.yaml` and its
/// generated `regsync.yaml`, an images-list) is byte for byte what it was before, recorded as
/// SHA-256 (the k8s.io output alone is 23 MB) with the number of edges. A deliberate change of
/// the output updates the sums here, in the same commit, with the reason.
#[test]
fn parse_only_output_of_the_reference_trees_is_unchanged() {
    use sha2::Digest as _;
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (flag, path, edges, sum) in [
        (
            "--thin-manifest-dir",
            "tests/data/kpromo/registry.k8s.io",
            51_431,
            "62f4cee409d209d1d284b40babfe2ec2f23126e9a7162058905199be84607cb8",
        ),
        (
            "--rancher-config",
            "tests/data/rancher/image-mirror-af7cf3b/config.yaml",
            7_526,
            "5966c28e4e0dab76049096a3c591c3d2cb52c19c27071d071a2752708815c459",
        ),
        (
            "--regsync",
            "tests/data/rancher/image-mirror-af7cf3b/regsync.yaml",
            7_526,
            "57c93add1165df9739e1f86850fed48bb27f59ce06cf5f3c4fc3077324dd4b42",
        ),
        (
            "--images-list",
            "tests/data/rancher/image-mirror_images-list.first50.txt",
            45,
            "ae11ce5528fdd793143f175700d2081afcd6bf6cab8d5471ad43f24e26afb424",
        ),
        (
            "--thin-manifest-dir",
            "tests/data/kpromo/promo-tools-image-manifest-testdata/singleton",
            3,
            "3c3c547945fe081c12dec917340109e3145840e77af34f5266d92174e4f0b8c5",
        ),
    ] {
        let out = Command::new(ferry_bin())
            .args(["plan", "--parse-only", "--output", "json", flag, path])
            .current_dir(&top)
            .env_remove("FERRY_CONFIG")
            .output()
            .unwrap();
        let (code, stdout, stderr) = ferry_testkit::outcome(&out);
        assert_eq!(code, Some(0), "{path}: {stderr}");
        let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(parsed["edges"].as_array().map(Vec::len), Some(edges), "{path}");
        let got = hex::encode(sha2::Sha256::digest(stdout.as_bytes()));
        assert_eq!(got, sum, "{path}: the parse-only output changed");
    }
}

/// Parity of the entry points: for every input kind, what the CLI reads (the files it is
/// given) and what the pipeline reads (a git checkout, and GitHub's contents API through its
/// fake, of the same files) resolve to the same desired state against the same registries:
/// the same sources, pins, tags and destinations, entry for entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_kind_reads_the_same_through_the_cli_and_the_pipeline() {
    use ferry_desired::source::{FakeGitHub, GitCheckout, GitHubSource};
    use ferry_desired::{LocalFiles, Scope, Settings, desired_state};
    let world = World::new().await;
    let (s, p, m) = (world.staging.host(), world.prod.host(), world.mirror.host());
    let repo = tempfile::tempdir().unwrap();
    let top = repo.path().canonicalize().unwrap();
    let write = |path: &str, text: String| {
        let file = top.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };
    world.write_thin_dir(&top.join("thin"), "").unwrap();
    write(
        "plain.yaml",
        format!(
            "registries:\n- name: {s}/demo\n  src: true\n- name: {p}/plain\nimages:\n- name: app\n  dmap:\n    \"{}\": [\"1.0\"]\n",
            world.index.digest
        ),
    );
    write("images-list", format!("{s}/demo/single {m}/listed/single 2.0\n"));
    write("stagingToPrime.yaml", "demo/tools:\n  - \"3.0\"\n".into());
    write("dockerToPrime.yaml", String::new());
    write(
        "charts.yaml",
        format!(
            "staging: {s}\ndocker-hub: {m}\nprime: {p}\ndocker-to-prime: dockerToPrime.yaml\nstaging-to-prime: stagingToPrime.yaml\n"
        ),
    );
    write(
        "config.yaml",
        format!(
            "Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.0', '1.1']\nRepositories:\n- BaseUrl: {m}/rancher\n  DefaultTarget: true\n"
        ),
    );
    write(
        "regsync.yaml",
        format!(
            "version: 1\nsync:\n- source: {s}/demo/single:2.0\n  target: {m}/regsync/single:2.0\n  type: image\n\
             - source: {s}/demo/app\n  target: {m}/regsync/app\n  type: repository\n  tags:\n    allow: ['1\\..*']\n"
        ),
    );
    ferry_testkit::git(&top, &["init", "-q"]);
    ferry_testkit::git(&top, &["add", "."]);
    ferry_testkit::git(&top, &["commit", "-qm", "inputs"]);
    let registry = client(&world.hosts(), Credentials::none());
    let settings = Settings::default();
    for (flag, path) in [
        ("--thin-manifest-dir", "thin"),
        ("--manifest", "plain.yaml"),
        ("--images-list", "images-list"),
        ("--charts-sync", "charts.yaml"),
        ("--rancher-config", "config.yaml"),
        ("--regsync", "regsync.yaml"),
    ] {
        let kind = ferry_desired::inputs::KINDS.iter().find(|k| k.flag == flag).unwrap();
        let relative = (kind.input)(path.into());
        let absolute = (kind.input)(top.join(path));
        let entries = |state: ferry_model::DesiredState| -> Vec<String> {
            let mut out: Vec<String> = state
                .entries
                .iter()
                .map(|e| {
                    format!(
                        "{:?} {} {:?} {:?} line {}",
                        e.sources, e.pin, e.tags, e.destinations, e.origin.line
                    )
                })
                .collect();
            out.sort();
            out
        };
        let cli = LocalFiles::new(vec![absolute], Policy::default());
        let cli = entries(desired_state(Some(&cli), &settings, &registry, Scope::Everything).await.unwrap());
        let checkout = GitCheckout::new(top.clone(), vec![relative.clone()], Policy::default());
        let checkout =
            entries(desired_state(Some(&checkout), &settings, &registry, Scope::Everything).await.unwrap());
        let github = GitHubSource::new(FakeGitHub::new(top.clone()), vec![relative], Policy::default());
        let github =
            entries(desired_state(Some(&github), &settings, &registry, Scope::Everything).await.unwrap());
        assert!(!cli.is_empty(), "{flag}: something is asked for");
        assert_eq!(cli, checkout, "{flag}: the CLI and a checkout");
        assert_eq!(cli, github, "{flag}: the CLI and the contents API");
        if flag == "--regsync" {
            assert_eq!(
                cli.len(),
                3,
                "the image entry and the two 1.x tags the repository entry selects: {cli:#?}"
            );
        }
    }
}
