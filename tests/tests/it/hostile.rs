//! An outsider's pull request, tried as an attacker would: `ferry check` on real registries,
//! with a recording canary standing both for every host the pull request names and for the
//! proxy of every host that is not loopback, so that a request that must not happen is counted
//! here instead of leaving the machine.

use std::process::Command;

use ferry_testkit::canary::Canary;
use ferry_testkit::git;
use ferry_testkit::world::World;

/// `ferry check --output json` on `repo`'s thin manifests between the tags `base` and `head`,
/// with the canary as the proxy of every outside host: (exit code, report, stdout + stderr).
fn check(
    repo: &std::path::Path,
    config: &std::path::Path,
    extra: &[&str],
    env: &[(&str, String)],
) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(crate::support::ferry_bin())
        .args(["check", "--output", "json", "--config", config.to_str().unwrap()])
        .args(extra)
        .args(["--diff-base-rev", "base", "--diff-head-rev", "head"])
        .current_dir(repo)
        .env_remove("FERRY_CONFIG")
        .env_remove("GITHUB_TOKEN")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    let report = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (code, report, format!("{stdout}{stderr}"))
}

fn problems(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|p| {
            (
                p["check"].as_str().unwrap_or_default().to_owned(),
                p["file"].as_str().unwrap_or_default().to_owned(),
                p["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A manifest repository whose base has one subproject and whose head adds `subprojects`:
/// (name, source registry, destination registries, digest).
fn repository(
    base: (&str, &str, &[String], &str),
    subprojects: &[(&str, String, Vec<String>, String)],
) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let write = |name: &str, source: &str, destinations: &[String], digest: &str| {
        let manifests = repo.path().join("registry/manifests").join(name);
        let images = repo.path().join("registry/images").join(name);
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::create_dir_all(&images).unwrap();
        let mut registries = format!("registries:\n- name: \"{source}\"\n  src: true\n");
        for destination in destinations {
            registries.push_str(&format!("- name: \"{destination}\"\n"));
        }
        std::fs::write(manifests.join("promoter-manifest.yaml"), registries).unwrap();
        std::fs::write(
            images.join("images.yaml"),
            format!("- name: app\n  dmap:\n    \"{digest}\": [\"1.0\"]\n"),
        )
        .unwrap();
    };
    write(base.0, base.1, base.2, base.3);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "base"]);
    git(repo.path(), &["tag", "base"]);
    for (name, source, destinations, digest) in subprojects {
        write(name, source, destinations, digest);
    }
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "head"]);
    git(repo.path(), &["tag", "head"]);
    repo
}

