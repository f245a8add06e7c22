//! The event pipeline on RabbitMQ: latency from push to replicated, and throughput, with the
//! batch baseline (`skopeo sync` of the same images to the same three registries, copy only)
//! side by side.
//!
//! `ferry run` (release build) runs every stage on RabbitMQ. A staging registry (CNCF
//! distribution) sends its real push notifications to ingest; a mirror rule promotes
//! `bench/*` to prod (primary, signed and attested) and two mirrors (signatures and
//! attestations replicated). 100 small images are pushed, 8 at a time.
//!
//! - Latency of one image: from the end of its push (the registry then sends its webhook) to
//!   the replicator's last "promoted to a mirror" log line for its digest (both mirrors). p50 and p95.
//! - Throughput: images fully promoted per minute, first push to last replication.
//!
//! Run: `cargo build --release -p ferry-cli && cargo bench -p ferry-testkit --bench pipeline`
#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a benchmark program that prints its figures")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_testkit::registry::{AccessLine, Notification, RegistryOptions, RegistryServer};
use ferry_testkit::seed::{ImageSpec, Seeder};
use futures_util::StreamExt as _;

const IMAGES: usize = 100;
const PUSHES_AT_ONCE: usize = 8;
const SINGLE: usize = 10;
/// The fewest manifest requests one promotion in this benchmark needs (a single-manifest image
/// to a primary, signed and attested, replicated to two mirrors), for `signing.formats`
/// `[legacy, bundle]` and `[bundle]`; derived in `docs/benchmarks.md`.
const PIPELINE_FLOOR: usize = 69;
const PIPELINE_FLOOR_BUNDLE: usize = 47;

/// The replicator's "promoted to a mirror" lines of ferry's JSON log, read incrementally: digest -> (lines, last time).
#[derive(Default)]
struct Replications {
    offset: usize,
    seen: HashMap<String, (usize, f64)>,
}

impl Replications {
    fn read(&mut self, log: &std::path::Path) {
        let text = std::fs::read(log).unwrap_or_default();
        // Only whole lines; a line being written is read next time.
        let Some(end) = text[self.offset.min(text.len())..].iter().rposition(|b| *b == b'\n') else { return };
        let chunk = &text[self.offset..self.offset + end + 1];
        self.offset += end + 1;
        for line in String::from_utf8_lossy(chunk).lines() {
            // The replicator's one line per outcome at a mirror.
            if !line.contains("promoted to a mirror") {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if v["fields"]["outcome"] != "promoted" {
                continue;
            }
            let (Some(digest), Some(at)) =
                (v["fields"]["digest"].as_str(), v["timestamp"].as_str().and_then(epoch_seconds))
            else {
                continue;
            };
            let entry = self.seen.entry(digest.to_owned()).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.max(at);
        }
    }

    /// When each of `pushed` was replicated to both mirrors, waiting up to 600 s.
    async fn wait(&mut self, log: &std::path::Path, pushed: &[(String, f64)]) -> HashMap<String, f64> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            self.read(log);
            if pushed.iter().all(|(d, _)| self.seen.get(d).is_some_and(|(n, _)| *n >= 2)) {
                return pushed.iter().map(|(d, _)| (d.clone(), self.seen[d].1)).collect();
            }
            assert!(
                Instant::now() < deadline,
                "not every image was replicated within 600 s; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn ferry_release() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/ferry");
    assert!(bin.is_file(), "{} is missing: cargo build --release -p ferry-cli", bin.display());
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp such as `2026-11-24T10:42:19.879627Z`.
fn epoch_seconds(timestamp: &str) -> Option<f64> {
    let (date, time) = timestamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min, s) =
        (t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// CPU seconds (user + system) of a process, from /proc.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// CPU seconds of every process whose command name starts with `name`.
fn named_cpu(name: &str) -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(name)))
        .map(process_cpu)
        .sum()
}

