//! Amazon SQS (and LocalStack).
//!
//! - Long polling (`WaitTimeSeconds`), batched sends (`SendMessageBatch`), deletes by receipt.
//! - A retry changes the message's visibility timeout: it comes back after the delay (a 429's
//!   `Retry-After`). Attempts are counted by `ApproximateReceiveCount`, since a queued SQS
//!   message cannot be edited.
//! - Every stage queue has a RedrivePolicy to `poison` as a safety net; the runtime
//!   dead-letters with a reason well before `maxReceiveCount`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use ferry_messages::{DeadLetterQueue, Queue, Topology};
use tokio::sync::Mutex;

use crate::broker::{Address, Broker, Delivery, DeliveryHandle, QueueError};

const T: &str = "sqs";
/// SendMessageBatch takes at most 10 entries and 256 KiB in total.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct SqsBroker {
    client: Client,
    topology: Topology,
    urls: Mutex<HashMap<Address, String>>,
}

fn sdk_error<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl SqsBroker {
    /// `endpoint` overrides AWS's (LocalStack: `http://127.0.0.1:4566`); region and
    /// credentials come from the usual AWS configuration.
    pub async fn connect(endpoint: Option<&str>, region: Option<&str>, topology: Topology) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
            // A loopback endpoint is LocalStack, which accepts any credentials; without this a
            // machine with no AWS configuration would wait on the instance metadata service.
            if endpoint.starts_with("http://127.") || endpoint.starts_with("http://localhost") {
                loader = loader
                    .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                        "test",
                        "test",
                        None,
                        None,
                        "localstack",
                    ))
                    .region(aws_config::Region::new(region.unwrap_or("us-east-1").to_owned()));
            }
        }
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_owned()));
        }
        // Every call is bounded: a long poll waits at most 20 s, so 40 s means no answer.
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(40))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        );
        let sdk = loader.load().await;
        Self::from_client(Client::new(&sdk), topology)
    }

    /// From the part of a transport URL after `sqs://`: empty (AWS, region from the
    /// environment) or `host:port[?region=R]` (an endpoint such as LocalStack, over plain HTTP
    /// for loopback hosts).
    pub async fn connect_url(rest: &str, topology: Topology) -> Self {
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let region = query.split('&').find_map(|kv| kv.strip_prefix("region="));
        let endpoint = (!authority.is_empty()).then(|| {
            let host = authority.split(':').next().unwrap_or_default();
            let scheme = if host == "localhost" || host.starts_with("127.") { "http" } else { "https" };
            format!("{scheme}://{authority}")
        });
        Self::connect(endpoint.as_deref(), region, topology).await
    }

    pub fn from_client(client: Client, topology: Topology) -> Self {
        Self { client, topology, urls: Mutex::new(HashMap::new()) }
    }

    async fn url(&self, address: Address) -> Result<String, QueueError> {
        if let Some(url) = self.urls.lock().await.get(&address) {
            return Ok(url.clone());
        }
        let url = self.lookup(&address.physical_name(&self.topology)).await?;
        self.urls.lock().await.insert(address, url.clone());
        Ok(url)
    }

    /// Makes the message with `receipt` on `queue` visible again after `delay` (a Lambda event
    /// source's record to retry later: Lambda owns the receive, the broker only the queue).
    pub async fn delay(&self, queue: Queue, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let url = self.url(Address::Stage(queue)).await?;
        self.change_visibility(url, receipt.to_owned(), delay).await
    }

    async fn change_visibility(
        &self,
        url: String,
        receipt: String,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().min(43_200) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::broker(T, sdk_error(&e)))
    }

    /// The URL of the queue called `name`; `Missing` when there is none.
    async fn lookup(&self, name: &str) -> Result<String, QueueError> {
        let found = self.client.get_queue_url().queue_name(name).send().await.map_err(|e| {
            let text = sdk_error(&e);
            if text.contains("NonExistentQueue") || text.contains("does not exist") {
                QueueError::Missing(name.to_owned())
            } else {
                QueueError::broker(T, format!("{name}: {text}"))
            }
        })?;
        found.queue_url().map(str::to_owned).ok_or_else(|| QueueError::Missing(name.to_owned()))
    }

    /// The attributes of the queue at `url` (`All`, or the one named).
    async fn attributes(
        &self,
        url: &str,
        which: QueueAttributeName,
    ) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(which)
            .send()
            .await
            .map_err(|e| QueueError::broker(T, format!("{url}: {}", sdk_error(&e))))?;
        Ok(answer.attributes().cloned().unwrap_or_default())
    }

    async fn create(
        &self,
        name: &str,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> Result<String, QueueError> {
        let created = match self
            .client
            .create_queue()
            .queue_name(name)
            .set_attributes(Some(attributes.clone()))
            .send()
            .await
        {
            Ok(created) => created,
            Err(e) => {
                let text = sdk_error(&e);
                if text.contains("QueueNameExists") || text.contains("QueueAlreadyExists") {
                    // Created elsewhere (the CloudFormation template, an older Ferry): fine if
                    // it means the same, whatever the JSON spelling.
                    return self.existing_matches(name, &attributes).await;
                }
                return Err(QueueError::broker(T, format!("creating {name}: {text}")));
            }
        };
        created
            .queue_url()
            .map(str::to_owned)
            .ok_or_else(|| QueueError::broker(T, format!("{name}: no queue URL")))
    }

    /// The URL of the existing queue `name` if its attributes mean the same as `wanted`;
    /// otherwise an error naming the attribute and both values.
    async fn existing_matches(
        &self,
        name: &str,
        wanted: &HashMap<QueueAttributeName, String>,
    ) -> Result<String, QueueError> {
        let url = self.lookup(name).await?;
        let have = self.attributes(&url, QueueAttributeName::All).await?;
        for (key, value) in wanted {
            let existing = have.get(key).map(String::as_str).unwrap_or("");
            if !same_attribute(existing, value) {
                return Err(QueueError::Config(format!(
                    "queue {name} exists with {key} = {existing}, but this topology wants {value}; \
                     delete it (ferry queues remove --confirm) or change the topology"
                )));
            }
        }
        Ok(url)
    }

    /// The ARN of the queue at `url`.
    pub async fn arn(&self, url: &str) -> Result<String, QueueError> {
        self.attributes(url, QueueAttributeName::QueueArn)
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| QueueError::broker(T, format!("{url}: no ARN")))
    }

    /// The attributes of every queue, for comparing a deployment with the topology.
    pub async fn describe(&self) -> Result<Vec<(String, HashMap<String, String>)>, QueueError> {
        let mut out = Vec::new();
        for name in self.topology.all_names() {
            let url = match self.lookup(&name).await {
                Ok(url) => url,
                Err(QueueError::Missing(_)) => continue,
                Err(e) => return Err(e),
            };
            let attributes = self.attributes(&url, QueueAttributeName::All).await?;
            out.push((name, attributes.into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect()));
        }
        Ok(out)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Two attribute values mean the same: equal text, or equal JSON with numbers and numeric
/// strings alike (`"maxReceiveCount": "8"` and `8`).
fn same_attribute(a: &str, b: &str) -> bool {
    fn normal(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) => match s.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => serde_json::Value::String(s),
            },
            serde_json::Value::Object(map) => map.into_iter().map(|(k, v)| (k, normal(v))).collect(),
            other => other,
        }
    }
    if a == b {
        return true;
    }
    match (serde_json::from_str(a), serde_json::from_str(b)) {
        (Ok(x), Ok(y)) => normal(x) == normal(y),
        _ => false,
    }
}

