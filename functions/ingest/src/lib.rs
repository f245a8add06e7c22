//! The ingest function: webhooks in, `plan` messages (and `check` messages for pull requests) out.
//!
//! | endpoint | what | auth |
//! |---|---|---|
//! | `POST /v1/events/distribution` | CNCF distribution notifications | `Authorization: Bearer $FERRY_DISTRIBUTION_TOKEN` |
//! | `POST /v1/events/harbor` | Harbor `PUSH_ARTIFACT` webhooks | `Authorization: $FERRY_HARBOR_TOKEN` (as Harbor sends it) |
//! | `POST /v1/events/ecr` | an ECR push event (EventBridge JSON) | `Authorization: Bearer $FERRY_DISTRIBUTION_TOKEN` |
//! | `POST /v1/events/github` | `pull_request` (opened, synchronize, reopened: to `check`; merged: to `plan`) and `push` | `X-Hub-Signature-256` with `$FERRY_GITHUB_WEBHOOK_SECRET` |
//! | `POST /v1/events/github` | `registry_package`, `package` (GHCR container versions published or updated, from `pipeline.ghcr.owners`) | `X-Hub-Signature-256` with `$FERRY_GHCR_WEBHOOK_SECRET` (else the GitHub secret) |
//! | `POST /v1/events/gcr` | a Pub/Sub push of Artifact Registry's `gcr` topic | a Google-signed OIDC token (`pipeline.pubsub-push`) |
//! | `POST /v1/events/dockerhub/<secret>` | Docker Hub webhooks (a tag, no digest) | `$FERRY_DOCKERHUB_SECRET` in the path |
//! | `POST /v1/events/acr` | ACR `push` webhooks | `$FERRY_ACR_TOKEN` in the header `pipeline.acr.header` |
//! | `POST /v1/events/quay/<secret>` | Quay repository-push notifications (tags, no digests) | `$FERRY_QUAY_TOKEN` in the path |
//!
//! Answers: 202 accepted (messages were enqueued), 200 ignored (valid, nothing to do), 400
//! malformed, 401 bad or missing credentials, 413 too large, 503 the queue could not be
//! reached (the sender retries). Nothing is enqueued unless the event is valid, and a repeat
//! delivery of an event id already enqueued is acknowledged without enqueuing again.
//! ECR events delivered by EventBridge to the `events` queue go through [`EventsStage`].
//!
//! Architecture invariant: ingest answers 2xx only after the broker confirmed the message; an event id counts as seen only then.
//! Architecture invariant: hosts in payloads are accepted only when `pipeline.registries` names them, and outside text is logged escaped.

pub mod events;
pub mod pubsub;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_config::{Config, Env};
use ferry_messages::{Envelope, Queue};
use ferry_model::Host;
use ferry_queue::{Address, Broker};
use ferry_registry::Secret;
use ferry_runtime::{Outgoing, Stage, StageError};
use serde_json::json;
use tracing::Instrument as _;

use crate::events::{Accepted, EcrEvent, GitHubDelivery, Incoming, Rejection};

/// The default for [`IngestConfig::enqueue_timeout`].
pub const DEFAULT_ENQUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What ingest accepts.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Events naming any other registry host are ignored.
    pub registries: Vec<Host>,
    pub github_repository: Option<String>,
    /// Paths (inside the manifest repository) whose changes matter.
    pub manifest_paths: Vec<String>,
    pub distribution_token: Option<Secret>,
    pub harbor_token: Option<Secret>,
    pub github_secret: Option<Secret>,
    /// The other routes: their settings (`pipeline.*`) and secrets.
    pub triggers: ferry_config::Triggers,
    pub ghcr_secret: Option<Secret>,
    pub dockerhub_secret: Option<Secret>,
    pub quay_token: Option<Secret>,
    pub acr_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// How long a webhook waits for the broker to confirm its message before it is answered
    /// 503 (the sender retries). Well under the notification timeouts of registries.
    pub enqueue_timeout: std::time::Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            registries: Vec::new(),
            github_repository: None,
            manifest_paths: Vec::new(),
            distribution_token: None,
            harbor_token: None,
            github_secret: None,
            triggers: ferry_config::Triggers::default(),
            ghcr_secret: None,
            dockerhub_secret: None,
            quay_token: None,
            acr_token: None,
            max_body_bytes: 1024 * 1024,
            enqueue_timeout: DEFAULT_ENQUEUE_TIMEOUT,
        }
    }
}