/// Every host a pull request names that the policy rules out, in every spelling: none is
/// contacted (the canary sees nothing), each is a failed check naming it, and the one
/// legitimate image is checked as usual. With `check.allowed-sources`, sources outside it are
/// `allowed-source` failures; without, hosts nobody named are `policy` failures. Numeric and
/// IPv4-as-IPv6 spellings are invalid names, reported as lint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_naming_hosts_the_policy_rules_out_contacts_none_of_them() {
    let world = World::new().await;
    let canary = Canary::start().await;
    let (s, p) = (world.staging.host().to_string(), world.prod.host().to_string());
    let port = canary.address().port();
    let digest = world.index.digest.to_string();
    let new = world.app_11.digest.to_string();
    let prod = vec![format!("{p}/team")];
    let hostile: Vec<(&str, String, Vec<String>, String)> = vec![
        ("loopback", format!("127.0.0.1:{port}/team"), prod.clone(), digest.clone()),
        ("localhost", format!("localhost:{port}/team"), prod.clone(), digest.clone()),
        ("metadata", "169.254.169.254/latest".into(), prod.clone(), digest.clone()),
        ("gce", "metadata.google.internal/computemetadata".into(), prod.clone(), digest.clone()),
        ("ec2v6", "[fd00:ec2::254]/latest".into(), prod.clone(), digest.clone()),
        ("outside", format!("registry.evil.example:{port}/team"), prod.clone(), digest.clone()),
        (
            "destination",
            format!("{s}/demo"),
            vec!["169.254.169.254/prod".into(), "evil.example/prod".into()],
            new.clone(),
        ),
        ("fine", format!("{s}/demo"), prod.clone(), new.clone()),
    ];
    let repo = repository(("good", &format!("{s}/demo"), &prod, &digest), &hostile);
    let dir = tempfile::tempdir().unwrap();
    let env = canary.proxy_env();
    for (allowed_sources, refusal) in
        [(format!("\n  allowed-sources: [\"{s}\"]"), "allowed-source"), (String::new(), "policy")]
    {
        let config = dir.path().join("ferry.yaml");
        std::fs::write(
            &config,
            format!(
                "registries:\n  insecure: [\"{s}\", \"{p}\"]\ncheck:\n  tags: immutable{allowed_sources}\n"
            ),
        )
        .unwrap();
        let (code, report, output) = check(repo.path(), &config, &["--thin-manifest-dir", "registry"], &env);
        assert_eq!(code, Some(8), "{output}");
        let problems = problems(&report);
        for name in ["loopback", "localhost", "metadata", "gce", "ec2v6", "outside"] {
            assert!(
                problems.iter().any(|(check, file, message)| check == refusal
                    && file.contains(&format!("/{name}/"))
                    && message.contains("it was not contacted")),
                "{name} ({refusal}): {problems:#?}"
            );
        }
        let destination: Vec<_> =
            problems.iter().filter(|(_, file, _)| file.contains("/destination/")).collect();
        assert_eq!(destination.len(), 2, "both hostile destinations named: {destination:#?}");
        assert!(destination.iter().all(|(check, _, _)| check == "policy"));
        let checked: Vec<&str> =
            report["digests"].as_array().unwrap().iter().map(|d| d["digest"].as_str().unwrap()).collect();
        assert_eq!(checked, vec![new.as_str()], "only the legitimate image is checked: {report}");
        assert_eq!(report["digests"][0]["file"].as_str().unwrap(), "registry/images/fine/images.yaml");
        for socket_error in ["refused", "timed out", "unreachable", "tls", "dns error"] {
            assert!(!output.to_lowercase().contains(socket_error), "{socket_error} leaks: {output}");
        }
        assert_eq!(canary.seen().len(), 0, "contacted: {:#?}", canary.seen());
    }

    // Numeric spellings of the metadata address, and IPv4 written as IPv6: not registry names.
    let numeric: Vec<(&str, String, Vec<String>, String)> = [
        ("decimal", "2852039166/x"),
        ("hex", "0xa9fea9fe/x"),
        ("dotted-hex", "0xa9.0xfe.0xa9.0xfe/x"),
        ("octal", "0251.0376.0251.0376/x"),
        ("mapped", "[::ffff:169.254.169.254]/x"),
        ("short", "169.254.43518/x"),
    ]
    .into_iter()
    .map(|(name, source)| (name, source.to_owned(), prod.clone(), digest.clone()))
    .collect();
    let repo = repository(("good", &format!("{s}/demo"), &prod, &digest), &numeric);
    let config = dir.path().join("ferry.yaml");
    let (code, report, output) = check(repo.path(), &config, &["--thin-manifest-dir", "registry"], &env);
    assert_eq!(code, Some(8), "{output}");
    let problems = problems(&report);
    for (name, ..) in &numeric {
        assert!(
            problems.iter().any(|(check, file, message)| check == "lint"
                && file.contains(&format!("/{name}/"))
                && message.contains("invalid registry host")),
            "{name}: {problems:#?}"
        );
    }
    assert_eq!(canary.seen().len(), 0, "contacted: {:#?}", canary.seen());
}

