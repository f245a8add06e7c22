//! How the runtime settles a delivery, for every outcome a stage can have, on the in-memory
//! broker; and the worker's graceful shutdown.
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferry_messages::{DeadLetter, DeadLetterQueue, Envelope, PlanMessage, Queue, ReplicateMessage};
use ferry_model::{Digest, Repository};
use ferry_queue::memory::MemoryBroker;
use ferry_queue::{Address, Broker as _};
use ferry_registry::ErrorClass;
use ferry_runtime::worker::{WorkerOptions, run_worker};
use ferry_runtime::{Disposition, Outgoing, RetrySettings, Stage, StageError, handle_delivery};

/// A stage that answers as scripted: `Ok` publishes one message to `replicate`.
struct Scripted {
    result: Result<(), (ErrorClass, Option<Duration>)>,
    delay: Duration,
    handled: AtomicUsize,
}

impl Scripted {
    fn new(result: Result<(), (ErrorClass, Option<Duration>)>) -> Self {
        Self { result, delay: Duration::ZERO, handled: AtomicUsize::new(0) }
    }
}

impl Stage for Scripted {
    type Message = ReplicateMessage;

    async fn handle(&self, message: Envelope<ReplicateMessage>) -> Result<Vec<Outgoing>, StageError> {
        tokio::time::sleep(self.delay).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        match self.result {
            Ok(()) => Ok(vec![Outgoing::message(
                PlanMessage::Reconcile { repository: message.body.mirror.to_string() },
                &message,
            )?]),
            Err((class, retry_after)) => {
                Err(StageError { class, message: format!("scripted {} failure", class.name()), retry_after })
            }
        }
    }
}

fn message(attempt: u32) -> Vec<u8> {
    let repository = |host: &str| Repository::parse(&format!("{host}/team/app")).unwrap();
    let body = ReplicateMessage {
        primary: repository("prod.example"),
        mirror: repository("mirror.example"),
        digest: Digest::of(b"image"),
        copied: false,
    };
    let mut envelope = Envelope::new(
        body,
        "event-42",
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    );
    envelope.attempt = attempt;
    envelope.encode().unwrap()
}

fn settings() -> RetrySettings {
    RetrySettings {
        max_attempts: 3,
        max_throttled_attempts: 2,
        base_delay: Duration::from_secs(2),
        max_delay: Duration::from_secs(60),
    }
}

/// What must come of one delivery.
#[derive(Debug, PartialEq)]
enum Expect {
    Published,
    Retry { delay: Duration, attempt: u32 },
    DeadLetter { queue: DeadLetterQueue, class: &'static str, error: &'static str, attempts: u32 },
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    receive_count: u32,
    result: Result<(), (ErrorClass, Option<Duration>)>,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    use DeadLetterQueue::{Poison, VerificationFailed};
    use ErrorClass::{Permanent, Transient, Verification};
    let unknown_version =
        String::from_utf8(message(0)).unwrap().replacen("\"version\":1", "\"version\":9", 1).into_bytes();
    vec![
        Case {
            name: "success publishes the next stage's message",
            body: message(0),
            receive_count: 1,
            result: Ok(()),
            expect: Expect::Published,
        },
        Case {
            name: "not JSON goes to poison",
            body: b"\x00\x01 not json".to_vec(),
            receive_count: 1,
            result: Ok(()),
            expect: Expect::DeadLetter {
                queue: Poison,
                class: "malformed",
                error: "malformed message",
                attempts: 1,
            },
        },
        Case {
            name: "an unknown version goes to poison",
            body: unknown_version,
            receive_count: 1,
            result: Ok(()),
            expect: Expect::DeadLetter {
                queue: Poison,
                class: "malformed",
                error: "unknown message version 9",
                attempts: 1,
            },
        },
        Case {
            name: "a body of the wrong shape goes to poison",
            body: br#"{"version":1,"id":"x","idempotency_key":"k","event_id":"e","body":{"primary":3}}"#
                .to_vec(),
            receive_count: 1,
            result: Ok(()),
            expect: Expect::DeadLetter {
                queue: Poison,
                class: "malformed",
                error: "malformed message",
                attempts: 1,
            },
        },
        Case {
            name: "a verification failure goes to verification-failed",
            body: message(0),
            receive_count: 1,
            result: Err((Verification, None)),
            expect: Expect::DeadLetter {
                queue: VerificationFailed,
                class: "verification",
                error: "scripted verification failure",
                attempts: 1,
            },
        },
        Case {
            name: "a permanent failure goes to poison at once",
            body: message(0),
            receive_count: 1,
            result: Err((Permanent, None)),
            expect: Expect::DeadLetter {
                queue: Poison,
                class: "permanent",
                error: "scripted permanent failure",
                attempts: 1,
            },
        },
        Case {
            name: "throttled: retried after Retry-After",
            body: message(0),
            receive_count: 1,
            result: Err((ErrorClass::Throttled, Some(Duration::from_secs(7)))),
            expect: Expect::Retry { delay: Duration::from_secs(7), attempt: 1 },
        },
        Case {
            name: "throttled beyond the budget goes to throttled",
            body: message(1),
            receive_count: 2,
            result: Err((ErrorClass::Throttled, Some(Duration::from_secs(7)))),
            expect: Expect::DeadLetter {
                queue: DeadLetterQueue::Throttled,
                class: "throttled",
                error: "scripted throttled failure",
                attempts: 2,
            },
        },
        Case {
            name: "transient: retried with backoff",
            body: message(1),
            receive_count: 2,
            result: Err((Transient, None)),
            expect: Expect::Retry { delay: Duration::from_secs(4), attempt: 2 },
        },
        Case {
            name: "SQS counts attempts by receives when the body cannot change",
            body: message(0),
            receive_count: 3,
            result: Err((Transient, None)),
            expect: Expect::DeadLetter {
                queue: Poison,
                class: "transient",
                error: "gave up after 3 attempts",
                attempts: 3,
            },
        },
    ]
}

