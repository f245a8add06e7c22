//! Queues inside this process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{Address, Broker, Delivery, DeliveryHandle, QueueError};

#[derive(Debug)]
struct Stored {
    body: Vec<u8>,
    visible_at: Instant,
    receive_count: u32,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<Address, VecDeque<Stored>>,
    in_flight: HashMap<u64, (Address, Stored)>,
    next_id: u64,
}

/// Queues in memory: what `ferry run` uses when no broker is given. Received messages stay
/// in flight until acked; an unacked message becomes visible again after the visibility
/// timeout, as on SQS.
#[derive(Clone, Debug)]
pub struct MemoryBroker {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    visibility: Duration,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

impl MemoryBroker {
    pub fn new(visibility: Duration) -> Self {
        Self { state: Arc::default(), notify: Arc::new(Notify::new()), visibility }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many messages wait in `address` (visible or delayed, not in flight).
    pub fn depth(&self, address: Address) -> usize {
        self.lock().queues.get(&address).map_or(0, VecDeque::len)
    }

    /// Messages in flight anywhere.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Returns expired in-flight messages to their queues.
    fn expire(state: &mut State, now: Instant, visibility: Duration) {
        let expired: Vec<u64> = state
            .in_flight
            .iter()
            .filter(|(_, (_, stored))| stored.visible_at + visibility <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((address, mut stored)) = state.in_flight.remove(&id) {
                stored.visible_at = now;
                state.queues.entry(address).or_default().push_back(stored);
            }
        }
    }
}

impl Broker for MemoryBroker {
    async fn init(&self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn remove(&self) -> Result<(), QueueError> {
        let mut state = self.lock();
        state.queues.clear();
        state.in_flight.clear();
        Ok(())
    }

    async fn publish(&self, to: Address, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        let now = Instant::now();
        {
            let mut state = self.lock();
            let queue = state.queues.entry(to).or_default();
            queue.extend(bodies.into_iter().map(|body| Stored { body, visible_at: now, receive_count: 0 }));
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn receive(&self, from: Address, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let (taken, next_visible) = {
                let now = Instant::now();
                let mut state = self.lock();
                Self::expire(&mut state, now, self.visibility);
                let mut taken = Vec::new();
                let mut next_visible: Option<Instant> = None;
                let State { queues, in_flight, next_id } = &mut *state;
                if let Some(queue) = queues.get_mut(&from) {
                    let mut kept = VecDeque::with_capacity(queue.len());
                    while let Some(mut stored) = queue.pop_front() {
                        if taken.len() < max && stored.visible_at <= now {
                            stored.receive_count += 1;
                            *next_id += 1;
                            taken.push(Delivery {
                                from,
                                body: stored.body.clone(),
                                receive_count: stored.receive_count,
                                handle: DeliveryHandle::Memory(*next_id),
                            });
                            stored.visible_at = now;
                            in_flight.insert(*next_id, (from, stored));
                        } else {
                            if stored.visible_at > now {
                                next_visible = Some(
                                    next_visible.map_or(stored.visible_at, |n| n.min(stored.visible_at)),
                                );
                            }
                            kept.push_back(stored);
                        }
                    }
                    *queue = kept;
                }
                (taken, next_visible)
            };
            if !taken.is_empty() {
                return Ok(taken);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_visible.map_or(deadline, |n| n.min(deadline));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    async fn ack(&self, delivery: Delivery) -> Result<(), QueueError> {
        if let DeliveryHandle::Memory(id) = delivery.handle {
            self.lock().in_flight.remove(&id);
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        delivery: Delivery,
        body: Vec<u8>,
        delay: Duration,
    ) -> Result<(), QueueError> {
        if let DeliveryHandle::Memory(id) = delivery.handle {
            let mut state = self.lock();
            if let Some((address, mut stored)) = state.in_flight.remove(&id) {
                stored.body = body;
                stored.visible_at = Instant::now() + delay;
                state.queues.entry(address).or_default().push_back(stored);
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn release(&self, delivery: Delivery) -> Result<(), QueueError> {
        if let DeliveryHandle::Memory(id) = delivery.handle {
            let mut state = self.lock();
            // Counted as a delivery, as RabbitMQ and SQS count it.
            if let Some((address, mut stored)) = state.in_flight.remove(&id) {
                stored.visible_at = Instant::now();
                state.queues.entry(address).or_default().push_front(stored);
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn depth(&self, address: Address) -> Result<Option<u64>, QueueError> {
        Ok(Some(MemoryBroker::depth(self, address) as u64))
    }

    fn transport(&self) -> &'static str {
        "memory"
    }
}
