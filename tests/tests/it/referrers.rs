//! OCI 1.1 referrers in the registry layer: the tag schema on real CNCF distribution (which has
//! no referrers API), and the referrers API through a fake in front of it (named so: no
//! registry serving the API runs here).

use ferry_model::{Digest, TagOrDigest};
use ferry_registry::referrers::Referrer;
use ferry_registry::{
    Credentials, RawManifest, ReferrerWrite, ReferrersMode, Registry, RegistryError, RegistryWrite,
};
use ferry_testkit::referrers_fake::FakeReferrersApi;
use ferry_testkit::registry::RegistryServer;
use ferry_testkit::seed::{ImageSpec, OCI_INDEX, OCI_MANIFEST, Pushed, Seeder};

use crate::support::client;

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SPDX: &str = "application/spdx+json";

/// A referrer manifest for `subject`, built here (not by the registry layer), with its blobs
/// pushed through `seeder` but not the manifest itself.
async fn artifact(
    seeder: &Seeder,
    repo: &str,
    subject: &Pushed,
    artifact_type: &str,
    content: &[u8],
) -> RawManifest {
    let pushed = seeder
        .referrer_unpushed(
            repo,
            subject,
            artifact_type,
            content,
            &[("org.opencontainers.image.created", "2026-11-29T00:00:00Z")],
        )
        .await;
    RawManifest { digest: pushed.digest, media_type: OCI_MANIFEST.into(), bytes: pushed.bytes.into() }
}

fn digests(list: &[Referrer]) -> Vec<Digest> {
    list.iter().map(|r| r.digest).collect()
}

#[tokio::test]
async fn the_tag_schema_on_distribution_is_merged_never_truncated() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let image = seeder.image("demo/app", Some("1.0"), &ImageSpec::small("amd64", 400, 1)).await;
    let registry = client(&[server.host()], Credentials::none());
    let repo = server.repository("demo/app");

    assert!(registry.referrers(&repo, &image.digest, None).await.unwrap().is_empty());
    assert_eq!(registry.referrers_mode(&server.host()), Some(ReferrersMode::TagSchema), "404: no API");

    let signature = artifact(&seeder, "demo/app", &image, BUNDLE, b"bundle one").await;
    assert_eq!(registry.put_referrer(&repo, &signature).await.unwrap(), ReferrerWrite::Tagged);
    assert_eq!(registry.put_referrer(&repo, &signature).await.unwrap(), ReferrerWrite::AlreadyListed);
    let listed = registry.referrers(&repo, &image.digest, None).await.unwrap();
    assert_eq!(digests(&listed), [signature.digest]);
    assert_eq!(listed[0].artifact_type.as_deref(), Some(BUNDLE));
    assert_eq!(listed[0].size, signature.bytes.len() as u64);

    // Somebody else adds an entry the way cosign writes them (no annotations, no artifactType).
    let foreign = seeder.referrer("demo/app", &image, SPDX, b"an sbom", &[]).await;
    let mut index: serde_json::Value =
        serde_json::from_slice(&seeder.get_manifest("demo/app", &image.digest.tag_form()).await.unwrap())
            .unwrap();
    index["manifests"].as_array_mut().unwrap().insert(
        0,
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": foreign.digest.to_string(), "size": foreign.bytes.len()}),
    );
    seeder
        .manifest("demo/app", &image.digest.tag_form(), OCI_INDEX, &serde_json::to_vec(&index).unwrap())
        .await;

    let sbom = artifact(&seeder, "demo/app", &image, SPDX, b"ferry's sbom").await;
    assert_eq!(registry.put_referrer(&repo, &sbom).await.unwrap(), ReferrerWrite::Tagged);
    let listed = registry.referrers(&repo, &image.digest, None).await.unwrap();
    assert_eq!(
        digests(&listed),
        [foreign.digest, signature.digest, sbom.digest],
        "nothing dropped, order kept"
    );
    // The filter: only what the tag index says is an SBOM (the foreign entry names no type).
    let sboms = registry.referrers(&repo, &image.digest, Some(SPDX)).await.unwrap();
    assert_eq!(digests(&sboms), [sbom.digest]);
    // Each written manifest is byte-identical at the registry.
    let back = registry.get_manifest(&repo, &TagOrDigest::Digest(sbom.digest)).await.unwrap().unwrap();
    assert_eq!(back.bytes, sbom.bytes);
}

