//! The pipeline's transport: one port, [`Broker`], with three adapters.
//!
//! - [`memory::MemoryBroker`]: queues in this process, the default for `ferry run` and for
//!   tests of the runtime. Deliveries have visibility timeouts like SQS.
//! - [`amqp::AmqpBroker`]: RabbitMQ through lapin. Durable quorum queues, persistent messages,
//!   publisher confirms, prefetch, a dead-letter exchange with a delivery limit, per-stage delay
//!   queues for retries, and a reconnect after the broker restarts.
//! - [`sqs::SqsBroker`]: Amazon SQS (and LocalStack). Long polling, batched sends and deletes,
//!   a visibility-timeout change to delay a throttled message, and a RedrivePolicy.
//!
//! The contract every adapter keeps: a message leaves its queue only through [`Broker::ack`],
//! and the runtime acks only after the stage's output (or a dead-letter record) has been
//! published and confirmed.
//!
//! # Layout
//! - `broker`: the `Broker` trait, `Delivery`, `Address`, `QueueError`.
//! - [`memory`], [`amqp`], [`sqs`]: the adapters.
//! - [`any`]: `AnyBroker`, chosen by a transport URL (`memory://`, `amqp://…`, `sqs://…`).
//! - [`dlq`]: list, show, replay and purge dead-letter queues, on any broker.
//!
//! Architecture invariant: every broker call is bounded in time.
//! Architecture invariant: a message leaves a queue only after its stage finished and every outgoing message was confirmed, or after it was dead-lettered with its reason.

pub mod amqp;
pub mod any;
mod broker;
pub mod dlq;
pub mod memory;
pub mod sqs;

pub use any::AnyBroker;
pub use broker::{Address, Broker, Delivery, DeliveryHandle, QueueError};
