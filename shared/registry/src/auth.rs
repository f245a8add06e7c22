//! Registry credentials and the token handshake.
//!
//! Credentials come from Docker's `config.json` format (`{"auths": {"host": {"auth": ...}}}`),
//! read from files and from an environment variable holding the same JSON (for Lambda, where a
//! secret is injected as a variable). They live in [`Secret`]s, which never print.
//!
//! The handshake follows the distribution token spec: a 401 carries a
//! `WWW-Authenticate: Bearer realm=...,service=...` challenge, the client asks the realm for a
//! token for the scope it needs (with basic credentials if it has some), and sends it as
//! `Authorization: Bearer`. A `Basic` challenge is answered with the credentials directly.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

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
    /// A refresh token (`identitytoken` in `config.json`), exchanged at the token realm.
    IdentityToken(Secret),
}

/// Credentials by registry host.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_host: HashMap<Host, Credential>,
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
            credentials.merge_json(json.expose().as_bytes(), "the inline registry credentials")?;
        }
        Ok(credentials)
    }

    /// Adds one credential, replacing any for the same host.
    pub fn insert(&mut self, host: Host, credential: Credential) {
        self.by_host.insert(host, credential);
    }

    pub fn get(&self, host: &Host) -> Option<&Credential> {
        self.by_host.get(host)
    }

    fn merge_json(&mut self, bytes: &[u8], origin: &str) -> Result<(), RegistryError> {
        // serde_json's message names line and column only, never the content.
        let config: ConfigJson = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Config(format!("{origin}: not a Docker config.json: {e}")))?;
        if let Some(store) = &config.creds_store {
            tracing::warn!(
                origin,
                store,
                "credential stores are not supported; only `auths` entries are used"
            );
        }
        for host in config.cred_helpers.keys() {
            tracing::warn!(
                origin,
                host,
                "credential helpers are not supported; only `auths` entries are used"
            );
        }
        for (key, entry) in config.auths {
            let host = host_of_auth_key(&key).ok_or_else(|| {
                RegistryError::Config(format!("{origin}: `auths` key {key:?} is not a registry host"))
            })?;
            let credential = entry_credential(entry).map_err(|reason| {
                RegistryError::Config(format!("{origin}: `auths` entry for {host}: {reason}"))
            })?;
            if let Some(credential) = credential {
                self.by_host.insert(host, credential);
            }
        }
        Ok(())
    }
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
            assert!(err.contains("inline registry credentials"), "{err}");
        }
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(***)");
    }
}