/// (busy, total) CPU seconds of the whole machine, from /proc/stat.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    ((total - idle) / 100.0, total / 100.0)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one promotion left at prod, to be written again by the raw writer: every blob, then
/// every manifest in an order a registry accepts (the image by its tag, the referrers by
/// digest, the cosign tags, the referrers tag index last).
struct Writes {
    blobs: Vec<Vec<u8>>,
    /// (reference, media type, bytes)
    manifests: Vec<(String, String, Vec<u8>)>,
}

fn media_type_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_owned())
}

/// The blobs a manifest names (config and layers), read by Ferry's own manifest model.
fn blob_digests(bytes: &[u8]) -> Vec<String> {
    let raw = ferry_registry::RawManifest {
        digest: ferry_model::Digest::of(bytes),
        media_type: media_type_of(bytes),
        bytes: bytes.to_vec().into(),
    };
    raw.content().unwrap().blobs().iter().map(|b| b.digest.to_string()).collect()
}

/// Reads back (untimed) everything the promotion of `repo`'s `digest` wrote at prod.
async fn promotion_writes(prod: &Seeder, repo: &str) -> Writes {
    let digest = prod.tag_digest(repo, "1.0").await.unwrap();
    let mut blobs: Vec<String> = Vec::new();
    let mut manifests = Vec::new();
    let mut add = |reference: String, bytes: Vec<u8>, blobs: &mut Vec<String>| {
        blobs.extend(blob_digests(&bytes));
        manifests.push((reference, media_type_of(&bytes), bytes));
    };
    let image = prod.get_manifest(repo, "1.0").await.unwrap();
    add("1.0".into(), image, &mut blobs);
    let index_tag = digest.tag_form();
    let index = prod.get_manifest(repo, &index_tag).await;
    if let Some(index) = &index {
        let listed: serde_json::Value = serde_json::from_slice(index).unwrap();
        for entry in listed["manifests"].as_array().into_iter().flatten() {
            let referrer = entry["digest"].as_str().unwrap().to_owned();
            let bytes = prod.get_manifest(repo, &referrer).await.unwrap();
            add(referrer, bytes, &mut blobs);
        }
    }
    for suffix in ["sig", "att"] {
        let tag = format!("{index_tag}.{suffix}");
        if let Some(bytes) = prod.get_manifest(repo, &tag).await {
            add(tag, bytes, &mut blobs);
        }
    }
    if let Some(index) = index {
        manifests.push((index_tag, media_type_of(&index), index));
    }
    blobs.sort();
    blobs.dedup();
    let mut bytes = Vec::with_capacity(blobs.len());
    for blob in &blobs {
        bytes.push(prod.get_blob(repo, blob).await);
    }
    Writes { blobs: bytes, manifests }
}

