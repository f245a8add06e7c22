//! Logging in where users push: credential helpers, ECR (through moto), Artifact Registry and
//! ACR (through fakes of Google's and Entra ID's token services), each against a real
//! distribution that refuses a wrong or expired credential; renewal inside one transport and
//! across `ferry run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_model::{Digest, Host, TagOrDigest};
use ferry_registry::auth::Provided;
use ferry_registry::{Credentials, Registry as _};
use ferry_testkit::clouds::{FakeAzure, FakeEcr, FakeGoogle, Moto};
use ferry_testkit::registry::{RegistryOptions, RegistryServer};
use ferry_testkit::seed::{ImageSpec, Seeder};
use ferry_testkit::token::{Book, TokenServer};

/// A staging registry holding `demo/app:1.0`, a prod registry that needs a login, a thin
/// manifest promoting the image to prod, and a `ferry.yaml` whose `registries.hosts` says how
/// prod logs in.
struct Scene {
    staging: RegistryServer,
    prod: RegistryServer,
    digest: Digest,
    dir: tempfile::TempDir,
    /// Plain-HTTP hosts besides the registries: token realms.
    insecure: Vec<String>,
}

impl Scene {
    async fn new(prod: RegistryOptions, seed: u64) -> Self {
        let staging = RegistryServer::start().await;
        let prod = RegistryServer::start_with(prod).await;
        let pushed =
            Seeder::new(&staging).image("demo/app", Some("1.0"), &ImageSpec::small("amd64", seed, 2)).await;
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        ferry_testkit::write_thin_manifest(
            &manifests,
            "demo",
            &staging.host(),
            &[prod.host()],
            &format!("- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", pushed.digest),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        Scene { staging, prod, digest: pushed.digest, dir, insecure: Vec::new() }
    }

    fn with_realm(mut self, tokens: &TokenServer) -> Self {
        self.insecure.push(realm_host(tokens).to_string());
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `ferry.yaml` with `auth` (flow YAML, or empty for none) as prod's login.
    fn config(&self, auth: &str) -> PathBuf {
        let mut insecure = vec![self.staging.host().to_string(), self.prod.host().to_string()];
        insecure.extend(self.insecure.iter().cloned());
        let quoted: Vec<String> = insecure.iter().map(|h| format!("\"{h}\"")).collect();
        let mut yaml =
            format!("registries:\n  insecure: [{}]\n  retry-budget-seconds: 5\n", quoted.join(", "));
        if !auth.is_empty() {
            yaml.push_str(&format!("  hosts:\n  - host: \"{}\"\n    auth: {auth}\n", self.prod.host()));
        }
        let path = self.path("ferry.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// `ferry ARGS --config ferry.yaml` in a clean environment: `HOME` and `DOCKER_CONFIG` in
    /// the scene's directory, `PATH` with `extra_path` first, and `env`.
    async fn ferry(
        &self,
        args: &[&str],
        extra_path: Option<&Path>,
        env: &[(&str, String)],
    ) -> (Option<i32>, String, String) {
        #[allow(clippy::disallowed_methods, reason = "the test passes its own PATH on")]
        let path = std::env::var("PATH").unwrap_or_default();
        let path = match extra_path {
            Some(dir) => format!("{}:{path}", dir.display()),
            None => path,
        };
        let out = tokio::process::Command::new(crate::support::ferry_bin())
            .args(args)
            .args(["--config", self.path("ferry.yaml").to_str().unwrap()])
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("FERRY_LOG", "info")
            .env("FERRY_LOG_FORMAT", "text")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .unwrap();
        ferry_testkit::outcome(&out)
    }

    async fn promote(
        &self,
        extra_path: Option<&Path>,
        env: &[(&str, String)],
    ) -> (Option<i32>, String, String) {
        self.promote_from(&self.path("manifests"), &[], extra_path, env).await
    }

    /// `ferry promote --confirm` of the thin manifests in `manifests`, with `extra` flags.
    async fn promote_from(
        &self,
        manifests: &Path,
        extra: &[&str],
        extra_path: Option<&Path>,
        env: &[(&str, String)],
    ) -> (Option<i32>, String, String) {
        let mut args = vec![
            "promote",
            "--confirm",
            "--thin-manifest-dir",
            manifests.to_str().unwrap(),
            "--progress",
            "never",
        ];
        args.extend_from_slice(extra);
        self.ferry(&args, extra_path, env).await
    }

    /// The digest of prod's `demo/app:1.0`, read with `seeder`'s credentials.
    async fn promoted(&self, seeder: Seeder) -> Option<Digest> {
        seeder.tag_digest("demo/app", "1.0").await
    }
}

fn realm_host(tokens: &TokenServer) -> Host {
    Host::parse(tokens.realm.trim_start_matches("http://").trim_end_matches("/token")).unwrap()
}

/// Writes `docker-credential-<name>`: a shell script that appends its stdin to `calls` and
/// then runs `body`.
fn helper_script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(format!("docker-credential-{name}"));
    let calls = dir.join(format!("{name}.calls"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nserver=$(cat)\necho \"$server\" >> '{}'\n{body}\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn helper_calls(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{name}.calls")))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn credential_helpers_are_run_as_docker_runs_them() {
    const PASSWORD: &str = "helper-pa55word";
    let scene = Scene::new(
        RegistryOptions { basic_auth: Some(("robot".into(), PASSWORD.into())), ..Default::default() },
        71,
    )
    .await;
    let prod_host = scene.prod.host();
    let bin = tempfile::tempdir().unwrap();
    let answer = format!(
        "printf '{{\"ServerURL\":\"%s\",\"Username\":\"robot\",\"Secret\":\"{PASSWORD}\"}}' \"$server\""
    );
    helper_script(bin.path(), "good", &answer);
    helper_script(bin.path(), "locked", "echo 'gpg: decryption failed: No secret key' >&2\nexit 1");
    helper_script(bin.path(), "none", "echo 'credentials not found in native keychain'\nexit 1");
    helper_script(bin.path(), "garbage", &format!("echo 'Secret={PASSWORD} oops'"));
    helper_script(bin.path(), "slow", "sleep 600");
    scene.config("");

    // credHelpers in config.json, exactly as `docker` reads it.
    let docker_config = |helper: &str| {
        std::fs::write(
            scene.path("docker/config.json"),
            serde_json::json!({"credHelpers": {prod_host.to_string(): helper}}).to_string(),
        )
        .unwrap();
    };
    docker_config("good");
    let (code, stdout, stderr) = scene.promote(Some(bin.path()), &[]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let seeder = Seeder::new(&scene.prod).with_basic_auth("robot", PASSWORD);
    assert_eq!(scene.promoted(seeder).await, Some(scene.digest));
    // Asked with the host, as Docker asks, and once per run however many requests.
    assert_eq!(helper_calls(bin.path(), "good"), vec![prod_host.to_string()]);
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD));

    // Failures name the host and the helper, show the helper's stderr, and never its stdout.
    for (helper, expected) in [
        ("locked", "docker-credential-locked exited with 1: gpg: decryption failed: No secret key".to_owned()),
        ("none", "the registry requires credentials and none are configured for it (the credential helper docker-credential-none (config.json))".to_owned()),
        ("garbage", "docker-credential-garbage answered with something other than".to_owned()),
        ("missing", "docker-credential-missing is not on PATH".to_owned()),
    ] {
        docker_config(helper);
        let (code, stdout, stderr) = scene.promote(Some(bin.path()), &[]).await;
        let all = format!("{stdout}{stderr}");
        assert_ne!(code, Some(0), "{helper}: {all}");
        assert!(all.contains(&expected) && all.contains(&prod_host.to_string()), "{helper}: {all}");
        assert!(!all.contains(PASSWORD), "{helper}: the helper's stdout is never shown: {all}");
    }

    // `provider: helper` in ferry.yaml wins over config.json.
    docker_config("locked");
    scene.config("{provider: helper, helper: good}");
    let locked_before = helper_calls(bin.path(), "locked").len();
    let (code, stdout, stderr) = scene.promote(Some(bin.path()), &[]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(helper_calls(bin.path(), "good").len(), 2);
    assert_eq!(helper_calls(bin.path(), "locked").len(), locked_before, "config.json's helper is not asked");
}

#[tokio::test]
async fn ecr_logins_go_through_the_aws_sdk_and_assume_the_role() {
    let moto = Moto::start().await;
    // moto's ECR answers `base64("AWS:<account>-auth-token")`, for the account of the caller:
    // the assumed role's account, when the role was assumed.
    const ROLE_ACCOUNT: &str = "111111111111";
    let password = format!("{ROLE_ACCOUNT}-auth-token");
    let scene = Scene::new(
        RegistryOptions { basic_auth: Some(("AWS".into(), password.clone())), ..Default::default() },
        72,
    )
    .await;
    scene.config(&format!(
        "{{provider: ecr, region: us-east-1, role-arn: \"arn:aws:iam::{ROLE_ACCOUNT}:role/ferry-promoter\"}}"
    ));
    let env: Vec<(&str, String)> = moto.env();
    let (code, stdout, stderr) = scene.promote(None, &env).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        scene.promoted(Seeder::new(&scene.prod).with_basic_auth("AWS", &password)).await,
        Some(scene.digest)
    );
    assert!(!format!("{stdout}{stderr}").contains(&password));

    // Without the role, the caller's own account (moto's default) gets a password prod
    // refuses: the error names the host and the login, and not the password.
    scene.config("{provider: ecr, region: us-east-1}");
    let (code, stdout, stderr) = scene.promote(None, &env).await;
    let all = format!("{stdout}{stderr}");
    assert_ne!(code, Some(0), "{all}");
    assert!(all.contains("the registry rejected the credentials (ECR GetAuthorizationToken in us-east-1 with the AWS SDK's default credentials)"), "{all}");
    assert!(!all.contains("auth-token"), "{all}");

    // `ferry config check` logs in the same way and says with what.
    scene.config(&format!(
        "{{provider: ecr, region: us-east-1, role-arn: \"arn:aws:iam::{ROLE_ACCOUNT}:role/ferry-promoter\"}}"
    ));
    let (code, stdout, stderr) = scene.ferry(&["config", "check"], None, &env).await;
    assert!(
        stdout.contains(&format!("{}: logged in for pull with ECR GetAuthorizationToken in us-east-1 as role arn:aws:iam::{ROLE_ACCOUNT}:role/ferry-promoter (GET /v2/: 200)", scene.prod.host())),
        "{code:?}\n{stdout}{stderr}"
    );
    // A service that cannot be reached is named, with the host.
    let unreachable = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_owned())];
    let env: Vec<(&str, String)> =
        moto.env().into_iter().filter(|(k, _)| *k != "AWS_ENDPOINT_URL").chain(unreachable).collect();
    let (_, stdout, stderr) = scene.promote(None, &env).await;
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains(&format!("{}: cannot log in with ECR GetAuthorizationToken", scene.prod.host())),
        "{all}"
    );
}