#[tokio::test]
async fn every_outcome_is_settled_as_it_must_be() {
    let mut failures = Vec::new();
    for case in cases() {
        let broker = MemoryBroker::default();
        let stage = Scripted::new(case.result);
        let disposition =
            handle_delivery(&stage, &broker, &case.body, case.receive_count, &settings()).await.unwrap();
        let got = match disposition {
            Disposition::Done => {
                let out = broker.receive(Address::Stage(Queue::Plan), 10, Duration::ZERO).await.unwrap();
                let sent = Envelope::<PlanMessage>::decode(&out[0].body).unwrap();
                let original = Envelope::<ReplicateMessage>::decode(&case.body).unwrap();
                // The next message continues the event.
                assert_eq!(sent.event_id, original.event_id, "{}", case.name);
                assert_eq!(sent.attempt, 0, "{}", case.name);
                Expect::Published
            }
            Disposition::Retry { body, delay } => {
                let envelope = Envelope::<ReplicateMessage>::decode(&body).unwrap();
                assert!(envelope.first_failure.is_some(), "{}: the first failure is stamped", case.name);
                Expect::Retry { delay, attempt: envelope.attempt }
            }
            Disposition::DeadLettered(queue) => {
                let out = broker.receive(Address::DeadLetter(queue), 10, Duration::ZERO).await.unwrap();
                let record = DeadLetter::decode(&out[0].body).unwrap();
                assert_eq!(record.queue, Queue::Replicate, "{}", case.name);
                assert_eq!(record.stage.as_str(), "replicator", "{}", case.name);
                assert!(
                    record.original.is_some() || record.original_base64.is_some(),
                    "{}: the original is kept",
                    case.name
                );
                let expected_error = match &case.expect {
                    Expect::DeadLetter { error, .. } => *error,
                    _ => "",
                };
                Expect::DeadLetter {
                    queue: record.dead_letter_queue,
                    class: record.class.as_str(),
                    error: if record.error.contains(expected_error) {
                        expected_error
                    } else {
                        leak(record.error)
                    },
                    attempts: record.attempts,
                }
            }
        };
        if got != case.expect {
            failures.push(format!("{}: got {got:?}, want {:?}", case.name, case.expect));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

#[tokio::test]
async fn a_dead_letter_keeps_the_trace_and_replays_with_attempts_reset() {
    let broker = MemoryBroker::default();
    let stage = Scripted::new(Err((ErrorClass::Throttled, None)));
    let disposition = handle_delivery(&stage, &broker, &message(1), 2, &settings()).await.unwrap();
    assert_eq!(disposition, Disposition::DeadLettered(DeadLetterQueue::Throttled));
    let out =
        broker.receive(Address::DeadLetter(DeadLetterQueue::Throttled), 1, Duration::ZERO).await.unwrap();
    let record = DeadLetter::decode(&out[0].body).unwrap();
    assert_eq!(record.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(record.class.as_str(), "throttled");
    assert!(record.first_failure <= record.last_failure);
    let replay = Envelope::<ReplicateMessage>::decode(&record.replayable().unwrap()).unwrap();
    assert_eq!(replay.attempt, 0);
    assert_eq!(replay.body, Envelope::<ReplicateMessage>::decode(&message(0)).unwrap().body);
}

#[tokio::test]
async fn shutdown_finishes_what_is_in_flight_and_loses_nothing() {
    let broker = Arc::new(MemoryBroker::new(Duration::from_secs(60)));
    broker.publish(Address::Stage(Queue::Replicate), (0..6).map(|_| message(0)).collect()).await.unwrap();
    let stage = Arc::new(Scripted { delay: Duration::from_millis(400), ..Scripted::new(Ok(())) });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = WorkerOptions {
        concurrency: 2,
        wait: Duration::from_millis(50),
        retry: settings(),
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn(run_worker(stage.clone(), broker.clone(), options, async move {
        let _ = stopped.await;
    }));
    // Stop while the first two are being handled.
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.send(()).unwrap();
    worker.await.unwrap();
    let handled = stage.handled.load(Ordering::SeqCst);
    assert_eq!(handled, 2, "the two in flight were finished, nothing new was taken");
    assert_eq!(broker.in_flight(), 0, "everything received was settled");
    assert_eq!(broker.depth(Address::Stage(Queue::Replicate)), 6 - handled, "the rest wait in the queue");
    assert_eq!(
        broker.depth(Address::Stage(Queue::Plan)),
        handled,
        "each finished message published its output"
    );
}

/// Panics on every message, as a stage with a bug would.
struct Panicking;

impl Stage for Panicking {
    type Message = ReplicateMessage;

    async fn handle(&self, message: Envelope<ReplicateMessage>) -> Result<Vec<Outgoing>, StageError> {
        if message.attempt < u32::MAX {
            panic!("index out of bounds: the len is 0 but the index is 3");
        }
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_panicking_stage_dead_letters_the_message_and_the_worker_goes_on() {
    let broker = Arc::new(MemoryBroker::default());
    let disposition = handle_delivery(&Panicking, &*broker, &message(0), 1, &settings()).await.unwrap();
    assert_eq!(disposition, Disposition::DeadLettered(DeadLetterQueue::Poison));
    let out = broker.receive(Address::DeadLetter(DeadLetterQueue::Poison), 1, Duration::ZERO).await.unwrap();
    let record = DeadLetter::decode(&out[0].body).unwrap();
    assert!(record.error.contains("the replicator stage panicked: index out of bounds"), "{}", record.error);
    assert!(record.replayable().is_some(), "the original is kept for a replay after the fix");

    // A worker survives a stream of them and settles each.
    broker.publish(Address::Stage(Queue::Replicate), (0..3).map(|_| message(0)).collect()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = WorkerOptions {
        concurrency: 2,
        wait: Duration::from_millis(50),
        retry: settings(),
        ..WorkerOptions::default()
    };
    let worker = tokio::spawn(run_worker(Arc::new(Panicking), broker.clone(), options, async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(()).unwrap();
    worker.await.unwrap();
    assert_eq!(broker.depth(Address::Stage(Queue::Replicate)), 0);
    assert_eq!(broker.depth(Address::DeadLetter(DeadLetterQueue::Poison)), 3);
}

#[tokio::test]
async fn shutdown_releases_what_outlives_the_grace_period() {
    let broker = Arc::new(MemoryBroker::new(Duration::from_secs(60)));
    broker.publish(Address::Stage(Queue::Replicate), vec![message(0)]).await.unwrap();
    // A copy that would take 30 s; the grace period is 300 ms.
    let stage = Arc::new(Scripted { delay: Duration::from_secs(30), ..Scripted::new(Ok(())) });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = WorkerOptions {
        concurrency: 1,
        wait: Duration::from_millis(50),
        retry: settings(),
        grace: Duration::from_millis(300),
    };
    let worker = tokio::spawn(run_worker(stage.clone(), broker.clone(), options, async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    worker.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped within the grace period: {:?}",
        started.elapsed()
    );
    assert_eq!(stage.handled.load(Ordering::SeqCst), 0, "the slow message did not finish");
    assert_eq!(broker.in_flight(), 0, "it was released, not left in flight");
    assert_eq!(
        broker.depth(Address::Stage(Queue::Replicate)),
        1,
        "it waits in the queue for the next worker"
    );
}