/// The head's `config.yaml` binds a secret of the checker's environment as the password of a
/// registry it names (one the policy allows, so that it is contacted): the secret is never
/// sent, printed or posted. The base's own credentials for that registry are what is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_cannot_spend_the_checker_s_secrets() {
    let world = World::new().await;
    let registry = Canary::start().await;
    let outside = Canary::start().await;
    let (s, p, c) = (world.staging.host(), world.prod.host(), registry.host());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let file = repo.path().join("config.yaml");
    let config_yaml = |user: &str, password: &str, tags: &str| {
        format!(
            "Artifacts:\n- SourceArtifact: {s}/demo/app\n  Tags: ['1.0']\n- SourceArtifact: {c}/team/app\n  Tags: [{tags}]\n\
             Repositories:\n- BaseUrl: {p}/rancher\n  DefaultTarget: true\n- BaseUrl: {c}/mirror\n  Registry: \"{c}\"\n  \
             Username: '{user}'\n  Password: '{password}'\n"
        )
    };
    std::fs::write(&file, config_yaml("reviewer", "{{ env \"BASE_SECRET\" }}", "'1.0'")).unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "base"]);
    git(repo.path(), &["tag", "base"]);
    std::fs::write(&file, config_yaml("attacker", "{{ env \"GITHUB_TOKEN\" }}", "'1.0', '2.0'")).unwrap();
    git(repo.path(), &["commit", "-qam", "head"]);
    git(repo.path(), &["tag", "head"]);
    let config = repo.path().join("../ferry-secret-test.yaml");
    std::fs::write(
        &config,
        format!("registries:\n  insecure: [\"{s}\", \"{p}\", \"{c}\"]\ncheck:\n  allowed-hosts: [\"{c}\"]\n"),
    )
    .unwrap();
    let mut env = outside.proxy_env();
    env.push(("GITHUB_TOKEN", "ghp_the-checker-s-own-token".into()));
    env.push(("BASE_SECRET", "the-base-s-password".into()));
    let (code, report, output) =
        check(repo.path(), &config, &["--rancher-config", file.to_str().unwrap()], &env);
    assert_eq!(code, Some(8), "{output}");
    assert!(
        !output.contains("ghp_the-checker-s-own-token") && !output.contains("the-base-s-password"),
        "{output}"
    );
    use base64::Engine as _;
    let encode = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let seen = registry.seen();
    assert!(!seen.is_empty(), "the allowed registry is asked");
    for request in &seen {
        assert!(
            !request.head.contains(&encode("attacker", "ghp_the-checker-s-own-token")),
            "{}",
            request.head
        );
        assert!(!request.head.contains("ghp_the-checker-s-own-token"), "{}", request.head);
    }
    assert!(
        seen.iter().any(|r| r.head.contains(&encode("reviewer", "the-base-s-password"))),
        "the base's credentials are the ones used: {seen:#?}"
    );
    assert_eq!(outside.seen().len(), 0);
    let _ = report;
    let _ = std::fs::remove_file(&config);
}

