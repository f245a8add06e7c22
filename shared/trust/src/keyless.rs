//! Keyless verification: a Sigstore bundle signed with a short-lived Fulcio certificate, checked
//! offline against a `trusted_root.json` and a certificate identity and OIDC issuer, the way
//! `cosign verify --certificate-identity[-regexp] --certificate-oidc-issuer[-regexp]` does.
//!
//! The cryptography is `sigstore-verify`'s ([`sigstore_verify::Verifier`]): the certificate
//! chain up to a Fulcio CA of the trusted root, valid at the log's verified integrated time; the
//! embedded SCT against the root's CT logs; the Rekor entry (inclusion proof with a signed
//! checkpoint, or the signed entry timestamp) and its consistency with the bundle; the DSSE
//! signature with the certificate's key; and the statement's subject against the image digest.
//! Ferry adds what cosign's flags add on top: the identity and issuer matched exactly, or by an
//! anchored regular expression, and the result named for the report (who signed, which root).

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_model::Digest;

use crate::cosign::Statement;

/// A `trusted_root.json` (Sigstore's `TrustedRoot`), prepared for verification.
#[derive(Clone)]
pub struct TrustedRoot {
    /// Where it came from, for reports (the file path as configured).
    pub label: String,
    verifier: Arc<sigstore_verify::Verifier>,
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedRoot").field("label", &self.label).finish_non_exhaustive()
    }
}

impl TrustedRoot {
    /// Parses a trusted root and prepares its keys and CAs; malformed or unusable material is
    /// an error here, before any image is read.
    pub fn from_json(json: &str, label: impl Into<String>) -> Result<Self, String> {
        let root = sigstore_trust_root::TrustedRoot::from_json(json)
            .map_err(|e| format!("not a Sigstore trusted root: {e}"))?;
        let verifier = sigstore_verify::Verifier::new(&root)
            .map_err(|e| format!("the trusted root cannot be used: {e}"))?;
        Ok(TrustedRoot { label: label.into(), verifier: Arc::new(verifier) })
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let json = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_json(&json, path.display().to_string()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Sigstore's public-good production root as `sigstore-trust-root` embeds it (a newer
    /// crate version carries a newer root).
    pub fn production() -> Result<Self, String> {
        Self::from_json(
            sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT,
            "Sigstore public-good (embedded)",
        )
    }

    /// Sigstore's staging root, as embedded.
    pub fn staging() -> Result<Self, String> {
        Self::from_json(sigstore_trust_root::SIGSTORE_STAGING_TRUSTED_ROOT, "Sigstore staging (embedded)")
    }

    /// Verifies a bundle signed with a managed key (PEM, SubjectPublicKeyInfo) about the
    /// artifact `digest`: the signature with the key, and the transparency log entry and any
    /// timestamps against this root, as for a keyless bundle.
    pub fn verify_with_key(&self, bundle_json: &[u8], digest: &Digest, key_pem: &str) -> Result<(), String> {
        let bundle = parse_bundle(bundle_json)?;
        let key =
            sigstore_types::DerPublicKey::from_pem(key_pem).map_err(|e| format!("the public key: {e}"))?;
        let subject = sigstore_types::Sha256Hash::from_hex(&digest.hex())
            .map_err(|e| format!("digest {digest}: {e}"))?;
        let policy = sigstore_verify::PublicKeyVerificationPolicy::new(key);
        self.verifier
            .verify(sigstore_types::Artifact::from_digest(subject), &bundle, &policy)
            .map(|_| ())
            .map_err(|e| format!("verification with the key against {} failed: {e}", self.label))
    }
}

/// How a certificate claim (identity or issuer) must read: exactly this text, or matching an
/// anchored regular expression (cosign's `-regexp` flags; Ferry anchors them, so
/// `^https://github.com/acme/` cannot match `https://evil.example/?https://github.com/acme/`).
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Regexp(regex::Regex),
}

impl Matcher {
    /// An anchored regular expression: the whole claim must match.
    pub fn regexp(pattern: &str) -> Result<Self, String> {
        regex::Regex::new(&format!("^(?:{pattern})$")).map(Matcher::Regexp).map_err(|e| e.to_string())
    }

    pub fn matches(&self, claim: &str) -> bool {
        match self {
            Matcher::Exact(expected) => claim == expected,
            Matcher::Regexp(pattern) => pattern.is_match(claim),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(text) => write!(f, "{text:?}"),
            Matcher::Regexp(pattern) => write!(f, "/{}/", pattern.as_str()),
        }
    }
}

/// Who may sign keylessly for a source: a trusted root, a certificate identity and an issuer.
#[derive(Clone, Debug)]
pub struct KeylessPolicy {
    pub root: TrustedRoot,
    pub identity: Matcher,
    pub issuer: Matcher,
}

/// Who signed a keyless bundle, as verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeylessSigner {
    pub identity: String,
    pub issuer: String,
    /// The trusted root's label.
    pub root: String,
}

