//! The pipeline's wire format. This is the only crate that knows how messages are serialised.
//!
//! Every queue carries one message type inside an [`Envelope`]: a version, a message id, an
//! idempotency key (a stable hash of what the message asks for, so that a redelivered or
//! duplicated message is recognisably the same work), the attempt count, the id of the event
//! that started it all, and W3C trace context. A failed message goes to a dead-letter queue as a
//! [`DeadLetter`] that keeps the original body and says why.
//!
//! # Layout
//! - [`queues`]: the stage queues and dead-letter queues: the one topology definition.
//! - [`envelope`]: `Envelope`, encoding with the size limit, decoding that never panics.
//! - [`stages`]: the message body of each stage queue.
//! - [`dead_letter`]: `DeadLetter` records.
//!
//! Architecture invariant: only this crate knows the wire format; a message of an unknown version goes to poison, a check name from a newer version decodes as `Unknown`.
//! Architecture invariant: a body is bound to its queue by `Routed`.

pub mod dead_letter;
pub mod envelope;
pub mod queues;
pub mod stages;

pub use dead_letter::{DeadLetter, FailureClass};
pub use envelope::{DecodeError, Envelope, MAX_MESSAGE_BYTES, MessageError, VERSION};
pub use queues::{DeadLetterQueue, Queue, StageName, Topology};
pub use stages::*;

#[cfg(test)]
mod tests {
    use ferry_model::{Digest, Repository};

    use super::*;

    fn copy_message(destination: &str) -> CopyMessage {
        let source = Repository::parse("staging.example/app").unwrap();
        let destination = Repository::parse(destination).unwrap();
        CopyMessage {
            promotion: Promotion {
                source,
                digest: Digest::of(b"x"),
                source_tag: None,
                source_trusted: true,
                destinations: vec![DestinationTags {
                    repository: destination.clone(),
                    tags: vec!["1.0".parse().unwrap()],
                    primary: true,
                    known_absent: true,
                }],
                origin: None,
            },
            destination: DestinationTags {
                repository: destination,
                tags: vec!["1.0".parse().unwrap()],
                primary: true,
                known_absent: true,
            },
            verification: vec![],
        }
    }

    #[test]
    fn round_trip_and_stable_idempotency_keys() {
        let a = Envelope::new(copy_message("prod.example/app"), "event-1", Some("00-abc-def-01".into()));
        let b = Envelope::new(copy_message("prod.example/app"), "event-2", None);
        assert_ne!(a.id, b.id);
        assert_eq!(a.idempotency_key, b.idempotency_key, "the same work has the same key");
        let c = Envelope::new(copy_message("mirror.example/app"), "event-1", None);
        assert_ne!(a.idempotency_key, c.idempotency_key);
        let bytes = a.encode().unwrap();
        assert_eq!(Envelope::<CopyMessage>::decode(&bytes).unwrap(), a);
        assert_eq!(envelope::Header::read(&bytes).trace_id().as_deref(), Some("abc"));
    }

    #[test]
    fn decoding_rejects_bad_input_with_a_reason() {
        let good = Envelope::new(copy_message("prod.example/app"), "e", None).encode().unwrap();
        let v2 = String::from_utf8(good.clone()).unwrap().replace("\"version\":1", "\"version\":2");
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "malformed"),
            (b"not json", "malformed"),
            (b"{}", "malformed"),
            (v2.as_bytes(), "unknown message version 2"),
            (br#"{"version":1,"id":"x"}"#, "malformed"),
        ];
        for (bytes, want) in cases {
            let err = Envelope::<CopyMessage>::decode(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        // A message for another queue does not decode as this one.
        let plan = Envelope::new(
            PlanMessage::ManifestChange { repository: "r".into(), base: "a".into(), head: "b".into() },
            "e",
            None,
        );
        assert!(Envelope::<CopyMessage>::decode(&plan.encode().unwrap()).is_err());
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut message = copy_message("prod.example/app");
        message.verification = (0..5000)
            .map(|i| CheckSummary {
                check: CheckName::Signature,
                result: CheckResult::Pass,
                reason: format!("{i}{}", "x".repeat(50)),
            })
            .collect();
        let err = Envelope::new(message, "e", None).encode().unwrap_err();
        assert!(matches!(err, MessageError::TooLarge { .. }));
    }

    #[test]
    fn dead_letters_keep_the_original_and_replay_with_attempts_restarted() {
        let mut envelope =
            Envelope::new(copy_message("prod.example/app"), "e", Some("00-trace-span-01".into()));
        envelope.attempt = 3;
        envelope.first_failure = Some("2026-11-24T00:00:00.000Z".into());
        let bytes = envelope.encode().unwrap();
        let record = DeadLetter::new(
            DeadLetterQueue::Throttled,
            Queue::Copy,
            FailureClass::Throttled,
            "429",
            4,
            &bytes,
        );
        assert_eq!(record.first_failure, "2026-11-24T00:00:00.000Z");
        assert_eq!(record.trace_id.as_deref(), Some("trace"));
        assert_eq!(record.stage, StageName::Copier);
        let decoded = DeadLetter::decode(&record.encode()).unwrap();
        let replayed = decoded.replayable().unwrap();
        let replay = Envelope::<CopyMessage>::decode(&replayed).unwrap();
        assert_eq!(replay.attempt, 0, "the retry budget starts again");
        assert!(replay.delivered_before(), "a replay looks again, like a redelivery");
        assert_eq!(replay.body, envelope.body);
        assert_eq!(
            decoded.replay_command(),
            format!("ferry dlq replay --queue throttled --id {}", envelope.id)
        );

        // Failing again after the replay: the record still says when the problem began, and
        // counts every failed delivery across the replay.
        let again = DeadLetter::new(
            DeadLetterQueue::Throttled,
            Queue::Copy,
            FailureClass::Throttled,
            "429",
            2,
            &replayed,
        );
        assert_eq!(again.first_failure, "2026-11-24T00:00:00.000Z");
        assert_eq!(again.attempts, 6);
        assert_eq!(again.message_id, record.message_id);

        let junk = DeadLetter::new(
            DeadLetterQueue::Poison,
            Queue::Plan,
            FailureClass::Malformed,
            "not JSON",
            1,
            b"\xff\x00junk",
        );
        assert!(junk.original.is_none() && junk.original_base64.is_some());
        assert!(junk.replayable().is_none());
    }

    #[test]
    fn a_promotion_including_a_destination_keeps_one_primary() {
        let message = copy_message("prod.example/app");
        let mut without = message.promotion.clone();
        without.destinations.clear();
        // A record written before refused destinations were carried: the copy's own
        // destination completes it, and it is the primary.
        let whole = without.including(&message.destination);
        assert_eq!(whole.primary().map(|p| &p.repository), Some(&message.destination.repository));
        // Already there: unchanged.
        assert_eq!(message.promotion.including(&message.destination), message.promotion);
        // A second destination claiming to be primary joins as a mirror.
        let other = DestinationTags {
            repository: Repository::parse("other.example/app").unwrap(),
            ..message.destination.clone()
        };
        let both = message.promotion.including(&other);
        assert_eq!(both.destinations.len(), 2);
        assert_eq!(both.mirrors().count(), 1);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = Envelope::<CopyMessage>::decode(&bytes);
            let _ = Envelope::<PlanMessage>::decode(&bytes);
            let _ = DeadLetter::decode(&bytes);
            let _ = envelope::Header::read(&bytes);
        }
    }
}
