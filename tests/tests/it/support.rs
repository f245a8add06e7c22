//! Shared set-up for the integration tests.

use std::sync::{Arc, Mutex};

use ferry_model::Host;
use ferry_registry::{Credentials, OciRegistry, RetryPolicy, TransportConfig};

/// A registry client that may use plain HTTP to `hosts`, with a short retry budget.
pub(crate) fn client(hosts: &[Host], credentials: Credentials) -> OciRegistry {
    OciRegistry::new(TransportConfig {
        insecure_hosts: hosts.to_vec(),
        credentials,
        retry: RetryPolicy { budget: std::time::Duration::from_secs(5), ..RetryPolicy::default() },
        ..TransportConfig::default()
    })
    .expect("client")
}

/// Every log line any test in this binary emits, at every level. Installed once as the global
/// subscriber: a per-test (thread-local) subscriber races with tracing's callsite cache when
/// tests run in parallel.
#[derive(Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

struct Telemetry {
    logs: CapturedLogs,
    spans: opentelemetry_sdk::trace::InMemorySpanExporter,
}

/// The one global subscriber: log lines into [`CapturedLogs`], spans through the same
/// OpenTelemetry layer the runtime installs, into an in-memory exporter.
fn telemetry() -> &'static Telemetry {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    static TELEMETRY: std::sync::OnceLock<Telemetry> = std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let logs = CapturedLogs::default();
        let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let tracer = provider.tracer("ferry-it");
        opentelemetry::global::set_tracer_provider(provider);
        let sink = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::TRACE)
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || sink.clone()))
            .with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        Telemetry { logs, spans }
    })
}

impl CapturedLogs {
    pub(crate) fn global() -> &'static CapturedLogs {
        &telemetry().logs
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every span any test in this binary finished so far.
pub(crate) fn finished_spans() -> Vec<opentelemetry_sdk::trace::SpanData> {
    telemetry().spans.get_finished_spans().unwrap()
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `ferry` binary next to this test binary (cargo builds it with the workspace).
pub(crate) fn ferry_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("ferry");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p ferry-cli` first (.ci/run does)",
        bin.display()
    );
    bin
}

/// A scenario with a deadline: a broker or registry that stops answering fails the test with
/// the pipeline's last log lines; it never hangs the suite.
pub(crate) fn bounded<'a>(
    scenario: impl std::future::Future<Output = ()> + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);
    Box::pin(async move {
        if tokio::time::timeout(DEADLINE, Box::pin(scenario)).await.is_err() {
            panic!(
                "the scenario did not finish within {DEADLINE:?}; the last log lines:\n{}",
                last_log_lines()
            );
        }
    })
}

pub(crate) fn last_log_lines() -> String {
    let logs = crate::support::CapturedLogs::global().text();
    let lines: Vec<&str> =
        logs.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains(" INFO ")).collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A `ferry.yaml` for `world` in its own directory: every world host insecure, and one trust
/// source for the staging registry (`source`: its keys after `registry:`, each line indented
/// four spaces), with `files` written beside it. [`TrustConfig::ferry`] runs the binary with it.
pub(crate) struct TrustConfig {
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

impl TrustConfig {
    pub(crate) fn new(world: &ferry_testkit::world::World, source: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let hosts: Vec<String> = world.hosts().iter().map(|h| format!("\"{h}\"")).collect();
        let path = dir.path().join("ferry.yaml");
        std::fs::write(
            &path,
            format!(
                "registries:\n  insecure: [{}]\ntrust:\n  sources:\n  - registry: \"{}\"\n{source}",
                hosts.join(", "),
                world.staging.host()
            ),
        )
        .unwrap();
        TrustConfig { dir, path }
    }

    /// `ferry ARGS --config <this file>`: exit code, stdout, stderr.
    pub(crate) fn ferry(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = std::process::Command::new(ferry_bin())
            .args(args)
            .args(["--config", self.path.to_str().unwrap()])
            .env_remove("FERRY_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `promote --confirm` of two tagged staging images (`1.0`) through a thin manifest, one
    /// that passes verification and one that does not: exit 6, the first at prod, the second
    /// copied nowhere, mirror included.
    pub(crate) async fn promote_only_the_first(
        &self,
        world: &ferry_testkit::world::World,
        passes: (&str, &ferry_model::Digest),
        fails: (&str, &ferry_model::Digest),
    ) {
        let manifests = self.dir.path().join("manifests");
        ferry_testkit::write_thin_manifest(
            &manifests,
            "trust",
            &world.staging.host(),
            &[world.prod.host(), world.mirror.host()],
            &format!(
                "- name: {}\n  dmap:\n    \"{}\": [\"1.0\"]\n- name: {}\n  dmap:\n    \"{}\": [\"1.0\"]\n",
                passes.0, passes.1, fails.0, fails.1
            ),
        )
        .unwrap();
        let (code, stdout, stderr) = self.ferry(&[
            "promote",
            "--confirm",
            "--thin-manifest-dir",
            manifests.to_str().unwrap(),
            "--progress",
            "never",
        ]);
        assert_eq!(code, Some(6), "{stdout}{stderr}");
        let prod = ferry_testkit::seed::Seeder::new(&world.prod);
        assert_eq!(prod.tag_digest(passes.0, "1.0").await, Some(*passes.1), "{} is promoted", passes.0);
        assert_eq!(prod.tag_digest(fails.0, "1.0").await, None, "{} is copied nowhere", fails.0);
        assert_eq!(ferry_testkit::seed::Seeder::new(&world.mirror).tag_digest(fails.0, "1.0").await, None);
    }
}
