//! A long-running consumer of one stage's queue.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferry_queue::{Address, Broker, Delivery};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::process::{Disposition, RetrySettings, handle_delivery};
use crate::stage::{Consumes as _, Stage};

#[derive(Clone, Copy, Debug)]
pub struct WorkerOptions {
    /// Messages handled at once.
    pub concurrency: usize,
    /// How long one receive waits for messages (SQS long polling allows up to 20 s).
    pub wait: Duration,
    pub retry: RetrySettings,
    /// After `shutdown`, how long messages in flight may take to finish. Past it they are
    /// released to the queue unacknowledged (delivered again, to this or another worker), and
    /// the worker returns.
    pub grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            wait: Duration::from_secs(5),
            retry: RetrySettings::default(),
            grace: Duration::from_secs(10),
        }
    }
}

/// Consumes `S::QUEUE` until `shutdown` completes. Graceful and bounded: once `shutdown` fires
/// nothing new is received; what is in flight gets `options.grace` to finish and be settled, and
/// is then released back to the queue unacknowledged. Nothing is lost either way.
pub async fn run_worker<S: Stage, B: Broker>(
    stage: Arc<S>,
    broker: Arc<B>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let (abandon, abandoned) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    tracing::info!(stage = S::QUEUE.stage(), transport = broker.transport(), "worker started");
    loop {
        while tasks.try_join_next().is_some() {}
        let available = permits.available_permits();
        if available == 0 {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tasks.join_next() => continue,
            }
        }
        let batch = tokio::select! {
            _ = &mut shutdown => break,
            batch = broker.receive(Address::Stage(S::QUEUE), available, options.wait) => batch,
        };
        let deliveries = match batch {
            Ok(deliveries) => deliveries,
            Err(error) => {
                tracing::warn!(stage = S::QUEUE.stage(), %error, "receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for delivery in deliveries {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (stage, broker, retry) = (stage.clone(), broker.clone(), options.retry);
            let mut abandoned = abandoned.clone();
            tasks.spawn(async move {
                settle_unless(&*stage, &*broker, delivery, &retry, async move {
                    let _ = abandoned.wait_for(|a| *a).await;
                })
                .await;
                drop(permit);
            });
        }
    }
    tracing::info!(
        stage = S::QUEUE.stage(),
        in_flight = tasks.len(),
        grace_seconds = options.grace.as_secs_f64(),
        "shutting down; finishing in-flight messages"
    );
    let finished =
        tokio::time::timeout(options.grace, async { while tasks.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            stage = S::QUEUE.stage(),
            in_flight = tasks.len(),
            "the grace period is over; releasing in-flight messages to the queue unacknowledged"
        );
        let _ = abandon.send(true);
        while tasks.join_next().await.is_some() {}
    }
    tracing::info!(stage = S::QUEUE.stage(), "worker stopped");
}

/// [`settle`], unless `abandon` completes first: then the delivery is released to the queue
/// unacknowledged (a stage is idempotent, so whatever it did part way is redone safely).
async fn settle_unless<S: Stage, B: Broker>(
    stage: &S,
    broker: &B,
    delivery: Delivery,
    retry: &RetrySettings,
    abandon: impl Future<Output = ()>,
) {
    let result = tokio::select! {
        result = handle_delivery(stage, broker, &delivery.body, delivery.receive_count, retry) => Some(result),
        () = abandon => None,
    };
    let Some(result) = result else {
        if let Err(error) = broker.release(delivery).await {
            tracing::warn!(stage = S::QUEUE.stage(), %error, "could not release a delivery; it returns when its lease ends");
        }
        return;
    };
    settle_result(broker, delivery, result).await;
}

/// Handles one delivery and settles it with the broker.
pub async fn settle<S: Stage, B: Broker>(stage: &S, broker: &B, delivery: Delivery, retry: &RetrySettings) {
    let result = handle_delivery(stage, broker, &delivery.body, delivery.receive_count, retry).await;
    settle_result(broker, delivery, result).await;
}

async fn settle_result<B: Broker>(
    broker: &B,
    delivery: Delivery,
    result: Result<Disposition, ferry_queue::QueueError>,
) {
    let stage = delivery.from;
    let settled = match result {
        Ok(Disposition::Done | Disposition::DeadLettered(_)) => broker.ack(delivery).await,
        Ok(Disposition::Retry { body, delay }) => broker.retry_later(delivery, body, delay).await,
        Err(error) => {
            // The output could not be published: the message must come back.
            tracing::warn!(?stage, %error, "publishing failed; the message will be delivered again");
            let body = delivery.body.clone();
            broker.retry_later(delivery, body, Duration::from_secs(5)).await
        }
    };
    if let Err(error) = settled {
        // Not acked: the broker delivers it again (at least once); stages are idempotent.
        tracing::warn!(?stage, %error, "could not settle a delivery; it will be redelivered");
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
