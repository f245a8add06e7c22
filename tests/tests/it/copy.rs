//! The copier against real registries, through the fault proxy where faults are needed.

use std::time::{Duration, Instant};

use ferry_copy::{Copier, CopyError, CopyOptions, Job};
use ferry_model::{Host, Repository, TagOrDigest};
use ferry_registry::Classify as _;
use ferry_registry::{
    Credentials, ErrorClass, OciRegistry, Registry, RegistryError, RetryPolicy, TransportConfig,
};
use ferry_testkit::fault::{Fault, FaultProxy, Hits, Rule};
use ferry_testkit::registry::RegistryServer;
use ferry_testkit::seed::{ImageSpec, LayerSpec, Seeder};
use ferry_testkit::world::World;

use crate::support::client;

fn job(source: Repository, digest: ferry_model::Digest, destination: Repository, tags: &[&str]) -> Job {
    Job {
        source,
        digest,
        destination,
        tags: tags.iter().map(|t| t.parse().unwrap()).collect(),
        known_absent: false,
    }
}

fn copier(hosts: &[Host]) -> Copier<OciRegistry> {
    Copier::new(client(hosts, Credentials::none()), CopyOptions::default())
}

/// A client whose retry budget is `budget`, for throttling tests.
fn client_with_budget(hosts: &[Host], budget: Duration) -> OciRegistry {
    OciRegistry::new(TransportConfig {
        insecure_hosts: hosts.to_vec(),
        retry: RetryPolicy { budget, min_delay: Duration::from_millis(50), ..RetryPolicy::default() },
        ..TransportConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn single_and_multi_arch_copies_keep_every_digest() {
    let world = World::new().await;
    let copier = copier(&world.hosts());
    let src = world.staging.repository("demo/app");
    let dst = world.mirror.repository("demo/app");
    let outcome = copier.copy(&job(src.clone(), world.index.digest, dst.clone(), &["1.0"])).await;
    assert!(matches!(outcome.manifest, Ok(true)) && matches!(outcome.tags[0], Ok(true)), "{outcome:?}");
    let outcome = copier.copy(&job(src.clone(), world.app_11.digest, dst.clone(), &["1.1"])).await;
    assert!(outcome.tags[0].is_ok(), "{outcome:?}");

    let mirror = Seeder::new(&world.mirror);
    assert_eq!(mirror.tag_digest("demo/app", "1.0").await, Some(world.index.digest));
    assert_eq!(mirror.tag_digest("demo/app", "1.1").await, Some(world.app_11.digest));
    let registry = client(&world.hosts(), Credentials::none());
    let raw = registry.get_manifest(&dst, &TagOrDigest::Digest(world.index.digest)).await.unwrap().unwrap();
    assert_eq!(raw.bytes, world.index.bytes, "the index bytes are identical");
    for child in &world.index.children {
        let copied = registry.get_manifest(&dst, &TagOrDigest::Digest(child.digest)).await.unwrap().unwrap();
        assert_eq!(copied.bytes, child.bytes, "child manifests are identical");
        for blob in &child.blobs {
            assert!(mirror.blob_exists("demo/app", blob).await);
        }
    }
    let stats = copier.stats().snapshot();
    assert_eq!(stats.manifests_pushed, 4, "two children, the index, and 1.1");
    assert_eq!(stats.tags_written, 2);
}

#[tokio::test]
async fn blobs_mount_within_one_registry_and_are_not_uploaded_twice() {
    let world = World::new().await;
    let copier = copier(&world.hosts());
    // Same registry: staging/demo/app -> staging/release/app mounts every blob.
    let outcome = copier
        .copy(&job(
            world.staging.repository("demo/app"),
            world.index.digest,
            world.staging.repository("release/app"),
            &["1.0"],
        ))
        .await;
    assert!(outcome.tags[0].is_ok(), "{outcome:?}");
    let stats = copier.stats().snapshot();
    assert_eq!(stats.blobs_streamed, 0, "{stats:?}");
    assert_eq!(stats.bytes, 0);
    assert_eq!(stats.blobs_mounted, 6, "two configs and four layers: {stats:?}");
    let mounts = world
        .staging
        .access_log()
        .iter()
        .filter(|l| l.method == "POST" && l.path.contains("mount=") && l.status == 201)
        .count();
    assert_eq!(mounts, 6);

    // Two images sharing a base layer, copied at once to two repositories of another host: the
    // shared blob is streamed once and mounted into the second repository.
    let base = LayerSpec { size: 64 * 1024, seed: 4242 };
    let spec = |seed| ImageSpec {
        os: "linux",
        architecture: "amd64",
        layers: vec![base, LayerSpec { size: 1000, seed }],
    };
    let stage = Seeder::new(&world.staging);
    let a = stage.image("shared/a", Some("1"), &spec(1)).await;
    let b = stage.image("shared/b", Some("1"), &spec(2)).await;
    let copier = crate::copy::copier(&world.hosts());
    let (ja, jb) = (
        job(world.staging.repository("shared/a"), a.digest, world.mirror.repository("shared/a"), &["1"]),
        job(world.staging.repository("shared/b"), b.digest, world.mirror.repository("shared/b"), &["1"]),
    );
    let (oa, ob) = tokio::join!(copier.copy(&ja), copier.copy(&jb));
    assert!(oa.tags[0].is_ok() && ob.tags[0].is_ok());
    let stats = copier.stats().snapshot();
    assert_eq!(stats.blobs_streamed, 5, "two configs, two unique layers, one base: {stats:?}");
    assert_eq!(stats.blobs_mounted, 1, "the base layer, into the second repository: {stats:?}");
    let base_gets = world
        .staging
        .access_log()
        .iter()
        .filter(|l| l.method == "GET" && l.path.ends_with(&a.blobs[1].to_string()))
        .count();
    assert_eq!(base_gets, 1, "the shared base layer left the source once");
}

#[tokio::test]
async fn an_image_already_present_transfers_no_blob() {
    let world = World::new().await;
    let copier = copier(&world.hosts());
    let j = job(
        world.staging.repository("demo/app"),
        world.index.digest,
        world.mirror.repository("demo/app"),
        &["1.0"],
    );
    copier.copy(&j).await.manifest.unwrap();
    let staging_before = world.staging.access_log().len();
    let again = crate::copy::copier(&world.hosts());
    let outcome = again.copy(&j).await;
    assert!(matches!(outcome.manifest, Ok(false)) && matches!(outcome.tags[0], Ok(false)), "{outcome:?}");
    let stats = again.stats().snapshot();
    assert_eq!(
        (stats.blobs_streamed, stats.blobs_mounted, stats.manifests_pushed, stats.tags_written),
        (0, 0, 0, 0)
    );
    assert_eq!(world.staging.access_log().len(), staging_before, "the source was not read at all");
}

#[tokio::test]
async fn throttling_with_retry_after_is_waited_out() {
    let world = World::new().await;
    let proxy = FaultProxy::start(&world.mirror).await;
    // The first two manifest PUTs and the first three blob HEADs are refused with 429.
    proxy.add(Rule::new(
        Some("PUT"),
        "/manifests/",
        Hits::FirstN(2),
        Fault::TooManyRequests { retry_after: Some("1".into()) },
    ));
    proxy.add(Rule::new(
        Some("HEAD"),
        "/blobs/",
        Hits::FirstN(3),
        Fault::TooManyRequests { retry_after: None },
    ));
    let hosts = [world.staging.host(), proxy.host()];
    let copier = Copier::new(client_with_budget(&hosts, Duration::from_secs(30)), CopyOptions::default());
    let started = Instant::now();
    let outcome = copier
        .copy(&job(
            world.staging.repository("demo/app"),
            world.index.digest,
            proxy.repository("demo/app"),
            &["1.0"],
        ))
        .await;
    assert!(outcome.tags[0].is_ok(), "{outcome:?}");
    assert_eq!(proxy.n_applied(), 5);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(Seeder::new(&world.mirror).tag_digest("demo/app", "1.0").await, Some(world.index.digest));
}

#[tokio::test]
async fn persistent_throttling_is_a_typed_throttled_error() {
    let world = World::new().await;
    let proxy = FaultProxy::start(&world.mirror).await;
    proxy.add(Rule::new(
        Some("HEAD"),
        "/blobs/",
        Hits::Every,
        Fault::TooManyRequests { retry_after: Some("1".into()) },
    ));
    let hosts = [world.staging.host(), proxy.host()];
    let copier = Copier::new(client_with_budget(&hosts, Duration::from_secs(2)), CopyOptions::default());
    let outcome = copier
        .copy(&job(
            world.staging.repository("demo/app"),
            world.index.digest,
            proxy.repository("demo/app"),
            &["1.0"],
        ))
        .await;
    let error = outcome.manifest.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Throttled, "{error}");
    assert!(
        matches!(error, CopyError::Registry(RegistryError::Throttled { attempts, retry_after: Some(_), .. }) if attempts >= 2),
        "{error:?}"
    );
    assert_eq!(Seeder::new(&world.mirror).tag_digest("demo/app", "1.0").await, None, "nothing was tagged");
}

#[tokio::test]
async fn corrupted_bytes_fail_verification_and_nothing_is_tagged() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let big =
        ImageSpec { os: "linux", architecture: "amd64", layers: vec![LayerSpec { size: 300_000, seed: 77 }] };
    let image = stage.image("big/app", Some("1.0"), &big).await;
    let proxy = FaultProxy::start(&world.staging).await;
    let layer = image.blobs[1];
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{layer}"),
        Hits::Every,
        Fault::FlipByte { at: 150_000 },
    ));
    let copier = copier(&[proxy.host(), world.mirror.host()]);
    let outcome = copier
        .copy(&job(proxy.repository("big/app"), image.digest, world.mirror.repository("big/app"), &["1.0"]))
        .await;
    let error = outcome.manifest.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Verification, "{error}");
    assert!(error.to_string().contains("digest mismatch"), "{error}");
    assert!(outcome.tags[0].is_err());
    let mirror = Seeder::new(&world.mirror);
    assert_eq!(mirror.tag_digest("big/app", "1.0").await, None, "the destination tag is absent");
    assert!(!mirror.blob_exists("big/app", &layer).await, "the corrupted blob was never committed");
    assert_eq!(copier.stats().snapshot().manifests_pushed, 0);
}

