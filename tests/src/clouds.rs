//! Fakes of the clouds' token services, which cannot run here, behind the HTTP APIs the real
//! ones document, and moto (a maintained fake of AWS's APIs) for ECR and STS.
//!
//! - [`FakeGoogle`]: Google's OAuth 2.0 token endpoint (RFC 7523 JWT-bearer grants, verified
//!   against the service account's public key; refresh-token grants), the GCE metadata
//!   server's token path, and IAM Credentials `generateAccessToken`.
//! - [`FakeAzure`]: Entra ID's v2.0 token endpoint (client secret and federated client
//!   assertion) and the App Service managed-identity endpoint.
//! - [`Moto`]: `moto_server`, for ECR's `GetAuthorizationToken` and STS's `AssumeRole`.
//! - [`FakeEcr`]: ECR's `GetAuthorizationToken` with tokens of a chosen lifetime (moto's expire
//!   in 2015) and a paged `ListImages`, in front of a real registry.
//!
//! Every token they hand out is entered in a [`Book`] with its lifetime, which the registry's
//! token service ([`crate::token::TokenServer`]) consults: a registry then refuses an expired
//! or unknown credential as the real ones do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::token::Book;

fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": code, "error_description": description}))).into_response()
}

async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), task)
}

/// Google's token services for one service account.
#[derive(Debug)]
pub struct FakeGoogle {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<GoogleShared>,
    task: tokio::task::JoinHandle<()>,
}

struct GoogleShared {
    book: Book,
    lifetime: Duration,
    client_email: String,
    private_pem: String,
    public_key: Vec<u8>,
    token_uri: std::sync::OnceLock<String>,
    issued: AtomicU32,
    jwt_grants: AtomicU32,
    metadata: AtomicU32,
    impersonations: AtomicU32,
    refused: AtomicU32,
}

impl std::fmt::Debug for GoogleShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeGoogle")
    }
}