impl std::fmt::Display for KeylessSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "certificate of {} issued by {} (trusted root {})", self.identity, self.issuer, self.root)
    }
}

impl KeylessPolicy {
    /// Verifies a keyless DSSE bundle about `digest`: everything `sigstore-verify` checks, then
    /// the identity against this policy's matcher or one of `also_identities` (exact), and the
    /// issuer. Returns the verified statement and who signed it.
    pub fn verify_bundle(
        &self,
        bundle_json: &[u8],
        digest: &Digest,
        also_identities: &[String],
    ) -> Result<(Statement, KeylessSigner), String> {
        let subject = sigstore_types::Sha256Hash::from_hex(&digest.hex())
            .map_err(|e| format!("digest {digest}: {e}"))?;
        let bundle = parse_bundle(bundle_json)?;
        let signer = self.verify(&bundle, sigstore_types::Artifact::from_digest(subject), also_identities)?;
        let sigstore_types::SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
            return Err("the bundle holds no DSSE envelope".into());
        };
        let statement: Statement = serde_json::from_slice(envelope.payload.as_bytes())
            .map_err(|e| format!("not an in-toto statement: {e}"))?;
        if !statement.covers(digest) {
            return Err("the statement's subjects do not include this digest".into());
        }
        Ok((statement, signer))
    }

    /// Verifies any keyless Sigstore bundle about the artifact `digest`: a message signature
    /// over it, or a DSSE envelope whose statement names it (as [`Self::verify_bundle`]).
    /// Bundles not about OCI images go through here: sigstore-conformance's cases.
    pub fn verify_artifact_bundle(
        &self,
        bundle_json: &[u8],
        digest: &Digest,
    ) -> Result<KeylessSigner, String> {
        let bundle = parse_bundle(bundle_json)?;
        if let sigstore_types::SignatureContent::DsseEnvelope(_) = &bundle.content {
            return self.verify_bundle(bundle_json, digest, &[]).map(|(_, signer)| signer);
        }
        let subject = sigstore_types::Sha256Hash::from_hex(&digest.hex())
            .map_err(|e| format!("digest {digest}: {e}"))?;
        self.verify(&bundle, sigstore_types::Artifact::from_digest(subject), &[])
    }

    /// Verifies a legacy keyless `.sig` layer (cosign before v3): the simple-signing `payload`,
    /// its signature annotation, and the certificate, chain and Rekor bundle annotations. They
    /// are the parts of a Sigstore bundle v0.1 (a message signature with a `hashedrekord`
    /// entry and its signed entry timestamp), which is what is verified.
    pub fn verify_legacy_signature(
        &self,
        payload: &[u8],
        annotations: &BTreeMap<String, String>,
    ) -> Result<KeylessSigner, String> {
        use sha2::Digest as _;
        let signature = annotations
            .get(crate::cosign::SIGNATURE_ANNOTATION)
            .ok_or("a keyless .sig layer has no signature annotation")?;
        let content = serde_json::json!({"messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": crate::cosign::b64(&sha2::Sha256::digest(payload))},
            "signature": signature,
        }});
        let bundle = parse_bundle(&legacy_bundle(content, annotations)?)?;
        self.verify(&bundle, sigstore_types::Artifact::from_blob(payload), &[])
    }

    /// Verifies a legacy keyless `.att` layer (`cosign attest` before v3): its DSSE envelope
    /// with the certificate, chain and Rekor bundle annotations (an `intoto` or `dsse` entry),
    /// as the bundle v0.1 they make up; then as [`Self::verify_bundle`].
    pub fn verify_legacy_attestation(
        &self,
        envelope: &[u8],
        annotations: &BTreeMap<String, String>,
        digest: &Digest,
        also_identities: &[String],
    ) -> Result<(Statement, KeylessSigner), String> {
        let envelope: serde_json::Value =
            serde_json::from_slice(envelope).map_err(|e| format!("not a DSSE envelope: {e}"))?;
        let bundle = legacy_bundle(serde_json::json!({"dsseEnvelope": envelope}), annotations)?;
        self.verify_bundle(&bundle, digest, also_identities)
    }

    fn verify(
        &self,
        bundle: &sigstore_types::Bundle,
        artifact: sigstore_types::Artifact<'_>,
        also_identities: &[String],
    ) -> Result<KeylessSigner, String> {
        let policy = sigstore_verify::VerificationPolicy::any_identity();
        let result = self
            .root
            .verifier
            .verify(artifact, bundle, &policy)
            .map_err(|e| format!("keyless verification against {} failed: {e}", self.root.label))?;
        if !(result.certificate_verified() && result.sct_verified() && result.tlog_verified()) {
            return Err("the certificate, its SCT or the transparency log entry was not verified".into());
        }
        let identity =
            result.identity().map(|i| i.as_str().to_owned()).ok_or("the certificate names no identity")?;
        let issuer = result.issuer().map(str::to_owned).ok_or("the certificate names no OIDC issuer")?;
        if !self.identity.matches(&identity) && !also_identities.contains(&identity) {
            let also = if also_identities.is_empty() {
                String::new()
            } else {
                format!(" nor any of {also_identities:?}")
            };
            return Err(format!("certificate identity {identity:?} does not match {}{also}", self.identity));
        }
        if !self.issuer.matches(&issuer) {
            return Err(format!("certificate OIDC issuer {issuer:?} does not match {}", self.issuer));
        }
        Ok(KeylessSigner { identity, issuer, root: self.root.label.clone() })
    }
}

