//! Which hosts a transport may reach, when the registry names come from untrusted input.
//!
//! A pull request anyone can open names registries (`ferry check`, the checker stage). Without
//! a guard, naming a host is enough to make Ferry connect to it, with retries, and to report
//! how the connection failed: a port scanner of the checker's network, and a way to aim
//! requests at a cloud's metadata service. A [`HostGuard`] closes that in two places:
//!
//! - **before any I/O** ([`HostGuard::admit`]): a host outside the allowed set, or written as a
//!   reserved address (loopback, private, link-local, metadata) that the configuration does
//!   not name, is refused with [`RegistryError::NotAllowed`] and never contacted;
//! - **at connect time** ([`GuardedResolver`], and the redirect policy): a name that resolves to
//!   a reserved address is refused, unless the configuration names that host. A redirect to a
//!   reserved address literal is refused the same way. So is a token realm.
//!
//! The guard covers registry hosts only; Ferry's own endpoints (a cloud's token service, the
//! metadata service that hands out Ferry's credentials) are not input and do not go through a
//! guarded transport. An open guard (the default) admits everything: promotion reads reviewed
//! manifests, and its registries may well live on a private network.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_model::{Host, Reserved, reserved_address};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::RegistryError;

/// The hosts a transport may reach. `Default` is open: every host.
#[derive(Clone, Default)]
pub struct HostGuard {
    /// `Some`: only these registry hosts are contacted; `None`: any host (trusted input).
    only: Option<Arc<BTreeSet<Host>>>,
    /// Host names (without ports) that the configuration names: their addresses are never
    /// questioned, so a registry the operator put on loopback or a private network works.
    named: Arc<BTreeSet<String>>,
    /// The resolver under the guard's check: the system's, unless a test injects one.
    resolver: Option<Arc<dyn Resolve>>,
}

impl std::fmt::Debug for HostGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostGuard")
            .field("only", &self.only)
            .field("named", &self.named)
            .field("resolver", &self.resolver.as_ref().map(|_| "injected"))
            .finish()
    }
}

impl HostGuard {
    /// A guard that admits only `allowed`, of which `named` are named by the configuration
    /// (their addresses are trusted; the others' are checked when they are resolved).
    pub fn only(allowed: impl IntoIterator<Item = Host>, named: impl IntoIterator<Item = Host>) -> Self {
        let named: BTreeSet<Host> = named.into_iter().collect();
        let mut allowed: BTreeSet<Host> = allowed.into_iter().collect();
        allowed.extend(named.iter().cloned());
        Self {
            only: Some(Arc::new(allowed)),
            named: Arc::new(named.iter().map(|h| h.name().to_owned()).collect()),
            resolver: None,
        }
    }

    /// Resolves names with `resolver` instead of the system's (tests: one that records and
    /// never sends a packet off the machine).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Whether this guard restricts anything.
    pub fn is_open(&self) -> bool {
        self.only.is_none()
    }

    /// The allowed hosts, when restricted.
    pub fn allowed(&self) -> Option<&BTreeSet<Host>> {
        self.only.as_deref()
    }

    fn names(&self, name: &str) -> bool {
        self.named.contains(&name.to_ascii_lowercase())
    }

    /// Checks `host` before any request to it: refused when outside the allowed set, or when
    /// it is written as a reserved address (or a name that always means one) that the
    /// configuration does not name.
    pub fn admit(&self, host: &Host) -> Result<(), RegistryError> {
        let Some(only) = &self.only else { return Ok(()) };
        if !only.contains(host) {
            return Err(RegistryError::NotAllowed {
                host: host.to_string(),
                reason: "the policy does not allow this registry host; it was not contacted".into(),
            });
        }
        self.admit_address(host.name())
    }

    /// Checks a host name or address that a registry steered Ferry to (a token realm, a
    /// redirect): allowed unless it is a reserved address literal the configuration does not
    /// name. Names are checked when resolved.
    pub fn admit_address(&self, name: &str) -> Result<(), RegistryError> {
        let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
        if self.only.is_none() || self.names(bare) {
            return Ok(());
        }
        let reserved = match bare.parse() {
            Ok(ip) => reserved_address(ip),
            Err(_) => Host::parse(bare).ok().and_then(|h| h.reserved()),
        };
        match reserved {
            Some(kind) => Err(not_allowed(bare, kind)),
            None => Ok(()),
        }
    }

    /// The resolver to install in the HTTP client, when the guard restricts anything or a
    /// resolver was injected.
    pub(crate) fn resolver(&self) -> Option<Arc<GuardedResolver>> {
        if self.only.is_none() && self.resolver.is_none() {
            return None;
        }
        Some(Arc::new(GuardedResolver { guard: self.clone() }))
    }