/// The attack on the policy itself: the pull request deletes `allowed-sources` from the
/// `ferry.yaml` in the repository, swaps the staging key, and adds a digest from a registry
/// the base's policy forbids. It is checked with the base's policy (the forbidden source fails,
/// and is not contacted), and every changed rule is a `policy-change` failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_is_checked_with_the_base_s_policy_not_its_own() {
    let world = World::new().await;
    let canary = Canary::start().await;
    let (s, p, m) = (world.staging.host(), world.prod.host(), world.mirror.host());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let (_, key_a) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
    let (_, key_b) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
    let policy = |allowed: &str| {
        format!(
            "registries:\n  insecure: [\"{s}\", \"{p}\", \"{m}\"]\ntrust:\n  sources:\n  - registry: \"{m}\"\n    \
             signatures: if-present\n    keys: [staging.pub]\ncheck:\n  tags: immutable{allowed}\n"
        )
    };
    std::fs::write(repo.path().join("ferry.yaml"), policy(&format!("\n  allowed-sources: [\"{s}\"]")))
        .unwrap();
    std::fs::write(repo.path().join("staging.pub"), &key_a).unwrap();
    let thin = repo.path().join("registry");
    let digest = world.index.digest.to_string();
    ferry_testkit::write_thin_manifest(
        &thin,
        "good",
        &ferry_model::Host::parse(&format!("{s}")).unwrap(),
        std::slice::from_ref(&p),
        &format!("- name: demo/app\n  dmap:\n    \"{digest}\": [\"1.0\"]\n"),
    )
    .unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "base"]);
    git(repo.path(), &["tag", "base"]);
    std::fs::write(repo.path().join("ferry.yaml"), policy("")).unwrap();
    std::fs::write(repo.path().join("staging.pub"), &key_b).unwrap();
    ferry_testkit::write_thin_manifest(
        &thin,
        "forbidden",
        &m,
        std::slice::from_ref(&p),
        &format!("- name: demo/app\n  dmap:\n    \"{digest}\": [\"1.0\"]\n"),
    )
    .unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "relax the policy"]);
    git(repo.path(), &["tag", "head"]);
    let config = repo.path().join("ferry.yaml");
    let (code, report, output) =
        check(repo.path(), &config, &["--thin-manifest-dir", thin.to_str().unwrap()], &canary.proxy_env());
    assert_eq!(code, Some(8), "{output}");
    let problems = problems(&report);
    assert!(
        problems.iter().any(|(check, file, message)| check == "allowed-source"
            && file.ends_with("images/forbidden/images.yaml")
            && message.contains(&format!("{m}/demo/app"))),
        "the base's allowed-sources applies: {problems:#?}"
    );
    let changes: Vec<&str> =
        problems.iter().filter(|(c, ..)| c == "policy-change").map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert!(changes[0].starts_with(&format!("check.allowed-sources ([\"{s}\"]) is removed")), "{changes:#?}");
    assert!(changes[1].starts_with("staging.pub, which"), "{changes:#?}");
    assert!(problems.iter().filter(|(c, ..)| c == "policy-change").all(|(_, file, _)| file == "ferry.yaml"));
    assert_eq!(
        report["digests"].as_array().unwrap().len(),
        0,
        "the forbidden digest was not checked: {report}"
    );

    // The same change with its policy untouched passes nothing it should not: the base's is
    // the one applied, explicitly too.
    let (code, report, output) = check(
        repo.path(),
        &config,
        &["--thin-manifest-dir", thin.to_str().unwrap(), "--config-rev", "base"],
        &canary.proxy_env(),
    );
    assert_eq!(code, Some(8), "{output}");
    assert!(problems_of(&report, "allowed-source") == 1, "{report}");
    // Without a base revision, a config inside the repository is refused: nothing to trust.
    let out = Command::new(crate::support::ferry_bin())
        .args(["check", "--config", config.to_str().unwrap(), "--thin-manifest-dir", thin.to_str().unwrap()])
        .current_dir(repo.path())
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    let (code, _, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("give --diff-base-rev (or --config-rev)"), "{stderr}");
    assert_eq!(canary.seen().len(), 0);
}

fn problems_of(report: &serde_json::Value, check: &str) -> usize {
    problems(report).iter().filter(|(c, ..)| c == check).count()
}

