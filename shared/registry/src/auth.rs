//! Registry credentials and the token handshake.
//!
//! Credentials come, per host and in one precedence ([`Credentials`]), from the Ferry config's
//! `registries.hosts`, from input files, from Docker's `config.json` format (credential helpers,
//! a credential store, `auths`), from files and from an environment variable holding the same
//! JSON (for Lambda), or from a cloud login the host's name implies. Logins ([`Login`]) renew
//! themselves. Secrets live in [`Secret`]s, which never print.
//!
//! The handshake follows the distribution token spec: a 401 carries a
//! `WWW-Authenticate: Bearer realm=...,service=...` challenge, the client asks the realm for a
//! token for the scope it needs (with basic credentials if it has some), and sends it as
//! `Authorization: Bearer`. A `Basic` challenge is answered with the credentials directly.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ferry_model::Host;
use serde::Deserialize;

use crate::error::RegistryError;

/// A credential that must never be printed. `Debug` shows `Secret(***)` and there is no
/// `Display`; [`Secret::expose`] is called only where a header is built.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A secret read from a file or an answer (a token service's JSON) stays a `Secret`.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What Ferry can present to one registry host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: Secret,
    },
    /// A refresh token (`identitytoken` in `config.json`, an ACR refresh token), exchanged at the
    /// token realm.
    IdentityToken(Secret),
}

/// A credential that is obtained by logging in, and renewed: a credential helper, a cloud's
/// token service. Implementations cache what they get until shortly before it expires.
pub trait Login: Send + Sync + fmt::Debug {
    /// Where the credential comes from, for `ferry config check` and errors (never a secret):
    /// `the credential helper docker-credential-pass`, `ECR (GetAuthorizationToken, role …)`.
    fn source(&self) -> String;

    /// A credential for `host`, `None` when this source has none for it. `refused`: the
    /// registry (or its token service) refused this one; log in again unless the cached
    /// credential is already another.
    fn credential<'a>(
        &'a self,
        host: &'a Host,
        refused: Option<&'a Credential>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Credential>, RegistryError>> + Send + 'a>>;
}

/// What turns `config.json`'s helper names and a host's name into logins: provided by the
/// caller (`ferry-login`), so that this crate runs no process and knows no cloud.
pub trait Logins: Send + Sync + fmt::Debug {
    /// The credential helper `docker-credential-<name>`.
    fn helper(&self, name: &str) -> Arc<dyn Login>;

    /// The login a host's name implies (an ECR, Artifact Registry or ACR host), if any.
    fn detect(&self, host: &Host) -> Option<Arc<dyn Login>>;
}

/// Where one host's credential comes from.
#[derive(Clone, Debug)]
pub enum Provided {
    /// None: the host is reached anonymously.
    Anonymous {
        origin: String,
    },
    Static {
        credential: Credential,
        origin: String,
    },
    Login(Arc<dyn Login>),
    /// The first of these that has a credential for the host (a credential store that does not
    /// know the host falls through to `auths`).
    FirstOf(Vec<Provided>),
}

impl Provided {
    /// Where it comes from, in words (never the secret).
    pub fn source(&self) -> String {
        match self {
            Provided::Anonymous { origin } => format!("anonymous ({origin})"),
            Provided::Static { origin, .. } => origin.clone(),
            Provided::Login(login) => login.source(),
            Provided::FirstOf(list) => list.iter().map(Provided::source).collect::<Vec<_>>().join(", else "),
        }
    }

    fn is_login(&self) -> bool {
        match self {
            Provided::Login(_) => true,
            Provided::FirstOf(list) => list.iter().any(Provided::is_login),
            _ => false,
        }
    }

    fn credential<'a>(
        &'a self,
        host: &'a Host,
        refused: Option<&'a Credential>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Credential>, RegistryError>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                Provided::Anonymous { .. } => Ok(None),
                Provided::Static { credential, .. } => Ok(Some(credential.clone())),
                Provided::Login(login) => login.credential(host, refused).await,
                Provided::FirstOf(list) => {
                    for provided in list {
                        if let Some(credential) = provided.credential(host, refused).await? {
                            return Ok(Some(credential));
                        }
                    }
                    Ok(None)
                }
            }
        })
    }
}

