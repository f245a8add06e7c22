//! A broker chosen at run time by a transport URL.

use std::time::Duration;

use ferry_messages::Topology;

use crate::amqp::AmqpBroker;
use crate::broker::{Address, Broker, Delivery, QueueError};
use crate::memory::MemoryBroker;
use crate::sqs::SqsBroker;

#[derive(Debug)]
pub enum AnyBroker {
    Memory(MemoryBroker),
    Amqp(Box<AmqpBroker>),
    Sqs(SqsBroker),
}

impl AnyBroker {
    /// `memory://`, `amqp://user:password@host:port/vhost` (or `amqps://`), or `sqs://` (AWS)
    /// / `sqs://host:port?region=R` (an endpoint such as LocalStack, over plain HTTP for
    /// loopback hosts).
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, QueueError> {
        if url == "memory://" || url == "memory" {
            return Ok(AnyBroker::Memory(MemoryBroker::default()));
        }
        if url.starts_with("amqp://") || url.starts_with("amqps://") {
            return Ok(AnyBroker::Amqp(Box::new(AmqpBroker::new(url, topology, 16))));
        }
        if let Some(rest) = url.strip_prefix("sqs://") {
            return Ok(AnyBroker::Sqs(SqsBroker::connect_url(rest, topology).await));
        }
        Err(QueueError::Config(format!("unknown transport {url:?}: use memory://, amqp://… or sqs://…")))
    }
}

macro_rules! delegate {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            AnyBroker::Memory($b) => $call,
            AnyBroker::Amqp($b) => $call,
            AnyBroker::Sqs($b) => $call,
        }
    };
}

impl Broker for AnyBroker {
    async fn init(&self) -> Result<(), QueueError> {
        delegate!(self, b => b.init().await)
    }

    async fn publish(&self, to: Address, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        delegate!(self, b => b.publish(to, bodies).await)
    }

    async fn receive(&self, from: Address, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        delegate!(self, b => b.receive(from, max, wait).await)
    }

    async fn ack(&self, delivery: Delivery) -> Result<(), QueueError> {
        delegate!(self, b => b.ack(delivery).await)
    }

    async fn retry_later(
        &self,
        delivery: Delivery,
        body: Vec<u8>,
        delay: Duration,
    ) -> Result<(), QueueError> {
        delegate!(self, b => b.retry_later(delivery, body, delay).await)
    }

    async fn release(&self, delivery: Delivery) -> Result<(), QueueError> {
        delegate!(self, b => b.release(delivery).await)
    }

    async fn remove(&self) -> Result<(), QueueError> {
        delegate!(self, b => b.remove().await)
    }

    async fn depth(&self, address: Address) -> Result<Option<u64>, QueueError> {
        match self {
            AnyBroker::Memory(b) => Broker::depth(b, address).await,
            AnyBroker::Amqp(b) => b.depth(address).await,
            AnyBroker::Sqs(b) => b.depth(address).await,
        }
    }

    fn transport(&self) -> &'static str {
        delegate!(self, b => b.transport())
    }
}
