//! Status and reconcile at k8s.io scale, read by listing and by the OCI fallback.
//!
//! A named fake (`FakeListingRegistry`: registry state in memory behind the OCI API and GCR's
//! extended `tags/list`, one listener per host) stands for 22 regional Artifact Registry
//! backends of 1,350 repositories each and a staging registry. Desired state is a generated
//! thin-manifest tree of the same shape as registry.k8s.io's (54 subprojects × 25 images,
//! 26 digests per image, a sixth of them with two tags: about 770,000 edges). Every edge is
//! present except a planted 0.1%, spread over regions and repositories.
//!
//! Printed: requests by kind, time and peak memory for (1) status/reconcile by listing,
//! unthrottled; (2) the same at 50 requests/s per host, as kpromo lives with it; (3) the OCI
//! fallback (one `HEAD` per edge), unthrottled, with its time at 50 requests/s per host
//! computed from its per-host request count (actually waiting would take hours).
//!
//! Run: `cargo bench -p ferry-testkit --bench inventory --profile dev` (the dev profile: no
//! release build of the workspace is needed for figures of requests and memory). `-- --small`
//! checks the program on 2 subprojects; `-- --listing-only` stops after the first run.

#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a benchmark program that prints its figures")]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_manifests::{Input, Policy};
use ferry_model::{Digest, Host};
use ferry_plan::{GatherOptions, gather, plan};
use ferry_promotion::reconcile::{Holdings, Survey, reconcile};
use ferry_registry::{LimiterConfig, OciRegistry, TransportConfig};

const REGIONS: usize = 22;
/// Subprojects at full scale; `-- --small` runs 2 (a quick check of the program itself).
const SUBPROJECTS: usize = 54;

fn subprojects() -> usize {
    if std::env::args().any(|a| a == "--small") { 2 } else { SUBPROJECTS }
}
const IMAGES_PER_SUBPROJECT: usize = 25;
const DIGESTS_PER_IMAGE: usize = 26;
/// One edge in this many is missing at its destination.
const DRIFT_EVERY: usize = 1000;
const MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

fn digest(sub: usize, image: usize, n: usize) -> Digest {
    Digest::of(format!("{sub}/{image}/{n}").as_bytes())
}

fn tags_of(n: usize) -> Vec<String> {
    if n.is_multiple_of(6) { vec![format!("v1.{n}.0"), format!("v1.{n}")] } else { vec![format!("v1.{n}.0")] }
}

fn repository(sub: usize, image: usize) -> String {
    format!("k8s-artifacts-prod/images/k8s-staging-sub{sub:02}/image-{image:02}")
}

/// `FakeListingRegistry`, one host of it: repository → (tag → digest), and the manifests,
/// served as the OCI API and GCR's extended `tags/list`.
#[derive(Default)]
struct HostState {
    repos: BTreeMap<String, (BTreeMap<String, Digest>, BTreeSet<Digest>)>,
}

async fn serve(state: Arc<HostState>) -> Host {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/v2/", axum::routing::get(|| async { "{}" }))
        .route("/v2/{*rest}", axum::routing::any(route))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Host::parse(&format!("127.0.0.1:{port}")).unwrap()
}

async fn route(
    State(state): State<Arc<HostState>>,
    method: Method,
    UrlPath(rest): UrlPath<String>,
    RawQuery(query): RawQuery,
    _headers: HeaderMap,
) -> Response {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let Some((tags, digests)) = state.repos.get(name) else {
            return (StatusCode::NOT_FOUND, r#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#).into_response();
        };
        let _ = query; // one page: GCR answers a repository this size at once
        let mut manifest = serde_json::Map::new();
        for d in digests {
            let tagged: Vec<&String> = tags.iter().filter(|(_, v)| *v == d).map(|(t, _)| t).collect();
            manifest.insert(
                d.to_string(),
                serde_json::json!({"imageSizeBytes": "1024", "layerId": "", "mediaType": MEDIA_TYPE,
                    "tag": tagged, "timeCreatedMs": "0", "timeUploadedMs": "1733500000000"}),
            );
        }
        let body = serde_json::json!({"child": [], "manifest": manifest, "name": name, "tags": tags.keys().collect::<Vec<_>>()});
        return ([("content-type", "application/json")], body.to_string()).into_response();
    }
    let Some((name, reference)) = rest.split_once("/manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let found = state.repos.get(name).and_then(|(tags, digests)| match Digest::parse(reference) {
        Ok(d) => digests.contains(&d).then_some(d),
        Err(_) => tags.get(reference).copied(),
    });
    match (found, method) {
        (Some(d), Method::HEAD | Method::GET) => (
            [
                ("docker-content-digest", d.to_string()),
                ("content-type", MEDIA_TYPE.to_owned()),
                ("content-length", "1024".to_owned()),
            ],
            "",
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#).into_response(),
    }
}

