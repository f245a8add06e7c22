//! Registries' own listing APIs (Docker Hub, Harbor, GitHub packages, Quay, ACR), each through
//! the named fake of its documented API in front of a real distribution registry, paging three
//! items at a time; run as a user runs Ferry: `registries.hosts[].inventory` in the config,
//! `ferry plan --output json`, `ferry config check`.

use ferry_testkit::registry::{RegistryOptions, RegistryServer};
use ferry_testkit::seed::{ImageSpec, Seeder};
use ferry_testkit::vendors::{FakeVendors, Vendor};

const TOKEN: &str = "listing-token-0123";
const PASSWORD: &str = "prod-password";

/// Staging holds eight tags of `demo/app`; prod (with a password) holds the first four.
struct Scene {
    staging: RegistryServer,
    prod: RegistryServer,
    dir: tempfile::TempDir,
    images: String,
}

impl Scene {
    async fn new(seed: u64) -> Self {
        let staging = RegistryServer::start().await;
        let prod = RegistryServer::start_with(RegistryOptions {
            basic_auth: Some(("ferry".into(), PASSWORD.into())),
            ..Default::default()
        })
        .await;
        let (stage, at_prod) = (Seeder::new(&staging), Seeder::new(&prod).with_basic_auth("ferry", PASSWORD));
        let mut images = String::from("- name: demo/app\n  dmap:\n");
        for n in 0..8u64 {
            let spec = ImageSpec::small("amd64", seed * 100 + n, 1);
            let pushed = stage.image("demo/app", Some(&format!("3.{n}")), &spec).await;
            if n < 4 {
                at_prod.image("demo/app", Some(&format!("3.{n}")), &spec).await;
            }
            images.push_str(&format!("    \"{}\": [\"3.{n}\"]\n", pushed.digest));
        }
        let dir = tempfile::tempdir().unwrap();
        Scene { staging, prod, dir, images }
    }

    /// `ferry ARGS` with a config whose only host entry is `entry` (for `destination`), a
    /// thin manifest promoting to `destination`, and prod's password in `config.json` for
    /// both prod and the fake.
    async fn ferry(
        &self,
        args: &[&str],
        destination: &ferry_model::Host,
        insecure: &[ferry_model::Host],
        entry: &str,
        env: &[(&str, &str)],
    ) -> (Option<i32>, serde_json::Value, String, String) {
        let manifests = self.dir.path().join("manifests");
        let _ = std::fs::remove_dir_all(&manifests);
        ferry_testkit::write_thin_manifest(
            &manifests,
            "demo",
            &self.staging.host(),
            std::slice::from_ref(destination),
            &self.images,
        )
        .unwrap();
        let mut hosts: Vec<String> = vec![self.staging.host().to_string(), self.prod.host().to_string()];
        hosts.extend(insecure.iter().map(ToString::to_string));
        let quoted: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        let config = format!(
            "registries:\n  insecure: [{}]\n  retry-budget-seconds: 3\n  hosts:\n  - host: \"{destination}\"\n{entry}",
            quoted.join(", ")
        );
        std::fs::write(self.dir.path().join("ferry.yaml"), config).unwrap();
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ferry:{PASSWORD}"));
        let auths: Vec<String> = hosts.iter().map(|h| format!("\"{h}\": {{\"auth\": \"{auth}\"}}")).collect();
        let docker = self.dir.path().join("docker");
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::write(docker.join("config.json"), format!("{{\"auths\": {{{}}}}}", auths.join(", ")))
            .unwrap();
        let mut all: Vec<&str> = args.to_vec();
        let dir = manifests.to_str().unwrap();
        match args[0] {
            "plan" => all.extend(["--thin-manifest-dir", dir, "--output", "json"]),
            "promote" => all.extend(["--thin-manifest-dir", dir]),
            _ => {}
        }
        let config_path = self.dir.path().join("ferry.yaml");
        all.extend(["--config", config_path.to_str().unwrap()]);
        #[allow(clippy::disallowed_methods, reason = "the test passes its own PATH on")]
        let path = std::env::var("PATH").unwrap_or_default();
        let out = tokio::process::Command::new(crate::support::ferry_bin())
            .args(&all)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("DOCKER_CONFIG", &docker)
            .env("FERRY_LOG", "info")
            .env("FERRY_LOG_FORMAT", "text")
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        let (code, stdout, stderr) = ferry_testkit::outcome(&out);
        let json = serde_json::from_str(&stdout).unwrap_or_default();
        (code, json, stdout, stderr)
    }
}

