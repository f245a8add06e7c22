//! Manifests as bytes, and what Ferry needs to know about them: their children (for an index)
//! or their blobs (for an image or artifact). Parsing uses oci-client's manifest model, which
//! fits OCI images and indexes as well as Docker schema2 manifests and manifest lists; the raw
//! bytes, never a re-serialisation, are what Ferry stores and pushes.

use bytes::Bytes;
use ferry_model::Digest;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageIndex, OciImageManifest,
};

use crate::error::RegistryError;

/// The deprecated OCI artifact manifest; still accepted so that registries return it as is.
pub const OCI_ARTIFACT_MEDIA_TYPE: &str = "application/vnd.oci.artifact.manifest.v1+json";

/// Every manifest type Ferry asks for. Asking for fewer would let a registry convert a
/// manifest list into one platform's manifest, silently changing the digest.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.artifact.manifest.v1+json";

/// Distribution refuses manifests over 4 MiB; so does Ferry.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

/// The most distinct children an index may list for Ferry to promote it (a limit on the work
/// one message can cause; real multi-platform indexes list a few dozen at most).
pub const MAX_INDEX_CHILDREN: usize = 10_000;

/// The deepest nesting of indexes Ferry follows. The OCI ecosystem nests two or three levels.
pub const MAX_INDEX_DEPTH: usize = 8;

/// What a HEAD of a manifest tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// A manifest's exact bytes, already checked against its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A reference from a manifest to content: a child manifest, a config or a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// `os/arch[/variant]` for an index child, when given.
    pub platform: Option<String>,
}

/// The parts of a manifest that copying and planning care about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestContent {
    /// An OCI index or a Docker manifest list.
    Index { children: Vec<Descriptor> },
    /// An image or artifact manifest: its config and layers are blobs.
    Image { config: Option<Descriptor>, layers: Vec<Descriptor>, subject: Option<Descriptor> },
}

impl ManifestContent {
    /// Every blob this manifest references directly (config first, then layers).
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match self {
            ManifestContent::Index { .. } => Vec::new(),
            ManifestContent::Image { config, layers, .. } => config.iter().chain(layers.iter()).collect(),
        }
    }

    /// An image's config blob (`None` for an index, or an image without one).
    pub fn config(&self) -> Option<&Descriptor> {
        match self {
            ManifestContent::Image { config, .. } => config.as_ref(),
            ManifestContent::Index { .. } => None,
        }
    }

    pub fn children(&self) -> &[Descriptor] {
        match self {
            ManifestContent::Index { children } => children,
            ManifestContent::Image { .. } => &[],
        }
    }
}

impl RawManifest {
    /// Checks that `bytes` hash to `expected` and wraps them.
    pub fn verified(
        expected: Digest,
        media_type: String,
        bytes: Bytes,
        what: &str,
    ) -> Result<Self, RegistryError> {
        let actual = Digest::of(&bytes);
        if actual != expected {
            return Err(RegistryError::DigestMismatch { what: what.to_owned(), expected, actual });
        }
        Ok(Self { digest: expected, media_type, bytes })
    }

    /// Parses the manifest's references. The media type comes from the response's
    /// `Content-Type`, falling back to the document's own `mediaType` field.
    pub fn content(&self) -> Result<ManifestContent, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidResponse {
            url: format!("manifest {}", self.digest),
            reason,
        };
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            blobs: Option<serde_json::Value>,
        }
        let probe: Probe =
            serde_json::from_slice(&self.bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let media_type = match self.media_type.as_str() {
            "" | "application/json" | "application/octet-stream" => {
                probe.media_type.clone().unwrap_or_default()
            }
            declared => declared.to_owned(),
        };
        if is_index_media_type(&media_type) || (media_type.is_empty() && probe.manifests.is_some()) {
            let index: OciImageIndex = serde_json::from_slice(&self.bytes)
                .map_err(|e| invalid(format!("not an image index: {e}")))?;
            let children = index
                .manifests
                .iter()
                .map(|m| {
                    let platform = m.platform.as_ref().map(|p| {
                        let mut text = format!("{}/{}", p.os, p.architecture);
                        if let Some(variant) = p.variant.as_deref().filter(|v| !v.is_empty()) {
                            text.push('/');
                            text.push_str(variant);
                        }
                        text
                    });
                    descriptor(&m.media_type, &m.digest, m.size, platform).map_err(&invalid)
                })
                .collect::<Result<_, _>>()?;
            return Ok(ManifestContent::Index { children });
        }
        if media_type == OCI_ARTIFACT_MEDIA_TYPE || probe.blobs.is_some() {
            #[derive(serde::Deserialize)]
            struct Artifact {
                #[serde(default)]
                blobs: Vec<OciDescriptor>,
                subject: Option<OciDescriptor>,
            }
            let artifact: Artifact = serde_json::from_slice(&self.bytes)
                .map_err(|e| invalid(format!("not an artifact manifest: {e}")))?;
            return Ok(ManifestContent::Image {
                config: None,
                layers: artifact
                    .blobs
                    .iter()
                    .map(|d| oci_descriptor(d).map_err(&invalid))
                    .collect::<Result<_, _>>()?,
                subject: artifact
                    .subject
                    .as_ref()
                    .map(|d| oci_descriptor(d).map_err(&invalid))
                    .transpose()?,
            });
        }
        if media_type.is_empty()
            || media_type == OCI_IMAGE_MEDIA_TYPE
            || media_type == IMAGE_MANIFEST_MEDIA_TYPE
        {
            let image: OciImageManifest = serde_json::from_slice(&self.bytes)
                .map_err(|e| invalid(format!("not an image manifest: {e}")))?;
            return Ok(ManifestContent::Image {
                config: Some(oci_descriptor(&image.config).map_err(&invalid)?),
                layers: image
                    .layers
                    .iter()
                    .map(|d| oci_descriptor(d).map_err(&invalid))
                    .collect::<Result<_, _>>()?,
                subject: image.subject.as_ref().map(|d| oci_descriptor(d).map_err(&invalid)).transpose()?,
            });
        }
        Err(invalid(format!("unsupported manifest media type {media_type:?}")))
    }
}