impl IngestConfig {
    pub fn from_config(config: &Config, env: &Env) -> Self {
        Self {
            registries: config.pipeline.registries.clone(),
            github_repository: config.pipeline.github_repository.clone(),
            manifest_paths: config
                .pipeline
                .manifests
                .iter()
                .flat_map(|m| m.inputs.iter().map(|i| i.path().display().to_string()))
                .collect(),
            distribution_token: env.distribution_token.clone(),
            harbor_token: env.harbor_token.clone(),
            github_secret: env.github_webhook_secret.clone(),
            triggers: config.pipeline.triggers.clone(),
            ghcr_secret: env.ghcr_webhook_secret.clone(),
            dockerhub_secret: env.dockerhub_secret.clone(),
            quay_token: env.quay_token.clone(),
            acr_token: env.acr_token.clone(),
            max_body_bytes: 1024 * 1024,
            enqueue_timeout: DEFAULT_ENQUEUE_TIMEOUT,
        }
    }
}

/// What ingest knows of an event id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// A request is enqueueing it now; the broker has not confirmed it.
    InFlight,
    /// The broker confirmed it: a delivery of the same id again is a duplicate.
    Enqueued,
}

/// Event ids in flight, and the most recent `capacity` enqueued ones. An id counts as seen
/// only once the broker confirmed it; one that was never enqueued is enqueued when it comes
/// again.
#[derive(Debug)]
struct Seen {
    ids: HashMap<String, Known>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Seen {
    fn confirm(&mut self, id: &str) {
        if self.ids.insert(id.to_owned(), Known::Enqueued) == Some(Known::Enqueued) {
            return;
        }
        self.order.push_back(id.to_owned());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn forget_in_flight(&mut self, id: &str) {
        if self.ids.get(id) == Some(&Known::InFlight) {
            self.ids.remove(id);
        }
    }
}

/// The ids one request marked in flight. Dropped without [`InFlight::confirm`] (the publish
/// failed, timed out, or the sender hung up and the request was cancelled), it forgets them, so
/// that the sender's retry enqueues them.
struct InFlight<'a> {
    seen: &'a Mutex<Seen>,
    ids: Vec<String>,
}

impl InFlight<'_> {
    fn confirm(mut self) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for id in self.ids.drain(..) {
            seen.confirm(&id);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            seen.forget_in_flight(id);
        }
    }
}

/// What enqueueing a request's events came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Enqueued {
    /// This many new messages are confirmed by the broker.
    Fresh(usize),
    /// Every event was enqueued before.
    Duplicate,
    /// An earlier delivery of one of these events is still being enqueued: the sender must come
    /// back, since that delivery may yet fail.
    Pending,
}

#[derive(Debug)]
pub struct Ingest<B> {
    broker: Arc<B>,
    config: IngestConfig,
    seen: Mutex<Seen>,
    /// Checks Pub/Sub push tokens, when `pipeline.pubsub-push` is set.
    push_auth: Option<pubsub::PushAuth>,
}

impl<B: Broker> Ingest<B> {
    pub fn new(broker: Arc<B>, config: IngestConfig) -> Arc<Self> {
        let push_auth = config.triggers.pubsub_push.clone().map(pubsub::PushAuth::new);
        Arc::new(Self {
            broker,
            config,
            seen: Mutex::new(Seen { ids: HashMap::new(), order: VecDeque::new(), capacity: 100_000 }),
            push_auth,
        })
    }