#[tokio::test]
async fn a_dropped_connection_mid_layer_is_retried() {
    let world = World::new().await;
    let big = ImageSpec {
        os: "linux",
        architecture: "amd64",
        layers: vec![LayerSpec { size: 2_000_000, seed: 5 }],
    };
    let image = Seeder::new(&world.staging).image("big/app", Some("1.0"), &big).await;
    let proxy = FaultProxy::start(&world.staging).await;
    let layer = image.blobs[1];
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{layer}"),
        Hits::Nth(1),
        Fault::DropMidBody { after: 500_000 },
    ));
    let copier = copier(&[proxy.host(), world.mirror.host()]);
    let outcome = copier
        .copy(&job(proxy.repository("big/app"), image.digest, world.mirror.repository("big/app"), &["1.0"]))
        .await;
    assert!(outcome.tags[0].is_ok(), "{outcome:?}");
    assert_eq!(proxy.n_applied(), 1);
    assert_eq!(Seeder::new(&world.mirror).tag_digest("big/app", "1.0").await, Some(image.digest));
    let gets = world
        .staging
        .access_log()
        .iter()
        .filter(|l| l.method == "GET" && l.path.ends_with(&layer.to_string()))
        .count();
    assert_eq!(gets, 2, "the layer was fetched again after the drop");
}

