//! Cosign artifacts built by hand, independently of Ferry's signer: fixtures for staging
//! images ("signed and attested by the build"), and the checks that verify what Ferry wrote.
//!
//! Signing here uses the `p256` crate directly and manifests are written as literal JSON, so
//! a bug in Ferry's cosign code cannot make its own output look right.

use base64::Engine as _;
use ferry_model::Digest;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use serde_json::json;

use crate::seed::Seeder;

/// An ECDSA P-256 key for fixtures.
#[derive(Clone, Debug)]
pub struct TestKey {
    signing: p256::ecdsa::SigningKey,
}

impl TestKey {
    pub fn generate() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
        Self { signing: p256::ecdsa::SigningKey::from_pkcs8_der(&pair.serialize_der()).expect("signing key") }
    }

    pub fn public_pem(&self) -> String {
        self.signing.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).expect("public key PEM")
    }

    /// A DER signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.signing.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// DSSE PAE, written out again here on purpose.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Pushes a cosign artifact manifest (tag `sha256-<hex>.<suffix>`) with one layer.
pub(crate) async fn push_artifact(
    seeder: &Seeder,
    repo: &str,
    digest: &Digest,
    suffix: &str,
    layer_media_type: &str,
    layer: &[u8],
    annotations: serde_json::Value,
) -> Digest {
    let layer_digest = seeder.blob(repo, layer).await;
    let config = serde_json::to_vec(&json!({"architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]}}))
    .expect("config");
    let config_digest = seeder.blob(repo, &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest.to_string()},
        "layers": [{"mediaType": layer_media_type, "size": layer.len(), "digest": layer_digest.to_string(), "annotations": annotations}],
    }))
    .expect("manifest");
    let tag = format!("{}.{suffix}", digest.tag_form());
    seeder.manifest(repo, &tag, "application/vnd.oci.image.manifest.v1+json", &manifest).await
}

/// What `cosign sign --key` pushes: a `.sig` with one simple-signing layer.
pub async fn sign_image(
    seeder: &Seeder,
    repo: &str,
    digest: &Digest,
    docker_reference: &str,
    key: &TestKey,
) -> Digest {
    let payload = simple_signing_payload(digest, docker_reference);
    let signature = b64(&key.sign(&payload));
    push_artifact(
        seeder,
        repo,
        digest,
        "sig",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        &payload,
        json!({"dev.cosignproject.cosign/signature": signature}),
    )
    .await
}

/// cosign's simple-signing payload for `digest`, naming `docker_reference`.
pub fn simple_signing_payload(digest: &Digest, docker_reference: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {"identity": {"docker-reference": docker_reference},
                     "image": {"docker-manifest-digest": digest.to_string()},
                     "type": "cosign container image signature"},
        "optional": null,
    }))
    .expect("payload")
}

/// What `cosign attest --key --type <predicate>` pushes: a `.att` with one DSSE layer.
pub async fn attest_image(
    seeder: &Seeder,
    repo: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate: serde_json::Value,
    key: &TestKey,
) -> Digest {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repo, "digest": {"sha256": digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .expect("statement");
    let signature = key.sign(&pae("application/vnd.in-toto+json", &statement));
    let envelope = serde_json::to_vec(&json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": b64(&statement),
        "signatures": [{"keyid": "", "sig": b64(&signature)}],
    }))
    .expect("envelope");
    push_artifact(
        seeder,
        repo,
        digest,
        "att",
        "application/vnd.dsse.envelope.v1+json",
        &envelope,
        json!({"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}),
    )
    .await
}

/// Verifies a DER ECDSA P-256 signature with the `openssl` command: an implementation that
/// shares no code with Ferry.
pub fn openssl_verifies(public_pem: &str, message: &[u8], der_signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, msg, sig) = (dir.path().join("key.pem"), dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&key, public_pem).expect("write key");
    std::fs::write(&msg, message).expect("write message");
    std::fs::write(&sig, der_signature).expect("write signature");
    let openssl = crate::require_binary("openssl", "openssl");
    std::process::Command::new(openssl)
        .args(["dgst", "-sha256", "-verify"])
        .arg(&key)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Checks that `repo` in the registry behind `seeder` holds a cosign signature of `digest`
/// (`sha256-<hex>.sig`) by the key `public_pem`: a simple-signing layer whose payload names the
/// digest and whose signature annotation verifies with `openssl`. Nothing of Ferry's is used.
pub async fn verify_signature(
    seeder: &Seeder,
    repo: &str,
    digest: &Digest,
    public_pem: &str,
) -> Result<(), String> {
    let tag = format!("{}.sig", digest.tag_form());
    let manifest =
        seeder.get_manifest(repo, &tag).await.ok_or_else(|| format!("{repo}:{tag} does not exist"))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("{repo}:{tag} is not JSON: {e}"))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    for layer in layers {
        if layer["mediaType"] != "application/vnd.dev.cosign.simplesigning.v1+json" {
            continue;
        }
        let (Some(layer_digest), Some(signature)) =
            (layer["digest"].as_str(), layer["annotations"]["dev.cosignproject.cosign/signature"].as_str())
        else {
            continue;
        };
        let payload = seeder.get_blob(repo, layer_digest).await;
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else { continue };
        let names_digest = serde_json::from_slice::<serde_json::Value>(&payload)
            .is_ok_and(|p| p["critical"]["image"]["docker-manifest-digest"] == digest.to_string());
        if names_digest && openssl_verifies(public_pem, &payload, &signature) {
            return Ok(());
        }
    }
    Err(format!("{repo}:{tag} has no layer signed by the key for {digest}"))
}

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The Sigstore bundle (v0.3) cosign v3 writes for a key-signed DSSE statement about `digest`,
/// without a transparency-log entry: `verificationMaterial.publicKey.hint` is the base64
/// SHA-256 of the key's DER, and the envelope's signature covers the PAE.
pub fn bundle(digest: &Digest, predicate_type: &str, predicate: serde_json::Value, key: &TestKey) -> Vec<u8> {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .expect("statement");
    let signature = key.sign(&pae("application/vnd.in-toto+json", &statement));
    let der = key.signing.verifying_key().to_public_key_der().expect("public key DER");
    let hint = b64(&sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(der.as_bytes())));
    serde_json::to_vec(&json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "dsseEnvelope": {
            "payload": b64(&statement),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": b64(&signature)}],
        },
    }))
    .expect("bundle")
}