#[tokio::test]
async fn a_referrers_tag_that_holds_something_else_is_never_overwritten() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let image = seeder.image("demo/app", Some("1.0"), &ImageSpec::small("amd64", 410, 1)).await;
    // An image manifest sits at the sha256-<hex> tag.
    let squatter = seeder.image("demo/app", None, &ImageSpec::small("arm64", 411, 1)).await;
    seeder.manifest("demo/app", &image.digest.tag_form(), squatter.media_type, &squatter.bytes).await;
    let registry = client(&[server.host()], Credentials::none());
    let repo = server.repository("demo/app");
    let signature = artifact(&seeder, "demo/app", &image, BUNDLE, b"bundle").await;
    let error = registry.put_referrer(&repo, &signature).await.unwrap_err();
    assert!(matches!(error, RegistryError::Refused(_)), "{error}");
    assert!(error.to_string().contains("not a referrers index"), "{error}");
    assert_eq!(
        seeder.tag_digest("demo/app", &image.digest.tag_form()).await,
        Some(squatter.digest),
        "left alone"
    );
    // Read as no referrers (with a warning), not as an error that stops a promotion.
    assert!(registry.referrers(&repo, &image.digest, None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_writers_end_with_both_entries() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let repo = server.repository("demo/app");
    for round in 0..3u64 {
        let image = seeder.image("demo/app", None, &ImageSpec::small("amd64", 420 + round, 1)).await;
        let a = artifact(&seeder, "demo/app", &image, BUNDLE, format!("a{round}").as_bytes()).await;
        let b = artifact(&seeder, "demo/app", &image, SPDX, format!("b{round}").as_bytes()).await;
        // Two clients, as two processes would be: no shared lock.
        let (first, second) =
            (client(&[server.host()], Credentials::none()), client(&[server.host()], Credentials::none()));
        let (x, y) = tokio::join!(first.put_referrer(&repo, &a), second.put_referrer(&repo, &b));
        x.unwrap();
        y.unwrap();
        // Each writer checks its entries again a moment after its write, off the write's path.
        tokio::join!(first.settle_read_backs(), second.settle_read_backs());
        let mut listed = digests(&first.referrers(&repo, &image.digest, None).await.unwrap());
        listed.sort();
        let mut expected = vec![a.digest, b.digest];
        expected.sort();
        assert_eq!(listed, expected, "round {round}: both entries");
    }
}

/// A writer Ferry does not route (cosign, Notation, kpromo) that updates the tag index from a
/// read older than Ferry's write, dropping Ferry's entry: Ferry's write returns at once (no
/// settle on its path), and its read-back a moment later merges the entry back beside the
/// foreign one. Neither entry is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_writer_s_stale_update_is_merged_back_off_the_write_path() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let repo = server.repository("demo/app");
    let image = seeder.image("demo/app", None, &ImageSpec::small("amd64", 470, 1)).await;
    let tag = image.digest.tag_form();
    // The foreign writer reads the (absent) index first, as cosign does before its write.
    assert_eq!(seeder.get_manifest("demo/app", &tag).await, None);
    let foreign = seeder.referrer("demo/app", &image, SPDX, b"a foreign sbom", &[]).await;

    let ferry = client(&[server.host()], Credentials::none());
    let ours = artifact(&seeder, "demo/app", &image, BUNDLE, b"ferry's bundle").await;
    assert_eq!(ferry.put_referrer(&repo, &ours).await.unwrap(), ReferrerWrite::Tagged);

    // Now the foreign writer writes what it read plus its own entry: Ferry's is gone.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": foreign.digest.to_string(), "size": foreign.bytes.len(), "artifactType": SPDX}],
    });
    seeder.manifest("demo/app", &tag, OCI_INDEX, index.to_string().as_bytes()).await;
    let now = digests(
        &Registry::referrers(&client(&[server.host()], Credentials::none()), &repo, &image.digest, None)
            .await
            .unwrap(),
    );
    assert_eq!(now, [foreign.digest], "the stale write dropped Ferry's entry");

    ferry.settle_read_backs().await;
    let mut listed = digests(&ferry.referrers(&repo, &image.digest, None).await.unwrap());
    listed.sort();
    let mut expected = vec![ours.digest, foreign.digest];
    expected.sort();
    assert_eq!(listed, expected, "merged back, beside the foreign entry");
}

