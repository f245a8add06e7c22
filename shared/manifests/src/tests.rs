//! Format conformance (real files from `tests/data/`) and rejection tables.

use std::path::{Path, PathBuf};

use ferry_model::{DesiredState, NoticeKind, RegistryPath, TagOrDigest};

use crate::{Input, ManifestError, Policy, charts, images_list, kpromo, load};

fn data(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(relative)
}

fn distinct_digests(state: &DesiredState) -> usize {
    let mut digests: Vec<_> = state
        .entries
        .iter()
        .map(|e| match &e.pin {
            TagOrDigest::Digest(d) => (e.sources[0].repository.clone(), *d),
            TagOrDigest::Tag(_) => panic!("kpromo entries are pinned by digest"),
        })
        .collect();
    digests.sort();
    digests.dedup();
    digests.len()
}

/// Every real k8s.io subproject parses, with the image, digest and tag counts that
/// `tests/data/kpromo/registry.k8s.io/SOURCES.md` records for each file.
#[test]
fn real_k8s_io_thin_manifests_parse() {
    let root = data("kpromo/registry.k8s.io");
    // (subproject, images, digests, tags, destination registries)
    let cases = [
        ("k8s-staging-cluster-api", 10, 951, 953, 23),
        ("k8s-staging-dns", 24, 954, 954, 20),
        ("k8s-staging-kops", 438, 438, 438, 20),
        ("k8s-staging-kubernetes", 1, 38, 38, 44),
    ];
    for (sub, n_images, n_digests, n_tags, n_destinations) in cases {
        let images = kpromo::read_images_yaml(&root.join("images").join(sub).join("images.yaml")).unwrap();
        assert_eq!(images.len(), n_images, "{sub} images");
        assert_eq!(images.iter().map(|i| i.digests.len()).sum::<usize>(), n_digests, "{sub} digests");
        let tags: usize = images.iter().flat_map(|i| &i.digests).map(|d| d.tags.len()).sum();
        assert_eq!(tags, n_tags, "{sub} tags");
        let registries = kpromo::thin_subprojects(&root).unwrap();
        assert!(registries.contains(&sub.to_owned()));
        let state = load(&[Input::KpromoThinDir(root.clone())], &Policy::default()).unwrap().state;
        let entry = state.entries.iter().find(|e| e.origin.source.contains(sub)).unwrap();
        assert_eq!(entry.destinations.len(), n_destinations, "{sub} destinations");
    }
    let state = load(&[Input::KpromoThinDir(root)], &Policy::default()).unwrap().state;
    assert_eq!(distinct_digests(&state), 951 + 954 + 438 + 38);
}

#[test]
fn kops_repeated_names_and_both_list_styles() {
    let path = data("kpromo/registry.k8s.io/images/k8s-staging-kops/images.yaml");
    let images = kpromo::read_images_yaml(&path).unwrap();
    // dns-controller appears once per release; block lists (`- 1.19.0-alpha.2`) and flow
    // lists (`["1.19.0-alpha.1"]`) both occur in this file.
    let dns: Vec<_> = images.iter().filter(|i| i.name.as_str() == "dns-controller").collect();
    assert!(dns.len() > 10, "dns-controller should repeat, found {}", dns.len());
    let block = images
        .iter()
        .flat_map(|i| &i.digests)
        .find(|d| d.tags.iter().any(|t| t.as_str() == "1.19.0-alpha.2"));
    assert!(block.is_some(), "the block-list entry must parse");
}

#[test]
fn canary_and_singleton_parse() {
    let canary =
        load(&[Input::KpromoThinDir(data("kpromo/promo-tools-canary"))], &Policy::default()).unwrap().state;
    assert_eq!(canary.entries.len(), 3);
    assert_eq!(canary.n_edges(), 6);
    let bom = canary
        .entries
        .iter()
        .find(|e| e.sources[0].repository.to_string() == "gcr.io/k8s-staging-bom/bom")
        .unwrap();
    assert_eq!(bom.destinations[0].repository.to_string(), "us.gcr.io/k8s-cip-test-prod/canary/bom/bom");

    let singleton = load(
        &[Input::KpromoThinDir(data("kpromo/promo-tools-image-manifest-testdata/singleton"))],
        &Policy::default(),
    )
    .unwrap()
    .state;
    assert_eq!(singleton.entries.len(), 1);
    assert_eq!(singleton.n_edges(), 3);
    assert!(singleton.entries[0].sources[0].trusted, "a kpromo src registry is a trusted source");
}