#[tokio::test]
async fn artifact_registry_logins_from_a_key_file_the_metadata_server_and_impersonation() {
    let book = Book::default();
    let tokens = TokenServer::start_with(book.clone(), 300).await;
    let google = FakeGoogle::start(book.clone(), Duration::from_secs(3600)).await;
    let scene =
        Scene::new(RegistryOptions { token_auth: Some(tokens.registry_config()), ..Default::default() }, 73)
            .await
            .with_realm(&tokens);
    scene.config("{provider: gcp}");

    // 1. A service-account key: a JWT signed with its key, exchanged at its token_uri.
    let key = google.key_file(scene.dir.path());
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", key.display().to_string())];
    let (code, stdout, stderr) = scene.promote(None, &env).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let reader = Seeder::new(&scene.prod).with_bearer(tokens.token_for(&["repository:demo/app:pull"]));
    assert_eq!(scene.promoted(reader).await, Some(scene.digest));
    assert_eq!(google.counts(), (1, 0, 0, 0), "one access token for the whole run");

    // 2. The metadata server (GKE, Cloud Run): no file at all.
    let env = [("GCE_METADATA_HOST", google.metadata_host())];
    let (code, stdout, stderr) = scene.promote(None, &env).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(google.counts(), (1, 1, 0, 0));

    // 3. Impersonation: the key's token buys the target account's.
    let file = google.impersonation_file(scene.dir.path(), "promoter@acme-prod.iam.gserviceaccount.com");
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string())];
    let (code, stdout, stderr) = scene.promote(None, &env).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(google.counts(), (2, 1, 1, 0));

    // A key the token endpoint refuses (another account's key, same file shape): the error
    // names the host, the file and Google's reason.
    let other = FakeGoogle::start(Book::default(), Duration::from_secs(3600)).await;
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.key_file(&scene.path("docker"))).unwrap()).unwrap();
    forged["token_uri"] = format!("{}/token", google.url).into();
    let forged_path = scene.path("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", forged_path.display().to_string())];
    let (code, stdout, stderr) = scene.promote(None, &env).await;
    let all = format!("{stdout}{stderr}");
    assert_ne!(code, Some(0), "{all}");
    assert!(
        all.contains("answered HTTP 400: invalid_grant: Invalid JWT Signature.")
            && all.contains("forged.json"),
        "{all}"
    );
    assert!(!all.contains("PRIVATE KEY"), "{all}");
}

