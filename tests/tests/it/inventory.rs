//! Reading destinations by listing: the extended tag list of GCR and Artifact Registry (a
//! named fake in front of a real distribution registry, so that the listing and the manifests
//! are the same state), the OCI fallback, failures, and a listing that lies.

use ferry_manifests::{Input, Policy};
use ferry_model::{Digest, TagOrDigest};
use ferry_plan::{Action, GatherOptions, gather, plan};
use ferry_registry::{Credentials, InventoryKind, Registry as _};
use ferry_testkit::fault::{Fault, FaultProxy, Hits, Rule};
use ferry_testkit::registry::RegistryServer;
use ferry_testkit::seed::{ImageSpec, Seeder};

use crate::support::client;

/// Staging holds `demo/app` with `n` tags (`1.0` … ); prod sits behind a proxy that answers
/// tag lists in the extended shape (when `extended`).
struct Scene {
    staging: RegistryServer,
    prod: RegistryServer,
    proxy: FaultProxy,
    digests: Vec<(String, Digest)>,
    dir: tempfile::TempDir,
}

impl Scene {
    async fn new(n: usize, extended: bool, seed: u64) -> Self {
        let staging = RegistryServer::start().await;
        let prod = RegistryServer::start().await;
        let proxy = FaultProxy::start(&prod).await;
        if extended {
            proxy.add(Rule::new(Some("GET"), "/tags/list$", Hits::Every, Fault::ExtendedTags { lie: None }));
        }
        let stage = Seeder::new(&staging);
        let mut digests = Vec::new();
        for i in 0..n {
            let tag = format!("1.{i}");
            let pushed = stage
                .image("demo/app", Some(&tag), &ImageSpec::small("amd64", seed * 100 + i as u64, 1))
                .await;
            digests.push((tag, pushed.digest));
        }
        let dir = tempfile::tempdir().unwrap();
        let images: String = digests.iter().map(|(tag, d)| format!("    \"{d}\": [\"{tag}\"]\n")).collect();
        ferry_testkit::write_thin_manifest(
            dir.path(),
            "demo",
            &staging.host(),
            &[proxy.host()],
            &format!("- name: demo/app\n  dmap:\n{images}"),
        )
        .unwrap();
        Scene { staging, prod, proxy, digests, dir }
    }

    fn desired(&self) -> ferry_model::DesiredState {
        ferry_manifests::load(&[Input::KpromoThinDir(self.dir.path().to_owned())], &Policy::default())
            .unwrap()
            .state
    }

    fn registry(&self) -> ferry_registry::OciRegistry {
        client(&[self.staging.host(), self.prod.host(), self.proxy.host()], Credentials::none())
    }

    /// Copies the first `k` images to prod, as if promoted earlier.
    async fn promote_first(&self, k: usize) {
        let (stage, prod) = (Seeder::new(&self.staging), Seeder::new(&self.prod));
        for (tag, _) in self.digests.iter().take(k) {
            let bytes = stage.get_manifest("demo/app", tag).await.unwrap();
            let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for blob in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
                let digest = blob["digest"].as_str().unwrap();
                prod.blob("demo/app", &stage.get_blob("demo/app", digest).await).await;
            }
            prod.manifest("demo/app", tag, manifest["mediaType"].as_str().unwrap(), &bytes).await;
        }
    }

    fn requests(&self, registry: &ferry_registry::OciRegistry, kind: &str) -> u32 {
        registry
            .transport()
            .requests_by_kind()
            .iter()
            .filter(|(h, k, _)| *h == self.proxy.host() && *k == kind)
            .map(|(_, _, n)| n)
            .sum()
    }
}