impl FakeGoogle {
    /// Access tokens live `lifetime`; each is entered in `book` as the password of
    /// `oauth2accesstoken`, as Artifact Registry accepts it.
    pub async fn start(book: Book, lifetime: Duration) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let pkcs8 = key.serialize_der();
        let public_key = {
            use aws_lc_rs::signature::KeyPair as _;
            aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&pkcs8)
                .expect("RSA key pair")
                .public_key()
                .as_ref()
                .to_vec()
        };
        let shared = Arc::new(GoogleShared {
            book,
            lifetime,
            client_email: "promoter@ferry-test.iam.gserviceaccount.com".into(),
            private_pem: key.serialize_pem(),
            public_key,
            token_uri: std::sync::OnceLock::new(),
            issued: AtomicU32::new(0),
            jwt_grants: AtomicU32::new(0),
            metadata: AtomicU32::new(0),
            impersonations: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::post(google_token))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                axum::routing::get(metadata_token),
            )
            .route("/v1/projects/-/serviceAccounts/{target}", axum::routing::post(generate_access_token))
            .with_state(shared.clone());
        let (url, task) = serve(app).await;
        shared.token_uri.set(format!("{url}/token")).expect("set once");
        Self { url, shared, task }
    }

    /// A service-account key file (`"type": "service_account"`) whose `token_uri` is this fake.
    pub fn key_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("service-account.json");
        std::fs::write(&path, self.key_json().to_string()).expect("write key file");
        path
    }

    fn key_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "service_account",
            "project_id": "ferry-test",
            "private_key_id": "0123456789abcdef",
            "private_key": self.shared.private_pem,
            "client_email": self.shared.client_email,
            "client_id": "100000000000000000001",
            "token_uri": format!("{}/token", self.url),
        })
    }

    /// An `impersonated_service_account` file: this key, then `generateAccessToken` for
    /// `target` here.
    pub fn impersonation_file(&self, dir: &std::path::Path, target: &str) -> std::path::PathBuf {
        let path = dir.join("impersonated.json");
        let json = serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/{target}:generateAccessToken", self.url),
            "source_credentials": self.key_json(),
            "delegates": [],
        });
        std::fs::write(&path, json.to_string()).expect("write impersonation file");
        path
    }

    /// `host:port` for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    /// Access tokens handed out, by any route.
    pub fn n_issued(&self) -> u32 {
        self.shared.issued.load(Ordering::Relaxed)
    }

    /// (JWT-bearer grants, metadata-server tokens, impersonations, refusals).
    pub fn counts(&self) -> (u32, u32, u32, u32) {
        let s = &self.shared;
        (
            s.jwt_grants.load(Ordering::Relaxed),
            s.metadata.load(Ordering::Relaxed),
            s.impersonations.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed),
        )
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GoogleShared {
    fn issue(&self) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let token = format!("ya29.fake-{n}-{}", crate::token::random_suffix());
        self.book.accept_basic("oauth2accesstoken", &token, Some(self.lifetime));
        token
    }

    fn refuse(&self, status: StatusCode, code: &str, description: &str) -> Response {
        self.refused.fetch_add(1, Ordering::Relaxed);
        oauth_error(status, code, description)
    }

    /// Checks a JWT-bearer assertion as Google does: RS256 by the account's key, issued by
    /// it, for the token endpoint, with a scope, not expired.
    fn check_assertion(&self, assertion: &str) -> Result<(), &'static str> {
        let mut parts = assertion.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT");
        };
        let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part);
        let signature = decode(signature).map_err(|_| "bad signature encoding")?;
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key,
        )
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header).map_err(|_| "bad header")?).map_err(|_| "bad header")?;
        let claims: serde_json::Value =
            serde_json::from_slice(&decode(claims).map_err(|_| "bad claims")?).map_err(|_| "bad claims")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
            as i64;
        if header["alg"] != "RS256" {
            return Err("alg must be RS256");
        }
        if claims["iss"] != self.client_email.as_str() {
            return Err("Invalid issuer");
        }
        if claims["aud"].as_str() != self.token_uri.get().map(String::as_str) {
            return Err("Invalid JWT: audience is not the token endpoint");
        }
        if claims["scope"]
            .as_str()
            .is_none_or(|s| !s.contains("https://www.googleapis.com/auth/cloud-platform"))
        {
            return Err("Invalid scope");
        }
        match (claims["iat"].as_i64(), claims["exp"].as_i64()) {
            (Some(iat), Some(exp)) if iat <= now + 60 && exp > now && exp - iat <= 3600 => Ok(()),
            _ => Err(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            ),
        }
    }

    fn token_answer(&self, token: String) -> Response {
        axum::Json(serde_json::json!({
            "access_token": token, "expires_in": self.lifetime.as_secs(), "token_type": "Bearer",
        }))
        .into_response()
    }
}

async fn google_token(State(shared): State<Arc<GoogleShared>>, body: axum::body::Bytes) -> Response {
    let form = form(&body);
    if field(&form, "grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return shared.refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type");
    }
    match shared.check_assertion(field(&form, "assertion").unwrap_or_default()) {
        Ok(()) => {
            shared.jwt_grants.fetch_add(1, Ordering::Relaxed);
            let token = shared.issue();
            shared.token_answer(token)
        }
        Err(reason) => shared.refuse(StatusCode::BAD_REQUEST, "invalid_grant", reason),
    }
}

async fn metadata_token(State(shared): State<Arc<GoogleShared>>, headers: HeaderMap) -> Response {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::FORBIDDEN, "Missing required header \"Metadata-Flavor\"").into_response();
    }
    shared.metadata.fetch_add(1, Ordering::Relaxed);
    let token = shared.issue();
    shared.token_answer(token)
}

