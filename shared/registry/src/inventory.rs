//! What a repository holds, read the way its registry lets one read it: one listing instead of
//! one `HEAD` per tag.
//!
//! - **The extended `tags/list`** of Container Registry and Artifact Registry (and any registry
//!   that serves the same shape): beside `tags`, a `manifest` map of digest →
//!   `{tag: [...], mediaType, imageSizeBytes, timeUploadedMs, ...}` and a `child` list of
//!   sub-repositories. Detected by the shape of the answer, not by the host: one request (or
//!   one per page) gives every tag's digest and every manifest the repository holds.
//! - **The OCI tag list** elsewhere: which tags exist, without digests; a tag that is not
//!   listed is absent, and a listed one still needs a `HEAD` for its digest.
//!
//! A listing is all or nothing: a page that fails (a 429 past the budget, a 5xx, a truncated
//! or malformed answer) fails the whole listing, and its callers leave what it would have
//! answered unchecked, never present and never missing.

use rustc_hash::{FxHashMap, FxHashSet};

use ferry_model::{Digest, Tag};

/// A registry's own listing API, outside the OCI API (ECR's `ListImages`, ...), for the hosts
/// configured to use one: what [`crate::Registry::inventory`] asks before the OCI listing.
pub trait InventorySource: Send + Sync + std::fmt::Debug {
    /// How the listing is read, for logs and `ferry config check` ("ECR ListImages in …").
    fn source(&self) -> String;

    /// The kind of listing it serves (its requests are counted under this name).
    fn kind(&self) -> InventoryKind;

    /// The inventory of `repository`, and how many requests it took. A failure of any page
    /// fails the listing (never a partial answer).
    fn list<'a>(
        &'a self,
        repository: &'a ferry_model::Repository,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Inventory, crate::RegistryError>> + Send + 'a>,
    >;
}

/// How a listing was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InventoryKind {
    /// ECR's `ListImages`: every tag with its digest (and untagged digests), 1,000 a page.
    EcrListImages,
    /// GCR's and Artifact Registry's extended `tags/list`: tags with their digests.
    ExtendedTagsList,
    /// Docker Hub's `/v2/namespaces/{ns}/repositories/{repo}/tags`: tags with their digests.
    DockerHubTags,
    /// Harbor's `/api/v2.0/projects/{p}/repositories/{r}/artifacts?with_tag=true`: every
    /// artifact (tagged or not) with its tags and the children of an index.
    HarborArtifacts,
    /// GitHub's packages API (`/orgs|users/{owner}/packages/container/{name}/versions`): every
    /// version (a manifest digest) with `metadata.container.tags`.
    GhcrVersions,
    /// Quay's `/api/v1/repository/{ns}/{repo}/tag/`: active tags with their manifest digests.
    QuayTags,
    /// ACR's `/acr/v1/{repo}/_manifests`: every manifest with its tags.
    AcrManifests,
    /// The OCI tag list: tags without digests.
    TagsList,
    /// The repository does not exist (the listing answered 404).
    Missing,
}

impl InventoryKind {
    pub fn name(self) -> &'static str {
        match self {
            InventoryKind::EcrListImages => "ECR ListImages",
            InventoryKind::ExtendedTagsList => "extended tags/list",
            InventoryKind::DockerHubTags => "Docker Hub tags API",
            InventoryKind::HarborArtifacts => "Harbor artifacts API",
            InventoryKind::GhcrVersions => "GitHub packages API",
            InventoryKind::QuayTags => "Quay tags API",
            InventoryKind::AcrManifests => "ACR manifests API",
            InventoryKind::TagsList => "OCI tags/list",
            InventoryKind::Missing => "missing",
        }
    }
}

/// What one listing says a repository holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub kind: InventoryKind,
    /// Every tag, with its digest when the listing carries digests.
    pub tags: FxHashMap<Tag, Option<Digest>>,
    /// Every manifest the repository holds, tagged or not, when the listing says
    /// (`ExtendedTagsList`; for `Missing`, none).
    pub digests: Option<FxHashSet<Digest>>,
    /// Sub-repositories (the extended list's `child`), as names relative to the repository.
    pub children: Vec<String>,
    /// Requests the listing took (pages).
    pub pages: usize,
}

