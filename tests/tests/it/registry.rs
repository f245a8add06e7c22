//! The registry adapter against real CNCF distribution.

use ferry_model::{Digest, Host, RegistryPath, TagOrDigest};
use ferry_registry::Classify as _;
use ferry_registry::auth::Credential;
use ferry_registry::{Credentials, ErrorClass, ManifestContent, Registry, RegistryError, Secret};
use ferry_testkit::registry::{RegistryOptions, RegistryServer};
use ferry_testkit::seed::{ImageSpec, Seeder};

use crate::support::{CapturedLogs, client};

#[tokio::test]
async fn reads_manifests_tags_and_catalog() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let index = seeder
        .index("demo/app", Some("1.0"), &[ImageSpec::small("amd64", 1, 2), ImageSpec::small("arm64", 2, 2)])
        .await;
    let single = seeder.image("demo/single", Some("2.0"), &ImageSpec::small("amd64", 3, 1)).await;
    let registry = client(&[server.host()], Credentials::none());
    let app = server.repository("demo/app");

    let head =
        registry.head_manifest(&app, &TagOrDigest::Tag("1.0".parse().unwrap())).await.unwrap().unwrap();
    assert_eq!(head.digest, index.digest);
    assert_eq!(head.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(head.size, index.bytes.len() as u64);

    let raw = registry.get_manifest(&app, &TagOrDigest::Digest(index.digest)).await.unwrap().unwrap();
    assert_eq!(raw.bytes, index.bytes, "bytes are kept exactly");
    let ManifestContent::Index { children } = raw.content().unwrap() else { panic!("an index") };
    assert_eq!(
        children.iter().map(|c| c.digest).collect::<Vec<_>>(),
        index.children.iter().map(|c| c.digest).collect::<Vec<_>>()
    );
    assert_eq!(children[1].platform.as_deref(), Some("linux/arm64"));

    let child =
        registry.get_manifest(&app, &TagOrDigest::Digest(index.children[0].digest)).await.unwrap().unwrap();
    assert_eq!(child.content().unwrap().blobs().len(), 3, "config and two layers");

    let absent = Digest::of(b"nothing");
    assert_eq!(registry.head_manifest(&app, &TagOrDigest::Digest(absent)).await.unwrap(), None);
    assert_eq!(registry.get_manifest(&app, &TagOrDigest::Tag("nope".parse().unwrap())).await.unwrap(), None);
    assert_eq!(registry.list_tags(&server.repository("no/such")).await.unwrap(), vec![]);

    let single_repo = server.repository("demo/single");
    assert_eq!(
        registry
            .head_manifest(&single_repo, &TagOrDigest::Tag("2.0".parse().unwrap()))
            .await
            .unwrap()
            .unwrap()
            .digest,
        single.digest
    );

    let under_demo = RegistryPath::parse(&format!("{}/demo", server.host())).unwrap();
    let repositories = registry.list_repositories(&under_demo).await.unwrap();
    assert_eq!(repositories, vec![app.clone(), single_repo]);
    let under_other = RegistryPath::parse(&format!("{}/dem", server.host())).unwrap();
    assert!(
        registry.list_repositories(&under_other).await.unwrap().is_empty(),
        "prefixes match whole components"
    );
}

#[tokio::test]
async fn lists_follow_link_pagination() {
    let server = RegistryServer::start().await;
    let seeder = Seeder::new(&server);
    let image = seeder.image("paged", Some("t00"), &ImageSpec::small("amd64", 1, 1)).await;
    for i in 1..25 {
        seeder.tag("paged", &image, &format!("t{i:02}")).await;
    }
    for i in 0..7 {
        seeder.image(&format!("many/r{i}"), Some("v1"), &ImageSpec::small("amd64", 1, 1)).await;
    }
    let registry = client(&[server.host()], Credentials::none()).with_page_size(3);
    // Distribution 2.8 ignores `n` on tag lists and answers in one page; its catalog pages.
    let tags = registry.list_tags(&server.repository("paged")).await.unwrap();
    assert_eq!(tags.len(), 25);
    let repositories = registry
        .list_repositories(&RegistryPath::parse(&format!("{}/many", server.host())).unwrap())
        .await
        .unwrap();
    assert_eq!(repositories.len(), 7);
    let pages = server.access_log().iter().filter(|l| l.path.starts_with("/v2/_catalog")).count();
    assert!(pages >= 3, "8 repositories in pages of 3 take at least 3 requests, saw {pages}");
}

