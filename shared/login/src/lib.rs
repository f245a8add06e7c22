//! Registry logins for Ferry: the credentials that are obtained rather than stored, and renewed.
//!
//! - [`helper`]: Docker credential helpers (`credHelpers`, `credsStore` in `config.json`, or
//!   `provider: helper` in the Ferry config), run as the Docker CLI runs them.
//! - [`ecr`]: Amazon ECR and ECR Public, `GetAuthorizationToken` through the AWS SDK, with an
//!   optional role to assume.
//! - [`gcp`]: Artifact Registry and Container Registry, an access token from Application
//!   Default Credentials (a key file, gcloud's file, the metadata server), optionally
//!   impersonating a service account.
//! - [`acr`]: Azure Container Registry, an Entra ID token exchanged at the registry.
//!
//! [`CloudLogins`] is what `ferry_registry::Credentials` asks for a helper by name and for the
//! login a host's name implies; [`CloudLogins::configured`] builds the login a host's
//! `registries.hosts[].auth` names. Every login caches what it gets until shortly before it
//! expires, asks once however many requests wait (`renew`), and asks again when a registry
//! refuses what it has.
//!
//! Architecture invariant: a login never logs or returns a secret in an error; token services' answers are read into `Secret`s.
//! Architecture invariant: one token fetch at a time per login and key; waiting requests share its answer.

pub mod acr;
pub mod ecr;
pub mod gcp;
pub mod helper;
mod http;
pub mod listing;
mod renew;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferry_model::Host;
use ferry_registry::auth::{Login, Logins, Provided};

pub use acr::AzureEnv;
pub use gcp::GoogleEnv;

/// Everything the logins read from the environment (filled in by `ferry-config`, the one
/// reader of the environment; the AWS SDK reads its own `AWS_*` variables).
#[derive(Clone, Debug, Default)]
pub struct LoginEnv {
    pub google: GoogleEnv,
    pub azure: AzureEnv,
    /// `registries.insecure`: hosts reached over plain HTTP (ACR's exchange goes there too).
    pub insecure_hosts: Vec<Host>,
    /// `PATH`, where credential helpers are found.
    pub path: Option<std::ffi::OsString>,
}

/// How one host logs in, as `registries.hosts[].auth` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    /// ECR: `region` defaults to the host's (`<account>.dkr.ecr.<region>.amazonaws.com`), else
    /// the SDK's; `role_arn` is assumed first.
    Ecr {
        region: Option<String>,
        role_arn: Option<String>,
    },
    EcrPublic {
        role_arn: Option<String>,
    },
    /// Google: `service_account` is impersonated.
    Gcp {
        service_account: Option<String>,
    },
    /// ACR: `tenant` overrides `AZURE_TENANT_ID`.
    Acr {
        tenant: Option<String>,
    },
    /// `docker-credential-<name>`.
    Helper {
        name: String,
    },
    /// No credential, even if `config.json` has one.
    Anonymous,
}

impl Provider {
    /// The names `provider:` accepts.
    pub const NAMES: [&'static str; 6] = ["ecr", "ecr-public", "gcp", "acr", "helper", "anonymous"];
}

/// The logins of one process: shared, so that every request to a host uses one cache.
#[derive(Debug)]
pub struct CloudLogins {
    env: LoginEnv,
    logins: Mutex<HashMap<String, Arc<dyn Login>>>,
    /// The ECR logins among them, whose clients also list repositories.
    ecr: Mutex<HashMap<String, Arc<ecr::Ecr>>>,
}

impl CloudLogins {
    pub fn new(env: LoginEnv) -> Self {
        Self { env, logins: Mutex::new(HashMap::new()), ecr: Mutex::new(HashMap::new()) }
    }

