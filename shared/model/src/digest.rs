//! Content digests. Only `sha256` is accepted: it is what every registry Ferry targets uses,
//! and accepting algorithms Ferry cannot verify would defeat the point of checking.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{ModelError, shorten};

/// A sha256 content digest, stored as its 32 raw bytes so that it is cheap to copy, hash and
/// compare. It prints as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

const PREFIX: &str = "sha256:";

impl Digest {
    /// Parses `sha256:` followed by exactly 64 lowercase hex digits.
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let fail = |reason| ModelError::Digest { value: shorten(value), reason };
        let Some(hex_part) = value.strip_prefix(PREFIX) else {
            return Err(fail("must start with \"sha256:\""));
        };
        if hex_part.len() != 64 {
            return Err(fail("must have exactly 64 hex digits after \"sha256:\""));
        }
        if !hex_part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(fail("must be lowercase hexadecimal"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| fail("must be lowercase hexadecimal"))?;
        Ok(Self(bytes))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Builds a digest from a finished hasher, for content that was hashed while streaming.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The tag form cosign and the OCI referrers fallback use: `sha256-<hex>`.
    pub fn tag_form(&self) -> String {
        format!("sha256-{}", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "sha256:e8ca4f9ff069d6a35f444832097e6650f6594b3ec0de129109d53a1b760884e9";

    #[test]
    fn parse_table() {
        let upper = GOOD.to_uppercase().replace("SHA256", "sha256");
        let cases: &[(&str, Option<&str>)] = &[
            (GOOD, None),
            ("sha256:", Some("64 hex digits")),
            ("sha512:e8ca", Some("must start with")),
            ("e8ca4f9ff069d6a35f444832097e6650f6594b3ec0de129109d53a1b760884e9", Some("must start with")),
            (&GOOD[..GOOD.len() - 1], Some("64 hex digits")),
            (&upper, Some("lowercase")),
            ("sha256:g8ca4f9ff069d6a35f444832097e6650f6594b3ec0de129109d53a1b760884e9", Some("lowercase")),
            ("", Some("must start with")),
        ];
        for (input, want) in cases {
            match (Digest::parse(input), want) {
                (Ok(d), None) => assert_eq!(d.to_string(), *input),
                (Err(e), Some(fragment)) => assert!(e.to_string().contains(fragment), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want error containing {want:?}"),
            }
        }
    }

    #[test]
    fn of_matches_sha256sum() {
        // printf '' | sha256sum
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(GOOD).unwrap().tag_form(), GOOD.replace(':', "-"));
    }

    #[test]
    fn serde_round_trip_and_rejection() {
        let d = Digest::parse(GOOD).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,100}") {
            let _ = Digest::parse(&s);
        }
    }
}