impl Inventory {
    /// The listing of a repository that does not exist.
    pub fn missing() -> Self {
        Self {
            kind: InventoryKind::Missing,
            tags: FxHashMap::default(),
            digests: Some(FxHashSet::default()),
            children: Vec::new(),
            pages: 1,
        }
    }

    /// What `tag` points at, as far as the listing knows: `Some(Some(d))` listed at `d`,
    /// `Some(None)` known absent, `None` listed without a digest (a `HEAD` must tell).
    pub fn tag(&self, tag: &Tag) -> Option<Option<Digest>> {
        match self.tags.get(tag) {
            Some(Some(digest)) => Some(Some(*digest)),
            Some(None) => None,
            None => Some(None),
        }
    }

    /// Whether the repository holds `digest`: when the listing knows every manifest, or when a
    /// listed tag points at it.
    pub fn has(&self, digest: &Digest) -> Option<bool> {
        match &self.digests {
            Some(all) => Some(all.contains(digest)),
            // The plain tag list carries no digests: nothing to scan.
            None if self.kind == InventoryKind::TagsList => None,
            None => self.tags.values().any(|d| d.as_ref() == Some(digest)).then_some(true),
        }
    }
}

impl Inventory {
    /// An inventory from a listing API that gives every (tag, digest) pair and every digest
    /// (`ListImages` and the like). A tag at two digests is refused, as in [`fold`].
    pub fn from_pairs(
        kind: InventoryKind,
        tagged: impl IntoIterator<Item = (Tag, Digest)>,
        untagged: impl IntoIterator<Item = Digest>,
        pages: usize,
    ) -> Result<Inventory, String> {
        let mut tags: FxHashMap<Tag, Option<Digest>> = FxHashMap::default();
        let mut digests: FxHashSet<Digest> = untagged.into_iter().collect();
        for (tag, digest) in tagged {
            digests.insert(digest);
            if let Some(Some(other)) = tags.insert(tag.clone(), Some(digest))
                && other != digest
            {
                return Err(format!("the listing puts tag {} at two digests", tag.as_str()));
            }
        }
        Ok(Inventory { kind, tags, digests: Some(digests), children: Vec::new(), pages })
    }

    /// An inventory from a listing API that gives tags only (Docker Hub, Quay): which tags
    /// exist and where each points; a tag listed without a digest is `None` (a `HEAD` tells);
    /// whether an untagged digest is held stays unknown.
    pub fn from_tags(
        kind: InventoryKind,
        tagged: impl IntoIterator<Item = (Tag, Option<Digest>)>,
        pages: usize,
    ) -> Result<Inventory, String> {
        let mut tags: FxHashMap<Tag, Option<Digest>> = FxHashMap::default();
        for (tag, digest) in tagged {
            match tags.insert(tag.clone(), digest) {
                Some(Some(other)) if digest.is_some_and(|d| d != other) => {
                    return Err(format!("the listing puts tag {} at two digests", tag.as_str()));
                }
                Some(Some(other)) => {
                    tags.insert(tag, Some(other));
                }
                _ => {}
            }
        }
        Ok(Inventory { kind, tags, digests: None, children: Vec::new(), pages })
    }

    /// The inventory without its artifact tags, and those tags as [`ArtifactTags`]: what a
    /// caller keeps of a listing at scale, where artifact tags are most of the tags.
    pub fn split_artifacts(mut self) -> (Inventory, ArtifactTags) {
        let mut artifacts = ArtifactTags::default();
        self.tags.retain(|tag, _| !artifacts.insert(tag.as_str()));
        self.tags.shrink_to_fit();
        (self, artifacts)
    }
}

/// Which artifact tags a repository has (cosign's `sha256-<hex>.sig`, `.att`, `.sbom`, and the
/// referrers tag schema's `sha256-<hex>`), kept as one byte of flags per digest instead of one
/// string per tag: at registry.k8s.io's scale a status reads millions of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactTags(FxHashMap<Digest, u8>);

