//! A fake Sigstore instance for keyless signatures: a Fulcio-like CA, a CT log and a Rekor log,
//! each a key made in the test, and the `trusted_root.json` that names them. Fulcio, Rekor and
//! an OIDC provider cannot run here, so this signs what they would have signed.
//!
//! Written from the formats (RFC 6962 for the SCT, Rekor's `dsse` v0.0.1 entry and signed entry
//! timestamp, the C2SP signed-note checkpoint, protobuf-specs' bundle v0.3 and TrustedRoot),
//! with rcgen and p256. It shares no code with Ferry's verifier (sigstore-verify).

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use ferry_model::Digest;

const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";
/// Fulcio's OIDC issuer extension (v2, a DER UTF8String) and its deprecated raw form.
const ISSUER_V2: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];
const ISSUER_V1: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 1];
/// RFC 6962's embedded SCT list.
const SCT_LIST: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Key {
    signing: p256::ecdsa::SigningKey,
}

impl Key {
    fn generate() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
        Key { signing: p256::ecdsa::SigningKey::from_pkcs8_der(&pair.serialize_der()).expect("p256 key") }
    }

    fn spki(&self) -> Vec<u8> {
        self.signing.verifying_key().to_public_key_der().expect("SPKI").as_bytes().to_vec()
    }

    /// The log id: SHA-256 of the public key's SPKI DER.
    fn log_id(&self) -> [u8; 32] {
        sha256(&self.spki())
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.signing.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    fn rcgen(&self) -> rcgen::KeyPair {
        let der = self.signing.to_pkcs8_der().expect("PKCS#8");
        rcgen::KeyPair::try_from(der.as_bytes()).expect("rcgen key")
    }
}

/// What to get wrong in a keyless bundle, for the tests that must see it refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The certificate carries no SCT.
    pub no_sct: bool,
    /// The bundle carries no transparency-log entry.
    pub no_tlog: bool,
    /// The log's signed entry timestamp is corrupted.
    pub tampered_tlog: bool,
    /// The certificate expired an hour before the entry was logged.
    pub expired_before_log: bool,
    /// The DSSE payload is changed after signing (and logging).
    pub tampered_payload: bool,
}

/// A fake Sigstore instance: CA, CT log and Rekor log.
pub struct FakeSigstore {
    ca: Key,
    ca_params: rcgen::CertificateParams,
    ca_der: Vec<u8>,
    ct: Key,
    rekor: Key,
}

impl std::fmt::Debug for FakeSigstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSigstore").finish_non_exhaustive()
    }
}

impl Default for FakeSigstore {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSigstore {
    pub fn new() -> Self {
        let ca = Key::generate();
        let now = time::OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "ferry-tests");
        params.distinguished_name.push(rcgen::DnType::CommonName, "fake-fulcio");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let ca_der = params.self_signed(&ca.rcgen()).expect("CA").der().to_vec();
        FakeSigstore { ca, ca_params: params, ca_der, ct: Key::generate(), rekor: Key::generate() }
    }

