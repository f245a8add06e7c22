//! Prometheus metrics for `ferry run` and `ferry worker` (`--metrics-listen`), served as the
//! Prometheus text format on `GET /metrics`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `ferry_promotions_total` | counter | `outcome` (`promoted`, `dead_lettered`), `role` (`primary`, `mirror`, or the stage that gave up) | promotion outcomes: a destination finished, or a message dead-lettered |
//! | `ferry_stage_duration_seconds` | histogram | `stage`, `result` (`done`, `retry`, `dead_lettered`) | time a stage spent on one message |
//! | `ferry_dead_letters_total` | counter | `queue` | records written to each dead-letter queue |
//! | `ferry_copied_bytes_total` | counter | | blob bytes streamed to destinations |
//! | `ferry_registry_throttled_total` | counter | `host` | HTTP 429 answers by registry host |
//! | `ferry_queue_depth` | gauge | `queue` | messages waiting in each stage queue, where the broker tells |
//! | `ferry_dead_letter_depth` | gauge | `queue` | records waiting in each dead-letter queue, where the broker tells |
//!
//! The counters are process-wide; the depths are read from the broker at each scrape.

use std::sync::{Arc, OnceLock};

use ferry_messages::{DeadLetterQueue, Queue};
use ferry_queue::{Address, Broker};
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    promotions: IntCounterVec,
    stage_seconds: HistogramVec,
    dead_letters: IntCounterVec,
    bytes: IntCounter,
    throttled: IntCounterVec,
    depth: IntGaugeVec,
    dead_letter_depth: IntGaugeVec,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    #[allow(clippy::expect_used, reason = "fixed, valid metric definitions registered once")]
    fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let promotions = counter_vec(
            "ferry_promotions_total",
            "Promotion outcomes: a destination finished (role primary or mirror), or a message dead-lettered (role: the stage)",
            &["outcome", "role"],
        );
        let dead_letters =
            counter_vec("ferry_dead_letters_total", "Records written to each dead-letter queue", &["queue"]);
        let throttled =
            counter_vec("ferry_registry_throttled_total", "HTTP 429 answers by registry host", &["host"]);
        let depth = gauge_vec("ferry_queue_depth", "Messages waiting in each stage queue", &["queue"]);
        let dead_letter_depth =
            gauge_vec("ferry_dead_letter_depth", "Records waiting in each dead-letter queue", &["queue"]);
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("ferry_stage_duration_seconds", "Time a stage spent on one message")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]),
            &["stage", "result"],
        )
        .expect("a valid histogram");
        registry.register(Box::new(stage_seconds.clone())).expect("registered once");
        let bytes = IntCounter::new("ferry_copied_bytes_total", "Blob bytes streamed to destinations")
            .expect("a valid counter");
        registry.register(Box::new(bytes.clone())).expect("registered once");
        Metrics {
            registry,
            promotions,
            stage_seconds,
            dead_letters,
            bytes,
            throttled,
            depth,
            dead_letter_depth,
        }
    }

    /// A destination finished: `role` is `primary` or `mirror`.
    pub fn promoted(&self, role: &str) {
        self.promotions.with_label_values(&["promoted", role]).inc();
    }

    /// A message went to `queue`, given up by `stage`.
    pub fn dead_lettered(&self, stage: &str, queue: DeadLetterQueue) {
        self.promotions.with_label_values(&["dead_lettered", stage]).inc();
        self.dead_letters.with_label_values(&[queue.name()]).inc();
    }

    pub fn stage(&self, stage: &str, result: &str, seconds: f64) {
        self.stage_seconds.with_label_values(&[stage, result]).observe(seconds);
    }

    pub fn bytes(&self, n: u64) {
        self.bytes.inc_by(n);
    }

    /// The text format, with the queue depths read from `broker` now.
    pub async fn render<B: Broker>(&self, broker: &B) -> String {
        for queue in Queue::ALL {
            if let Ok(Some(n)) = broker.depth(Address::Stage(queue)).await {
                self.depth.with_label_values(&[queue.name()]).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for dlq in DeadLetterQueue::ALL {
            if let Ok(Some(n)) = broker.depth(Address::DeadLetter(dlq)).await {
                self.dead_letter_depth
                    .with_label_values(&[dlq.name()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        for (host, n) in ferry_registry::transport::throttled_by_host() {
            let counter = self.throttled.with_label_values(&[host.as_str()]);
            counter.inc_by(n.saturating_sub(counter.get()));
        }
        let mut out = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve<B: Broker>(listener: tokio::net::TcpListener, broker: Arc<B>) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let broker = broker.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    metrics().render(&*broker).await,
                )
            }
        }),
    );
    tracing::info!(address = %listener.local_addr()?, "metrics on /metrics");
    axum::serve(listener, app).await
}
