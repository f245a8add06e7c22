//! OCI tags.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ModelError, shorten};

/// A tag matching the OCI grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`. Cloning is cheap: one
/// tag is shared by every destination edge it appears in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Arc<str>);

impl Tag {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let fail = |reason| ModelError::Tag { value: shorten(value), reason };
        let bytes = value.as_bytes();
        let Some(first) = bytes.first() else {
            return Err(fail("must not be empty"));
        };
        if bytes.len() > 128 {
            return Err(fail("must be at most 128 characters"));
        }
        if !(first.is_ascii_alphanumeric() || *first == b'_') {
            return Err(fail("must start with a letter, digit or '_'"));
        }
        if !bytes[1..].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(fail("may contain only letters, digits, '.', '_' and '-'"));
        }
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for release candidates and pre-releases, as Rancher's charts sync decides them: the
    /// tag contains `-rc`, `-alpha` or `-beta` anywhere. Ferry also ignores case, since refusing
    /// more is the safe side: `v1.2.0-rc.1`, `1.19.0-alpha.1`, `v2-BETA` and `v1-rcompat` are
    /// all prereleases.
    pub fn is_prerelease(&self) -> bool {
        let lower = self.0.to_ascii_lowercase();
        ["-rc", "-alpha", "-beta"].iter().any(|marker| lower.contains(marker))
    }

    /// True for the tags that hold artifacts about an image rather than an image: cosign's
    /// `sha256-<hex>.sig`, `.att` and `.sbom`, and the OCI referrers tag schema's `sha256-<hex>`.
    /// They travel with their image; a mirror rule never promotes them as images.
    pub fn is_artifact_tag(&self) -> bool {
        let Some(rest) = self.0.strip_prefix("sha256-") else { return false };
        let hex = rest
            .strip_suffix(".sig")
            .or_else(|| rest.strip_suffix(".att"))
            .or_else(|| rest.strip_suffix(".sbom"));
        let hex = hex.unwrap_or(rest);
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl FromStr for Tag {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Tag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_tags() {
        let hex = "a".repeat(64);
        let cases = [
            (format!("sha256-{hex}"), true),
            (format!("sha256-{hex}.sig"), true),
            (format!("sha256-{hex}.att"), true),
            (format!("sha256-{hex}.sbom"), true),
            (format!("sha256-{hex}.bak"), false),
            (format!("sha256-{}", &hex[1..]), false),
            (format!("sha256-{}", "A".repeat(64)), false),
            ("sha256-latest".to_owned(), false),
            ("v1.0".to_owned(), false),
        ];
        for (tag, artifact) in cases {
            assert_eq!(Tag::parse(&tag).unwrap().is_artifact_tag(), artifact, "{tag}");
        }
    }

    #[test]
    fn grammar_table() {
        let long_ok = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases: &[(&str, bool)] = &[
            ("v1.0", true),
            ("latest", true),
            ("_private", true),
            ("1.19.0-alpha.1", true),
            ("UPPER_case-1.2", true),
            (&long_ok, true),
            (&too_long, false),
            ("", false),
            (".hidden", false),
            ("-dash", false),
            ("has space", false),
            ("a:b", false),
            ("a/b", false),
            ("sha256:abc", false),
            ("ünïcode", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Tag::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn prerelease_table() {
        let cases = [
            ("v1.2.0-rc.1", true),
            ("v0.3.0-rc1", true),
            ("v0.3.0-RC1", true),
            ("1.19.0-alpha.1", true),
            ("v2-beta", true),
            ("v2-Beta2", true),
            ("v1.0.0", false),
            ("v1-rcompat", true),
            ("rc1", false),
            ("v1.0-alphabet", true),
            ("v1.0.0-build-rc", true),
            ("latest", false),
        ];
        for (tag, want) in cases {
            assert_eq!(Tag::parse(tag).unwrap().is_prerelease(), want, "{tag}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,140}") {
            if let Ok(tag) = Tag::parse(&s) {
                let _ = tag.is_prerelease();
            }
        }
    }
}
