//! Docker credential helpers: `docker-credential-<name> get`, as the Docker CLI runs them
//! (docker/docker-credential-helpers' protocol): the server URL on stdin, and on stdout either
//! `{"ServerURL":…,"Username":…,"Secret":…}` or, with a non-zero exit,
//! `credentials not found in native keychain`. A username of `<token>` means the secret is an
//! identity (refresh) token.
//!
//! The helper is found on `PATH` and run directly, never through a shell; it gets no arguments
//! but `get`, its stderr is captured and shown escaped and shortened, and its stdout is never
//! shown (it holds the secret). It must answer within [`TIMEOUT`]. An answer is reused for
//! [`REUSE`], or until a registry refuses it.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use ferry_model::Host;
use ferry_registry::RegistryError;
use ferry_registry::auth::{Credential, Login};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use crate::renew::Renewing;

/// How long a helper may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a helper's answer is reused before the helper is asked again.
pub const REUSE: Duration = Duration::from_secs(10 * 60);
/// What helpers print when they have nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// One credential helper.
pub struct Helper {
    name: String,
    /// `PATH`, to find the helper on (`None`: the process's own).
    path: Option<std::ffi::OsString>,
    /// Why this helper is asked (`credHelpers` in config.json, `registries.hosts`).
    why: String,
    cache: Renewing<Option<Credential>>,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").field("name", &self.name).finish()
    }
}

/// Whether `name` can be a helper's name: `docker-credential-<name>` must be a file name, not a
/// path or an option.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Helper {
    /// The helper `docker-credential-<name>`, found on `path`; `why` says where it was named.
    /// A name that is not a plain file name is refused when asked.
    pub fn new(name: &str, why: &str, path: Option<std::ffi::OsString>) -> Self {
        Self { name: name.to_owned(), path, why: why.to_owned(), cache: Renewing::default() }
    }

    fn program(&self) -> String {
        format!("docker-credential-{}", self.name)
    }

    fn error(&self, host: &Host, reason: String, transient: bool) -> RegistryError {
        RegistryError::Login { host: host.clone(), via: self.source(), reason, transient }
    }

    /// How many times the helper ran.
    pub fn runs(&self) -> u64 {
        self.cache.fetches()
    }

    async fn run(&self, host: &Host) -> Result<(Option<Credential>, Duration), RegistryError> {
        if !valid_name(&self.name) {
            return Err(self.error(
                host,
                format!("{:?} is not a helper name (letters, digits, `-`, `_`, `.`)", self.name),
                false,
            ));
        }
        // What Docker sends: Docker Hub is keyed by its v1 URL, other registries by host.
        let server = if host.is_docker_hub() { "https://index.docker.io/v1/" } else { host.as_str() };
        let mut command = tokio::process::Command::new(self.program());
        if let Some(path) = &self.path {
            // On Unix the program is looked up on the PATH the child gets.
            command.env("PATH", path);
        }
        let mut child = command
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("{} is not on PATH", self.program())
                } else {
                    format!("cannot run {}: {e}", self.program())
                };
                self.error(host, reason, false)
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading stdin is judged by its answer below.
            let _ = stdin.write_all(server.as_bytes()).await;
        }
        let output = match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(self.error(host, format!("{} failed: {e}", self.program()), true)),
            Err(_) => {
                return Err(self.error(
                    host,
                    format!("{} did not answer within {}s", self.program(), TIMEOUT.as_secs()),
                    true,
                ));
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            if stdout.trim() == NOT_FOUND {
                tracing::debug!(helper = %self.program(), %host, "the credential helper has no credentials for the host");
                return Ok((None, REUSE));
            }
            // stdout may be anything, even a secret: only stderr is shown.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let said = first_line(&stderr);
            let status = output.status.code().map(|c| c.to_string()).unwrap_or_else(|| "a signal".into());
            let reason = if said.is_empty() {
                format!("{} exited with {status}", self.program())
            } else {
                format!("{} exited with {status}: {said}", self.program())
            };
            return Err(self.error(host, reason, false));
        }
        parse_answer(&output.stdout)
            .map(|credential| (credential, REUSE))
            .map_err(|reason| self.error(host, format!("{} {reason}", self.program()), false))
    }
}

/// The first line of a helper's stderr, escaped and shortened.
fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().trim();
    let short: String = line.chars().take(200).collect();
    ferry_model::escaped(&short).into_owned()
}

/// A helper's `get` answer.
fn parse_answer(stdout: &[u8]) -> Result<Option<Credential>, &'static str> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(stdout)
        .map_err(|_| "answered with something other than {\"Username\":…,\"Secret\":…} (not shown)")?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken(ferry_registry::Secret::new(answer.secret))
    } else {
        Credential::Basic { username: answer.username, password: ferry_registry::Secret::new(answer.secret) }
    }))
}

impl Login for Helper {
    fn source(&self) -> String {
        format!("the credential helper {} ({})", self.program(), self.why)
    }

    fn credential<'a>(
        &'a self,
        host: &'a Host,
        refused: Option<&'a Credential>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Credential>, RegistryError>> + Send + 'a>> {
        Box::pin(async move { self.cache.credential(host.as_str(), refused, || self.run(host)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_docker_reads_them() {
        let basic = parse_answer(br#"{"ServerURL":"ghcr.io","Username":"bot","Secret":"s3"}"#).unwrap();
        assert!(matches!(basic, Some(Credential::Basic { ref username, .. }) if username == "bot"));
        let token = parse_answer(br#"{"ServerURL":"x","Username":"<token>","Secret":"refresh"}"#).unwrap();
        assert!(matches!(token, Some(Credential::IdentityToken(_))));
        assert_eq!(parse_answer(br#"{"Username":"u","Secret":""}"#).unwrap(), None);
        let garbage = parse_answer(b"password123").unwrap_err();
        assert!(!garbage.contains("password123"));
    }

    #[test]
    fn helper_names_are_file_names() {
        for (name, ok) in [
            ("pass", true),
            ("ecr-login", true),
            ("gcloud", true),
            ("osxkeychain", true),
            ("../bin/sh", false),
            ("-v", false),
            ("a b", false),
            ("", false),
            ("a/b", false),
        ] {
            assert_eq!(valid_name(name), ok, "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_helper_that_hangs_is_given_up_on_and_named() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("ferry-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("docker-credential-slow");
        std::fs::write(&script, "#!/bin/sh\nexec /bin/sleep 600\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let helper = Helper::new("slow", "test", Some(dir.clone().into_os_string()));
        let host = Host::parse("registry.example").unwrap();
        // The paused clock jumps to the deadline while the helper sleeps.
        let error = helper.credential(&host, None).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "registry.example: cannot log in with the credential helper docker-credential-slow (test): docker-credential-slow did not answer within 30s"
        );
        assert_eq!(ferry_registry::Classify::class(&error), ferry_registry::ErrorClass::Transient);
        let missing = Helper::new("absent", "test", Some(dir.clone().into_os_string()));
        assert!(
            missing
                .credential(&host, None)
                .await
                .unwrap_err()
                .to_string()
                .ends_with("docker-credential-absent is not on PATH")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stderr_is_escaped_and_shortened() {
        assert_eq!(first_line("\n  boom\x1b[31m\nsecond"), "boom\\u{1b}[31m");
        assert_eq!(first_line(&"x".repeat(500)).len(), 200);
    }
}
