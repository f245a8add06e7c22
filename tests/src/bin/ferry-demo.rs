//! The demo, in two parts.
//!
//! 1. **The event pipeline**, Ferry's main job: starts staging, prod and two mirrors (CNCF
//!    distribution) on loopback, generates a signing key, writes and prints a commented
//!    `ferry.yaml`, starts `ferry run` and points staging's push notifications at it. Then it
//!    pushes a 2-platform image to staging with skopeo and shows the promotion happen stage by
//!    stage: copied to prod, signed, attested, copied to both mirrors with its signatures. It
//!    ends with `ferry status` for the image and the `cosign verify` commands a user would run.
//! 2. **A batch promotion** from a kpromo thin-manifest directory: `ferry plan`, then
//!    `ferry promote --confirm`, and proof that a conflicting tag in prod was left alone.
//!
//! Each part checks its final state and the demo exits non-zero when a check fails, so CI runs
//! it as a test. `--keep` leaves everything running until Ctrl-C so you can try other commands.
#![allow(clippy::print_stdout, reason = "a demo program talks to its user")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_model::Digest;
use ferry_testkit::registry::{Notification, RegistryOptions, RegistryServer};
use ferry_testkit::seed::{ImageSpec, Seeder};
use ferry_testkit::world::World;
use tokio::io::AsyncBufReadExt as _;

const PASSWORD: &str = "demo-password";
const TOKEN: &str = "demo-webhook-token";

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    let ferry = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("ferry"),
        Err(e) => fail(&format!("cannot find this program's directory: {e}")),
    };
    if !ferry.is_file() {
        fail(&format!("{} is missing: build it with `cargo build -p ferry-cli`", ferry.display()));
    }
    let dir = match tempfile::Builder::new().prefix("ferry-demo-").tempdir() {
        Ok(dir) => dir,
        Err(e) => fail(&format!("cannot make a temporary directory: {e}")),
    };
    let events = match event_pipeline(&ferry, dir.path(), keep).await {
        Ok(events) => events,
        Err(e) => fail(&format!("the event pipeline demo failed: {e}")),
    };
    if let Err(e) = batch(&ferry, dir.path(), keep).await {
        fail(&format!("the batch demo failed: {e}"));
    }
    drop(events);
    println!("\nThe demo finished: every check passed.");
}

fn fail(message: &str) -> ! {
    println!("\ndemo: {message}");
    std::process::exit(1)
}

fn heading(text: &str) {
    println!("\n== {text} {}\n", "=".repeat(78usize.saturating_sub(text.len() + 4)));
}

/// What part 1 leaves running (with `--keep`, until Ctrl-C).
struct Events {
    _registries: Vec<RegistryServer>,
    run: tokio::process::Child,
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.run.start_kill();
    }
}