/// The thin-manifest tree, naming `staging` as the source and `regions` as destinations.
fn generate(root: &Path, staging: &Host, regions: &[Host]) {
    for sub in 0..subprojects() {
        let name = format!("k8s-staging-sub{sub:02}");
        std::fs::create_dir_all(root.join("manifests").join(&name)).unwrap();
        std::fs::create_dir_all(root.join("images").join(&name)).unwrap();
        let mut registries =
            format!("registries:\n- name: {staging}/k8s-artifacts-prod/images/{name}\n  src: true\n");
        for region in regions {
            let _ = writeln!(registries, "- name: {region}/k8s-artifacts-prod/images/{name}");
        }
        std::fs::write(root.join("manifests").join(&name).join("promoter-manifest.yaml"), registries)
            .unwrap();
        let mut images = String::new();
        for image in 0..IMAGES_PER_SUBPROJECT {
            let _ = writeln!(images, "- name: image-{image:02}\n  dmap:");
            for n in 0..DIGESTS_PER_IMAGE {
                let tags: Vec<String> = tags_of(n).iter().map(|t| format!("\"{t}\"")).collect();
                let _ = writeln!(images, "    \"{}\": [{}]", digest(sub, image, n), tags.join(", "));
            }
        }
        std::fs::write(root.join("images").join(&name).join("images.yaml"), images).unwrap();
    }
}

/// Registry state: everything everywhere, except every `DRIFT_EVERY`-th (region, digest) is
/// missing at that region. Returns the states and the planted set.
fn states() -> (HostState, Vec<HostState>, BTreeSet<(usize, String, String)>) {
    let mut staging = HostState::default();
    let mut regions: Vec<HostState> = (0..REGIONS).map(|_| HostState::default()).collect();
    let mut planted = BTreeSet::new();
    let mut i = 0usize;
    for sub in 0..subprojects() {
        for image in 0..IMAGES_PER_SUBPROJECT {
            let repo = repository(sub, image);
            for n in 0..DIGESTS_PER_IMAGE {
                let d = digest(sub, image, n);
                let entry = staging.repos.entry(repo.clone()).or_default();
                entry.1.insert(d);
                for tag in tags_of(n) {
                    entry.0.insert(tag, d);
                }
                for (r, region) in regions.iter_mut().enumerate() {
                    i += 1;
                    let entry = region.repos.entry(repo.clone()).or_default();
                    if i.is_multiple_of(DRIFT_EVERY) {
                        for tag in tags_of(n) {
                            planted.insert((r, repo.clone(), tag));
                        }
                        continue;
                    }
                    entry.1.insert(d);
                    for tag in tags_of(n) {
                        entry.0.insert(tag, d);
                    }
                    // Ferry's signature and attestation of it, as tags.
                    for kind in ["sig", "att"] {
                        let artifact = Digest::of(format!("{d}.{kind}").as_bytes());
                        entry.1.insert(artifact);
                        entry.0.insert(format!("{}.{kind}", d.tag_form()), artifact);
                    }
                }
            }
        }
    }
    (staging, regions, planted)
}

/// The (region, repository, tag) edges `states` leaves out, computed without building them.
fn planted() -> BTreeSet<(usize, String, String)> {
    let mut planted = BTreeSet::new();
    let mut i = 0usize;
    for sub in 0..subprojects() {
        for image in 0..IMAGES_PER_SUBPROJECT {
            for n in 0..DIGESTS_PER_IMAGE {
                for r in 0..REGIONS {
                    i += 1;
                    if i.is_multiple_of(DRIFT_EVERY) {
                        for tag in tags_of(n) {
                            planted.insert((r, repository(sub, image), tag));
                        }
                    }
                }
            }
        }
    }
    planted
}