async fn generate_access_token(
    State(shared): State<Arc<GoogleShared>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(account) = target.strip_suffix(":generateAccessToken") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let bearer =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| shared.book.accepts_basic("oauth2accesstoken", token)) {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let error = serde_json::json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let scopes = request["scope"].as_array().cloned().unwrap_or_default();
    if !account.contains('@') || !scopes.iter().any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
    {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        let error = serde_json::json!({"error": {"code": 400, "message": "invalid request", "status": "INVALID_ARGUMENT"}});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    shared.impersonations.fetch_add(1, Ordering::Relaxed);
    let token = shared.issue();
    let expire = chrono_like_rfc3339(shared.lifetime);
    axum::Json(serde_json::json!({"accessToken": token, "expireTime": expire})).into_response()
}

/// `now + lifetime` as RFC 3339 UTC (`2026-12-07T10:00:00Z`).
fn chrono_like_rfc3339(lifetime: Duration) -> String {
    let at = chrono::Utc::now() + lifetime;
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Entra ID for one tenant and one application, and a managed-identity endpoint.
#[derive(Debug)]
pub struct FakeAzure {
    /// `AZURE_AUTHORITY_HOST`.
    pub url: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// The federated token a workload-identity pod finds in `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token: String,
    /// `IDENTITY_HEADER` of the managed-identity endpoint at `{url}/msi/token`.
    pub identity_header: String,
    shared: Arc<AzureShared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct AzureShared {
    book: Book,
    lifetime: Duration,
    tenant: String,
    client_id: String,
    client_secret: String,
    federated_token: String,
    identity_header: String,
    issued: AtomicU32,
    refused: AtomicU32,
}

impl FakeAzure {
    /// Entra tokens live `lifetime`; each is entered in `book` for ACR's exchange.
    pub async fn start(book: Book, lifetime: Duration) -> Self {
        let suffix = crate::token::random_suffix();
        let shared = Arc::new(AzureShared {
            book,
            lifetime,
            tenant: "11111111-2222-3333-4444-555555555555".into(),
            client_id: "66666666-7777-8888-9999-000000000000".into(),
            client_secret: format!("client-secret-{suffix}"),
            federated_token: format!("eyJfederated.{suffix}.sig"),
            identity_header: format!("identity-header-{suffix}"),
            issued: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        });
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(entra_token))
            .route("/msi/token", axum::routing::get(managed_identity_token))
            .with_state(shared.clone());
        let (url, task) = serve(app).await;
        Self {
            url,
            tenant: shared.tenant.clone(),
            client_id: shared.client_id.clone(),
            client_secret: shared.client_secret.clone(),
            federated_token: shared.federated_token.clone(),
            identity_header: shared.identity_header.clone(),
            shared,
            task,
        }
    }

    /// Entra tokens handed out, and requests refused.
    pub fn counts(&self) -> (u32, u32) {
        (self.shared.issued.load(Ordering::Relaxed), self.shared.refused.load(Ordering::Relaxed))
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AzureShared {
    fn issue(&self) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let token = format!("eyJ0eXAiOiJKV1QifQ.fake-entra-{n}-{}.sig", crate::token::random_suffix());
        self.book.accept_entra(&token, Some(self.lifetime));
        token
    }

    fn refuse(&self, code: &str, description: &str) -> Response {
        self.refused.fetch_add(1, Ordering::Relaxed);
        oauth_error(StatusCode::UNAUTHORIZED, code, description)
    }
}

async fn entra_token(
    State(shared): State<Arc<AzureShared>>,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = form(&body);
    if tenant != shared.tenant {
        return shared.refuse("invalid_request", "AADSTS90002: Tenant not found.");
    }
    if field(&form, "grant_type") != Some("client_credentials")
        || field(&form, "client_id") != Some(&shared.client_id)
    {
        return shared.refuse("unauthorized_client", "AADSTS700016: Application not found in the directory.");
    }
    if field(&form, "scope") != Some("https://management.azure.com/.default") {
        return shared.refuse("invalid_scope", "AADSTS70011: The provided value for scope is not valid.");
    }
    let by_secret = field(&form, "client_secret") == Some(&shared.client_secret);
    let by_assertion = field(&form, "client_assertion_type")
        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && field(&form, "client_assertion") == Some(&shared.federated_token);
    if !(by_secret || by_assertion) {
        return shared.refuse("invalid_client", "AADSTS7000215: Invalid client secret provided.");
    }
    let token = shared.issue();
    axum::Json(serde_json::json!({
        "token_type": "Bearer", "expires_in": shared.lifetime.as_secs(), "ext_expires_in": shared.lifetime.as_secs(),
        "access_token": token,
    }))
    .into_response()
}

async fn managed_identity_token(
    State(shared): State<Arc<AzureShared>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = form(query.unwrap_or_default().as_bytes());
    if headers.get("x-identity-header").and_then(|v| v.to_str().ok()) != Some(&shared.identity_header) {
        return shared.refuse("invalid_request", "X-IDENTITY-HEADER is missing or wrong");
    }
    if field(&query, "api-version") != Some("2019-08-01")
        || field(&query, "resource") != Some("https://management.azure.com/")
    {
        return shared.refuse("invalid_request", "api-version or resource");
    }
    let token = shared.issue();
    let expires_on =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
            + shared.lifetime.as_secs();
    // App Service answers with strings.
    axum::Json(serde_json::json!({
        "access_token": token, "expires_on": expires_on.to_string(), "resource": "https://management.azure.com/",
        "token_type": "Bearer", "client_id": shared.client_id,
    }))
    .into_response()
}

/// The environment that points the AWS SDK at a fake (`endpoint_variable` = `url`), with fixed
/// test credentials and nothing read from the machine's AWS configuration.
fn aws_env(endpoint_variable: &'static str, url: &str) -> Vec<(&'static str, String)> {
    vec![
        (endpoint_variable, url.to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIAFERRYTESTKEY0001".into()),
        ("AWS_SECRET_ACCESS_KEY", "ferry-test-secret".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

/// `moto_server` on a free port, stopped when dropped. Installed into a virtualenv by
/// `moto/install` when it is not on PATH.
#[derive(Debug)]
pub struct Moto {
    pub url: String,
    child: std::process::Child,
}

impl Moto {
    pub async fn start() -> Self {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../moto/install");
        let out = tokio::process::Command::new(&script).output().await.expect("run moto/install");
        assert!(
            out.status.success(),
            "moto/install failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let server =
            String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        let child = std::process::Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{server}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let moto = Moto { url: url.clone(), child };
        let ready = crate::poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let url = url.clone();
            async move { reqwest::get(format!("{url}/moto-api/")).await.is_ok() }
        })
        .await;
        assert!(ready, "moto_server did not answer at {url}");
        moto
    }

    /// The environment that points the AWS SDK at this server, with fixed test credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        aws_env("AWS_ENDPOINT_URL", &self.url)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs Pub/Sub push tokens as Google does (RS256, a `kid` in the header), with a key whose
/// JWKS a test names in `pipeline.pubsub-push.jwks`.
#[derive(Debug)]
pub struct PushSigner {
    key: aws_lc_rs::rsa::KeyPair,
    pub kid: String,
}

impl PushSigner {
    pub fn new(kid: &str) -> Self {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        Self { key, kid: kid.to_owned() }
    }

    /// `{"keys": [this key]}`, as https://www.googleapis.com/oauth2/v3/certs lists keys.
    pub fn jwks(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair as _;
        let public = self.key.public_key();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        serde_json::json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        }]})
    }

    /// The claims Google puts in a push token for `email`, for `audience`, valid from now.
    pub fn claims(audience: &str, email: &str) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "aud": audience, "azp": "113774264463038321964", "email": email, "email_verified": true,
            "exp": now + 3600, "iat": now, "iss": "https://accounts.google.com", "sub": "113774264463038321964",
        })
    }

    /// `header.claims.signature` with this key, whatever the header says (tests forge some).
    pub fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("sign");
        format!("{input}.{}", b64(&signature))
    }

    /// A valid token: RS256, this key's `kid`.
    pub fn token(&self, claims: &serde_json::Value) -> String {
        self.sign(&serde_json::json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}), claims)
    }
}

