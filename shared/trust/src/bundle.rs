//! Sigstore bundles (v0.3) attached as OCI 1.1 referrers, as cosign v3 writes and reads them
//! (cosign's `specs/BUNDLE_SPEC.md`).
//!
//! A bundle referrer is an OCI image manifest with `artifactType`
//! `application/vnd.dev.sigstore.bundle.v0.3+json`, the empty config, one layer holding the
//! bundle JSON, the signed image as `subject`, and the annotations
//! `dev.sigstore.bundle.content: dsse-envelope`, `dev.sigstore.bundle.predicateType` and
//! `org.opencontainers.image.created`. The bundle holds a DSSE envelope over an in-toto
//! statement about the image's digest, and its verification material: here a public-key hint
//! (base64 SHA-256 of the key's DER), since Ferry signs with a key and writes no
//! transparency-log entry (`cosign verify --key … --insecure-ignore-tlog` accepts that).
//!
//! Ferry writes two: a signature (predicate `https://sigstore.dev/cosign/sign/v1`, predicate
//! `{}`, what `cosign sign` v3 writes), and its promotion attestation. Each is written once per
//! key and predicate: an existing bundle by the same key for the same predicate is kept.

use bytes::Bytes;
use ferry_model::{Digest, Repository, TagOrDigest};
use ferry_registry::referrers::{EMPTY_CONFIG_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, Referrer};
use ferry_registry::{RawManifest, Registry, RegistryWrite};
use serde::Deserialize;
use serde_json::json;

use crate::artifacts::Appended;
use crate::cosign::{self, Envelope, IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT_V1, Statement};
use crate::error::TrustError;
use crate::keys::{SigningKey, VerificationKey, key_hint};

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Older bundle media types Ferry reads too.
pub const BUNDLE_MEDIA_TYPES: [&str; 3] = [
    BUNDLE_MEDIA_TYPE,
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];
/// The predicate of cosign v3's image signatures.
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
pub const CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
pub const PREDICATE_TYPE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// The bundle layer is small JSON; anything larger is refused when read.
const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;

/// The parts of a bundle Ferry checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub envelope: Option<Envelope>,
    /// `verificationMaterial.publicKey.hint`, for a key-signed bundle.
    pub key_hint: Option<String>,
    /// `verificationMaterial.certificate.rawBytes` (DER), for a keyless one.
    pub certificate: Option<Vec<u8>>,
    /// Signed keylessly: the material is a certificate or a certificate chain (v0.1/v0.2).
    pub keyless: bool,
    /// Whether the bundle carries transparency-log entries.
    pub tlog_entries: usize,
}

impl Bundle {
    /// Parses bundle JSON (v0.1 to v0.3, as protojson writes it).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc {
            media_type: String,
            #[serde(default)]
            verification_material: Option<Material>,
            #[serde(default)]
            dsse_envelope: Option<Envelope>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Material {
            #[serde(default)]
            public_key: Option<PublicKey>,
            #[serde(default)]
            certificate: Option<Certificate>,
            #[serde(default)]
            x509_certificate_chain: Option<serde_json::Value>,
            #[serde(default)]
            tlog_entries: Vec<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct PublicKey {
            #[serde(default)]
            hint: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Certificate {
            raw_bytes: String,
        }
        let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        if !BUNDLE_MEDIA_TYPES.contains(&doc.media_type.as_str()) {
            return Err(format!("not a Sigstore bundle: media type {:?}", doc.media_type));
        }
        let material = doc.verification_material.ok_or("the bundle has no verificationMaterial")?;
        Ok(Bundle {
            envelope: doc.dsse_envelope,
            key_hint: material.public_key.and_then(|k| k.hint),
            keyless: material.certificate.is_some() || material.x509_certificate_chain.is_some(),
            certificate: material.certificate.and_then(|c| cosign::unb64(&c.raw_bytes).ok()),
            tlog_entries: material.tlog_entries.len(),
        })
    }

    /// The statement, when the DSSE signature over it verifies with `key`.
    pub fn verified_statement(&self, key: &VerificationKey) -> Result<Statement, String> {
        let envelope = self.envelope.as_ref().ok_or("the bundle holds no DSSE envelope")?;
        envelope.verified_statement(std::slice::from_ref(key)).map(|(statement, _)| statement)
    }
}

/// The statement cosign v3 signs for an image signature.
pub fn signature_statement(digest: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"digest": {"sha256": digest.hex()}}],
        "predicateType": COSIGN_SIGN_PREDICATE_TYPE,
        "predicate": {},
    }))
    .expect("a statement serialises")
}