    /// The `trusted_root.json` naming this instance's CA, Rekor key and CT log key.
    pub fn trusted_root(&self) -> String {
        let start = "2020-01-01T00:00:00Z";
        let log = |key: &Key, url: &str| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(&key.spki()),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": start},
                },
                "logId": {"keyId": b64(&key.log_id())},
            })
        };
        serde_json::to_string_pretty(&json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(&self.rekor, "https://rekor.fake.test")],
            "certificateAuthorities": [{
                "subject": {"organization": "ferry-tests", "commonName": "fake-fulcio"},
                "uri": "https://fulcio.fake.test",
                "certChain": {"certificates": [{"rawBytes": b64(&self.ca_der)}]},
                "validFor": {"start": start},
            }],
            "ctlogs": [log(&self.ct, "https://ctfe.fake.test")],
            "timestampAuthorities": [],
        }))
        .expect("trusted root")
    }

    /// A Fulcio-like certificate for `identity` (a URI, or an email address when it has an `@`
    /// and no scheme) from `issuer`, with an embedded SCT unless `faults.no_sct`.
    fn certificate(&self, key: &Key, identity: &str, issuer: &str, faults: Faults) -> Vec<u8> {
        let now = time::OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&sha256(identity.as_bytes())[..16]));
        let san = if identity.contains("://") {
            rcgen::SanType::URI(identity.try_into().expect("an IA5 identity"))
        } else {
            rcgen::SanType::Rfc822Name(identity.try_into().expect("an IA5 identity"))
        };
        params.subject_alt_names = vec![san];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        (params.not_before, params.not_after) = if faults.expired_before_log {
            (now - time::Duration::hours(2), now - time::Duration::hours(1))
        } else {
            (now - time::Duration::minutes(1), now + time::Duration::minutes(10))
        };
        params.custom_extensions = vec![
            rcgen::CustomExtension::from_oid_content(ISSUER_V1, issuer.as_bytes().to_vec()),
            rcgen::CustomExtension::from_oid_content(ISSUER_V2, der_utf8(issuer)),
        ];
        let issuer_ca = rcgen::Issuer::from_params(&self.ca_params, self.ca.rcgen());
        let subject = key.rcgen();
        let precert = params.signed_by(&subject, &issuer_ca).expect("precertificate").der().to_vec();
        if faults.no_sct {
            return precert;
        }
        let sct = self.sct(&tbs_of(&precert), (now.unix_timestamp() * 1000) as u64);
        params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(SCT_LIST, der_octets(&sct)));
        params.signed_by(&subject, &issuer_ca).expect("certificate").der().to_vec()
    }

    /// RFC 6962 §3.2: a SignedCertificateTimestampList with one SCT over the precertificate.
    fn sct(&self, tbs: &[u8], timestamp: u64) -> Vec<u8> {
        let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
        signed.extend_from_slice(&timestamp.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes()); // precert_entry
        signed.extend_from_slice(&sha256(&spki_of(&self.ca_der)));
        signed.extend_from_slice(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend_from_slice(tbs);
        signed.extend_from_slice(&0u16.to_be_bytes()); // no extensions
        let signature = self.ct.sign(&signed);
        let mut sct = vec![0u8]; // v1
        sct.extend_from_slice(&self.ct.log_id());
        sct.extend_from_slice(&timestamp.to_be_bytes());
        sct.extend_from_slice(&0u16.to_be_bytes());
        sct.extend_from_slice(&[4, 3]); // sha256, ecdsa
        sct.extend_from_slice(&(signature.len() as u16).to_be_bytes());
        sct.extend_from_slice(&signature);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&(sct.len() as u16).to_be_bytes());
        list.extend_from_slice(&sct);
        list
    }

    /// A keyless bundle (v0.3) over an in-toto statement about `digest`, signed as `identity`
    /// from `issuer`, logged in this instance's Rekor.
    pub fn bundle(
        &self,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
        identity: &str,
        issuer: &str,
        faults: Faults,
    ) -> Vec<u8> {
        let Dsse { statement, certificate, signature, envelope } =
            self.dsse("image", digest, predicate_type, predicate, identity, issuer, faults);
        let body = dsse_body(&envelope, &statement, &signature, &certificate);
        let integrated_time = time::OffsetDateTime::now_utc().unix_timestamp() - 5;
        let log_id = self.rekor.log_id();
        let promise = serde_json::to_vec(&json!({
            "body": b64(&body),
            "integratedTime": integrated_time,
            "logID": hex(&log_id),
            "logIndex": 0,
        }))
        .expect("promise");
        let mut set = self.rekor.sign(&promise);
        if faults.tampered_tlog {
            let last = set.len() - 1;
            set[last] ^= 1;
        }
        // A one-entry tree: the root is the leaf hash, the proof is empty.
        let mut leaf = vec![0u8];
        leaf.extend_from_slice(&body);
        let root = sha256(&leaf);
        let note = format!("rekor.fake.test - 1\n1\n{}\n", b64(&root));
        let mut note_signature = log_id[..4].to_vec();
        note_signature.extend_from_slice(&self.rekor.sign(note.as_bytes()));
        let checkpoint = format!("{note}\n\u{2014} rekor.fake.test {}\n", b64(&note_signature));
        let entries = if faults.no_tlog {
            json!([])
        } else {
            json!([{
                "logIndex": "0",
                "logId": {"keyId": b64(&log_id)},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": integrated_time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": b64(&set)},
                "inclusionProof": {
                    "logIndex": "0",
                    "rootHash": b64(&root),
                    "treeSize": "1",
                    "hashes": [],
                    "checkpoint": {"envelope": checkpoint},
                },
                "canonicalizedBody": b64(&body),
            }])
        };
        let mut envelope = envelope;
        if faults.tampered_payload {
            let mut changed = statement.clone();
            let at = changed.iter().rposition(|b| *b == b'}').expect("a JSON object");
            changed.splice(at..at, b" ".iter().copied());
            envelope["payload"] = json!(b64(&changed));
        }
        serde_json::to_vec(&json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(&certificate)},
                "tlogEntries": entries,
                "timestampVerificationData": {},
            },
            "dsseEnvelope": envelope,
        }))
        .expect("bundle")
    }
}

