use std::fmt;
use std::future::Future;
use std::time::Duration;

use ferry_messages::{DeadLetterQueue, Queue, Topology};
use thiserror::Error;

/// A queue a message can be addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Stage(Queue),
    DeadLetter(DeadLetterQueue),
}

impl Address {
    pub fn physical_name(self, topology: &Topology) -> String {
        match self {
            Address::Stage(q) => topology.queue_name(q),
            Address::DeadLetter(d) => topology.dead_letter_name(d),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Stage(q) => write!(f, "{q}"),
            Address::DeadLetter(d) => write!(f, "dlq/{d}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum QueueError {
    #[error(
        "{0}: no such queue; check the transport and its queue prefix (`ferry queues init` creates the queues of a new pipeline under that prefix)"
    )]
    Missing(String),
    /// A dead-letter record selection that matches nothing, or more than one record.
    #[error("{0}")]
    NoRecord(String),
    #[error("{transport}: {message}")]
    Broker { transport: &'static str, message: String },
    #[error("{0}")]
    Config(String),
}

impl QueueError {
    pub(crate) fn broker(transport: &'static str, error: impl fmt::Display) -> Self {
        QueueError::Broker { transport, message: error.to_string() }
    }
}

/// One received message, held until it is acked, released or retried.
#[derive(Debug)]
pub struct Delivery {
    pub from: Address,
    pub body: Vec<u8>,
    /// How many times the broker has delivered it, this time included (1 on first delivery).
    pub receive_count: u32,
    pub handle: DeliveryHandle,
}

/// The adapter's handle on a delivery.
#[derive(Debug)]
pub enum DeliveryHandle {
    Memory(u64),
    Amqp(lapin::Acker),
    Sqs { queue_url: String, receipt: String, message_id: String },
}

/// A message broker with stage queues and dead-letter queues.
pub trait Broker: Send + Sync + 'static {
    /// Creates every queue of the topology (idempotent).
    fn init(&self) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Publishes `bodies` to `to`; returns once the broker has confirmed every one.
    fn publish(
        &self,
        to: Address,
        bodies: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Up to `max` messages from `from`, waiting up to `wait` for the first.
    fn receive(
        &self,
        from: Address,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, QueueError>> + Send;

    /// The message is done: remove it from its queue.
    fn ack(&self, delivery: Delivery) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Deliver the message again after `delay`. `body` is the message with its attempt count
    /// raised; adapters that cannot change a queued message's body (SQS) keep the original and
    /// count attempts by receives instead.
    fn retry_later(
        &self,
        delivery: Delivery,
        body: Vec<u8>,
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Make the message available again now, unchanged (used when inspecting a queue).
    fn release(&self, delivery: Delivery) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Deletes every queue of the topology, with the messages in it (idempotent): tearing a
    /// pipeline down, `ferry queues remove --confirm`.
    fn remove(&self) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// How many messages wait in `address`, as far as the broker tells (`None` when it cannot).
    fn depth(&self, address: Address) -> impl Future<Output = Result<Option<u64>, QueueError>> + Send;

    /// A short name for logs: `memory`, `amqp`, `sqs`.
    fn transport(&self) -> &'static str;
}