/// A bundle over `statement` (its exact bytes), signed with `key`.
pub async fn build(key: &SigningKey, statement: &[u8]) -> Result<Vec<u8>, TrustError> {
    let signature = key.sign(&cosign::pae(IN_TOTO_PAYLOAD_TYPE, statement)).await?;
    let hint =
        key_hint(key.public_key_pem()).ok_or_else(|| TrustError::Key("the public key is not PEM".into()))?;
    Ok(serde_json::to_vec(&json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "dsseEnvelope": {
            "payload": cosign::b64(statement),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": cosign::b64(&signature)}],
        },
    }))
    .expect("a bundle serialises"))
}

/// The referrer manifest for a bundle blob about `subject` (its digest, media type and size).
pub fn manifest(
    bundle: &[u8],
    subject: (&Digest, &str, u64),
    predicate_type: &str,
    created: &str,
) -> RawManifest {
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": Digest::of(bundle).to_string(), "size": bundle.len()}],
        "subject": {"mediaType": subject.1, "digest": subject.0.to_string(), "size": subject.2},
        "annotations": {
            CONTENT_ANNOTATION: "dsse-envelope",
            PREDICATE_TYPE_ANNOTATION: predicate_type,
            CREATED_ANNOTATION: created,
        },
    }))
    .expect("a manifest serialises");
    RawManifest {
        digest: Digest::of(&bytes),
        media_type: OCI_MANIFEST_MEDIA_TYPE.to_owned(),
        bytes: bytes.into(),
    }
}

/// One bundle found among a digest's referrers.
#[derive(Clone, Debug)]
pub struct Found {
    pub referrer: Digest,
    /// The predicate type its manifest's annotation names, if any.
    pub predicate_type: Option<String>,
    pub bundle: Result<Bundle, String>,
}

/// Every Sigstore bundle among the referrers of `digest` in `repository`: one referrers
/// lookup, then each bundle manifest and its layer.
pub async fn find<R: Registry>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<Found>, TrustError> {
    find_for(registry, repository, digest, None).await
}

/// [`find`], reading only the bundles that may be for `predicate_type`: a referrer whose
/// listing names another predicate type is not fetched (one look-up before each write reads
/// the listing and nothing else it does not need).
async fn find_for<R: Registry>(
    registry: &R,
    repository: &Repository,
    digest: &Digest,
    predicate_type: Option<&str>,
) -> Result<Vec<Found>, TrustError> {
    let listing = registry.referrers(repository, digest, None).await?;
    find_in(registry, repository, &listing, predicate_type).await
}

/// The bundles among `listing` (a digest's referrers, as listed), read as [`find_for`] does.
async fn find_in<R: Registry>(
    registry: &R,
    repository: &Repository,
    listing: &[Referrer],
    predicate_type: Option<&str>,
) -> Result<Vec<Found>, TrustError> {
    let mut found = Vec::new();
    for referrer in listing {
        let is_bundle = referrer.artifact_type.as_deref().is_some_and(|t| BUNDLE_MEDIA_TYPES.contains(&t));
        if !is_bundle {
            continue;
        }
        let listed_type = referrer.annotations.get(PREDICATE_TYPE_ANNOTATION);
        if predicate_type.is_some_and(|wanted| listed_type.is_some_and(|t| t != wanted)) {
            continue;
        }
        let predicate_type = listed_type.cloned();
        let bundle = read(registry, repository, &referrer.digest).await?;
        found.push(Found { referrer: referrer.digest, predicate_type, bundle });
    }
    Ok(found)
}

