//! Real CNCF distribution registries on loopback.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_model::{Host, RepoPath, Repository};

/// How to run one registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Require HTTP basic auth with this user and password (htpasswd).
    pub basic_auth: Option<(String, String)>,
    /// Require bearer tokens from this token service.
    pub token_auth: Option<TokenAuthConfig>,
    /// Send push notifications to these endpoints.
    pub notifications: Vec<Notification>,
}

/// Distribution's `auth.token` settings.
#[derive(Clone, Debug)]
pub struct TokenAuthConfig {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificate bundle holding the token signer's certificate.
    pub root_cert_bundle: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Notification {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A running `docker-registry`. Killed, and its storage deleted, on drop.
#[derive(Debug)]
pub struct RegistryServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The client's `User-Agent` (Ferry sends `ferry/<version>`).
    pub user_agent: String,
}

impl AccessLine {
    /// What the request was for, from its path: the kinds the requests-per-promotion
    /// accounting uses (`manifest`, `upload`, `blob`, `tag list`, `referrers`, `other`).
    pub fn kind(&self) -> &'static str {
        let path = &self.path;
        if path.contains("/manifests/") {
            "manifest"
        } else if path.contains("/blobs/uploads") {
            "upload"
        } else if path.contains("/blobs/") {
            "blob"
        } else if path.contains("/tags/list") {
            "tag list"
        } else if path.contains("/referrers/") {
            "referrers"
        } else {
            "other"
        }
    }
}

/// Requests per (method, kind), as `GET manifest 150, HEAD blob 12, …`.
pub fn breakdown<'a>(lines: impl IntoIterator<Item = &'a AccessLine>) -> String {
    let mut counts: std::collections::BTreeMap<(&str, &'static str), usize> =
        std::collections::BTreeMap::new();
    for line in lines {
        *counts.entry((line.method.as_str(), line.kind())).or_default() += 1;
    }
    counts.iter().map(|((method, kind), n)| format!("{method} {kind} {n}")).collect::<Vec<_>>().join(", ")
}

impl RegistryServer {
    pub async fn start() -> Self {
        Self::start_with(RegistryOptions::default()).await
    }

    pub async fn start_with(options: RegistryOptions) -> Self {
        let binary = crate::require_binary("docker-registry", "docker-registry");
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("ferry-registry-").tempdir().expect("temp dir");
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(&dir, port, &options)).expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let mut server = RegistryServer { child, dir, port };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("{}/v2/", self.base_url());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited with {status}: {}", self.log_text()));
            }
            // The port alone could be answered by another test's server that took it first;
            // only this one sends its own instance header.
            let instance = instance(&self.dir);
            if let Ok(response) = reqwest::get(&url).await
                && (response.status().is_success() || response.status() == 401)
                && response
                    .headers()
                    .get("x-ferry-test-instance")
                    .is_some_and(|v| v.as_bytes() == instance.as_bytes())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Err(format!("not ready after 10 s: {}", self.log_text()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> Host {
        Host::parse(&format!("127.0.0.1:{}", self.port)).expect("valid host")
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn repository(&self, path: &str) -> Repository {
        Repository::new(self.host(), RepoPath::parse(path).expect("valid repository path"))
    }

    /// CPU seconds (user + system) the registry process has used so far, from `/proc`.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may contain spaces.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are the 14th and 15th fields of the whole line: 12th and 13th here.
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request the registry has logged so far (distribution's combined access log).
    pub fn access_log(&self) -> Vec<AccessLine> {
        self.log_text().lines().filter_map(parse_access_line).collect()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "ua"`.
fn parse_access_line(line: &str) -> Option<AccessLine> {
    let start = line.find("] \"")? + 3;
    let rest = &line[start..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_owned();
    let path = request.next()?.to_owned();
    let after = &rest[end + 1..];
    let status = after.split_whitespace().next()?.parse().ok()?;
    // `… 200 2 "referer" "user agent"`: the last quoted field.
    let user_agent = after
        .trim_end()
        .strip_suffix('"')
        .and_then(|a| a.rsplit_once('"'))
        .map(|(_, ua)| ua.to_owned())
        .unwrap_or_default();
    Some(AccessLine { method, path, status, user_agent })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A name only this server answers with (a response header), from its temporary directory.
fn instance(dir: &tempfile::TempDir) -> String {
    dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn config_yaml(dir: &tempfile::TempDir, port: u16, options: &RegistryOptions) -> String {
    let root = dir.path().join("data");
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Content-Type-Options: [nosniff]\n    X-Ferry-Test-Instance: [\"{}\"]\n",
        root.display(),
        instance(dir)
    );
    if let Some((user, password)) = &options.basic_auth {
        let hash = bcrypt::hash(password, 4).expect("bcrypt");
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: ferry-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    if let Some(token) = &options.token_auth {
        yaml.push_str(&format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            token.realm,
            token.service,
            token.issuer,
            token.root_cert_bundle.display()
        ));
    }
    if !options.notifications.is_empty() {
        yaml.push_str("notifications:\n  endpoints:\n");
        for (i, n) in options.notifications.iter().enumerate() {
            yaml.push_str(&format!(
                "  - name: ferry-{i}\n    url: {}\n    timeout: 2s\n    threshold: 10\n    backoff: 200ms\n",
                n.url
            ));
            if !n.headers.is_empty() {
                yaml.push_str("    headers:\n");
                for (k, v) in &n.headers {
                    yaml.push_str(&format!("      {k}: [\"{v}\"]\n"));
                }
            }
            // Blob events and pulls are noise to Ferry. In 2.8, `ignore.actions` only works
            // when `ignore.mediatypes` is non-empty too.
            yaml.push_str(
                "    ignore:\n      mediatypes: [application/octet-stream]\n      actions: [pull]\n",
            );
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_parsing() {
        let line = r#"127.0.0.1 - - [24/Nov/2026:04:40:53 +0000] "HEAD /v2/demo/app/manifests/1.0 HTTP/1.1" 404 96 "" "ferry/0.1.0""#;
        assert_eq!(
            parse_access_line(line),
            Some(AccessLine {
                method: "HEAD".into(),
                path: "/v2/demo/app/manifests/1.0".into(),
                status: 404,
                user_agent: "ferry/0.1.0".into()
            })
        );
        assert_eq!(parse_access_line("time=... level=warning msg=x"), None);
    }
}