#[test]
fn empty_dir_gives_a_clear_error() {
    let err = load(
        &[Input::KpromoThinDir(data("kpromo/promo-tools-image-manifest-testdata/empty"))],
        &Policy::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a kpromo thin-manifest directory"), "{err}");
    assert!(err.contains("no manifests/ directory"), "{err}");
    assert!(err.contains("non-manifest.txt"), "{err}");
}

const REGISTRIES: &str = "registries:\n- name: gcr.io/stage\n  src: true\n- name: gcr.io/prod\n";
const D1: &str = "sha256:e8ca4f9ff069d6a35f444832097e6650f6594b3ec0de129109d53a1b760884e9";

/// Plain manifests: (name, text, expected error fragment with its line, or None for success).
#[test]
fn plain_manifest_table() {
    let images = |body: &str| format!("{REGISTRIES}images:\n{body}");
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "kpromo readme example",
            format!(
                "registries:\n- name: gcr.io/myproject-staging-area # publicly readable\n  src: true\n\
             - name: gcr.io/myproject-production\n  service-account: foo@google-containers.iam.gserviceaccount.com\n\
             images:\n- name: apple\n  dmap:\n    \"{D1}\": [\"1.1\", \"latest\"]\n"
            ),
            None,
        ),
        ("tagless", images(&format!("- name: a\n  dmap:\n    \"{D1}\": []\n")), None),
        ("block list", images(&format!("- name: a\n  dmap:\n    {D1}:\n    - v1\n    - v2\n")), None),
        (
            "unknown image field",
            images(&format!("- name: a\n  tags: []\n  dmap:\n    \"{D1}\": []\n")),
            Some(":7:3: unknown field `tags`"),
        ),
        (
            "unknown top-level field",
            format!("{REGISTRIES}renames: []\n"),
            Some(":5:1: unknown field `renames`"),
        ),
        (
            "unknown registry field",
            "registries:\n- name: gcr.io/a\n  src: true\n  region: eu\n".into(),
            Some(":4:3: unknown field `region`"),
        ),
        (
            "duplicate digest key",
            images(&format!("- name: a\n  dmap:\n    \"{D1}\": [v1]\n    {D1}: [v2]\n")),
            Some(":9:5: duplicate mapping key"),
        ),
        (
            "duplicate name key",
            images(&format!("- name: a\n  name: b\n  dmap:\n    \"{D1}\": []\n")),
            Some(":7:3: duplicate mapping key: name"),
        ),
        (
            "bad digest",
            images("- name: a\n  dmap:\n    \"sha256:abc\": [v1]\n"),
            Some(":8: field `images.dmap`: invalid digest \"sha256:abc\""),
        ),
        (
            "uppercase digest",
            images(&format!(
                "- name: a\n  dmap:\n    \"{}\": [v1]\n",
                D1.to_uppercase().replace("SHA256", "sha256")
            )),
            Some(":8: field `images.dmap`: invalid digest"),
        ),
        (
            "bad tag",
            images(&format!("- name: a\n  dmap:\n    \"{D1}\": [\"-bad\"]\n")),
            Some(":8: field `images.dmap`: invalid tag \"-bad\""),
        ),
        (
            "repeated tag",
            images(&format!("- name: a\n  dmap:\n    \"{D1}\": [v1, v1]\n")),
            Some(":8: field `images.dmap`: tag v1 is listed twice"),
        ),
        (
            "bad image name",
            images(&format!("- name: Bad\n  dmap:\n    \"{D1}\": []\n")),
            Some(":6: field `images.name`: invalid repository path \"Bad\""),
        ),
        (
            "no source",
            "registries:\n- name: gcr.io/a\n- name: gcr.io/b\n".into(),
            Some("field `registries`: no registry has `src: true`"),
        ),
        (
            "two sources",
            "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\n  src: true\n".into(),
            Some(":4: field `registries.src`: a second `src: true` registry (gcr.io/b)"),
        ),
        (
            "no destination",
            "registries:\n- name: gcr.io/a\n  src: true\n".into(),
            Some("no destination registry"),
        ),
        (
            "repeated registry",
            "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\n- name: gcr.io/b\n".into(),
            Some(":5: field `registries.name`: gcr.io/b is listed twice (first at line 4)"),
        ),
        (
            "bad registry",
            "registries:\n- name: gcr.io/A\n  src: true\n".into(),
            Some(":2: field `registries.name`: invalid repository path \"A\""),
        ),
        (
            "Ferry's source-name and trusted: false",
            format!(
                "registries:\n- name: docker.io\n  src: true\n  trusted: false\n- name: gcr.io/prod\n\
                 images:\n- name: mirrored-a-b\n  source-name: a/b\n  dmap:\n    \"{D1}\": [v1]\n"
            ),
            None,
        ),
        (
            "bad source-name",
            images(&format!("- name: a\n  source-name: A/B\n  dmap:\n    \"{D1}\": []\n")),
            Some(":7: field `images.source-name`: invalid repository path"),
        ),
        (
            "trusted on a destination",
            "registries:\n- name: gcr.io/a\n  src: true\n- name: gcr.io/b\n  trusted: true\n".into(),
            Some(":5: field `registries.trusted`: only the `src: true` registry"),
        ),
        ("not yaml", "Not a promoter manifest\n".into(), Some(":1:1:")),
        ("wrong type", images("- name: a\n  dmap: [1, 2]\n"), Some(":7:")),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, text, want) in cases {
        let path = dir.path().join("manifest.yaml");
        std::fs::write(&path, &text).unwrap();
        let got = lint(kpromo::load_manifest_file(&path, &Policy::default()));
        match (got, want) {
            (Ok(state), None) => assert!(!state.entries.is_empty(), "{name}"),
            (Err(e), Some(fragment)) => {
                let message = e.to_string();
                assert!(message.contains(fragment), "{name}: {message:?} lacks {fragment:?}");
                assert!(
                    message.starts_with(&path.display().to_string()),
                    "{name}: {message:?} must name the file"
                );
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

/// `source-name` and `trusted: false` (written by `ferry import`) change the source, and
/// nothing else.
#[test]
fn ferry_extensions_name_the_source_and_its_trust() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(
        &path,
        format!(
            "registries:\n- name: docker.io\n  src: true\n  trusted: false\n- name: r.example/rancher\n\
             images:\n- name: mirrored-amazon-aws-cli\n  source-name: amazon/aws-cli\n  dmap:\n    \"{D1}\": [\"2.1\"]\n"
        ),
    )
    .unwrap();
    let state = kpromo::load_manifest_file(&path, &Policy::default()).unwrap();
    let entry = &state.entries[0];
    assert_eq!(entry.sources[0].repository.to_string(), "docker.io/amazon/aws-cli");
    assert!(!entry.sources[0].trusted);
    assert_eq!(entry.destinations[0].repository.to_string(), "r.example/rancher/mirrored-amazon-aws-cli");
    assert!(state.notices.is_empty(), "`trusted: false` says it: {:?}", state.notices);
    // Docker Hub is never trusted, whatever says so; any other source is, when the
    // configuration's trusted sources list it.
    let trusted = Policy {
        trusted_sources: vec![
            RegistryPath::parse("docker.io/amazon").unwrap(),
            RegistryPath::parse("quay.io").unwrap(),
        ],
        ..Policy::default()
    };
    let state = kpromo::load_manifest_file(&path, &trusted).unwrap();
    assert!(!state.entries[0].sources[0].trusted, "Docker Hub stays untrusted");
    std::fs::write(
        &path,
        format!(
            "registries:\n- name: quay.io/amazon\n  src: true\n  trusted: false\n- name: r.example/rancher\n\
             images:\n- name: aws-cli\n  dmap:\n    \"{D1}\": [\"2.1\"]\n"
        ),
    )
    .unwrap();
    let state = kpromo::load_manifest_file(&path, &trusted).unwrap();
    assert!(state.entries[0].sources[0].trusted, "the configuration's trusted sources still apply");
    // A kpromo manifest whose source is Docker Hub, trusted by kpromo's default: a warning.
    std::fs::write(
        &path,
        format!("registries:\n- name: index.docker.io/amazon\n  src: true\n- name: r.example/rancher\nimages:\n- name: aws-cli\n  dmap:\n    \"{D1}\": [\"2.1\"]\n"),
    )
    .unwrap();
    let state = kpromo::load_manifest_file(&path, &Policy::default()).unwrap();
    assert!(!state.entries[0].sources[0].trusted);
    assert_eq!(state.notices.len(), 1);
    assert!(
        state.notices[0]
            .to_string()
            .contains(":2: field `registries.src`: Docker Hub is never a trusted source")
    );
}

#[test]
fn every_problem_in_a_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(
        &path,
        format!("{REGISTRIES}images:\n- name: a\n  dmap:\n    \"sha256:1\": [v1]\n    \"{D1}\": [\"x y\"]\n"),
    )
    .unwrap();
    let err = lint(kpromo::load_manifest_file(&path, &Policy::default())).unwrap_err();
    assert_eq!(err.problems().len(), 2, "{err}");
}

#[cfg(unix)]
#[test]
fn thin_dir_refuses_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("images.yaml"), "[]\n").unwrap();
    let cases = ["images-file", "images-dir", "manifests-dir"];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("manifests/a")).unwrap();
        std::fs::write(root.join("manifests/a/promoter-manifest.yaml"), REGISTRIES).unwrap();
        match case {
            "images-file" => {
                std::fs::create_dir_all(root.join("images/a")).unwrap();
                std::os::unix::fs::symlink(
                    outside.path().join("images.yaml"),
                    root.join("images/a/images.yaml"),
                )
                .unwrap();
            }
            "images-dir" => {
                std::fs::create_dir_all(root.join("images")).unwrap();
                std::os::unix::fs::symlink(outside.path(), root.join("images/a")).unwrap();
            }
            _ => {
                std::fs::create_dir_all(root.join("images/a")).unwrap();
                std::fs::write(root.join("images/a/images.yaml"), "[]\n").unwrap();
                std::os::unix::fs::symlink(outside.path(), root.join("manifests/b")).unwrap();
            }
        }
        let err = kpromo::load_thin_dir(root, &Policy::default()).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{case}: {err}");
    }
}