impl FakeSigstore {
    /// What `cosign sign` (before v3) pushes for a keyless signature: a `.sig` layer with the
    /// simple-signing payload, its signature, and the certificate, chain and Rekor bundle
    /// annotations (a `hashedrekord` entry and its signed entry timestamp). Returns the `.sig`
    /// manifest's digest.
    pub async fn push_legacy_signature(
        &self,
        seeder: &crate::seed::Seeder,
        repo: &str,
        digest: &Digest,
        docker_reference: &str,
        identity: &str,
        issuer: &str,
    ) -> Digest {
        let payload = crate::cosign::simple_signing_payload(digest, docker_reference);
        let key = Key::generate();
        let certificate = self.certificate(&key, identity, issuer, Faults::default());
        let signature = key.sign(&payload);
        let body = serde_json::to_vec(&json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex(&sha256(&payload))}},
                "signature": {"content": b64(&signature), "publicKey": {"content": b64(pem(&certificate).as_bytes())}},
            },
        }))
        .expect("body");
        let rekor_bundle = self.rekor_annotation(&body, 7);
        crate::cosign::push_artifact(
            seeder,
            repo,
            digest,
            "sig",
            "application/vnd.dev.cosign.simplesigning.v1+json",
            &payload,
            json!({
                "dev.cosignproject.cosign/signature": b64(&signature),
                "dev.sigstore.cosign/certificate": pem(&certificate),
                "dev.sigstore.cosign/chain": pem(&self.ca_der),
                "dev.sigstore.cosign/bundle": rekor_bundle,
            }),
        )
        .await
    }

    /// What `cosign attest` (before v3) pushes for a keyless attestation: an `.att` layer with
    /// the DSSE envelope, and the certificate, chain and Rekor bundle annotations (here a `dsse`
    /// entry). Returns the `.att` manifest's digest.
    #[allow(clippy::too_many_arguments, reason = "a test fixture spelled out at the call site")]
    pub async fn push_legacy_attestation(
        &self,
        seeder: &crate::seed::Seeder,
        repo: &str,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
        identity: &str,
        issuer: &str,
    ) -> Digest {
        let Dsse { statement, certificate, signature, envelope } =
            self.dsse(repo, digest, predicate_type, predicate, identity, issuer, Faults::default());
        let body = dsse_body(&envelope, &statement, &signature, &certificate);
        crate::cosign::push_artifact(
            seeder,
            repo,
            digest,
            "att",
            "application/vnd.dsse.envelope.v1+json",
            &serde_json::to_vec(&envelope).expect("envelope"),
            json!({
                "dev.cosignproject.cosign/signature": "",
                "predicateType": predicate_type,
                "dev.sigstore.cosign/certificate": pem(&certificate),
                "dev.sigstore.cosign/chain": pem(&self.ca_der),
                "dev.sigstore.cosign/bundle": self.rekor_annotation(&body, 8),
            }),
        )
        .await
    }

    /// An in-toto statement about `digest` (subject `name`), signed in a DSSE envelope by a new
    /// key whose certificate says `identity` from `issuer`.
    #[allow(clippy::too_many_arguments, reason = "a test fixture spelled out at the call site")]
    fn dsse(
        &self,
        name: &str,
        digest: &Digest,
        predicate_type: &str,
        predicate: serde_json::Value,
        identity: &str,
        issuer: &str,
        faults: Faults,
    ) -> Dsse {
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": digest.hex()}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }))
        .expect("statement");
        let key = Key::generate();
        let certificate = self.certificate(&key, identity, issuer, faults);
        let signature = key.sign(&crate::cosign::pae(IN_TOTO, &statement));
        let envelope = json!({
            "payload": b64(&statement),
            "payloadType": IN_TOTO,
            "signatures": [{"sig": b64(&signature), "keyid": ""}],
        });
        Dsse { statement, certificate, signature, envelope }
    }

    /// cosign's Rekor bundle annotation for an entry of `body`: the signed entry timestamp and
    /// what it covers.
    fn rekor_annotation(&self, body: &[u8], log_index: i64) -> String {
        let integrated_time = time::OffsetDateTime::now_utc().unix_timestamp() - 5;
        let log_id = hex(&self.rekor.log_id());
        let promise = serde_json::to_vec(&json!({
            "body": b64(body),
            "integratedTime": integrated_time,
            "logID": log_id,
            "logIndex": log_index,
        }))
        .expect("promise");
        serde_json::to_string(&json!({
            "SignedEntryTimestamp": b64(&self.rekor.sign(&promise)),
            "Payload": {"body": b64(body), "integratedTime": integrated_time, "logIndex": log_index, "logID": log_id},
        }))
        .expect("rekor bundle")
    }
}

