//! OCI 1.1 referrers: the artifacts (signatures, attestations, SBOMs, ...) whose manifest names
//! a digest as its `subject`.
//!
//! Registries keep them in one of two ways:
//! - the **referrers API**, `GET /v2/<name>/referrers/<digest>` (Artifact Registry, ECR,
//!   Harbor ≥ 2.8, ACR, Artifactory, distribution 3 with the feature on): the registry indexes
//!   a referrer when its manifest is pushed, and says so with an `OCI-Subject` header;
//! - the **referrers tag schema** (CNCF distribution 2.x and 3.x by default, Docker Hub, GHCR):
//!   the client maintains an OCI index at tag `sha256-<hex>` listing the referrers.
//!
//! [`OciRegistry`](crate::OciRegistry) asks the API first, once per host, and remembers the
//! answer. A 404, or an answer that is not an image index, means the tag schema. Writing a
//! referrer on a tag-schema registry reads the tag index, merges, writes and reads it back:
//! an entry somebody else wrote is never dropped (the pure part is [`merge`]).

use std::collections::BTreeMap;

use ferry_model::{Digest, Tag};
use serde::{Deserialize, Serialize};

use crate::manifest::RawManifest;

pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The empty config of artifact manifests (`{}`).
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// One entry of a referrers index: a referrer manifest's descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// cosign writes entries without annotations; they are optional.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where a registry keeps referrers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrersMode {
    Api,
    TagSchema,
}

/// What writing a referrer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrerWrite {
    /// The registry indexed it itself (`OCI-Subject` in the answer).
    Indexed,
    /// Ferry added it to the `sha256-<hex>` tag index.
    Tagged,
    /// The tag index listed it already.
    AlreadyListed,
}

/// The tag of the referrers index for `subject`: `sha256-<hex>`.
pub fn tag_for(subject: &Digest) -> Tag {
    Tag::parse(&subject.tag_form()).expect("sha256-<64 hex> is a valid tag")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc {
    #[serde(default)]
    media_type: Option<String>,
    manifests: Option<Vec<Referrer>>,
}

/// Whether a tag listing of the repository already answers that `subject` has no referrers:
/// on a registry known to keep them in the `sha256-<hex>` tag index (`mode`, learnt at the first
/// lookup), that tag is not listed. Through the referrers API, only asking can tell.
pub fn listing_rules_out(
    mode: Option<ReferrersMode>,
    subject: &Digest,
    listed: impl Fn(&Tag) -> bool,
) -> bool {
    mode == Some(ReferrersMode::TagSchema) && !listed(&tag_for(subject))
}

/// The entries of a referrers index (an OCI image index), or why it is not one.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<Referrer>, String> {
    let doc: IndexDoc = serde_json::from_slice(bytes).map_err(|e| format!("not a referrers index: {e}"))?;
    if doc.media_type.as_deref().is_some_and(|m| m != OCI_INDEX_MEDIA_TYPE) {
        return Err(format!("not a referrers index: media type {:?}", doc.media_type.unwrap_or_default()));
    }
    doc.manifests.ok_or_else(|| "not a referrers index: no `manifests`".to_owned())
}

/// The bytes of a referrers index listing `entries`.
pub fn index_bytes(entries: &[Referrer]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: &'a [Referrer],
    }
    serde_json::to_vec(&Out { schema_version: 2, media_type: OCI_INDEX_MEDIA_TYPE, manifests: entries })
        .expect("a referrers index always serialises")
}

/// `existing` with each of `new` appended unless an entry with its digest is there already.
/// Nothing in `existing` is dropped or reordered.
pub fn merge(existing: &[Referrer], new: &[Referrer]) -> Vec<Referrer> {
    let mut out = existing.to_vec();
    for entry in new {
        if !out.iter().any(|e| e.digest == entry.digest) {
            out.push(entry.clone());
        }
    }
    out
}

