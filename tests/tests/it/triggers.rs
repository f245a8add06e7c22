//! Pushes announced the way Artifact Registry (Pub/Sub), GHCR, Docker Hub, ACR and Quay announce
//! them, against a real distribution registry: each ends promoted, signed, attested and
//! replicated, once, however often the sender repeats itself.

use std::time::Duration;

use ferry_messages::DeadLetterQueue;
use ferry_model::Digest;
use ferry_testkit::clouds::{PushSigner, pubsub_push};
use ferry_testkit::seed::{ImageSpec, Seeder};

use crate::pipeline::{Harness, Options, Transport, wait_for};

const AUDIENCE: &str = "https://ferry.example/v1/events/gcr";
const PUSHER: &str = "gcr-push@acme-staging.iam.gserviceaccount.com";
const GHCR_SECRET: &str = "ghcr-webhook-secret";
const DOCKERHUB: &str = "dockerhub-path-secret";
const QUAY: &str = "quay-path-secret";
const ACR: &str = "acr-token";

fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One announcement: where it goes and what it carries.
struct Announcement {
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Announcement {
    async fn send(&self, ingest: std::net::SocketAddr) -> (u16, String) {
        let mut request =
            reqwest::Client::new().post(format!("http://{ingest}{}", self.path)).body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

fn data(name: &str) -> serde_json::Value {
    let path = format!("{}/data/push-webhooks/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub(crate) async fn every_route(transport: Transport) {
    let signer = PushSigner::new("push-key-1");
    let extra = format!(
        "  pubsub-push:\n    audience: {AUDIENCE}\n    service-account: {PUSHER}\n    jwks: certs.json\n  \
         ghcr: {{owners: [acme], registry: \"{{staging}}\"}}\n  \
         dockerhub: {{registry: \"{{staging}}\"}}\n  \
         quay: {{registry: \"{{staging}}\"}}\n  \
         acr: {{header: X-Ferry-Token}}\n"
    );
    let h = Harness::start(
        transport,
        Options {
            notifications: false,
            extra_config: extra,
            files: vec![("certs.json", signer.jwks().to_string())],
            env: Some(Box::new(|env: &mut ferry_config::Env| {
                env.ghcr_webhook_secret = Some(ferry_registry::Secret::new(GHCR_SECRET));
                env.dockerhub_secret = Some(ferry_registry::Secret::new(DOCKERHUB));
                env.quay_token = Some(ferry_registry::Secret::new(QUAY));
                env.acr_token = Some(ferry_registry::Secret::new(ACR));
            })),
            ..Options::default()
        },
    )
    .await;
    let staging = h.staging.host();
    let stage = Seeder::new(&h.staging);
    let mut pushed: Vec<(&str, Digest)> = Vec::new();
    for (n, repo) in ["demo/gcr", "demo/ghcr", "demo/hub", "demo/acr", "demo/quay"].into_iter().enumerate() {
        let image = stage
            .image(repo, Some("1.0"), &ImageSpec::small("amd64", transport.seed(400 + n as u64), 1))
            .await;
        pushed.push((repo, image.digest));
    }
    let digest_of = |repo: &str| pushed.iter().find(|(r, _)| *r == repo).unwrap().1;

    // Artifact Registry: a Pub/Sub push with a Google-signed token.
    let gcr = Announcement {
        path: "/v1/events/gcr".into(),
        headers: vec![(
            "authorization",
            format!("Bearer {}", signer.token(&PushSigner::claims(AUDIENCE, PUSHER))),
        )],
        body: serde_json::to_vec(&pubsub_push(
            "1234567890",
            &serde_json::json!({
                "action": "INSERT",
                "digest": format!("{staging}/demo/gcr@{}", digest_of("demo/gcr")),
                "tag": format!("{staging}/demo/gcr:1.0"),
            }),
        ))
        .unwrap(),
    };
    // GHCR: GitHub's registry_package example, for this image.
    let mut ghcr_event = data("ghcr-registry-package-published.json");
    ghcr_event["registry_package"]["owner"]["login"] = "acme".into();
    let version = &mut ghcr_event["registry_package"]["package_version"];
    version["version"] = digest_of("demo/ghcr").to_string().into();
    version["name"] = digest_of("demo/ghcr").to_string().into();
    version["container_metadata"]["tag"] =
        serde_json::json!({"name": "1.0", "digest": digest_of("demo/ghcr").to_string()});
    version["package_url"] = "ghcr.io/demo/ghcr:1.0".into();
    let ghcr_body = serde_json::to_vec(&ghcr_event).unwrap();
    let ghcr = Announcement {
        path: "/v1/events/github".into(),
        headers: vec![
            ("x-github-event", "registry_package".into()),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
            ("x-hub-signature-256", signature(GHCR_SECRET, &ghcr_body)),
        ],
        body: ghcr_body,
    };
    // Docker Hub: the documented payload, for this repository and tag; no digest.
    let mut hub_event = data("dockerhub-push.json");
    hub_event["repository"]["repo_name"] = "demo/hub".into();
    hub_event["push_data"]["tag"] = "1.0".into();
    let hub = Announcement {
        path: format!("/v1/events/dockerhub/{DOCKERHUB}"),
        headers: vec![],
        body: serde_json::to_vec(&hub_event).unwrap(),
    };
    // ACR: the documented payload, for this registry and image.
    let mut acr_event = data("acr-push.json");
    acr_event["target"]["digest"] = digest_of("demo/acr").to_string().into();
    acr_event["target"]["repository"] = "demo/acr".into();
    acr_event["target"]["tag"] = "1.0".into();
    acr_event["request"]["host"] = staging.to_string().into();
    let acr = Announcement {
        path: "/v1/events/acr".into(),
        headers: vec![("x-ferry-token", ACR.into())],
        body: serde_json::to_vec(&acr_event).unwrap(),
    };
    // Quay: the documented payload; tags, no digests.
    let mut quay_event = data("quay-repo-push.json");
    quay_event["docker_url"] = "quay.io/demo/quay".into();
    quay_event["updated_tags"] = serde_json::json!(["1.0"]);
    let quay = Announcement {
        path: format!("/v1/events/quay/{QUAY}"),
        headers: vec![],
        body: serde_json::to_vec(&quay_event).unwrap(),
    };

    let routes = [("gcr", &gcr), ("ghcr", &ghcr), ("dockerhub", &hub), ("acr", &acr), ("quay", &quay)];
    for (route, announcement) in routes {
        let (status, body) = announcement.send(h.ingest).await;
        assert_eq!(status, 202, "{route}: {body}");
    }
    for (repo, digest) in &pushed {
        wait_for(&format!("{repo}:1.0 promoted everywhere"), Duration::from_secs(90), || {
            h.fully_promoted(repo, "1.0", digest)
        })
        .await;
    }
    // The senders retry (Pub/Sub until acknowledged, GitHub on redelivery, the others by
    // hand): each repeat is recognised, nothing more is written.
    let writes = || {
        [&h.prod, &h.mirrors[0], &h.mirrors[1]]
            .iter()
            .map(|s| s.access_log().iter().filter(|l| l.method == "PUT" || l.method == "POST").count())
            .sum::<usize>()
    };
    let before = writes();
    for (route, announcement) in routes {
        let (status, body) = announcement.send(h.ingest).await;
        assert_eq!((status, body.contains("duplicate")), (200, true), "{route}: {body}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(writes(), before, "a repeated announcement writes nothing");
    // One signature and one attestation (promotion + summary) per image: promoted once.
    let prod = Seeder::new(&h.prod);
    for (repo, digest) in &pushed {
        let att: serde_json::Value = serde_json::from_slice(
            &prod.get_manifest(repo, &format!("{}.att", digest.tag_form())).await.unwrap(),
        )
        .unwrap();
        assert_eq!(att["layers"].as_array().unwrap().len(), 2, "{repo}: {att}");
    }

    // A Docker Hub announcement of a tag that does not exist: dead-lettered with the reason,
    // nothing written.
    let mut ghost = data("dockerhub-push.json");
    ghost["repository"]["repo_name"] = "demo/ghost".into();
    ghost["push_data"]["tag"] = "9.9".into();
    let (status, _) = Announcement {
        path: format!("/v1/events/dockerhub/{DOCKERHUB}"),
        headers: vec![],
        body: serde_json::to_vec(&ghost).unwrap(),
    }
    .send(h.ingest)
    .await;
    assert_eq!(status, 202);
    wait_for("the ghost tag to be dead-lettered", Duration::from_secs(30), || async {
        !h.dead_letters(DeadLetterQueue::Poison).await.is_empty()
    })
    .await;
    let poison = h.dead_letters(DeadLetterQueue::Poison).await;
    assert_eq!(poison.len(), 1, "{poison:#?}");
    assert!(
        poison[0].error.contains("demo/ghost:9.9 was announced as pushed, but the registry has no such tag"),
        "{poison:#?}"
    );
    for queue in [DeadLetterQueue::Throttled, DeadLetterQueue::VerificationFailed] {
        assert!(h.dead_letters(queue).await.is_empty(), "{queue}");
    }

    // The runbook's poison path, as written: show the record by the start of its id, fix the
    // cause (here, the tag is pushed after all), replay that one record: the promotion
    // completes at prod and every mirror, and nothing is left in poison.
    let id = poison[0].message_id.clone().expect("a message id");
    let short: String = id.chars().take(8).collect();
    let dlq = |verb: &str| {
        let mut args: Vec<String> = ["dlq", verb, "--queue", "poison", "--id", short.as_str()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(h.transport_args());
        args
    };
    let (code, stdout, stderr) = crate::pipeline::ferry(&dlq("show")).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("no such tag"), "{stdout}");
    let ghost =
        Seeder::new(&h.staging).image("demo/ghost", Some("9.9"), &ImageSpec::small("amd64", 990, 1)).await;
    let (code, stdout, stderr) = crate::pipeline::ferry(&dlq("replay")).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1 replayed"), "{stdout}");
    wait_for("the replayed announcement promoted everywhere", Duration::from_secs(90), || {
        h.fully_promoted("demo/ghost", "9.9", &ghost.digest)
    })
    .await;
    assert!(h.dead_letters(DeadLetterQueue::Poison).await.is_empty(), "nothing left in poison");
    h.stop().await;
}

mod rabbit {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn pushes_announced_by_every_route_are_promoted_once() {
        crate::support::bounded(every_route(Transport::Rabbit)).await;
    }
}
