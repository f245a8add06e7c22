//! The cosign formats Ferry reads and writes, built and parsed here and nowhere else.
//! `docs/formats.md` describes them for people.
//!
//! - A signature lives at tag `sha256-<hex>.sig` in the image's repository: an OCI manifest
//!   whose layers are simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`),
//!   each annotated `dev.cosignproject.cosign/signature: <base64 ECDSA signature over the
//!   payload bytes>`.
//! - An attestation lives at `sha256-<hex>.att`: layers of DSSE envelopes
//!   (`application/vnd.dsse.envelope.v1+json`) carrying in-toto statements, each annotated
//!   with its `predicateType`. The DSSE signature covers the PAE of the payload.
//! - `sha256-<hex>.sbom` holds SBOMs (`cosign attach sbom`); Ferry only copies them.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use ferry_model::{Digest, Repository, Tag};
use ferry_registry::{ManifestContent, RawManifest};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
pub const IN_TOTO_STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The predicate type of Ferry's promotion attestation (see docs/formats.md).
pub const PROMOTION_PREDICATE_TYPE: &str = "https://ferry-promoter.dev/attestation/promotion/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
pub const COSIGN_VULN_V1: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";

/// The kinds of cosign artifact tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    Signature,
    Attestation,
    Sbom,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 3] =
        [ArtifactKind::Signature, ArtifactKind::Attestation, ArtifactKind::Sbom];

    pub fn suffix(self) -> &'static str {
        match self {
            ArtifactKind::Signature => "sig",
            ArtifactKind::Attestation => "att",
            ArtifactKind::Sbom => "sbom",
        }
    }

    /// `sha256-<hex>.sig` and friends.
    pub fn tag_for(self, digest: &Digest) -> Tag {
        Tag::parse(&format!("{}.{}", digest.tag_form(), self.suffix()))
            .expect("sha256-<64 hex>.<suffix> is a valid tag")
    }
}

/// The simple-signing payload cosign signs:
/// `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},"type":T},"optional":O}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    #[serde(default)]
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: ImageId,
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageId {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// The payload for `digest` as published at `repository` (cosign's docker-reference is the
    /// repository, without tag or digest).
    pub fn new(repository: &Repository, digest: &Digest) -> Self {
        Self {
            critical: Critical {
                identity: Identity { docker_reference: repository.to_string() },
                image: ImageId { docker_manifest_digest: digest.to_string() },
                type_name: SIMPLE_SIGNING_TYPE.to_owned(),
            },
            optional: None,
        }
    }

    /// The exact bytes that are signed and stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a simple-signing payload always serialises")
    }
}

/// One layer of a signature, attestation or SBOM manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    pub fn signature(&self) -> Option<&str> {
        self.annotations.get(SIGNATURE_ANNOTATION).map(String::as_str)
    }

    pub fn predicate_type(&self) -> Option<&str> {
        self.annotations.get(PREDICATE_TYPE_ANNOTATION).map(String::as_str)
    }

    fn to_json(&self) -> serde_json::Value {
        let mut value =
            json!({"mediaType": self.media_type, "size": self.size, "digest": self.digest.to_string()});
        if !self.annotations.is_empty() {
            value["annotations"] = json!(self.annotations);
        }
        value
    }
}

/// Reads the layers of a cosign artifact manifest.
pub fn layers_of(manifest: &RawManifest) -> Result<Vec<Layer>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        #[serde(default)]
        layers: Vec<LayerJson>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LayerJson {
        media_type: String,
        digest: String,
        size: u64,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    if let Ok(ManifestContent::Index { .. }) = manifest.content() {
        return Err("is an index, not a signature manifest".into());
    }
    let parsed: Manifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| format!("is not an OCI manifest: {e}"))?;
    parsed
        .layers
        .into_iter()
        .map(|l| {
            Ok(Layer {
                media_type: l.media_type,
                digest: Digest::parse(&l.digest).map_err(|e| e.to_string())?,
                size: l.size,
                annotations: l.annotations,
            })
        })
        .collect()
}

/// A cosign artifact manifest over `layers`, with the config blob cosign writes (an empty image
/// config whose `rootfs.diff_ids` are the layer digests). Returns (config bytes, manifest).
pub fn artifact_manifest(layers: &[Layer]) -> (Bytes, RawManifest) {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
    .expect("config JSON");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": OCI_CONFIG_MEDIA_TYPE, "size": config.len(), "digest": Digest::of(&config).to_string()},
        "layers": layers.iter().map(Layer::to_json).collect::<Vec<_>>(),
    }))
    .expect("manifest JSON");
    let raw = RawManifest {
        digest: Digest::of(&manifest),
        media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        bytes: manifest.into(),
    };
    (config.into(), raw)
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the signature over the PAE.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// The in-toto statement, when a signature over its PAE verifies with one of `keys`, with
    /// that key. The one DSSE check, for `.att` layers and Sigstore bundles alike.
    pub fn verified_statement<'k>(
        &self,
        keys: &'k [crate::keys::VerificationKey],
    ) -> Result<(Statement, &'k crate::keys::VerificationKey), String> {
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(format!("payload type {:?} is not in-toto", self.payload_type));
        }
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        let key = self
            .signatures
            .iter()
            .filter_map(|s| unb64(&s.sig).ok())
            .find_map(|sig| crate::keys::first_verifying(keys, &message, &sig))
            .ok_or("the envelope does not verify with any configured key")?;
        let statement =
            serde_json::from_slice(&payload).map_err(|e| format!("not an in-toto statement: {e}"))?;
        Ok((statement, key))
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.payload)
            .map_err(|_| "the DSSE payload is not base64".into())
    }
}

/// An in-toto statement (v1 or v0.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// cosign v3's signature statements name no subject.
    #[serde(default)]
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    /// Whether one subject names `digest`.
    pub fn covers(&self, digest: &Digest) -> bool {
        let hex = digest.hex();
        self.subject.iter().any(|s| s.digest.get("sha256").is_some_and(|d| d.eq_ignore_ascii_case(&hex)))
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| "not base64".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE specification's test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn simple_signing_json_shape() {
        let repo = Repository::parse("prod.example/app").unwrap();
        let digest = Digest::of(b"x");
        let bytes = SimpleSigning::new(&repo, &digest).to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["critical"]["type"], SIMPLE_SIGNING_TYPE);
        assert_eq!(value["critical"]["image"]["docker-manifest-digest"], digest.to_string());
        assert_eq!(value["critical"]["identity"]["docker-reference"], "prod.example/app");
        assert!(value["optional"].is_null());
    }

    #[test]
    fn artifact_manifest_round_trips_its_layers() {
        let layer = Layer {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(),
            digest: Digest::of(b"payload"),
            size: 7,
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), "c2ln".to_owned())]),
        };
        let (config, manifest) = artifact_manifest(std::slice::from_ref(&layer));
        assert_eq!(layers_of(&manifest).unwrap(), vec![layer.clone()]);
        let value: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        assert_eq!(value["config"]["digest"], Digest::of(&config).to_string());
        assert_eq!(manifest.digest, Digest::of(&manifest.bytes));
        assert_eq!(
            ArtifactKind::Signature.tag_for(&layer.digest).as_str(),
            format!("{}.sig", layer.digest.tag_form())
        );
    }
}