#[tokio::test]
async fn a_tag_at_another_digest_is_never_overwritten() {
    let world = World::new().await;
    let prod = Seeder::new(&world.prod);
    assert_eq!(prod.tag_digest("demo/app", "1.1").await, Some(world.prod_11.digest), "before");
    let copier = copier(&world.hosts());
    let outcome = copier
        .copy(&job(
            world.staging.repository("demo/app"),
            world.app_11.digest,
            world.prod.repository("demo/app"),
            &["1.1"],
        ))
        .await;
    assert!(matches!(outcome.manifest, Ok(true)), "the content may be copied by digest: {outcome:?}");
    let error = outcome.tags[0].clone().unwrap_err();
    assert_eq!(error.class(), ErrorClass::Verification);
    assert!(
        matches!(error, CopyError::Conflict { existing, .. } if existing == world.prod_11.digest),
        "{error}"
    );
    assert_eq!(prod.tag_digest("demo/app", "1.1").await, Some(world.prod_11.digest), "after: untouched");
    let tag_puts = world
        .prod
        .access_log()
        .iter()
        .filter(|l| l.method == "PUT" && l.path.ends_with("/manifests/1.1"))
        .count();
    assert_eq!(tag_puts, 1, "only the seeding PUT ever wrote that tag");
}