/// Credentials by registry host, resolved in one documented precedence:
/// 1. the host's `auth` in the Ferry config (`registries.hosts`);
/// 2. credentials an input file names (Rancher `Repositories`, regsync `creds`);
/// 3. Docker's own order: `credHelpers[host]`, then `credsStore`, then `auths`;
/// 4. the provider the host's name implies (ECR, Artifact Registry and GCR, ACR);
/// 5. anonymous.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    configured: HashMap<Host, Provided>,
    inputs: HashMap<Host, Credential>,
    helpers: HashMap<Host, String>,
    store: Option<String>,
    auths: HashMap<Host, (Credential, String)>,
    logins: Option<Arc<dyn Logins>>,
    resolved: Arc<Mutex<HashMap<Host, Provided>>>,
}

/// Where credentials are read from, in increasing precedence. The caller (a config module)
/// decides the paths and reads the variable; this crate never reads the environment.
#[derive(Clone, Debug, Default)]
pub struct CredentialSources {
    /// `config.json`-format files, e.g. `~/.docker/config.json`, `$REGISTRY_AUTH_FILE`.
    /// Missing files are skipped.
    pub files: Vec<PathBuf>,
    /// The same JSON, inline (e.g. from `FERRY_REGISTRY_AUTH`).
    pub inline_json: Option<Secret>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl Credentials {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn load(sources: &CredentialSources) -> Result<Self, RegistryError> {
        let mut credentials = Credentials::default();
        for file in &sources.files {
            match std::fs::read(file) {
                Ok(bytes) => credentials.merge_json(&bytes, &file.display().to_string())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RegistryError::Config(format!(
                        "{}: cannot read credentials: {e}",
                        file.display()
                    )));
                }
            }
        }
        if let Some(json) = &sources.inline_json {
            credentials.merge_json(json.expose().as_bytes(), "FERRY_REGISTRY_AUTH")?;
        }
        Ok(credentials)
    }

    /// Adds a static credential for `host`, as an `auths` entry would (tests, `config.json`).
    pub fn insert(&mut self, host: Host, credential: Credential) {
        self.auths.insert(host, (credential, "a credential given in code".into()));
        self.forget();
    }

    /// The credential an input file names for `host` (precedence 2).
    pub fn insert_input(&mut self, host: Host, credential: Credential) {
        self.inputs.insert(host, credential);
        self.forget();
    }

    /// The host's `auth` in the Ferry config (precedence 1).
    pub fn configure(&mut self, host: Host, provided: Provided) {
        self.configured.insert(host, provided);
        self.forget();
    }

    /// Turns helper names and host names into logins.
    pub fn with_logins(mut self, logins: Arc<dyn Logins>) -> Self {
        self.logins = Some(logins);
        self.forget();
        self
    }

    fn forget(&mut self) {
        self.resolved = Arc::default();
    }

    /// Where `host`'s credential comes from, by the precedence above (resolved once).
    pub fn provided(&self, host: &Host) -> Provided {
        if let Some(found) = self.resolved.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            return found.clone();
        }
        let provided = self.resolve(host);
        self.resolved.lock().unwrap_or_else(|p| p.into_inner()).insert(host.clone(), provided.clone());
        provided
    }

    fn resolve(&self, host: &Host) -> Provided {
        if let Some(provided) = self.configured.get(host) {
            return provided.clone();
        }
        if let Some(credential) = self.inputs.get(host) {
            return Provided::Static {
                credential: credential.clone(),
                origin: "credentials an input file names (Repositories, creds)".into(),
            };
        }
        let mut docker = Vec::new();
        if let Some(logins) = &self.logins {
            if let Some(name) = self.helpers.get(host) {
                return Provided::Login(logins.helper(name));
            }
            if let Some(store) = &self.store {
                docker.push(Provided::Login(logins.helper(store)));
            }
        }
        if let Some((credential, origin)) = self.auths.get(host) {
            docker.push(Provided::Static { credential: credential.clone(), origin: origin.clone() });
        }
        if !docker.is_empty() {
            return if docker.len() == 1 { docker.remove(0) } else { Provided::FirstOf(docker) };
        }
        if let Some(login) = self.logins.as_ref().and_then(|l| l.detect(host)) {
            return Provided::Login(login);
        }
        Provided::Anonymous { origin: "no credential is configured for it".into() }
    }

    /// The credential for `host` now; `refused`: the one the registry just refused.
    pub async fn credential(
        &self,
        host: &Host,
        refused: Option<&Credential>,
    ) -> Result<Option<Credential>, RegistryError> {
        self.provided(host).credential(host, refused).await
    }

    /// Whether `host`'s credential comes from a login that can be renewed.
    pub fn renewable(&self, host: &Host) -> bool {
        self.provided(host).is_login()
    }

    /// The static credential for `host`, if any (ignores logins): for tests and messages.
    pub fn get(&self, host: &Host) -> Option<&Credential> {
        self.inputs.get(host).or_else(|| self.auths.get(host).map(|(c, _)| c))
    }

    fn merge_json(&mut self, bytes: &[u8], origin: &str) -> Result<(), RegistryError> {
        let config: ConfigJson = serde_json::from_slice(bytes).map_err(|e| {
            RegistryError::Config(format!(
                "{origin}: not a Docker config.json: {}",
                json_error_without_values(&e)
            ))
        })?;
        if let Some(store) = config.creds_store.filter(|s| !s.is_empty()) {
            self.store = Some(store);
        }
        for (key, helper) in config.cred_helpers {
            let host = host_of_auth_key(&key).ok_or_else(|| {
                RegistryError::Config(format!("{origin}: `credHelpers` key {key:?} is not a registry host"))
            })?;
            self.helpers.insert(host, helper);
        }
        for (key, entry) in config.auths {
            let host = host_of_auth_key(&key).ok_or_else(|| {
                RegistryError::Config(format!("{origin}: `auths` key {key:?} is not a registry host"))
            })?;
            let credential = entry_credential(entry).map_err(|reason| {
                RegistryError::Config(format!("{origin}: `auths` entry for {host}: {reason}"))
            })?;
            if let Some(credential) = credential {
                self.auths.insert(host, (credential, format!("`auths` in {origin}")));
            }
        }
        self.forget();
        Ok(())
    }
}

