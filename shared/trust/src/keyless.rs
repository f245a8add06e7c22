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

/// Whether a bundle is keyless: its verification material is a certificate or a chain, not a
/// public-key hint. Read without trusting anything.
pub fn is_keyless(bundle_json: &[u8]) -> bool {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bundle_json) else { return false };
    let material = &doc["verificationMaterial"];
    material.get("certificate").is_some() || material.get("x509CertificateChain").is_some()
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
        let text = std::str::from_utf8(bundle_json).map_err(|_| "the bundle is not UTF-8".to_owned())?;
        let bundle =
            sigstore_types::Bundle::from_json(text).map_err(|e| format!("not a Sigstore bundle: {e}"))?;
        let subject = sigstore_types::Sha256Hash::from_hex(&digest.hex())
            .map_err(|e| format!("digest {digest}: {e}"))?;
        let policy = sigstore_verify::VerificationPolicy::any_identity();
        let result = self
            .root
            .verifier
            .verify(sigstore_types::Artifact::from_digest(subject), &bundle, &policy)
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
        let envelope = bundle_envelope(bundle_json)?;
        let statement: Statement =
            serde_json::from_slice(&envelope).map_err(|e| format!("not an in-toto statement: {e}"))?;
        if !statement.covers(digest) {
            return Err("the statement's subjects do not include this digest".into());
        }
        Ok((statement, KeylessSigner { identity, issuer, root: self.root.label.clone() }))
    }
}

/// The DSSE payload of a bundle (already verified by the caller).
fn bundle_envelope(bundle_json: &[u8]) -> Result<Vec<u8>, String> {
    let parsed = crate::bundle::Bundle::parse(bundle_json)?;
    parsed.envelope.ok_or("the bundle holds no DSSE envelope")?.payload_bytes()
}