    /// Enqueues every accepted event not enqueued before, waiting at most
    /// `enqueue_timeout` for the broker's confirmation.
    async fn enqueue(&self, accepted: Vec<Accepted>) -> Result<Enqueued, String> {
        let mut fresh = Vec::new();
        let mut pending = false;
        let in_flight = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut ids = Vec::new();
            for a in accepted {
                match seen.ids.get(&a.event_id) {
                    Some(Known::Enqueued) => {}
                    Some(Known::InFlight) => pending = true,
                    None => {
                        seen.ids.insert(a.event_id.clone(), Known::InFlight);
                        ids.push(a.event_id.clone());
                        fresh.push(a);
                    }
                }
            }
            InFlight { seen: &self.seen, ids }
        };
        if fresh.is_empty() {
            return Ok(if pending { Enqueued::Pending } else { Enqueued::Duplicate });
        }
        let mut bodies: Vec<(Queue, Vec<Vec<u8>>)> = Vec::new();
        for a in &fresh {
            // Each event starts its own trace; every later stage continues it.
            let subject = match &a.message {
                Incoming::Plan(m) => ferry_messages::envelope::Keyed::subject(m),
                Incoming::Check(m) => ferry_messages::envelope::Keyed::subject(m),
            };
            let span = tracing::info_span!(
                "ingest",
                otel.name = "ingest",
                event_id = %ferry_model::Shown(&a.event_id),
                image = subject.image.as_deref(),
                digest = subject.digest.as_deref(),
            );
            let encoded = async {
                let traceparent = ferry_runtime::telemetry::current_traceparent();
                match &a.message {
                    Incoming::Plan(m) => {
                        Envelope::new(m.clone(), &a.event_id, traceparent).encode().map(|b| (Queue::Plan, b))
                    }
                    Incoming::Check(m) => {
                        Envelope::new(m.clone(), &a.event_id, traceparent).encode().map(|b| (Queue::Check, b))
                    }
                }
            }
            .instrument(span)
            .await;
            let (queue, body) = encoded.map_err(|e| e.to_string())?;
            match bodies.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, list)) => list.push(body),
                None => bodies.push((queue, vec![body])),
            }
        }
        let limit = self.config.enqueue_timeout;
        let publish = async {
            for (queue, list) in bodies {
                self.broker.publish(Address::Stage(queue), list).await?;
            }
            Ok::<(), ferry_queue::QueueError>(())
        };
        match tokio::time::timeout(limit, publish).await {
            Ok(Ok(())) => in_flight.confirm(),
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err(format!("the broker did not confirm the message within {limit:?}")),
        }
        Ok(if pending { Enqueued::Pending } else { Enqueued::Fresh(fresh.len()) })
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn respond<B: Broker>(ingest: &Ingest<B>, parsed: Result<Vec<Accepted>, Rejection>) -> Response {
    match parsed {
        Err(Rejection::Malformed(reason)) => {
            answer(StatusCode::BAD_REQUEST, json!({"status": "malformed", "error": reason}))
        }
        Ok(accepted) if accepted.is_empty() => answer(StatusCode::OK, json!({"status": "ignored"})),
        Ok(accepted) => {
            let offered = accepted.len();
            match ingest.enqueue(accepted).await {
                Ok(Enqueued::Duplicate) => {
                    answer(StatusCode::OK, json!({"status": "duplicate", "events": offered}))
                }
                Ok(Enqueued::Fresh(n)) => {
                    answer(StatusCode::ACCEPTED, json!({"status": "accepted", "messages": n}))
                }
                Ok(Enqueued::Pending) => answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "pending", "error": "an earlier delivery of this event is still being enqueued; retry"}),
                ),
                Err(error) => {
                    tracing::error!(%error, "cannot enqueue; the sender will retry");
                    answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "unavailable", "error": "the queue could not be reached"}),
                    )
                }
            }
        }
    }
}

fn unauthorized() -> Response {
    answer(StatusCode::UNAUTHORIZED, json!({"status": "unauthorized"}))
}

/// `Authorization: Bearer <token>`; a raw token without the scheme is refused.
fn bearer_ok(expected: &Option<Secret>, headers: &HeaderMap) -> bool {
    let presented = header(headers, "authorization").and_then(|a| a.strip_prefix("Bearer "));
    expected.as_ref().is_some_and(|t| events::token_ok(t.expose(), presented))
}

/// `Authorization: <the configured value>`, as Harbor sends its webhook's auth header.
fn header_ok(expected: &Option<Secret>, headers: &HeaderMap) -> bool {
    expected.as_ref().is_some_and(|t| events::token_ok(t.expose(), header(headers, "authorization")))
}

async fn distribution<B: Broker>(
    State(ingest): State<Arc<Ingest<B>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !bearer_ok(&ingest.config.distribution_token, &headers) {
        return unauthorized();
    }
    respond(&ingest, events::distribution(&body, &ingest.config.registries)).await
}

async fn harbor<B: Broker>(
    State(ingest): State<Arc<Ingest<B>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !header_ok(&ingest.config.harbor_token, &headers) {
        return unauthorized();
    }
    respond(&ingest, events::harbor(&body, &ingest.config.registries)).await
}

async fn ecr<B: Broker>(State(ingest): State<Arc<Ingest<B>>>, headers: HeaderMap, body: Bytes) -> Response {
    if !bearer_ok(&ingest.config.distribution_token, &headers) {
        return unauthorized();
    }
    let parsed = serde_json::from_slice::<EcrEvent>(&body)
        .map_err(|e| Rejection::Malformed(format!("not an ECR EventBridge event: {e}")))
        .and_then(|event| events::ecr(&event, &ingest.config.registries));
    respond(&ingest, parsed).await
}

