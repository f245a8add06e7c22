//! RabbitMQ, through lapin.
//!
//! - Stage queues and dead-letter queues are durable quorum queues. A stage queue has
//!   `x-delivery-limit` and a dead-letter exchange that routes to `poison`, so that a message
//!   that keeps crashing its worker cannot circulate forever.
//! - Messages are persistent and published with confirms (`mandatory`, so an unroutable
//!   message is an error, not a silent loss).
//! - A retry goes through a per-stage delay queue: the message, with its attempt count raised,
//!   waits there with a per-message TTL and dead-letters back into its stage queue.
//! - A lost connection (a broker restart) is re-established on the next call, with backoff.
//! - Every call to the broker is bounded in time: a broker that accepts TCP but never answers
//!   (a resource alarm blocks publishers; a node half up) gives an error, never a hang.
//! - Stage queues are consumed (push, with prefetch). Dead-letter queues are only inspected,
//!   so they are read with `basic.get` (pull): no consumer lingers holding records that a
//!   `ferry dlq replay` in another process must see.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use ferry_messages::{DeadLetterQueue, Queue, Topology};
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tokio::sync::Mutex;

use crate::broker::{Address, Broker, Delivery, DeliveryHandle, QueueError};

const T: &str = "amqp";

/// How long one broker call (connect, declare, publish and its confirm, get, ack) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `call`, or an error naming `what` when the broker has not answered within [`CALL_TIMEOUT`].
async fn within<F: Future>(what: &str, call: F) -> Result<F::Output, QueueError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.map_err(|_| {
        QueueError::broker(T, format!("{what}: no answer from RabbitMQ within {} s", CALL_TIMEOUT.as_secs()))
    })
}

#[derive(Debug)]
struct Live {
    _connection: Connection,
    publisher: Channel,
    /// For `basic.get` on dead-letter queues.
    inspector: Option<Channel>,
    consumers: HashMap<Address, Arc<Mutex<Consumer>>>,
}

/// RabbitMQ. Cheap to share behind an `Arc`; connects lazily and reconnects after failures.
#[derive(Debug)]
pub struct AmqpBroker {
    uri: String,
    topology: Topology,
    prefetch: u16,
    live: Mutex<Option<Live>>,
}

impl AmqpBroker {
    pub fn new(uri: &str, topology: Topology, prefetch: u16) -> Self {
        Self { uri: uri.to_owned(), topology, prefetch, live: Mutex::new(None) }
    }

    fn name(&self, address: Address) -> String {
        address.physical_name(&self.topology)
    }

    fn delay_name(&self, queue: Queue) -> String {
        format!("{}-delay-{}", self.topology.prefix, queue.name())
    }

    async fn connect(&self) -> Result<Live, QueueError> {
        let uri = self.uri.clone();
        let attempt = || async {
            let connection = within(
                "connecting",
                Connection::connect(
                    &uri,
                    ConnectionProperties::default().with_connection_name("ferry".into()),
                ),
            )
            .await?
            .map_err(|e| QueueError::broker(T, format!("cannot connect: {e}")))?;
            let publisher = within("opening a channel", connection.create_channel())
                .await?
                .map_err(|e| QueueError::broker(T, e))?;
            within("enabling confirms", publisher.confirm_select(ConfirmSelectOptions::default()))
                .await?
                .map_err(|e| QueueError::broker(T, e))?;
            Ok::<_, QueueError>(Live {
                _connection: connection,
                publisher,
                inspector: None,
                consumers: HashMap::new(),
            })
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_times(10),
            )
            .sleep(tokio::time::sleep)
            .notify(|error, delay| tracing::warn!(%error, ?delay, "RabbitMQ unavailable; reconnecting"))
            .await
    }

    /// The publishing channel, connecting first if needed.
    async fn publisher(&self) -> Result<Channel, QueueError> {
        let mut live = self.live.lock().await;
        if live.as_ref().is_none_or(|l| !l.publisher.status().connected()) {
            *live = Some(self.connect().await?);
        }
        Ok(live.as_ref().map(|l| l.publisher.clone()).expect("connected above"))
    }

    /// Forgets the connection so that the next call reconnects.
    async fn reset(&self) {
        *self.live.lock().await = None;
    }

