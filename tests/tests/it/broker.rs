//! The `Broker` contract, the same on every adapter: the in-memory queue, RabbitMQ and
//! LocalStack SQS. And RabbitMQ's reconnect after a broker restart, on a private node.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_messages::{Envelope, Queue, ReplicateMessage, Topology};
use ferry_model::{Digest, Repository};
use ferry_queue::{Address, AnyBroker, Broker as _, QueueError};
use ferry_runtime::worker::{WorkerOptions, run_worker};
use ferry_runtime::{Outgoing, RetrySettings, Stage, StageError};

fn prefix() -> String {
    format!("ferry-it-broker-{}", &Digest::of(format!("{:?}", Instant::now()).as_bytes()).hex()[..10])
}

async fn broker(url: &str) -> AnyBroker {
    let url = match url {
        "sqs" => {
            let endpoint = tokio::task::spawn_blocking(ferry_testkit::localstack::endpoint).await.unwrap();
            format!("sqs://{}?region=us-east-1", endpoint.trim_start_matches("http://"))
        }
        other => other.to_owned(),
    };
    let topology =
        Topology { prefix: prefix(), visibility: Some(Duration::from_secs(30)), ..Topology::default() };
    AnyBroker::connect(&url, topology).await.unwrap()
}

/// Receives until `n` messages came or `timeout` passed.
async fn receive_n(b: &AnyBroker, from: Address, n: usize, timeout: Duration) -> Vec<ferry_queue::Delivery> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(b.receive(from, n - got.len(), Duration::from_millis(500)).await.unwrap());
    }
    got
}

