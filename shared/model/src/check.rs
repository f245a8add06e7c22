//! The name of every check Ferry makes, in one enum: the verifier's checks (carried in the
//! pipeline's messages, the attestation and the VSA), presubmit's, and the policy problems.
//!
//! On the wire a name is its kebab-case text. A name this version does not know (written by a
//! newer Ferry during a rolling deploy) decodes as [`CheckName::Unknown`], keeping its text, and
//! is reported like any other: a check is never dropped for its name.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckName {
    /// The source manifest exists and hashes to its digest (children too).
    SourceDigest,
    /// The source tag an input names still resolves to the digest.
    Reference,
    Signature,
    Provenance,
    Vulnerabilities,
    /// What promoting would do at each destination (conflicts, overlaps, prereleases).
    Destination,
    /// Re-emitted by `ferry reconcile`: the image was verified when it was first copied.
    Reconcile,
    /// Presubmit: new digests must be multi-platform indexes.
    MultiArch,
    /// Presubmit: every new digest goes to every required registry.
    RequiredDestinations,
    /// Presubmit: sources must be under `check.allowed-sources`.
    AllowedSource,
    /// Presubmit: strict parsing of the changed files.
    Lint,
    /// Presubmit: a tag of the base is neither removed nor moved.
    ImmutableTags,
    /// Presubmit: a source tag an entry names exists in a source.
    Source,
    /// Presubmit: a registry host the policy does not allow.
    Policy,
    /// Presubmit: the change edits the policy it would be checked with.
    PolicyChange,
    /// A name this version does not know, kept as written.
    Unknown(String),
}

impl CheckName {
    /// Every name this version knows, in the order reports list them.
    pub const KNOWN: [CheckName; 15] = [
        CheckName::SourceDigest,
        CheckName::Reference,
        CheckName::Signature,
        CheckName::Provenance,
        CheckName::Vulnerabilities,
        CheckName::Destination,
        CheckName::Reconcile,
        CheckName::MultiArch,
        CheckName::RequiredDestinations,
        CheckName::AllowedSource,
        CheckName::Lint,
        CheckName::ImmutableTags,
        CheckName::Source,
        CheckName::Policy,
        CheckName::PolicyChange,
    ];

    /// The verifier's checks, in the order it makes them.
    pub const VERIFIER: [CheckName; 6] = [
        CheckName::SourceDigest,
        CheckName::Reference,
        CheckName::Signature,
        CheckName::Provenance,
        CheckName::Vulnerabilities,
        CheckName::Destination,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            CheckName::SourceDigest => "source-digest",
            CheckName::Reference => "reference",
            CheckName::Signature => "signature",
            CheckName::Provenance => "provenance",
            CheckName::Vulnerabilities => "vulnerabilities",
            CheckName::Destination => "destination",
            CheckName::Reconcile => "reconcile",
            CheckName::MultiArch => "multi-arch",
            CheckName::RequiredDestinations => "required-destinations",
            CheckName::AllowedSource => "allowed-source",
            CheckName::Lint => "lint",
            CheckName::ImmutableTags => "immutable-tags",
            CheckName::Source => "source",
            CheckName::Policy => "policy",
            CheckName::PolicyChange => "policy-change",
            CheckName::Unknown(name) => name,
        }
    }

    /// The check of this name; a name this version does not know is [`CheckName::Unknown`].
    pub fn parse(name: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| CheckName::Unknown(name.to_owned()))
    }

    pub fn is_known(&self) -> bool {
        !matches!(self, CheckName::Unknown(_))
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&crate::shown::escaped(self.as_str()))
    }
}

impl PartialEq<str> for CheckName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for CheckName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for CheckName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CheckName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(CheckName::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept() {
        for name in CheckName::KNOWN {
            let json = serde_json::to_string(&name).unwrap_or_default();
            assert_eq!(serde_json::from_str::<CheckName>(&json).ok(), Some(name.clone()), "{json}");
            assert!(name.is_known());
        }
        let newer: CheckName = serde_json::from_str("\"sbom-present\"").unwrap_or(CheckName::Lint);
        assert_eq!(newer, CheckName::Unknown("sbom-present".into()));
        assert_eq!(serde_json::to_string(&newer).unwrap_or_default(), "\"sbom-present\"");
        assert_eq!(CheckName::parse("multi-arch"), CheckName::MultiArch);
        assert!(CheckName::PolicyChange == "policy-change");
    }
}