#[tokio::test]
async fn acr_exchanges_entra_tokens_from_a_secret_a_workload_identity_and_a_managed_identity() {
    let book = Book::default();
    let tokens = TokenServer::start_with(book.clone(), 300).await;
    let azure = FakeAzure::start(book.clone(), Duration::from_secs(3600)).await;
    let scene =
        Scene::new(RegistryOptions { token_auth: Some(tokens.registry_config()), ..Default::default() }, 74)
            .await
            .with_realm(&tokens);
    scene.config("{provider: acr}");
    let common = vec![
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
        ("AZURE_TENANT_ID", azure.tenant.clone()),
        ("AZURE_CLIENT_ID", azure.client_id.clone()),
    ];

    let mut secret = common.clone();
    secret.push(("AZURE_CLIENT_SECRET", azure.client_secret.clone()));
    let (code, stdout, stderr) = scene.promote(None, &secret).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let reader = Seeder::new(&scene.prod).with_bearer(tokens.token_for(&["repository:demo/app:pull"]));
    assert_eq!(scene.promoted(reader).await, Some(scene.digest));
    assert_eq!(
        (azure.counts().0, tokens.n_exchanged()),
        (1, 1),
        "one Entra token and one exchange for the run"
    );
    assert!(!format!("{stdout}{stderr}").contains(&azure.client_secret));

    let token_file = scene.path("azure-identity-token");
    std::fs::write(&token_file, &azure.federated_token).unwrap();
    let mut workload = common.clone();
    workload.push(("AZURE_FEDERATED_TOKEN_FILE", token_file.display().to_string()));
    let (code, stdout, stderr) = scene.promote(None, &workload).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    let managed = vec![
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", azure.url)),
        ("IDENTITY_HEADER", azure.identity_header.clone()),
    ];
    let (code, stdout, stderr) = scene.promote(None, &managed).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!((azure.counts().0, tokens.n_exchanged()), (3, 3));

    // A wrong secret: Entra's reason, the host and the login are named; the secret is not.
    let mut wrong = common.clone();
    wrong.push(("AZURE_CLIENT_SECRET", "not-the-secret".into()));
    let (code, stdout, stderr) = scene.promote(None, &wrong).await;
    let all = format!("{stdout}{stderr}");
    assert_ne!(code, Some(0), "{all}");
    assert!(
        all.contains("AADSTS7000215: Invalid client secret provided.")
            && all.contains("ACR exchange of an Entra ID token (service principal"),
        "{all}"
    );
    assert!(!all.contains("not-the-secret"), "{all}");
}