/// What `cosign sign --key` (v3) or `cosign attest --key --new-bundle-format` pushes: a bundle
/// referrer of `subject`, with cosign's annotations.
pub async fn bundle_referrer(
    seeder: &Seeder,
    repo: &str,
    subject: &crate::seed::Pushed,
    predicate_type: &str,
    predicate: serde_json::Value,
    key: &TestKey,
) -> crate::seed::Pushed {
    let bytes = bundle(&subject.digest, predicate_type, predicate, key);
    attach_bundle(seeder, repo, subject, &bytes, predicate_type).await
}

/// Pushes `bundle` (its JSON) as a referrer of `subject`, with cosign v3's annotations. The
/// caller lists it in the referrers tag index when the registry needs that
/// ([`Seeder::list_referrer`]).
pub async fn attach_bundle(
    seeder: &Seeder,
    repo: &str,
    subject: &crate::seed::Pushed,
    bundle: &[u8],
    predicate_type: &str,
) -> crate::seed::Pushed {
    seeder
        .referrer(
            repo,
            subject,
            BUNDLE_MEDIA_TYPE,
            bundle,
            &[
                ("dev.sigstore.bundle.content", "dsse-envelope"),
                ("dev.sigstore.bundle.predicateType", predicate_type),
                ("org.opencontainers.image.created", "2026-11-29T00:00:00Z"),
            ],
        )
        .await
}

/// Checks a Sigstore bundle (the JSON bytes) with `openssl` and nothing of Ferry's: a DSSE
/// envelope whose signature over the PAE verifies with `public_pem`, whose in-toto statement
/// names `digest` as its subject and has `predicate_type`.
pub fn verify_bundle(
    bundle: &[u8],
    digest: &Digest,
    predicate_type: &str,
    public_pem: &str,
) -> Result<(), String> {
    let doc: serde_json::Value = serde_json::from_slice(bundle).map_err(|e| format!("not JSON: {e}"))?;
    if doc["mediaType"] != BUNDLE_MEDIA_TYPE {
        return Err(format!("media type {}", doc["mediaType"]));
    }
    let envelope = &doc["dsseEnvelope"];
    let engine = base64::engine::general_purpose::STANDARD;
    let payload =
        engine.decode(envelope["payload"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let payload_type = envelope["payloadType"].as_str().unwrap_or_default();
    let statement: serde_json::Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    if statement["predicateType"] != predicate_type {
        return Err(format!("predicate type {}", statement["predicateType"]));
    }
    let names = statement["subject"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["digest"]["sha256"] == digest.hex()));
    if !names {
        return Err(format!("the statement does not name {digest}"));
    }
    let verified = envelope["signatures"].as_array().into_iter().flatten().any(|s| {
        engine
            .decode(s["sig"].as_str().unwrap_or_default())
            .is_ok_and(|sig| openssl_verifies(public_pem, &pae(payload_type, &payload), &sig))
    });
    if verified { Ok(()) } else { Err("no signature verifies with the key".into()) }
}

/// The bundles listed in the `sha256-<hex>` referrers tag index of `subject` whose manifest
/// names `predicate_type` (read with plain HTTP and JSON, nothing of Ferry's).
pub async fn bundles_in_tag_index(
    seeder: &Seeder,
    repo: &str,
    subject: &Digest,
    predicate_type: &str,
) -> Vec<Vec<u8>> {
    let Some(index) = seeder.get_manifest(repo, &subject.tag_form()).await else { return Vec::new() };
    let index: serde_json::Value = serde_json::from_slice(&index).expect("a referrers index");
    let mut out = Vec::new();
    for entry in index["manifests"].as_array().cloned().unwrap_or_default() {
        let Some(digest) = entry["digest"].as_str() else { continue };
        let Some(manifest) = seeder.get_manifest(repo, digest).await else { continue };
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("a manifest");
        if manifest["artifactType"] != BUNDLE_MEDIA_TYPE
            || manifest["annotations"]["dev.sigstore.bundle.predicateType"] != predicate_type
            || manifest["subject"]["digest"] != subject.to_string()
        {
            continue;
        }
        if let Some(layer) = manifest["layers"][0]["digest"].as_str() {
            out.push(seeder.get_blob(repo, layer).await);
        }
    }
    out
}

/// Whether the referrers tag index of `digest` lists a cosign v3 bundle signature of it that
/// verifies with `public_pem` (read and checked by hand, with openssl).
pub async fn has_bundle_signature(seeder: &Seeder, repo: &str, digest: &Digest, public_pem: &str) -> bool {
    bundles_in_tag_index(seeder, repo, digest, COSIGN_SIGN_PREDICATE)
        .await
        .iter()
        .any(|b| verify_bundle(b, digest, COSIGN_SIGN_PREDICATE, public_pem).is_ok())
}
