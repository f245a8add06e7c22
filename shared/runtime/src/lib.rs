//! One runtime for every Ferry function.
//!
//! A function is a [`Stage`]: a function of one queue's typed message that returns the
//! messages for the next queues. This crate does everything around it, once:
//! - [`process`]: decode a delivery (a malformed or unknown-version message goes to `poison`
//!   with its reason), handle it in a span that continues the promotion's trace, publish its
//!   output, and route a failure by class: retry later (honouring `Retry-After`), or
//!   dead-letter to `throttled`, `verification-failed` or `poison` with a full record.
//! - [`worker`]: a long-running consumer on RabbitMQ, SQS or the in-memory broker, with
//!   graceful shutdown (stop receiving, finish what is in flight, lose nothing).
//! - [`lambda`]: the same on AWS Lambda with an SQS event source, reporting partial batch
//!   failures.
//! - [`telemetry`]: JSON logs, OpenTelemetry traces and counters (OTLP when `OTEL_*` asks).
//! - [`http`]: serving ingest's router, locally or on Lambda.
//!
//! The `main` of a function binary (configuration, startup checks, Lambda or worker) is
//! `ferry-bootstrap`'s.
//!
//! Invariant: only this crate depends on `lambda_runtime` and `lambda_http`.
//! Invariant: this crate never reads the configuration file.

pub mod http;
pub mod lambda;
pub mod metrics;
pub mod process;
mod stage;
pub mod telemetry;
pub mod worker;

pub use process::{Disposition, RetrySettings, handle_delivery};
pub use stage::{Consumes, Outgoing, Stage, StageError};