/// A Pub/Sub push delivery of `data` (Artifact Registry's notification), as a push
/// subscription POSTs it.
pub fn pubsub_push(message_id: &str, data: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "message": {
            "attributes": {},
            "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-12-07T04:52:00.000Z",
            "publish_time": "2026-12-07T04:52:00.000Z",
        },
        "subscription": "projects/acme-staging/subscriptions/ferry-gcr-push",
    })
}

/// A named fake of Amazon ECR's API (JSON 1.1 over `POST /`, `X-Amz-Target`), in front of a
/// real distribution registry, so that its answers and the registry's manifests are one state:
///
/// - `GetAuthorizationToken`: `base64("AWS:" + password)`, the password the registry's htpasswd
///   accepts, with `expiresAt` `lifetime` ahead (moto's is fixed in 2015).
/// - `ListImages`: the repository's tags and the digest each points at (a `HEAD` each at the
///   registry), `{imageDigest, imageTag}` per tag, at most `min(maxResults, page)` per page with
///   an opaque `nextToken`, as ECR documents it; `RepositoryNotFoundException` for a repository
///   the registry does not know. Untagged manifests are not listed (distribution cannot say).
///
/// Requests must carry a SigV4 `Authorization` header; its signature is not checked.
///
/// [`FakeEcr::issuing`] instead hands out a new password with each token and enters it in a
/// [`Book`] for `lifetime`, so that a token-auth registry refuses it once it expired (the real
/// token lives 12 hours; a test cannot wait that long). It serves no `ListImages` then.
#[derive(Debug)]
pub struct FakeEcr {
    pub url: String,
    shared: Arc<EcrShared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct EcrShared {
    registry: String,
    book: Option<Book>,
    username: String,
    password: String,
    page: usize,
    lifetime: Duration,
    deny_listing: bool,
    tokens: AtomicU32,
    listings: AtomicU32,
    client: reqwest::Client,
}

impl FakeEcr {
    /// In front of `registry` (basic auth `username`/`password`), pages of at most `page`.
    /// With `deny_listing`, `ListImages` answers `AccessDeniedException`, as for a role
    /// without `ecr:ListImages`.
    pub async fn start(
        registry: &crate::registry::RegistryServer,
        username: &str,
        password: &str,
        page: usize,
        lifetime: Duration,
        deny_listing: bool,
    ) -> Self {
        Self::serve(EcrShared {
            registry: registry.base_url(),
            book: None,
            username: username.to_owned(),
            password: password.to_owned(),
            page: page.max(1),
            lifetime,
            deny_listing,
            tokens: AtomicU32::new(0),
            listings: AtomicU32::new(0),
            client: reqwest::Client::new(),
        })
        .await
    }