/// The referrers index entry for a referrer manifest, and the digest it refers to: its
/// `artifactType`, else its config's media type (as the OCI spec says), and its annotations.
pub fn describe(manifest: &RawManifest) -> Result<(Referrer, Digest), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        artifact_type: Option<String>,
        #[serde(default)]
        config: Option<Config>,
        subject: Option<Subject>,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Config {
        media_type: String,
    }
    #[derive(Deserialize)]
    struct Subject {
        digest: Digest,
    }
    let doc: Doc = serde_json::from_slice(&manifest.bytes).map_err(|e| format!("not a manifest: {e}"))?;
    let subject = doc.subject.ok_or("the manifest has no `subject`")?.digest;
    let media_type = match manifest.media_type.as_str() {
        "" | "application/json" | "application/octet-stream" => {
            doc.media_type.unwrap_or_else(|| OCI_MANIFEST_MEDIA_TYPE.to_owned())
        }
        declared => declared.to_owned(),
    };
    let artifact_type = doc.artifact_type.or_else(|| doc.config.map(|c| c.media_type));
    Ok((
        Referrer {
            media_type,
            digest: manifest.digest,
            size: manifest.bytes.len() as u64,
            artifact_type,
            annotations: doc.annotations,
        },
        subject,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn entry(n: u8, artifact_type: Option<&str>) -> Referrer {
        Referrer {
            media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            digest: Digest::of(&[n]),
            size: u64::from(n),
            artifact_type: artifact_type.map(str::to_owned),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn merging_keeps_what_is_there_and_adds_what_is_new() {
        let (a, b, c) = (entry(1, Some("x")), entry(2, None), entry(3, Some("y")));
        let cases: Vec<(Vec<Referrer>, Vec<Referrer>, Vec<Referrer>)> = vec![
            (vec![], vec![a.clone()], vec![a.clone()]),
            (vec![a.clone()], vec![a.clone()], vec![a.clone()]),
            (vec![a.clone(), b.clone()], vec![c.clone()], vec![a.clone(), b.clone(), c.clone()]),
            // Somebody else's entries stay, in their order, whatever is merged in.
            (vec![c.clone(), a.clone()], vec![a.clone(), b.clone()], vec![c.clone(), a.clone(), b.clone()]),
        ];
        for (existing, new, expected) in cases {
            assert_eq!(merge(&existing, &new), expected);
        }
    }

    #[test]
    fn indexes_parse_with_or_without_annotations_and_round_trip() {
        // As cosign writes it: no annotations, no artifactType on some entries.
        let cosign = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":779,
                "artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json"}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":12,
                "annotations":{{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}}}]}}"#,
            Digest::of(b"a"),
            Digest::of(b"b")
        );
        let entries = parse_index(cosign.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].artifact_type.as_deref(),
            Some("application/vnd.dev.sigstore.bundle.v0.3+json")
        );
        assert!(entries[0].annotations.is_empty() && entries[1].artifact_type.is_none());
        assert_eq!(parse_index(&index_bytes(&entries)).unwrap(), entries);
        for bad in [
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#,
            r#"{"schemaVersion":2}"#,
            "<html>",
        ] {
            assert!(parse_index(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_referrer_manifest_is_described_by_its_artifact_type_or_config() {
        let subject = Digest::of(b"image");
        let with_type = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/spdx+json",
               "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{e}","size":2}},"layers":[],
               "subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":10}},
               "annotations":{{"k":"v"}}}}"#,
            e = Digest::of(b"{}")
        );
        let raw = |text: &str| RawManifest {
            digest: Digest::of(text.as_bytes()),
            media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            bytes: bytes::Bytes::copy_from_slice(text.as_bytes()),
        };
        let (entry, of) = describe(&raw(&with_type)).unwrap();
        assert_eq!(of, subject);
        assert_eq!(entry.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(entry.annotations.get("k").map(String::as_str), Some("v"));
        assert_eq!(entry.size, with_type.len() as u64);
        let config_only = with_type.replace(r#""artifactType":"application/spdx+json","#, "");
        assert_eq!(
            describe(&raw(&config_only)).unwrap().0.artifact_type.as_deref(),
            Some(EMPTY_CONFIG_MEDIA_TYPE)
        );
        let no_subject = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        assert!(describe(&raw(no_subject)).unwrap_err().contains("subject"));
    }
}