impl Broker for SqsBroker {
    async fn init(&self) -> Result<(), QueueError> {
        let fourteen_days = (14 * 24 * 3600).to_string();
        let mut poison_arn = String::new();
        for dlq in DeadLetterQueue::ALL {
            let url = self
                .create(
                    &self.topology.dead_letter_name(dlq),
                    HashMap::from([
                        (QueueAttributeName::MessageRetentionPeriod, fourteen_days.clone()),
                        (QueueAttributeName::SqsManagedSseEnabled, "true".into()),
                    ]),
                )
                .await?;
            if dlq == DeadLetterQueue::Poison {
                poison_arn = self.arn(&url).await?;
            }
        }
        let redrive = serde_json::json!({"deadLetterTargetArn": poison_arn, "maxReceiveCount": self.topology.max_receive_count}).to_string();
        for queue in Queue::ALL {
            self.create(
                &self.topology.queue_name(queue),
                HashMap::from([
                    (
                        QueueAttributeName::VisibilityTimeout,
                        self.topology.visibility_timeout(queue).as_secs().to_string(),
                    ),
                    (QueueAttributeName::MessageRetentionPeriod, fourteen_days.clone()),
                    (QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20".into()),
                    (QueueAttributeName::RedrivePolicy, redrive.clone()),
                    (QueueAttributeName::SqsManagedSseEnabled, "true".into()),
                ]),
            )
            .await?;
        }
        Ok(())
    }

    async fn remove(&self) -> Result<(), QueueError> {
        let addresses = Queue::ALL
            .iter()
            .map(|q| Address::Stage(*q))
            .chain(DeadLetterQueue::ALL.iter().map(|d| Address::DeadLetter(*d)));
        for address in addresses {
            let url = match self.url(address).await {
                Ok(url) => url,
                Err(QueueError::Missing(_)) => continue,
                Err(e) => return Err(e),
            };
            self.client
                .delete_queue()
                .queue_url(&url)
                .send()
                .await
                .map_err(|e| QueueError::broker(T, sdk_error(&e)))?;
            self.urls.lock().await.remove(&address);
        }
        Ok(())
    }

    async fn publish(&self, to: Address, bodies: Vec<Vec<u8>>) -> Result<(), QueueError> {
        let url = self.url(to).await?;
        let mut batch: Vec<SendMessageBatchRequestEntry> = Vec::new();
        let mut batch_bytes = 0;
        let mut pending = bodies.into_iter().enumerate().peekable();
        while let Some((i, body)) = pending.next() {
            let text = String::from_utf8(body)
                .map_err(|_| QueueError::Config("SQS messages must be UTF-8".into()))?;
            batch_bytes += text.len();
            batch.push(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(text)
                    .build()
                    .map_err(|e| QueueError::broker(T, e))?,
            );
            let next_len = pending.peek().map_or(0, |(_, b)| b.len());
            if batch.len() == BATCH_ENTRIES
                || pending.peek().is_none()
                || batch_bytes + next_len > BATCH_BYTES
            {
                let sent = self
                    .client
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(std::mem::take(&mut batch)))
                    .send()
                    .await
                    .map_err(|e| QueueError::broker(T, sdk_error(&e)))?;
                if let Some(failed) = sent.failed().first() {
                    return Err(QueueError::broker(
                        T,
                        format!("{to}: a message was refused: {}", failed.message().unwrap_or("no reason")),
                    ));
                }
                batch_bytes = 0;
            }
        }
        Ok(())
    }

