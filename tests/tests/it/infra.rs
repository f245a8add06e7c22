//! One definition of the queue topology: the queues `infra/template.yaml` deploys (through
//! CloudFormation, on LocalStack) are the queues `ferry queues init` creates.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_messages::Topology;
use ferry_model::Digest;
use ferry_queue::Broker as _;
use ferry_queue::sqs::SqsBroker;

/// The attributes that make up the topology, with the prefix taken out of queue names and ARNs.
const COMPARED: [&str; 5] = [
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
];

async fn topology_of(broker: &SqsBroker, prefix: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    broker
        .describe()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, attributes)| {
            let kept = COMPARED
                .iter()
                .map(|key| {
                    let value = attributes.get(*key).cloned().unwrap_or_default();
                    let value = match *key {
                        // {"deadLetterTargetArn": "...:<prefix>-dlq-poison", "maxReceiveCount": 8}
                        "RedrivePolicy" if !value.is_empty() => {
                            let v: serde_json::Value = serde_json::from_str(&value).unwrap();
                            let target = v["deadLetterTargetArn"].as_str().unwrap_or_default();
                            let target =
                                target.rsplit(':').next().unwrap_or_default().replacen(prefix, "PREFIX", 1);
                            let count = v["maxReceiveCount"].to_string().trim_matches('"').to_owned();
                            format!("{target} after {count}")
                        }
                        _ => value,
                    };
                    ((*key).to_owned(), value)
                })
                .collect();
            (name.replacen(prefix, "PREFIX", 1), kept)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_and_queues_init_create_the_same_topology() {
    crate::support::bounded(async {
        let endpoint = tokio::task::spawn_blocking(ferry_testkit::localstack::endpoint).await.unwrap();
        let id = &Digest::of(format!("{:?}", Instant::now()).as_bytes()).hex()[..8];
        let (from_template, from_init) = (format!("ferry-cfn-{id}"), format!("ferry-init-{id}"));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../localstack/create-topology");
        let out = tokio::process::Command::new(&script).arg(&from_template).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let connect = |prefix: &str| {
            SqsBroker::connect(
                Some(endpoint.as_str()),
                Some("us-east-1"),
                Topology { prefix: prefix.to_owned(), ..Topology::default() },
            )
        };
        let (template, init) = (connect(&from_template).await, connect(&from_init).await);
        init.init().await.unwrap();
        let (a, b) = (topology_of(&template, &from_template).await, topology_of(&init, &from_init).await);
        assert_eq!(a.len(), Topology::default().all_names().len(), "every queue is in the template: {a:?}");
        for (queue, attributes) in &b {
            assert_eq!(a.get(queue), Some(attributes), "{queue}: template (left) and queues init (right)");
        }
        assert_eq!(a, b);
        // `queues init` over the template's queues agrees with them (nothing to change).
        template.init().await.unwrap();
        assert!(a["PREFIX-copy"]["RedrivePolicy"].starts_with("PREFIX-dlq-poison after 8"), "{a:?}");
        template.remove().await.unwrap();
        init.remove().await.unwrap();
    })
    .await;
}