#[tokio::test]
async fn an_extended_listing_answers_every_destination_tag_with_one_request() {
    let scene = Scene::new(12, true, 31).await;
    scene.promote_first(5).await;
    let desired = scene.desired();
    let registry = scene.registry();
    let facts = gather(&registry, &desired, GatherOptions::default()).await;
    let plan = plan(&desired, &facts);
    let names: Vec<&str> = plan.edges.iter().map(|e| e.action.name()).collect();
    assert_eq!(names.iter().filter(|n| **n == "present").count(), 5, "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "copy").count(), 7, "{names:?}");
    assert_eq!(scene.requests(&registry, "tags/list"), 1);
    assert_eq!(scene.requests(&registry, "manifest HEAD"), 0, "the listing answered every tag and digest");
    assert_eq!(
        registry.transport().inventory_kind(&scene.proxy.host()),
        Some(InventoryKind::ExtendedTagsList)
    );

    // The same state without listing: one HEAD per tag, and the same plan.
    let fallback = scene.registry();
    let facts =
        gather(&fallback, &desired, GatherOptions { list_from: None, ..GatherOptions::default() }).await;
    let same = ferry_plan::plan(&desired, &facts);
    assert_eq!(same.edges.iter().map(|e| e.action.name()).collect::<Vec<_>>(), names);
    assert!(scene.requests(&fallback, "manifest HEAD") >= 12);
    assert_eq!(scene.requests(&fallback, "tags/list"), 0);
}

#[tokio::test]
async fn the_oci_fallback_lists_tags_and_heads_only_the_listed_ones() {
    let scene = Scene::new(12, false, 32).await;
    scene.promote_first(3).await;
    let desired = scene.desired();
    let registry = scene.registry();
    let plan = plan(&desired, &gather(&registry, &desired, GatherOptions::default()).await);
    assert_eq!(plan.edges.iter().filter(|e| e.action.name() == "present").count(), 3);
    assert_eq!(scene.requests(&registry, "tags/list"), 1);
    // The three listed tags are read; the nine unlisted ones are absent without a read, and
    // their digests are looked up (the plain list does not say which manifests exist).
    assert_eq!(scene.requests(&registry, "manifest HEAD"), 3 + 9);
    assert_eq!(registry.transport().inventory_kind(&scene.proxy.host()), Some(InventoryKind::TagsList));
    let fallback = scene.registry();
    gather(&fallback, &desired, GatherOptions { list_from: None, ..GatherOptions::default() }).await;
    assert_eq!(scene.requests(&fallback, "manifest HEAD"), 12 + 9, "without the list, every tag is read too");
}

#[tokio::test]
async fn a_listing_that_fails_leaves_its_edges_unchecked() {
    let scene = Scene::new(10, false, 33).await;
    scene.proxy.add(Rule::new(Some("GET"), "/tags/list$", Hits::Every, Fault::Status(500)));
    let desired = scene.desired();
    let registry = ferry_registry::OciRegistry::new(ferry_registry::TransportConfig {
        insecure_hosts: vec![scene.staging.host(), scene.prod.host(), scene.proxy.host()],
        retry: ferry_registry::RetryPolicy {
            budget: std::time::Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let plan = plan(&desired, &gather(&registry, &desired, GatherOptions::default()).await);
    assert!(
        plan.edges.iter().all(|e| matches!(e.action, Action::Unchecked { .. })),
        "never present, never missing: {:?}",
        plan.edges.iter().map(|e| e.action.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_listing_that_lies_never_causes_an_overwrite() {
    // Prod holds 1.0 at another image; the listing leaves 1.0 out, so the plan copies it. The
    // copier reads the tag again before writing, finds the other image, and refuses.
    let scene = Scene::new(8, true, 34).await;
    let other =
        Seeder::new(&scene.prod).image("demo/app", Some("1.0"), &ImageSpec::small("arm64", 3400, 1)).await;
    scene.proxy.clear();
    scene.proxy.add(Rule::new(
        Some("GET"),
        "/tags/list$",
        Hits::Every,
        Fault::ExtendedTags { lie: Some(("1.0".into(), String::new())) },
    ));
    let mut args = vec![
        "promote".to_owned(),
        "--confirm".into(),
        "--thin-manifest-dir".into(),
        scene.dir.path().display().to_string(),
        "--progress".into(),
        "never".into(),
    ];
    for host in [scene.staging.host(), scene.prod.host(), scene.proxy.host()] {
        args.extend(["--insecure-registry".into(), host.to_string()]);
    }
    // Asynchronously: the proxy answers from this test's runtime.
    let out = tokio::process::Command::new(crate::support::ferry_bin())
        .args(&args)
        .env_remove("FERRY_CONFIG")
        .output()
        .await
        .unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(6), "the refused copy is a failure: {stdout}{stderr}");
    assert_eq!(
        Seeder::new(&scene.prod).tag_digest("demo/app", "1.0").await,
        Some(other.digest),
        "never overwritten"
    );
    for (tag, digest) in scene.digests.iter().skip(1) {
        assert_eq!(Seeder::new(&scene.prod).tag_digest("demo/app", tag).await, Some(*digest), "{tag}");
    }
}

/// A small deterministic generator (no proptest here: each case costs real registry pushes).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test]
async fn on_random_registry_states_the_listing_agrees_with_head_for_every_tag() {
    let prod = RegistryServer::start().await;
    let proxy = FaultProxy::start(&prod).await;
    proxy.add(Rule::new(Some("GET"), "/tags/list$", Hits::Every, Fault::ExtendedTags { lie: None }));
    let seeder = Seeder::new(&prod);
    let registry = client(&[prod.host(), proxy.host()], Credentials::none()).with_page_size(3);
    let mut rng = Lcg(0x5eed);
    for case in 0..4 {
        let repo = format!("random/case{case}");
        // Some images, some tags each, some tags moved to other images, an index now and then.
        let n_images = 1 + rng.next() % 4;
        let mut pushed = Vec::new();
        for i in 0..n_images {
            let seed = case * 1000 + i;
            let image = if rng.next().is_multiple_of(3) {
                seeder
                    .index(
                        &repo,
                        None,
                        &[ImageSpec::small("amd64", seed, 1), ImageSpec::small("arm64", seed + 500, 1)],
                    )
                    .await
            } else {
                seeder.image(&repo, None, &ImageSpec::small("amd64", seed, 1)).await
            };
            pushed.push(image);
        }
        let n_tags = rng.next() % 9;
        for t in 0..n_tags {
            let image = &pushed[(rng.next() % n_images) as usize];
            seeder.tag(&repo, image, &format!("t{t}")).await;
            if rng.next().is_multiple_of(4) {
                // Moved: the same tag now names another image.
                let again = &pushed[(rng.next() % n_images) as usize];
                seeder.tag(&repo, again, &format!("t{t}")).await;
            }
        }
        let repository = proxy.repository(&repo);
        let inventory = registry.inventory(&repository).await.unwrap();
        assert_eq!(inventory.kind, InventoryKind::ExtendedTagsList);
        for t in 0..10 {
            let tag = ferry_model::Tag::parse(&format!("t{t}")).unwrap();
            let by_head = registry
                .head_manifest(&repository, &TagOrDigest::Tag(tag.clone()))
                .await
                .unwrap()
                .map(|h| h.digest);
            assert_eq!(inventory.tag(&tag), Some(by_head), "case {case}, t{t}");
        }
    }
}
