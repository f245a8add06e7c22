//! `ferry import`: digest-pinned edges written as a kpromo thin-manifest tree. Pure; the
//! caller plans the input (which pins every tag to the digest it has now at the source) and
//! writes the files.
//!
//! Each edge `source → destination:tag` is split into a registry prefix and an image name
//! that both ends share (their longest common path suffix), so
//! `gcr.io/k8s-staging-foo/bar → registry.k8s.io/bar` is `name: bar` under the registries
//! `gcr.io/k8s-staging-foo` (src) and `registry.k8s.io`. Edges with the same source prefix and
//! the same destination prefixes (the primary first) share one subproject.
//!
//! Two things kpromo's schema cannot say are written as Ferry extensions, and counted so that
//! the caller can say so:
//! - a rename (Rancher's `docker.io/amazon/aws-cli → docker.io/rancher/mirrored-amazon-aws-cli`):
//!   the image's `source-name` is its repository under the source registry;
//! - a source that is not trusted (Docker Hub, an images-list source): `trusted: false` on the
//!   `src: true` registry, so its signatures are never carried.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ferry_model::{Digest, Host, RepoPath, Repository, Tag};

use crate::kpromo::{DigestTags, ImageDmap, write_images_yaml};

/// One planned edge, pinned to its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    pub source: Repository,
    pub trusted: bool,
    pub digest: Digest,
    pub destination: Repository,
    /// Whether the destination is its entry's primary (signing happens there).
    pub primary: bool,
    pub tag: Option<Tag>,
    /// The entry the edge came from (its origin, `file:line`): destinations are written
    /// together only when one entry named them together, so that each primary stays one.
    pub entry: String,
}

/// One subproject of the tree: `manifests/<sub>/promoter-manifest.yaml` and
/// `images/<sub>/images.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subproject {
    pub name: String,
    pub manifest: String,
    pub images: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub subprojects: Vec<Subproject>,
    /// Images written with `source-name` (renamed between source and destination).
    pub renamed: usize,
    /// Subprojects whose source is written `trusted: false`.
    pub untrusted: usize,
    /// Tagless edges of a digest that also has tags there: its tags promote it anyway.
    pub folded_tagless: usize,
}

/// How one edge splits: registry prefixes and the name under them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Split {
    source: (String, Option<String>),
    destination: (String, Option<String>),
    name: String,
    source_name: Option<String>,
}

fn prefix(host: &Host, segments: &[&str]) -> (String, Option<String>) {
    (host.to_string(), (!segments.is_empty()).then(|| segments.join("/")))
}

/// How many trailing path components `source` and `destination` share.
fn common_suffix(source: &Repository, destination: &Repository) -> usize {
    let s = source.path().as_str().split('/').rev();
    let d = destination.path().as_str().split('/').rev();
    s.zip(d).take_while(|(a, b)| a == b).count()
}

/// Splits an edge so that its name is the last `common` components (at most what the two
/// share): every destination of one entry is split alike, so they stay one manifest.
fn split(source: &Repository, destination: &Repository, common: usize) -> Split {
    let s: Vec<&str> = source.path().as_str().split('/').collect();
    let d: Vec<&str> = destination.path().as_str().split('/').collect();
    let common = common.min(common_suffix(source, destination));
    if common == 0 {
        // A rename: the source registry is the host alone and the whole path its source-name.
        return Split {
            source: (source.host().to_string(), None),
            destination: prefix(destination.host(), &d[..d.len() - 1]),
            name: d[d.len() - 1].to_owned(),
            source_name: Some(source.path().as_str().to_owned()),
        };
    }
    Split {
        source: prefix(source.host(), &s[..s.len() - common]),
        destination: prefix(destination.host(), &d[..d.len() - common]),
        name: d[d.len() - common..].join("/"),
        source_name: None,
    }
}

fn registry_text((host, path): &(String, Option<String>)) -> String {
    match path {
        Some(path) => format!("{host}/{path}"),
        None => host.clone(),
    }
}

/// The destination lists one (digest, tag) needs, entry by entry: each primary heads a list of
/// its own (formats such as Rancher's `config.yaml` make one entry per target, each signed);
/// an entry's other destinations (kpromo's mirrors) follow its primary.
fn destination_lists<P: Clone + Ord>(entries: BTreeMap<String, Vec<(P, bool)>>) -> BTreeSet<Vec<P>> {
    let mut lists = BTreeSet::new();
    for (_, mut destinations) in entries {
        destinations.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let primaries = destinations.iter().filter(|(_, primary)| *primary).count();
        if primaries <= 1 {
            lists.insert(destinations.into_iter().map(|(d, _)| d).collect());
        } else {
            lists.extend(destinations.into_iter().map(|(d, _)| vec![d]));
        }
    }
    lists
}