#[tokio::test]
async fn basic_auth_and_credentials_never_logged() {
    const PASSWORD: &str = "pa55-w0rd-do-not-log";
    let server = RegistryServer::start_with(RegistryOptions {
        basic_auth: Some(("ferry".into(), PASSWORD.into())),
        ..Default::default()
    })
    .await;
    let seeder = Seeder::new(&server).with_basic_auth("ferry", PASSWORD);
    let pushed = seeder.image("private/app", Some("1.0"), &ImageSpec::small("amd64", 9, 1)).await;
    let repo = server.repository("private/app");
    let tag = TagOrDigest::Tag("1.0".parse().unwrap());

    let logs = CapturedLogs::global();

    let anonymous = client(&[server.host()], Credentials::none());
    let err = anonymous.head_manifest(&repo, &tag).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(err.to_string().contains("requires credentials and none are configured"), "{err}");

    let mut wrong = Credentials::none();
    wrong.insert(
        server.host(),
        Credential::Basic { username: "ferry".into(), password: Secret::new("wrong-secret") },
    );
    let err = client(&[server.host()], wrong).head_manifest(&repo, &tag).await.unwrap_err();
    assert!(matches!(err, RegistryError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("wrong-secret"));

    let mut right = Credentials::none();
    right.insert(
        server.host(),
        Credential::Basic { username: "ferry".into(), password: Secret::new(PASSWORD) },
    );
    let registry = client(&[server.host()], right);
    assert_eq!(registry.head_manifest(&repo, &tag).await.unwrap().unwrap().digest, pushed.digest);
    assert_eq!(registry.list_tags(&repo).await.unwrap().len(), 1);

    let text = logs.text();
    assert!(text.contains("registry request"), "debug logging was captured");
    assert!(!text.contains(PASSWORD) && !text.contains("wrong-secret"), "a credential reached the logs");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ferry:{PASSWORD}"));
    assert!(!text.contains(&encoded), "an encoded credential reached the logs");
}

#[tokio::test]
async fn plain_http_only_for_listed_hosts() {
    let server = RegistryServer::start().await;
    Seeder::new(&server).image("demo/app", Some("1.0"), &ImageSpec::small("amd64", 1, 1)).await;
    let before = server.access_log().len();
    let not_listed = client(&[Host::parse("other.example").unwrap()], Credentials::none());
    let err = not_listed
        .head_manifest(&server.repository("demo/app"), &TagOrDigest::Tag("1.0".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connection { ref url, .. } if url.starts_with("https://")), "{err}");
    // A TLS handshake against a plain-HTTP server is not a logged request: nothing was served.
    assert_eq!(server.access_log().len(), before, "no plain-HTTP request was made");
}

#[tokio::test]
async fn bearer_token_flow_with_a_real_token_service() {
    use ferry_testkit::token::TokenServer;
    const PASSWORD: &str = "t0ken-pa55";
    let tokens = TokenServer::start(Some(("robot", PASSWORD))).await;
    let server = RegistryServer::start_with(RegistryOptions {
        token_auth: Some(tokens.registry_config()),
        ..Default::default()
    })
    .await;
    let seeder = Seeder::new(&server).with_bearer(tokens.token_for(&["repository:private/app:pull,push"]));
    let pushed = seeder.image("private/app", Some("1.0"), &ImageSpec::small("amd64", 3, 1)).await;
    let repo = server.repository("private/app");
    let tag = TagOrDigest::Tag("1.0".parse().unwrap());

    // The token realm is plain HTTP on loopback; credentials go there only when it is listed.
    let realm_host =
        Host::parse(tokens.realm.trim_start_matches("http://").trim_end_matches("/token")).unwrap();

    let anonymous = client(&[server.host(), realm_host.clone()], Credentials::none());
    let err = anonymous.head_manifest(&repo, &tag).await.unwrap_err();
    assert!(err.to_string().contains("refused the request"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    let mut credentials = Credentials::none();
    credentials.insert(
        server.host(),
        Credential::Basic { username: "robot".into(), password: Secret::new(PASSWORD) },
    );
    let unlisted_realm = client(&[server.host()], credentials.clone());
    assert!(
        unlisted_realm.head_manifest(&repo, &tag).await.is_err(),
        "credentials are not sent to a plain-HTTP realm unless it is listed"
    );

    let registry = client(&[server.host(), realm_host], credentials);
    let issued_before = tokens.n_issued();
    for _ in 0..3 {
        assert_eq!(registry.head_manifest(&repo, &tag).await.unwrap().unwrap().digest, pushed.digest);
    }
    assert_eq!(registry.list_tags(&repo).await.unwrap().len(), 1);
    assert_eq!(tokens.n_issued() - issued_before, 1, "one token serves every pull of that repository");
}

/// A wrong password is "a registry could not be read": exit 4, with the edge unchecked and the
/// reason on the plan, and the password in no output.
#[tokio::test]
async fn a_wrong_password_exits_4() {
    const PASSWORD: &str = "right-pa55";
    let staging = RegistryServer::start_with(RegistryOptions {
        basic_auth: Some(("ferry".into(), PASSWORD.into())),
        ..Default::default()
    })
    .await;
    let prod = RegistryServer::start().await;
    let pushed = Seeder::new(&staging)
        .with_basic_auth("ferry", PASSWORD)
        .image("team/app", Some("1.0"), &ImageSpec::small("amd64", 31, 1))
        .await;
    let dir = tempfile::tempdir().unwrap();
    ferry_testkit::write_thin_manifest(
        &dir.path().join("m"),
        "a",
        &staging.host(),
        &[prod.host()],
        &format!("- name: team/app\n  dmap:\n    \"{}\": [\"1.0\"]\n", pushed.digest),
    )
    .unwrap();
    use base64::Engine as _;
    let auth = |password: &str| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("ferry:{password}"));
        format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{encoded}\"}}}}}}", staging.host())
    };
    let run = |password: &str| {
        std::process::Command::new(crate::support::ferry_bin())
            .args(["plan", "--thin-manifest-dir"])
            .arg(dir.path().join("m"))
            .args([
                "--insecure-registry",
                &staging.host().to_string(),
                "--insecure-registry",
                &prod.host().to_string(),
            ])
            .env("FERRY_REGISTRY_AUTH", auth(password))
            .output()
            .unwrap()
    };
    let out = run("wrong-pa55");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("unchecked"), "{stdout}");
    assert!(!stdout.contains("wrong-pa55") && !stderr.contains("wrong-pa55"));
    let out = run(PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A blob whose bytes Ferry holds is uploaded without a `HEAD` first when it is small (at most
/// 64 KiB): for content just made the `HEAD` would answer 404, and bytes already there are
/// rewritten harmlessly. A larger one is asked about first and never sent twice. Each case:
/// (size, already there, the client's blob `HEAD`s, upload `POST`s, upload `PUT`s).
#[tokio::test]
async fn small_blobs_in_hand_are_uploaded_without_asking_and_large_ones_are_asked_about() {
    use ferry_registry::RegistryWrite as _;
    let server = RegistryServer::start().await;
    let registry = client(&[server.host()], Credentials::none());
    let repository = server.repository("demo/blobs");
    let seeder = Seeder::new(&server);
    let cases: [(usize, bool, (usize, usize, usize)); 5] = [
        (300, false, (0, 1, 1)),
        (300, true, (0, 1, 1)),
        (64 * 1024, false, (0, 1, 1)),
        (64 * 1024 + 1, false, (1, 1, 1)),
        (64 * 1024 + 1, true, (1, 0, 0)),
    ];
    for (i, (size, there, expected)) in cases.into_iter().enumerate() {
        let bytes = ferry_testkit::seed::pseudo_random_bytes(size, 9000 + i as u64);
        if there {
            seeder.upload("demo/blobs", &bytes).await;
        }
        let mark = server.access_log().len();
        let digest = registry.put_blob(&repository, bytes::Bytes::from(bytes.clone())).await.unwrap();
        let lines: Vec<_> = server.access_log()[mark..]
            .iter()
            .filter(|l| l.user_agent.starts_with("ferry/"))
            .cloned()
            .collect();
        let count = |method: &str, kind: &str| {
            lines.iter().filter(|l| l.method == method && l.kind() == kind).count()
        };
        assert_eq!(
            (count("HEAD", "blob"), count("POST", "upload"), count("PUT", "upload")),
            expected,
            "case {i}: {size} bytes, already there: {there}: {lines:?}"
        );
        assert_eq!(digest, Digest::of(&bytes));
        assert_eq!(
            seeder.get_blob("demo/blobs", &digest.to_string()).await,
            bytes,
            "case {i}: the bytes are intact"
        );
    }
}