#[test]
fn thin_dir_layout_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("manifests/a")).unwrap();
    std::fs::create_dir_all(root.join("images/b")).unwrap();
    std::fs::write(root.join("manifests/a/promoter-manifest.yaml"), REGISTRIES).unwrap();
    std::fs::write(root.join("manifests/OWNERS"), "approvers: []\n").unwrap();
    let err = kpromo::load_thin_dir(root, &Policy::default()).unwrap_err().to_string();
    assert!(err.contains("images/a/images.yaml: is missing"), "{err}");
    assert!(!err.contains("OWNERS"), "plain files beside subprojects are ignored: {err}");
    // An orphan images/<sub> is what kpromo never reads: a warning, an error only when linting.
    std::fs::create_dir_all(root.join("images/a")).unwrap();
    std::fs::write(root.join("images/a/images.yaml"), "[]\n").unwrap();
    let tolerant = kpromo::load_thin_dir(root, &Policy::default()).unwrap();
    assert_eq!(tolerant.notices.len(), 1, "{:?}", tolerant.notices);
    let err = lint(kpromo::load_thin_dir(root, &Policy::default())).unwrap_err().to_string();
    assert!(err.contains("images/b: field `images`: has no matching manifests/b"), "{err}");
}

/// Lint mode (`--strict`): every notice is an error, as the parsers were strict before.
fn lint(loaded: Result<DesiredState, ManifestError>) -> Result<DesiredState, ManifestError> {
    let desired = loaded?;
    crate::strict(desired.notices.clone())?;
    Ok(desired)
}

#[test]
fn rancher_images_list_sample_parses() {
    let path = data("rancher/image-mirror_images-list.first50.txt");
    let state = images_list::load(&path, None, &Policy::default()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let data_lines =
        text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("//")).count();
    assert_eq!(state.entries.len(), data_lines);
    let first = &state.entries[0];
    assert_eq!(first.sources[0].repository.to_string(), "docker.io/amazon/aws-cli");
    assert_eq!(first.destinations[0].repository.to_string(), "docker.io/rancher/mirrored-amazon-aws-cli");
    assert_eq!(first.pin, TagOrDigest::Tag("2.0.52".parse().unwrap()));
    assert!(!first.sources[0].trusted, "upstream sources are untrusted unless configured");
    assert_eq!(first.origin.line, 6);

    let target = RegistryPath::parse("127.0.0.1:5002/mirror").unwrap();
    let retargeted = images_list::load(&path, Some(&target), &Policy::default()).unwrap();
    assert_eq!(
        retargeted.entries[0].destinations[0].repository.to_string(),
        "127.0.0.1:5002/mirror/rancher/mirrored-amazon-aws-cli"
    );
}

