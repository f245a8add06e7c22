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
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self { concurrency: 8, wait: Duration::from_secs(5), retry: RetrySettings::default() }
    }
}

/// Consumes `S::QUEUE` until `shutdown` completes. Graceful: once `shutdown` fires nothing new
/// is received, and everything in flight is finished and settled before this returns.
pub async fn run_worker<S: Stage, B: Broker>(
    stage: Arc<S>,
    broker: Arc<B>,
    options: WorkerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
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
            tasks.spawn(async move {
                settle(&*stage, &*broker, delivery, &retry).await;
                drop(permit);
            });
        }
    }
    tracing::info!(
        stage = S::QUEUE.stage(),
        in_flight = tasks.len(),
        "shutting down; finishing in-flight messages"
    );
    while tasks.join_next().await.is_some() {}
    tracing::info!(stage = S::QUEUE.stage(), "worker stopped");
}

/// Handles one delivery and settles it with the broker.
pub async fn settle<S: Stage, B: Broker>(stage: &S, broker: &B, delivery: Delivery, retry: &RetrySettings) {
    let result = handle_delivery(stage, broker, &delivery.body, delivery.receive_count, retry).await;
    let settled = match result {
        Ok(Disposition::Done | Disposition::DeadLettered(_)) => broker.ack(delivery).await,
        Ok(Disposition::Retry { body, delay }) => broker.retry_later(delivery, body, delay).await,
        Err(error) => {
            // The output could not be published: the message must come back.
            tracing::warn!(stage = S::QUEUE.stage(), %error, "publishing failed; the message will be delivered again");
            let body = delivery.body.clone();
            broker.retry_later(delivery, body, Duration::from_secs(5)).await
        }
    };
    if let Err(error) = settled {
        // Not acked: the broker delivers it again (at least once); stages are idempotent.
        tracing::warn!(stage = S::QUEUE.stage(), %error, "could not settle a delivery; it will be redelivered");
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