    /// The redirect policy: at most `limit` hops, none of them to a reserved address literal
    /// the configuration does not name (names are checked by the resolver).
    pub(crate) fn redirect_policy(&self, limit: usize) -> reqwest::redirect::Policy {
        if self.only.is_none() {
            return reqwest::redirect::Policy::limited(limit);
        }
        let guard = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= limit {
                return attempt.error(format!("more than {limit} redirects"));
            }
            let host = attempt.url().host_str().unwrap_or_default().to_owned();
            match guard.admit_address(&host) {
                Ok(()) => attempt.follow(),
                Err(error) => attempt.error(error.to_string()),
            }
        })
    }
}

fn not_allowed(name: &str, kind: Reserved) -> RegistryError {
    RegistryError::NotAllowed {
        host: name.to_owned(),
        reason: format!("{kind}, which the configuration does not name; it was not contacted"),
    }
}

/// Resolves a name, then refuses it if any address it resolves to is reserved and the
/// configuration does not name the host. Refusing on any (not only on all) reserved answer
/// keeps a name with one public and one private address from being used to reach the private
/// one on a retry.
#[derive(Debug)]
pub struct GuardedResolver {
    guard: HostGuard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let name_text = name.as_str().to_owned();
        Box::pin(async move {
            let checked = guard.only.is_some() && !guard.names(&name_text);
            let refused = |error: RegistryError| Box::new(error) as Box<dyn std::error::Error + Send + Sync>;
            if checked && let Some(kind) = Host::parse(&name_text).ok().and_then(|h| h.reserved()) {
                return Err(refused(not_allowed(&name_text, kind)));
            }
            let addresses: Vec<SocketAddr> = match &guard.resolver {
                Some(inner) => inner.resolve(name).await?.collect(),
                None => tokio::net::lookup_host((name_text.as_str(), 0)).await?.collect(),
            };
            if checked && let Some(kind) = addresses.iter().find_map(|a| reserved_address(a.ip())) {
                return Err(refused(RegistryError::NotAllowed {
                    host: name_text.clone(),
                    reason: format!(
                        "it resolves to {kind}, which the configuration does not name; it was not contacted"
                    ),
                }));
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_open_guard_admits_everything() {
        let guard = HostGuard::default();
        for h in ["gcr.io", "127.0.0.1:5000", "169.254.169.254", "metadata.google.internal"] {
            assert!(guard.admit(&host(h)).is_ok(), "{h}");
        }
        assert!(guard.resolver().is_none());
    }

    #[test]
    fn a_restricted_guard_admits_the_allowed_and_the_named_only() {
        let guard = HostGuard::only(
            [host("gcr.io"), host("10.0.0.5:5000"), host("registry.example")],
            [host("127.0.0.1:5001"), host("harbor.internal")],
        );
        for (h, ok) in [
            ("gcr.io", true),
            ("registry.example", true),
            // Named by the configuration: its address is trusted.
            ("127.0.0.1:5001", true),
            ("harbor.internal", true),
            // Allowed (the base tree uses it) but a private address the config does not name.
            ("10.0.0.5:5000", false),
            ("quay.io", false),
            ("127.0.0.1:5002", false),
            ("169.254.169.254", false),
            ("metadata.google.internal", false),
        ] {
            assert_eq!(guard.admit(&host(h)).is_ok(), ok, "{h}");
        }
        // Addresses a registry steers to (a realm, a redirect).
        assert!(guard.admit_address("127.0.0.1").is_ok(), "the named registry's own address");
        assert!(guard.admit_address("169.254.169.254").is_err());
        assert!(guard.admit_address("[fd00:ec2::254]").is_err());
        assert!(guard.admit_address("storage.googleapis.com").is_ok());
        let error = guard.admit(&host("quay.io")).unwrap_err().to_string();
        assert!(error.contains("quay.io") && error.contains("not contacted"), "{error}");
    }

    use proptest::strategy::Strategy as _;

    /// An IPv4 address written the ways URL parsers accept: dotted decimal, one number,
    /// hex, octal, two and three parts, mixed.
    fn spellings(address: u32) -> Vec<String> {
        let [a, b, c, d] = address.to_be_bytes();
        vec![
            format!("{a}.{b}.{c}.{d}"),
            format!("{address}"),
            format!("0x{address:x}"),
            format!("0X{address:08X}"),
            format!("0{address:o}"),
            format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            format!("{a}.{}", address & 0x00ff_ffff),
            format!("{a}.{b}.{}", address & 0xffff),
            format!("{a}.0x{b:x}.{c}.0{d:o}"),
            format!("{a}.{b}.{c}.{d}."),
            format!("[::ffff:{a}.{b}.{c}.{d}]"),
            format!("[::ffff:{:x}:{:x}]", address >> 16, address & 0xffff),
            format!("[::{a}.{b}.{c}.{d}]"),
            format!("[64:ff9b::{a}.{b}.{c}.{d}]"),
            format!("[0:0:0:0:0:ffff:{a}.{b}.{c}.{d}]"),
        ]
    }

    proptest::proptest! {
        /// Whatever a pull request writes as a host, if Ferry accepts it and the guard lets it
        /// through, the URL Ferry would request does not name a reserved address: the string
        /// is read by the same URL parser reqwest connects with.
        #[test]
        fn no_spelling_of_a_reserved_address_gets_through(
            address in proptest::prop_oneof![
                proptest::strategy::Just(0xa9fe_a9fe_u32),
                (0u32..=0xffff).prop_map(|low| 0xa9fe_0000 | low),
                (0u32..=0x00ff_ffff).prop_map(|low| 0x7f00_0000 | low),
                (0u32..=0x00ff_ffff).prop_map(|low| 0x0a00_0000 | low),
                (0u32..=0xffff).prop_map(|low| 0xc0a8_0000 | low),
                proptest::strategy::Just(0xa83f_8110_u32),
                proptest::num::u32::ANY,
            ],
            port in proptest::option::of(1u16..),
            pick in 0usize..16,
        ) {
            let spelled = &spellings(address)[pick];
            let text = match port { Some(p) => format!("{spelled}:{p}"), None => spelled.clone() };
            let Ok(parsed) = Host::parse(&text) else { return Ok(()) };
            let guard = HostGuard::only([parsed.clone()], []);
            let url = reqwest::Url::parse(&format!("http://{}/v2/", parsed.api_authority())).unwrap();
            let written = url.host_str().unwrap_or_default();
            let bare = written.trim_start_matches('[').trim_end_matches(']');
            let reached = bare.parse::<std::net::IpAddr>().ok().and_then(reserved_address);
            if reached.is_some() {
                proptest::prop_assert!(guard.admit(&parsed).is_err(), "{text} reaches {url} and was admitted");
            }
        }
    }

    /// Resolves every name to one loopback listener, and records the names asked for: a
    /// resolver under which no request can leave the machine.
    #[derive(Debug, Default)]
    struct Recording {
        to: std::sync::Mutex<Option<SocketAddr>>,
        asked: std::sync::Mutex<Vec<String>>,
        answer: std::sync::Mutex<Option<std::net::IpAddr>>,
    }

    impl Resolve for Recording {
        fn resolve(&self, name: Name) -> Resolving {
            self.asked.lock().unwrap().push(name.as_str().to_owned());
            let to = self.to.lock().unwrap().unwrap();
            // What the resolver claims the name is; the connection still goes to `to`,
            // which is only reached if the guard lets the claimed address through.
            let claimed = *self.answer.lock().unwrap();
            Box::pin(async move {
                let addresses = match claimed {
                    Some(ip) => vec![SocketAddr::new(ip, to.port())],
                    None => vec![to],
                };
                Ok(Box::new(addresses.into_iter()) as Addrs)
            })
        }
    }

    #[tokio::test]
    async fn names_resolving_to_reserved_addresses_are_refused_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let canary = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        let recording = Arc::new(Recording::default());
        *recording.to.lock().unwrap() = Some(canary);
        let port = canary.port();
        let evil = host(&format!("registry.evil.example:{port}"));
        let named = host(&format!("registry.internal.example:{port}"));
        let guard = HostGuard::only([evil.clone()], [named.clone()]).with_resolver(recording.clone());
        let transport =
            crate::transport::Transport::new(crate::TransportConfig { guard, ..Default::default() }).unwrap();
        // The allowed name resolves to loopback, which the configuration does not name.
        let refused = transport.probe(&evil, Some("http")).await.unwrap_err();
        assert!(refused.contains("loopback") && refused.contains("not contacted"), "{refused}");
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The same address under a name the configuration gives is reached.
        assert_eq!(transport.probe(&named, Some("http")).await, Ok(200));
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A name the resolver says is the metadata service: refused, nothing connects.
        *recording.answer.lock().unwrap() = Some("169.254.169.254".parse().unwrap());
        let refused = transport.probe(&evil, Some("http")).await.unwrap_err();
        assert!(refused.contains("metadata"), "{refused}");
        // Hosts outside the allowed set are never even resolved.
        let before = recording.asked.lock().unwrap().len();
        for outside in ["quay.io", "metadata.google.internal", "169.254.169.254", "127.0.0.1:9"] {
            let refused = transport.probe(&host(outside), Some("http")).await.unwrap_err();
            assert!(refused.contains("not contacted"), "{outside}: {refused}");
        }
        assert_eq!(recording.asked.lock().unwrap().len(), before);
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