/// The raw writer: puts exactly what each promotion wrote (image, signatures, attestations,
/// referrers and their tag index) into each of `targets`, with no reads and no checks, the
/// same number of promotions at a time as the pipeline ran. Returns the seconds it took and
/// its requests.
async fn raw_writer(writes: &[(String, Writes)], targets: &[RegistryServer], at_once: usize) -> (f64, usize) {
    let seeders: Vec<Seeder> = targets.iter().map(Seeder::new).collect();
    let marks: Vec<usize> = targets.iter().map(|t| t.access_log().len()).collect();
    let started = Instant::now();
    futures_util::stream::iter(writes)
        .map(|(repo, w)| {
            let seeders = &seeders;
            async move {
                futures_util::future::join_all(seeders.iter().map(|to| async move {
                    futures_util::future::join_all(w.blobs.iter().map(|b| to.upload(repo, b))).await;
                    for (reference, media_type, bytes) in &w.manifests {
                        to.manifest(repo, reference, media_type, bytes).await;
                    }
                }))
                .await;
            }
        })
        .buffer_unordered(at_once)
        .collect::<Vec<()>>()
        .await;
    let took = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await; // the registries write their logs after answering
    let requests = targets.iter().zip(marks).map(|(t, m)| t.access_log().len() - m).sum();
    (took, requests)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `FERRY_BENCH_FORMATS=bundle`: `signing.formats: [bundle]` (the default: legacy and bundle).
    #[allow(clippy::disallowed_methods, reason = "the benchmark's own switch")]
    let bundle_only = std::env::var("FERRY_BENCH_FORMATS").is_ok_and(|f| f == "bundle");
    let (formats, floor) =
        if bundle_only { ("[bundle]", PIPELINE_FLOOR_BUNDLE) } else { ("[legacy, bundle]", PIPELINE_FLOOR) };
    let port = free_port();
    let token = "bench-token";
    let staging = RegistryServer::start_with(RegistryOptions {
        notifications: vec![Notification {
            url: format!("http://127.0.0.1:{port}/v1/events/distribution"),
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        }],
        ..Default::default()
    })
    .await;
    let (prod, m1, m2) =
        (RegistryServer::start().await, RegistryServer::start().await, RegistryServer::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ferry_trust::keys::generate_key_pair(b"bench").unwrap();
    std::fs::write(dir.path().join("ferry.key"), private).unwrap();
    std::fs::write(dir.path().join("ferry.pub"), public).unwrap();
    let hosts = [staging.host(), prod.host(), m1.host(), m2.host()];
    let quoted: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  insecure: [{}]\nsigning:\n  key: ferry.key\n  formats: {formats}\npipeline:\n  registries: [\"{}\"]\n  \
             mirror-rules:\n  - source: \"{}/bench\"\n    destinations: [\"{}/bench\", \"{}/bench\", \"{}/bench\"]\n    trusted: true\n",
            quoted.join(", "),
            staging.host(),
            staging.host(),
            prod.host(),
            m1.host(),
            m2.host()
        ),
    )
    .unwrap();
    let prefix = format!("ferry-bench-{port}");
    let log = dir.path().join("ferry.log");
    let mut ferry = Command::new(ferry_release())
        .args(["run", "--transport", "amqp://guest:guest@127.0.0.1:5672/%2f", "--queue-prefix", &prefix])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--concurrency", "8", "--config"])
        .arg(&config)
        .env("FERRY_LOG", "info")
        .env("FERRY_LOG_FORMAT", "json")
        .env("COSIGN_PASSWORD", "bench")
        .env("FERRY_DISTRIBUTION_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
        assert!(
            Instant::now() < deadline,
            "ferry run did not start: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Push, 8 at a time, noting when each push ended.
    let seeder = Seeder::new(&staging);
    let (ferry_cpu_before, machine_before) = (process_cpu(ferry.id()), machine_cpu());
    let me_before = process_cpu(std::process::id());
    let (rabbit_before, registries_before) = (named_cpu("beam.smp"), named_cpu("docker-registry"));
    let marks: Vec<usize> = [&staging, &prod, &m1, &m2].iter().map(|r| r.access_log().len()).collect();
    let started = now();
    let pushed: Vec<(String, f64)> = futures_util::stream::iter(0..IMAGES)
        .map(|i| {
            let seeder = &seeder;
            async move {
                let spec = ImageSpec::small("amd64", 7_000 + i as u64, 2);
                let p = seeder.image(&format!("bench/app{i}"), Some("1.0"), &spec).await;
                (p.digest.to_string(), now())
            }
        })
        .buffer_unordered(PUSHES_AT_ONCE)
        .collect()
        .await;
    let pushes_took = now() - started;

    let mut replications = Replications::default();
    let replicated = replications.wait(&log, &pushed).await;
    let mut burst: Vec<f64> = pushed.iter().map(|(d, at)| replicated[d] - at).collect();
    burst.sort_by(f64::total_cmp);
    let finished = replicated.values().copied().fold(0.0, f64::max);
    let ferry_minutes = (finished - started) / 60.0;
    let (ferry_cpu, machine_after) = (process_cpu(ferry.id()) - ferry_cpu_before, machine_cpu());
    let (busy, total) = (machine_after.0 - machine_before.0, machine_after.1 - machine_before.1);
    let me = process_cpu(std::process::id()) - me_before;
    let (rabbit, registries) =
        (named_cpu("beam.smp") - rabbit_before, named_cpu("docker-registry") - registries_before);
    // Ferry's requests during the burst, by registry (the seeder's pushes to staging are not
    // Ferry's: told apart by the User-Agent).
    let requests: Vec<(&str, Vec<AccessLine>)> =
        [("staging", &staging), ("prod", &prod), ("mirror 1", &m1), ("mirror 2", &m2)]
            .iter()
            .zip(&marks)
            .map(|((name, r), mark)| {
                let log = r.access_log();
                (
                    *name,
                    log[(*mark).min(log.len())..]
                        .iter()
                        .filter(|l| l.user_agent.starts_with("ferry/"))
                        .cloned()
                        .collect(),
                )
            })
            .collect();

    // Unloaded latency: one push at a time, each waited for.
    let mut single = Vec::new();
    for i in 0..SINGLE {
        let spec = ImageSpec::small("amd64", 9_000 + i as u64, 2);
        let p = seeder.image(&format!("bench/single{i}"), Some("1.0"), &spec).await;
        let one = vec![(p.digest.to_string(), now())];
        let done = replications.wait(&log, &one).await;
        single.push(done[&one[0].0] - one[0].1);
    }
    single.sort_by(f64::total_cmp);
    let _ = ferry.kill();
    let _ = ferry.wait();

    // The physical limit: a raw writer puts what the burst's promotions wrote into three fresh
    // registries (read back from prod first, untimed).
    let prod_reader = Seeder::new(&prod);
    let mut writes = Vec::with_capacity(IMAGES);
    for i in 0..IMAGES {
        let repo = format!("bench/app{i}");
        let w = promotion_writes(&prod_reader, &repo).await;
        writes.push((repo, w));
    }
    let fresh = [RegistryServer::start().await, RegistryServer::start().await, RegistryServer::start().await];
    let fresh_cpu = |fresh: &[RegistryServer]| fresh.iter().map(RegistryServer::cpu_seconds).sum::<f64>();
    let (raw_cpu_before, raw_machine_before) = (fresh_cpu(&fresh), machine_cpu());
    let (raw_seconds, raw_requests) = raw_writer(&writes, &fresh, PUSHES_AT_ONCE).await;
    let raw_registries = fresh_cpu(&fresh) - raw_cpu_before;
    let raw_machine = machine_cpu();
    let raw_busy = (raw_machine.0 - raw_machine_before.0) / (raw_machine.1 - raw_machine_before.1).max(0.001);
    drop(fresh);

    // Baseline: skopeo sync copies the same 100 repositories to the three registries (no
    // signing, no attestation, no replication of either).
    let skopeo = ferry_testkit::require_binary("skopeo", "skopeo");
    let images: String = (0..IMAGES).map(|i| format!("    bench/app{i}: [\"1.0\"]\n")).collect();
    let sync_yaml = dir.path().join("sync.yaml");
    std::fs::write(&sync_yaml, format!("{}:\n  tls-verify: false\n  images:\n{images}", staging.host()))
        .unwrap();
    let baseline_started = Instant::now();
    let staging_mark = staging.access_log().len();
    let mut baseline_requests = Vec::new();
    for target in
        [RegistryServer::start().await, RegistryServer::start().await, RegistryServer::start().await]
    {
        let out = Command::new(&skopeo)
            .args(["sync", "--all", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false"])
            .arg(&sync_yaml)
            .arg(format!("{}/bench", target.host()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo sync: {}", String::from_utf8_lossy(&out.stderr));
        baseline_requests.push(target.access_log().len());
    }
    baseline_requests.push(staging.access_log().len() - staging_mark);
    let skopeo_minutes = baseline_started.elapsed().as_secs_f64() / 60.0;
    let skopeo_requests: usize = baseline_requests.iter().sum();

    // Clean up the benchmark's queues.
    let _ = Command::new(ferry_release())
        .args(["queues", "remove", "--confirm", "--transport", "amqp://guest:guest@127.0.0.1:5672/%2f"])
        .args(["--queue-prefix", &prefix])
        .output();

    let ferry_rate = IMAGES as f64 / ferry_minutes;
    let skopeo_rate = IMAGES as f64 / skopeo_minutes;
    println!(
        "pipeline on RabbitMQ: {IMAGES} pushes of small images ({PUSHES_AT_ONCE} at a time, {pushes_took:.1} s), 1 primary + 2 mirrors"
    );
    println!(
        "  signing.formats: {formats}\n  latency push -> replicated to both mirrors, one push at a time ({SINGLE}): p50 {:.2} s, p95 {:.2} s  (targets: p50 <= 0.5 s, p95 <= 1 s)",
        percentile(&single, 50.0),
        percentile(&single, 95.0)
    );
    println!(
        "  latency during the burst of {IMAGES} (queueing included): p50 {:.2} s, p95 {:.2} s, max {:.2} s",
        percentile(&burst, 50.0),
        percentile(&burst, 95.0),
        burst[burst.len() - 1]
    );
    println!("  throughput: {ferry_rate:.0} promotions/min (copy + sign + attest + replicate)");
    println!(
        "  CPU during the burst: machine {:.0}% busy ({busy:.1} of {total:.1} core-seconds); ferry itself {ferry_cpu:.1}, this benchmark (pushing, log reading) {me:.1}, RabbitMQ {rabbit:.1}, the 5 registries {registries:.1} core-seconds",
        100.0 * busy / total.max(0.001)
    );
    let all: usize = requests.iter().map(|(_, lines)| lines.len()).sum();
    let manifests: usize =
        requests.iter().flat_map(|(_, lines)| lines.iter()).filter(|l| l.kind() == "manifest").count();
    println!(
        "  requests per promotion: {:.1} ({:.1} manifest requests; floor {floor} manifest requests, {:.2}x the floor, target <= 1.15x)",
        all as f64 / IMAGES as f64,
        manifests as f64 / IMAGES as f64,
        manifests as f64 / IMAGES as f64 / floor as f64
    );
    for (name, lines) in &requests {
        println!("    at {name}: {} requests: {}", lines.len(), ferry_testkit::registry::breakdown(lines));
    }
    println!("  registry CPU per promotion: {:.3} core-seconds", registries / IMAGES as f64);
    println!(
        "  baseline skopeo sync to the same 3 registries, copy only: {skopeo_rate:.0} images/min, {:.1} requests per image",
        skopeo_requests as f64 / IMAGES as f64
    );
    println!("  ratio ferry / skopeo sync: {:.2}x", ferry_rate / skopeo_rate);
    let raw_rate = IMAGES as f64 / (raw_seconds / 60.0);
    let (blobs, manifests): (usize, usize) =
        writes.iter().fold((0, 0), |(b, m), (_, w)| (b + w.blobs.len(), m + w.manifests.len()));
    println!(
        "  raw writer (the same writes to 3 fresh registries, {PUSHES_AT_ONCE} promotions at a time, no reads, no checks): {raw_rate:.0} promotions/min, {:.1} requests per promotion ({:.1} blobs and {:.1} manifests per registry)",
        raw_requests as f64 / IMAGES as f64,
        blobs as f64 / IMAGES as f64,
        manifests as f64 / IMAGES as f64
    );
    println!(
        "  raw writer: registry CPU per promotion {:.3} core-seconds, machine {:.0}% busy; ferry's registry CPU per promotion / the raw writer's: {:.2}x",
        raw_registries / IMAGES as f64,
        100.0 * raw_busy,
        registries / raw_registries.max(0.001)
    );
    println!("  ratio ferry / raw writer: {:.2}x  (target >= 0.8x)", ferry_rate / raw_rate);
}
