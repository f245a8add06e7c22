//! Messages in flight during a rolling deploy stay readable: envelopes written by an earlier
//! Ferry (`tests/data/v1/`, written by the version that introduced each file and never edited)
//! decode with this one. `FERRY_WRITE_WIRE=1` writes the current encoding of the same messages
//! to `tests/data/current/` for a maintainer to inspect; files under `v1/` are not rewritten.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::path::{Path, PathBuf};

use ferry_messages::{
    AttestMessage, CheckMessage, CheckName, CheckResult, CheckSummary, CopyMessage, DestinationTags,
    Envelope, ListedReferrer, ManifestOrigin, PlanMessage, Promotion, ReplicateMessage, SignMessage,
    VerifyMessage,
};
use ferry_model::{Digest, Host, Repository, Tag};

fn data(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(version)
}

fn promotion() -> Promotion {
    Promotion {
        source: Repository::parse("staging.example/team/app").unwrap(),
        digest: Digest::of(b"app"),
        source_tag: Some(Tag::parse("1.0").unwrap()),
        source_trusted: true,
        destinations: vec![
            DestinationTags {
                repository: Repository::parse("prod.example/team/app").unwrap(),
                tags: vec![Tag::parse("1.0").unwrap()],
                primary: true,
                known_absent: true,
            },
            DestinationTags {
                repository: Repository::parse("mirror.example/team/app").unwrap(),
                tags: vec![Tag::parse("1.0").unwrap()],
                primary: false,
                known_absent: false,
            },
        ],
        origin: Some(ManifestOrigin {
            repository: Some("acme/manifests".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            path: None,
        }),
    }
}

fn verification() -> Vec<CheckSummary> {
    CheckName::VERIFIER
        .into_iter()
        .chain([CheckName::Reconcile])
        .map(|check| CheckSummary {
            reason: format!("{} passed", check.as_str()),
            check,
            result: CheckResult::Pass,
        })
        .collect()
}

/// Every kind of body, as the files name them.
fn encoded() -> Vec<(&'static str, Vec<u8>)> {
    let envelope = |body| {
        Envelope::new(body, "event-1", Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()))
    };
    vec![
        (
            "plan-push.json",
            envelope(PlanMessage::RegistryPush {
                registry: Host::parse("staging.example").unwrap(),
                repository: Repository::parse("staging.example/team/app").unwrap(),
                digest: Digest::of(b"app"),
                tag: Some(Tag::parse("1.0").unwrap()),
            })
            .encode()
            .unwrap(),
        ),
        (
            "plan-tag.json",
            envelope(PlanMessage::TagPush {
                registry: Host::parse("docker.io").unwrap(),
                repository: Repository::parse("docker.io/acme/app").unwrap(),
                tag: Tag::parse("1.0").unwrap(),
            })
            .encode()
            .unwrap(),
        ),
        (
            "plan-change.json",
            envelope(PlanMessage::ManifestChange {
                repository: "acme/manifests".into(),
                base: "a".repeat(40),
                head: "b".repeat(40),
            })
            .encode()
            .unwrap(),
        ),
        (
            "plan-reconcile.json",
            envelope(PlanMessage::Reconcile { repository: "acme/manifests".into() }).encode().unwrap(),
        ),
        (
            "verify.json",
            Envelope::new(VerifyMessage { promotion: promotion(), refused: Vec::new() }, "event-1", None)
                .encode()
                .unwrap(),
        ),
        (
            "copy.json",
            Envelope::new(
                CopyMessage {
                    promotion: promotion(),
                    destination: promotion().destinations[0].clone(),
                    verification: verification(),
                },
                "event-1",
                None,
            )
            .encode()
            .unwrap(),
        ),
        (
            "sign.json",
            Envelope::new(
                SignMessage { promotion: promotion(), verification: verification() },
                "event-1",
                None,
            )
            .encode()
            .unwrap(),
        ),
        (
            "attest.json",
            Envelope::new(
                AttestMessage {
                    promotion: promotion(),
                    verification: verification(),
                    primary_referrers: Some(vec![ListedReferrer {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        digest: Digest::of(b"bundle"),
                        size: 700,
                        artifact_type: Some("application/vnd.dev.sigstore.bundle.v0.3+json".into()),
                        annotations: [(
                            "dev.sigstore.bundle.predicateType".to_owned(),
                            "https://sigstore.dev/cosign/sign/v1".to_owned(),
                        )]
                        .into(),
                    }]),
                },
                "event-1",
                None,
            )
            .encode()
            .unwrap(),
        ),
        (
            "replicate.json",
            Envelope::new(
                ReplicateMessage {
                    primary: Repository::parse("prod.example/team/app").unwrap(),
                    mirror: Repository::parse("mirror.example/team/app").unwrap(),
                    digest: Digest::of(b"app"),
                    copied: true,
                },
                "event-1",
                None,
            )
            .encode()
            .unwrap(),
        ),
        (
            "check.json",
            Envelope::new(
                CheckMessage {
                    repository: "acme/manifests".into(),
                    pull_request: 9,
                    base: "a".repeat(40),
                    head: "b".repeat(40),
                },
                "event-1",
                None,
            )
            .encode()
            .unwrap(),
        ),
    ]
}

#[test]
#[allow(clippy::disallowed_methods, reason = "test tooling, not configuration")]
fn messages_written_by_earlier_versions_decode() {
    if std::env::var_os("FERRY_WRITE_WIRE").is_some() {
        let dir = data("current");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in encoded() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let dir = data("v1");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    for name in ["plan-push.json", "plan-tag.json", "plan-change.json", "plan-reconcile.json"] {
        Envelope::<PlanMessage>::decode(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let verify = Envelope::<VerifyMessage>::decode(&read("verify.json")).unwrap();
    assert_eq!(verify.body.promotion, promotion());
    let copy = Envelope::<CopyMessage>::decode(&read("copy.json")).unwrap();
    assert_eq!(copy.body.verification.len(), 7, "every check name of version 1 is still read");
    assert!(copy.body.verification.iter().all(|c| c.result == CheckResult::Pass && c.check.is_known()));
    // A name from a newer version is kept, not dropped: rolling deploys lose no check.
    let newer =
        String::from_utf8(read("copy.json")).unwrap().replacen("\"reconcile\"", "\"sbom-present\"", 1);
    let copy = Envelope::<CopyMessage>::decode(newer.as_bytes()).unwrap();
    assert_eq!(copy.body.verification[6].check, CheckName::Unknown("sbom-present".into()));
    Envelope::<SignMessage>::decode(&read("sign.json")).unwrap();
    // Written before the hints existed: no hint, so the stage looks up.
    let attest = Envelope::<AttestMessage>::decode(&read("attest.json")).unwrap();
    assert_eq!(attest.body.primary_referrers, None);
    let replicate = Envelope::<ReplicateMessage>::decode(&read("replicate.json")).unwrap();
    assert!(!replicate.body.copied);
    Envelope::<CheckMessage>::decode(&read("check.json")).unwrap();
}