#[test]
fn images_list_table() {
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("nginx rancher/nginx 1.25\n", Ok("docker.io/library/nginx -> docker.io/rancher/nginx")),
        ("  // comment\n# other\n\nquay.io/a/b rancher/b v1 \n", Ok("quay.io/a/b -> docker.io/rancher/b")),
        ("a b\n", Err(":1: field `line`: expected 3 fields `<source> <destination> <tag>`, found 2")),
        ("a b c d\n", Err("found 4")),
        ("A/b c/d v1\n", Err(":1: field `source`: invalid repository path")),
        ("a/b c/D v1\n", Err(":1: field `destination`")),
        ("a/b c/d -v1\n", Err(":1: field `tag`: invalid tag")),
        ("a b v1\n# x\na b v1\n", Err(":3: field `line`: duplicate of line 1")),
    ];
    for (text, want) in cases {
        let got = lint(images_list::parse(Path::new("images-list"), text, None, &Policy::default()));
        match (got, want) {
            (Ok(state), Ok(edge)) => {
                let e = &state.entries[0];
                assert_eq!(&format!("{} -> {}", e.sources[0].repository, e.destinations[0].repository), edge);
            }
            (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{text:?}: {e}"),
            (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
        }
    }
}

fn charts_config(dir: &Path, extra: &str) -> PathBuf {
    for name in ["charts_dockerToPrime.yaml", "charts_stagingToPrime.yaml"] {
        std::fs::copy(data(&format!("rancher/{name}")), dir.join(name)).unwrap();
    }
    let config = dir.join("charts-sync.yaml");
    std::fs::write(
        &config,
        format!(
            "staging: stgregistry.suse.com\nprime: registry.rancher.com\n\
             docker-to-prime: charts_dockerToPrime.yaml\nstaging-to-prime: charts_stagingToPrime.yaml\n{extra}"
        ),
    )
    .unwrap();
    config
}

#[test]
fn rancher_charts_sync_samples_parse() {
    let dir = tempfile::tempdir().unwrap();
    let config = charts_config(dir.path(), "");
    let state = charts::load(&config, &Policy::default()).unwrap();
    assert_eq!(state.entries.len(), 5);
    let fleet = state
        .entries
        .iter()
        .find(|e| e.destinations[0].repository.to_string() == "registry.rancher.com/rancher/fleet")
        .unwrap();
    let sources: Vec<String> =
        fleet.sources.iter().map(|s| format!("{}:{}", s.repository, s.trusted)).collect();
    assert_eq!(sources, ["stgregistry.suse.com/rancher/fleet:true", "docker.io/rancher/fleet:false"]);
    assert!(fleet.destinations[0].deny_prerelease, "prime denies prereleases by default");

    let lenient =
        charts::load(&charts_config(dir.path(), "deny-prerelease: false\n"), &Policy::default()).unwrap();
    assert!(!lenient.entries[0].destinations[0].deny_prerelease);
}

#[test]
fn charts_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let config = charts_config(dir.path(), "");
    let parsed = charts::read_config(&config).unwrap();
    let cases = [
        ("rancher/fleet:\n  - v1\n  - v1\n", ":3: field `tags`: tag v1 is listed twice"),
        ("rancher/fleet: []\n", ":1: field `tags`: rancher/fleet lists no tags"),
        ("Rancher/fleet: [v1]\n", ":1: field `repository`"),
        ("rancher/fleet: [v1]\nrancher/fleet: [v2]\n", ":2:1: duplicate mapping key"),
    ];
    for (text, fragment) in cases {
        let err = lint(charts::parse_sync_file(Path::new("sync.yaml"), text, &parsed, &Policy::default()))
            .unwrap_err();
        assert!(err.to_string().contains(fragment), "{text:?}: {err}");
    }
    std::fs::write(dir.path().join("bad.yaml"), "staging: a.io\nprime: b.io\nextra: 1\n").unwrap();
    let err = charts::read_config(&dir.path().join("bad.yaml")).unwrap_err().to_string();
    assert!(err.contains("unknown field `extra`"), "{err}");
    std::fs::write(dir.path().join("none.yaml"), "staging: a.io\nprime: b.io\n").unwrap();
    let err = charts::read_config(&dir.path().join("none.yaml")).unwrap_err().to_string();
    assert!(
        err.contains("none of `docker-to-prime`, `staging-to-prime` and `custom-to-prime` is set"),
        "{err}"
    );
}

#[test]
fn policy_marks_destinations_and_sources() {
    let policy = Policy {
        deny_prerelease: vec![RegistryPath::parse("us.gcr.io/some-prod").unwrap()],
        trusted_sources: vec![],
    };
    let state =
        load(&[Input::KpromoThinDir(data("kpromo/promo-tools-image-manifest-testdata/singleton"))], &policy)
            .unwrap()
            .state;
    let marks: Vec<(String, bool)> = state.entries[0]
        .destinations
        .iter()
        .map(|d| (d.repository.host().to_string(), d.deny_prerelease))
        .collect();
    assert_eq!(
        marks,
        [("us.gcr.io".to_owned(), true), ("eu.gcr.io".to_owned(), false), ("asia.gcr.io".to_owned(), false)]
    );
}