/// A signed statement and what signed it.
struct Dsse {
    statement: Vec<u8>,
    certificate: Vec<u8>,
    signature: Vec<u8>,
    envelope: serde_json::Value,
}

/// Rekor's `dsse` v0.0.1 entry body, keys in canonical (sorted) order.
fn dsse_body(
    envelope: &serde_json::Value,
    statement: &[u8],
    signature: &[u8],
    certificate: &[u8],
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hex(&sha256(&serde_json::to_vec(envelope).expect("envelope")))},
            "payloadHash": {"algorithm": "sha256", "value": hex(&sha256(statement))},
            "signatures": [{"signature": b64(signature), "verifier": b64(pem(certificate).as_bytes())}],
        },
    }))
    .expect("body")
}

fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        b64(der)
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn der_length(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn der_utf8(text: &str) -> Vec<u8> {
    let mut out = vec![0x0c];
    out.extend(der_length(text.len()));
    out.extend_from_slice(text.as_bytes());
    out
}

fn der_octets(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    out.extend(der_length(bytes.len()));
    out.extend_from_slice(bytes);
    out
}

/// One DER element at the start of `der`: (header length, content length).
fn der_element(der: &[u8]) -> (usize, usize) {
    let first = der[1];
    if first < 0x80 {
        (2, first as usize)
    } else {
        let n = (first & 0x7f) as usize;
        let len = der[2..2 + n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (2 + n, len)
    }
}

/// The TBSCertificate (the first element of the Certificate SEQUENCE), with its header.
fn tbs_of(certificate: &[u8]) -> Vec<u8> {
    let (outer_header, _) = der_element(certificate);
    let inner = &certificate[outer_header..];
    let (header, len) = der_element(inner);
    inner[..header + len].to_vec()
}

/// The SubjectPublicKeyInfo of a certificate: the 7th element of its TBSCertificate
/// (version, serial, signature, issuer, validity, subject, SPKI).
fn spki_of(certificate: &[u8]) -> Vec<u8> {
    let tbs = tbs_of(certificate);
    let (header, _) = der_element(&tbs);
    let mut rest = &tbs[header..];
    for _ in 0..6 {
        let (h, l) = der_element(rest);
        rest = &rest[h + l..];
    }
    let (h, l) = der_element(rest);
    rest[..h + l].to_vec()
}
