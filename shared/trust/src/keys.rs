//! Signing keys and verification keys. Every signature Ferry makes or checks is ECDSA P-256
//! with SHA-256, ASN.1 DER encoded, as cosign uses.
//!
//! A signing key comes from a cosign encrypted key file (`cosign.key`, password in an
//! environment variable) or from AWS KMS (an `ECC_NIST_P256` key used with `ECDSA_SHA_256`).

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use sha2::{Digest as _, Sha256};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};

use crate::error::TrustError;

/// Where the signing key comes from: a cosign key file (its password from `COSIGN_PASSWORD`)
/// or an AWS KMS key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    KeyFile(std::path::PathBuf),
    Kms(String),
}

/// Loads the signing key `source` names, when it names one. This is where the key file is read
/// and the KMS client is made: configuration only says where the key is.
pub async fn load(
    source: Option<&KeySource>,
    password: Option<&ferry_registry::Secret>,
) -> Result<Option<SigningKey>, TrustError> {
    let Some(source) = source else { return Ok(None) };
    let key = match source {
        KeySource::KeyFile(path) => {
            let pem = std::fs::read(path).map_err(|e| TrustError::Key(format!("{}: {e}", path.display())))?;
            let password = password.ok_or_else(|| {
                TrustError::Key(format!("{}: set COSIGN_PASSWORD to the key's password", path.display()))
            })?;
            SigningKey::from_encrypted_pem(&pem, password.expose().as_bytes())
                .map_err(|e| TrustError::Key(format!("{}: {e}", path.display())))?
        }
        KeySource::Kms(key_id) => {
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            SigningKey::from_kms(aws_sdk_kms::Client::new(&sdk), key_id.clone()).await?
        }
    };
    Ok(Some(key))
}

/// A new cosign-compatible key pair: the encrypted private key (`ENCRYPTED SIGSTORE PRIVATE
/// KEY` PEM, scrypt + secretbox, which `cosign` reads) and the public key PEM.
pub fn generate_key_pair(password: &[u8]) -> Result<(String, String), TrustError> {
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1.create_signer().map_err(TrustError::key)?;
    let pair = signer.to_sigstore_keypair().map_err(TrustError::key)?;
    let private = pair.private_key_to_encrypted_pem(password).map_err(TrustError::key)?;
    let public = pair.public_key_to_pem().map_err(TrustError::key)?;
    Ok((private.to_string(), public))
}

/// A key that can sign.
#[derive(Debug)]
pub enum SigningKey {
    File { signer: SigStoreSigner, public_pem: String },
    Kms { client: aws_sdk_kms::Client, key_id: String, public_pem: String },
}

impl SigningKey {
    /// Loads a cosign encrypted private key.
    pub fn from_encrypted_pem(pem: &[u8], password: &[u8]) -> Result<Self, TrustError> {
        let pair = SigStoreKeyPair::from_encrypted_pem(pem, password).map_err(|_| {
            TrustError::Key("cannot decrypt the signing key: wrong password, or not a cosign key".into())
        })?;
        let signer =
            pair.to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1).map_err(TrustError::key)?;
        let public_pem = pair.public_key_to_pem().map_err(TrustError::key)?;
        Ok(Self::File { signer, public_pem })
    }

    /// Uses an AWS KMS key; its public key is fetched once, here.
    pub async fn from_kms(client: aws_sdk_kms::Client, key_id: String) -> Result<Self, TrustError> {
        let public = client
            .get_public_key()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| TrustError::Kms(format!("GetPublicKey {key_id}: {}", aws_error(&e))))?;
        if public.key_spec().map(|s| s.as_str()) != Some("ECC_NIST_P256") {
            return Err(TrustError::Kms(format!("{key_id} is not an ECC_NIST_P256 key")));
        }
        let der =
            public.public_key().ok_or_else(|| TrustError::Kms(format!("{key_id} has no public key")))?;
        Ok(Self::Kms { client, key_id, public_pem: pem_encode("PUBLIC KEY", der.as_ref()) })
    }

    pub fn public_key_pem(&self) -> &str {
        match self {
            SigningKey::File { public_pem, .. } | SigningKey::Kms { public_pem, .. } => public_pem,
        }
    }

    /// This key's verification key.
    pub fn verification_key(&self) -> Result<VerificationKey, TrustError> {
        VerificationKey::from_pem("signing key", self.public_key_pem().as_bytes())
    }

    /// Signs `message`; returns the DER signature.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TrustError> {
        match self {
            SigningKey::File { signer, .. } => signer.sign(message).map_err(TrustError::key),
            SigningKey::Kms { client, key_id, .. } => {
                let digest = Sha256::digest(message);
                let signed = client
                    .sign()
                    .key_id(key_id)
                    .message(Blob::new(digest.to_vec()))
                    .message_type(MessageType::Digest)
                    .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                    .send()
                    .await
                    .map_err(|e| TrustError::Kms(format!("Sign with {key_id}: {}", aws_error(&e))))?;
                signed
                    .signature()
                    .map(|b| b.as_ref().to_vec())
                    .ok_or_else(|| TrustError::Kms(format!("{key_id} returned no signature")))
            }
        }
    }
}

