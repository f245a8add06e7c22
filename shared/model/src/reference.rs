//! Image references: `host/path[:tag][@digest]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{ModelError, shorten};
use crate::name::Repository;
use crate::tag::Tag;

/// A reference to an image in a repository by tag, by digest, or both (`name:tag@digest`, in
/// which case the digest is authoritative and the tag is informational).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses a fully qualified reference; the registry host is required.
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        Self::parse_with(value, Repository::parse)
    }

    /// Parses a Docker-style reference, where `nginx:1.25` means `docker.io/library/nginx:1.25`.
    pub fn parse_docker_style(value: &str) -> Result<Self, ModelError> {
        Self::parse_with(value, Repository::parse_docker_style)
    }

    fn parse_with(value: &str, repo: fn(&str) -> Result<Repository, ModelError>) -> Result<Self, ModelError> {
        let (rest, digest) = match value.rsplit_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (value, None),
        };
        // A tag is a ':' after the last '/'; an earlier ':' belongs to a host port.
        let last_slash = rest.rfind('/').unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(at) => {
                let at = last_slash + at;
                (&rest[..at], Some(Tag::parse(&rest[at + 1..])?))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ModelError::Reference { value: shorten(value), reason: "has no repository name" });
        }
        Ok(Self { repository: repo(name)?, tag, digest })
    }

    pub fn by_digest(repository: Repository, digest: Digest) -> Self {
        Self { repository, tag: None, digest: Some(digest) }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl FromStr for ImageRef {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:9466ea46ccf2f7f96b9b966126194f830f1fcfd312b785bf5055a19ba5d1cee4";

    #[test]
    fn strict_table() {
        let with_both = format!("127.0.0.1:5001/demo/app:1.0@{D}");
        let by_digest = format!("gcr.io/a/b@{D}");
        // (input, expected (repository, tag, has digest) or None for a rejection)
        type Case<'a> = (&'a str, Option<(&'a str, Option<&'a str>, bool)>);
        let cases: Vec<Case<'_>> = vec![
            ("127.0.0.1:5001/demo/app:1.0", Some(("127.0.0.1:5001/demo/app", Some("1.0"), false))),
            ("127.0.0.1:5001/demo/app", Some(("127.0.0.1:5001/demo/app", None, false))),
            (&with_both, Some(("127.0.0.1:5001/demo/app", Some("1.0"), true))),
            (&by_digest, Some(("gcr.io/a/b", None, true))),
            ("nginx", None),
            ("gcr.io/a:bad tag", None),
            ("gcr.io/a@sha256:short", None),
            (":tag", None),
        ];
        for (input, want) in cases {
            let got = ImageRef::parse(input).ok();
            match (got, want) {
                (Some(r), Some((repo, tag, has_digest))) => {
                    assert_eq!(r.repository.to_string(), repo, "{input}");
                    assert_eq!(r.tag.as_ref().map(Tag::as_str), tag, "{input}");
                    assert_eq!(r.digest.is_some(), has_digest, "{input}");
                    assert_eq!(r.to_string(), input);
                }
                (None, None) => {}
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn docker_style() {
        let r = ImageRef::parse_docker_style("nginx:1.25").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:1.25");
        let r = ImageRef::parse_docker_style("localhost:5000/a").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/a");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = ImageRef::parse(&s);
            let _ = ImageRef::parse_docker_style(&s);
        }
    }
}
