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

    /// The filter with its id, which may be a unique prefix, made whole against the records
    /// held: an id that matches no record, or the start of several, is an error naming them.
    fn resolved(&self, dlq: DeadLetterQueue, held: &[Delivery]) -> Result<Filter, QueueError> {
        let Some(prefix) = self.id.as_deref() else { return Ok(self.clone()) };
        let mut ids: Vec<String> = held
            .iter()
            .filter_map(|d| DeadLetter::decode(&d.body).ok())
            .filter(|r| self.stage.is_none_or(|s| s == r.queue))
            .filter_map(|r| r.message_id)
            .filter(|id| id.starts_with(prefix))
            .collect();
        ids.sort();
        ids.dedup();
        if let Some(exact) = ids.iter().find(|id| *id == prefix) {
            return Ok(Filter { id: Some(exact.clone()), ..self.clone() });
        }
        match ids.as_slice() {
            [one] => Ok(Filter { id: Some(one.clone()), ..self.clone() }),
            [] => Err(QueueError::NoRecord(format!(
                "no record in {dlq} has an id starting with {:?} ({} record(s) there; `ferry dlq list --queue {dlq}` shows their ids)",
                ferry_model::escaped(prefix),
                held.len()
            ))),
            many => Err(QueueError::NoRecord(format!(
                "{:?} starts the ids of {} records in {dlq} ({}); give more of the id",
                ferry_model::escaped(prefix),
                many.len(),
                many.join(", ")
            ))),
        }
    }
}

/// Releases every held delivery, then returns `error`: a failed selection changes nothing.
async fn refuse<B: Broker, T>(broker: &B, held: Vec<Delivery>, error: QueueError) -> Result<T, QueueError> {
    for delivery in held {
        broker.release(delivery).await?;
    }
    Err(error)
}

/// The held deliveries and the filter resolved against them (or every delivery released and
/// the error).
async fn select<B: Broker>(
    broker: &B,
    dlq: DeadLetterQueue,
    filter: &Filter,
) -> Result<(Vec<Delivery>, Filter), QueueError> {
    let held = drain(broker, dlq, CAP).await?;
    match filter.resolved(dlq, &held) {
        Ok(filter) => Ok((held, filter)),
        Err(error) => refuse(broker, held, error).await,
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
    let (held, filter) = select(broker, dlq, filter).await?;
    let filter = &filter;
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
    let (held, filter) = select(broker, dlq, filter).await?;
    let filter = &filter;
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
    let (held, filter) = select(broker, dlq, filter).await?;
    let filter = &filter;
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