    async fn consumer(&self, address: Address) -> Result<Arc<Mutex<Consumer>>, QueueError> {
        let mut live = self.live.lock().await;
        if live.as_ref().is_none_or(|l| !l.publisher.status().connected()) {
            *live = Some(self.connect().await?);
        }
        let live = live.as_mut().expect("connected above");
        if let Some(consumer) = live.consumers.get(&address) {
            return Ok(consumer.clone());
        }
        let channel = within("opening a channel", live._connection.create_channel())
            .await?
            .map_err(|e| QueueError::broker(T, e))?;
        within("setting the prefetch", channel.basic_qos(self.prefetch, BasicQosOptions::default()))
            .await?
            .map_err(|e| QueueError::broker(T, e))?;
        let consumer = within(
            "starting a consumer",
            channel.basic_consume(
                self.name(address).into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?
        .map_err(|e| match e.kind() {
            lapin::ErrorKind::ProtocolError(_) => QueueError::Missing(self.name(address)),
            _ => QueueError::broker(T, e),
        })?;
        let consumer = Arc::new(Mutex::new(consumer));
        live.consumers.insert(address, consumer.clone());
        Ok(consumer)
    }

    async fn inspector(&self) -> Result<Channel, QueueError> {
        let mut live = self.live.lock().await;
        if live.as_ref().is_none_or(|l| !l.publisher.status().connected()) {
            *live = Some(self.connect().await?);
        }
        let live = live.as_mut().expect("connected above");
        if let Some(channel) = live.inspector.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = within("opening a channel", live._connection.create_channel())
            .await?
            .map_err(|e| QueueError::broker(T, e))?;
        live.inspector = Some(channel.clone());
        Ok(channel)
    }

    /// Pulls up to `max` messages from a dead-letter queue, without waiting.
    async fn pull(&self, from: Address, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let channel = self.inspector().await?;
        let mut out = Vec::new();
        while out.len() < max {
            let got = within(
                "reading a dead-letter queue",
                channel.basic_get(self.name(from).into(), BasicGetOptions { no_ack: false }),
            )
            .await?
            .map_err(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(_) => QueueError::Missing(self.name(from)),
                _ => QueueError::broker(T, e),
            })?;
            let Some(message) = got else { break };
            let receive_count = delivery_count(&message.delivery) + 1;
            out.push(Delivery {
                from,
                body: message.delivery.data,
                receive_count,
                handle: DeliveryHandle::Amqp(message.delivery.acker),
            });
        }
        Ok(out)
    }

    async fn publish_to(
        &self,
        queue_name: &str,
        bodies: &[Vec<u8>],
        expiration: Option<Duration>,
    ) -> Result<(), QueueError> {
        let channel = self.publisher().await?;
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in bodies {
            let mut properties =
                BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
            if let Some(ttl) = expiration {
                properties = properties.with_expiration(ttl.as_millis().max(1).to_string().into());
            }
            let confirm = within(
                "publishing",
                channel.basic_publish(
                    "".into(),
                    queue_name.into(),
                    BasicPublishOptions { mandatory: true, immediate: false },
                    body,
                    properties,
                ),
            )
            .await;
            match confirm {
                Ok(Ok(confirm)) => confirms.push(confirm),
                Ok(Err(e)) => {
                    self.reset().await;
                    return Err(QueueError::broker(T, e));
                }
                Err(e) => {
                    self.reset().await;
                    return Err(QueueError::broker(T, e));
                }
            }
        }
        for confirm in confirms {
            let confirm = match within("waiting for the publish confirm", confirm).await {
                Ok(confirm) => confirm,
                Err(timeout) => {
                    self.reset().await;
                    return Err(timeout);
                }
            };
            match confirm {
                Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {}
                Ok(Confirmation::Ack(Some(_))) => return Err(QueueError::Missing(queue_name.to_owned())),
                Ok(Confirmation::Nack(_)) => {
                    return Err(QueueError::broker(T, format!("{queue_name}: the broker refused a message")));
                }
                Err(e) => {
                    self.reset().await;
                    return Err(QueueError::broker(T, e));
                }
            }
        }
        Ok(())
    }

    async fn declare(&self, channel: &Channel, name: &str, arguments: FieldTable) -> Result<(), QueueError> {
        within(
            "declaring a queue",
            channel.queue_declare(
                name.into(),
                QueueDeclareOptions { durable: true, ..Default::default() },
                arguments,
            ),
        )
        .await?
        .map_err(|e| QueueError::broker(T, format!("declaring {name}: {e}")))?;
        Ok(())
    }
}

/// Earlier deliveries of this message, as the quorum queue counts them.
fn delivery_count(delivery: &lapin::message::Delivery) -> u32 {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned())
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(n).ok(),
            AMQPValue::LongUInt(n) => Some(n),
            _ => None,
        })
        .unwrap_or(0)
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

