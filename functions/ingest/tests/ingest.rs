//! The ingest HTTP API against every class of input, in order, on one server backed by the
//! in-memory broker: what it answers and what it enqueues.
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::sync::Arc;
use std::time::Duration;

use ferry_ingest::{Ingest, IngestConfig, router};
use ferry_messages::{Envelope, PlanMessage, Queue};
use ferry_model::Host;
use ferry_queue::memory::MemoryBroker;
use ferry_queue::{Address, Broker as _};
use ferry_registry::Secret;

const TOKEN: &str = "s3cret-distribution-token";
const HARBOR: &str = "Basic aGFyYm9yOnNlY3JldA==";
const GITHUB_SECRET: &str = "github-webhook-secret";
const DIGEST: &str = "sha256:9466ea46ccf2f7f96b9b966126194f830f1fcfd312b785bf5055a19ba5d1cee4";

/// The real notification a `docker-registry` sent when skopeo pushed `demo/app:1.0`.
fn distribution_sample() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/distribution-webhooks/registry-push-event.json"
    ))
    .unwrap()
}

fn with_event(id: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_str(&distribution_sample()).unwrap();
    v["events"][0]["id"] = id.into();
    edit(&mut v["events"][0]);
    serde_json::to_vec(&v).unwrap()
}

fn harbor(kind: &str, occur_at: i64, resource_url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": kind,
        "occur_at": occur_at,
        "operator": "robot$ci",
        "event_data": {
            "resources": [{"digest": DIGEST, "tag": "v1", "resource_url": resource_url}],
            "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app", "repo_type": "private"}
        }
    }))
    .unwrap()
}

fn ecr(id: &str, source: &str, action: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": "0", "id": id, "detail-type": "ECR Image Action", "source": source,
        "account": "123456789012", "time": "2026-11-24T04:40:53Z", "region": "us-east-1", "resources": [],
        "detail": {"result": "SUCCESS", "repository-name": "team/app", "image-digest": DIGEST, "action-type": action, "image-tag": "v1"}
    }))
    .unwrap()
}

fn pull_request(merged: bool, repository: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": "closed", "number": 12,
        "pull_request": {"merged": merged, "merge_commit_sha": "a".repeat(40), "base": {"sha": "b".repeat(40)}},
        "repository": {"full_name": repository, "default_branch": "main"}
    }))
    .unwrap()
}

/// A pull request event with `action` (opened, synchronize, ...), not merged.
fn pull_request_action(action: &str, head: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action, "number": 12,
        "pull_request": {"merged": false, "merge_commit_sha": null, "base": {"sha": "b".repeat(40)}, "head": {"sha": head}},
        "repository": {"full_name": "acme/manifests", "default_branch": "main"}
    }))
    .unwrap()
}

fn push(file: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main", "before": "c".repeat(40), "after": "d".repeat(40),
        "commits": [{"id": "d".repeat(40), "added": [], "modified": [file], "removed": []}],
        "repository": {"full_name": "acme/manifests", "default_branch": "main"}
    }))
    .unwrap()
}