async fn contract(url: &str) {
    let b = broker(url).await;
    let transport = b.transport();
    let q = Address::Stage(Queue::Verify);
    // Before init the queues do not exist, and publishing says so (memory creates on demand).
    if transport != "memory" {
        let error = b.publish(q, vec![b"x".to_vec()]).await.unwrap_err();
        assert!(matches!(error, QueueError::Missing(_)), "{transport}: {error}");
    }
    b.init().await.unwrap();
    b.init().await.unwrap();
    assert_eq!(b.depth(q).await.unwrap(), Some(0), "{transport}: empty after init");
    b.publish(q, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]).await.unwrap();
    // The depth /metrics reports (SQS's is approximate, and settles within a moment).
    let mut depth = None;
    for _ in 0..20 {
        depth = b.depth(q).await.unwrap();
        if depth == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(depth, Some(3), "{transport}: three waiting");
    let mut got = receive_n(&b, q, 3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{transport}");
    got.sort_by(|a, b| a.body.cmp(&b.body));
    assert!(got.iter().all(|d| d.receive_count == 1), "{transport}: first deliveries");
    let mut got = got.into_iter();
    let (one, three, two) = (got.next().unwrap(), got.next().unwrap(), got.next().unwrap());
    assert_eq!(
        (one.body.as_slice(), three.body.as_slice(), two.body.as_slice()),
        (&b"one"[..], &b"three"[..], &b"two"[..])
    );
    // Acked: gone. Released: back at once. Retried: back after the delay, not before.
    b.ack(one).await.unwrap();
    b.release(two).await.unwrap();
    let started = Instant::now();
    b.retry_later(three, b"three, attempt 2".to_vec(), Duration::from_secs(2)).await.unwrap();
    let again = receive_n(&b, q, 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1, "{transport}: the released message");
    assert_eq!(again[0].body, b"two", "{transport}");
    assert!(again[0].receive_count >= 2, "{transport}: a second delivery is counted");
    let early = b.receive(q, 10, Duration::from_millis(200)).await.unwrap();
    assert!(
        early.is_empty() || started.elapsed() >= Duration::from_secs(2),
        "{transport}: the retried message waited"
    );
    let later = receive_n(&b, q, 1 + early.len(), Duration::from_secs(10)).await;
    let retried: Vec<_> = early.into_iter().chain(later).collect();
    assert_eq!(retried.len(), 1, "{transport}: the retried message came back once");
    assert!(started.elapsed() >= Duration::from_millis(1900), "{transport}: not before its delay");
    // SQS cannot change a queued body; the others deliver the new one.
    let expected: &[u8] = if transport == "sqs" { b"three" } else { b"three, attempt 2" };
    assert_eq!(retried[0].body, expected, "{transport}");
    for d in again.into_iter().chain(retried) {
        b.ack(d).await.unwrap();
    }
    assert!(
        b.receive(q, 10, Duration::from_millis(500)).await.unwrap().is_empty(),
        "{transport}: nothing left"
    );
    // Removed: every queue is gone, and removing again is fine.
    b.publish(q, vec![b"left behind".to_vec()]).await.unwrap();
    b.remove().await.unwrap();
    b.remove().await.unwrap();
    if transport != "memory" {
        let error = b.publish(q, vec![b"x".to_vec()]).await.unwrap_err();
        assert!(matches!(error, QueueError::Missing(_)), "{transport}: {error}");
    } else {
        assert!(b.receive(q, 10, Duration::from_millis(100)).await.unwrap().is_empty(), "memory: emptied");
    }
}

#[tokio::test]
async fn memory_keeps_the_broker_contract() {
    crate::support::bounded(contract("memory://")).await;
}

#[tokio::test]
async fn rabbitmq_keeps_the_broker_contract() {
    crate::support::bounded(contract("amqp://guest:guest@127.0.0.1:5672/%2f")).await;
}

#[tokio::test]
async fn sqs_keeps_the_broker_contract() {
    crate::support::bounded(contract("sqs")).await;
}

/// Counts what it handles; publishes nothing.
struct Counting(Arc<AtomicUsize>);

impl Stage for Counting {
    type Message = ReplicateMessage;

    async fn handle(&self, _message: Envelope<ReplicateMessage>) -> Result<Vec<Outgoing>, StageError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

fn message(n: u8) -> Vec<u8> {
    let repository = |h: &str| Repository::parse(&format!("{h}/app")).unwrap();
    Envelope::new(
        ReplicateMessage {
            primary: repository("p.example"),
            mirror: repository("m.example"),
            digest: Digest::of(&[n]),
            copied: false,
        },
        "e",
        None,
    )
    .encode()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_worker_and_publisher_reconnect_after_a_broker_restart() {
    crate::support::bounded(restart()).await;
}

async fn restart() {
    let node = Arc::new(tokio::task::spawn_blocking(ferry_testkit::rabbit::RabbitNode::start).await.unwrap());
    let b = Arc::new(broker(&node.url()).await);
    if let Err(error) = b.init().await {
        panic!("{error}; the node's log says:\n{}", node.log_errors());
    }
    let handled = Arc::new(AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = WorkerOptions {
        concurrency: 2,
        wait: Duration::from_millis(500),
        retry: RetrySettings::default(),
        ..WorkerOptions::default()
    };
    let worker =
        tokio::spawn(run_worker(Arc::new(Counting(handled.clone())), b.clone(), options, async move {
            let _ = stopped.await;
        }));
    let q = Address::Stage(Queue::Replicate);
    b.publish(q, vec![message(1)]).await.unwrap();
    crate::pipeline::wait_for("the first message", Duration::from_secs(20), || async {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;

    // The broker goes away; a publish made meanwhile waits for it and then succeeds.
    let n = node.clone();
    tokio::task::spawn_blocking(move || n.stop_app()).await.unwrap();
    let publisher = {
        let b = b.clone();
        tokio::spawn(async move { b.publish(q, vec![message(2)]).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = node.clone();
    tokio::task::spawn_blocking(move || n.start_app()).await.unwrap();
    publisher.await.unwrap().expect("the publish went through after the restart");
    crate::pipeline::wait_for(
        "the worker to consume again after the restart",
        Duration::from_secs(30),
        || async { handled.load(Ordering::SeqCst) == 2 },
    )
    .await;
    stop.send(()).unwrap();
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_during_a_broker_outage_gets_503_and_its_retry_is_enqueued_once() {
    crate::support::bounded(outage(Outage::Rabbit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_during_an_sqs_outage_gets_503_and_its_retry_is_enqueued_once() {
    crate::support::bounded(outage(Outage::Sqs)).await;
}

/// How the broker goes away: a private RabbitMQ node stopped and started, or LocalStack's SQS
/// endpoint cut off behind a TCP forwarder (LocalStack itself is shared with other tests).
#[derive(Clone, Copy, Debug)]
enum Outage {
    Rabbit,
    Sqs,
}

enum Down {
    Rabbit(Arc<ferry_testkit::rabbit::RabbitNode>),
    Sqs(ferry_testkit::tcp::TcpProxy),
}

impl Down {
    async fn start(outage: Outage) -> (Self, String) {
        match outage {
            Outage::Rabbit => {
                let node = Arc::new(
                    tokio::task::spawn_blocking(ferry_testkit::rabbit::RabbitNode::start).await.unwrap(),
                );
                let url = node.url();
                (Down::Rabbit(node), url)
            }
            Outage::Sqs => {
                let endpoint =
                    tokio::task::spawn_blocking(ferry_testkit::localstack::endpoint).await.unwrap();
                let target: std::net::SocketAddr =
                    endpoint.trim_start_matches("http://").replace("localhost", "127.0.0.1").parse().unwrap();
                let proxy = ferry_testkit::tcp::TcpProxy::start(target).await;
                let url = format!("sqs://{}?region=us-east-1", proxy.address());
                (Down::Sqs(proxy), url)
            }
        }
    }

    async fn down(&self) {
        match self {
            Down::Rabbit(node) => {
                let n = node.clone();
                tokio::task::spawn_blocking(move || n.stop_app()).await.unwrap();
            }
            Down::Sqs(proxy) => proxy.down(),
        }
    }

    async fn up(&self) {
        match self {
            Down::Rabbit(node) => {
                let n = node.clone();
                tokio::task::spawn_blocking(move || n.start_app()).await.unwrap();
            }
            Down::Sqs(proxy) => proxy.up(),
        }
    }
}

/// Ingest on a broker that goes away. While it is down, a webhook is answered 503 within the
/// enqueue deadline (never "duplicate"), however often the registry retries it; once it is
/// back, the same event id is accepted and enqueued exactly once.
async fn outage(outage: Outage) {
    let (broken, url) = Down::start(outage).await;
    let b = Arc::new(broker(&url).await);
    b.init().await.unwrap();
    let deadline = Duration::from_secs(2);
    let config = ferry_ingest::IngestConfig {
        registries: vec![ferry_model::Host::parse("127.0.0.1:5001").unwrap()],
        distribution_token: Some(ferry_registry::Secret::new("outage-token")),
        enqueue_timeout: deadline,
        ..ferry_ingest::IngestConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/events/distribution", listener.local_addr().unwrap());
    let router = ferry_ingest::router(ferry_ingest::Ingest::new(b.clone(), config));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let sample: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            ferry_testkit::data_dir().join("distribution-webhooks/registry-push-event.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let event = |id: &str| {
        let mut v = sample.clone();
        v["events"][0]["id"] = id.into();
        serde_json::to_vec(&v).unwrap()
    };
    let http = reqwest::Client::new();
    let post = |id: &'static str| {
        let (http, url, body) = (http.clone(), url.clone(), event(id));
        async move {
            let started = Instant::now();
            let response = http
                .post(&url)
                .header("authorization", "Bearer outage-token")
                .body(body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap(), started.elapsed())
        }
    };
    let (status, text, _) = post("before").await;
    assert_eq!(status, 202, "{text}");

    broken.down().await;
    for attempt in 0..3 {
        let (status, text, took) = post("during").await;
        assert_eq!(status, 503, "{outage:?}: attempt {attempt} during the outage: {text}");
        assert!(!text.contains("duplicate"), "{text}");
        assert!(took < deadline + Duration::from_millis(1500), "answered within the deadline: {took:?}");
    }
    broken.up().await;
    // The registry keeps retrying the same id; once the broker confirms, it is accepted.
    let mut accepted = false;
    for _ in 0..60 {
        let (status, text, _) = post("during").await;
        if status == 202 {
            accepted = true;
            break;
        }
        assert_eq!(status, 503, "{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(accepted, "the retry after the outage was accepted");
    let (status, text, _) = post("during").await;
    assert_eq!((status, text.contains("duplicate")), (200, true), "{text}");

    // Exactly one message for each event id.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let got = b.receive(Address::Stage(Queue::Plan), 10, Duration::from_millis(500)).await.unwrap();
        for delivery in got {
            ids.push(
                ferry_messages::envelope::Header::read(&delivery.body).event_id.clone().unwrap_or_default(),
            );
            b.ack(delivery).await.unwrap();
        }
    }
    ids.sort();
    let during = ids.iter().filter(|id| *id == "during").count();
    assert!(ids.contains(&"before".to_owned()), "{ids:?}");
    assert_eq!(during, 1, "enqueued once: {ids:?}");
    b.remove().await.unwrap();
}
