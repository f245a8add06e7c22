//! The body of each stage queue's message.

use ferry_model::{Digest, Host, Repository, Tag};
use serde::{Deserialize, Serialize};

use crate::envelope::{Keyed, Subject};
use crate::queues::Queue;

/// A message body bound to the one queue that carries it: `Outgoing::message(body, cause)`
/// takes the queue from the type, so a body cannot be published to another stage's queue.
pub trait Routed: Keyed {
    const QUEUE: Queue;
}

/// A message for the stage after this one: what a step of a promotion asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Copy(CopyMessage),
    Sign(SignMessage),
    Attest(AttestMessage),
    Replicate(ReplicateMessage),
}

macro_rules! routed {
    ($($message:ty => $queue:expr),* $(,)?) => {
        $(impl Routed for $message {
            const QUEUE: Queue = $queue;
        })*
    };
}

routed! {
    EcrEvent => Queue::Events,
    PlanMessage => Queue::Plan,
    VerifyMessage => Queue::Verify,
    CopyMessage => Queue::Copy,
    SignMessage => Queue::Sign,
    AttestMessage => Queue::Attest,
    ReplicateMessage => Queue::Replicate,
    CheckMessage => Queue::Check,
}

/// `plan`: something happened that may need promoting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PlanMessage {
    /// An image was pushed to a registry (a distribution, Harbor or ECR push event).
    RegistryPush { registry: Host, repository: Repository, digest: Digest, tag: Option<Tag> },
    /// A tag was pushed, and the sender did not say to which digest (Docker Hub, Quay): the
    /// planner resolves it with its credentials; ingest never reads a registry.
    TagPush { registry: Host, repository: Repository, tag: Tag },
    /// The manifest repository changed between two commits (a merged pull request, a push).
    ManifestChange { repository: String, base: String, head: String },
    /// Compare the whole desired state now with the registries and emit only what is missing
    /// (a scheduled `ferry reconcile`). `repository` names the manifest repository, for logs.
    Reconcile {
        #[serde(default)]
        repository: String,
    },
}

impl Keyed for PlanMessage {
    fn identity(&self) -> String {
        match self {
            PlanMessage::RegistryPush { repository, digest, tag, .. } => {
                format!("plan\npush\n{repository}\n{digest}\n{}", tag.as_ref().map(Tag::as_str).unwrap_or(""))
            }
            PlanMessage::TagPush { repository, tag, .. } => {
                format!("plan\ntag\n{repository}\n{}", tag.as_str())
            }
            PlanMessage::ManifestChange { repository, base, head } => {
                format!("plan\nchange\n{repository}\n{base}\n{head}")
            }
            PlanMessage::Reconcile { repository } => format!("plan\nreconcile\n{repository}"),
        }
    }

    fn subject(&self) -> Subject {
        match self {
            PlanMessage::RegistryPush { repository, digest, .. } => Subject {
                image: Some(repository.to_string()),
                digest: Some(digest.to_string()),
                destination: None,
            },
            PlanMessage::TagPush { repository, tag, .. } => {
                Subject { image: Some(format!("{repository}:{}", tag.as_str())), ..Subject::default() }
            }
            PlanMessage::ManifestChange { repository, head, .. } => {
                Subject { image: Some(format!("{repository}@{head}")), ..Subject::default() }
            }
            PlanMessage::Reconcile { repository } => {
                Subject { image: Some(repository.clone()), ..Subject::default() }
            }
        }
    }
}

/// A destination of a promotion, with the tags it gets there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationTags {
    pub repository: Repository,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The primary destination is where signing happens; the others are mirrors.
    #[serde(default)]
    pub primary: bool,
    /// The plan found the manifest absent there.
    #[serde(default)]
    pub known_absent: bool,
}

/// Where the desired state came from, when it came from a manifest repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOrigin {
    pub repository: Option<String>,
    pub commit: Option<String>,
    pub path: Option<String>,
}

/// One digest from one source, and everywhere it goes: the unit every later stage works on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub source: Repository,
    pub digest: Digest,
    /// The tag the input named at the source (images-list, charts sync, a push event).
    #[serde(default)]
    pub source_tag: Option<Tag>,
    /// Signatures and attestations may be copied from this source.
    #[serde(default)]
    pub source_trusted: bool,
    pub destinations: Vec<DestinationTags>,
    #[serde(default)]
    pub origin: Option<ManifestOrigin>,
}

impl Promotion {
    pub fn primary(&self) -> Option<&DestinationTags> {
        self.destinations.iter().find(|d| d.primary)
    }

    pub fn mirrors(&self) -> impl Iterator<Item = &DestinationTags> {
        self.destinations.iter().filter(|d| !d.primary)
    }

    /// The promotion with `destination` among its destinations (added when missing, matched by
    /// repository). A refused destination's dead letter carries the whole promotion, so that
    /// its replay goes on to sign, attest and replicate; a record written before it did is
    /// completed this way from its own copy message.
    pub fn including(&self, destination: &DestinationTags) -> Promotion {
        let mut whole = self.clone();
        if !whole.destinations.iter().any(|d| d.repository == destination.repository) {
            let mut added = destination.clone();
            // One primary per promotion: a second one would be a mirror.
            added.primary &= whole.primary().is_none();
            whole.destinations.push(added);
        }
        whole
    }

    fn subject(&self, destination: Option<&Repository>) -> Subject {
        Subject {
            image: Some(self.source.to_string()),
            digest: Some(self.digest.to_string()),
            destination: destination.or(self.primary().map(|p| &p.repository)).map(ToString::to_string),
        }
    }

