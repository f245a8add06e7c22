//! Registry hosts, repository paths, registry prefixes and full repositories.
//!
//! kpromo calls a registry `gcr.io/k8s-staging-kops`: a host plus a path prefix under which
//! image names live. That is a [`RegistryPath`]. Joining an image name (`dns-controller`) to it
//! gives a [`Repository`] (`gcr.io/k8s-staging-kops/dns-controller`), the unit registries
//! actually store manifests and tags in.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ModelError, shorten};

/// Docker Hub's canonical name. `index.docker.io` and `registry-1.docker.io` are normalised to
/// it; [`Host::api_authority`] gives the host that actually serves the API.
pub const DOCKER_HUB: &str = "docker.io";

/// A registry host with an optional port: `gcr.io`, `127.0.0.1:5001`, `[::1]:5000`. Stored
/// lowercase, since host names are case-insensitive.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host(Arc<str>);

impl Host {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let fail = |reason| ModelError::Host { value: shorten(value), reason };
        if value.is_empty() {
            return Err(fail("must not be empty"));
        }
        if value.len() > 255 {
            return Err(fail("must be at most 255 characters"));
        }
        let (name, port) = split_port(value).ok_or_else(|| fail("has a malformed port or IPv6 address"))?;
        if let Some(port) = port {
            match port.parse::<u16>() {
                Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
                _ => return Err(fail("port must be a number from 1 to 65535")),
            }
        }
        let name = if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            let Ok(address) = inner.parse::<std::net::Ipv6Addr>() else {
                return Err(fail("bracketed host must be an IPv6 address"));
            };
            // An IPv4 address written as IPv6 reaches the IPv4 address: one address, one
            // spelling, so that an allow-list or a deny-list cannot be walked around.
            if address.to_ipv4_mapped().is_some() || is_ipv4_compatible(&address) {
                return Err(fail("is an IPv4 address written as IPv6; write the IPv4 address"));
            }
            // `[0:0::1]` and `[::1]` are one host: kept in the one canonical spelling.
            format!("[{address}]")
        } else {
            let labels_ok = name.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
            if !labels_ok {
                return Err(fail("host name labels may contain only letters, digits and inner '-'"));
            }
            if ends_in_a_number(name) && name.parse::<std::net::Ipv4Addr>().is_err() {
                // URL parsers read `2852039166`, `0xa9.0xfe.0xa9.0xfe` and `0251.0376.0251.0376`
                // as 169.254.169.254. No registry is named that way.
                return Err(fail(
                    "is a numeric address in a form other than dotted decimal (a.b.c.d), which reaches an arbitrary address",
                ));
            }
            name.to_ascii_lowercase()
        };
        let canonical = match (name.as_str(), port) {
            ("index.docker.io" | "registry-1.docker.io", None) => DOCKER_HUB.to_owned(),
            (_, Some(port)) => format!("{name}:{port}"),
            (_, None) => name,
        };
        Ok(Self(canonical.into()))
    }

    /// The host name or address without the port: `127.0.0.1` of `127.0.0.1:5000`, `::1` of
    /// `[::1]:5000`.
    pub fn name(&self) -> &str {
        let (name, _) = split_port(&self.0).unwrap_or((&self.0, None));
        name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name)
    }

    /// The IP address this host is written as, if it is an address rather than a name.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.name().parse().ok()
    }

    /// Why requests to this host could reach something other than a public registry: a
    /// loopback, private, link-local or metadata address written literally, or a name that
    /// always means one (`localhost`, `metadata.google.internal`). Names are otherwise only
    /// known once resolved; see [`reserved_address`].
    pub fn reserved(&self) -> Option<Reserved> {
        match self.ip() {
            Some(ip) => reserved_address(ip),
            None => reserved_name(self.name()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_docker_hub(&self) -> bool {
        &*self.0 == DOCKER_HUB
    }

    /// The authority to send HTTP requests to. Docker Hub's API lives on another host than
    /// its name.
    pub fn api_authority(&self) -> &str {
        if self.is_docker_hub() { "registry-1.docker.io" } else { &self.0 }
    }

    /// Whether a leading path component names a host rather than a Docker Hub organisation,
    /// by Docker's own rule: it contains a '.' or ':' or is `localhost`.
    pub fn looks_like_host(component: &str) -> bool {
        component.contains('.') || component.contains(':') || component == "localhost"
    }
}

/// Whether `name`'s last label is a number as the URL standard reads one (decimal, `0x` hex,
/// or octal with a leading 0), which makes the whole name an IPv4 address to a URL parser.
fn ends_in_a_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or_default();
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `::a.b.c.d`, the deprecated IPv4-compatible form (not `::` or `::1`).
fn is_ipv4_compatible(address: &std::net::Ipv6Addr) -> bool {
    let s = address.segments();
    s[..6].iter().all(|x| *x == 0) && (s[6] != 0 || s[7] > 1)
}

/// What kind of address a request would reach that is not a public registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    Loopback,
    /// RFC 1918, shared address space (100.64.0.0/10), IPv6 unique local.
    Private,
    LinkLocal,
    /// A cloud's instance metadata service (169.254.169.254, fd00:ec2::254, Azure's
    /// 168.63.129.16, `metadata.google.internal`).
    Metadata,
    /// Unspecified, broadcast, multicast or reserved ranges.
    Unroutable,
}

impl Reserved {
    pub fn describe(self) -> &'static str {
        match self {
            Reserved::Loopback => "a loopback address",
            Reserved::Private => "a private network address",
            Reserved::LinkLocal => "a link-local address",
            Reserved::Metadata => "a cloud metadata service address",
            Reserved::Unroutable => "an address that is not a unicast internet address",
        }
    }
}

