//! The push routes beyond distribution, Harbor and ECR, each with the vendor's documented
//! payload and every bad variant: what ingest answers and what it enqueues, and the messages
//! the good ones become.
#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::sync::Arc;
use std::time::Duration;

use ferry_config::{JwksSource, PubSubPush, Triggers};
use ferry_ingest::{Ingest, IngestConfig, router};
use ferry_messages::{Envelope, PlanMessage, Queue};
use ferry_model::Host;
use ferry_queue::memory::MemoryBroker;
use ferry_queue::{Address, Broker as _};
use ferry_registry::Secret;
use ferry_testkit::clouds::{PushSigner, pubsub_push};

const GITHUB_SECRET: &str = "manifest-repository-secret";
const GHCR_SECRET: &str = "package-webhook-secret";
const DOCKERHUB: &str = "dockerhub-path-secret-0123456789";
const QUAY: &str = "quay-path-secret-0123456789";
const ACR: &str = "acr-token-0123456789";
const AUDIENCE: &str = "https://ferry.example/v1/events/gcr";
const PUSHER: &str = "gcr-push@acme-staging.iam.gserviceaccount.com";
const DIGEST: &str = "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../tests/data/push-webhooks/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&data(name)).unwrap()
}

fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value = json(name);
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

struct Request {
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn post(path: &str, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Request {
    Request { path: path.to_owned(), headers, body }
}

fn signed(event: &str, delivery: &str, body: Vec<u8>, secret: &str) -> Request {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    post(
        "/v1/events/github",
        vec![
            ("x-github-event", event.into()),
            ("x-github-delivery", delivery.into()),
            ("x-hub-signature-256", signature),
        ],
        body,
    )
}

struct Case {
    name: &'static str,
    request: Request,
    status: u16,
    enqueued: usize,
    says: &'static str,
}

fn case(name: &'static str, request: Request, status: u16, enqueued: usize, says: &'static str) -> Case {
    Case { name, request, status, enqueued, says }
}

fn gcr(token: Option<String>, message_id: &str, data: &serde_json::Value) -> Request {
    let headers = token.map(|t| vec![("authorization", format!("Bearer {t}"))]).unwrap_or_default();
    post("/v1/events/gcr", headers, serde_json::to_vec(&pubsub_push(message_id, data)).unwrap())
}

fn cases(signer: &PushSigner, other: &PushSigner) -> Vec<Case> {
    let claims = || PushSigner::claims(AUDIENCE, PUSHER);
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        edit(&mut c);
        signer.token(&c)
    };
    let insert = json("gcr-insert.json");
    let header = |alg: &str, kid: &str| serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!("{}.{}.", b64(&header("none", &signer.kid)), b64(&claims()));
    let ghcr_body = data("ghcr-registry-package-published.json");
    let real_acr = edited("acr-push.json", |v| v["target"]["digest"] = DIGEST.into());
    vec![
        // Artifact Registry through Pub/Sub.
        case("gcr: a push", gcr(Some(signer.token(&claims())), "m-1", &insert), 202, 1, "accepted"),
        case(
            "gcr: the same message again",
            gcr(Some(signer.token(&claims())), "m-1", &insert),
            200,
            0,
            "duplicate",
        ),
        case("gcr: no token", gcr(None, "m-2", &insert), 401, 0, "unauthorized"),
        case(
            "gcr: another audience",
            gcr(Some(with(&|c| c["aud"] = "https://other.example/".into())), "m-3", &insert),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: another issuer",
            gcr(Some(with(&|c| c["iss"] = "https://evil.example".into())), "m-4", &insert),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: expired",
            gcr(
                Some(with(&|c| {
                    c["exp"] = (c["iat"].as_i64().unwrap() - 600).into();
                    c["iat"] = (c["iat"].as_i64().unwrap() - 4200).into();
                })),
                "m-5",
                &insert,
            ),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: issued in the future",
            gcr(Some(with(&|c| c["iat"] = (c["iat"].as_i64().unwrap() + 600).into())), "m-6", &insert),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: another service account",
            gcr(Some(with(&|c| c["email"] = "someone@evil.iam.gserviceaccount.com".into())), "m-7", &insert),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: email not verified",
            gcr(Some(with(&|c| c["email_verified"] = false.into())), "m-8", &insert),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: signed by another key under the same kid",
            gcr(Some(other.sign(&header("RS256", &signer.kid), &claims())), "m-9", &insert),
            401,
            0,
            "unauthorized",
        ),
        case("gcr: alg none", gcr(Some(alg_none), "m-10", &insert), 401, 0, "unauthorized"),
        case(
            "gcr: HS256 with the public key as secret",
            gcr(
                Some(format!("{}.{}.AAAA", b64(&header("HS256", &signer.kid)), b64(&claims()))),
                "m-11",
                &insert,
            ),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: a kid the JWKS does not hold",
            gcr(Some(other.token(&claims())), "m-12", &insert),
            401,
            0,
            "unauthorized",
        ),
        case(
            "gcr: a delete",
            gcr(
                Some(signer.token(&claims())),
                "m-13",
                &serde_json::json!({"action": "DELETE", "digest": insert["digest"]}),
            ),
            200,
            0,
            "ignored",
        ),
        case(
            "gcr: a host outside pipeline.registries",
            gcr(
                Some(signer.token(&claims())),
                "m-14",
                &serde_json::json!({"action": "INSERT", "digest": format!("evil.example/x@{DIGEST}")}),
            ),
            200,
            0,
            "ignored",
        ),
        case(
            "gcr: tag and digest of different images",
            gcr(
                Some(signer.token(&claims())),
                "m-15",
                &serde_json::json!({"action": "INSERT", "digest": insert["digest"], "tag": "us-east1-docker.pkg.dev/my-project/my-repo/other:1.1"}),
            ),
            400,
            0,
            "different images",
        ),
        case(
            "gcr: data not base64",
            post(
                "/v1/events/gcr",
                vec![("authorization", format!("Bearer {}", signer.token(&claims())))],
                br#"{"message":{"data":"%%%","messageId":"m-16"}}"#.to_vec(),
            ),
            400,
            0,
            "not base64",
        ),
        case(
            "gcr: not JSON",
            post(
                "/v1/events/gcr",
                vec![("authorization", format!("Bearer {}", signer.token(&claims())))],
                b"<xml/>".to_vec(),
            ),
            400,
            0,
            "not a Pub/Sub push",
        ),
        // GHCR through GitHub package webhooks.
        case(
            "ghcr: registry_package published",
            signed("registry_package", "gh-1", ghcr_body.clone(), GHCR_SECRET),
            202,
            1,
            "accepted",
        ),
        case(
            "ghcr: package published",
            signed("package", "gh-2", data("ghcr-package-published.json"), GHCR_SECRET),
            202,
            1,
            "accepted",
        ),
        case(
            "ghcr: the same delivery again",
            signed("registry_package", "gh-1", ghcr_body.clone(), GHCR_SECRET),
            200,
            0,
            "duplicate",
        ),
        case(
            "ghcr: signed with the manifest repository's secret",
            signed("registry_package", "gh-3", ghcr_body.clone(), GITHUB_SECRET),
            401,
            0,
            "unauthorized",
        ),
        case(
            "ghcr: a tampered body",
            {
                let mut request = signed("registry_package", "gh-4", ghcr_body.clone(), GHCR_SECRET);
                request.body = String::from_utf8(request.body)
                    .unwrap()
                    .replacen("hello-world", "hello-evil", 1)
                    .into_bytes();
                request
            },
            401,
            0,
            "unauthorized",
        ),
        case(
            "ghcr: an owner not listed",
            signed(
                "registry_package",
                "gh-5",
                edited("ghcr-registry-package-published.json", |v| {
                    v["registry_package"]["owner"]["login"] = "mallory".into();
                    v["repository"]["full_name"] = "mallory/app".into();
                }),
                GHCR_SECRET,
            ),
            200,
            0,
            "ignored",
        ),
        case(
            "ghcr: an npm package",
            signed(
                "registry_package",
                "gh-6",
                edited("ghcr-registry-package-published.json", |v| {
                    v["registry_package"]["package_type"] = "npm".into();
                    v["registry_package"]["ecosystem"] = "npm".into();
                }),
                GHCR_SECRET,
            ),
            200,
            0,
            "ignored",
        ),
        case(
            "ghcr: no digest",
            signed(
                "registry_package",
                "gh-7",
                edited("ghcr-registry-package-published.json", |v| {
                    let version = &mut v["registry_package"]["package_version"];
                    version["version"] = "1.0.0".into();
                    version["name"] = "1.0.0".into();
                    version["container_metadata"]["tag"]["digest"] = "".into();
                }),
                GHCR_SECRET,
            ),
            400,
            0,
            "names no sha256 digest",
        ),
        // Docker Hub: the secret in the path, a tag without a digest.
        case(
            "dockerhub: a push",
            post(&format!("/v1/events/dockerhub/{DOCKERHUB}"), vec![], data("dockerhub-push.json")),
            202,
            1,
            "accepted",
        ),
        case(
            "dockerhub: the same push again",
            post(&format!("/v1/events/dockerhub/{DOCKERHUB}"), vec![], data("dockerhub-push.json")),
            200,
            0,
            "duplicate",
        ),
        case(
            "dockerhub: a wrong secret",
            post("/v1/events/dockerhub/guess", vec![], data("dockerhub-push.json")),
            401,
            0,
            "unauthorized",
        ),
        case(
            "dockerhub: no secret",
            post("/v1/events/dockerhub/", vec![], data("dockerhub-push.json")),
            404,
            0,
            "",
        ),
        case(
            "dockerhub: no tag",
            post(
                &format!("/v1/events/dockerhub/{DOCKERHUB}"),
                vec![],
                edited("dockerhub-push.json", |v| v["push_data"]["tag"] = serde_json::Value::Null),
            ),
            400,
            0,
            "push_data.tag",
        ),
        case(
            "dockerhub: not JSON",
            post(&format!("/v1/events/dockerhub/{DOCKERHUB}"), vec![], b"push".to_vec()),
            400,
            0,
            "not a Docker Hub webhook",
        ),
        // ACR: a token in the configured header.
        case(
            "acr: the documented example (its digest is masked with x)",
            post("/v1/events/acr", vec![("x-ferry-token", ACR.into())], data("acr-push.json")),
            400,
            0,
            "target.digest",
        ),
        case(
            "acr: the same with a real digest",
            post("/v1/events/acr", vec![("x-ferry-token", ACR.into())], real_acr.clone()),
            202,
            1,
            "accepted",
        ),
        case(
            "acr: as Bearer",
            post(
                "/v1/events/acr",
                vec![("x-ferry-token", format!("Bearer {ACR}"))],
                edited("acr-push.json", |v| {
                    v["id"] = "acr-2".into();
                    v["target"]["digest"] = DIGEST.into();
                }),
            ),
            202,
            1,
            "accepted",
        ),
        case(
            "acr: a delete",
            post("/v1/events/acr", vec![("x-ferry-token", ACR.into())], data("acr-delete.json")),
            200,
            0,
            "ignored",
        ),
        case(
            "acr: a wrong token",
            post("/v1/events/acr", vec![("x-ferry-token", "guess".into())], real_acr.clone()),
            401,
            0,
            "unauthorized",
        ),
        case(
            "acr: the token in another header",
            post("/v1/events/acr", vec![("authorization", ACR.into())], real_acr.clone()),
            401,
            0,
            "unauthorized",
        ),
        case(
            "acr: a registry outside pipeline.registries",
            post(
                "/v1/events/acr",
                vec![("x-ferry-token", ACR.into())],
                edited("acr-push.json", |v| {
                    v["id"] = "acr-3".into();
                    v["target"]["digest"] = DIGEST.into();
                    v["request"]["host"] = "other.azurecr.io".into();
                }),
            ),
            200,
            0,
            "ignored",
        ),
        // Quay: the secret in the path, tags without digests.
        case(
            "quay: a push",
            post(&format!("/v1/events/quay/{QUAY}"), vec![], data("quay-repo-push.json")),
            202,
            1,
            "accepted",
        ),
        case(
            "quay: the 2013 payload",
            post(&format!("/v1/events/quay/{QUAY}"), vec![], data("quay-repo-push-2013.json")),
            202,
            1,
            "accepted",
        ),
        case(
            "quay: a wrong secret",
            post("/v1/events/quay/guess", vec![], data("quay-repo-push.json")),
            401,
            0,
            "unauthorized",
        ),
        case(
            "quay: a build notification",
            post(
                &format!("/v1/events/quay/{QUAY}"),
                vec![],
                br#"{"build_id":"296ec063","docker_url":"quay.io/dgangaia/test","docker_tags":["latest"]}"#
                    .to_vec(),
            ),
            200,
            0,
            "ignored",
        ),
        case(
            "quay: over 1 MiB",
            post(&format!("/v1/events/quay/{QUAY}"), vec![], vec![b' '; 1024 * 1024 + 1]),
            413,
            0,
            "",
        ),
    ]
}

async fn serve(broker: Arc<MemoryBroker>, jwks: std::path::PathBuf) -> String {
    let config = IngestConfig {
        registries: ["us-east1-docker.pkg.dev", "ghcr.io", "docker.io", "myregistry.azurecr.io", "quay.io"]
            .iter()
            .map(|h| Host::parse(h).unwrap())
            .collect(),
        github_repository: Some("acme/manifests".into()),
        github_secret: Some(Secret::new(GITHUB_SECRET)),
        ghcr_secret: Some(Secret::new(GHCR_SECRET)),
        dockerhub_secret: Some(Secret::new(DOCKERHUB)),
        quay_token: Some(Secret::new(QUAY)),
        acr_token: Some(Secret::new(ACR)),
        triggers: Triggers {
            pubsub_push: Some(PubSubPush {
                audience: AUDIENCE.into(),
                service_account: PUSHER.into(),
                jwks: JwksSource::File(jwks),
            }),
            ghcr_owners: vec!["codertocat".into()],
            acr_header: "x-ferry-token".into(),
            ..Triggers::default()
        },
        ..IngestConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(Ingest::new(broker, config));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

async fn send(base: &str, request: Request) -> (u16, String) {
    let mut call = reqwest::Client::new().post(format!("{base}{}", request.path)).body(request.body);
    for (name, value) in request.headers {
        call = call.header(name, value);
    }
    let response = call.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn every_route_and_every_bad_variant_gets_its_answer() {
    let signer = PushSigner::new("key-1");
    let other = PushSigner::new("key-2");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("certs.json");
    std::fs::write(&jwks, signer.jwks().to_string()).unwrap();
    let broker = Arc::new(MemoryBroker::default());
    let base = serve(broker.clone(), jwks).await;
    let mut failures = Vec::new();
    for case in cases(&signer, &other) {
        let before = broker.depth(Address::Stage(Queue::Plan));
        let (status, text) = send(&base, case.request).await;
        let enqueued = broker.depth(Address::Stage(Queue::Plan)) - before;
        if status != case.status || enqueued != case.enqueued || !text.contains(case.says) {
            failures.push(format!(
                "{}: got {status} {text:?}, {enqueued} enqueued; want {} {:?}, {}",
                case.name, case.status, case.says, case.enqueued
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // What the accepted ones became, in order.
    let deliveries = broker.receive(Address::Stage(Queue::Plan), 50, Duration::from_secs(1)).await.unwrap();
    let shown: Vec<String> = deliveries
        .iter()
        .map(|d| {
            let envelope = Envelope::<PlanMessage>::decode(&d.body).unwrap();
            match envelope.body {
                PlanMessage::RegistryPush { repository, digest, tag, .. } => format!(
                    "{} push {repository}@{} tag {}",
                    envelope.event_id,
                    &digest.to_string()[..15],
                    tag.map(|t| t.as_str().to_owned()).unwrap_or("-".into())
                ),
                PlanMessage::TagPush { repository, tag, .. } => {
                    format!(
                        "{} tag {repository}:{}",
                        envelope.event_id.split('-').next().unwrap(),
                        tag.as_str()
                    )
                }
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(
        shown,
        [
            "gcr-m-1 push us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e2 tag 1.1",
            "gh-1 push ghcr.io/codertocat/hello-world@sha256:3da1996a tag -",
            "gh-2 push ghcr.io/codertocat/hello-world@sha256:3da1996a tag -",
            "dockerhub tag docker.io/svendowideit/testhook:latest",
            "acr-cb8c3971-9adc-488b-xxxx-43cbb4974ff5 push myregistry.azurecr.io/hello-world@sha256:80f0d5c8 tag v1",
            "acr-acr-2 push myregistry.azurecr.io/hello-world@sha256:80f0d5c8 tag v1",
            "quay tag quay.io/dgangaia/test:latest",
            "quay tag quay.io/devtable/ubuntu:latest",
        ]
    );
}

#[tokio::test]
async fn an_unknown_kid_rereads_the_keys_at_most_once_a_minute() {
    let (first, rotated) = (PushSigner::new("key-1"), PushSigner::new("key-2"));
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("certs.json");
    std::fs::write(&jwks, first.jwks().to_string()).unwrap();
    let broker = Arc::new(MemoryBroker::default());
    let base = serve(broker.clone(), jwks.clone()).await;
    let insert = json("gcr-insert.json");
    let claims = PushSigner::claims(AUDIENCE, PUSHER);
    let (status, _) = send(&base, gcr(Some(first.token(&claims)), "k-1", &insert)).await;
    assert_eq!(status, 202);
    // Google rotates its keys: the file now holds the new one too. The first unknown kid
    // within the minute after a read is refused without reading again.
    let mut both = first.jwks();
    both["keys"].as_array_mut().unwrap().push(rotated.jwks()["keys"][0].clone());
    std::fs::write(&jwks, both.to_string()).unwrap();
    let (status, _) = send(&base, gcr(Some(rotated.token(&claims)), "k-2", &insert)).await;
    assert_eq!(status, 401, "keys are not read again within a minute");
    assert_eq!(broker.depth(Address::Stage(Queue::Plan)), 1);
}