/// cosign's annotations on a keyless `.sig` layer.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// A Sigstore bundle v0.1 made of a legacy `.sig`/`.att` layer's annotations and `content`
/// (`{"messageSignature": …}` or `{"dsseEnvelope": …}`). cosign's Rekor bundle annotation is
/// `{"SignedEntryTimestamp": b64, "Payload": {"body": b64, "integratedTime": n, "logIndex": n,
/// "logID": hex}}` (cosign `pkg/oci/static`, `bundle.RekorBundle`).
fn legacy_bundle(
    content: serde_json::Value,
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct RekorBundle {
        signed_entry_timestamp: String,
        payload: RekorPayload,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RekorPayload {
        body: String,
        integrated_time: i64,
        log_index: i64,
        #[serde(rename = "logID")]
        log_id: String,
    }
    let leaf = annotations.get(CERTIFICATE_ANNOTATION).ok_or("no certificate annotation")?;
    let mut certificates = crate::keys::pem_blocks("CERTIFICATE", leaf)?;
    if certificates.len() != 1 {
        return Err(format!("the certificate annotation holds {} certificates, not one", certificates.len()));
    }
    if let Some(chain) = annotations.get(CHAIN_ANNOTATION) {
        certificates.extend(crate::keys::pem_blocks("CERTIFICATE", chain)?);
    }
    let rekor = annotations.get(REKOR_BUNDLE_ANNOTATION).ok_or(
        "a keyless .sig without a Rekor bundle annotation (dev.sigstore.cosign/bundle) cannot be verified offline",
    )?;
    let rekor: RekorBundle =
        serde_json::from_str(rekor).map_err(|e| format!("the Rekor bundle annotation: {e}"))?;
    let body = crate::cosign::unb64(&rekor.payload.body).map_err(|_| "the Rekor entry body is not base64")?;
    let body_json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("the Rekor entry body: {e}"))?;
    let kind = body_json["kind"].as_str().ok_or("the Rekor entry body names no kind")?;
    let version = body_json["apiVersion"].as_str().ok_or("the Rekor entry body names no apiVersion")?;
    let log_id = hex::decode(&rekor.payload.log_id).map_err(|_| "the Rekor logID is not hex")?;
    let b64 = crate::cosign::b64;
    let mut bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {
                "certificates": certificates.iter().map(|der| serde_json::json!({"rawBytes": b64(der)})).collect::<Vec<_>>(),
            },
            "tlogEntries": [{
                "logIndex": rekor.payload.log_index.to_string(),
                "logId": {"keyId": b64(&log_id)},
                "kindVersion": {"kind": kind, "version": version},
                "integratedTime": rekor.payload.integrated_time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": rekor.signed_entry_timestamp},
                "canonicalizedBody": rekor.payload.body,
            }],
        },
    });
    if let (Some(bundle), serde_json::Value::Object(content)) = (bundle.as_object_mut(), content) {
        bundle.extend(content);
    }
    Ok(serde_json::to_vec(&bundle).expect("a bundle serialises"))
}

fn parse_bundle(json: &[u8]) -> Result<sigstore_types::Bundle, String> {
    let text = std::str::from_utf8(json).map_err(|_| "the bundle is not UTF-8".to_owned())?;
    let mut bundle =
        sigstore_types::Bundle::from_json(text).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
    // A v0.1 bundle's proof of inclusion is its signed entry timestamp; the inclusion proof
    // beside it may lack a checkpoint (the spec made checkpoints required in v0.2), and then
    // proves nothing on its own. It is set aside and the promise verified, as cosign and
    // sigstore-python verify such bundles (CPython's release signatures are made so).
    if bundle.media_type == sigstore_types::MediaType::Bundle0_1 {
        for entry in &mut bundle.verification_material.tlog_entries {
            if entry.inclusion_promise.is_some()
                && entry.inclusion_proof.as_ref().is_some_and(|proof| proof.checkpoint.is_empty())
            {
                entry.inclusion_proof = None;
            }
        }
    }
    Ok(bundle)
}