/// A public key to check signatures with, and a label for reports.
#[derive(Clone, Debug)]
pub struct VerificationKey {
    pub label: String,
    key: CosignVerificationKey,
}

impl VerificationKey {
    /// Parses a PEM public key. The key must really be an ECDSA P-256 key: sigstore's
    /// `from_pem` stores any bytes unchecked, so the SPKI is parsed here.
    pub fn from_pem(label: &str, pem: &[u8]) -> Result<Self, TrustError> {
        let invalid = || TrustError::Key(format!("{label}: not an ECDSA P-256 public key in PEM form"));
        let key = CosignVerificationKey::try_from_pem(pem).map_err(|_| invalid())?;
        if !matches!(key, CosignVerificationKey::ECDSA_P256_SHA256_ASN1(_)) {
            return Err(invalid());
        }
        Ok(Self { label: label.to_owned(), key })
    }

    /// Whether `signature` (DER) is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_signature(Signature::Raw(signature), message).is_ok()
    }
}

/// The first key of `keys` that verifies `signature` over `message`.
pub fn first_verifying<'k>(
    keys: &'k [VerificationKey],
    message: &[u8],
    signature: &[u8],
) -> Option<&'k VerificationKey> {
    keys.iter().find(|k| k.verifies(message, signature))
}

/// The hint a Sigstore bundle carries for a public key (`verificationMaterial.publicKey.hint`):
/// base64 of the SHA-256 of the key's DER (SubjectPublicKeyInfo), as cosign v3 writes it.
pub fn key_hint(public_pem: &str) -> Option<String> {
    let body: String = public_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = crate::cosign::unb64(&body).ok()?;
    Some(crate::cosign::b64(&Sha256::digest(&der)))
}

/// The DER contents of every `label` block of a PEM text (one or more).
pub(crate) fn pem_blocks(label: &str, pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match &mut block {
            None if line == begin => block = Some(String::new()),
            Some(b) if line == end => {
                out.push(crate::cosign::unb64(b).map_err(|_| format!("a PEM {label} is not base64"))?);
                block = None;
            }
            Some(b) => b.push_str(line),
            None => {}
        }
    }
    if block.is_some() || out.is_empty() {
        return Err(format!("not a PEM {label}"));
    }
    Ok(out)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = crate::cosign::b64(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The AWS SDK's error with its service message, without request details.
fn aws_error<E: std::error::Error>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generated_keys_round_trip_and_reject_the_wrong_key() {
        let (private, public) = generate_key_pair(b"pw").unwrap();
        assert!(private.contains("ENCRYPTED"), "{private}");
        let key = SigningKey::from_encrypted_pem(private.as_bytes(), b"pw").unwrap();
        assert_eq!(key.public_key_pem(), public);
        let signature = key.sign(b"message").await.unwrap();
        let verifier = VerificationKey::from_pem("pub", public.as_bytes()).unwrap();
        assert!(verifier.verifies(b"message", &signature));
        assert!(!verifier.verifies(b"other message", &signature));
        let (_, other) = generate_key_pair(b"pw").unwrap();
        assert!(
            !VerificationKey::from_pem("other", other.as_bytes()).unwrap().verifies(b"message", &signature)
        );
        let err = SigningKey::from_encrypted_pem(private.as_bytes(), b"wrong").unwrap_err().to_string();
        assert!(err.contains("wrong password") && !err.contains("pw"), "{err}");
        assert!(
            VerificationKey::from_pem(
                "junk",
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            )
            .is_err()
        );
    }
}