#[test]
fn snapshot_writer_round_trips() {
    let path = data("kpromo/registry.k8s.io/images/k8s-staging-dns/images.yaml");
    let images = kpromo::read_images_yaml(&path).unwrap();
    let written = kpromo::write_images_yaml(&images);
    let reread = kpromo::parse_images_yaml(Path::new("written.yaml"), &written).unwrap();
    let canonical = |list: &[kpromo::ImageDmap]| {
        let mut rows: Vec<(String, String, Vec<String>)> = list
            .iter()
            .flat_map(|i| {
                i.digests.iter().map(move |d| {
                    let mut tags: Vec<String> = d.tags.iter().map(|t| t.to_string()).collect();
                    tags.sort();
                    (i.name.to_string(), d.digest.to_string(), tags)
                })
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(canonical(&images), canonical(&reread));
}

#[test]
fn load_reports_every_broken_input() {
    let err = load(
        &[
            Input::KpromoThinDir(data("kpromo/promo-tools-image-manifest-testdata/empty")),
            Input::KpromoManifest(data("does-not-exist.yaml")),
        ],
        &Policy::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ManifestError::Many(ref all) if all.len() == 2), "{err}");
}

#[test]
fn git_materialize_reads_a_revision() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").arg("-C").arg(repo.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["config", "user.email", "t@example.com"]);
    git(&["config", "user.name", "t"]);
    std::fs::write(repo.path().join("list"), "a b v1\n").unwrap();
    git(&["add", "list"]);
    git(&["commit", "-qm", "one"]);
    std::fs::write(repo.path().join("list"), "a b v1\na b v2\n").unwrap();
    git(&["commit", "-qam", "two"]);

    let top = crate::git::toplevel(repo.path()).unwrap();
    let snapshot = crate::git::materialize(&top, "HEAD~1", &[PathBuf::from("list")]).unwrap();
    assert_eq!(std::fs::read_to_string(snapshot.path(Path::new("list"))).unwrap(), "a b v1\n");
    let missing = crate::git::materialize(&top, "HEAD", &[PathBuf::from("nope")]).unwrap();
    assert!(!missing.path(Path::new("nope")).exists());
    assert!(crate::git::materialize(&top, "--output=x", &[]).is_err());
    assert!(crate::git::materialize(&top, "no-such-rev", &[]).is_err());
}

/// A subproject whose directory name is not UTF-8 (and one whose name holds a newline) is
/// reported, with every byte of its name, at the head of a change and in a full read; the
/// rest of the tree still plans.
#[test]
fn paths_ferry_cannot_name_are_reported_not_lost() {
    use std::os::unix::ffi::OsStrExt as _;
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").arg("-C").arg(repo.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    git(&["config", "user.email", "t@example.com"]);
    git(&["config", "user.name", "t"]);
    let tree = repo.path().join("registry.example");
    let sub = |name: &std::ffi::OsStr, digest: &str| {
        let manifests = tree.join("manifests").join(name);
        let images = tree.join("images").join(name);
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(
            manifests.join("promoter-manifest.yaml"),
            "registries:\n- name: staging.example/team\n  src: true\n- name: prod.example/team\n",
        )
        .unwrap();
        std::fs::write(
            images.join("images.yaml"),
            format!("- name: app\n  dmap:\n    \"{digest}\": [\"1.0\"]\n"),
        )
        .unwrap();
    };
    let digest = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
    sub("good".as_ref(), &digest(1));
    git(&["add", "."]);
    git(&["commit", "-qm", "base"]);
    sub(std::ffi::OsStr::from_bytes(b"bad\xff\xfe"), &digest(2));
    sub("newline\nname".as_ref(), &digest(3));
    sub("fine".as_ref(), &digest(4));
    git(&["add", "."]);
    git(&["commit", "-qm", "head"]);

    let input = Input::KpromoThinDir(tree.clone());
    let change = crate::revision::load_change(
        std::slice::from_ref(&input),
        "HEAD~1",
        Some("HEAD"),
        &Policy::default(),
    )
    .unwrap();
    let digests: Vec<String> = change.head.state.entries.iter().map(|e| e.pin.to_string()).collect();
    assert_eq!(digests, vec![digest(4)], "only the nameable new subproject is read");
    let places: Vec<String> = change.head.state.notices.iter().map(|n| n.origin.source.to_string()).collect();
    assert_eq!(places.len(), 4, "{places:?}");
    assert!(places.iter().any(|p| p.contains("images/bad\\xff\\xfe/images.yaml")), "{places:?}");
    assert!(places.iter().any(|p| p.contains("manifests/newline\\nname/")), "{places:?}");
    assert!(
        change.head.state.notices.iter().all(|n| n.kind == NoticeKind::Invalid && n.field.as_ref() == "path")
    );

    // A full read of the merged tree: the same two names reported, everything else planned.
    let state = load(&[input], &Policy::default()).unwrap().state;
    let mut digests: Vec<String> = state.entries.iter().map(|e| e.pin.to_string()).collect();
    digests.sort();
    assert_eq!(digests, vec![digest(1), digest(4)]);
    let invalid: Vec<String> = state.invalid().map(|n| n.origin.source.to_string()).collect();
    assert_eq!(invalid.len(), 4, "{invalid:?}");
    assert!(invalid.iter().any(|p| p.ends_with("manifests/bad\\xff\\xfe")), "{invalid:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn images_yaml_parser_never_panics(text in "(\\PC|\n|\t| |:|-|\\[|\\]|\"|'|#|&|\\*|!|\\{|\\}|,){0,300}") {
        let _ = kpromo::parse_images_yaml(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn images_list_parser_never_panics(text in "(\\PC|\n| |/|:|@|#){0,300}") {
        let _ = images_list::parse(Path::new("fuzz"), &text, None, &Policy::default());
    }

    #[test]
    fn mutated_real_manifest_never_panics(cut in 0usize..4000, insert in "(\\PC|\n| |:|-){0,8}") {
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let text = TEXT.get_or_init(|| {
            std::fs::read_to_string(data("kpromo/registry.k8s.io/images/k8s-staging-dns/images.yaml")).unwrap()
        });
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) { cut -= 1; }
        let mutated = format!("{}{}{}", &text[..cut], insert, &text[cut..]);
        let _ = kpromo::parse_images_yaml(Path::new("fuzz.yaml"), &mutated);
    }
}

#[test]
fn load_change_reads_only_touched_subprojects() {
    // The thin-manifest directory in a subdirectory, and at the repository's top level (the
    // layout of the k8s.io manifests repository's own promoter tree).
    for layout in ["k8s", ""] {
        load_change_case(layout);
    }
}

fn load_change_case(layout: &str) {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let root = if layout.is_empty() { repo.path().to_path_buf() } else { repo.path().join(layout) };
    let write_sub = |sub: &str, images: &str| {
        std::fs::create_dir_all(root.join("manifests").join(sub)).unwrap();
        std::fs::create_dir_all(root.join("images").join(sub)).unwrap();
        std::fs::write(root.join("manifests").join(sub).join("promoter-manifest.yaml"), REGISTRIES).unwrap();
        std::fs::write(root.join("images").join(sub).join("images.yaml"), images).unwrap();
    };
    let d2 = "sha256:06fdf10aae2eeeac5a82c213e4693f82ab05b3b09b820fce95a7cac0bbdad534";
    write_sub("a", &format!("- name: a\n  dmap:\n    \"{D1}\": [v1]\n"));
    write_sub("b", &format!("- name: b\n  dmap:\n    \"{D1}\": [v1]\n"));
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "base"]);
    // Change a, leave b alone, and add an untracked subproject c. b must not be read.
    write_sub("a", &format!("- name: a\n  dmap:\n    \"{D1}\": [v1]\n    \"{d2}\": [v2]\n"));
    write_sub("c", &format!("- name: c\n  dmap:\n    \"{d2}\": []\n"));
    let input = Input::KpromoThinDir(root.clone());
    let change = crate::revision::load_change(std::slice::from_ref(&input), "HEAD", None, &Policy::default())
        .unwrap_or_else(|e| panic!("layout {layout:?}: {e}"));
    let names = |state: &DesiredState| {
        let mut n: Vec<String> =
            state.entries.iter().map(|e| e.sources[0].repository.path().to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&change.base.state), ["stage/a"]);
    assert_eq!(names(&change.head.state), ["stage/a", "stage/a", "stage/c"]);
    let new = ferry_plan_free_diff(&change);
    assert_eq!(new, 2, "the new digest in a and the new subproject c");

    git(&["add", "."]);
    git(&["commit", "-qm", "head"]);
    let committed = crate::revision::load_change(&[input], "HEAD~1", Some("HEAD"), &Policy::default())
        .unwrap_or_else(|e| panic!("layout {layout:?}: {e}"));
    assert_eq!(names(&committed.head.state), ["stage/a", "stage/a", "stage/c"]);
}

/// Counts head entries whose (source, digest) the base lacks; enough to check the inputs of a
/// diff without depending on the planner crate.
fn ferry_plan_free_diff(change: &crate::revision::Change) -> usize {
    let key = |e: &ferry_model::Entry| (e.sources[0].repository.clone(), e.pin.clone());
    let base: Vec<_> = change.base.state.entries.iter().map(key).collect();
    change.head.state.entries.iter().filter(|e| !base.contains(&key(e))).count()
}

/// Real manifests reuse one anchored tag list for many digests: 200 aliases of one anchor parse.
/// An alias bomb (each level doubling the one before) is still refused, in words.
#[test]
fn anchors_reused_many_times_parse_and_alias_bombs_are_refused_in_words() {
    let mut text = String::from("- name: app\n  dmap:\n");
    for i in 0..200u32 {
        let digest = ferry_model::Digest::of(&i.to_be_bytes());
        if i == 0 {
            text.push_str(&format!("    \"{digest}\": &tags [\"v1\", \"v1-stable\"]\n"));
        } else {
            text.push_str(&format!("    \"{digest}\": *tags\n"));
        }
    }
    let images = kpromo::parse_images_yaml(Path::new("images.yaml"), &text).unwrap();
    assert_eq!(images.len(), 1);

    let mut bomb = String::from("a0: &a0 [\"x\", \"x\"]\n");
    for level in 1..40 {
        bomb.push_str(&format!("a{level}: &a{level} [*a{prev}, *a{prev}]\n", prev = level - 1));
    }
    // Read without a schema, so that nothing but the budget stops the expansion.
    let err =
        crate::yaml::parse::<serde::de::IgnoredAny>(Path::new("images.yaml"), &bomb).unwrap_err().to_string();
    assert!(err.starts_with("images.yaml:"), "{err}");
    assert!(err.contains("the YAML is refused"), "{err}");
    assert!(!err.contains('{') && !err.contains("Budget"), "no Rust debug text: {err}");
}

/// Real manifest trees, each case a small thin-manifest tree: promotion reads what kpromo reads
/// and reports the rest; lint mode (`--strict`) refuses every notice. (case, files, edges in
/// promotion mode, notices as `kind line field`, does lint refuse it)
#[test]
fn real_trees_plan_every_valid_edge_and_lint_names_each_problem() {
    let d2 = "sha256:06fdf10aae2eeeac5a82c213e4693f82ab05b3b09b820fce95a7cac0bbdad534";
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, usize, Vec<&'a str>);
    let registries = REGISTRIES.to_owned();
    let cases: Vec<Case> = vec![
        (
            "a clean tree",
            vec![
                ("manifests/a/promoter-manifest.yaml", registries.clone()),
                ("images/a/images.yaml", format!("- name: x\n  dmap:\n    \"{D1}\": [v1]\n")),
            ],
            1,
            vec![],
        ),
        (
            "an orphan images folder with a placeholder",
            vec![
                ("manifests/a/promoter-manifest.yaml", registries.clone()),
                ("images/a/images.yaml", format!("- name: x\n  dmap:\n    \"{D1}\": [v1]\n")),
                ("images/orphan/images.yaml", "# No images yet\n".into()),
            ],
            1,
            vec!["Warning 0 images"],
        ),
        (
            "imagesPath in a promoter manifest",
            vec![
                ("manifests/a/promoter-manifest.yaml", format!("{registries}imagesPath: images/a\n")),
                ("images/a/images.yaml", format!("- name: x\n  dmap:\n    \"{D1}\": [v1]\n")),
            ],
            1,
            vec!["Warning 5 imagesPath"],
        ),
        (
            "an empty dmap: placeholder",
            vec![
                ("manifests/a/promoter-manifest.yaml", registries.clone()),
                (
                    "images/a/images.yaml",
                    format!("- name: x\n  dmap:\n    \"{D1}\": [v1]\n- name: later\n  dmap:\n"),
                ),
            ],
            1,
            vec!["Warning 4 images.dmap"],
        ),
        (
            "one bad digest among valid entries in two subprojects",
            vec![
                ("manifests/a/promoter-manifest.yaml", registries.clone()),
                (
                    "images/a/images.yaml",
                    format!(
                        "- name: x\n  dmap:\n    \"{D1}\": [v1]\n    \"ha256:3ddf\": [v2]\n    \"{d2}\": [v3]\n"
                    ),
                ),
                ("manifests/b/promoter-manifest.yaml", registries.clone()),
                ("images/b/images.yaml", format!("- name: y\n  dmap:\n    \"{D1}\": [v1, v2]\n")),
            ],
            4,
            vec!["Invalid 4 images.dmap"],
        ),
        (
            "a bad tag among good ones, and an image name that cannot be valid",
            vec![
                ("manifests/a/promoter-manifest.yaml", registries.clone()),
                (
                    "images/a/images.yaml",
                    format!(
                        "- name: x\n  dmap:\n    \"{D1}\": [v1, \"bad tag\"]\n- name: Bad/Name\n  dmap:\n    \"{d2}\": [v1]\n"
                    ),
                ),
            ],
            1,
            vec!["Invalid 3 images.dmap", "Invalid 4 images.name"],
        ),
    ];
    for (case, files, edges, notices) in cases {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in &files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let desired =
            kpromo::load_thin_dir(dir.path(), &Policy::default()).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(desired.n_edges(), edges, "{case}: edges (each entry here has one destination)");
        let got: Vec<String> =
            desired.notices.iter().map(|n| format!("{:?} {} {}", n.kind, n.origin.line, n.field)).collect();
        assert_eq!(got, notices, "{case}: notices {:?}", desired.notices);
        let linted = lint(kpromo::load_thin_dir(dir.path(), &Policy::default()));
        match (notices.is_empty(), linted) {
            (true, Ok(_)) => {}
            (false, Err(e)) => {
                assert_eq!(e.problems().len(), notices.len(), "{case}: one error per problem: {e}")
            }
            (clean, got) => panic!(
                "{case}: lint on a tree {} gave {got:?}",
                if clean { "without problems" } else { "with problems" }
            ),
        }
    }
}

/// A diff whose base has a bad digest and whose head repairs it plans exactly the repaired
/// entry, and what a side reports names `base@<rev>:` / `head@<rev>:` and the path in the
/// repository, never a temporary folder.
#[test]
fn a_commit_that_repairs_a_typo_plans_exactly_the_repair() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let write = |images: &str| {
        std::fs::create_dir_all(repo.path().join("manifests/a")).unwrap();
        std::fs::create_dir_all(repo.path().join("images/a")).unwrap();
        std::fs::write(repo.path().join("manifests/a/promoter-manifest.yaml"), REGISTRIES).unwrap();
        std::fs::write(repo.path().join("images/a/images.yaml"), images).unwrap();
    };
    let good = "sha256:3ddf10aae2eeeac5a82c213e4693f82ab05b3b09b820fce95a7cac0bbdad5341";
    write(&format!("- name: x\n  dmap:\n    \"{D1}\": [v1]\n    \"ha256:3ddf\": [v2]\n"));
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "typo"]);
    let base = git(&["rev-parse", "HEAD"]);
    write(&format!("- name: x\n  dmap:\n    \"{D1}\": [v1]\n    \"{good}\": [v2]\n"));
    git(&["commit", "-qam", "fix the typo"]);
    let head = git(&["rev-parse", "HEAD"]);
    let input = Input::KpromoThinDir(repo.path().to_path_buf());
    let change =
        crate::revision::load_change(std::slice::from_ref(&input), &base, Some(&head), &Policy::default())
            .unwrap();
    assert_eq!(ferry_plan_free_diff(&change), 1, "exactly the repaired digest is new");
    let origin = change.head.state.entries[1].origin.to_string();
    assert_eq!(origin, format!("head@{head}:images/a/images.yaml:4"));
    assert!(
        change
            .base
            .state
            .notices
            .iter()
            .any(|n| n.origin.source.starts_with(&format!("base@{base}:images/a/")))
    );

    // A fatal problem on one side names that side too.
    write("- name: x\n  dmap: [\n");
    let err = crate::revision::load_change(std::slice::from_ref(&input), &head, None, &Policy::default())
        .unwrap_err();
    assert!(err.to_string().contains("images/a/images.yaml"), "{err}");
    std::fs::write(repo.path().join("images/a/images.yaml"), "- name: x\n  dmap: [\n").unwrap();
    git(&["commit", "-qam", "break"]);
    let broken = git(&["rev-parse", "HEAD"]);
    let err = crate::revision::load_change(&[input], &head, Some(&broken), &Policy::default()).unwrap_err();
    assert!(err.to_string().starts_with(&format!("head@{broken}:images/a/images.yaml:")), "{err}");
}