async fn event_pipeline(ferry: &Path, dir: &Path, keep: bool) -> Result<Option<Events>, Failure> {
    heading("Part 1: a push to staging becomes a signed, attested, replicated image");
    // The port ferry run will listen on, known before staging starts so that staging's
    // notification endpoint can name it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let staging = RegistryServer::start_with(RegistryOptions {
        notifications: vec![Notification {
            url: format!("http://{listen}/v1/events/distribution"),
            headers: vec![("Authorization".into(), format!("Bearer {TOKEN}"))],
        }],
        ..RegistryOptions::default()
    })
    .await;
    let (prod, m1, m2) =
        (RegistryServer::start().await, RegistryServer::start().await, RegistryServer::start().await);
    println!(
        "Four registries (CNCF distribution) on loopback:\n  staging   {}   sends push notifications to http://{listen}\n  \
         prod      {}   the primary: signed and attested here\n  mirror 1  {}\n  mirror 2  {}",
        staging.host(),
        prod.host(),
        m1.host(),
        m2.host()
    );
    let prefix = dir.join("ferry");
    println!("\n$ COSIGN_PASSWORD=… ferry keys generate --output-prefix {}", prefix.display());
    let status = Command::new(ferry)
        .args(["keys", "generate", "--output-prefix"])
        .arg(&prefix)
        .env("COSIGN_PASSWORD", PASSWORD)
        .status()?;
    if !status.success() {
        return Err("ferry keys generate failed".into());
    }
    let config = format!(
        "# The demo's ferry.yaml. examples/ferry.yaml documents every section.\n\
         registries:\n  \
         # The loopback registries speak plain HTTP; every other host must speak HTTPS.\n  \
         insecure: [\"{s}\", \"{p}\", \"{a}\", \"{b}\"]\n\
         signing:\n  \
         # The key Ferry signs and attests with, at the primary; its password is in COSIGN_PASSWORD.\n  \
         key: ferry.key\n\
         pipeline:\n  \
         # Push events are accepted only from these registries (anything else is logged and ignored).\n  \
         registries: [\"{s}\"]\n  \
         mirror-rules:\n  \
         # Every tag pushed under staging's demo/ goes to prod and both mirrors, keeping its name.\n  \
         # The first destination is the primary: Ferry signs and attests there, then copies the\n  \
         # image and those signatures to each mirror.\n  \
         - source: \"{s}/demo\"\n    \
           destinations: [\"{p}/demo\", \"{a}/demo\", \"{b}/demo\"]\n    \
           tags: \"^v?[0-9]\"            # only version tags\n",
        s = staging.host(),
        p = prod.host(),
        a = m1.host(),
        b = m2.host()
    );
    let config_path = dir.join("ferry.yaml");
    std::fs::write(&config_path, &config)?;
    println!("\n{}:\n", config_path.display());
    for line in config.lines() {
        println!("  {line}");
    }
    println!(
        "\n$ FERRY_DISTRIBUTION_TOKEN=… COSIGN_PASSWORD=… ferry run --config {} --listen {listen} --metrics-listen {metrics_listen}\n",
        config_path.display()
    );
    let mut run = tokio::process::Command::new(ferry)
        .args(["run", "--config"])
        .arg(&config_path)
        .args(["--listen", &listen, "--metrics-listen", &metrics_listen, "--grace-seconds", "5"])
        .env("FERRY_DISTRIBUTION_TOKEN", TOKEN)
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("FERRY_LOG_FORMAT", "text")
        .env_remove("FERRY_CONFIG")
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // ferry run's log, as it happens, indented under the demo's own lines.
    if let Some(stderr) = run.stderr.take() {
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("  | {line}");
            }
        });
    }
    wait_until("ferry run to listen", Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(&listen).await.is_ok()
    })
    .await?;

    println!(
        "\n$ skopeo copy --all docker://<build registry>/demo/app:v1.0 docker://{}/demo/app:v1.0\n",
        staging.host()
    );
    let scratch = RegistryServer::start().await;
    let specs = [ImageSpec::small("amd64", 7001, 2), ImageSpec::small("arm64", 7002, 2)];
    let pushed = Seeder::new(&scratch).index("demo/app", Some("v1.0"), &specs).await;
    let skopeo = ferry_testkit::require_binary("skopeo", "skopeo");
    let out = Command::new(skopeo)
        .args(["copy", "--all", "--preserve-digests", "-q"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}/demo/app:v1.0", scratch.host()))
        .arg(format!("docker://{}/demo/app:v1.0", staging.host()))
        .output()?;
    if !out.status.success() {
        return Err(format!("skopeo copy failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    drop(scratch);
    let started = Instant::now();
    let places = [(&prod, "prod"), (&m1, "mirror 1"), (&m2, "mirror 2")];
    wait_until(
        "the image, its signatures and its attestation at prod and both mirrors",
        Duration::from_secs(90),
        || async {
            let mut all = true;
            for (server, _) in &places {
                all &= promoted(
                    server,
                    &pushed.digest,
                    &pushed.children.iter().map(|c| c.digest).collect::<Vec<_>>(),
                )
                .await;
            }
            all
        },
    )
    .await?;
    // Let the last log lines arrive before the next heading.
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "\nPromoted demo/app:v1.0 ({}) in {:.1} s: at prod and both mirrors, with a signature for the index and\n\
         each platform, and a promotion attestation.",
        pushed.digest,
        started.elapsed().as_secs_f64()
    );
    // The signatures verify with Ferry's public key everywhere, as cosign would check them.
    let public = std::fs::read_to_string(dir.join("ferry.pub"))?;
    for (server, name) in &places {
        let seeder = Seeder::new(server);
        for digest in std::iter::once(&pushed.digest).chain(pushed.children.iter().map(|c| &c.digest)) {
            ferry_testkit::cosign::verify_signature(&seeder, "demo/app", digest, &public)
                .await
                .map_err(|e| format!("{name}: the signature of {digest} does not verify: {e}"))?;
        }
    }
    println!("Every signature verifies with ferry.pub (checked here with openssl, as cosign checks it).");

    metrics(&metrics_listen).await?;

    let image = format!("{}/demo/app:v1.0", prod.host());
    println!("\n$ ferry status --config {} --image {image} --all\n", config_path.display());
    let out = Command::new(ferry)
        .args(["status", "--config"])
        .arg(&config_path)
        .args(["--image", &image, "--all"])
        .env_remove("FERRY_CONFIG")
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.code() != Some(0) {
        return Err(format!("ferry status exited with {:?}; expected 0 (complete)", out.status.code()).into());
    }
    println!(
        "\nTo check it yourself with cosign. Ferry signs with a key and writes no transparency-log entry,\n\
         hence --insecure-ignore-tlog. At a mirror, the signature still names prod's repository (where Ferry\n\
         signed) in its docker-reference; cosign checks the digest, which is the same everywhere.\n\n  \
         cosign verify --key {pub_} --insecure-ignore-tlog --allow-insecure-registry {p}/demo/app@{d}\n  \
         cosign verify --key {pub_} --insecure-ignore-tlog --allow-insecure-registry {a}/demo/app@{d}\n  \
         cosign verify-attestation --key {pub_} --insecure-ignore-tlog --allow-insecure-registry \\\n      \
         --type {t} {p}/demo/app@{d}",
        pub_ = dir.join("ferry.pub").display(),
        p = prod.host(),
        a = m1.host(),
        d = pushed.digest,
        t = ferry_trust::cosign::PROMOTION_PREDICATE_TYPE,
    );
    if keep {
        println!(
            "\nferry run and the registries keep running (until Ctrl-C after part 2). Push another tag:"
        );
        println!(
            "  skopeo copy --all --dest-tls-verify=false docker://… docker://{}/demo/app:v1.1",
            staging.host()
        );
    }
    let events = Events { _registries: vec![staging, prod, m1, m2], run };
    if !keep {
        stop(events).await?;
        return Ok(None);
    }
    Ok(Some(events))
}

/// Reads `/metrics` as Prometheus would (parsed by an independent text-format parser), shows
/// the promotion counters, and checks them: one primary and two mirrors promoted.
async fn metrics(listen: &str) -> Result<(), Failure> {
    let url = format!("http://{listen}/metrics");
    println!("\n$ curl {url}   (a few of the samples)\n");
    // The last mirror's counter moves just after its last write: give it a moment.
    let mut scrape = None;
    for _ in 0..25 {
        let text = reqwest::get(&url).await?.error_for_status()?.text().await?;
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?;
        let done = parsed.samples.iter().any(|s| {
            s.metric == "ferry_promotions_total"
                && s.labels.get("role") == Some("mirror")
                && matches!(s.value, prometheus_parse::Value::Counter(v) if v >= 2.0)
        });
        scrape = Some(parsed);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let scrape = scrape.ok_or("no scrape")?;
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => Some(v),
                prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    };
    for sample in &scrape.samples {
        let shown = matches!(
            sample.metric.as_str(),
            "ferry_promotions_total" | "ferry_copied_bytes_total" | "ferry_dead_letter_depth"
        ) || (sample.metric == "ferry_queue_depth" && sample.labels.get("queue") == Some("copy"));
        if shown {
            let labels =
                sample.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",");
            let value = match sample.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            };
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            println!("  {}{labels} {value}", sample.metric);
        }
    }
    let primary = value("ferry_promotions_total", &[("outcome", "promoted"), ("role", "primary")]);
    let mirror = value("ferry_promotions_total", &[("outcome", "promoted"), ("role", "mirror")]);
    if primary != Some(1.0) || mirror != Some(2.0) {
        return Err(format!(
            "/metrics counts {primary:?} primary and {mirror:?} mirror promotions; expected 1 and 2"
        )
        .into());
    }
    if !value("ferry_copied_bytes_total", &[]).is_some_and(|b| b > 0.0) {
        return Err("/metrics counts no copied bytes".into());
    }
    let timed = scrape.samples.iter().any(|s| {
        s.metric == "ferry_stage_duration_seconds"
            && matches!(&s.value, prometheus_parse::Value::Histogram(h) if h.iter().any(|b| b.count > 0.0))
    });
    if !timed {
        return Err("/metrics has no stage latency observations".into());
    }
    Ok(())
}