#[tokio::test]
async fn the_referrers_api_is_used_where_served_and_remembered() {
    let server = RegistryServer::start().await;
    let fake = FakeReferrersApi::start(&server).await;
    let seeder = Seeder::for_url(&format!("http://{}", fake.host()));
    let image = seeder.image("demo/app", Some("1.0"), &ImageSpec::small("amd64", 430, 1)).await;
    let registry = client(&[fake.host()], Credentials::none());
    let repo = fake.repository("demo/app");

    let mut written = Vec::new();
    for (n, kind) in [BUNDLE, SPDX, BUNDLE, BUNDLE, SPDX].iter().enumerate() {
        let manifest = artifact(&seeder, "demo/app", &image, kind, format!("artifact {n}").as_bytes()).await;
        assert_eq!(registry.put_referrer(&repo, &manifest).await.unwrap(), ReferrerWrite::Indexed);
        written.push((manifest.digest, *kind));
    }
    assert_eq!(registry.referrers_mode(&fake.host()), Some(ReferrersMode::Api));
    // No tag index was written: the registry keeps the list.
    assert_eq!(seeder.tag_digest("demo/app", &image.digest.tag_form()).await, None);
    // Five entries over three pages.
    let all = registry.referrers(&repo, &image.digest, None).await.unwrap();
    assert_eq!(digests(&all), written.iter().map(|(d, _)| *d).collect::<Vec<_>>());
    let bundles = registry.referrers(&repo, &image.digest, Some(BUNDLE)).await.unwrap();
    assert_eq!(
        digests(&bundles),
        written.iter().filter(|(_, k)| *k == BUNDLE).map(|(d, _)| *d).collect::<Vec<_>>()
    );
    assert!(bundles.iter().all(|b| b.annotations.contains_key("org.opencontainers.image.created")));
    // An unknown digest has no referrers: an empty answer, still the API.
    let lookups = fake.lookups();
    assert!(registry.referrers(&repo, &Digest::of(b"none"), None).await.unwrap().is_empty());
    assert_eq!(fake.lookups(), lookups + 1, "one lookup, no fallback to the tag");
}

#[tokio::test]
async fn a_registry_without_the_api_is_asked_once() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let registry = client(&[server.host()], Credentials::none());
    let repo = server.repository("demo/app");
    for n in 0..3u64 {
        let image = seeder.image("demo/app", None, &ImageSpec::small("amd64", 440 + n, 1)).await;
        registry.referrers(&repo, &image.digest, None).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = server.access_log();
    let api = log.iter().filter(|l| l.path.contains("/referrers/")).count();
    let tags = log.iter().filter(|l| l.path.contains("/manifests/sha256-")).count();
    assert_eq!((api, tags), (1, 3), "the API once, then the tag index per digest: {log:?}");
}