/// Where and what kind of JSON error `error` is, without the value serde_json quotes in
/// its message (`invalid type: string "hunter2"`): files and answers that hold secrets are
/// reported with this.
pub fn json_error_without_values(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match error.classify() {
        Category::Io => "cannot be read",
        Category::Syntax => "is not valid JSON",
        Category::Data => "has a field of the wrong type or a missing field",
        Category::Eof => "ends too early",
    };
    // The message's first words name the field for a missing field, never a value.
    let text = error.to_string();
    let field = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(|f| format!(" (missing `{f}`)"))
        .or_else(|| text.strip_prefix("unknown variant `").map(|_| " (an unknown `type`)".to_owned()))
        .unwrap_or_default();
    format!("{kind}{field} at line {} column {}", error.line(), error.column())
}

/// `auths` keys are hosts, sometimes written as URLs (`https://index.docker.io/v1/`).
fn host_of_auth_key(key: &str) -> Option<Host> {
    let without_scheme = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = without_scheme.split('/').next()?;
    Host::parse(host).ok()
}

fn entry_credential(entry: AuthEntry) -> Result<Option<Credential>, &'static str> {
    if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "`auth` is not base64")?;
        let decoded = String::from_utf8(decoded).map_err(|_| "`auth` is not UTF-8")?;
        let (username, password) =
            decoded.split_once(':').ok_or("`auth` is not base64(username:password)")?;
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        }));
    }
    match (entry.username, entry.password) {
        (Some(username), Some(password)) => {
            Ok(Some(Credential::Basic { username, password: Secret::new(password) }))
        }
        (None, None) => Ok(None),
        _ => Err("has a username without a password or the reverse"),
    }
}