/// A subproject whose directory name is not UTF-8 is a lint failure naming every byte of it,
/// not "0 new digests"; after the merge, a full read reports it and plans the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_is_not_utf8_is_named_not_lost() {
    use std::os::unix::ffi::OsStrExt as _;
    let world = World::new().await;
    let (s, p) = (world.staging.host(), world.prod.host());
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let thin = repo.path().join("registry");
    let digest = world.index.digest.to_string();
    let images = format!("- name: demo/app\n  dmap:\n    \"{digest}\": [\"1.0\"]\n");
    ferry_testkit::write_thin_manifest(&thin, "good", &s, std::slice::from_ref(&p), &images).unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "base"]);
    git(repo.path(), &["tag", "base"]);
    let odd = std::ffi::OsStr::from_bytes(b"sub\xff\xfe");
    for kind in ["manifests", "images"] {
        std::fs::create_dir_all(thin.join(kind).join(odd)).unwrap();
    }
    std::fs::write(
        thin.join("manifests").join(odd).join("promoter-manifest.yaml"),
        format!("registries:\n- name: {s}\n  src: true\n- name: {p}\n"),
    )
    .unwrap();
    let new = world.app_11.digest.to_string();
    std::fs::write(
        thin.join("images").join(odd).join("images.yaml"),
        format!("- name: demo/app\n  dmap:\n    \"{new}\": [\"1.1\"]\n"),
    )
    .unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "head"]);
    git(repo.path(), &["tag", "head"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(&config, format!("registries:\n  insecure: [\"{s}\", \"{p}\"]\n")).unwrap();
    let (code, report, output) =
        check(repo.path(), &config, &["--thin-manifest-dir", thin.to_str().unwrap()], &[]);
    assert_eq!(code, Some(8), "{output}");
    let lint: Vec<_> = problems(&report).into_iter().filter(|(c, ..)| c == "lint").collect();
    assert_eq!(lint.len(), 2, "{lint:#?}");
    assert!(lint.iter().all(|(_, file, _)| file.contains("sub\\xff\\xfe")), "{lint:#?}");
    assert_ne!(report["title"], "no new digests");

    // The merged tree: `plan` reports the entry and plans the rest (exit 5: excluded entries).
    let out = Command::new(crate::support::ferry_bin())
        .args([
            "plan",
            "--output",
            "json",
            "--thin-manifest-dir",
            thin.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(5), "{stdout}{stderr}");
    assert!(stderr.contains("sub\\xff\\xfe"), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(plan["edges"].as_array().unwrap().iter().any(|e| e["digest"] == digest.as_str()), "{plan}");
}

/// Staging lists, among the digest's referrers, a manifest whose subject is another image, an
/// image manifest with no subject, and an entry larger than any manifest. `ferry promote`
/// carries the digest's own referrer only, names each skipped one in its report, succeeds, and
/// never creates a referrers index at prod for the image it did not promote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_carry_only_their_own_subject() {
    use ferry_testkit::seed::{ImageSpec, OCI_INDEX, OCI_MANIFEST, Seeder};
    let staging = ferry_testkit::registry::RegistryServer::start().await;
    let prod = ferry_testkit::registry::RegistryServer::start().await;
    let stage = Seeder::new(&staging);
    let image = stage.image("demo/app", Some("1.0"), &ImageSpec::small("amd64", 2501, 1)).await;
    let other = stage.image("demo/app", Some("other"), &ImageSpec::small("amd64", 2502, 1)).await;
    let own = stage.referrer("demo/app", &image, "application/spdx+json", b"the image's own sbom", &[]).await;
    let foreign =
        stage.referrer("demo/app", &other, "application/spdx+json", b"another image's sbom", &[]).await;
    let subjectless = stage.image("demo/app", None, &ImageSpec::small("arm64", 2503, 1)).await;
    stage.list_referrer("demo/app", &image.digest, &own).await;
    stage.list_referrer("demo/app", &image.digest, &foreign).await;
    stage.list_referrer("demo/app", &image.digest, &subjectless).await;
    // An entry that claims 64 MiB (distribution checks that the manifest exists, not its size).
    let tag = image.digest.tag_form();
    let mut index: serde_json::Value =
        serde_json::from_slice(&stage.get_manifest("demo/app", &tag).await.unwrap()).unwrap();
    let huge = stage.image("demo/app", None, &ImageSpec::small("arm64", 2504, 1)).await.digest;
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": OCI_MANIFEST, "digest": huge.to_string(), "size": 64 * 1024 * 1024,
    }));
    stage.manifest("demo/app", &tag, OCI_INDEX, &serde_json::to_vec(&index).unwrap()).await;

    let dir = tempfile::tempdir().unwrap();
    let (s, p) = (staging.host(), prod.host());
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!("registries:\n  insecure: [\"{s}\", \"{p}\"]\n  trusted-sources: [\"{s}\"]\n"),
    )
    .unwrap();
    let manifests = dir.path().join("manifests");
    ferry_testkit::write_thin_manifest(
        &manifests,
        "api",
        &s,
        std::slice::from_ref(&p),
        &format!("- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", image.digest),
    )
    .unwrap();
    let out = tokio::process::Command::new(crate::support::ferry_bin())
        .args(["promote", "--confirm", "--progress", "never", "--thin-manifest-dir"])
        .arg(&manifests)
        .arg("--config")
        .arg(dir.path().join("ferry.yaml"))
        .env_remove("FERRY_CONFIG")
        .output()
        .await
        .unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(0), "the image is promoted: {stdout}{stderr}");
    for (skipped, why) in [
        (foreign.digest, format!("its subject is {}, another image", other.digest)),
        (subjectless.digest, "it has no subject".to_owned()),
        (huge, "over the 4194304-byte manifest limit".to_owned()),
    ] {
        assert!(stdout.contains(&skipped.to_string()) && stdout.contains(&why), "{skipped}: {why}: {stdout}");
    }
    let at_prod = Seeder::for_url(&format!("http://{p}"));
    let listed: serde_json::Value =
        serde_json::from_slice(&at_prod.get_manifest("demo/app", &tag).await.unwrap()).unwrap();
    let listed: Vec<&str> =
        listed["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![own.digest.to_string().as_str()], "only the image's own referrer");
    assert_eq!(
        at_prod.tag_digest("demo/app", &other.digest.tag_form()).await,
        None,
        "no index for the other image"
    );
    assert_eq!(
        at_prod.get_manifest("demo/app", &foreign.digest.to_string()).await,
        None,
        "the foreign one stays behind"
    );
}

