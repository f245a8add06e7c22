//! AWS Lambda with an SQS event source: partial batch responses.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use ferry_messages::Queue;
use ferry_queue::sqs::SqsBroker;
use ferry_queue::{Address, Broker, Delivery, DeliveryHandle};
use futures_util::FutureExt as _;
use lambda_runtime::{LambdaEvent, service_fn};

use crate::process::{Disposition, RetrySettings, handle_delivery};
use crate::stage::Stage;

/// Handles one batch. A record that finished or was dead-lettered is a success (Lambda
/// deletes it); a record to retry gets its visibility timeout changed to the retry delay and is
/// reported as a batch item failure, so that SQS delivers it again then.
pub async fn handle_batch<S: Stage>(
    stage: &S,
    broker: &SqsBroker,
    event: SqsEvent,
    retry: &RetrySettings,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.clone().unwrap_or_default().into_bytes();
        let receive_count =
            record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1);
        let failed = match handle_delivery(stage, broker, &body, receive_count, retry).await {
            Ok(Disposition::Done | Disposition::DeadLettered(_)) => false,
            Ok(Disposition::Retry { delay, .. }) => {
                delay_record(broker, &record.event_source_arn, record.receipt_handle.as_deref(), &id, delay)
                    .await;
                true
            }
            Err(error) => {
                tracing::warn!(%error, message_id = %id, "publishing failed; reporting the record as failed");
                true
            }
        };
        if failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    crate::telemetry::flush();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// Sets the record's visibility timeout to `delay` (a throttled message's `Retry-After`).
async fn delay_record(
    broker: &SqsBroker,
    source_arn: &Option<String>,
    receipt: Option<&str>,
    id: &str,
    delay: Duration,
) {
    let (Some(arn), Some(receipt)) = (source_arn, receipt) else { return };
    let Some(name) = arn.rsplit(':').next() else { return };
    let url = match broker.client().get_queue_url().queue_name(name).send().await {
        Ok(found) => found.queue_url().unwrap_or_default().to_owned(),
        Err(error) => {
            tracing::warn!(%error, "cannot find the queue to delay a message; it returns after the visibility timeout");
            return;
        }
    };
    let delivery = Delivery {
        from: Address::Stage(Queue::Plan),
        body: Vec::new(),
        receive_count: 0,
        handle: DeliveryHandle::Sqs {
            queue_url: url,
            receipt: receipt.to_owned(),
            message_id: id.to_owned(),
        },
    };
    if let Err(error) = broker.retry_later(delivery, Vec::new(), delay).await {
        tracing::warn!(%error, "cannot delay a message; it returns after the visibility timeout");
    }
}

/// Runs `stage` as a Lambda function until the runtime stops it.
///
/// The runtime's future is boxed: its tower stack is deep, and nested inline in a function's
/// `main` it overflowed rustc's layout query depth.
pub async fn run_lambda<S: Stage>(
    stage: Arc<S>,
    broker: Arc<SqsBroker>,
    retry: RetrySettings,
) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (stage, broker) = (stage.clone(), broker.clone());
        async move { Ok::<_, lambda_runtime::Error>(handle_batch(&*stage, &broker, event.payload, &retry).await) }
    }))
    .boxed()
    .await
}