impl Broker for AmqpBroker {
    async fn init(&self) -> Result<(), QueueError> {
        let channel = self.publisher().await?;
        let poison = self.topology.dead_letter_name(DeadLetterQueue::Poison);
        for dlq in DeadLetterQueue::ALL {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), text("quorum"));
            self.declare(&channel, &self.topology.dead_letter_name(dlq), args).await?;
        }
        for queue in Queue::ALL {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), text("quorum"));
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(self.topology.max_receive_count as i32),
            );
            args.insert("x-dead-letter-exchange".into(), text(""));
            args.insert("x-dead-letter-routing-key".into(), text(&poison));
            self.declare(&channel, &self.topology.queue_name(queue), args).await?;
            // Retries wait here, then dead-letter back into the stage queue.
            let mut delay = FieldTable::default();
            delay.insert("x-dead-letter-exchange".into(), text(""));
            delay.insert("x-dead-letter-routing-key".into(), text(&self.topology.queue_name(queue)));
            self.declare(&channel, &self.delay_name(queue), delay).await?;
        }
        Ok(())
    }

    async fn remove(&self) -> Result<(), QueueError> {
        let channel = self.publisher().await?;
        let mut names: Vec<String> = self.topology.all_names();
        names.extend(Queue::ALL.iter().map(|q| self.delay_name(*q)));
        for name in names {
            within(
                "deleting a queue",
                channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()),
            )
            .await?
            .map_err(|e| QueueError::broker(T, format!("deleting {name}: {e}")))?;
        }
        // Consumers of deleted queues are cancelled; start afresh.
        self.reset().await;
        Ok(())
    }

    async fn publish(&self, to: Address, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        self.publish_to(&self.name(to), &bodies, None).await
    }

    async fn receive(&self, from: Address, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if let Address::DeadLetter(_) = from {
            return self.pull(from, max).await;
        }
        let consumer = self.consumer(from).await?;
        let mut consumer = consumer.lock().await;
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) => return Ok(out),
            Ok(item) => item,
        };
        let mut next = first;
        loop {
            match next {
                None => {
                    drop(consumer);
                    self.reset().await;
                    return Err(QueueError::broker(T, "the consumer was cancelled (broker restart?)"));
                }
                Some(Err(e)) => {
                    drop(consumer);
                    self.reset().await;
                    return Err(QueueError::broker(T, e));
                }
                Some(Ok(delivery)) => {
                    let receive_count = delivery_count(&delivery) + 1;
                    out.push(Delivery {
                        from,
                        body: delivery.data,
                        receive_count,
                        handle: DeliveryHandle::Amqp(delivery.acker),
                    });
                }
            }
            if out.len() >= max {
                return Ok(out);
            }
            match consumer.next().now_or_never() {
                Some(item) => next = item,
                None => return Ok(out),
            }
        }
    }

    async fn ack(&self, delivery: Delivery) -> Result<(), QueueError> {
        match delivery.handle {
            DeliveryHandle::Amqp(acker) => within("acking", acker.ack(BasicAckOptions::default()))
                .await?
                .map(|_| ())
                .map_err(|e| QueueError::broker(T, e)),
            _ => Err(QueueError::Config("not an AMQP delivery".into())),
        }
    }

    async fn retry_later(
        &self,
        delivery: Delivery,
        body: Vec<u8>,
        delay: Duration,
    ) -> Result<(), QueueError> {
        match delivery.from {
            Address::Stage(queue) => {
                self.publish_to(&self.delay_name(queue), &[body], Some(delay)).await?;
                self.ack(delivery).await
            }
            Address::DeadLetter(_) => self.release(delivery).await,
        }
    }

    async fn release(&self, delivery: Delivery) -> Result<(), QueueError> {
        match delivery.handle {
            DeliveryHandle::Amqp(acker) => {
                within("releasing", acker.nack(BasicNackOptions { requeue: true, ..Default::default() }))
                    .await?
                    .map(|_| ())
                    .map_err(|e| QueueError::broker(T, e))
            }
            _ => Err(QueueError::Config("not an AMQP delivery".into())),
        }
    }

    async fn depth(&self, address: Address) -> Result<Option<u64>, QueueError> {
        // A passive declare answers with the message count; it closes its channel when the
        // queue is missing, so it gets a channel of its own.
        let channel = {
            let mut live = self.live.lock().await;
            if live.as_ref().is_none_or(|l| !l.publisher.status().connected()) {
                *live = Some(self.connect().await?);
            }
            let live = live.as_ref().expect("connected above");
            within("opening a channel", live._connection.create_channel())
                .await?
                .map_err(|e| QueueError::broker(T, e))?
        };
        let name = self.name(address);
        let declared = within(
            "asking a queue's depth",
            channel.queue_declare(
                name.as_str().into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            ),
        )
        .await?;
        let _ = channel.close(200, "done".into()).await;
        match declared {
            Ok(queue) => Ok(Some(u64::from(queue.message_count()))),
            Err(e) => Err(QueueError::broker(T, format!("{name}: {e}"))),
        }
    }

    fn transport(&self) -> &'static str {
        T
    }
}