/// Requests of `kind` at `host`, from `plan --output json`'s cost.
fn requests(json: &serde_json::Value, host: &ferry_model::Host, kind: &str) -> u64 {
    json["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["host"] == host.to_string() && r["kind"] == kind)
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum()
}

/// Docker Hub, Harbor, GitHub packages and Quay, each named by `inventory:` with the fake as
/// `inventory-url` and a token from `inventory-token-env`: the plan is the one `tags/list`
/// gives, prod's tags are answered by two pages of the API (four tags or manifests, three a
/// page) and no `HEAD` per tag (only, where the API lists tags alone, of the digests no tag
/// names). A wrong token is refused once, falls back to `tags/list` and
/// says so; an unset variable falls back and `ferry config check` says why.
#[tokio::test]
async fn each_vendor_s_listing_api_answers_prod_s_tags() {
    let scene = Scene::new(81).await;
    let fake = FakeVendors::start(&scene.prod, Some(("ferry", PASSWORD)), 3, Some(TOKEN), &[]).await;
    let prod = scene.prod.host();
    let url = fake.url();
    let baseline = {
        let entry = "    inventory: oci\n";
        let (code, json, _, stderr) = scene.ferry(&["plan"], &prod, &[fake.host()], entry, &[]).await;
        assert_eq!(code, Some(0), "{json}{stderr}");
        assert_eq!(
            (json["summary"]["present"].as_u64(), json["summary"]["copy"].as_u64()),
            (Some(4), Some(4))
        );
        assert!(requests(&json, &prod, "manifest HEAD") >= 4, "{json}");
        json["summary"].clone()
    };
    // Docker Hub and Quay list tags only: the four digests no tag names are looked up, as
    // they are after a plain tag list; Harbor and GitHub list every manifest.
    for (name, vendor, api, token, heads) in [
        ("dockerhub", Vendor::DockerHub, "Docker Hub tags API", format!("ferry:{TOKEN}"), 4),
        ("harbor", Vendor::Harbor, "Harbor artifacts API", format!("robot$ferry:{TOKEN}"), 0),
        ("ghcr", Vendor::Ghcr, "GitHub packages API", TOKEN.to_owned(), 0),
        ("quay", Vendor::Quay, "Quay tags API", TOKEN.to_owned(), 4),
    ] {
        let entry = format!(
            "    inventory: {name}\n    inventory-url: \"{url}\"\n    inventory-token-env: LISTING_TOKEN\n"
        );
        let before = fake.count(vendor);
        let (code, json, _, stderr) =
            scene.ferry(&["plan"], &prod, &[fake.host()], &entry, &[("LISTING_TOKEN", &token)]).await;
        assert_eq!(code, Some(0), "{name}: {json}{stderr}");
        assert_eq!(json["summary"], baseline, "{name}: the same plan as tags/list gives");
        assert_eq!(requests(&json, &prod, api), 2, "{name}: four items, three a page: {json}");
        assert_eq!(fake.count(vendor) - before, 2, "{name}");
        // (Each of those digests' first request may meet the registry's login challenge.)
        let at_prod = requests(&json, &prod, "manifest HEAD");
        assert!((heads..=2 * heads).contains(&at_prod), "{name}: no HEAD per tag at prod: {json}");
        assert_eq!(requests(&json, &prod, "tags/list"), 0, "{name}: {json}");
        assert!(!stderr.contains(&token) && !stderr.contains(TOKEN), "{name}: the token never shows");

        // `ferry config check` names the listing.
        let (_, _, stdout, _) = scene
            .ferry(&["config", "check"], &prod, &[fake.host()], &entry, &[("LISTING_TOKEN", &token)])
            .await;
        assert!(
            stdout.contains(&format!("{prod}: repositories listed with the {api} at {url} (with its token)")),
            "{stdout}"
        );

        // A wrong token: refused, said once, and tags/list serves the same plan.
        let (code, json, _, stderr) =
            scene.ferry(&["plan"], &prod, &[fake.host()], &entry, &[("LISTING_TOKEN", "ferry:wrong")]).await;
        assert_eq!(code, Some(0), "{name}: {json}{stderr}");
        assert_eq!(json["summary"], baseline, "{name}");
        assert!(
            stderr.contains("the listing API refused; listing this host's repositories by tags/list instead"),
            "{name}: {stderr}"
        );
        assert_eq!(stderr.matches("the listing API refused").count(), 1, "{name}: said once: {stderr}");
        assert!(requests(&json, &prod, "tags/list") >= 1, "{name}: {json}");

        // The variable unset: the API is not asked, and config check says why.
        let (_, _, stdout, _) = scene.ferry(&["config", "check"], &prod, &[fake.host()], &entry, &[]).await;
        assert!(
            stdout.contains(&format!("{prod}: repositories listed with tags/list (LISTING_TOKEN (registries.hosts[].inventory-token-env) is not set")),
            "{name}: {stdout}"
        );
        let (code, json, _, stderr) = scene.ferry(&["plan"], &prod, &[fake.host()], &entry, &[]).await;
        assert_eq!((code, &json["summary"]), (Some(0), &baseline), "{name}: {stderr}");
        assert_eq!(requests(&json, &prod, api), 0, "{name}");
        assert!(stderr.contains("is not set, so the"), "{name}: said when listed: {stderr}");
    }

    // GitHub packages without a token: never asked, and config check says it needs one.
    let entry = format!("    inventory: ghcr\n    inventory-url: \"{url}\"\n");
    let (_, _, stdout, _) = scene.ferry(&["config", "check"], &prod, &[fake.host()], &entry, &[]).await;
    assert!(stdout.contains("needs a token with read:packages"), "{stdout}");
    // A user's packages are found under /users/ once /orgs/ says there is no such organisation.
    let users = FakeVendors::start(&scene.prod, Some(("ferry", PASSWORD)), 3, Some(TOKEN), &["demo"]).await;
    let entry = format!(
        "    inventory: ghcr\n    inventory-url: \"{}\"\n    inventory-token-env: LISTING_TOKEN\n",
        users.url()
    );
    let (code, json, _, stderr) =
        scene.ferry(&["plan"], &prod, &[users.host()], &entry, &[("LISTING_TOKEN", TOKEN)]).await;
    assert_eq!((code, &json["summary"]), (Some(0), &baseline), "{stderr}");
    assert_eq!(requests(&json, &prod, "GitHub packages API"), 2, "{json}");
}

/// ACR's `_manifests`, on the registry's host and behind its own login (the fake stands for the
/// ACR host and forwards the OCI API to prod): named by `inventory: acr`, the plan is the same
/// and prod's tags cost two listing pages instead of a `HEAD` each. Promoting through it copies
/// the four missing tags, and a second plan finds everything present.
#[tokio::test]
async fn acr_s_manifests_api_lists_with_the_registry_s_login() {
    let scene = Scene::new(82).await;
    let acr = FakeVendors::start(&scene.prod, Some(("ferry", PASSWORD)), 3, None, &[]).await;
    let host = acr.host();
    let (code, json, _, stderr) =
        scene.ferry(&["plan"], &host, std::slice::from_ref(&host), "    inventory: acr\n", &[]).await;
    assert_eq!(code, Some(0), "{json}{stderr}");
    assert_eq!(
        (json["summary"]["present"].as_u64(), json["summary"]["copy"].as_u64()),
        (Some(4), Some(4)),
        "{json}"
    );
    // Two pages, the first after the registry's login challenge.
    assert_eq!(requests(&json, &host, "ACR manifests API"), 3, "{json}");
    assert_eq!(requests(&json, &host, "manifest HEAD"), 0, "{json}");
    assert_eq!(acr.count(Vendor::Acr), 2);
    let (_, _, stdout, _) = scene
        .ferry(&["config", "check"], &host, std::slice::from_ref(&host), "    inventory: acr\n", &[])
        .await;
    assert!(
        stdout.contains(&format!("{host}: repositories listed with ACR's /acr/v1/<repository>/_manifests")),
        "{stdout}"
    );

    // `inventory: oci` turns it off.
    let (_, json, _, _) =
        scene.ferry(&["plan"], &host, std::slice::from_ref(&host), "    inventory: oci\n", &[]).await;
    assert_eq!(requests(&json, &host, "ACR manifests API"), 0, "{json}");
    assert!(requests(&json, &host, "manifest HEAD") >= 4, "{json}");

    let (code, _, stdout, stderr) = scene
        .ferry(&["promote", "--confirm"], &host, std::slice::from_ref(&host), "    inventory: acr\n", &[])
        .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (_, json, _, _) =
        scene.ferry(&["plan"], &host, std::slice::from_ref(&host), "    inventory: acr\n", &[]).await;
    assert_eq!(json["summary"]["present"].as_u64(), Some(8), "{json}");
    assert_eq!(
        requests(&json, &host, "ACR manifests API"),
        4,
        "eight manifests, three a page, and the challenge: {json}"
    );
}