    fn identity(&self) -> String {
        let mut destinations: Vec<String> = self
            .destinations
            .iter()
            .map(|d| {
                let mut tags: Vec<&str> = d.tags.iter().map(Tag::as_str).collect();
                tags.sort_unstable();
                format!("{}:{}", d.repository, tags.join(","))
            })
            .collect();
        destinations.sort();
        format!("{}\n{}\n{}", self.source, self.digest, destinations.join("\n"))
    }
}

/// The checks a message carries: one enum for the verifier, presubmit and the attestation
/// (see [`ferry_model::CheckName`]); a name from a newer version decodes as `Unknown`.
pub use ferry_model::CheckName;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckResult {
    Pass,
    Skip,
    Warn,
    Fail,
}

/// The verifier's verdict on one check, carried to the attester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub check: CheckName,
    pub result: CheckResult,
    pub reason: String,
}

/// A destination the plan refused (a conflicting tag, a prerelease, an overlap), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub destination: DestinationTags,
    pub reason: String,
}

/// `verify`: check this promotion's image before anything is copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyMessage {
    pub promotion: Promotion,
    /// Destinations the plan refused; they are reported, never copied.
    #[serde(default)]
    pub refused: Vec<Refused>,
}

impl Keyed for VerifyMessage {
    fn identity(&self) -> String {
        format!("verify\n{}", self.promotion.identity())
    }

    fn subject(&self) -> Subject {
        self.promotion.subject(None)
    }
}

/// `copy`: copy the image to one destination (one message per destination: the fan-out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyMessage {
    pub promotion: Promotion,
    /// The destination this message copies to, with its tags.
    pub destination: DestinationTags,
    #[serde(default)]
    pub verification: Vec<CheckSummary>,
}

impl Keyed for CopyMessage {
    fn identity(&self) -> String {
        let mut tags: Vec<&str> = self.destination.tags.iter().map(Tag::as_str).collect();
        tags.sort_unstable();
        format!("copy\n{}:{}\n{}", self.destination.repository, tags.join(","), self.promotion.identity())
    }

    fn subject(&self) -> Subject {
        self.promotion.subject(Some(&self.destination.repository))
    }
}

/// `sign`: the primary destination has the image; sign it there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignMessage {
    pub promotion: Promotion,
    #[serde(default)]
    pub verification: Vec<CheckSummary>,
}

impl Keyed for SignMessage {
    fn identity(&self) -> String {
        format!("sign\n{}", self.promotion.identity())
    }

    fn subject(&self) -> Subject {
        self.promotion.subject(None)
    }
}

/// `attest`: write the promotion attestation at the primary destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestMessage {
    pub promotion: Promotion,
    #[serde(default)]
    pub verification: Vec<CheckSummary>,
    /// The digest's referrers at the primary as the signer left them: a hint that replaces the
    /// attester's look-up before it writes, never the read its write merges against. Ignored on
    /// a redelivery. Absent when the signer did not read them, or they were too many to carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_referrers: Option<Vec<ListedReferrer>>,
}

/// One referrer as a registry lists it (an OCI descriptor), carried from one step of a
/// promotion to the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedReferrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// At most this many referrers are carried in a message; more are looked up.
pub const MAX_CARRIED_REFERRERS: usize = 64;

impl Keyed for AttestMessage {
    fn identity(&self) -> String {
        format!("attest\n{}", self.promotion.identity())
    }

    fn subject(&self) -> Subject {
        self.promotion.subject(None)
    }
}

/// `replicate`: copy `.sig`/`.att`/`.sbom` of a digest from the primary to one mirror (the
/// replicator fans out one message per mirror).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateMessage {
    pub primary: Repository,
    pub mirror: Repository,
    pub digest: Digest,
    /// The copy step has just written the image at the mirror and read its tag back: a hint
    /// that replaces the replicator's look-up of the image there. Ignored on a redelivery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copied: bool,
}

impl Keyed for ReplicateMessage {
    fn identity(&self) -> String {
        format!("replicate\n{}\n{}\n{}", self.primary, self.mirror, self.digest)
    }

    fn subject(&self) -> Subject {
        Subject {
            image: Some(self.primary.to_string()),
            digest: Some(self.digest.to_string()),
            destination: Some(self.mirror.to_string()),
        }
    }
}

/// `check`: a pull request on the manifest repository was opened or updated; check what it
/// adds and post the result as a check run on its head commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckMessage {
    /// `owner/name`.
    pub repository: String,
    pub pull_request: u64,
    /// The commit the pull request is compared with (its base branch's head when it was opened
    /// or updated; GitHub's `pull_request.base.sha`).
    pub base: String,
    /// The pull request's head commit: the check run is attached to it.
    pub head: String,
}

impl Keyed for CheckMessage {
    fn identity(&self) -> String {
        format!("check\n{}\n{}\n{}", self.repository, self.base, self.head)
    }

    fn subject(&self) -> Subject {
        Subject {
            image: Some(format!("{}#{}@{}", self.repository, self.pull_request, self.head)),
            ..Subject::default()
        }
    }
}

/// `events`: an ECR push event from EventBridge (`detail-type: ECR Image Action`), as the
/// rule's input transformer puts it in an envelope (see `infra/template.yaml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcrEvent {
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub account: String,
    pub region: String,
    pub detail: EcrDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcrDetail {
    #[serde(rename = "action-type")]
    pub action_type: String,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(rename = "repository-name")]
    pub repository_name: String,
    #[serde(rename = "image-digest")]
    pub image_digest: String,
    #[serde(rename = "image-tag", default)]
    pub image_tag: Option<String>,
}

impl Keyed for EcrEvent {
    fn identity(&self) -> String {
        format!("ecr\n{}", self.id)
    }
}
