//! AWS Lambda with an SQS event source: partial batch responses.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use ferry_queue::sqs::SqsBroker;
use futures_util::FutureExt as _;
use lambda_runtime::{LambdaEvent, service_fn};

use crate::process::{Disposition, RetrySettings, handle_delivery};
use crate::stage::{Consumes as _, Stage};

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
                // The record returns after `delay` (a throttled message's `Retry-After`) instead
                // of after the queue's visibility timeout.
                if let Some(receipt) = record.receipt_handle.as_deref()
                    && let Err(error) = broker.delay(S::QUEUE, receipt, delay).await
                {
                    tracing::warn!(%error, message_id = %id, "cannot delay the record; it returns after the visibility timeout");
                }
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