proptest::proptest! {
    /// Tolerant reading plans exactly what strict reading plans once the invalid entries are
    /// deleted from the file.
    #[test]
    fn tolerant_equals_strict_without_the_invalid_entries(
        rows in proptest::collection::vec((0u8..4, 0u32..1000, 0u8..3), 1..12)
    ) {
        // Each row: 0 a valid digest, 1 a bad digest, 2 a valid digest with a bad tag beside
        // a good one, 3 a valid digest whose only tag is bad.
        let mut all = String::from("- name: x\n  dmap:\n");
        let mut valid_only = all.clone();
        let mut seen = std::collections::BTreeSet::new();
        for (kind, n, tags) in rows {
            if !seen.insert(n) { continue; }
            let digest = ferry_model::Digest::of(&n.to_be_bytes()).to_string();
            let good_tags: Vec<String> = (0..tags).map(|t| format!("\"v{t}\"")).collect();
            match kind {
                0 => {
                    let line = format!("    \"{digest}\": [{}]\n", good_tags.join(", "));
                    all.push_str(&line);
                    valid_only.push_str(&line);
                }
                1 => all.push_str(&format!("    \"sha256:{n}\": [v1]\n")),
                2 => {
                    all.push_str(&format!("    \"{digest}\": [\"good\", \"bad tag\"]\n"));
                    valid_only.push_str(&format!("    \"{digest}\": [\"good\"]\n"));
                }
                _ => all.push_str(&format!("    \"{digest}\": [\"bad tag\"]\n")),
            }
        }
        if !valid_only.contains("sha256") {
            valid_only = "- name: x\n  dmap: {}\n".into();
        }
        let tolerant = kpromo::parse_images_yaml_with_notices(Path::new("t.yaml"), &all).unwrap().0;
        let strict = kpromo::parse_images_yaml(Path::new("v.yaml"), &valid_only).unwrap();
        let edges = |images: &[kpromo::ImageDmap]| -> Vec<(String, Vec<String>)> {
            images.iter().flat_map(|i| i.digests.iter().map(|d| (d.digest.to_string(), d.tags.iter().map(ToString::to_string).collect()))).collect()
        };
        proptest::prop_assert_eq!(edges(&tolerant), edges(&strict));
    }
}

