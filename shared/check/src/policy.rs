//! The repository policy: what a manifest repository asks of every change, beyond the trust
//! policy of each source (the config's `check:` section).

use ferry_model::{Host, RegistryPath, Repository};

/// What every change to the manifest repository must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryPolicy {
    /// Every new digest must be promoted to a repository under each of these (k8s.io: every
    /// image to every prod region).
    pub required_destinations: Vec<RegistryPath>,
    /// New digests must be multi-platform indexes.
    pub multi_arch_required: bool,
    /// Images exempt from `multi_arch_required`, by name: a repository path or its last
    /// components (`agnhost`, `e2e-test-images/agnhost`), at the source or a destination.
    pub single_arch_allowed: Vec<String>,
    /// A tag of the base may not be removed from the inputs or moved to another digest.
    pub immutable_tags: bool,
    /// When not empty, sources must be under one of these.
    pub allowed_sources: Vec<RegistryPath>,
    /// Further registry hosts a check may contact (`check.allowed-hosts`), beyond those the
    /// rest of the configuration and the base name. See [`crate::Reach`].
    pub allowed_hosts: Vec<Host>,
}

impl Default for RepositoryPolicy {
    /// Ferry never overwrites a tag, so by default a change may not ask it to; nothing else is
    /// required.
    fn default() -> Self {
        Self {
            required_destinations: Vec::new(),
            multi_arch_required: false,
            single_arch_allowed: Vec::new(),
            immutable_tags: true,
            allowed_sources: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl RepositoryPolicy {
    /// Whether one of `repositories` is named in `single_arch_allowed`.
    pub fn allows_single_arch<'a>(&self, mut repositories: impl Iterator<Item = &'a Repository>) -> bool {
        repositories.any(|repository| {
            let path = repository.path().as_str();
            self.single_arch_allowed.iter().any(|name| {
                let name = name.trim_matches('/');
                path == name || path.ends_with(&format!("/{name}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn single_arch_names_match_whole_path_components() {
        let policy = RepositoryPolicy {
            single_arch_allowed: vec!["agnhost".into(), "e2e/pause".into()],
            ..RepositoryPolicy::default()
        };
        let allowed = |r: &str| policy.allows_single_arch([Repository::parse(r).unwrap()].iter());
        for (repository, expected) in [
            ("registry.k8s.io/agnhost", true),
            ("registry.k8s.io/e2e-test-images/agnhost", true),
            ("registry.k8s.io/not-agnhost", false),
            ("registry.k8s.io/agnhost-extra", false),
            ("registry.k8s.io/e2e/pause", true),
            ("registry.k8s.io/pause", false),
        ] {
            assert_eq!(allowed(repository), expected, "{repository}");
        }
    }
}
