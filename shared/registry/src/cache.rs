//! Content read or written a moment ago, kept for a short while: content-addressed bytes
//! cannot change.
//!
//! - **Manifests** (read by digest, or by tag: the bytes are the manifest of their digest
//!   whatever named them; or written), per repository, so a promotion that reads a manifest to
//!   verify it does not read it again to copy it, nor read back what it has just written to
//!   list its children. Only `GET` by digest is answered from here; existence is not cached: a
//!   `HEAD` always asks the registry.
//! - **Small blobs** (read and checked, or uploaded), by digest alone: a blob's bytes are the
//!   same wherever it is. They are a source of bytes for an upload (the replicators copy to the
//!   mirrors what the copier, the signer and the attester have just written at the primary),
//!   never evidence that a repository holds them: a `GET` or `HEAD` of a blob always asks.
//!
//! Every entry was checked against its digest when it was read (or the registry confirmed it
//! when it was written). Entries expire after [`TTL`], and each cache holds a bounded number of
//! bytes (the oldest go first), so a long-running pipeline neither grows nor trusts an old read
//! for long.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_model::{Digest, Repository};

use crate::manifest::RawManifest;

/// How long an entry is reused: long enough for one promotion's verify, copy and replication.
pub(crate) const TTL: Duration = Duration::from_secs(120);
/// At most this many bytes of manifests are kept.
pub(crate) const MAX_BYTES: usize = 32 * 1024 * 1024;
/// At most this many bytes of blobs are kept.
pub(crate) const MAX_BLOB_BYTES: usize = 64 * 1024 * 1024;
/// Blobs up to this size are kept (configs, signature payloads, attestations, bundles, small
/// layers); larger ones are always streamed from their source.
pub(crate) const MAX_KEPT_BLOB: usize = 1024 * 1024;

/// What an entry weighs against its cache's bound.
pub(crate) trait Weight: Clone {
    fn weight(&self) -> usize;
}

impl Weight for RawManifest {
    fn weight(&self) -> usize {
        self.bytes.len()
    }
}

impl Weight for Bytes {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// Entries kept for [`TTL`], at most `max_bytes` of them, none above `max_entry`.
#[derive(Debug)]
pub(crate) struct Kept<K, V> {
    entries: HashMap<K, (Instant, V)>,
    order: VecDeque<K>,
    bytes: usize,
    max_bytes: usize,
    max_entry: usize,
}

/// Manifests by (repository, digest).
pub(crate) type ManifestCache = Kept<(Repository, Digest), RawManifest>;
/// Small blobs by digest.
pub(crate) type BlobCache = Kept<Digest, Bytes>;

impl Default for ManifestCache {
    fn default() -> Self {
        Kept::new(MAX_BYTES, MAX_BYTES / 16)
    }
}

impl Default for BlobCache {
    fn default() -> Self {
        Kept::new(MAX_BLOB_BYTES, MAX_KEPT_BLOB)
    }
}

impl<K: Clone + Eq + Hash, V: Weight> Kept<K, V> {
    fn new(max_bytes: usize, max_entry: usize) -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new(), bytes: 0, max_bytes, max_entry }
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        match self.entries.get(key) {
            Some((at, value)) if at.elapsed() < TTL => Some(value.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    /// Whether `key` is kept and fresh, without copying it out.
    pub(crate) fn holds(&mut self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        let size = value.weight();
        if size > self.max_entry {
            return;
        }
        self.remove(&key);
        while self.bytes + size > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some((_, old)) = self.entries.remove(&oldest) {
                self.bytes -= old.weight();
            }
        }
        self.entries.insert(key.clone(), (Instant::now(), value));
        self.order.push_back(key);
        self.bytes += size;
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, old)) = self.entries.remove(key) {
            self.bytes -= old.weight();
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
        cache.insert((a.clone(), small.digest), small.clone());
        assert_eq!(cache.get(&(a.clone(), small.digest)), Some(small.clone()));
        assert_eq!(cache.get(&(b, small.digest)), None, "existence in another repository is not assumed");
        // Filling the cache pushes the oldest out, and the byte count stays within bounds.
        let big: Vec<RawManifest> = (0..20).map(|i| raw(MAX_BYTES / 16 - i)).collect();
        for m in &big {
            cache.insert((a.clone(), m.digest), m.clone());
        }
        assert!(cache.bytes <= MAX_BYTES);
        assert_eq!(cache.get(&(a.clone(), small.digest)), None);
        assert!(cache.get(&(a.clone(), big[19].digest)).is_some());
        // Too large to keep at all.
        let huge = raw(MAX_BYTES / 16 + 1);
        cache.insert((a.clone(), huge.digest), huge.clone());
        assert_eq!(cache.get(&(a, huge.digest)), None);
    }

    #[test]
    fn small_blobs_are_kept_by_digest_and_large_ones_never() {
        let mut cache = BlobCache::default();
        let small = Bytes::from(vec![1u8; 100]);
        let limit = Bytes::from(vec![2u8; MAX_KEPT_BLOB]);
        let large = Bytes::from(vec![3u8; MAX_KEPT_BLOB + 1]);
        for b in [&small, &limit, &large] {
            cache.insert(Digest::of(b), b.clone());
        }
        assert_eq!(cache.get(&Digest::of(&small)), Some(small));
        assert!(cache.holds(&Digest::of(&limit)));
        assert!(!cache.holds(&Digest::of(&large)));
        // Within its bound, whatever goes in.
        for i in 0..100u8 {
            cache.insert(Digest::of(&[i; 7]), Bytes::from(vec![i; MAX_KEPT_BLOB]));
        }
        assert!(cache.bytes <= MAX_BLOB_BYTES);
    }
}