#[tokio::test]
async fn a_missing_source_is_a_permanent_error() {
    let world = World::new().await;
    let copier = copier(&world.hosts());
    let outcome = copier
        .copy(&job(
            world.staging.repository("demo/app"),
            world.ghost,
            world.mirror.repository("demo/app"),
            &["x"],
        ))
        .await;
    let error = outcome.manifest.unwrap_err();
    assert!(matches!(error, CopyError::SourceMissing { .. }), "{error}");
    assert_eq!(error.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn server_errors_on_the_streamed_upload_are_retried() {
    let world = World::new().await;
    let proxy = FaultProxy::start(&world.mirror).await;
    proxy.add(Rule::new(Some("PUT"), "/blobs/uploads/", Hits::FirstN(2), Fault::Status(503)));
    let copier = copier(&[world.staging.host(), proxy.host()]);
    let outcome = copier
        .copy(&job(
            world.staging.repository("demo/single"),
            world.single.digest,
            proxy.repository("demo/single"),
            &["2.0"],
        ))
        .await;
    assert!(outcome.tags[0].is_ok(), "{outcome:?}");
    assert_eq!(proxy.n_applied(), 2);
}

/// A manifest PUT refused as distribution refuses one during a storage race (`DIGEST_INVALID`,
/// `MANIFEST_BLOB_UNKNOWN`) while Ferry hashed the bytes and the blobs are there: sent again,
/// and the copy succeeds. Refused every time, it is a transient failure (retried later), never
/// a verification failure. And when a blob really is missing, the refusal stands as it is.
#[tokio::test]
async fn a_manifest_put_refused_in_a_storage_race_is_sent_again() {
    let world = World::new().await;
    let copy = |proxy: &FaultProxy, tag: &'static str| {
        let copier = copier(&[world.staging.host(), proxy.host()]);
        let job = job(
            world.staging.repository("demo/single"),
            world.single.digest,
            proxy.repository("demo/single"),
            &[tag],
        );
        async move { copier.copy(&job).await }
    };
    for (code, tag) in [("DIGEST_INVALID", "2.0"), ("MANIFEST_BLOB_UNKNOWN", "2.0.1")] {
        let proxy = FaultProxy::start(&world.mirror).await;
        proxy.add(Rule::new(Some("PUT"), "/manifests/", Hits::FirstN(2), Fault::ErrorCode(400, code)));
        let outcome = copy(&proxy, tag).await;
        assert!(outcome.tags[0].is_ok(), "{code}: {outcome:?}");
        assert_eq!(proxy.n_applied(), 2, "{code}");
        assert_eq!(
            Seeder::new(&world.mirror).tag_digest("demo/single", tag).await,
            Some(world.single.digest)
        );
    }

    let proxy = FaultProxy::start(&world.mirror).await;
    proxy.add(Rule::new(Some("PUT"), "/manifests/", Hits::Every, Fault::ErrorCode(400, "DIGEST_INVALID")));
    let outcome = copy(&proxy, "2.1").await;
    let error = outcome.tags[0].as_ref().unwrap_err();
    assert_eq!(error.class(), ferry_registry::ErrorClass::Transient, "{error}");
    assert!(error.to_string().contains("a race in the registry's storage"), "{error}");
    assert_eq!(proxy.n_applied(), 5, "five rounds, then given up for now");

    // When the registry says a blob it names is not there, the refusal is the registry's
    // verdict, unchanged: one PUT, reported as the registry said it.
    let proxy = FaultProxy::start(&world.mirror).await;
    proxy.add(Rule::new(Some("HEAD"), "/blobs/", Hits::Every, Fault::Status(404)));
    proxy.add(Rule::new(Some("PUT"), "/manifests/", Hits::Every, Fault::ErrorCode(400, "DIGEST_INVALID")));
    let outcome = copy(&proxy, "2.2").await;
    let error = outcome.tags[0].as_ref().unwrap_err();
    assert_eq!(error.class(), ferry_registry::ErrorClass::Verification, "{error}");
    assert!(error.to_string().contains("DIGEST_INVALID"), "{error}");
}

/// Runs `ferry` without blocking the runtime: a fault proxy in this process must keep serving.
async fn run_ferry(args: &[String]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(crate::support::ferry_bin()).args(args).output().await.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_promote_dry_run_confirm_and_rerun() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    world.write_thin_dir(dir.path(), "").unwrap();
    let mut args: Vec<String> =
        vec!["promote".into(), "--thin-manifest-dir".into(), dir.path().display().to_string()];
    args.extend(world.insecure_flags());

    // Without --confirm nothing is written.
    let writes = |server: &RegistryServer| {
        server.access_log().iter().filter(|l| l.method == "PUT" || l.method == "POST").count()
    };
    let (prod_before, mirror_before) = (writes(&world.prod), writes(&world.mirror));
    let (code, stdout, stderr) = run_ferry(&args).await;
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stdout.contains("copy (5)") && stderr.contains("dry run: nothing was written"),
        "{stdout}{stderr}"
    );
    assert_eq!((writes(&world.prod), writes(&world.mirror)), (prod_before, mirror_before));

    let mut confirm = args.clone();
    confirm.extend(["--confirm".into(), "--output".into(), "json".into()]);
    let (code, stdout, stderr) = run_ferry(&confirm).await;
    assert_eq!(code, Some(5), "excluded edges remain, nothing failed: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["summary"]["copied"], 5, "{stdout}");
    assert_eq!(json["summary"]["tagged"], 1);
    assert_eq!(json["summary"]["failed"], 0);
    assert_eq!(json["summary"]["excluded"], 7);

    let (prod, mirror) = (Seeder::new(&world.prod), Seeder::new(&world.mirror));
    assert_eq!(
        prod.tag_digest("demo/app", "1.0").await,
        Some(world.index.digest),
        "byte-identical digest in prod"
    );
    assert_eq!(mirror.tag_digest("demo/app", "1.0").await, Some(world.index.digest));
    assert_eq!(prod.tag_digest("demo/tools", "3.0").await, Some(world.tools.digest));
    assert_eq!(
        prod.tag_digest("demo/app", "1.1").await,
        Some(world.prod_11.digest),
        "the conflicting tag is untouched"
    );
    assert_eq!(mirror.tag_digest("demo/app", "latest").await, None, "overlapping edges are not promoted");

    // A rerun finds everything present and writes nothing.
    let (prod_before, mirror_before) = (writes(&world.prod), writes(&world.mirror));
    let mut rerun = args.clone();
    rerun.push("--confirm".into());
    let (code, stdout, _) = run_ferry(&rerun).await;
    assert_eq!(code, Some(5));
    assert!(stdout.contains("present                 7"), "{stdout}");
    assert_eq!((writes(&world.prod), writes(&world.mirror)), (prod_before, mirror_before));
}

#[tokio::test]
async fn cli_promote_reports_failures_with_exit_6() {
    let world = World::new().await;
    let proxy = FaultProxy::start(&world.mirror).await;
    proxy.add(Rule::new(Some("PUT"), "/manifests/", Hits::Every, Fault::Status(500)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests/a")).unwrap();
    std::fs::create_dir_all(dir.path().join("images/a")).unwrap();
    std::fs::write(
        dir.path().join("manifests/a/promoter-manifest.yaml"),
        format!("registries:\n- name: {}\n  src: true\n- name: {}\n", world.staging.host(), proxy.host()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("images/a/images.yaml"),
        format!("- name: demo/single\n  dmap:\n    \"{}\": [\"2.0\"]\n", world.single.digest),
    )
    .unwrap();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  insecure: [\"{}\", \"{}\"]\n  retry-budget-seconds: 1\n",
            world.staging.host(),
            proxy.host()
        ),
    )
    .unwrap();
    let args: Vec<String> = ["promote", "--confirm", "--progress", "never", "--config"]
        .iter()
        .map(|s| s.to_string())
        .chain([config.display().to_string(), "--thin-manifest-dir".into(), dir.path().display().to_string()])
        .collect();
    let (code, stdout, stderr) = run_ferry(&args).await;
    assert_eq!(code, Some(6), "{stdout}{stderr}");
    assert!(stdout.contains("failed (1)") && stdout.contains("transient: PUT"), "{stdout}");
    assert!(stdout.contains("HTTP 500"), "{stdout}");
}

/// One 429 with `Retry-After: 1` on the first request of each kind the copier makes, at the
/// source or at the destination: every one is absorbed within the budget, and the copy is
/// complete. (Ferry uploads a blob in one streamed PUT, so it sends no PATCH.)
#[tokio::test]
async fn a_single_429_on_any_request_kind_is_absorbed() {
    let world = World::new().await;
    let staging = FaultProxy::start(&world.staging).await;
    let mirror = FaultProxy::start(&world.mirror).await;
    let hosts = [world.staging.host(), world.mirror.host(), staging.host(), mirror.host()];
    // (kind, at the source?, method, path pattern)
    let kinds: [(&str, bool, &'static str, &str); 8] = [
        ("source manifest GET", true, "GET", "/manifests/"),
        ("source blob GET", true, "GET", "/blobs/sha256:"),
        ("destination manifest HEAD", false, "HEAD", "/manifests/"),
        ("destination manifest PUT", false, "PUT", "/manifests/"),
        ("destination blob HEAD", false, "HEAD", "/blobs/sha256:"),
        ("destination upload POST", false, "POST", "/blobs/uploads/"),
        ("destination upload PUT", false, "PUT", "/blobs/uploads/"),
        ("destination mount POST", false, "POST", "/blobs/uploads/"),
    ];
    let mut failures = Vec::new();
    for (i, (kind, at_source, method, path)) in kinds.into_iter().enumerate() {
        let copier = Copier::new(client_with_budget(&hosts, Duration::from_secs(30)), CopyOptions::default());
        let repo = format!("kinds/case{i}");
        if kind.contains("mount") {
            // A first copy on the same host, so that the next one mounts its blobs.
            let first = copier
                .copy(&job(
                    staging.repository("demo/app"),
                    world.index.digest,
                    mirror.repository(&format!("{repo}-a")),
                    &[],
                ))
                .await;
            assert!(first.manifest.is_ok(), "{kind}: {first:?}");
        }
        let proxy = if at_source { &staging } else { &mirror };
        proxy.clear();
        let before = proxy.n_applied();
        proxy.add(Rule::new(
            Some(method),
            path,
            Hits::Nth(1),
            Fault::TooManyRequests { retry_after: Some("1".into()) },
        ));
        let outcome = copier
            .copy(&job(
                staging.repository("demo/app"),
                world.index.digest,
                mirror.repository(&repo),
                &["1.0"],
            ))
            .await;
        proxy.clear();
        let applied = proxy.n_applied() - before;
        let tagged = Seeder::new(&world.mirror).tag_digest(&repo, "1.0").await;
        if outcome.tags.first().is_none_or(|t| t.is_err())
            || tagged != Some(world.index.digest)
            || applied != 1
        {
            failures.push(format!("{kind}: {outcome:?}, 429s applied {applied}, tag {tagged:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Indexes nested 2 and 8 deep copy; 9 and 400 deep are refused as a verification failure
/// (never a stack overflow). An index with 20,000 distinct children is refused before any child
/// is fetched; one listing the same real child 5,000 times copies that child once.
#[tokio::test]
async fn nested_and_wide_indexes_are_bounded() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let copier = copier(&world.hosts());
    for (depth, copies) in [(2, true), (8, true), (9, false), (400, false)] {
        let repo = format!("nested/d{depth}");
        let digest = stage.nested_index(&repo, Some("1.0"), depth, 600 + depth as u64).await;
        let outcome = copier
            .copy(&job(world.staging.repository(&repo), digest, world.mirror.repository(&repo), &["1.0"]))
            .await;
        match (copies, &outcome.manifest) {
            (true, Ok(_)) => {
                assert_eq!(
                    Seeder::new(&world.mirror).tag_digest(&repo, "1.0").await,
                    Some(digest),
                    "depth {depth}"
                )
            }
            (false, Err(error)) => {
                assert_eq!(error.class(), ErrorClass::Verification, "depth {depth}: {error}");
                assert!(error.to_string().contains("nested more than 8 deep"), "depth {depth}: {error}");
                assert_eq!(Seeder::new(&world.mirror).tag_digest(&repo, "1.0").await, None, "depth {depth}");
            }
            (_, result) => panic!("depth {depth}: {result:?}"),
        }
    }

    // Too many distinct children: refused before any child is fetched. (Distribution accepts
    // an index only when its children exist, so the limit is lowered here instead of pushing
    // 10,001 images; the default is `ferry_registry::MAX_INDEX_CHILDREN`.)
    let mut distinct = Vec::new();
    for i in 0..12u64 {
        let spec = ferry_testkit::seed::ImageSpec::small("amd64", 800 + i, 1);
        let image = stage.image("wide/many", None, &spec).await;
        distinct.push((image.digest, image.bytes.len()));
    }
    let wide = stage.wide_index("wide/many", "1.0", 12, &distinct).await;
    let narrow = Copier::new(
        client(&world.hosts(), Credentials::none()),
        CopyOptions { max_index_children: 10, ..CopyOptions::default() },
    );
    let before = world.staging.access_log().len();
    let outcome = narrow
        .copy(&job(
            world.staging.repository("wide/many"),
            wide,
            world.mirror.repository("wide/many"),
            &["1.0"],
        ))
        .await;
    let error = outcome.manifest.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Verification, "{error}");
    assert!(error.to_string().contains("12 distinct children; Ferry copies at most 10"), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(world.staging.access_log().len() - before <= 2, "no child was fetched");

    let child = stage.image("wide/same", None, &ferry_testkit::seed::ImageSpec::small("amd64", 777, 1)).await;
    let same = stage.wide_index("wide/same", "1.0", 5_000, &[(child.digest, child.bytes.len())]).await;
    let started = Instant::now();
    let outcome = copier
        .copy(&job(
            world.staging.repository("wide/same"),
            same,
            world.mirror.repository("wide/same"),
            &["1.0"],
        ))
        .await;
    assert!(outcome.tags[0].is_ok(), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the child is copied once: {:?}", started.elapsed());
}

/// The requests one promotion of a two-platform index costs, by registry and method, against
/// the floor derived in docs/benchmarks.md ("Requests per promotion"): at staging, the three
/// manifests read once each (to verify; the copy reuses them) and the plan's one existence
/// check (plus one referrers tag read per source host); at prod, the plan's tag and manifest checks, the two children written, and the tag's
/// re-read, write (which also writes the index) and read-back.
#[tokio::test]
async fn promoting_an_index_costs_the_derived_manifest_requests() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    ferry_testkit::write_thin_manifest(
        dir.path(),
        "one",
        &world.staging.host(),
        &[world.prod.host()],
        &format!("- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", world.index.digest),
    )
    .unwrap();
    let (staging_mark, prod_mark) = (world.staging.access_log().len(), world.prod.access_log().len());
    let mut args: Vec<String> =
        ["promote", "--confirm", "--progress", "never", "--thin-manifest-dir"].map(str::to_owned).to_vec();
    args.push(dir.path().display().to_string());
    args.extend(world.insecure_flags());
    let (code, stdout, stderr) = run_ferry(&args).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // Ferry's requests only: the logs end here, before this test's own check below.
    let (staging_end, prod_end) = (world.staging.access_log().len(), world.prod.access_log().len());
    assert_eq!(Seeder::new(&world.prod).tag_digest("demo/app", "1.0").await, Some(world.index.digest));
    let world_log = |server: &RegistryServer, mark: usize| {
        let end = if std::ptr::eq(server, &world.staging) { staging_end } else { prod_end };
        server.access_log()[mark..end].to_vec()
    };
    let manifest_requests = |server: &RegistryServer, mark: usize| {
        let mut by_method = std::collections::BTreeMap::<String, usize>::new();
        for line in world_log(server, mark).iter().filter(|l| l.path.contains("/manifests/")) {
            *by_method.entry(line.method.clone()).or_default() += 1;
        }
        by_method
    };
    let expect = |pairs: &[(&str, usize)]| pairs.iter().map(|(m, n)| ((*m).to_owned(), *n)).collect();
    let lines = |server: &RegistryServer, mark: usize| -> Vec<String> {
        world_log(server, mark).iter().map(|l| format!("{} {} {}", l.method, l.path, l.status)).collect()
    };
    let staging_log = lines(&world.staging, staging_mark);
    assert_eq!(
        manifest_requests(&world.staging, staging_mark),
        // The fourth GET is the `sha256-<hex>` referrers tag of the first digest, read once per
        // source host while the host's referrers support is being found out.
        expect(&[("GET", 4), ("HEAD", 1)]),
        "{staging_log:#?}"
    );
    let prod_log = lines(&world.prod, prod_mark);
    assert_eq!(
        manifest_requests(&world.prod, prod_mark),
        expect(&[("HEAD", 4), ("PUT", 3)]),
        "{prod_log:#?}"
    );
}

/// Many promotions at once within one registry (staging and prod are two namespaces of it,
/// as the reproduction had them), into two repositories, every image sharing its base
/// layer: distribution's storage answers some manifest PUTs `DIGEST_INVALID` while another
/// writer links the same layer (seen 2 to 4 times in 120 before). Ferry hashed those bytes
/// itself and the blobs are there, so it is a race to wait out, never a verification failure:
/// every image is promoted, in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promotions_sharing_a_base_layer_all_succeed() {
    let images_n: u64 = 120;
    let registry = RegistryServer::start().await;
    let seeder = Seeder::new(&registry);
    let mut images = String::new();
    for n in 0..images_n {
        let name = if n % 2 == 0 { "load/a" } else { "load/b" };
        let spec = ImageSpec {
            os: "linux",
            architecture: "amd64",
            layers: vec![LayerSpec { size: 4096, seed: 7 }, LayerSpec { size: 2048, seed: 10_000 + n }],
        };
        let pushed = seeder.image(&format!("staging/{name}"), Some(&format!("v{n}")), &spec).await;
        images.push_str(&format!("- name: {name}\n  dmap:\n    \"{}\": [\"v{n}\"]\n", pushed.digest));
    }
    let dir = tempfile::tempdir().unwrap();
    let host = registry.host();
    let registries = format!("registries:\n- name: {host}/staging\n  src: true\n- name: {host}/prod\n");
    std::fs::create_dir_all(dir.path().join("manifests/load")).unwrap();
    std::fs::create_dir_all(dir.path().join("images/load")).unwrap();
    std::fs::write(dir.path().join("manifests/load/promoter-manifest.yaml"), registries).unwrap();
    std::fs::write(dir.path().join("images/load/images.yaml"), images).unwrap();
    let args: Vec<String> = vec![
        "promote".into(),
        "--thin-manifest-dir".into(),
        dir.path().display().to_string(),
        "--confirm".into(),
        "--output".into(),
        "json".into(),
        "--insecure-registry".into(),
        host.to_string(),
    ];
    let (code, stdout, stderr) = run_ferry(&args).await;
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    assert_eq!(json["summary"]["failed"], 0, "{stdout}{stderr}");
    assert_eq!(json["summary"]["copied"], images_n, "{stdout}{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
}

/// A registry that says its budget on every answer (`RateLimit-Remaining`, `RateLimit-Reset`)
/// is spent before the 429, not after: the same eight copies (one, then seven at once) at the
/// same 12 requests/s, against two registries that differ only in saying so. Where it is not
/// said, the burst runs into 429s; where it is, the copies are spread over the budget and meet
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advertised_budget_is_spent_before_the_429() {
    let world = World::new().await;
    let stage = Seeder::new(&world.staging);
    let mut pushed = Vec::new();
    for n in 0..8u64 {
        pushed.push(
            stage.image("demo/budget", Some(&format!("1.{n}")), &ImageSpec::small("amd64", 760 + n, 2)).await,
        );
    }
    let (quiet_registry, said_registry) = (RegistryServer::start().await, RegistryServer::start().await);
    let (quiet, said) = (FaultProxy::start(&quiet_registry).await, FaultProxy::start(&said_registry).await);
    quiet.limit_rate(12);
    said.limit_rate_advertised(12);
    for proxy in [&quiet, &said] {
        let hosts = [world.staging.host(), proxy.host()];
        let copier = Copier::new(client_with_budget(&hosts, Duration::from_secs(60)), CopyOptions::default());
        let jobs: Vec<Job> = pushed
            .iter()
            .enumerate()
            .map(|(n, image)| {
                job(
                    world.staging.repository("demo/budget"),
                    image.digest,
                    proxy.repository("demo/budget"),
                    &[&format!("1.{n}")],
                )
            })
            .collect();
        let first = copier.copy(&jobs[0]).await;
        assert!(first.tags[0].is_ok(), "{first:?}");
        let copies = jobs[1..].iter().map(|j| copier.copy(j));
        for outcome in futures_util::future::join_all(copies).await {
            assert!(outcome.tags[0].is_ok(), "{outcome:?}");
        }
    }
    let (without, with) = (quiet.n_throttled(), said.n_throttled());
    assert!(without >= 1 && with == 0, "429s: {with} where the budget is said, {without} where it is not");
}
