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
    book: Book,
    /// Lifetime of the registry tokens handed out (`expires_in`, and the JWT's `exp`).
    token_lifetime: u64,
    issued: AtomicU32,
    refused: AtomicU32,
    exchanged: AtomicU32,
}

/// What the token service accepts, shared with the fakes of the clouds' token services, which
/// add what they hand out: basic credentials (a registry user, an ECR password, Google's
/// `oauth2accesstoken`), Entra tokens for ACR's exchange, and the refresh tokens the exchange
/// hands out. Each may expire; an expired one is refused like a wrong one.
#[derive(Clone, Debug, Default)]
pub struct Book {
    inner: Arc<std::sync::Mutex<BookInner>>,
}

#[derive(Debug, Default)]
struct BookInner {
    /// Anyone gets tokens, without credentials.
    open: bool,
    basic: Vec<(String, String, Option<std::time::Instant>)>,
    entra: Vec<(String, Option<std::time::Instant>)>,
    refresh: Vec<(String, Option<std::time::Instant>)>,
    refresh_lifetime: Option<std::time::Duration>,
}

fn live(expires: &Option<std::time::Instant>) -> bool {
    expires.is_none_or(|at| at > std::time::Instant::now())
}

impl Book {
    /// A book that accepts anyone, anonymously.
    pub fn open() -> Self {
        let book = Book::default();
        book.lock().open = true;
        book
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BookInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts `user:password` at the token endpoint, for `lifetime` (`None`: forever).
    pub fn accept_basic(&self, user: &str, password: &str, lifetime: Option<std::time::Duration>) {
        let expires = lifetime.map(|l| std::time::Instant::now() + l);
        self.lock().basic.push((user.to_owned(), password.to_owned(), expires));
    }

    /// Accepts an Entra access token at ACR's exchange, for `lifetime`.
    pub fn accept_entra(&self, token: &str, lifetime: Option<std::time::Duration>) {
        let expires = lifetime.map(|l| std::time::Instant::now() + l);
        self.lock().entra.push((token.to_owned(), expires));
    }

    /// How long refresh tokens from the exchange live (default: forever).
    pub fn refresh_lifetime(&self, lifetime: std::time::Duration) {
        self.lock().refresh_lifetime = Some(lifetime);
    }

    /// Whether `user:password` is accepted now.
    pub fn accepts_basic(&self, user: &str, password: &str) -> bool {
        self.basic_ok(user, password)
    }

    fn basic_ok(&self, user: &str, password: &str) -> bool {
        self.lock().basic.iter().any(|(u, p, e)| u == user && p == password && live(e))
    }

    fn entra_ok(&self, token: &str) -> bool {
        self.lock().entra.iter().any(|(t, e)| t == token && live(e))
    }

    fn refresh_ok(&self, token: &str) -> bool {
        self.lock().refresh.iter().any(|(t, e)| t == token && live(e))
    }

    fn is_open(&self) -> bool {
        self.lock().open
    }

    fn new_refresh(&self) -> String {
        let mut inner = self.lock();
        let n = inner.refresh.len();
        let lifetime = inner.refresh_lifetime;
        let exp = now() + lifetime.map(|l| l.as_secs()).unwrap_or(3 * 3600);
        // Shaped like ACR's: a JWT whose `exp` says when it stops working.
        let b64 =
            |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.fake-signature-{n}",
            b64(&serde_json::json!({"alg": "none"})),
            b64(&serde_json::json!({"exp": exp, "jti": n}))
        );
        inner.refresh.push((token.clone(), lifetime.map(|l| std::time::Instant::now() + l)));
        token
    }
}

/// A few random hex digits, so that tokens of different runs never match.
pub fn random_suffix() -> String {
    use sha2::Digest as _;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let seed = format!(
        "{:?}{}{}",
        std::time::SystemTime::now(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex_of(&sha2::Sha256::digest(seed.as_bytes())[..6])
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
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
    /// A service that requires `credentials` (`None`: issues tokens to anyone).
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        let book = match credentials {
            Some((user, password)) => {
                let book = Book::default();
                book.accept_basic(user, password, None);
                book
            }
            None => Book::open(),
        };
        Self::start_with(book, 300).await
    }

    /// A service that accepts what `book` holds, handing out registry tokens that live
    /// `token_lifetime` seconds. Besides `/token` (GET with basic credentials, POST with a
    /// refresh token), it serves ACR's `POST /oauth2/exchange` next to the realm.
    pub async fn start_with(book: Book, token_lifetime: u64) -> Self {
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
            book,
            token_lifetime,
            issued: AtomicU32::new(0),
            refused: AtomicU32::new(0),
            exchanged: AtomicU32::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue).post(issue_for_refresh))
            .route("/oauth2/exchange", axum::routing::post(exchange))
            .with_state(shared.clone());
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

    pub fn book(&self) -> &Book {
        &self.shared.book
    }

    pub fn n_issued(&self) -> u32 {
        self.shared.issued.load(Ordering::Relaxed)
    }

    pub fn n_refused(&self) -> u32 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// Refresh tokens handed out by `/oauth2/exchange`.
    pub fn n_exchanged(&self) -> u32 {
        self.shared.exchanged.load(Ordering::Relaxed)
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

/// `scope` may repeat; axum's extractors keep one, so read them all.
fn scopes_of(raw: &[u8]) -> Vec<String> {
    url::form_urlencoded::parse(raw).filter(|(k, _)| k == "scope").map(|(_, v)| v.into_owned()).collect()
}

fn grant(shared: &Shared, scopes: &[String]) -> axum::response::Response {
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    shared.issued.fetch_add(1, Ordering::Relaxed);
    axum::Json(serde_json::json!({
        "token": sign(shared, &scope_refs),
        "access_token": sign(shared, &scope_refs),
        "expires_in": shared.token_lifetime,
    }))
    .into_response()
}

fn refuse(shared: &Shared) -> axum::response::Response {
    shared.refused.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})),
    )
        .into_response()
}

async fn issue(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> axum::response::Response {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let allowed = match &given {
        Some(pair) => pair.split_once(':').is_some_and(|(u, p)| shared.book.basic_ok(u, p)),
        None => shared.book.is_open(),
    };
    if !allowed {
        return refuse(&shared);
    }
    grant(&shared, &scopes_of(raw.unwrap_or_default().as_bytes()))
}

/// The OAuth2 form a client posts with a refresh token (distribution's token spec, ACR).
async fn issue_for_refresh(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let ok = field("grant_type") == Some("refresh_token")
        && field("service") == Some(SERVICE)
        && field("refresh_token").is_some_and(|t| shared.book.refresh_ok(t));
    if !ok {
        return refuse(&shared);
    }
    grant(&shared, &scopes_of(&body))
}

/// ACR's exchange: an Entra access token for a refresh token.
async fn exchange(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> axum::response::Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let ok = field("grant_type") == Some("access_token")
        && field("service") == Some(SERVICE)
        && field("access_token").is_some_and(|t| shared.book.entra_ok(t));
    if !ok {
        return refuse(&shared);
    }
    shared.exchanged.fetch_add(1, Ordering::Relaxed);
    axum::Json(serde_json::json!({"refresh_token": shared.book.new_refresh()})).into_response()
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
    let now = now();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": shared.key_id});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "ferry", "aud": SERVICE,
        "exp": now + shared.token_lifetime, "nbf": now - 10, "iat": now,
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