#[tokio::test]
async fn a_refused_login_is_renewed_once_however_many_requests_wait() {
    let book = Book::default();
    let tokens = TokenServer::start_with(book.clone(), 300).await;
    // Access tokens that the token service stops accepting after 1 s, while the login would
    // keep them for its minimum of 30 s: the registry's refusal must make it ask again.
    let google = FakeGoogle::start(book.clone(), Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let env = ferry_login::GoogleEnv {
        application_credentials: Some(google.key_file(dir.path())),
        ..Default::default()
    };
    let prod = RegistryServer::start_with(RegistryOptions {
        token_auth: Some(tokens.registry_config()),
        ..Default::default()
    })
    .await;
    let mut pushed = None;
    for n in 0..7 {
        let seeder =
            Seeder::new(&prod).with_bearer(tokens.token_for(&[&format!("repository:demo/app{n}:pull,push")]));
        pushed =
            Some(seeder.image(&format!("demo/app{n}"), Some("1.0"), &ImageSpec::small("amd64", 75, 1)).await);
    }
    let pushed = pushed.unwrap();
    let mut credentials = Credentials::none();
    let login = Arc::new(ferry_login::gcp::Google::new(&env, None, false));
    credentials.configure(prod.host(), Provided::Login(login.clone()));
    let registry = crate::support::client(&[prod.host(), realm_host(&tokens)], credentials);
    let tag = TagOrDigest::Tag("1.0".parse().unwrap());
    let head = |n: u32| {
        let repo = prod.repository(&format!("demo/app{n}"));
        let (registry, tag) = (&registry, &tag);
        async move { registry.head_manifest(&repo, tag).await.map(|h| h.map(|h| h.digest)) }
    };

    assert_eq!(head(0).await.unwrap(), Some(pushed.digest));
    assert_eq!(google.n_issued(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Six repositories at once: six token requests with the expired access token, six
    // refusals, and one new access token that all six share.
    let refused_before = tokens.n_refused();
    let results = futures_util::future::join_all((1..7).map(head)).await;
    for result in results {
        assert_eq!(result.unwrap(), Some(pushed.digest));
    }
    assert!(tokens.n_refused() > refused_before, "the expired access token was refused first");
    assert_eq!(google.n_issued(), 2, "one renewal for six waiting requests");
    assert_eq!(login.calls(), 2);
}

#[tokio::test]
async fn expired_google_tokens_are_renewed_inside_ferry_run() {
    use crate::pipeline::{Harness, Options, Transport};
    let book = Book::default();
    let tokens = TokenServer::start_with(book.clone(), 2).await;
    // Access tokens live 2 s: the second push arrives after the first token expired.
    let google = FakeGoogle::start(book.clone(), Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let key = google.key_file(dir.path());
    let h = Harness::start(
        Transport::Memory,
        Options {
            prod_registry: Some(RegistryOptions {
                token_auth: Some(tokens.registry_config()),
                ..Default::default()
            }),
            extra_insecure: vec![realm_host(&tokens)],
            prod_auth: Some("{provider: gcp}".into()),
            env: Some(Box::new(move |env: &mut ferry_config::Env| {
                env.google_application_credentials = Some(key.clone())
            })),
            ..Options::default()
        },
    )
    .await;
    let staging = Seeder::new(&h.staging);
    // Two repositories: the second needs registry tokens of its own, asked for with the
    // access token that has expired by then.
    for (n, repo) in ["demo/app", "demo/other"].iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let pushed = staging.image(repo, Some("1.0"), &ImageSpec::small("amd64", 76 + n as u64, 1)).await;
        let reader =
            || Seeder::new(&h.prod).with_bearer(tokens.token_for(&[&format!("repository:{repo}:pull")]));
        crate::pipeline::wait_for(&format!("{repo}:1.0 at prod"), Duration::from_secs(60), || async {
            reader().tag_digest(repo, "1.0").await == Some(pushed.digest)
        })
        .await;
        // Every stage that reads or writes prod shares the one login.
        assert_eq!(google.counts().0, n as u32 + 1, "one access token per expiry, not one per stage");
    }
    assert!(tokens.n_refused() >= 1, "the expired access token was refused, then renewed");
    h.stop().await;
}

/// `inventory: ecr`: prod's repositories are read with ECR's `ListImages` (through a named fake
/// of ECR in front of prod, paging 3 tags at a time), not a `HEAD` per tag: the plan is the
/// same, prod's manifest `HEAD`s are gone from its cost, and `ferry config check` says how the
/// host is listed. A role without `ecr:ListImages` falls back to `tags/list`, and says so.
#[tokio::test]
async fn ecr_repositories_are_read_with_list_images() {
    const PASSWORD: &str = "ecr-fake-password";
    let scene = Scene::new(
        RegistryOptions { basic_auth: Some(("AWS".into(), PASSWORD.into())), ..Default::default() },
        74,
    )
    .await;
    // Eight tags of demo/app to promote; four are at prod already.
    let (staging, prod) =
        (Seeder::new(&scene.staging), Seeder::new(&scene.prod).with_basic_auth("AWS", PASSWORD));
    let mut images = String::from("- name: demo/app\n  dmap:\n");
    for n in 0..8u64 {
        let spec = ImageSpec::small("amd64", 600 + n, 1);
        let pushed = staging.image("demo/app", Some(&format!("2.{n}")), &spec).await;
        if n < 4 {
            prod.image("demo/app", Some(&format!("2.{n}")), &spec).await;
        }
        images.push_str(&format!("    \"{}\": [\"2.{n}\"]\n", pushed.digest));
    }
    let manifests = scene.path("many");
    ferry_testkit::write_thin_manifest(
        &manifests,
        "demo",
        &scene.staging.host(),
        &[scene.prod.host()],
        &images,
    )
    .unwrap();
    let plan = |env: Vec<(&'static str, String)>| {
        let manifests = manifests.clone();
        let scene = &scene;
        async move {
            let args = ["plan", "--thin-manifest-dir", manifests.to_str().unwrap(), "--output", "json"];
            let (code, stdout, stderr) = scene.ferry(&args, None, &env).await;
            let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
            (code, json, stderr)
        }
    };
    let prod_requests = |json: &serde_json::Value, kind: &str| -> u64 {
        json["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["host"] == scene.prod.host().to_string() && r["kind"] == kind)
            .map(|r| r["count"].as_u64().unwrap_or(0))
            .sum()
    };

    let ecr = FakeEcr::start(&scene.prod, "AWS", PASSWORD, 3, Duration::from_secs(3600), false).await;
    scene.config("{provider: ecr, region: us-east-1}\n    inventory: ecr");
    let (code, json, stderr) = plan(ecr.env()).await;
    assert_eq!(code, Some(0), "four copies to make, nothing excluded: {json}{stderr}");
    assert_eq!(
        (json["summary"]["present"].as_u64(), json["summary"]["copy"].as_u64()),
        (Some(4), Some(4)),
        "{json}"
    );
    assert_eq!(prod_requests(&json, "ECR ListImages"), 2, "prod's 4 tags, 3 a page: {json}");
    assert_eq!(prod_requests(&json, "manifest HEAD"), 0, "no HEAD per tag at prod: {json}");
    assert_eq!(ecr.counts().1, 2);

    // The same plan through tags/list: a HEAD per listed tag that matters.
    scene.config("{provider: ecr, region: us-east-1}\n    inventory: oci");
    let (_, by_tags, _) = plan(ecr.env()).await;
    assert_eq!(by_tags["summary"], json["summary"]);
    assert_eq!(prod_requests(&by_tags, "ECR ListImages"), 0);
    assert!(prod_requests(&by_tags, "manifest HEAD") >= 4, "{by_tags}");

    // `ferry config check` names the listing.
    scene.config("{provider: ecr, region: us-east-1}\n    inventory: ecr");
    let (_, stdout, stderr) = scene.ferry(&["config", "check"], None, &ecr.env()).await;
    assert!(
        stdout.contains(&format!(
            "{}: repositories listed with ECR ListImages in us-east-1",
            scene.prod.host()
        )),
        "{stdout}{stderr}"
    );

    // Promoting with the fake's logins too: the four missing tags are copied.
    let ok = scene.promote_from(&manifests, &[], None, &ecr.env()).await;
    assert_eq!(ok.0, Some(0), "{}{}", ok.1, ok.2);
    assert!(prod.tag_digest("demo/app", "2.7").await.is_some());

    // Without ecr:ListImages: the listing falls back to tags/list, once, and says so.
    let denied = FakeEcr::start(&scene.prod, "AWS", PASSWORD, 3, Duration::from_secs(3600), true).await;
    let (code, json, stderr) = plan(denied.env()).await;
    assert_eq!(code, Some(0), "everything is there now: {json}{stderr}");
    assert_eq!(json["summary"]["present"].as_u64(), Some(8), "{json}");
    assert!(
        stderr.contains("the listing API refused; listing this host's repositories by tags/list instead"),
        "{stderr}"
    );
    assert!(stderr.contains("not authorized to perform: ecr:ListImages"), "{stderr}");
    assert_eq!(denied.counts().1, 1, "asked once, not per repository");
}

/// An ECR token that expires in the middle of a promotion is renewed once, when the registry's
/// token service refuses it, and the promotion completes. ECR's tokens live 12 hours; the named
/// fake's live 2 s, registry tokens 1 s, and staging's blobs are read slowly (through the fault
/// proxy) so that the manifest is written after the first token expired.
#[tokio::test]
async fn an_ecr_token_that_expires_mid_promotion_is_renewed_once() {
    use ferry_testkit::fault::{Fault, FaultProxy, Hits, Rule};
    let book = Book::default();
    let tokens = TokenServer::start_with(book.clone(), 1).await;
    let ecr = FakeEcr::issuing(book.clone(), Duration::from_secs(2)).await;
    let mut scene =
        Scene::new(RegistryOptions { token_auth: Some(tokens.registry_config()), ..Default::default() }, 76)
            .await
            .with_realm(&tokens);
    let slow = FaultProxy::start(&scene.staging).await;
    slow.add(Rule::new(Some("GET"), "/blobs/sha256:", Hits::Every, Fault::Slow { bytes_per_second: 800 }));
    scene.insecure.push(slow.host().to_string());
    let other =
        Seeder::new(&scene.staging).image("demo/other", Some("1.0"), &ImageSpec::small("amd64", 77, 2)).await;
    let manifests = scene.path("slow");
    let images = format!(
        "- name: demo/app\n  dmap:\n    \"{}\": [\"1.0\"]\n- name: demo/other\n  dmap:\n    \"{}\": [\"1.0\"]\n",
        scene.digest, other.digest
    );
    ferry_testkit::write_thin_manifest(&manifests, "demo", &slow.host(), &[scene.prod.host()], &images)
        .unwrap();
    scene.config("{provider: ecr, region: us-east-1}");
    let started = std::time::Instant::now();
    // One image at a time: the second repository's push token is asked for after the first
    // image's slow copy, with the ECR token that has expired by then.
    let (code, stdout, stderr) =
        scene.promote_from(&manifests, &["--max-images", "1"], None, &ecr.env()).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(started.elapsed() > Duration::from_secs(2), "the promotion outlived the first token");
    assert!(tokens.n_refused() >= 1, "the expired token was refused first");
    assert_eq!(ecr.counts().0, 2, "one renewal, not one per request");
    let reader = Seeder::new(&scene.prod).with_bearer(tokens.token_for(&["repository:demo/app:pull"]));
    assert_eq!(scene.promoted(reader).await, Some(scene.digest));
    let reader = Seeder::new(&scene.prod).with_bearer(tokens.token_for(&["repository:demo/other:pull"]));
    assert_eq!(reader.tag_digest("demo/other", "1.0").await, Some(other.digest));
}