impl ArtifactTags {
    const SUFFIXES: [(&'static str, u8); 3] = [(".sig", 1), (".att", 2), (".sbom", 4)];
    const INDEX: u8 = 8;

    /// The digest and flag `tag` stands for, when it is an artifact tag.
    fn split(tag: &str) -> Option<(Digest, u8)> {
        let rest = tag.strip_prefix("sha256-")?;
        let (hex, flag) = Self::SUFFIXES
            .iter()
            .find_map(|(suffix, flag)| rest.strip_suffix(suffix).map(|hex| (hex, *flag)))
            .unwrap_or((rest, Self::INDEX));
        // Lower-case hex only, as digests are written (no allocation: millions of tags).
        let nibble = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some((Digest::from_bytes(bytes), flag))
    }

    /// Records `tag` if it is an artifact tag; says whether it was.
    pub fn insert(&mut self, tag: &str) -> bool {
        match Self::split(tag) {
            Some((digest, flag)) => {
                *self.0.entry(digest).or_default() |= flag;
                true
            }
            None => false,
        }
    }

    /// Whether the repository has `tag` (false for a tag that is not an artifact tag).
    pub fn contains(&self, tag: &str) -> bool {
        Self::split(tag).is_some_and(|(digest, flag)| self.0.get(&digest).is_some_and(|f| f & flag != 0))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<&'a str> for ArtifactTags {
    fn from_iter<I: IntoIterator<Item = &'a str>>(tags: I) -> Self {
        let mut artifacts = ArtifactTags::default();
        for tag in tags {
            artifacts.insert(tag);
        }
        artifacts
    }
}

/// One page of a tag list, plain or extended.
#[derive(serde::Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub manifest: Option<FxHashMap<String, ManifestInfo>>,
    #[serde(default)]
    pub child: Option<Vec<String>>,
}

/// An entry of the extended list's `manifest` map (only the fields Ferry uses).
#[derive(serde::Deserialize)]
pub(crate) struct ManifestInfo {
    #[serde(default)]
    pub tag: Vec<String>,
}

/// Folds the pages of one listing into an [`Inventory`]. The extended shape is recognised when
/// any page carries a `manifest` map; a listed tag that the map does not place is an error of
/// the registry's answer, not an absent tag.
pub(crate) fn fold(pages: Vec<Page>) -> Result<Inventory, String> {
    let extended = pages.iter().any(|p| p.manifest.is_some());
    let mut tags: FxHashMap<Tag, Option<Digest>> = FxHashMap::default();
    let mut digests = FxHashSet::default();
    let mut children = Vec::new();
    let n_pages = pages.len();
    for page in pages {
        for text in page.tags.unwrap_or_default() {
            match Tag::parse(&text) {
                Ok(tag) => {
                    tags.entry(tag).or_insert(None);
                }
                Err(e) => tracing::debug!(error = %e, "a listed tag Ferry cannot name; skipped"),
            }
        }
        for (digest, info) in page.manifest.unwrap_or_default() {
            let digest =
                Digest::parse(&digest).map_err(|e| format!("the manifest map lists {digest:?}: {e}"))?;
            digests.insert(digest);
            for text in info.tag {
                if let Ok(tag) = Tag::parse(&text) {
                    match tags.insert(tag.clone(), Some(digest)) {
                        Some(Some(other)) if other != digest => {
                            return Err(format!("the manifest map puts tag {} at two digests", tag.as_str()));
                        }
                        _ => {}
                    }
                }
            }
        }
        children.extend(page.child.unwrap_or_default());
    }
    if extended && let Some((tag, _)) = tags.iter().find(|(_, d)| d.is_none()) {
        return Err(format!("tag {} is listed, and the manifest map does not place it", tag.as_str()));
    }
    children.sort();
    children.dedup();
    Ok(Inventory {
        kind: if extended { InventoryKind::ExtendedTagsList } else { InventoryKind::TagsList },
        tags,
        digests: extended.then_some(digests),
        children,
        pages: n_pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> Page {
        serde_json::from_str(json).unwrap()
    }

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn the_extended_list_gives_every_tag_its_digest_and_every_manifest() {
        // The shape GCR and Artifact Registry answer (go-containerregistry's google.Tags).
        let inventory = fold(vec![page(&format!(
            r#"{{"child":["sub"],"manifest":{{
                "{A}":{{"imageSizeBytes":"1024","layerId":"","mediaType":"application/vnd.oci.image.index.v1+json","tag":["v1","latest"],"timeCreatedMs":"0","timeUploadedMs":"1700000000000"}},
                "{B}":{{"imageSizeBytes":"512","layerId":"","mediaType":"application/vnd.oci.image.manifest.v1+json","tag":[],"timeCreatedMs":"0","timeUploadedMs":"1700000000000"}}
            }},"name":"k8s-artifacts-prod/pause","tags":["latest","v1"]}}"#
        ))])
        .unwrap();
        assert_eq!(inventory.kind, InventoryKind::ExtendedTagsList);
        let tag = |t: &str| Tag::parse(t).unwrap();
        let (a, b) = (Digest::parse(A).unwrap(), Digest::parse(B).unwrap());
        assert_eq!(inventory.tag(&tag("v1")), Some(Some(a)));
        assert_eq!(inventory.tag(&tag("v2")), Some(None), "not listed: absent");
        assert_eq!(inventory.has(&b), Some(true), "an untagged child is listed");
        assert_eq!(inventory.children, ["sub"]);
    }

    #[test]
    fn artifact_tags_are_kept_as_flags_per_digest() {
        let hex = &A["sha256:".len()..];
        let inventory = fold(vec![page(&format!(
            r#"{{"name":"a","tags":["v1","sha256-{hex}.sig","sha256-{hex}","sha256-{hex}.sig.bak","sha256-abc.att"]}}"#
        ))])
        .unwrap();
        let (rest, artifacts) = inventory.split_artifacts();
        let mut left: Vec<&str> = rest.tags.keys().map(Tag::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [&format!("sha256-{hex}.sig.bak"), "sha256-abc.att", "v1"],
            "only artifact tags leave"
        );
        assert!(artifacts.contains(&format!("sha256-{hex}.sig")));
        assert!(artifacts.contains(&format!("sha256-{hex}")), "the referrers tag index");
        assert!(!artifacts.contains(&format!("sha256-{hex}.att")));
        assert!(!artifacts.contains("v1"));
        let b = &B["sha256:".len()..];
        assert!(!artifacts.contains(&format!("sha256-{b}.sig")));
    }

    #[test]
    fn the_plain_list_knows_which_tags_exist_but_not_where_they_point() {
        let inventory =
            fold(vec![page(r#"{"name":"a","tags":["1.0"]}"#), page(r#"{"name":"a","tags":["2.0"]}"#)])
                .unwrap();
        assert_eq!(inventory.kind, InventoryKind::TagsList);
        assert_eq!(inventory.tag(&Tag::parse("1.0").unwrap()), None, "a HEAD must tell");
        assert_eq!(inventory.tag(&Tag::parse("3.0").unwrap()), Some(None));
        assert_eq!(inventory.has(&Digest::parse(A).unwrap()), None);
        assert_eq!(inventory.pages, 2);
    }

    #[test]
    fn an_inconsistent_extended_list_is_refused() {
        assert!(
            fold(vec![page(&format!(r#"{{"manifest":{{"{A}":{{"tag":[]}}}},"tags":["v1"]}}"#))]).is_err()
        );
        assert!(
            fold(vec![page(&format!(
                r#"{{"manifest":{{"{A}":{{"tag":["v1"]}},"{B}":{{"tag":["v1"]}}}},"tags":["v1"]}}"#
            ))])
            .is_err()
        );
        assert!(fold(vec![page(r#"{"manifest":{"md5:x":{"tag":[]}},"tags":[]}"#)]).is_err());
    }
}