/// `customToPrime.yaml` (charts-build-scripts' release-candidate path): staging only, to
/// `<prime>/<custom-path>/<repository without rancher/>`, prereleases allowed there.
#[test]
fn charts_custom_to_prime() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customToPrime.yaml"),
        "rancher/rancher:\n  - v2.13.0-rc1\nother/tool: [v1]\n",
    )
    .unwrap();
    let config = charts_config(dir.path(), "custom-to-prime: customToPrime.yaml\ncustom-path: rc\n");
    let desired = crate::load(&[Input::ChartsSync(config.clone())], &Policy::default()).unwrap().state;
    let custom: Vec<String> = desired
        .entries
        .iter()
        .filter(|e| e.origin.source.ends_with("customToPrime.yaml"))
        .map(|e| {
            let sources: Vec<String> = e.sources.iter().map(|s| s.repository.to_string()).collect();
            format!(
                "{}:{} -> {} deny={}",
                sources.join("|"),
                e.pin,
                e.destinations[0].repository,
                e.destinations[0].deny_prerelease
            )
        })
        .collect();
    assert_eq!(
        custom,
        [
            "stgregistry.suse.com/rancher/rancher:v2.13.0-rc1 -> registry.rancher.com/rc/rancher deny=false",
            "stgregistry.suse.com/other/tool:v1 -> registry.rancher.com/rc/other/tool deny=false",
        ]
    );
    // The standard files are still read, with their own rules.
    assert!(
        desired
            .entries
            .iter()
            .any(|e| !e.origin.source.ends_with("customToPrime.yaml") && e.destinations[0].deny_prerelease)
    );
    // One without the other is an error naming the key.
    let half = charts_config(dir.path(), "custom-to-prime: customToPrime.yaml\n");
    let err = charts::read_config(&half).unwrap_err().to_string();
    assert!(err.contains("`custom-to-prime` needs `custom-path`"), "{err}");
}