    /// The private ECR login for `region` and `role_arn`, made once.
    fn ecr(&self, region: Option<String>, role_arn: &Option<String>) -> (String, Arc<ecr::Ecr>) {
        let key = format!("ecr {region:?} {role_arn:?}");
        let mut ecr = self.ecr.lock().unwrap_or_else(|p| p.into_inner());
        let login = ecr
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ecr::Ecr::private(region, role_arn.clone(), false)));
        (key, login.clone())
    }

    /// The listing API `registries.hosts[]` names for `host` (`inventory: ecr`, which needs
    /// `provider: ecr`), sharing the host's login: its client, credentials and role.
    pub fn inventory(
        &self,
        host: &Host,
        provider: Option<&Provider>,
    ) -> Option<Arc<dyn ferry_registry::InventorySource>> {
        match provider? {
            Provider::Ecr { region, role_arn } => {
                let (_, ecr) = self.ecr(ecr_region(host, region), role_arn);
                Some(Arc::new(ecr::EcrListing { ecr }))
            }
            _ => None,
        }
    }

    /// The login for `key`, made once.
    fn shared(&self, key: String, make: impl FnOnce() -> Arc<dyn Login>) -> Arc<dyn Login> {
        let mut logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
        logins.entry(key).or_insert_with(make).clone()
    }

    /// What `registries.hosts[].auth` of `host` names.
    pub fn configured(&self, host: &Host, provider: &Provider) -> Provided {
        let origin = format!("`registries.hosts` for {host}");
        match provider {
            Provider::Anonymous => Provided::Anonymous { origin },
            Provider::Helper { name } => Provided::Login(self.shared(format!("helper {name}"), || {
                Arc::new(helper::Helper::new(name, "registries.hosts", self.env.path.clone()))
            })),
            Provider::Ecr { region, role_arn } => {
                let (key, ecr) = self.ecr(ecr_region(host, region), role_arn);
                Provided::Login(self.shared(key, || ecr))
            }
            Provider::EcrPublic { role_arn } => {
                Provided::Login(self.shared(format!("ecr-public {role_arn:?}"), || {
                    Arc::new(ecr::Ecr::public(role_arn.clone(), false))
                }))
            }
            Provider::Gcp { service_account } => {
                Provided::Login(self.shared(format!("gcp {service_account:?}"), || {
                    Arc::new(gcp::Google::new(&self.env.google, service_account.clone(), false))
                }))
            }
            Provider::Acr { tenant } => Provided::Login(self.shared(format!("acr {tenant:?}"), || {
                Arc::new(acr::Acr::new(
                    &self.env.azure,
                    tenant.clone(),
                    self.env.insecure_hosts.clone(),
                    false,
                ))
            })),
        }
    }
}

/// The region configured for an ECR host, else the one its name says.
fn ecr_region(host: &Host, configured: &Option<String>) -> Option<String> {
    configured.clone().or_else(|| match ecr::parse_host(host) {
        Some(ecr::EcrHost::Private { region, .. }) => Some(region),
        _ => None,
    })
}

impl Logins for CloudLogins {
    fn helper(&self, name: &str) -> Arc<dyn Login> {
        self.shared(format!("helper {name}"), || {
            Arc::new(helper::Helper::new(name, "config.json", self.env.path.clone()))
        })
    }

    fn detect(&self, host: &Host) -> Option<Arc<dyn Login>> {
        if let Some(found) = ecr::parse_host(host) {
            return Some(match found {
                ecr::EcrHost::Private { region, .. } => self.shared(format!("ecr detected {region}"), || {
                    Arc::new(ecr::Ecr::private(Some(region.clone()), None, true))
                }),
                ecr::EcrHost::Public => {
                    self.shared("ecr-public detected".into(), || Arc::new(ecr::Ecr::public(None, true)))
                }
            });
        }
        if gcp::is_google_host(host) {
            return Some(
                self.shared("gcp detected".into(), || {
                    Arc::new(gcp::Google::new(&self.env.google, None, true))
                }),
            );
        }
        if acr::is_acr_host(host) {
            return Some(self.shared("acr detected".into(), || {
                Arc::new(acr::Acr::new(&self.env.azure, None, self.env.insecure_hosts.clone(), true))
            }));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_imply_their_cloud_and_share_one_login() {
        let logins = CloudLogins::new(LoginEnv::default());
        let source = |host: &str| logins.detect(&Host::parse(host).unwrap()).map(|l| l.source());
        assert!(
            source("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
                .unwrap()
                .starts_with("ECR GetAuthorizationToken in eu-west-1")
        );
        assert!(source("public.ecr.aws").unwrap().starts_with("ECR Public"));
        assert!(source("us-docker.pkg.dev").unwrap().contains("Google credentials from the metadata server"));
        assert!(source("acme.azurecr.io").unwrap().starts_with("ACR exchange"));
        assert_eq!(source("ghcr.io"), None);
        assert_eq!(source("registry.k8s.io"), None);
        let a = logins.detect(&Host::parse("us-docker.pkg.dev").unwrap()).unwrap();
        let b = logins.detect(&Host::parse("europe-docker.pkg.dev").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn configured_providers_say_where_they_come_from() {
        let logins = CloudLogins::new(LoginEnv::default());
        let host = Host::parse("123456789012.dkr.ecr.us-west-2.amazonaws.com").unwrap();
        let ecr = logins.configured(
            &host,
            &Provider::Ecr { region: None, role_arn: Some("arn:aws:iam::123456789012:role/ferry".into()) },
        );
        assert_eq!(
            ecr.source(),
            "ECR GetAuthorizationToken in us-west-2 as role arn:aws:iam::123456789012:role/ferry"
        );
        let anonymous = logins.configured(&host, &Provider::Anonymous);
        assert!(anonymous.source().starts_with("anonymous"));
        let helper = logins.configured(&host, &Provider::Helper { name: "pass".into() });
        assert_eq!(helper.source(), "the credential helper docker-credential-pass (registries.hosts)");
    }
}
