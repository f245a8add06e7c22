//! A bearer-token service for distribution's `auth.token` mode, so that the token handshake is
//! tested against a real registry.
//!
//! It signs ES256 JWTs with a fresh P-256 key. The registry trusts the key through the
//! certificate in `rootcertbundle`, and finds it by the token's `kid`: the libtrust key ID
//! (SHA-256 of the DER public key, first 240 bits, base32 in 12 colon-separated groups).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;

use crate::registry::TokenAuthConfig;

pub const SERVICE: &str = "ferry-test-registry";
pub const ISSUER: &str = "ferry-test-issuer";

struct Shared {
    signing_key: p256::ecdsa::SigningKey,
    key_id: String,
    /// `(user, password)` the service requires; `None` issues tokens to anyone.
    credentials: Option<(String, String)>,
    issued: AtomicU32,
    refused: AtomicU32,
}

/// A running token service. Stops when dropped.
#[derive(Debug)]
pub struct TokenServer {
    pub realm: String,
    cert_dir: tempfile::TempDir,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenService")
    }
}

impl TokenServer {
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
        let params =
            rcgen::CertificateParams::new(vec!["ferry-test-token-signer".to_owned()]).expect("params");
        let cert = params.self_signed(&key_pair).expect("self-signed certificate");
        let cert_dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(cert_dir.path().join("bundle.pem"), cert.pem()).expect("write bundle");
        let signing_key =
            p256::ecdsa::SigningKey::from_pkcs8_der(&key_pair.serialize_der()).expect("signing key");
        let public_der = {
            use p256::pkcs8::EncodePublicKey as _;
            signing_key.verifying_key().to_public_key_der().expect("public key DER")
        };
        let key_id = libtrust_key_id(public_der.as_bytes());
        let shared = Arc::new(Shared {
            signing_key,
            key_id,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            issued: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new().route("/token", axum::routing::get(issue)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer { realm: format!("http://{addr}/token"), cert_dir, shared, task }
    }

    pub fn registry_config(&self) -> TokenAuthConfig {
        TokenAuthConfig {
            realm: self.realm.clone(),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            root_cert_bundle: self.bundle_path(),
        }
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.cert_dir.path().join("bundle.pem")
    }

    pub fn n_issued(&self) -> u32 {
        self.shared.issued.load(Ordering::Relaxed)
    }

    pub fn n_refused(&self) -> u32 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// A token for `scope` signed like the ones the service hands out, for tests that push
    /// with a plain HTTP client.
    pub fn token_for(&self, scopes: &[&str]) -> String {
        sign(&self.shared, scopes)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn issue(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> axum::response::Response {
    if let Some((user, password)) = &shared.credentials {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
    }
    // `scope` may repeat; axum's Query keeps one, so read them all from the raw query.
    let raw = raw.unwrap_or_default();
    let scopes: Vec<String> = url::form_urlencoded::parse(raw.as_bytes())
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    shared.issued.fetch_add(1, Ordering::Relaxed);
    axum::Json(serde_json::json!({"token": sign(&shared, &scope_refs), "expires_in": 300})).into_response()
}

/// Grants every action asked for in `scopes` (`repository:name:pull,push`).
fn sign(shared: &Shared, scopes: &[&str]) -> String {
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": shared.key_id});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "ferry", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", shared.issued.load(Ordering::Relaxed)),
        "access": access,
    });
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let signature: p256::ecdsa::Signature = shared.signing_key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(spki_der);
    let encoded = data_encoding::BASE32_NOPAD.encode(&hash[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}
