//! LocalStack (host mode) for tests that need AWS services: KMS and SQS.
//!
//! The first caller runs `localstack/start`, which installs LocalStack if needed and starts it
//! unless it already answers; every later caller gets the same endpoint.

use std::path::Path;
use std::sync::OnceLock;

/// `http://127.0.0.1:4566`, once LocalStack answers there.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../localstack/start");
            let out = std::process::Command::new(&script)
                .output()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "localstack/start failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok("http://127.0.0.1:4566".to_owned())
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// An AWS SDK configuration pointed at LocalStack with its test credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let endpoint = tokio::task::spawn_blocking(endpoint).await.expect("localstack start");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::Credentials::new("test", "test", None, None, "localstack"))
        .load()
        .await
}
