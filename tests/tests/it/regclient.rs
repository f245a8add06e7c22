//! regclient's own test repository (`tests/data/regclient-testrepo`, an OCI layout built by
//! regclient's `testdata/build-testrepo.sh`), pushed as it is into a staging registry and
//! promoted by Ferry to prod and a mirror: the same bytes everywhere, and every referrer that
//! names a promoted manifest as its subject carried with it, through regclient's edge cases
//! (docker-style attestations inside an index, artifacts on platform children, an index of
//! artifacts, a tag that only looks like a digest tag, an index whose subject is also its
//! child, an artifact whose digest tag points at itself).

use std::collections::BTreeSet;

use ferry_model::Digest;
use ferry_testkit::registry::RegistryServer;
use ferry_testkit::seed::Seeder;

const REPO: &str = "regclient/testrepo";

/// A tag of the referrers tag schema (`sha256-<64 hex>`): an artifact tag, not an image.
fn is_referrers_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `digest` and, for an index, the digests it lists.
async fn with_children(seeder: &Seeder, digest: &Digest) -> Vec<Digest> {
    let mut out = vec![*digest];
    if let Some(bytes) = seeder.get_manifest(REPO, &digest.to_string()).await {
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        out.extend(
            value["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["digest"].as_str().and_then(|d| Digest::parse(d).ok())),
        );
    }
    out
}

/// The referrers the tag schema at `seeder` lists for `subject` whose own `subject` is it.
async fn own_referrers(seeder: &Seeder, subject: &Digest) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    let Some(bytes) = seeder.get_manifest(REPO, &subject.tag_form()).await else { return out };
    let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    for entry in index["manifests"].as_array().into_iter().flatten() {
        let Some(digest) = entry["digest"].as_str().and_then(|d| Digest::parse(d).ok()) else { continue };
        let Some(referrer) = seeder.get_manifest(REPO, &digest.to_string()).await else { continue };
        let referrer: serde_json::Value = serde_json::from_slice(&referrer).unwrap_or_default();
        if referrer["subject"]["digest"].as_str() == Some(subject.to_string().as_str()) {
            out.insert(digest);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regclient_s_test_repository_is_carried_whole() {
    let (staging, prod, mirror) =
        (RegistryServer::start().await, RegistryServer::start().await, RegistryServer::start().await);
    let layout = ferry_testkit::data_dir().join("regclient-testrepo");
    let tags = Seeder::new(&staging).oci_layout(REPO, &layout).await;
    assert!(tags.len() >= 20, "{tags:?}");

    // Every tag that names an image or artifact (the tag schema's indexes travel as referrers).
    let wanted: Vec<&(String, Digest)> = tags.iter().filter(|(tag, _)| !is_referrers_tag(tag)).collect();
    let mut images = String::new();
    for (tag, digest) in &wanted {
        images.push_str(&format!("- name: {REPO}\n  dmap:\n    \"{digest}\": [\"{tag}\"]\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    ferry_testkit::write_thin_manifest(
        dir.path(),
        "regclient",
        &staging.host(),
        &[prod.host(), mirror.host()],
        &images,
    )
    .unwrap();
    let mut args: Vec<String> = vec![
        "promote".into(),
        "--thin-manifest-dir".into(),
        dir.path().display().to_string(),
        "--confirm".into(),
        "--progress".into(),
        "never".into(),
    ];
    for host in [staging.host(), prod.host(), mirror.host()] {
        args.extend(["--insecure-registry".into(), host.to_string()]);
    }
    let out = tokio::process::Command::new(crate::support::ferry_bin()).args(&args).output().await.unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("copied                 {}", wanted.len() * 2)), "{stdout}");
    // The artifact whose digest tag points at itself: read as no referrers, said once.
    assert!(stderr.contains("the referrers tag holds no referrers index"), "{stderr}");

    let source = Seeder::new(&staging);
    for destination in [&prod, &mirror] {
        let at = Seeder::new(destination);
        // The same bytes under every tag.
        for (tag, digest) in &wanted {
            assert_eq!(at.tag_digest(REPO, tag).await, Some(*digest), "{}:{tag}", destination.host());
        }
        // Every referrer of a promoted manifest (or of a child of one) that names it as its
        // subject is there and listed for it.
        let mut checked = 0;
        for (_, digest) in &wanted {
            for subject in with_children(&source, digest).await {
                let expected = own_referrers(&source, &subject).await;
                let listed = own_referrers(&at, &subject).await;
                assert!(
                    expected.is_subset(&listed),
                    "{}: referrers of {subject}: staging lists {expected:?}, found {listed:?}",
                    destination.host()
                );
                checked += expected.len();
            }
        }
        assert!(checked >= 8, "v2, its platform children and child carry referrers: {checked}");
        eprintln!("{}: {} tags, {checked} referrers checked", destination.host(), wanted.len());
    }
    // A second run finds everything there and writes nothing.
    let writes = |server: &RegistryServer| {
        server
            .access_log()
            .iter()
            .filter(|l| l.method == "PUT" || l.method == "POST" || l.method == "PATCH")
            .count()
    };
    let before = (writes(&prod), writes(&mirror));
    let out = tokio::process::Command::new(crate::support::ferry_bin()).args(&args).output().await.unwrap();
    let (code, stdout, stderr) = ferry_testkit::outcome(&out);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!((writes(&prod), writes(&mirror)), before, "a rerun writes nothing: {stdout}");
}