    async fn receive(&self, from: Address, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let url = self.url(from).await?;
        let mut request = self
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount);
        if matches!(from, Address::DeadLetter(_)) {
            // Inspecting a dead-letter queue holds messages only briefly.
            request = request.visibility_timeout(60);
        }
        let received = request.send().await.map_err(|e| QueueError::broker(T, sdk_error(&e)))?;
        Ok(received
            .messages()
            .iter()
            .map(|m| Delivery {
                from,
                body: m.body().unwrap_or_default().as_bytes().to_vec(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                handle: DeliveryHandle::Sqs {
                    queue_url: url.clone(),
                    receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                    message_id: m.message_id().unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }

    async fn ack(&self, delivery: Delivery) -> Result<(), QueueError> {
        let DeliveryHandle::Sqs { queue_url, receipt, .. } = delivery.handle else {
            return Err(QueueError::Config("not an SQS delivery".into()));
        };
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError::broker(T, sdk_error(&e)))
    }

    async fn retry_later(
        &self,
        delivery: Delivery,
        _body: Vec<u8>,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let DeliveryHandle::Sqs { queue_url, receipt, .. } = delivery.handle else {
            return Err(QueueError::Config("not an SQS delivery".into()));
        };
        self.change_visibility(queue_url, receipt, delay).await
    }

    async fn release(&self, delivery: Delivery) -> Result<(), QueueError> {
        self.retry_later(delivery, Vec::new(), Duration::ZERO).await
    }

    async fn depth(&self, address: Address) -> Result<Option<u64>, QueueError> {
        let url = self.url(address).await?;
        let attributes = self.attributes(&url, QueueAttributeName::ApproximateNumberOfMessages).await?;
        Ok(attributes.get(&QueueAttributeName::ApproximateNumberOfMessages).and_then(|n| n.parse().ok()))
    }

    fn transport(&self) -> &'static str {
        T
    }
}

#[cfg(test)]
mod tests {
    use super::same_attribute;

    #[test]
    fn attribute_values_compare_by_meaning() {
        let table = [
            ("5400", "5400", true),
            ("5400", "720", false),
            (
                r#"{"deadLetterTargetArn": "arn:q", "maxReceiveCount": 8}"#,
                r#"{"deadLetterTargetArn":"arn:q","maxReceiveCount":"8"}"#,
                true,
            ),
            (
                r#"{"deadLetterTargetArn": "arn:q", "maxReceiveCount": 8}"#,
                r#"{"deadLetterTargetArn":"arn:q","maxReceiveCount":"5"}"#,
                false,
            ),
            (
                r#"{"deadLetterTargetArn": "arn:a", "maxReceiveCount": 8}"#,
                r#"{"deadLetterTargetArn":"arn:b","maxReceiveCount":8}"#,
                false,
            ),
            ("true", "false", false),
            ("", "20", false),
        ];
        for (a, b, same) in table {
            assert_eq!(same_attribute(a, b), same, "{a} vs {b}");
        }
    }
}
