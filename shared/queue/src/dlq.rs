//! Dead-letter queues: list, show, replay and purge, on any broker.
//!
//! Each operation drains the queue into held deliveries (so that no message is seen twice),
//! acts on those that match the filter, and releases the rest unchanged.

use std::time::Duration;

use ferry_messages::{DeadLetter, DeadLetterQueue, Queue};

use crate::broker::{Address, Broker, Delivery, QueueError};

#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only records from this stage's queue.
    pub stage: Option<Queue>,
    /// Only the record of this message id.
    pub id: Option<String>,
    /// At most this many records (0: no limit).
    pub limit: usize,
}

impl Filter {
    fn matches(&self, record: &Result<DeadLetter, String>) -> bool {
        let Ok(record) = record else { return self.stage.is_none() && self.id.is_none() };
        self.stage.is_none_or(|s| s == record.queue)
            && self.id.as_ref().is_none_or(|id| record.message_id.as_ref() == Some(id))
    }
}

/// One dead-letter record as found, or the raw text when it is not a Ferry record (the broker
/// itself moved a message here after too many receives).
#[derive(Clone, Debug)]
pub struct Entry {
    pub record: Result<DeadLetter, String>,
    pub receive_count: u32,
}

/// Takes every message (up to `cap`) from `dlq`, holding them.
async fn drain<B: Broker>(broker: &B, dlq: DeadLetterQueue, cap: usize) -> Result<Vec<Delivery>, QueueError> {
    let mut held = Vec::new();
    loop {
        let want = (cap - held.len()).min(10);
        if want == 0 {
            break;
        }
        let batch = broker.receive(Address::DeadLetter(dlq), want, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            break;
        }
        held.extend(batch);
    }
    Ok(held)
}

fn parse(delivery: &Delivery) -> Result<DeadLetter, String> {
    DeadLetter::decode(&delivery.body).map_err(|_| {
        format!(
            "(no reason recorded: the broker moved this message here after {} deliveries) {}",
            delivery.receive_count,
            String::from_utf8_lossy(&delivery.body)
        )
    })
}

const CAP: usize = 10_000;

/// The records in `dlq` that match `filter`.
pub async fn list<B: Broker>(
    broker: &B,
    dlq: DeadLetterQueue,
    filter: &Filter,
) -> Result<Vec<Entry>, QueueError> {
    let held = drain(broker, dlq, CAP).await?;
    let mut out = Vec::new();
    for delivery in held {
        let record = parse(&delivery);
        if filter.matches(&record) && (filter.limit == 0 || out.len() < filter.limit) {
            out.push(Entry { record, receive_count: delivery.receive_count });
        }
        broker.release(delivery).await?;
    }
    Ok(out)
}

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct Replayed {
    pub replayed: Vec<(Queue, String)>,
    /// Matching records that could not be replayed, with why.
    pub skipped: Vec<String>,
}

/// Puts matching records' original messages back on their stage queues with the attempt count
/// reset, then removes the records. The stages are idempotent, so a replay is always safe.
pub async fn replay<B: Broker>(
    broker: &B,
    dlq: DeadLetterQueue,
    filter: &Filter,
) -> Result<Replayed, QueueError> {
    let held = drain(broker, dlq, CAP).await?;
    let mut report = Replayed::default();
    for delivery in held {
        let record = parse(&delivery);
        let wanted = filter.matches(&record) && (filter.limit == 0 || report.replayed.len() < filter.limit);
        match (&record, wanted) {
            (Ok(record), true) => match record.replayable() {
                Some(body) => {
                    broker.publish(Address::Stage(record.queue), vec![body]).await?;
                    broker.ack(delivery).await?;
                    report.replayed.push((record.queue, record.message_id.clone().unwrap_or_default()));
                }
                None => {
                    report.skipped.push(format!(
                        "{}: the original was not JSON and cannot be replayed",
                        record.message_id.clone().unwrap_or_default()
                    ));
                    broker.release(delivery).await?;
                }
            },
            (Err(raw), true) => {
                report.skipped.push(format!("not a Ferry record: {raw}"));
                broker.release(delivery).await?;
            }
            (_, false) => broker.release(delivery).await?,
        }
    }
    Ok(report)
}

/// Removes matching records for good. Returns how many.
pub async fn purge<B: Broker>(
    broker: &B,
    dlq: DeadLetterQueue,
    filter: &Filter,
) -> Result<usize, QueueError> {
    let held = drain(broker, dlq, CAP).await?;
    let mut purged = 0;
    for delivery in held {
        let record = parse(&delivery);
        if filter.matches(&record) && (filter.limit == 0 || purged < filter.limit) {
            broker.ack(delivery).await?;
            purged += 1;
        } else {
            broker.release(delivery).await?;
        }
    }
    Ok(purged)
}