fn oci_descriptor(d: &OciDescriptor) -> Result<Descriptor, String> {
    descriptor(&d.media_type, &d.digest, d.size, None)
}

fn descriptor(
    media_type: &str,
    digest: &str,
    size: i64,
    platform: Option<String>,
) -> Result<Descriptor, String> {
    let digest = Digest::parse(digest).map_err(|e| e.to_string())?;
    let size = u64::try_from(size).map_err(|_| format!("descriptor {digest} has a negative size"))?;
    Ok(Descriptor { media_type: media_type.to_owned(), digest, size, platform })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Classify as _;

    fn raw(media_type: &str, json: &str) -> RawManifest {
        RawManifest {
            digest: Digest::of(json.as_bytes()),
            media_type: media_type.into(),
            bytes: Bytes::from(json.to_owned()),
        }
    }

    const A: &str = "sha256:aa6883e194bb8c3a2b4fc0775f1966cfce3747194449bd822f4846c378c92603";
    const B: &str = "sha256:a80337c74d126913cc67d80604410abe410969b857744fdbfd3b8a7a1f90ef0d";

    #[test]
    fn content_table() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{A}","size":345,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{B}","size":345}}]}}"#
        );
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{A}","size":10}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{B}","size":20}}]}}"#
        );
        let artifact_cfg = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.dev.cosign.artifact.sig.v1+json","digest":"{A}","size":2}},
            "layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{B}","size":3}}]}}"#
        );
        let cases: Vec<(&str, String, Result<(usize, usize), &str>)> = vec![
            (OCI_IMAGE_INDEX_MEDIA_TYPE, index.clone(), Ok((2, 0))),
            ("", index.clone(), Ok((2, 0))),
            (IMAGE_MANIFEST_MEDIA_TYPE, image.clone(), Ok((0, 2))),
            (OCI_IMAGE_MEDIA_TYPE, artifact_cfg, Ok((0, 2))),
            ("text/plain", image.clone(), Err("unsupported manifest media type")),
            (OCI_IMAGE_MEDIA_TYPE, "{".into(), Err("not JSON")),
            (OCI_IMAGE_MEDIA_TYPE, image.replace(A, "sha256:abc"), Err("invalid digest")),
            (OCI_IMAGE_MEDIA_TYPE, image.replace("\"size\":20", "\"size\":-1"), Err("negative size")),
        ];
        for (media_type, json, want) in cases {
            let got = raw(media_type, &json).content();
            match (got, want) {
                (Ok(c), Ok((children, blobs))) => {
                    assert_eq!((c.children().len(), c.blobs().len()), (children, blobs), "{media_type}");
                }
                (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
                (got, want) => panic!("{media_type}: got {got:?}, want {want:?}"),
            }
        }
        let ManifestContent::Index { children } = raw("", &index).content().unwrap() else { panic!() };
        assert_eq!(children[0].platform.as_deref(), Some("linux/arm64/v8"));
    }

    #[test]
    fn verified_rejects_other_bytes() {
        let bytes = Bytes::from_static(b"{}");
        let err = RawManifest::verified(Digest::parse(A).unwrap(), "x".into(), bytes, "m").unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Verification);
    }
}
