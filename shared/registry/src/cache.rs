//! Manifests read (by digest, or by tag: the bytes are the manifest of their digest whatever
//! named them), or written, kept for a short while: content-addressed bytes cannot
//! change, so a promotion that reads a manifest to verify it does not read it again to copy it,
//! nor read back what it has just written to list its children.
//!
//! Only `GET` by digest is answered from here, with bytes that were checked against the digest
//! when they were read (or that the registry confirmed when they were written). Existence is not cached: a `HEAD` always asks the registry. Entries
//! expire after [`TTL`], and the cache holds at most [`MAX_BYTES`] of manifests (the oldest go
//! first), so a long-running pipeline neither grows nor trusts an old read for long.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ferry_model::{Digest, Repository};

use crate::manifest::RawManifest;

/// How long a read is reused: long enough for one promotion's verify and copy.
pub(crate) const TTL: Duration = Duration::from_secs(120);
/// At most this many bytes of manifests are kept.
pub(crate) const MAX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct ManifestCache {
    entries: HashMap<(Repository, Digest), (Instant, RawManifest)>,
    order: VecDeque<(Repository, Digest)>,
    bytes: usize,
}

impl ManifestCache {
    pub(crate) fn get(&mut self, repository: &Repository, digest: &Digest) -> Option<RawManifest> {
        let key = (repository.clone(), *digest);
        match self.entries.get(&key) {
            Some((at, raw)) if at.elapsed() < TTL => Some(raw.clone()),
            Some(_) => {
                self.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&mut self, repository: &Repository, raw: &RawManifest) {
        let size = raw.bytes.len();
        if size > MAX_BYTES / 16 {
            return;
        }
        let key = (repository.clone(), raw.digest);
        self.remove(&key);
        while self.bytes + size > MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, old)) = self.entries.remove(&oldest) {
                self.bytes -= old.bytes.len();
            }
        }
        self.entries.insert(key.clone(), (Instant::now(), raw.clone()));
        self.order.push_back(key);
        self.bytes += size;
    }

    fn remove(&mut self, key: &(Repository, Digest)) {
        if let Some((_, old)) = self.entries.remove(key) {
            self.bytes -= old.bytes.len();
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn raw(n: usize) -> RawManifest {
        let bytes = bytes::Bytes::from(vec![b'x'; n]);
        RawManifest { digest: Digest::of(&bytes), media_type: "application/json".into(), bytes }
    }

    #[test]
    fn a_read_is_kept_per_repository_and_the_oldest_go_first() {
        let (a, b) = (Repository::parse("r.example/a").unwrap(), Repository::parse("r.example/b").unwrap());
        let mut cache = ManifestCache::default();
        let small = raw(10);
        cache.insert(&a, &small);
        assert_eq!(cache.get(&a, &small.digest), Some(small.clone()));
        assert_eq!(cache.get(&b, &small.digest), None, "existence in another repository is not assumed");
        // Filling the cache pushes the oldest out, and the byte count stays within bounds.
        let big: Vec<RawManifest> = (0..20).map(|i| raw(MAX_BYTES / 16 - i)).collect();
        for m in &big {
            cache.insert(&a, m);
        }
        assert!(cache.bytes <= MAX_BYTES);
        assert_eq!(cache.get(&a, &small.digest), None);
        assert!(cache.get(&a, &big[19].digest).is_some());
        // Too large to keep at all.
        let huge = raw(MAX_BYTES / 16 + 1);
        cache.insert(&a, &huge);
        assert_eq!(cache.get(&a, &huge.digest), None);
    }
}