/// The bundle a referrer manifest holds (its first bundle layer), or why it cannot be read.
async fn read<R: Registry>(
    registry: &R,
    repository: &Repository,
    referrer: &Digest,
) -> Result<Result<Bundle, String>, TrustError> {
    let Some(manifest) = registry.get_manifest(repository, &TagOrDigest::Digest(*referrer)).await? else {
        return Ok(Err(format!("the referrer {referrer} is listed but missing")));
    };
    let content = manifest.content()?;
    let Some(layer) =
        content.blobs().into_iter().find(|b| BUNDLE_MEDIA_TYPES.contains(&b.media_type.as_str()))
    else {
        return Ok(Err(format!("the referrer {referrer} has no bundle layer")));
    };
    let Some(bytes) = registry.get_blob(repository, &layer.digest, MAX_BUNDLE_BYTES).await? else {
        return Ok(Err(format!("the bundle blob {} of {referrer} is missing", layer.digest)));
    };
    Ok(Bundle::parse(&bytes))
}

/// Whether `listing` (`digest`'s referrers as listed in `repository`) has a bundle about
/// `digest` for `predicate_type` signed by `key`.
async fn has_in<R: Registry>(
    registry: &R,
    repository: &Repository,
    listing: &[Referrer],
    digest: &Digest,
    predicate_type: &str,
    key: &VerificationKey,
) -> Result<bool, TrustError> {
    Ok(find_in(registry, repository, listing, Some(predicate_type)).await?.iter().any(|f| {
        f.predicate_type.as_deref().is_none_or(|p| p == predicate_type)
            && f.bundle.as_ref().is_ok_and(|b| {
                b.verified_statement(key)
                    .is_ok_and(|s| s.predicate_type == predicate_type && s.covers(digest))
            })
    }))
}

/// What [`write_all`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Per statement, in order.
    pub appended: Vec<Appended>,
    /// `digest`'s referrers as this write leaves them: the listing it went by, and what it
    /// added. A hint for the promotion's next step at this repository, not a read.
    pub listing: Vec<Referrer>,
}

/// Writes each of `statements` (predicate type, statement bytes) as a bundle referrer of
/// `digest` in `repository`, skipping a predicate for which a bundle by this key is listed:
/// one listing of `digest`'s referrers (or `listed`, what this promotion's previous step left
/// there, carried as a hint), then every new referrer listed in one update
/// ([`RegistryWrite::put_referrers`]: one tag index read-merge-write, nothing listed dropped).
pub async fn write_all<R: RegistryWrite>(
    registry: &R,
    key: &SigningKey,
    repository: &Repository,
    digest: &Digest,
    statements: &[(&str, &[u8])],
    listed: Option<Vec<Referrer>>,
) -> Result<Written, TrustError> {
    let verifier = key.verification_key()?;
    let mut listing = match listed {
        Some(listing) => listing,
        None => registry.referrers(repository, digest, None).await?,
    };
    let mut appended = Vec::with_capacity(statements.len());
    let mut manifests = Vec::new();
    let mut subject: Option<(String, u64)> = None;
    for (predicate_type, statement) in statements {
        if has_in(registry, repository, &listing, digest, predicate_type, &verifier).await? {
            appended.push(Appended::Unchanged);
            continue;
        }
        // The subject's descriptor: the manifest this promotion has just copied or read is
        // kept by the client, so this is rarely a request.
        let (media_type, size) = match &subject {
            Some(known) => known.clone(),
            None => {
                let raw = registry
                    .get_manifest(repository, &TagOrDigest::Digest(*digest))
                    .await?
                    .ok_or_else(|| TrustError::Image {
                        repository: repository.clone(),
                        digest: *digest,
                        reason: "is not there; no bundle is written".into(),
                    })?;
                subject.insert((raw.media_type.clone(), raw.bytes.len() as u64)).clone()
            }
        };
        let bundle = build(key, statement).await?;
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let manifest = manifest(&bundle, (digest, &media_type, size), predicate_type, &created);
        registry.put_blob(repository, Bytes::from(bundle)).await?;
        manifests.push(manifest);
        appended.push(Appended::Written);
    }
    if !manifests.is_empty() {
        registry.put_blob(repository, Bytes::from_static(b"{}")).await?;
        registry.put_referrers(repository, &manifests).await?;
        for manifest in &manifests {
            if let Ok((entry, _)) = ferry_registry::referrers::describe(manifest) {
                listing.push(entry);
            }
        }
    }
    Ok(Written { appended, listing })
}