/// The default `config.json` locations: `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
/// then `~/.docker/config.json`. Later files override earlier ones, so the list is returned
/// lowest precedence first.
pub fn default_files(
    home: Option<&Path>,
    docker_config: Option<&Path>,
    registry_auth_file: Option<&Path>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = home {
        files.push(home.join(".docker/config.json"));
    }
    if let Some(dir) = docker_config {
        files.push(dir.join("config.json"));
    }
    if let Some(file) = registry_auth_file {
        files.push(file.to_owned());
    }
    files
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// The `realm` and `service` of a `Bearer` challenge (`WWW-Authenticate`), for logins that
/// exchange tokens next to the realm (ACR).
pub fn bearer_realm(header: &str) -> Option<(String, Option<String>)> {
    match parse_challenge(header)? {
        Challenge::Bearer { realm, service } => Some((realm, service)),
        Challenge::Basic => None,
    }
}

/// Parses `Bearer realm="https://auth.example/token",service="registry",scope="..."` or
/// `Basic realm="..."`. Returns `None` for schemes Ferry does not speak.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(char::is_whitespace).unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    let realm = params.iter().find(|(k, _)| k.eq_ignore_ascii_case("realm"))?.1.clone();
    let service = params.iter().find(|(k, _)| k.eq_ignore_ascii_case("service")).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm, service })
}

/// Splits `k1="v1",k2=v2` honouring quotes (values may contain commas).
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_credential_json_is_located_but_never_quoted() {
        for (json, expected) in [
            (
                r#"{"auths": "hunter2"}"#,
                "has a field of the wrong type or a missing field at line 1 column 19",
            ),
            (r#"{"auths": {"ghcr.io": {"auth": 12345}}}"#, "wrong type"),
            (r#"{"auths": {"ghcr.io": {"auth": "abc"#, "ends too early"),
            ("hunter2", "is not valid JSON at line 1 column 1"),
        ] {
            let sources = CredentialSources { files: vec![], inline_json: Some(Secret::new(json)) };
            let error = Credentials::load(&sources).unwrap_err().to_string();
            assert!(error.contains(expected), "{json}: {error}");
            assert!(
                !error.contains("hunter2") && !error.contains("12345") && !error.contains("abc"),
                "{error}"
            );
        }
    }

    #[test]
    fn challenge_table() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull""#,
                Some(Challenge::Bearer {
                    realm: "https://auth.docker.io/token".into(),
                    service: Some("registry.docker.io".into()),
                }),
            ),
            (
                r#"bearer realm="http://127.0.0.1:1/t""#,
                Some(Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: None }),
            ),
            (
                r#"Bearer service="x",realm="r,with,commas""#,
                Some(Challenge::Bearer { realm: "r,with,commas".into(), service: Some("x".into()) }),
            ),
            (r#"Basic realm="Registry Realm""#, Some(Challenge::Basic)),
            ("Negotiate abc", None),
            ("Bearer service=\"x\"", None),
            ("", None),
        ];
        for (header, want) in cases {
            assert_eq!(parse_challenge(header), want, "{header}");
        }
    }

    #[test]
    fn config_json_table() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{b64}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                "ghcr.io": {{"identitytoken": "refresh"}},
                "quay.io": {{}}
            }}, "credsStore": "desktop"}}"#
        );
        let creds =
            Credentials::load(&CredentialSources { files: vec![], inline_json: Some(Secret::new(json)) })
                .unwrap();
        let hub = creds.get(&Host::parse("docker.io").unwrap()).unwrap();
        assert_eq!(
            hub,
            &Credential::Basic { username: "alice".into(), password: Secret::new("s3cret:with:colons") }
        );
        assert!(matches!(creds.get(&Host::parse("127.0.0.1:5000").unwrap()), Some(Credential::Basic { .. })));
        assert!(matches!(creds.get(&Host::parse("ghcr.io").unwrap()), Some(Credential::IdentityToken(_))));
        assert!(creds.get(&Host::parse("quay.io").unwrap()).is_none());
    }

    #[test]
    fn bad_config_never_echoes_secrets() {
        let cases = [
            r#"{"auths": {"a.io": {"auth": "not base64 s3cret!"}}}"#,
            r#"{"auths": {"a.io": {"username": "u"}}}"#,
            r#"{"auths": {"a.io": {"auth": 5}}} s3cret"#,
            r#"{"auths": {"bad host!": {}}}"#,
        ];
        for json in cases {
            let err =
                Credentials::load(&CredentialSources { files: vec![], inline_json: Some(Secret::new(json)) })
                    .unwrap_err()
                    .to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains("FERRY_REGISTRY_AUTH"), "{err}");
        }
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(***)");
    }
}