struct Run {
    name: &'static str,
    requests: Vec<(Host, &'static str, u32)>,
    time: Duration,
    found: BTreeSet<(usize, String, String)>,
    repair: usize,
}

async fn run(
    name: &'static str,
    desired: &ferry_model::DesiredState,
    hosts: &[Host],
    regions: &[Host],
    list_from: Option<usize>,
    rate: Option<f64>,
) -> Run {
    let registry = OciRegistry::new(TransportConfig {
        insecure_hosts: hosts.to_vec(),
        limiter: LimiterConfig { max_rate: rate, ..LimiterConfig::default() },
        ..TransportConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let facts = gather(&registry, desired, GatherOptions { concurrency: 64, list_from }).await;
    let plan = plan(desired, &facts);
    let holdings = Holdings::gather(
        &registry,
        &plan,
        &facts,
        Survey {
            concurrency: 64,
            deep: false,
            // registry.k8s.io's images carry cosign's legacy `.sig` tags.
            formats: ferry_trust::Formats { legacy: true, bundle: false },
        },
    )
    .await;
    let (_, repair) = reconcile(&plan, &holdings, None);
    let time = started.elapsed();
    let found = plan
        .edges
        .iter()
        .filter(|e| e.action.name() != "present")
        .map(|e| {
            let region = regions.iter().position(|h| h == e.destination.host()).unwrap_or(usize::MAX);
            (
                region,
                e.destination.path().to_string(),
                e.tag.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default(),
            )
        })
        .collect();
    Run { name, requests: registry.transport().requests_by_kind(), time, found, repair: repair.len() }
}

fn report(run: &Run, n_hosts: usize, planted: &BTreeSet<(usize, String, String)>) {
    let total: u32 = run.requests.iter().map(|(_, _, n)| n).sum();
    let mut kinds: BTreeMap<&str, u32> = BTreeMap::new();
    let mut per_host: BTreeMap<&Host, u32> = BTreeMap::new();
    for (host, kind, n) in &run.requests {
        *kinds.entry(kind).or_default() += n;
        *per_host.entry(host).or_default() += n;
    }
    let busiest = per_host.values().max().copied().unwrap_or(0);
    println!("{}", run.name);
    println!(
        "  requests:            {total} ({})",
        kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );
    println!("  busiest host:        {busiest} requests ({n_hosts} hosts)");
    println!("  time:                {:.1} s", run.time.as_secs_f64());
    println!("  at 50 requests/s:    {:.1} min (busiest host / 50)", busiest as f64 / 50.0 / 60.0);
    println!(
        "  drift found:         {} edges, planted {} ({})",
        run.found.len(),
        planted.len(),
        if run.found == *planted { "exactly" } else { "MISMATCH" }
    );
    println!("  reconcile would emit {} messages", run.repair);
    println!("  peak RSS so far:     {:.0} MiB", ferry_testkit::peak_rss_mib());
}

/// `--serve`: the fake, in its own process (so that the measured peak memory is Ferry's):
/// prints `hosts: <staging> <region>...` and serves until killed.
async fn serve_fake() {
    let (staging_state, region_states, _) = states();
    let staging = serve(Arc::new(staging_state)).await;
    let mut line = format!("hosts: {staging}");
    for state in region_states {
        line.push_str(&format!(" {}", serve(Arc::new(state)).await));
    }
    println!("{line}");
    std::future::pending::<()>().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if std::env::args().any(|a| a == "--serve") {
        runtime.block_on(serve_fake());
        return;
    }
    runtime.block_on(async {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1).filter(|a| a == "--small"))
            .arg("--serve")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let mut hosts: Vec<Host> =
            first.trim().strip_prefix("hosts: ").unwrap().split(' ').map(|h| Host::parse(h).unwrap()).collect();
        let staging = hosts.remove(0);
        let regions = hosts.clone();
        hosts.push(staging.clone());
        let planted = planted();
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &staging, &regions);
        let desired =
            ferry_manifests::load(&[Input::KpromoThinDir(dir.path().to_owned())], &Policy::default()).unwrap().state;
        let edges: usize = desired.entries.iter().map(|e| e.destinations.len() * e.tags.len().max(1)).sum();
        let repositories = subprojects() * IMAGES_PER_SUBPROJECT;
        println!(
            "k8s.io-scale status and reconcile: {} regions × {repositories} repositories, {} entries, {edges} edges, {} planted drift",
            REGIONS,
            desired.entries.len(),
            planted.len()
        );
        println!("desired state read; peak RSS so far: {:.0} MiB", ferry_testkit::peak_rss_mib());
        let floor = REGIONS * repositories;
        println!("floor (registries × repositories × pages): {floor} listings; target ≤ {:.0} + drift", floor as f64 * 1.1);
        let listed = run("1. by listing (extended tags/list), unthrottled", &desired, &hosts, &regions, Some(8), None).await;
        report(&listed, hosts.len(), &planted);
        if std::env::args().any(|a| a == "--listing-only") {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        let throttled = run("2. by listing, at most 50 requests/s per host", &desired, &hosts, &regions, Some(8), Some(50.0)).await;
        report(&throttled, hosts.len(), &planted);
        let fallback = run("3. OCI fallback (a HEAD per edge), unthrottled", &desired, &hosts, &regions, None, None).await;
        report(&fallback, hosts.len(), &planted);
        let total = |r: &Run| r.requests.iter().map(|(_, _, n)| *n as f64).sum::<f64>();
        println!("ratio fallback / listing requests: {:.0}x", total(&fallback) / total(&listed));
        let _ = child.kill();
        let _ = child.wait();
    });
}
