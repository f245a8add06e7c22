//! Each configuration mistake a newcomer makes is loud: the process refuses to start, or logs a
//! warning that names the fix, with the exact words asserted here.

use std::time::Duration;

use ferry_testkit::registry::RegistryServer;

async fn ferry(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = tokio::process::Command::new(crate::support::ferry_bin());
    command.args(args).env_remove("FERRY_CONFIG").env_remove("FERRY_DISTRIBUTION_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), command.output()).await.unwrap().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("ferry.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A plain-HTTP registry missing from `registries.insecure` stops `ferry run` at once, with the
/// fix (it used to accept the push, then fail with a TLS error after 30 s of retries).
#[tokio::test]
async fn a_plain_http_registry_missing_from_insecure_stops_ferry_run() {
    let staging = RegistryServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("pipeline:\n  registries: [\"{}\"]\n", staging.host()));
    let token = [("FERRY_DISTRIBUTION_TOKEN", "t")];
    let (code, _, stderr) = ferry(&["run", "--config", &config, "--listen", "127.0.0.1:0"], &token).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("{} speaks plain HTTP, and Ferry would use HTTPS", staging.host())),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("fix: add \"{}\" to registries.insecure", staging.host())), "{stderr}");
    assert!(stderr.contains("not starting: the configuration has the problem(s) above"), "{stderr}");

    // `ferry config check` says the same, and exits 3.
    let (code, stdout, _) = ferry(&["config", "check", "--config", &config], &token).await;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains(&format!("add \"{}\" to registries.insecure", staging.host())), "{stdout}");

    // Fixed, it is fine.
    let fixed = write_config(
        dir.path(),
        &format!("registries:\n  insecure: [\"{0}\"]\npipeline:\n  registries: [\"{0}\"]\n", staging.host()),
    );
    let (code, stdout, _) = ferry(&["config", "check", "--config", &fixed], &token).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains(&format!("ok: {} answers on http (GET /v2/: 200)", staging.host())), "{stdout}");
}

/// Without any webhook secret every webhook would get 401: `ferry run` refuses to start.
#[tokio::test]
async fn no_webhook_secret_stops_ferry_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "pipeline:\n  registries: [\"127.0.0.1:9\"]\n");
    let (code, _, stderr) = ferry(&["run", "--config", &config, "--listen", "127.0.0.1:0"], &[]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("error: no webhook secret is set: ingest would refuse every webhook (401)"),
        "{stderr}"
    );
    assert!(stderr.contains("fix: set FERRY_DISTRIBUTION_TOKEN"), "{stderr}");
}

/// A mirror rule whose source host is not in `pipeline.registries` never fires; an unreadable
/// signing key stops the start.
#[tokio::test]
async fn config_check_names_a_rule_that_never_fires_and_an_unreadable_key() {
    let staging = RegistryServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "registries:\n  insecure: [\"{0}\"]\nsigning:\n  key: missing.key\npipeline:\n  registries: [\"127.0.0.1:9\"]\n  \
             mirror-rules:\n  - source: \"{0}/team\"\n    destinations: [\"{0}/prod\"]\n",
            staging.host()
        ),
    );
    let (code, stdout, _) =
        ferry(&["config", "check", "--config", &config], &[("FERRY_DISTRIBUTION_TOKEN", "t")]).await;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "warning: the mirror rule for {0}/team will never fire: {0} is not in pipeline.registries",
            staging.host()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("fix: add \"{}\" to pipeline.registries", staging.host())), "{stdout}");
    assert!(stdout.contains("missing.key cannot be loaded"), "{stdout}");
}

/// Events that Ferry ignores are warned about at the default level, each with why: a push from
/// a registry not in `pipeline.registries`, a tagged push no rule matches, and pull events.
#[tokio::test]
async fn ignored_events_are_warned_about_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // The sample events name 127.0.0.1:5001; the config accepts only 127.0.0.1:5002 at first.
    let config = write_config(
        dir.path(),
        "registries:\n  insecure: [\"127.0.0.1:5001\", \"127.0.0.1:5002\"]\npipeline:\n  registries: [\"127.0.0.1:5002\"]\n",
    );
    let sample = std::fs::read_to_string(
        ferry_testkit::data_dir().join("distribution-webhooks/registry-push-event.json"),
    )
    .unwrap();
    let pull = sample.replace("\"action\": \"push\"", "\"action\": \"pull\"");
    assert_ne!(pull, sample, "the sample has an action to change");
    // Another event id: ingest drops a delivery it has already seen.
    let from_configured = sample
        .replace("127.0.0.1:5001", "127.0.0.1:5002")
        .replace("839b9f93-2bca-464c-b678-db5ccda898d9", "839b9f93-2bca-464c-b678-db5ccda898da");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(crate::support::ferry_bin())
        .args(["run", "--config", &config, "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("FERRY_CONFIG")
        .env("FERRY_DISTRIBUTION_TOKEN", "t")
        .env("FERRY_LOG_FORMAT", "text")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/events/distribution");
    let http = reqwest::Client::new();
    for body in [&sample, &pull, &from_configured] {
        let mut sent = false;
        for _ in 0..120 {
            if let Ok(response) = http.post(&url).bearer_auth("t").body(body.clone()).send().await {
                assert!(response.status().is_success(), "{}", response.status());
                sent = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(sent, "ferry run did not answer");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "a push from a registry that is not in pipeline.registries; ignored (add the host there to promote from it)",
        "the registry sends pull events, which Ferry ignores; add `ignore: {mediatypes: [application/octet-stream], actions: [pull]}`",
        "a push that no mirror rule and no manifest entry matches; ignored",
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(expected) && l.contains(" WARN ")),
            "no warning {expected:?} in:\n{stderr}"
        );
    }
}
