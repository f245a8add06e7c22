//! The HTTP side of token services (Google's, Azure AD, ACR's exchange): one client, and one
//! way to read a JSON answer or say why there is none, without ever echoing a token.

use std::time::Duration;

use serde::de::DeserializeOwned;

/// Why a token service gave no token; `transient` when asking later may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub reason: String,
    pub transient: bool,
}

impl Failure {
    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), transient: false }
    }
}

/// The client for token services: bounded in time, no redirects (a token request that is
/// redirected is not followed with its secrets).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
        // Only a broken TLS backend fails here; a default client is the same minus timeouts.
        .unwrap_or_default()
}

/// Sends `request` and reads its JSON answer as `T`. `what` names the service in errors
/// (`Google's token endpoint https://oauth2.googleapis.com/token`).
pub(crate) async fn json<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, Failure> {
    let response = request.send().await.map_err(|e| Failure {
        reason: format!("{what} could not be reached: {}", without_url(&e)),
        transient: true,
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| Failure {
        reason: format!("{what}: the answer broke off: {}", without_url(&e)),
        transient: true,
    })?;
    if !status.is_success() {
        let transient = status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
        return Err(Failure {
            reason: format!("{what} answered HTTP {}{}", status.as_u16(), oauth_error(&body)),
            transient,
        });
    }
    serde_json::from_slice(&body).map_err(|e| Failure {
        reason: format!(
            "{what} answered with something unexpected (not shown): it {}",
            ferry_registry::auth::json_error_without_values(&e)
        ),
        transient: false,
    })
}

/// reqwest's error text without the URL (which may carry a query).
pub(crate) fn without_url(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = String::new();
    let mut source = error.source();
    while let Some(e) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&e.to_string());
        source = e.source();
    }
    if text.is_empty() {
        if error.is_timeout() { "timed out".into() } else { "request failed".into() }
    } else {
        ferry_model::escaped(&text).into_owned()
    }
}

/// `: invalid_grant: Invalid JWT signature.` from an OAuth 2.0 error body (RFC 6749 §5.2), or
/// Google's and Azure's own envelopes; nothing when the body is something else.
fn oauth_error(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct OAuth {
        error: serde_json::Value,
        #[serde(default)]
        error_description: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<OAuth>(body) else {
        return String::new();
    };
    let code = match &parsed.error {
        serde_json::Value::String(code) => code.clone(),
        // Google APIs: {"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}
        serde_json::Value::Object(o) => [o.get("status"), o.get("message")]
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(": "),
        _ => String::new(),
    };
    let text = match parsed.error_description {
        Some(description) => format!("{code}: {}", description.lines().next().unwrap_or_default()),
        None => code,
    };
    let short: String = text.chars().take(300).collect();
    format!(": {}", ferry_model::escaped(&short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_are_summarised() {
        assert_eq!(
            oauth_error(br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#),
            ": invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(
            oauth_error(br#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#),
            ": PERMISSION_DENIED: denied"
        );
        assert_eq!(oauth_error(b"<html>"), "");
    }
}