impl fmt::Display for Reserved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Names that always mean a reserved address, whatever a resolver says.
fn reserved_name(name: &str) -> Option<Reserved> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match name.as_str() {
        "localhost" => Some(Reserved::Loopback),
        _ if name.ends_with(".localhost") => Some(Reserved::Loopback),
        "metadata"
        | "metadata.google.internal"
        | "metadata.goog"
        | "instance-data"
        | "instance-data.ec2.internal" => Some(Reserved::Metadata),
        _ => None,
    }
}

/// Why `ip` is not a public registry's address, if it is not.
pub fn reserved_address(ip: std::net::IpAddr) -> Option<Reserved> {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4 == std::net::Ipv4Addr::new(169, 254, 169, 254)
                || v4 == std::net::Ipv4Addr::new(169, 254, 170, 2)
                || v4 == std::net::Ipv4Addr::new(168, 63, 129, 16)
            {
                Some(Reserved::Metadata)
            } else if v4.is_loopback() {
                Some(Reserved::Loopback)
            } else if v4.is_link_local() {
                Some(Reserved::LinkLocal)
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some(Reserved::Private)
            } else if v4.is_unspecified() || a == 0 || v4.is_broadcast() || v4.is_multicast() || a >= 240 {
                Some(Reserved::Unroutable)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reserved_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let v4 =
                    std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return reserved_address(IpAddr::V4(v4));
            }
            if v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some(Reserved::Metadata)
            } else if v6.is_loopback() {
                Some(Reserved::Loopback)
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some(Reserved::LinkLocal)
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some(Reserved::Private)
            } else if v6.is_unspecified() || v6.is_multicast() || is_ipv4_compatible(&v6) {
                Some(Reserved::Unroutable)
            } else {
                None
            }
        }
    }
}

/// Splits `host:port` / `[v6]:port`. Returns `None` for malformed brackets.
fn split_port(value: &str) -> Option<(&str, Option<&str>)> {
    if value.starts_with('[') {
        let close = value.find(']')?;
        let (name, rest) = value.split_at(close + 1);
        return match rest {
            "" => Some((name, None)),
            _ => rest.strip_prefix(':').map(|port| (name, Some(port))),
        };
    }
    match value.rsplit_once(':') {
        Some((name, port)) => Some((name, Some(port))),
        None => Some((value, None)),
    }
}