/// SIGTERM, as a service manager stops it; ferry run finishes what is in flight and exits 0.
async fn stop(mut events: Events) -> Result<(), Failure> {
    if let Some(pid) = events.run.id() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let status = tokio::time::timeout(Duration::from_secs(15), events.run.wait())
        .await
        .map_err(|_| "ferry run did not stop within 15 s of SIGTERM")??;
    if !status.success() {
        return Err(format!("ferry run exited with {status} after SIGTERM").into());
    }
    println!("\nferry run stopped on SIGTERM ({status}).");
    Ok(())
}

/// `server` holds the index, a signature for it and for each child, and an attestation.
async fn promoted(server: &RegistryServer, digest: &Digest, children: &[Digest]) -> bool {
    let seeder = Seeder::new(server);
    if seeder.tag_digest("demo/app", "v1.0").await != Some(*digest)
        || seeder.tag_digest("demo/app", &format!("{}.att", digest.tag_form())).await.is_none()
    {
        return false;
    }
    for d in std::iter::once(digest).chain(children) {
        if seeder.tag_digest("demo/app", &format!("{}.sig", d.tag_form())).await.is_none() {
            return false;
        }
    }
    true
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, condition: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if ferry_testkit::poll_until(timeout, Duration::from_millis(200), condition).await {
        return Ok(());
    }
    Err(format!("timed out after {timeout:?} waiting for {what}").into())
}