    /// Tokens whose passwords `book` accepts for `lifetime` each (see the type's docs).
    pub async fn issuing(book: Book, lifetime: Duration) -> Self {
        Self::serve(EcrShared {
            registry: String::new(),
            book: Some(book),
            username: "AWS".into(),
            password: String::new(),
            page: 1,
            lifetime,
            deny_listing: true,
            tokens: AtomicU32::new(0),
            listings: AtomicU32::new(0),
            client: reqwest::Client::new(),
        })
        .await
    }

    async fn serve(shared: EcrShared) -> Self {
        let shared = Arc::new(shared);
        let app = axum::Router::new().route("/", axum::routing::post(ecr_api)).with_state(shared.clone());
        let (url, task) = serve(app).await;
        Self { url, shared, task }
    }

    /// The environment that points the AWS SDK's ECR client at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        aws_env("AWS_ENDPOINT_URL_ECR", &self.url)
    }

    /// `GetAuthorizationToken` and `ListImages` calls answered.
    pub fn counts(&self) -> (u32, u32) {
        (self.shared.tokens.load(Ordering::Relaxed), self.shared.listings.load(Ordering::Relaxed))
    }
}

impl Drop for FakeEcr {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ecr_error(kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"__type": kind, "message": message}).to_string();
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.1"), ("x-amzn-errortype", kind)],
        body,
    )
        .into_response()
}