/// The referrers API path end to end: staging and prod both serve the API (the fake over real
/// distribution). `promote --confirm` carries the build's bundle from staging to prod, where the
/// registry indexes it (no `sha256-<hex>` tag is written), and writes Ferry's own bundles the same
/// way; a second run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_carries_and_writes_referrers_through_the_api() {
    let (staging_server, prod_server) = (RegistryServer::start().await, RegistryServer::start().await);
    let (staging, prod) =
        (FakeReferrersApi::start(&staging_server).await, FakeReferrersApi::start(&prod_server).await);
    let stage = Seeder::for_url(&format!("http://{}", staging.host()));
    let image = stage
        .index(
            "demo/app",
            Some("1.0"),
            &[ImageSpec::small("amd64", 450, 1), ImageSpec::small("arm64", 451, 1)],
        )
        .await;
    let build_key = ferry_testkit::cosign::TestKey::generate();
    let bundle = ferry_testkit::cosign::bundle_referrer(
        &stage,
        "demo/app",
        &image,
        ferry_testkit::cosign::COSIGN_SIGN_PREDICATE,
        serde_json::json!({}),
        &build_key,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ferry_trust::keys::generate_key_pair(b"pw").unwrap();
    std::fs::write(dir.path().join("ferry.key"), private).unwrap();
    std::fs::write(
        dir.path().join("ferry.yaml"),
        format!(
            "registries:\n  insecure: [\"{s}\", \"{p}\"]\n  trusted-sources: [\"{s}\"]\nsigning:\n  key: ferry.key\n",
            s = staging.host(),
            p = prod.host()
        ),
    )
    .unwrap();
    let manifests = dir.path().join("manifests");
    ferry_testkit::write_thin_manifest(
        &manifests,
        "api",
        &staging.host(),
        &[prod.host()],
        &format!("- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", image.digest),
    )
    .unwrap();
    // Run off the runtime's threads: the fakes serve from this test's runtime.
    let promote = || async {
        let out = tokio::process::Command::new(crate::support::ferry_bin())
            .args(["promote", "--confirm", "--progress", "never", "--thin-manifest-dir"])
            .arg(&manifests)
            .arg("--config")
            .arg(dir.path().join("ferry.yaml"))
            .env("COSIGN_PASSWORD", "pw")
            .env_remove("FERRY_CONFIG")
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = promote().await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let registry = client(&[prod.host()], Credentials::none());
    let at_prod = registry.referrers(&prod.repository("demo/app"), &image.digest, None).await.unwrap();
    assert!(
        at_prod.iter().any(|r| r.digest == bundle.digest),
        "the build's bundle, listed by the API: {at_prod:?}"
    );
    let prod_seeder = Seeder::for_url(&format!("http://{}", prod.host()));
    assert_eq!(
        prod_seeder.get_manifest("demo/app", &bundle.digest.to_string()).await.as_deref(),
        Some(bundle.bytes.as_slice()),
        "byte for byte"
    );
    assert_eq!(prod_seeder.tag_digest("demo/app", &image.digest.tag_form()).await, None, "no tag index");
    // Ferry's own bundle signature, for the index and each child, verifies independently.
    for digest in std::iter::once(&image.digest).chain(image.children.iter().map(|c| &c.digest)) {
        let list = registry.referrers(&prod.repository("demo/app"), digest, Some(BUNDLE)).await.unwrap();
        let mut verified = false;
        for entry in list {
            let manifest: serde_json::Value = serde_json::from_slice(
                &prod_seeder.get_manifest("demo/app", &entry.digest.to_string()).await.unwrap(),
            )
            .unwrap();
            let blob =
                prod_seeder.get_blob("demo/app", manifest["layers"][0]["digest"].as_str().unwrap()).await;
            verified |= ferry_testkit::cosign::verify_bundle(
                &blob,
                digest,
                ferry_testkit::cosign::COSIGN_SIGN_PREDICATE,
                &public,
            )
            .is_ok();
        }
        assert!(verified, "Ferry's bundle signature of {digest} at prod");
    }
    let before = registry.referrers(&prod.repository("demo/app"), &image.digest, None).await.unwrap().len();
    let (code, stdout, stderr) = promote().await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let after = registry.referrers(&prod.repository("demo/app"), &image.digest, None).await.unwrap().len();
    assert_eq!(before, after, "a second run writes nothing");
}