async fn batch(ferry: &Path, dir: &Path, keep: bool) -> Result<(), Failure> {
    heading("Part 2: a batch promotion from kpromo manifests (plan, then promote --confirm)");
    println!("Starting three registries (staging, prod, mirror) and seeding them...");
    let world = World::new().await;
    let manifests: PathBuf = dir.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    world.write_thin_dir(&manifests, "")?;
    println!(
        "\n  staging  {}  demo/app:1.0 (2-platform index), demo/app:1.1, demo/single:2.0, demo/tools:3.0\n  \
         prod     {}  demo/app:1.1 (other content: a conflict), demo/single:2.0, demo/tools (untagged)\n  \
         mirror   {}  empty\n\n  manifests: {}",
        world.staging.host(),
        world.prod.host(),
        world.mirror.host(),
        manifests.display()
    );
    let mut args = vec!["plan".to_owned(), "--thin-manifest-dir".to_owned(), manifests.display().to_string()];
    args.extend(world.insecure_flags());
    println!("\n$ ferry {}\n", args.join(" "));
    let status = Command::new(ferry).args(&args).env_remove("FERRY_CONFIG").status()?;
    println!(
        "\nferry exited with {} ({}).",
        status.code().unwrap_or(-1),
        match status.code() {
            Some(5) => "some edges are excluded: the conflict, the overlap and the missing source, as seeded",
            Some(0) => "nothing excluded",
            _ => "unexpected",
        }
    );
    if status.code() != Some(5) {
        return Err(format!(
            "ferry plan exited with {:?}; the seeded conflicts should give 5",
            status.code()
        )
        .into());
    }
    let mut promote = args.clone();
    promote[0] = "promote".into();
    // Signed with part 1's key: the primary gets signatures and an attestation, the mirror copies.
    promote.extend(["--key".to_owned(), dir.join("ferry.key").display().to_string(), "--confirm".to_owned()]);
    println!("\n$ COSIGN_PASSWORD=… ferry {}\n", promote.join(" "));
    let status = Command::new(ferry)
        .args(&promote)
        .env_remove("FERRY_CONFIG")
        .env("COSIGN_PASSWORD", PASSWORD)
        .status()?;
    println!("\nferry exited with {}.", status.code().unwrap_or(-1));
    let prod = Seeder::new(&world.prod);
    let (app_10, app_11) =
        (prod.tag_digest("demo/app", "1.0").await, prod.tag_digest("demo/app", "1.1").await);
    println!(
        "\nprod demo/app:1.0 -> {} (staging's index: {})\nprod demo/app:1.1 -> {} (untouched: it was {} before)",
        app_10.map(|d| d.to_string()).unwrap_or_default(),
        world.index.digest,
        app_11.map(|d| d.to_string()).unwrap_or_default(),
        world.prod_11.digest
    );
    if app_10 != Some(world.index.digest) {
        return Err("prod demo/app:1.0 is not staging's index".into());
    }
    if app_11 != Some(world.prod_11.digest) {
        return Err("prod demo/app:1.1 was overwritten".into());
    }
    let public = std::fs::read_to_string(dir.join("ferry.pub"))?;
    ferry_testkit::cosign::verify_signature(&prod, "demo/app", &world.index.digest, &public)
        .await
        .map_err(|e| format!("prod demo/app:1.0 is not signed with ferry.key: {e}"))?;
    println!("prod demo/app:1.0 carries Ferry's signature (verified with ferry.pub).");
    if keep {
        println!(
            "\nEverything keeps running until Ctrl-C. Try:\n  ferry snapshot {}/demo --insecure-registry {}",
            world.staging.host(),
            world.staging.host()
        );
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