async fn ecr_api(
    State(shared): State<Arc<EcrShared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !header("authorization").starts_with("AWS4-HMAC-SHA256 ") {
        return ecr_error("MissingAuthenticationTokenException", "Missing Authentication Token");
    }
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ecr_error("SerializationException", "not JSON");
    };
    let ok = |value: serde_json::Value| {
        (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], value.to_string()).into_response()
    };
    match header("x-amz-target").as_str() {
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken" => {
            let n = shared.tokens.fetch_add(1, Ordering::Relaxed);
            let password = match &shared.book {
                Some(book) => {
                    let password = format!("ecr-token-{n}-{}", crate::token::random_suffix());
                    book.accept_basic(&shared.username, &password, Some(shared.lifetime));
                    password
                }
                None => shared.password.clone(),
            };
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", shared.username));
            let expires = std::time::SystemTime::now() + shared.lifetime;
            let epoch = expires.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            ok(serde_json::json!({"authorizationData": [{
                "authorizationToken": token,
                "expiresAt": epoch,
                "proxyEndpoint": shared.registry,
            }]}))
        }
        "AmazonEC2ContainerRegistry_V20150921.ListImages" => {
            shared.listings.fetch_add(1, Ordering::Relaxed);
            if shared.deny_listing {
                return ecr_error(
                    "AccessDeniedException",
                    "User: arn:aws:sts::123456789012:assumed-role/ferry-promoter/ferry is not authorized to perform: ecr:ListImages",
                );
            }
            let Some(name) = request["repositoryName"].as_str() else {
                return ecr_error("InvalidParameterException", "repositoryName is required");
            };
            let tags = shared
                .client
                .get(format!("{}/v2/{name}/tags/list", shared.registry))
                .basic_auth(&shared.username, Some(&shared.password))
                .send()
                .await;
            let tags = match tags {
                Ok(answer) if answer.status() == reqwest::StatusCode::NOT_FOUND => {
                    return ecr_error(
                        "RepositoryNotFoundException",
                        &format!(
                            "The repository with name '{name}' does not exist in the registry with id '123456789012'"
                        ),
                    );
                }
                Ok(answer) if answer.status().is_success() => {
                    answer.json::<serde_json::Value>().await.unwrap_or_default()
                }
                _ => return ecr_error("ServerException", "the registry behind the fake did not answer"),
            };
            let mut tags: Vec<String> = tags["tags"]
                .as_array()
                .map(|t| t.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            tags.sort();
            let start: usize = request["nextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let max = request["maxResults"].as_u64().map_or(100, |n| n as usize).min(shared.page);
            let mut ids = Vec::new();
            for tag in tags.iter().skip(start).take(max) {
                let head = shared
                    .client
                    .head(format!("{}/v2/{name}/manifests/{tag}", shared.registry))
                    .basic_auth(&shared.username, Some(&shared.password))
                    .header("accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json")
                    .send()
                    .await;
                let Some(digest) = head.ok().and_then(|h| {
                    h.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_owned)
                }) else {
                    return ecr_error(
                        "ServerException",
                        "the registry behind the fake did not answer a HEAD",
                    );
                };
                ids.push(serde_json::json!({"imageDigest": digest, "imageTag": tag}));
            }
            let mut answer = serde_json::json!({"imageIds": ids});
            if start + max < tags.len() {
                answer["nextToken"] = serde_json::Value::String((start + max).to_string());
            }
            ok(answer)
        }
        other => ecr_error("UnknownOperationException", &format!("{other} is not served by this fake")),
    }
}