/// Writes `tar` gzipped at `path`, streaming (the tar itself may be hundreds of MiB).
fn gzip_to(path: &std::path::Path, parts: &[(&[u8], u64)]) {
    use std::io::Write as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::default());
    for (bytes, repeat) in parts {
        for _ in 0..*repeat {
            gz.write_all(bytes).unwrap();
        }
    }
    gz.finish().unwrap();
}

/// A raw 512-byte tar header of `kind` declaring `size` bytes, with a valid checksum.
fn tar_header(name: &str, kind: u8, size: u64) -> Vec<u8> {
    let mut header = vec![0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..108].copy_from_slice(b"0000644\0");
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[156] = kind;
    header[257..265].copy_from_slice(b"ustar  \0");
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// Chart archives built to exhaust memory: a 0.5 MB archive whose GNU long-name header
/// declares 480 MiB, and one whose entry expands to 600 MiB. `ferry charts scan` refuses each
/// with its name and reason, scans the good archive beside them, prints names from the values
/// escaped, and never peaks above 512 MiB of memory (`/usr/bin/time`'s maximum RSS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_chart_archives_are_refused_within_bounded_memory() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    let block = vec![b'a'; 1 << 20];
    let mut bomb = tar_header("././@LongLink", b'L', 480 << 20);
    bomb.truncate(512);
    gzip_to(
        &assets.join("bomb/bomb-1.0.0.tgz"),
        &[(&bomb, 1), (&block, 480), (&tar_header("bomb/values.yaml", b'0', 0), 1)],
    );
    let size = std::fs::metadata(assets.join("bomb/bomb-1.0.0.tgz")).unwrap().len();
    assert!(size < 1024 * 1024, "a small archive: {size} bytes");
    gzip_to(
        &assets.join("expands/expands-1.0.0.tgz"),
        &[(&tar_header("expands/blob", b'0', 600 << 20), 1), (&block, 600)],
    );
    ferry_testkit::chart::archive(
        &assets.join("good/good-1.0.0.tgz"),
        &[("good/values.yaml", "image:\n  repository: \"rancher/\\e[2Jforged\\nline\"\n  tag: v1\nother:\n  repository: rancher/fleet\n  tag: v0.13.8\n")],
    )
    .unwrap();
    let config = dir.path().join("charts.yaml");
    std::fs::write(
        &config,
        format!(
            "staging: {}\ndocker-hub: {}\nprime: {}\ndocker-to-prime: dockerToPrime.yaml\nstaging-to-prime: stagingToPrime.yaml\n",
            world.staging.host(),
            world.mirror.host(),
            world.prod.host()
        ),
    )
    .unwrap();
    let mut args: Vec<String> =
        ["charts", "scan", assets.to_str().unwrap(), "--charts-sync", config.to_str().unwrap()]
            .map(str::to_owned)
            .to_vec();
    args.extend(world.insecure_flags());
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib=%M"])
        .arg(crate::support::ferry_bin())
        .args(&args)
        .env_remove("FERRY_CONFIG")
        .output()
        .unwrap();
    let (_, stdout, stderr) = ferry_testkit::outcome(&out);
    let peak: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {stderr}"));
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
    assert!(
        stderr.contains("bomb-1.0.0.tgz") && stderr.contains("has a GNU long name header of 503316480 bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("expands-1.0.0.tgz") && stderr.contains("expands past 512 MiB"), "{stderr}");
    assert!(stdout.contains("scanned 3 archives (1 values files)"), "{stdout}");
    // The forged name is an invalid entry, shown escaped: no escape sequence and no newline
    // reach the terminal from the values file.
    let all = format!("{stdout}{stderr}");
    assert!(!all.contains('\u{1b}'), "{all:?}");
    assert!(!all.contains("\nline"), "{all:?}");
    assert!(all.contains("\\u{1b}[2Jforged\\nline"), "{all}");
    eprintln!("peak RSS of the scan: {peak} KiB");
}