/// A directory name from a registry path: lowercase letters, digits and dashes.
fn directory_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() { "images".to_owned() } else { trimmed.to_owned() }
}

/// The tree for `edges`. `header` is written as a comment at the top of every manifest (what
/// was imported, and when the digests were read).
pub fn thin_manifests(edges: &[Pinned], header: &str) -> Tree {
    // (source prefix, trusted, name, source-name) -> (digest, tag) -> destination prefixes,
    // primary first.
    type Prefix = (String, Option<String>);
    type PerEntry = BTreeMap<String, Vec<(Prefix, bool)>>;
    let mut per_image: BTreeMap<
        (Prefix, bool, String, Option<String>),
        BTreeMap<(Digest, Option<Tag>), PerEntry>,
    > = BTreeMap::new();
    // Per entry, the name length all its destinations share with the source.
    let mut shared: BTreeMap<&str, usize> = BTreeMap::new();
    for edge in edges {
        let common = common_suffix(&edge.source, &edge.destination);
        shared.entry(edge.entry.as_str()).and_modify(|c| *c = (*c).min(common)).or_insert(common);
    }
    for edge in edges {
        let s = split(&edge.source, &edge.destination, shared.get(edge.entry.as_str()).copied().unwrap_or(0));
        let key = (s.source, edge.trusted, s.name, s.source_name);
        let destinations = per_image
            .entry(key)
            .or_default()
            .entry((edge.digest, edge.tag.clone()))
            .or_default()
            .entry(edge.entry.clone())
            .or_default();
        if !destinations.iter().any(|(d, _)| *d == s.destination) {
            destinations.push((s.destination, edge.primary));
        }
    }
    // Group by (source prefix, trusted, destination list) -> image -> digest -> tags.
    type Group = (Prefix, bool, Vec<Prefix>);
    type Images = BTreeMap<(String, Option<String>), BTreeMap<Digest, BTreeSet<Option<Tag>>>>;
    let mut groups: BTreeMap<Group, Images> = BTreeMap::new();
    for ((source, trusted, name, source_name), by_edge) in per_image {
        for ((digest, tag), entries) in by_edge {
            for list in destination_lists(entries) {
                groups
                    .entry((source.clone(), trusted, list))
                    .or_default()
                    .entry((name.clone(), source_name.clone()))
                    .or_default()
                    .entry(digest)
                    .or_default()
                    .insert(tag.clone());
            }
        }
    }
    let mut tree = Tree::default();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for ((source, trusted, destinations), images) in groups {
        let base = directory_name(&registry_text(&source));
        let n = used.entry(base.clone()).or_default();
        *n += 1;
        let name = if *n == 1 { base } else { format!("{base}-{n}") };
        let mut manifest = String::new();
        for line in header.lines() {
            let _ = writeln!(manifest, "# {line}");
        }
        let _ = writeln!(manifest, "registries:");
        let _ = writeln!(manifest, "- name: {}", registry_text(&source));
        let _ = writeln!(manifest, "  src: true");
        if !trusted {
            tree.untrusted += 1;
            let _ = writeln!(
                manifest,
                "  trusted: false  # Ferry: signatures from this source are never carried"
            );
        }
        for destination in &destinations {
            let _ = writeln!(manifest, "- name: {}", registry_text(destination));
        }
        let mut dmaps = Vec::new();
        for ((image, source_name), digests) in images {
            let (Ok(image), source_name) =
                (RepoPath::parse(&image), source_name.map(|s| RepoPath::parse(&s)))
            else {
                continue;
            };
            let source_name = match source_name {
                Some(Ok(s)) => Some(s),
                Some(Err(_)) => continue,
                None => None,
            };
            if source_name.is_some() {
                tree.renamed += 1;
            }
            let digests = digests
                .into_iter()
                .map(|(digest, tags)| {
                    let named: Vec<Tag> = tags.iter().flatten().cloned().collect();
                    if !named.is_empty() && tags.contains(&None) {
                        tree.folded_tagless += 1;
                    }
                    DigestTags { digest, tags: named, line: 0 }
                })
                .collect();
            dmaps.push(ImageDmap { name: image, source_name, line: 0, digests });
        }
        tree.subprojects.push(Subproject { name, manifest, images: write_images_yaml(&dmaps) });
    }
    tree
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    /// One edge of the entry (source, digest).
    fn edge(
        source: &str,
        digest: &str,
        destination: &str,
        primary: bool,
        tag: Option<&str>,
        trusted: bool,
    ) -> Pinned {
        Pinned {
            source: Repository::parse(source).unwrap(),
            trusted,
            digest: Digest::parse(digest).unwrap(),
            destination: Repository::parse(destination).unwrap(),
            primary,
            tag: tag.map(|t| Tag::parse(t).unwrap()),
            entry: format!("{source}@{digest}"),
        }
    }

    /// The same edge, from the entry named `entry`.
    fn edge_of(entry: &str, edge: Pinned) -> Pinned {
        Pinned { entry: entry.to_owned(), ..edge }
    }

    #[test]
    fn edges_become_subprojects_with_renames_and_untrusted_sources_marked() {
        let edges = [
            // Rancher: a rename to two targets, the first primary.
            edge(
                "docker.io/amazon/aws-cli",
                D1,
                "docker.io/rancher/mirrored-amazon-aws-cli",
                true,
                Some("2.1"),
                false,
            ),
            edge(
                "docker.io/amazon/aws-cli",
                D1,
                "registry.suse.com/rancher/mirrored-amazon-aws-cli",
                false,
                Some("2.1"),
                false,
            ),
            // kpromo-shaped: same name at both ends, a tagless and a tagged digest.
            edge("gcr.io/k8s-staging-foo/bar", D1, "registry.k8s.io/bar", true, Some("v1"), true),
            edge("gcr.io/k8s-staging-foo/bar", D1, "registry.k8s.io/bar", true, None, true),
            edge("gcr.io/k8s-staging-foo/bar", D2, "registry.k8s.io/bar", true, None, true),
        ];
        let tree = thin_manifests(&edges, "imported");
        let names: Vec<&str> = tree.subprojects.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["docker-io", "gcr-io-k8s-staging-foo"]);
        assert_eq!(
            tree.subprojects[0].manifest,
            "# imported\nregistries:\n- name: docker.io\n  src: true\n  trusted: false  # Ferry: signatures from this source are never carried\n\
             - name: docker.io/rancher\n- name: registry.suse.com/rancher\n"
        );
        assert_eq!(
            tree.subprojects[0].images,
            format!(
                "- name: mirrored-amazon-aws-cli\n  source-name: amazon/aws-cli\n  dmap:\n    \"{D1}\": [\"2.1\"]\n"
            )
        );
        assert_eq!(
            tree.subprojects[1].manifest,
            "# imported\nregistries:\n- name: gcr.io/k8s-staging-foo\n  src: true\n- name: registry.k8s.io\n"
        );
        assert_eq!(
            tree.subprojects[1].images,
            format!("- name: bar\n  dmap:\n    \"{D1}\": [\"v1\"]\n    \"{D2}\": []\n")
        );
        assert_eq!((tree.renamed, tree.untrusted, tree.folded_tagless), (1, 1, 1));
    }

    #[test]
    fn different_destination_sets_are_different_subprojects() {
        let edges = [
            edge("stg.example/rancher/a", D1, "prime.example/rancher/a", true, Some("1"), true),
            edge("stg.example/rancher/b", D2, "prime.example/rancher/b", true, Some("1"), true),
            edge("stg.example/rancher/b", D2, "mirror.example/rancher/b", false, Some("1"), true),
        ];
        let tree = thin_manifests(&edges, "x");
        let names: Vec<&str> = tree.subprojects.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["stg-example", "stg-example-2"]);
        assert!(tree.subprojects[0].images.contains("- name: rancher/a"), "{}", tree.subprojects[0].images);
        assert!(tree.subprojects[1].manifest.ends_with("- name: prime.example\n- name: mirror.example\n"));
    }

    /// Rancher's config.yaml makes one entry per target repository, each its own primary
    /// (signed there): they stay apart, one subproject each.
    #[test]
    fn primaries_of_separate_entries_stay_primaries() {
        let edges = [
            edge_of(
                "config.yaml:2",
                edge(
                    "docker.io/amazon/aws-cli",
                    D1,
                    "a.example/rancher/mirrored-amazon-aws-cli",
                    true,
                    Some("2.1"),
                    false,
                ),
            ),
            edge_of(
                "config.yaml:2",
                edge(
                    "docker.io/amazon/aws-cli",
                    D1,
                    "b.example/rancher/mirrored-amazon-aws-cli",
                    true,
                    Some("2.1"),
                    false,
                ),
            ),
        ];
        let tree = thin_manifests(&edges, "x");
        let manifests: Vec<&str> = tree.subprojects.iter().map(|s| s.manifest.as_str()).collect();
        assert_eq!(manifests.len(), 2, "{manifests:#?}");
        assert!(
            manifests[0].ends_with("- name: a.example/rancher\n")
                && manifests[1].ends_with("- name: b.example/rancher\n")
        );
    }
}
