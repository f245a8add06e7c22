//! Logs, traces and counters.
//!
//! - Logs go to stderr: JSON (one object per line) from the function binaries, text from
//!   `ferry run`/`ferry worker`; `FERRY_LOG_FORMAT=json|text` chooses either way.
//! - Traces: every stage handles a message in a span whose parent is the `traceparent` the
//!   message carries, and stamps the current context on what it publishes, so that one
//!   promotion is one trace from ingest to the last mirror. Spans are exported over OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the exporter reads the other `OTEL_*` variables).
//! - Counters (`ferry.promoted`, `ferry.bytes`, `ferry.throttled`, `ferry.dead_lettered`) go
//!   to the same OTLP endpoint as metrics.

use std::collections::HashMap;
use std::sync::OnceLock;

use ferry_config::Env;
use ferry_messages::DeadLetterQueue;
use opentelemetry::metrics::Counter;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

static TRACER: OnceLock<SdkTracerProvider> = OnceLock::new();
static METER: OnceLock<SdkMeterProvider> = OnceLock::new();

fn resource(service: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build()
}

/// Sets up logging and tracing for a function binary named `service`: JSON logs unless
/// `FERRY_LOG_FORMAT=text`. Safe to call more than once (only the first call takes effect).
pub fn init(service: &str, env: &Env) {
    init_with(service, env, LogFormat::Json);
}

/// The log format when `FERRY_LOG_FORMAT` does not choose one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Like [`init`], with `default` as the format when `FERRY_LOG_FORMAT` is unset (`ferry run`
/// and `ferry worker` log text for a person, as the README says; the function binaries JSON).
pub fn init_with(service: &str, env: &Env, default: LogFormat) {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(service));
    let mut meter = SdkMeterProvider::builder().with_resource(resource(service));
    if env.otlp {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => eprintln_safe(&format!("OTLP span exporter not started: {error}")),
        }
        match opentelemetry_otlp::MetricExporter::builder().with_http().build() {
            Ok(exporter) => meter = meter.with_periodic_exporter(exporter),
            Err(error) => eprintln_safe(&format!("OTLP metric exporter not started: {error}")),
        }
    }
    install(service, builder.build(), meter.build(), env, default);
}

fn install(
    service: &str,
    provider: SdkTracerProvider,
    meter: SdkMeterProvider,
    env: &Env,
    default: LogFormat,
) {
    if TRACER.get().is_some() {
        return;
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer(service.to_owned());
    let _ = TRACER.set(provider);
    opentelemetry::global::set_meter_provider(meter.clone());
    let _ = METER.set(meter);
    let filter =
        EnvFilter::try_new(env.log.as_deref().unwrap_or("info")).unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let format = match env.log_format.as_deref() {
        Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        _ => default,
    };
    let _ = if format == LogFormat::Text {
        // Colours only for a person at a terminal, never into a file or a pipe.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        registry
            // Compact: the message first, then its fields, then the stage's span fields.
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr),
            )
            .try_init()
    };
}

fn eprintln_safe(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "ferry: {text}");
}

/// Exports whatever is buffered (Lambda calls this after every invocation).
pub fn flush() {
    if let Some(provider) = TRACER.get() {
        let _ = provider.force_flush();
    }
    if let Some(meter) = METER.get() {
        let _ = meter.force_flush();
    }
}

/// The context a `traceparent` (and `tracestate`) describes.
pub fn extract(traceparent: &str, tracestate: Option<&str>) -> Context {
    let mut carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of the current span, for messages published from it. `None` when no
/// tracer is installed (then messages simply carry no trace context).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The OpenTelemetry trace id of `span`, when a tracer is installed.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// The counters Ferry keeps.
#[derive(Debug)]
pub struct Counters {
    promoted: Counter<u64>,
    bytes: Counter<u64>,
    throttled: Counter<u64>,
    dead_lettered: Counter<u64>,
}

impl Counters {
    pub fn promoted(&self, n: u64) {
        self.promoted.add(n, &[]);
    }

    pub fn bytes(&self, n: u64) {
        self.bytes.add(n, &[]);
        crate::metrics::metrics().bytes(n);
    }

    pub fn throttled(&self, n: u64) {
        self.throttled.add(n, &[]);
    }

    pub fn dead_lettered(&self, queue: DeadLetterQueue, n: u64) {
        self.dead_lettered.add(n, &[KeyValue::new("queue", queue.name())]);
    }
}

pub fn counters() -> &'static Counters {
    static COUNTERS: OnceLock<Counters> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let meter = opentelemetry::global::meter("ferry");
        Counters {
            promoted: meter
                .u64_counter("ferry.promoted")
                .with_description("images copied to a destination")
                .build(),
            bytes: meter
                .u64_counter("ferry.bytes")
                .with_unit("By")
                .with_description("blob bytes streamed")
                .build(),
            throttled: meter
                .u64_counter("ferry.throttled")
                .with_description("messages that met HTTP 429 beyond the budget")
                .build(),
            dead_lettered: meter
                .u64_counter("ferry.dead_lettered")
                .with_description("messages sent to a dead-letter queue")
                .build(),
        }
    })
}