async fn github<B: Broker>(
    State(ingest): State<Arc<Ingest<B>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let event = header(&headers, "x-github-event");
    // Package events come from the packages' repositories or organisations, with their own
    // secret; everything else from the manifest repository.
    let package = matches!(event, Some("registry_package" | "package"));
    let secret = match package {
        true => ingest.config.ghcr_secret.as_ref().or(ingest.config.github_secret.as_ref()),
        false => ingest.config.github_secret.as_ref(),
    };
    let Some(secret) = secret else { return unauthorized() };
    if !events::github_signature_ok(
        secret.expose().as_bytes(),
        &body,
        header(&headers, "x-hub-signature-256"),
    ) {
        return unauthorized();
    }
    let (Some(event), Some(delivery_id)) = (event, header(&headers, "x-github-delivery")) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"status": "malformed", "error": "X-GitHub-Event and X-GitHub-Delivery are required"}),
        );
    };
    let delivery = GitHubDelivery { event, delivery_id };
    if package {
        let triggers = &ingest.config.triggers;
        if triggers.ghcr_owners.is_empty() {
            events::ignored(
                "GitHub package",
                "list the owners to hear under pipeline.ghcr.owners, or remove the package events from the webhook",
            );
            return answer(StatusCode::OK, json!({"status": "ignored"}));
        }
        let route = events::GhcrRoute { owners: &triggers.ghcr_owners, registry: &triggers.ghcr_registry };
        return respond(&ingest, events::ghcr(&delivery, &body, &route, &ingest.config.registries)).await;
    }
    let parsed = events::github(
        &delivery,
        &body,
        ingest.config.github_repository.as_deref(),
        &ingest.config.manifest_paths,
    );
    respond(&ingest, parsed).await
}

async fn gcr<B: Broker>(State(ingest): State<Arc<Ingest<B>>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(auth) = &ingest.push_auth else { return unauthorized() };
    if let Err(reason) = auth.verify(header(&headers, "authorization")).await {
        tracing::warn!(%reason, "a Pub/Sub push was refused");
        return unauthorized();
    }
    respond(&ingest, events::gcr(&body, &ingest.config.registries)).await
}

/// The secret in the path (`/v1/events/dockerhub/<secret>`), for senders that sign nothing and
/// set no header.
fn path_secret_ok(expected: &Option<Secret>, presented: &str) -> bool {
    expected.as_ref().is_some_and(|t| events::token_ok(t.expose(), Some(presented)))
}

async fn dockerhub<B: Broker>(
    State(ingest): State<Arc<Ingest<B>>>,
    axum::extract::Path(secret): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    if !path_secret_ok(&ingest.config.dockerhub_secret, &secret) {
        return unauthorized();
    }
    let registry = &ingest.config.triggers.dockerhub_registry;
    respond(&ingest, events::dockerhub(&body, registry, &ingest.config.registries)).await
}

async fn quay<B: Broker>(
    State(ingest): State<Arc<Ingest<B>>>,
    axum::extract::Path(secret): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    if !path_secret_ok(&ingest.config.quay_token, &secret) {
        return unauthorized();
    }
    let registry = ingest.config.triggers.quay_registry.as_ref();
    respond(&ingest, events::quay(&body, registry, &ingest.config.registries)).await
}

async fn acr<B: Broker>(State(ingest): State<Arc<Ingest<B>>>, headers: HeaderMap, body: Bytes) -> Response {
    // ACR sends the custom header as configured: the token itself, or `Bearer <token>`.
    let presented = header(&headers, &ingest.config.triggers.acr_header);
    let presented = presented.map(|p| p.strip_prefix("Bearer ").unwrap_or(p));
    if !ingest.config.acr_token.as_ref().is_some_and(|t| events::token_ok(t.expose(), presented)) {
        return unauthorized();
    }
    respond(&ingest, events::acr(&body, &ingest.config.registries)).await
}

/// The ingest HTTP API.
pub fn router<B: Broker>(ingest: Arc<Ingest<B>>) -> Router {
    let limit = ingest.config.max_body_bytes;
    Router::new()
        .route("/v1/events/distribution", post(distribution::<B>))
        .route("/v1/events/harbor", post(harbor::<B>))
        .route("/v1/events/ecr", post(ecr::<B>))
        .route("/v1/events/github", post(github::<B>))
        .route("/v1/events/gcr", post(gcr::<B>))
        .route("/v1/events/dockerhub/{secret}", post(dockerhub::<B>))
        .route("/v1/events/acr", post(acr::<B>))
        .route("/v1/events/quay/{secret}", post(quay::<B>))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingest)
}

/// ECR push events that EventBridge delivers to the `events` queue (wrapped in an envelope by
/// the rule's input transformer; see `infra/template.yaml`).
#[derive(Debug)]
pub struct EventsStage {
    pub registries: Vec<Host>,
}

impl Stage for EventsStage {
    type Message = EcrEvent;

    async fn handle(&self, message: Envelope<EcrEvent>) -> Result<Vec<Outgoing>, StageError> {
        let accepted = events::ecr(&message.body, &self.registries)
            .map_err(|Rejection::Malformed(reason)| StageError::permanent(reason))?;
        accepted
            .into_iter()
            .map(|a| match a.message {
                Incoming::Plan(m) => Outgoing::message(m, &message),
                Incoming::Check(m) => Outgoing::message(m, &message),
            })
            .collect()
    }
}