fn sign(body: &[u8], secret: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn github(event: &str, delivery: &str, body: Vec<u8>, secret: Option<&str>) -> Request {
    let mut headers = vec![("x-github-event", event.to_owned()), ("x-github-delivery", delivery.to_owned())];
    if let Some(secret) = secret {
        headers.push(("x-hub-signature-256", sign(&body, secret)));
    }
    Request { path: "/v1/events/github", headers, body }
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

struct Request {
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn distribution(headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Request {
    Request { path: "/v1/events/distribution", headers, body }
}

/// One row: a request, the status it must get, how many plan messages it must add, and a
/// fragment the response body must contain.
struct Case {
    name: &'static str,
    request: Request,
    status: u16,
    enqueued: usize,
    says: &'static str,
}

fn cases() -> Vec<Case> {
    let ok = with_event("event-1", |_| {});
    vec![
        Case {
            name: "distribution push",
            request: distribution(bearer(TOKEN), ok.clone()),
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "the same event id again (a retry)",
            request: distribution(bearer(TOKEN), ok.clone()),
            status: 200,
            enqueued: 0,
            says: "duplicate",
        },
        Case {
            name: "the right token without the Bearer scheme",
            request: distribution(vec![("authorization", TOKEN.to_owned())], with_event("event-raw", |_| {})),
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "no Authorization header",
            request: distribution(vec![], with_event("event-2", |_| {})),
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "a wrong token",
            request: distribution(bearer("guess"), with_event("event-3", |_| {})),
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "a token one byte short",
            request: distribution(bearer(&TOKEN[1..]), with_event("event-4", |_| {})),
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "not JSON",
            request: distribution(bearer(TOKEN), b"{\"events\": [".to_vec()),
            status: 400,
            enqueued: 0,
            says: "not a distribution notification",
        },
        Case {
            name: "no events array",
            request: distribution(bearer(TOKEN), b"{\"event\": []}".to_vec()),
            status: 400,
            enqueued: 0,
            says: "missing field `events`",
        },
        Case {
            name: "a bad digest names the event and field",
            request: distribution(
                bearer(TOKEN),
                with_event("event-5", |e| e["target"]["digest"] = "sha256:beef".into()),
            ),
            status: 400,
            enqueued: 0,
            says: "event event-5: target.digest",
        },
        Case {
            name: "a bad repository",
            request: distribution(
                bearer(TOKEN),
                with_event("event-6", |e| e["target"]["repository"] = "Demo/../app".into()),
            ),
            status: 400,
            enqueued: 0,
            says: "target.repository",
        },
        Case {
            name: "a bad tag",
            request: distribution(bearer(TOKEN), with_event("event-7", |e| e["target"]["tag"] = "-x".into())),
            status: 400,
            enqueued: 0,
            says: "target.tag",
        },
        Case {
            name: "SSRF guard: a URL naming an unconfigured host is ignored, never fetched",
            request: distribution(
                bearer(TOKEN),
                with_event("event-8", |e| {
                    e["target"]["url"] =
                        format!("http://169.254.169.254/v2/demo/app/manifests/{DIGEST}").into()
                }),
            ),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "a pull is ignored",
            request: distribution(bearer(TOKEN), with_event("event-9", |e| e["action"] = "pull".into())),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "a blob push is ignored",
            request: distribution(
                bearer(TOKEN),
                with_event("event-10", |e| e["target"]["mediaType"] = "application/octet-stream".into()),
            ),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "a body over the limit",
            request: distribution(bearer(TOKEN), vec![b' '; 2 * 1024 * 1024]),
            status: 413,
            enqueued: 0,
            says: "",
        },
        Case {
            name: "harbor push",
            request: Request {
                path: "/v1/events/harbor",
                headers: vec![("authorization", HARBOR.into())],
                body: harbor("PUSH_ARTIFACT", 1, "harbor.example.com/library/app:v1"),
            },
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "harbor: another event type",
            request: Request {
                path: "/v1/events/harbor",
                headers: vec![("authorization", HARBOR.into())],
                body: harbor("DELETE_ARTIFACT", 2, "harbor.example.com/library/app:v1"),
            },
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "harbor: bad auth",
            request: Request {
                path: "/v1/events/harbor",
                headers: vec![("authorization", "Basic eDp5".into())],
                body: harbor("PUSH_ARTIFACT", 3, "harbor.example.com/library/app:v1"),
            },
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "harbor: a resource_url without a repository",
            request: Request {
                path: "/v1/events/harbor",
                headers: vec![("authorization", HARBOR.into())],
                body: harbor("PUSH_ARTIFACT", 4, "harbor.example.com"),
            },
            status: 400,
            enqueued: 0,
            says: "resource_url",
        },
        Case {
            name: "ecr push",
            request: Request {
                path: "/v1/events/ecr",
                headers: bearer(TOKEN),
                body: ecr("ecr-1", "aws.ecr", "PUSH"),
            },
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "ecr delete",
            request: Request {
                path: "/v1/events/ecr",
                headers: bearer(TOKEN),
                body: ecr("ecr-2", "aws.ecr", "DELETE"),
            },
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "not an ecr event",
            request: Request {
                path: "/v1/events/ecr",
                headers: bearer(TOKEN),
                body: ecr("ecr-3", "aws.s3", "PUSH"),
            },
            status: 400,
            enqueued: 0,
            says: "not an ECR image action",
        },
        Case {
            name: "ecr: bad auth",
            request: Request {
                path: "/v1/events/ecr",
                headers: vec![],
                body: ecr("ecr-4", "aws.ecr", "PUSH"),
            },
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "github merged pull request",
            request: github(
                "pull_request",
                "gh-1",
                pull_request(true, "acme/manifests"),
                Some(GITHUB_SECRET),
            ),
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "github: the same delivery again",
            request: github(
                "pull_request",
                "gh-1",
                pull_request(true, "acme/manifests"),
                Some(GITHUB_SECRET),
            ),
            status: 200,
            enqueued: 0,
            says: "duplicate",
        },
        Case {
            name: "github: closed, not merged",
            request: github(
                "pull_request",
                "gh-2",
                pull_request(false, "acme/manifests"),
                Some(GITHUB_SECRET),
            ),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "github: another repository",
            request: github(
                "pull_request",
                "gh-3",
                pull_request(true, "evil/manifests"),
                Some(GITHUB_SECRET),
            ),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "github: signed with another secret",
            request: github("pull_request", "gh-4", pull_request(true, "acme/manifests"), Some("wrong")),
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "github: unsigned",
            request: github("pull_request", "gh-5", pull_request(true, "acme/manifests"), None),
            status: 401,
            enqueued: 0,
            says: "unauthorized",
        },
        Case {
            name: "github: signed but not JSON",
            request: github("pull_request", "gh-6", b"{\"action\":".to_vec(), Some(GITHUB_SECRET)),
            status: 400,
            enqueued: 0,
            says: "not a pull_request event",
        },
        Case {
            name: "github: no delivery id",
            request: {
                let body = pull_request(true, "acme/manifests");
                let signature = sign(&body, GITHUB_SECRET);
                Request {
                    path: "/v1/events/github",
                    headers: vec![
                        ("x-github-event", "pull_request".into()),
                        ("x-hub-signature-256", signature),
                    ],
                    body,
                }
            },
            status: 400,
            enqueued: 0,
            says: "X-GitHub-Delivery",
        },
        Case {
            name: "github push touching the manifests",
            request: github("push", "gh-7", push("promotion/images/team/images.yaml"), Some(GITHUB_SECRET)),
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "github push elsewhere",
            request: github("push", "gh-8", push("docs/README.md"), Some(GITHUB_SECRET)),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "github: a pull request opened (checked)",
            request: github(
                "pull_request",
                "gh-10",
                pull_request_action("opened", &"e".repeat(40)),
                Some(GITHUB_SECRET),
            ),
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "github: a pull request updated (checked again)",
            request: github(
                "pull_request",
                "gh-11",
                pull_request_action("synchronize", &"f".repeat(40)),
                Some(GITHUB_SECRET),
            ),
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "github: a pull request reopened",
            request: github(
                "pull_request",
                "gh-12",
                pull_request_action("reopened", &"f".repeat(40)),
                Some(GITHUB_SECRET),
            ),
            status: 202,
            enqueued: 1,
            says: "accepted",
        },
        Case {
            name: "github: a pull request's title edited",
            request: github(
                "pull_request",
                "gh-13",
                pull_request_action("edited", &"f".repeat(40)),
                Some(GITHUB_SECRET),
            ),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
        Case {
            name: "github: an opened pull request whose head is not a commit id",
            request: github(
                "pull_request",
                "gh-14",
                pull_request_action("opened", "main; rm -rf"),
                Some(GITHUB_SECRET),
            ),
            status: 400,
            enqueued: 0,
            says: "commit ids must be hexadecimal",
        },
        Case {
            name: "github: a ping",
            request: github("ping", "gh-9", b"{\"zen\":\"hi\"}".to_vec(), Some(GITHUB_SECRET)),
            status: 200,
            enqueued: 0,
            says: "ignored",
        },
    ]
}

async fn serve(broker: Arc<MemoryBroker>) -> String {
    let config = IngestConfig {
        registries: ["127.0.0.1:5001", "harbor.example.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com"]
            .iter()
            .map(|h| Host::parse(h).unwrap())
            .collect(),
        github_repository: Some("acme/manifests".into()),
        manifest_paths: vec!["promotion".into()],
        distribution_token: Some(Secret::new(TOKEN)),
        harbor_token: Some(Secret::new(HARBOR)),
        github_secret: Some(Secret::new(GITHUB_SECRET)),
        ..IngestConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(Ingest::new(broker, config));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test]
async fn every_class_of_input_gets_its_answer_and_only_valid_events_are_enqueued() {
    let broker = Arc::new(MemoryBroker::default());
    let base = serve(broker.clone()).await;
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for case in cases() {
        let depth = || broker.depth(Address::Stage(Queue::Plan)) + broker.depth(Address::Stage(Queue::Check));
        let before = depth();
        let mut request = client.post(format!("{base}{}", case.request.path)).body(case.request.body);
        for (name, value) in case.request.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let enqueued = depth() - before;
        if status != case.status || enqueued != case.enqueued || !text.contains(case.says) {
            failures.push(format!(
                "{}: got {status} {text:?}, {enqueued} enqueued; want {} {:?}, {}",
                case.name, case.status, case.says, case.enqueued
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn accepted_events_become_plan_messages_with_the_event_id() {
    let broker = Arc::new(MemoryBroker::default());
    let base = serve(broker.clone()).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/events/distribution"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(distribution_sample())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let deliveries = broker.receive(Address::Stage(Queue::Plan), 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let envelope = Envelope::<PlanMessage>::decode(&deliveries[0].body).unwrap();
    assert_eq!(envelope.event_id, "839b9f93-2bca-464c-b678-db5ccda898d9");
    assert_eq!(envelope.attempt, 0);
    match envelope.body {
        PlanMessage::RegistryPush { registry, repository, digest, tag } => {
            assert_eq!(registry.to_string(), "127.0.0.1:5001");
            assert_eq!(repository.to_string(), "127.0.0.1:5001/demo/app");
            assert_eq!(digest.to_string(), DIGEST);
            assert_eq!(tag.unwrap().as_str(), "1.0");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_opened_pull_request_becomes_a_check_message_for_its_head() {
    let broker = Arc::new(MemoryBroker::default());
    let base = serve(broker.clone()).await;
    let head = "e".repeat(40);
    let request = github("pull_request", "gh-pr", pull_request_action("opened", &head), Some(GITHUB_SECRET));
    let mut call = reqwest::Client::new().post(format!("{base}{}", request.path)).body(request.body);
    for (name, value) in request.headers {
        call = call.header(name, value);
    }
    assert_eq!(call.send().await.unwrap().status(), 202);
    assert_eq!(broker.depth(Address::Stage(Queue::Plan)), 0, "nothing to promote yet");
    let deliveries = broker.receive(Address::Stage(Queue::Check), 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let envelope = Envelope::<ferry_messages::CheckMessage>::decode(&deliveries[0].body).unwrap();
    assert_eq!(envelope.event_id, "gh-pr");
    assert_eq!(
        envelope.body,
        ferry_messages::CheckMessage {
            repository: "acme/manifests".into(),
            pull_request: 12,
            base: "b".repeat(40),
            head,
        }
    );
}