/// A repository path such as `k8s-staging-kops/dns-controller`: slash-separated components of
/// the distribution grammar `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most 255 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(Arc<str>);

impl RepoPath {
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let fail = |reason| ModelError::RepoPath { value: shorten(value), reason };
        if value.is_empty() {
            return Err(fail("must not be empty"));
        }
        if value.len() > 255 {
            return Err(fail("must be at most 255 characters"));
        }
        for component in value.split('/') {
            if component.is_empty() {
                return Err(fail("must not have empty components (leading, trailing or double '/')"));
            }
            check_component(component).map_err(fail)?;
        }
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/child`.
    pub fn join(&self, child: &RepoPath) -> Result<RepoPath, ModelError> {
        RepoPath::parse(&format!("{}/{}", self.0, child.0))
    }

    /// The path below `prefix`, if it lies under it: `a/b/c` under `a` is `b/c`.
    pub fn strip_prefix(&self, prefix: &RepoPath) -> Option<RepoPath> {
        let rest = self.0.strip_prefix(&*prefix.0)?.strip_prefix('/')?;
        Some(RepoPath(rest.into()))
    }
}

fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("components must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let valid = matches!(run, "." | "_" | "__") || run.bytes().all(|c| c == b'-');
        if !valid {
            return Err(if run.bytes().any(|c| !matches!(c, b'.' | b'_' | b'-')) {
                "may contain only lowercase letters, digits, '.', '_', '-' and '/'"
            } else {
                "separators must be '.', '_', '__' or a run of '-'"
            });
        }
    }
    Ok(())
}

/// A registry as kpromo names it: a host and an optional path prefix, e.g.
/// `asia-east1-docker.pkg.dev/k8s-artifacts-prod/images/kops`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistryPath {
    pub host: Host,
    pub prefix: Option<RepoPath>,
}

impl RegistryPath {
    /// Parses `host[/prefix]`. The first component is always taken as the host.
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let trimmed = value.strip_suffix('/').unwrap_or(value);
        let (host, prefix) = match trimmed.split_once('/') {
            Some((host, prefix)) => (host, Some(RepoPath::parse(prefix)?)),
            None => (trimmed, None),
        };
        Ok(Self { host: Host::parse(host)?, prefix })
    }

    /// The repository for image `name` under this registry. Under Docker Hub without a
    /// prefix, a single-component name gets the implicit `library/` organisation.
    pub fn join(&self, name: &RepoPath) -> Result<Repository, ModelError> {
        let path = match &self.prefix {
            Some(prefix) => prefix.join(name)?,
            None if self.host.is_docker_hub() && !name.as_str().contains('/') => {
                RepoPath::parse(&format!("library/{name}"))?
            }
            None => name.clone(),
        };
        Ok(Repository::new(self.host.clone(), path))
    }

    /// The image name of `repository` relative to this registry, if it lies under it.
    pub fn name_of(&self, repository: &Repository) -> Option<RepoPath> {
        if repository.host() != &self.host {
            return None;
        }
        match &self.prefix {
            Some(prefix) => repository.path().strip_prefix(prefix),
            None => Some(repository.path().clone()),
        }
    }

    /// Whether `repository` lies under this registry path.
    pub fn contains(&self, repository: &Repository) -> bool {
        self.name_of(repository).is_some()
    }
}

/// A repository on a registry host: `host/path`. Cheap to clone and compare.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(Arc<(Host, RepoPath)>);

impl Repository {
    pub fn new(host: Host, path: RepoPath) -> Self {
        Self(Arc::new((host, path)))
    }

    /// Parses `host/path`, where the host is required (no Docker Hub shorthand).
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let Some((host, path)) = value.split_once('/') else {
            return Err(ModelError::Reference {
                value: shorten(value),
                reason: "a repository needs a registry host and a path, as in host/path",
            });
        };
        Ok(Self::new(Host::parse(host)?, RepoPath::parse(path)?))
    }

    /// Parses a Docker-style name: `nginx` is `docker.io/library/nginx`, `org/repo` is
    /// `docker.io/org/repo`, and a first component that looks like a host is the host.
    pub fn parse_docker_style(value: &str) -> Result<Self, ModelError> {
        match value.split_once('/') {
            Some((first, rest)) if Host::looks_like_host(first) => {
                RegistryPath { host: Host::parse(first)?, prefix: None }.join(&RepoPath::parse(rest)?)
            }
            _ => RegistryPath { host: Host::parse(DOCKER_HUB)?, prefix: None }.join(&RepoPath::parse(value)?),
        }
    }

    pub fn host(&self) -> &Host {
        &self.0.0
    }

    pub fn path(&self) -> &RepoPath {
        &self.0.1
    }
}

macro_rules! string_like {
    ($ty:ty) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }
    };
}
string_like!(Host);
string_like!(RepoPath);

impl fmt::Display for RegistryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(prefix) => write!(f, "{}/{}", self.host, prefix),
            None => write!(f, "{}", self.host),
        }
    }
}

impl fmt::Debug for RegistryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host(), self.path())
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Serde support: every type here travels as its canonical string and is re-validated on the
/// way in, so a message or file can never smuggle in an invalid value.
macro_rules! serde_as_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                <$ty>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
        impl FromStr for $ty {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$ty>::parse(s)
            }
        }
    };
}
serde_as_string!(Host);
serde_as_string!(RepoPath);
serde_as_string!(RegistryPath);
serde_as_string!(Repository);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table() {
        let cases = [
            ("gcr.io", Some("gcr.io")),
            ("GCR.io", Some("gcr.io")),
            ("127.0.0.1:5001", Some("127.0.0.1:5001")),
            ("localhost", Some("localhost")),
            ("[::1]:5000", Some("[::1]:5000")),
            ("index.docker.io", Some("docker.io")),
            ("asia-east1-docker.pkg.dev", Some("asia-east1-docker.pkg.dev")),
            ("", None),
            ("host:0", None),
            ("host:99999", None),
            ("host:+5", None),
            ("-bad.io", None),
            ("a..b", None),
            ("under_score.io", None),
            ("[zz]:1", None),
            ("[::1", None),
            ("[0:0:0:0:0:0:0:1]:5000", Some("[::1]:5000")),
            ("[FD00:EC2::254]", Some("[fd00:ec2::254]")),
            // Numeric forms a URL parser turns into 169.254.169.254, and IPv4 as IPv6.
            ("2852039166", None),
            ("2852039166:80", None),
            ("0xa9fea9fe", None),
            ("0xa9.0xfe.0xa9.0xfe", None),
            ("0251.0376.0251.0376", None),
            ("169.254.43518", None),
            ("127.1", None),
            ("1.2.3.04", None),
            ("[::ffff:169.254.169.254]", None),
            ("[::ffff:a9fe:a9fe]:80", None),
            ("[::169.254.169.254]", None),
            ("169.254.169.254", Some("169.254.169.254")),
            ("registry.0x", None),
            ("a.b.c.0x1", None),
            ("v1.example", Some("v1.example")),
            ("123.example", Some("123.example")),
        ];
        for (input, want) in cases {
            let got = Host::parse(input).ok().map(|h| h.to_string());
            assert_eq!(got.as_deref(), want, "{input}");
        }
        assert_eq!(Host::parse("docker.io").unwrap().api_authority(), "registry-1.docker.io");
    }

    #[test]
    fn reserved_hosts_table() {
        use Reserved::*;
        for (host, want) in [
            ("gcr.io", None),
            ("8.8.8.8", None),
            ("[2001:4860::8888]", None),
            ("127.0.0.1:5000", Some(Loopback)),
            ("127.8.9.10", Some(Loopback)),
            ("localhost:5000", Some(Loopback)),
            ("registry.localhost", Some(Loopback)),
            ("[::1]:5000", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(Private)),
            ("[fd12::1]", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("[fe80::1]", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("168.63.129.16", Some(Metadata)),
            ("[fd00:ec2::254]", Some(Metadata)),
            ("metadata.google.internal", Some(Metadata)),
            ("METADATA", Some(Metadata)),
            ("0.0.0.0", Some(Unroutable)),
            ("255.255.255.255", Some(Unroutable)),
            ("224.0.0.1", Some(Unroutable)),
            ("[::]", Some(Unroutable)),
            ("[64:ff9b::a9fe:a9fe]", Some(Metadata)),
        ] {
            assert_eq!(Host::parse(host).unwrap().reserved(), want, "{host}");
        }
        assert_eq!(Host::parse("[::1]:5000").unwrap().name(), "::1");
        assert_eq!(Host::parse("127.0.0.1:5000").unwrap().name(), "127.0.0.1");
        assert_eq!(Host::parse("gcr.io").unwrap().name(), "gcr.io");
    }

    #[test]
    fn repo_path_table() {
        let cases = [
            ("dns-controller", true),
            ("k8s-staging-kops/dns-controller", true),
            ("a/b/c/d", true),
            ("a__b", true),
            ("a---b", true),
            ("a.b_c", true),
            ("", false),
            ("/a", false),
            ("a/", false),
            ("a//b", false),
            ("Upper", false),
            ("a..b", false),
            ("a___b", false),
            ("-a", false),
            ("a-", false),
            ("a_.b", false),
            ("a b", false),
            ("a:b", false),
        ];
        for (input, ok) in cases {
            assert_eq!(RepoPath::parse(input).is_ok(), ok, "{input:?}");
        }
        assert!(RepoPath::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn registry_path_join_and_name_of() {
        let reg = RegistryPath::parse("asia-east1-docker.pkg.dev/k8s-artifacts-prod/images/kops").unwrap();
        let repo = reg.join(&RepoPath::parse("dns-controller").unwrap()).unwrap();
        assert_eq!(
            repo.to_string(),
            "asia-east1-docker.pkg.dev/k8s-artifacts-prod/images/kops/dns-controller"
        );
        assert_eq!(reg.name_of(&repo).unwrap().as_str(), "dns-controller");
        let other = Repository::parse("asia-east1-docker.pkg.dev/k8s-artifacts-prod/images/kopsx/a").unwrap();
        assert!(reg.name_of(&other).is_none(), "prefix match must stop at a component boundary");

        let hub = RegistryPath::parse("docker.io").unwrap();
        assert_eq!(
            hub.join(&RepoPath::parse("nginx").unwrap()).unwrap().to_string(),
            "docker.io/library/nginx"
        );
        assert_eq!(RegistryPath::parse("gcr.io/").unwrap().to_string(), "gcr.io");
    }

    #[test]
    fn docker_style_table() {
        let cases = [
            ("nginx", "docker.io/library/nginx"),
            ("amazon/aws-cli", "docker.io/amazon/aws-cli"),
            ("docker.io/nginx", "docker.io/library/nginx"),
            ("index.docker.io/rancher/fleet", "docker.io/rancher/fleet"),
            ("quay.io/coreos/etcd", "quay.io/coreos/etcd"),
            ("localhost/a", "localhost/a"),
            ("127.0.0.1:5001/demo/app", "127.0.0.1:5001/demo/app"),
            ("registry.k8s.io/pause", "registry.k8s.io/pause"),
        ];
        for (input, want) in cases {
            assert_eq!(Repository::parse_docker_style(input).unwrap().to_string(), want, "{input}");
        }
        assert!(Repository::parse_docker_style("Bad/Name").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,80}") {
            let _ = Host::parse(&s);
            let _ = RepoPath::parse(&s);
            let _ = RegistryPath::parse(&s);
            let _ = Repository::parse(&s);
            let _ = Repository::parse_docker_style(&s);
        }
    }
}