/// Rancher's current `config.yaml` and the `regsync.yaml` its generator compiled from it (same
/// commit, whole files) describe the same edges: 7,526 `source:tag -> target:tag` pairs.
#[test]
fn rancher_config_yaml_and_its_generated_regsync_yaml_plan_the_same_edges() {
    use std::collections::BTreeSet;
    let dir = data("rancher/image-mirror-af7cf3b");
    let edges = |state: &DesiredState| -> BTreeSet<String> {
        state
            .entries
            .iter()
            .flat_map(|e| {
                let source = e.sources[0].repository.to_string();
                let pin = e.pin.to_string();
                e.destinations.iter().flat_map(move |d| {
                    let (source, pin) = (source.clone(), pin.clone());
                    e.tags.iter().map(move |t| format!("{source}:{pin} -> {}:{t}", d.repository))
                })
            })
            .collect()
    };
    let config = crate::rancher::load(&dir.join("config.yaml"), &Policy::default()).unwrap();
    let regsync = crate::regsync::load(&dir.join("regsync.yaml"), &Policy::default()).unwrap();
    assert!(regsync.repositories.is_empty());
    let (from_config, from_regsync) = (edges(&config), edges(&regsync.desired));
    assert_eq!(from_regsync.len(), 7526);
    let only_config: Vec<&String> = from_config.difference(&from_regsync).take(10).collect();
    let only_regsync: Vec<&String> = from_regsync.difference(&from_config).take(10).collect();
    assert!(
        only_config.is_empty() && only_regsync.is_empty(),
        "only in config.yaml: {only_config:#?}\nonly in regsync.yaml: {only_regsync:#?}"
    );
    assert_eq!(config.invalid().count(), 0, "{:#?}", config.notices);
}

/// Ferry writes the `regsync.yaml` image-mirror's generator writes for a `config.yaml`, byte
/// for byte (what `ferry discover --write` regenerates after adding tags).
#[test]
fn the_regsync_yaml_written_for_rancher_s_config_yaml_is_the_generator_s_own() {
    let dir = data("rancher/image-mirror-af7cf3b");
    let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    let expected = std::fs::read_to_string(dir.join("regsync.yaml")).unwrap();
    let written = crate::rancher::to_regsync_yaml(&dir.join("config.yaml"), &config).unwrap();
    if written != expected {
        let first = written.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!(
            "differs at line {:?}: {:?} vs {:?} ({} vs {} lines)",
            first.map(|l| l + 1),
            first.and_then(|l| written.lines().nth(l)),
            first.and_then(|l| expected.lines().nth(l)),
            written.lines().count(),
            expected.lines().count()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// `ferry import`'s writer and Ferry's kpromo reader are inverse: any set of planned,
    /// digest-pinned entries (renames, untrusted sources, several destinations with a primary,
    /// tagless digests) written as a thin-manifest tree reads back as exactly the same edges:
    /// source, trust, digest, destination, primary, tag.
    #[test]
    fn an_imported_tree_reads_back_as_the_edges_it_was_written_from(
        entries in proptest::collection::vec(
            (0usize..3, 0usize..3, proptest::bool::ANY, proptest::bool::ANY, proptest::collection::vec(0usize..4, 1..4), 0usize..3),
            1..8,
        )
    ) {
        use crate::import::{Pinned, thin_manifests};
        use ferry_model::{Digest, Repository, Tag};
        // Prefixes chosen so that some end alike ("team"): a name must not swallow them.
        let source_prefixes = ["stg.example/team", "docker.io/amazon", "quay.io/x"];
        let names = ["app", "aws-cli", "tools"];
        let destination_prefixes = ["prod.example/team", "prod.example", "mirror.example/rancher", "docker.io/rancher"];
        type Edge = (String, bool, String, String, bool, Option<String>);
        let mut pinned = Vec::new();
        let mut expected: std::collections::BTreeSet<Edge> = std::collections::BTreeSet::new();
        // Trust is a property of the source.
        let mut trust: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
        for (i, (source, name, renamed, trusted, dests, n_tags)) in entries.into_iter().enumerate() {
            let source = format!("{}/{}", source_prefixes[source], names[name]);
            let target_name = if renamed { format!("mirrored-x-{}", names[name]) } else { names[name].to_owned() };
            // A plan never trusts Docker Hub (`Source::new`), so neither does what it imports.
            let trusted = *trust.entry(source.clone()).or_insert(trusted && !source.starts_with("docker.io/"));
            let digest = Digest::of(format!("entry {i}").as_bytes());
            let mut seen = std::collections::BTreeSet::new();
            let dests: Vec<String> = dests
                .into_iter()
                .filter(|d| seen.insert(*d))
                .map(|d| format!("{}/{target_name}", destination_prefixes[d]))
                .collect();
            let tags: Vec<Option<String>> = if n_tags == 0 { vec![None] } else { (0..n_tags).map(|t| Some(format!("v{t}"))).collect() };
            for (position, d) in dests.iter().enumerate() {
                for tag in &tags {
                    pinned.push(Pinned {
                        source: Repository::parse(&source).unwrap(),
                        trusted,
                        digest,
                        destination: Repository::parse(d).unwrap(),
                        primary: position == 0,
                        tag: tag.as_ref().map(|t| Tag::parse(t).unwrap()),
                        entry: format!("e{i}"),
                    });
                    expected.insert((source.clone(), trusted, digest.to_string(), d.clone(), position == 0, tag.clone()));
                }
            }
        }
        let tree = thin_manifests(&pinned, "property");
        let dir = tempfile::tempdir().unwrap();
        for sub in &tree.subprojects {
            for (kind, file, text) in [("manifests", "promoter-manifest.yaml", &sub.manifest), ("images", "images.yaml", &sub.images)] {
                let parent = dir.path().join(kind).join(&sub.name);
                std::fs::create_dir_all(&parent).unwrap();
                std::fs::write(parent.join(file), text).unwrap();
            }
        }
        let state = kpromo::load_thin_dir(dir.path(), &Policy::default()).unwrap();
        proptest::prop_assert!(state.notices.is_empty(), "{:?}", state.notices);
        let mut read: std::collections::BTreeSet<Edge> = std::collections::BTreeSet::new();
        for entry in &state.entries {
            let TagOrDigest::Digest(digest) = entry.pin else { panic!("pinned by digest") };
            let tags: Vec<Option<String>> = if entry.tags.is_empty() { vec![None] } else { entry.tags.iter().map(|t| Some(t.to_string())).collect() };
            for (position, d) in entry.destinations.iter().enumerate() {
                for tag in &tags {
                    read.insert((entry.sources[0].repository.to_string(), entry.sources[0].trusted, digest.to_string(), d.repository.to_string(), position == 0, tag.clone()));
                }
            }
        }
        proptest::prop_assert_eq!(read, expected);
    }
}
