//! Promotion edges.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::name::Repository;
use crate::tag::Tag;

/// One promotion: the manifest `digest` in `source` must exist in `destination`, and if `tag`
/// is set, `destination:tag` must point at it. `tag: None` is a tagless (digest-only) edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub source: Repository,
    pub digest: Digest,
    pub destination: Repository,
    pub tag: Option<Tag>,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} -> {}", self.source, self.digest, self.destination)?;
        match &self.tag {
            Some(tag) => write!(f, ":{tag}"),
            None => write!(f, " (tagless)"),
        }
    }
}

/// Where a piece of desired state came from: a file and line, or an event. Shown next to every
/// problem so that a reviewer can find the line to fix.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    /// A file path, or a description such as `event 839b9f93-…`.
    pub source: Arc<str>,
    /// 1-based line number, or 0 when there is none.
    pub line: u32,
}

impl Origin {
    pub fn new(source: impl Into<Arc<str>>, line: u32) -> Self {
        Self { source: source.into(), line }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.source),
            line => write!(f, "{}:{line}", self.source),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
