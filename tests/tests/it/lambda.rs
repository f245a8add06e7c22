//! A function binary in Lambda mode, under cargo-lambda's Runtime API emulator, handling an
//! SQS event batch: partial batch failures, dead-lettering and the next stage's messages on
//! LocalStack SQS.

use std::process::Stdio;
use std::time::Duration;

use ferry_messages::{
    CopyMessage, DeadLetter, DeadLetterQueue, DestinationTags, Envelope, Promotion, Queue, SignMessage,
    Topology,
};
use ferry_model::Tag;
use ferry_queue::{Address, AnyBroker, Broker as _};
use ferry_testkit::fault::{Fault, FaultProxy, Hits, Rule};
use ferry_testkit::registry::RegistryServer;
use ferry_testkit::seed::{ImageSpec, Seeder};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn record(id: &str, body: String, queue_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

fn copy_message(
    source: &RegistryServer,
    destination: ferry_model::Repository,
    repo: &str,
    digest: ferry_model::Digest,
) -> String {
    let destination = DestinationTags {
        repository: destination,
        tags: vec![Tag::parse("1.0").unwrap()],
        primary: true,
        known_absent: false,
    };
    let promotion = Promotion {
        source: source.repository(repo),
        digest,
        source_tag: None,
        source_trusted: false,
        destinations: vec![destination.clone()],
        origin: None,
    };
    let envelope =
        Envelope::new(CopyMessage { promotion, destination, verification: vec![] }, "lambda-event", None);
    String::from_utf8(envelope.encode().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_under_the_lambda_runtime_emulator_reports_partial_batch_failures() {
    crate::support::bounded(partial_batch_failures()).await;
}

async fn partial_batch_failures() {
    let endpoint = tokio::task::spawn_blocking(ferry_testkit::localstack::endpoint).await.unwrap();
    let (staging, prod) = (RegistryServer::start().await, RegistryServer::start().await);
    let proxy = FaultProxy::start(&prod).await;
    proxy.add(Rule::new(
        Some("POST"),
        "^/v2/lambda/throttled/blobs/uploads/",
        Hits::Every,
        Fault::TooManyRequests { retry_after: Some("30".into()) },
    ));
    let seeder = Seeder::new(&staging);
    let ok = seeder.image("lambda/app", Some("1.0"), &ImageSpec::small("amd64", 700, 1)).await;
    let throttled = seeder.image("lambda/throttled", Some("1.0"), &ImageSpec::small("amd64", 701, 1)).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.yaml");
    std::fs::write(
        &config,
        format!(
            "registries:\n  insecure: [\"{}\", \"{}\", \"{}\"]\n  retry-budget-seconds: 1\n",
            staging.host(),
            prod.host(),
            proxy.host()
        ),
    )
    .unwrap();
    let prefix = format!("ferry-lambda-{}", free_port());
    let topology = Topology { prefix: prefix.clone(), ..Topology::default() };
    let transport = format!("sqs://{}?region=us-east-1", endpoint.trim_start_matches("http://"));
    let broker = AnyBroker::connect(&transport, topology.clone()).await.unwrap();
    broker.init().await.unwrap();

    // The emulator, then the function binary pointed at it.
    let port = free_port();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let _emulator = tokio::process::Command::new(ferry_testkit::cargo_lambda())
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .current_dir(&workspace)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::pipeline::wait_for("the Runtime API emulator", Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    let function = crate::support::ferry_bin().with_file_name("ferry-copier");
    let _function = tokio::process::Command::new(&function)
        .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_REGION", "us-east-1")
        .env("FERRY_TRANSPORT", &transport)
        .env("FERRY_QUEUE_PREFIX", &prefix)
        .env("FERRY_CONFIG", &config)
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --workspace --bins builds it)", function.display()));

    let arn = format!("arn:aws:sqs:us-east-1:000000000000:{}", topology.queue_name(Queue::Copy));
    let event = serde_json::json!({"Records": [
        record("m-ok", copy_message(&staging, proxy.repository("lambda/app"), "lambda/app", ok.digest), &arn),
        record("m-malformed", "{\"version\": 1, \"body\": ".into(), &arn),
        record("m-throttled", copy_message(&staging, proxy.repository("lambda/throttled"), "lambda/throttled", throttled.digest), &arn),
    ]});
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/2015-03-31/functions/_/invocations"))
        .json(&event)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Only the throttled record is reported failed: SQS keeps it and delivers it again. The
    // malformed one was dead-lettered, so it succeeded as far as Lambda is concerned.
    assert_eq!(response, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "m-throttled"}]}));
    assert_eq!(Seeder::new(&prod).tag_digest("lambda/app", "1.0").await, Some(ok.digest));
    assert_eq!(Seeder::new(&prod).tag_digest("lambda/throttled", "1.0").await, None);
    let sign = broker.receive(Address::Stage(Queue::Sign), 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(sign.len(), 1, "one sign message, for the copied image");
    assert_eq!(Envelope::<SignMessage>::decode(&sign[0].body).unwrap().body.promotion.digest, ok.digest);
    let poison = broker
        .receive(Address::DeadLetter(DeadLetterQueue::Poison), 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(poison.len(), 1);
    let record = DeadLetter::decode(&poison[0].body).unwrap();
    assert_eq!((record.class.as_str(), record.stage.as_str()), ("malformed", "copier"));
    assert!(record.error.contains("malformed message"), "{}", record.error);
}
